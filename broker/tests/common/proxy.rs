//! A loopback TCP proxy in front of a broker that a test can make drop every connection at
//! once: the fault injector of the idempotent-producer tests (STYLE §7.8).
//!
//! ```text
//! client ──▶ Proxy (127.0.0.1:<port>) ──pump threads──▶ upstream broker
//!               ├─ cut_all(): shutdown(Both) on every live connection, both sides
//!               └─ set_drop_responses(true): broker → client bytes are discarded, so
//!                  requests are processed but their answers are lost (then cut_all)
//! ```
//!
//! Plain std threads: one accept thread, two pump threads per connection. The number of live
//! connections is capped ([`MAX_CONNECTIONS`]); beyond it new ones are closed at once. Drop
//! stops accepting, cuts every connection and joins every thread.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Live connections the proxy keeps at most; a client needs a handful.
pub const MAX_CONNECTIONS: usize = 64;

#[derive(Default)]
struct Shared {
    /// Live connections: id → (client side, upstream side), clones used to cut them.
    conns: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    /// Pump threads, joined on drop.
    pumps: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
    stop: AtomicBool,
    /// Connections accepted so far.
    accepted: AtomicUsize,
    /// Bytes forwarded client → upstream.
    bytes_up: AtomicU64,
    /// While set, upstream → client bytes are discarded.
    drop_responses: AtomicBool,
    /// Bytes discarded while `drop_responses` was set.
    bytes_dropped: AtomicU64,
}

/// The proxy. See the module doc.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Binds `127.0.0.1:0` without serving yet, so the port can go into the broker's
    /// `advertised.listeners` before the broker starts.
    pub fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").expect("bind proxy")
    }

    /// Serves `listener`, forwarding every connection to `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> Proxy {
        let addr = listener.local_addr().expect("proxy address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking proxy listener");
        let shared = Arc::new(Shared::default());
        let accept_shared = shared.clone();
        let accept_thread = thread::spawn(move || accept_loop(listener, upstream, accept_shared));
        Proxy {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from clients to the broker so far.
    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }

    /// While `on`, everything the broker sends is discarded instead of forwarded: requests
    /// still reach the broker and are processed, but their responses are lost.
    pub fn set_drop_responses(&self, on: bool) {
        self.shared.drop_responses.store(on, Ordering::SeqCst);
    }

    /// Response bytes discarded so far.
    pub fn bytes_dropped(&self) -> u64 {
        self.shared.bytes_dropped.load(Ordering::SeqCst)
    }

    /// Closes every live connection, both sides, at once (requests in flight are lost
    /// either before or after the broker saw them). Returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let conns: Vec<_> = self.shared.conns.lock().unwrap().drain().collect();
        for (_, (client, upstream)) in &conns {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        conns.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        self.cut_all();
        let pumps: Vec<_> = self.shared.pumps.lock().unwrap().drain(..).collect();
        for p in pumps {
            let _ = p.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Polling interval of a non-blocking accept, not synchronization.
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.conns.lock().unwrap().len() >= MAX_CONNECTIONS {
            drop(client);
            continue;
        }
        let _ = client.set_nonblocking(false);
        let _ = client.set_nodelay(true);
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
            drop(client);
            continue;
        };
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        shared.conns.lock().unwrap().insert(id, (c3, s3));
        let up = {
            let shared = shared.clone();
            thread::spawn(move || pump(client, s2, id, &shared, true))
        };
        let down = {
            let shared = shared.clone();
            thread::spawn(move || pump(server, c2, id, &shared, false))
        };
        let mut pumps = shared.pumps.lock().unwrap();
        pumps.retain(|p| !p.is_finished());
        pumps.push(up);
        pumps.push(down);
    }
}

/// Copies `from` → `to` until either side ends, then closes both and forgets the connection.
fn pump(mut from: TcpStream, mut to: TcpStream, id: u64, shared: &Shared, upward: bool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !upward && shared.drop_responses.load(Ordering::SeqCst) {
                    shared.bytes_dropped.fetch_add(n as u64, Ordering::SeqCst);
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if upward {
                    shared.bytes_up.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.conns.lock().unwrap().remove(&id);
}
