//! Pure planning, one module per resource: what the spec and the brokers' answers call
//! for. No I/O here; the controllers carry the plans out.

pub mod brokers;
pub mod consumer_group;
pub mod topic;
