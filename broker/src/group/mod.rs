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

//!
//! What wiring it to the protocol needs:
//!
//! 1. A coordinator driver, one per led `__consumer_offsets` partition. It owns
//!    `group_id → Group` and the parked JoinGroup/SyncGroup requests keyed by member id,
//!    and calls `tick` at `next_deadline_ms`. It routes each `Effect` to its parked
//!    request. A second JoinGroup from the same member replaces the parked one, since the
//!    core emits one response per member id.
//! 2. Handlers for FindCoordinator (hash of the group id modulo the partition count),
//!    JoinGroup (v4+ sets `require_known_member_id`), SyncGroup (v5 passes protocol type and
//!    name), Heartbeat and LeaveGroup (v0–2 map to one member). Advertise them in
//!    ApiVersions only once all of them work.
//! 3. Persistence. Kafka writes the group record to `__consumer_offsets` before answering
//!    the leader's SyncGroup and moving to Stable. The core moves to Stable at once, so it
//!    needs a store effect (or a two-phase sync the driver confirms), plus a loader that
//!    rebuilds a `Group` from that record when the coordinator moves.
//! 4. The offset store calls `can_commit` before writing; a successful commit also counts
//!    as a heartbeat.
//! 5. Not modelled yet: Kafka's `DelayedSync` (removing members that never sync after the
//!    join phase) and unloading a group when coordinatorship is lost.

pub mod membership;
