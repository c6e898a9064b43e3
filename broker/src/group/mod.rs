//! Consumer groups: Kafka's group coordinator (classic protocol).
//!
//! | module | owns |
//! |---|---|
//! | [`membership`] | one group's members, generations and rebalances: a pure state machine, no I/O |
//! | [`coordinator`] | the driver: every group of the broker, parked requests, timers, and the records in `__consumer_offsets` |
//!
//! The membership core takes JoinGroup, SyncGroup, Heartbeat and LeaveGroup requests plus
//! the passage of time, and returns responses and [`membership::Effect`]s. The coordinator
//! owns the groups, parks JoinGroup/SyncGroup requests on oneshot channels until their effect
//! arrives, calls `tick` from a timer task, stores offsets and group records, and rebuilds
//! them at start. The Kafka handlers are in `kafka::handler::group`.
//!
//! ```text
//! JoinGroup / SyncGroup / Heartbeat / LeaveGroup   tick(now_ms)
//!                     │                                │
//!                     ▼                                ▼
//!              Group (membership) ──> immediate response, Effect::{JoinResponse, SyncResponse}
//!                     │
//!              GroupCoordinator ──> parked requests answered, records to __consumer_offsets
//! ```
//!
//! A group's coordinator is the leader of its `__consumer_offsets` partition; the
//! coordinator loads and drops groups as that leadership moves. Not modelled yet: Kafka's
//! `DelayedSync` (removing members that never sync after the join phase).

pub mod coordinator;
pub mod membership;
