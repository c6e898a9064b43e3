//! kafka-python (a pure-Python client, independent of librdkafka) against a real broker:
//! admin create/alter/describe/delete, produce with acks 0/1/all and gzip, group-less
//! consume, offsets by time. The client is installed by `scripts/setup.sh` into
//! `target/compat-venv`; the script is `e2e/compat/kafka_python_roundtrip.py`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::TestBroker;

fn venv_python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/compat-venv/bin/python")
}

#[test]
fn kafka_python_roundtrip() {
    let python = venv_python();
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh to install kafka-python",
        python.display()
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/compat/kafka_python_roundtrip.py");
    let mut broker = TestBroker::start(&[]);
    let child = Command::new(&python)
        .arg(&script)
        .arg(broker.bootstrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start python");
    // Collect the output on a thread (so full pipes cannot stall the script) and bound the
    // wait; on timeout the script is killed by pid.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(output) => output.expect("python output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!(
                "kafka-python script did not finish in 90 s\nbroker log:\n{}",
                broker.output()
            );
        }
    };
    let status = output.status;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "kafka-python roundtrip failed ({status}):\n{stdout}\n{stderr}\nbroker log:\n{}",
        broker.output()
    );
    assert!(stdout.contains("roundtrip ok"), "{stdout}");
    broker.assert_alive();
}
