//! Consumer groups: Kafka's group coordinator (classic protocol).
//!
//! | module | owns |
//! |---|---|
//! | [`membership`] | one group's members, generations and rebalances: a pure state machine, no I/O |
//!
//! The membership core takes JoinGroup, SyncGroup, Heartbeat and LeaveGroup requests plus
//! the passage of time, and returns responses and [`membership::Effect`]s. The driver that
//! will own the groups of a `__consumer_offsets` partition, its timers and the group records
//! in that log is not written yet, and neither are the Kafka handlers.
//!
//! ```text
//! JoinGroup / SyncGroup / Heartbeat / LeaveGroup   tick(now_ms)
//!                     │                                │
//!                     ▼                                ▼
//!              Group (membership) ──> immediate response, Effect::{JoinResponse, SyncResponse}
//! ```

pub mod membership;
