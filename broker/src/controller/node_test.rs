//! In-process tests of the controller node: real openraft, real files in temp dirs, real
//! gRPC on 127.0.0.1 ports bound before the nodes start. Every wait polls a condition
//! against a deadline.

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use super::*;
use crate::controller::raft::log_store::log_file_path;
use crate::controller::PRODUCER_ID_BLOCK_SIZE;

const DEADLINE: Duration = Duration::from_secs(10);
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Prints the nodes' logs with `RUST_LOG=...` (errors only otherwise).
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Polls `check` every 20 ms until it yields a value, failing the test after `DEADLINE`.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(node_id: i32, voters: &BTreeMap<i32, String>, dir: &Path) -> ControllerConfig {
    ControllerConfig {
        voters: voters.clone(),
        ..ControllerConfig::standalone(node_id, dir.to_path_buf())
    }
}

/// A node with its gRPC server.
struct Running {
    node: Arc<ControllerNode>,
    addr: SocketAddr,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

async fn serve(node: Arc<ControllerNode>, listener: TcpListener) -> Running {
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let router = Server::builder()
        .add_service(node.raft_service())
        .add_service(node.controller_service());
    let signal = stop.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal)
            .await
            .unwrap();
    });
    Running {
        node,
        addr,
        stop,
        server,
    }
}

impl Running {
    /// Stops the node and its server: to the others it is gone.
    async fn kill(self) {
        self.node.shutdown().await;
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.server)
            .await
            .expect("gRPC server stops")
            .unwrap();
    }
}

async fn listeners(n: usize) -> (Vec<TcpListener>, BTreeMap<i32, String>) {
    let mut listeners = Vec::new();
    let mut voters = BTreeMap::new();
    for id in 1..=n as i32 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        voters.insert(id, listener.local_addr().unwrap().to_string());
        listeners.push(listener);
    }
    (listeners, voters)
}

fn block(image: &ImageWatch) -> i64 {
    image.borrow().1.next_producer_id_block
}

fn broker(id: i32) -> BrokerRecord {
    BrokerRecord {
        id,
        incarnation: Uuid::new_v4(),
        host: "127.0.0.1".into(),
        port: 9092 + id,
        rack: None,
        rpc_addr: format!("127.0.0.1:{}", 19092 + id),
        fenced: false,
        shutting_down: false,
    }
}

async fn allocate(node: &ControllerNode, broker_id: i32) -> (i64, i64) {
    match node
        .submit(Command::AllocateProducerIds { broker_id }, SUBMIT_TIMEOUT)
        .await
    {
        Ok(Outcome::ProducerIds { start, end }) => (start, end),
        other => panic!("AllocateProducerIds answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_node_initializes_allocates_and_keeps_its_image_across_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    tracing::info!("phase: first start");
    let node = ControllerNode::start(ControllerConfig::standalone(1, dir.path().into()))
        .await
        .unwrap();
    assert!(node.is_voter());
    let image = node.image();
    let cluster_id = eventually("InitCluster", || {
        let id = image.borrow().1.cluster_id.clone();
        (!id.is_empty()).then_some(id)
    })
    .await;
    assert_eq!(node.active_controller(), Some(1));

    let (start1, end1) = allocate(&node, 1).await;
    let (start2, end2) = allocate(&node, 1).await;
    assert_eq!(end1 - start1, PRODUCER_ID_BLOCK_SIZE);
    assert_eq!(start2, end1, "blocks are consecutive");
    // submit returns only once this node's image has the change.
    assert_eq!(block(&node.image()), end2);
    node.shutdown().await;

    tracing::info!("phase: restart on the same directory");
    let node = ControllerNode::start(ControllerConfig::standalone(1, dir.path().into()))
        .await
        .unwrap();
    let image = node.image();
    eventually("the image replayed", || {
        (block(&image) == end2).then_some(())
    })
    .await;
    assert_eq!(image.borrow().1.cluster_id, cluster_id);
    let (start3, _) = allocate(&node, 1).await;
    assert_eq!(start3, end2, "the next block continues after a restart");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_metadata_log_tail_is_cut_and_the_node_goes_on() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let node = ControllerNode::start(ControllerConfig::standalone(1, dir.path().into()))
        .await
        .unwrap();
    for _ in 0..3 {
        allocate(&node, 1).await;
    }
    assert_eq!(block(&node.image()), 3 * PRODUCER_ID_BLOCK_SIZE);
    node.shutdown().await;

    tracing::info!("phase: tear the last record, as a crash mid-append would");
    let path = log_file_path(&raft_dir(dir.path()));
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let node = ControllerNode::start(ControllerConfig::standalone(1, dir.path().into()))
        .await
        .unwrap();
    // The torn third allocation is gone; the two before it are intact.
    let (start, _) = allocate(&node, 1).await;
    assert_eq!(start, 2 * PRODUCER_ID_BLOCK_SIZE);
    assert!(!node.image().borrow().1.cluster_id.is_empty());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_forward_fail_over_and_catch_up() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (listeners, voters) = listeners(3).await;
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as i32 + 1;
        let node = ControllerNode::start(config(id, &voters, dirs[i].path()))
            .await
            .unwrap();
        nodes.push(Some(serve(node, listener).await));
    }

    tracing::info!("phase: a leader is elected and known to all");
    let agreed_leader = |nodes: &[Option<Running>]| {
        let seen: Vec<Option<i32>> = nodes
            .iter()
            .flatten()
            .map(|r| r.node.active_controller())
            .collect();
        seen[0].filter(|_| seen.iter().all(|s| *s == seen[0]))
    };
    let leader = eventually("a leader", || agreed_leader(&nodes)).await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();

    tracing::info!(leader, follower, "phase: submit through a follower");
    let follower_node = nodes[follower as usize - 1].as_ref().unwrap().node.clone();
    let (_, end) = allocate(&follower_node, follower).await;
    for running in nodes.iter().flatten() {
        let image = running.node.image();
        eventually("the change on every voter", || {
            (block(&image) == end).then_some(())
        })
        .await;
        assert!(!image.borrow().1.cluster_id.is_empty());
    }

    tracing::info!("phase: kill the leader");
    let killed = nodes[leader as usize - 1].take().unwrap();
    let killed_addr = killed.addr;
    killed.kill().await;
    let new_leader = eventually("a new leader", || {
        agreed_leader(&nodes).filter(|&l| l != leader)
    })
    .await;
    let survivor = nodes.iter().flatten().next().unwrap().node.clone();
    let (start2, end2) = allocate(&survivor, survivor.node_id()).await;
    assert_eq!(
        start2, end,
        "no block was lost or repeated across the failover"
    );

    tracing::info!(new_leader, "phase: restart the old leader on its directory");
    let listener = TcpListener::bind(killed_addr).await.unwrap();
    let node = ControllerNode::start(config(leader, &voters, dirs[leader as usize - 1].path()))
        .await
        .unwrap();
    let restarted = serve(node, listener).await;
    let image = restarted.node.image();
    eventually("the restarted voter catching up", || {
        (block(&image) == end2).then_some(())
    })
    .await;
    nodes[leader as usize - 1] = Some(restarted);

    for running in nodes.into_iter().flatten() {
        running.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_voter_catches_up_from_a_snapshot_over_grpc() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (listeners, voters) = listeners(3).await;
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let node = ControllerNode::start(config(i as i32 + 1, &voters, dirs[i].path()))
            .await
            .unwrap();
        nodes.push(Some(serve(node, listener).await));
    }
    let leader = eventually("a leader", || {
        let seen: Vec<_> = nodes
            .iter()
            .flatten()
            .map(|r| r.node.active_controller())
            .collect();
        seen[0].filter(|_| seen.iter().all(|s| *s == seen[0]))
    })
    .await;
    let lagging = (1..=3).find(|&id| id != leader).unwrap();

    tracing::info!(
        lagging,
        "phase: a follower stops; the leader snapshots and purges"
    );
    let stopped = nodes[lagging as usize - 1].take().unwrap();
    let stopped_addr = stopped.addr;
    stopped.kill().await;
    let leader_node = nodes[leader as usize - 1].as_ref().unwrap().node.clone();
    let mut end = 0;
    for _ in 0..5 {
        end = allocate(&leader_node, leader).await.1;
    }
    let raft = leader_node.raft().unwrap().clone();
    let applied = leader_node.image().borrow().0;
    raft.trigger().snapshot().await.unwrap();
    let metrics = raft.metrics();
    eventually("the leader's snapshot", || {
        (metrics.borrow().snapshot.map(|s| s.index) >= Some(applied)).then_some(())
    })
    .await;
    raft.trigger().purge_log(applied).await.unwrap();
    eventually("the leader's purge", || {
        (metrics.borrow().purged.map(|p| p.index) >= Some(applied)).then_some(())
    })
    .await;

    tracing::info!("phase: the follower returns and needs the snapshot");
    let listener = TcpListener::bind(stopped_addr).await.unwrap();
    let node = ControllerNode::start(config(lagging, &voters, dirs[lagging as usize - 1].path()))
        .await
        .unwrap();
    let back = serve(node, listener).await;
    let image = back.node.image();
    eventually("the follower catching up", || {
        (block(&image) == end).then_some(())
    })
    .await;
    let follower_metrics = back.node.raft().unwrap().metrics();
    eventually("the installed snapshot", || {
        (follower_metrics.borrow().snapshot.map(|s| s.index) >= Some(applied)).then_some(())
    })
    .await;
    nodes[lagging as usize - 1] = Some(back);

    // Restarting the leader now loads the snapshot plus the log after it.
    let old = nodes[leader as usize - 1].take().unwrap();
    let addr = old.addr;
    old.kill().await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let node = ControllerNode::start(config(leader, &voters, dirs[leader as usize - 1].path()))
        .await
        .unwrap();
    let restarted = serve(node, listener).await;
    let image = restarted.node.image();
    eventually("the restarted voter's image", || {
        (block(&image) == end).then_some(())
    })
    .await;
    nodes[leader as usize - 1] = Some(restarted);

    for running in nodes.into_iter().flatten() {
        running.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_voter_follows_the_committed_image_and_forwards_submits() {
    init_tracing();
    let voter_dir = tempfile::tempdir().unwrap();
    let observer_dir = tempfile::tempdir().unwrap();
    let (mut listeners, voters) = listeners(1).await;
    let voter = ControllerNode::start(config(1, &voters, voter_dir.path()))
        .await
        .unwrap();
    let voter = serve(voter, listeners.remove(0)).await;

    let observer = ControllerNode::start(config(2, &voters, observer_dir.path()))
        .await
        .unwrap();
    assert!(!observer.is_voter());
    let image = observer.image();
    eventually("the cluster id on the non-voter", || {
        (!image.borrow().1.cluster_id.is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        image.borrow().1.cluster_id,
        voter.node.image().borrow().1.cluster_id
    );

    // Forwarded to the voter, and visible here when submit returns.
    let (_, end) = allocate(&observer, 2).await;
    assert_eq!(block(&observer.image()), end);
    assert_eq!(observer.active_controller(), Some(1));
    assert!(
        !raft_dir(observer_dir.path()).exists(),
        "a non-voter keeps no metadata log"
    );
    // Later changes made elsewhere stream in too.
    let (_, end2) = allocate(&voter.node, 1).await;
    eventually("a voter's change on the non-voter", || {
        (block(&image) == end2).then_some(())
    })
    .await;

    observer.shutdown().await;
    voter.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_broker_is_fenced_and_controlled_shutdown_completes() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let node = ControllerNode::start(ControllerConfig {
        broker_session_timeout_ms: 600,
        ..ControllerConfig::standalone(1, dir.path().into())
    })
    .await
    .unwrap();
    let image = node.image();
    let fenced = |id: i32| image.borrow().1.brokers.get(&id).map(|b| b.fenced);

    tracing::info!("phase: two brokers register and heartbeat");
    let (a, b) = (broker(1), broker(2));
    let stop_a = CancellationToken::new();
    let stop_b = CancellationToken::new();
    let interval = Duration::from_millis(100);
    let lifecycle_a = tokio::spawn(node.clone().run_broker_lifecycle(
        a.clone(),
        interval,
        stop_a.clone(),
    ));
    let lifecycle_b = tokio::spawn(node.clone().run_broker_lifecycle(
        b.clone(),
        interval,
        stop_b.clone(),
    ));
    eventually("both brokers unfenced", || {
        (fenced(1) == Some(false) && fenced(2) == Some(false)).then_some(())
    })
    .await;

    tracing::info!("phase: broker 2 goes silent");
    stop_b.cancel();
    lifecycle_b.await.unwrap();
    eventually("broker 2 fenced", || {
        (fenced(2) == Some(true)).then_some(())
    })
    .await;
    assert_eq!(
        fenced(1),
        Some(false),
        "the heartbeating broker stays unfenced"
    );

    tracing::info!("phase: a stale incarnation is told to register again");
    let stale = node
        .handle_heartbeat(BrokerHeartbeatRequest {
            broker_id: 2,
            incarnation: Uuid::new_v4().to_string(),
            metadata_offset: 0,
            want_shutdown: false,
        })
        .await;
    assert_eq!(
        stale.error_code,
        i32::from(ResponseError::StaleBrokerEpoch.code())
    );
    let unknown = node
        .handle_heartbeat(BrokerHeartbeatRequest {
            broker_id: 7,
            incarnation: Uuid::new_v4().to_string(),
            metadata_offset: 0,
            want_shutdown: false,
        })
        .await;
    assert_eq!(
        unknown.error_code,
        i32::from(ResponseError::BrokerIdNotRegistered.code())
    );

    tracing::info!("phase: broker 2 comes back with its incarnation and is unfenced");
    let stop_b = CancellationToken::new();
    let lifecycle_b = tokio::spawn(node.clone().run_broker_lifecycle(
        b.clone(),
        interval,
        stop_b.clone(),
    ));
    eventually("broker 2 unfenced again", || {
        (fenced(2) == Some(false)).then_some(())
    })
    .await;

    tracing::info!("phase: controlled shutdown of broker 1");
    assert!(
        node.controlled_shutdown(1, a.incarnation, SUBMIT_TIMEOUT)
            .await
    );
    {
        let current = image.borrow().1.clone();
        let record = &current.brokers[&1];
        assert!(record.shutting_down && record.fenced, "{record:?}");
    }
    // Its regular heartbeats go on until the process exits; they must not unfence it.
    let regular = node
        .handle_heartbeat(BrokerHeartbeatRequest {
            broker_id: 1,
            incarnation: a.incarnation.to_string(),
            metadata_offset: u64::MAX,
            want_shutdown: false,
        })
        .await;
    assert_eq!(regular.error_code, 0, "{}", regular.error_message);
    assert!(regular.fenced);
    assert_eq!(
        fenced(1),
        Some(true),
        "heartbeats do not undo a controlled shutdown"
    );

    stop_a.cancel();
    stop_b.cancel();
    lifecycle_a.await.unwrap();
    lifecycle_b.await.unwrap();
    node.shutdown().await;
}
