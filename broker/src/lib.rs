//! Tributary: a streaming log broker that speaks the Apache Kafka wire protocol.
//!
//! | module | owns |
//! |---|---|
//! | [`log`] | the partition log on disk: segments, indexes, recovery, retention |
//! | [`kafka`] | the Kafka protocol: framing, decoding, one handler module per API family |
//! | [`controller`] | cluster metadata: topics, their ids, partitions and configs |
//! | [`group`] | consumer groups: the classic-protocol membership state machine |
//! | [`cli`] | the admin command line (`tributary topics ...`) on the `tributary-admin` client |
//! | [`devcluster`] | `tributary dev --brokers N`: runs and supervises N local broker processes |
//! | [`metrics`] | every Prometheus metric: the request-path counters and the scrape-time gauges |
//! | [`server`] | process wiring: configuration, listeners (Kafka, gRPC, HTTP probes and metrics), partitions, background tasks, shutdown |

pub mod cli;
pub mod controller;
pub mod devcluster;
pub mod group;
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod server;
