//! Fetch (consumers): read raw record batches below the high watermark from each requested
//! partition this broker leads, long-polling until `min_bytes` are available or
//! `max_wait_ms` passes. Followers do not use this API: they fetch over gRPC (see
//! `server::replication`).
//!
//! ```text
//! resolve partitions ─> read (blocking pool) ─> enough bytes, an error, or deadline? ─> respond
//!                          ^                         │ no
//!                          └── next append (watch) ──┘
//! ```
//!
//! Limits follow KIP-74: `partition_max_bytes` per partition and `max_bytes` for the whole
//! response, except that the first batch of the first non-empty partition is returned whole
//! even when larger, so a consumer can always make progress. Batches are returned exactly as
//! stored (zero decode). Fetch sessions (KIP-227) are not kept: every response has session
//! id 0, which clients treat as a full, sessionless fetch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

use super::blocking;
use crate::log::FetchData;
use crate::server::replica_manager::{Partition, TopicState};
use crate::server::BrokerContext;

/// One requested partition.
struct Wanted {
    topic: usize,
    index: i32,
    partition: Option<Arc<Partition>>,
    /// Error code when the partition cannot be read at all.
    error: i16,
    fetch_offset: i64,
    current_leader_epoch: i32,
    max_bytes: usize,
}

/// What one read pass found for one partition.
struct Found {
    error: i16,
    records: Bytes,
    high_watermark: i64,
    log_start_offset: i64,
}

fn read_pass(wanted: &[Wanted], response_max_bytes: usize) -> Vec<Found> {
    let mut total = 0usize;
    wanted
        .iter()
        .map(|w| {
            let failed = |error: i16| Found {
                error,
                records: Bytes::new(),
                high_watermark: -1,
                log_start_offset: -1,
            };
            let Some(partition) = &w.partition else {
                return failed(w.error);
            };
            let budget = w.max_bytes.min(response_max_bytes.saturating_sub(total));
            if total > 0 && budget == 0 {
                return match partition.leader_log() {
                    Ok((log, _)) => Found {
                        error: 0,
                        records: Bytes::new(),
                        high_watermark: log.high_watermark(),
                        log_start_offset: log.log_start_offset(),
                    },
                    Err(e) => failed(e.code),
                };
            }
            // Only the first partition with data may exceed the budget with one whole batch
            // (KIP-74); later ones stop at the budget. Consumers never read past the high
            // watermark.
            match partition.read_for_consumer(
                w.fetch_offset,
                budget.max(1),
                total == 0,
                w.current_leader_epoch,
            ) {
                Ok((
                    FetchData {
                        records,
                        log_start_offset,
                        ..
                    },
                    high_watermark,
                )) => {
                    total += records.len();
                    Found {
                        error: 0,
                        records,
                        high_watermark,
                        log_start_offset,
                    }
                }
                Err(e) => failed(e.code),
            }
        })
        .collect()
}

pub async fn fetch(ctx: &Arc<BrokerContext>, request: FetchRequest, version: i16) -> FetchResponse {
    let by_id = version >= 13;
    let mut topics: Vec<(TopicName, Uuid)> = Vec::new();
    // By the same index as `topics`: where the bytes sent get counted.
    let mut topic_states: Vec<Option<Arc<TopicState>>> = Vec::new();
    let mut wanted = Vec::new();
    for t in request.topics {
        let topic = if by_id {
            ctx.replicas.topic_by_id(t.topic_id)
        } else {
            ctx.replicas.topic(&t.topic.0)
        };
        let missing = if by_id {
            ResponseError::UnknownTopicId.code()
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        };
        topics.push((t.topic.clone(), t.topic_id));
        for p in t.partitions {
            let (partition, error) = match &topic {
                None => (None, missing),
                Some(topic) => match topic.lookup(p.partition, ctx.config.broker_id) {
                    Ok(partition) => (Some(partition), 0),
                    Err(e) => (None, e.code),
                },
            };
            wanted.push(Wanted {
                topic: topics.len() - 1,
                index: p.partition,
                partition,
                error,
                fetch_offset: p.fetch_offset,
                current_leader_epoch: p.current_leader_epoch,
                max_bytes: p.partition_max_bytes.max(0) as usize,
            });
        }
        topic_states.push(topic);
    }

    let max_bytes = if request.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        request.max_bytes as usize
    };
    let min_bytes = request.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let wanted = Arc::new(wanted);
    let mut appended = ctx.replicas.subscribe_appends();
    let found = loop {
        // Mark the current append count as seen before reading, so an append that lands
        // during the read wakes the wait below.
        appended.borrow_and_update();
        let pass_wanted = wanted.clone();
        let found = blocking(move || read_pass(&pass_wanted, max_bytes)).await;
        let bytes: usize = found.iter().map(|f| f.records.len()).sum();
        let any_error = found.iter().any(|f| f.error != 0);
        if bytes >= min_bytes.max(1) || any_error || Instant::now() >= deadline {
            break found;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            changed = appended.changed() => {
                if changed.is_err() {
                    break found;
                }
            }
        }
    };

    let mut responses: Vec<FetchableTopicResponse> = topics
        .iter()
        .map(|(name, id)| {
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_topic_id(*id)
        })
        .collect();
    for (w, f) in wanted.iter().zip(found) {
        if let Some(metrics) = topic_states[w.topic]
            .as_ref()
            .and_then(|t| t.metrics.as_ref())
        {
            metrics.bytes_out.inc_by(f.records.len() as u64);
        }
        let mut data = PartitionData::default()
            .with_partition_index(w.index)
            .with_error_code(f.error)
            .with_high_watermark(f.high_watermark)
            .with_last_stable_offset(f.high_watermark)
            .with_log_start_offset(f.log_start_offset)
            .with_records(Some(f.records));
        if f.error == 0 {
            data = data.with_aborted_transactions(Some(Vec::new()));
        }
        responses[w.topic].partitions.push(data);
    }
    FetchResponse::default().with_responses(responses)
}
