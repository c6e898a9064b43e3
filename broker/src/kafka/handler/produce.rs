//! Produce: append each partition's record batches on its leader and answer according to
//! `acks`: 0 gets no response, 1 is answered after the leader's append, and -1 (all) once
//! the high watermark covers the batch, i.e. every in-sync replica holds it.
//!
//! ```text
//! resolve (leader here?) ─> append (blocking pool) ─> acks=all: wait for the HW ─> respond
//!        │ no: NOT_LEADER_OR_FOLLOWER                   │ leadership lost: NOT_LEADER_OR_FOLLOWER
//!        │ ISR < min.insync.replicas: NOT_ENOUGH_REPLICAS  timeout: REQUEST_TIMED_OUT
//!        │ cut off (BrokerContext::cut_off_leader): NOT_LEADER_OR_FOLLOWER
//! ```
//!
//! Idempotent producers: a retried batch the log already holds is answered with error code 0
//! and the offset the original got (the log appends nothing); a sequence gap or a fenced
//! epoch is answered `OUT_OF_ORDER_SEQUENCE_NUMBER` (45) or `INVALID_PRODUCER_EPOCH` (47),
//! through `Error::kafka_error_code` like every other log error.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::{blocking, str_bytes};
use crate::log::AppendInfo;
use crate::server::partition::NotReplicated;
use crate::server::replica_manager::{
    min_insync_replicas, now_ms, ApiError, Partition, TopicState,
};
use crate::server::BrokerContext;

/// Where one partition's answer comes from.
enum Slot {
    Error(ApiError),
    Append(usize),
}

pub async fn produce(
    ctx: &Arc<BrokerContext>,
    request: ProduceRequest,
    _version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let valid_acks = matches!(acks, -1..=1);
    let me = ctx.config.broker_id;
    // Work to run on the blocking pool: (partition, records, min ISR, its topic).
    let mut appends: Vec<(Arc<Partition>, bytes::Bytes, usize, Arc<TopicState>)> = Vec::new();
    let mut layout: Vec<(kafka_protocol::messages::TopicName, Vec<(i32, Slot)>)> = Vec::new();
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = ctx.replicas.topic(&name);
        let mut slots = Vec::with_capacity(topic_data.partition_data.len());
        for p in topic_data.partition_data {
            let slot = if !valid_acks {
                Slot::Error(ApiError::new(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be -1, 0 or 1, not {acks}"),
                ))
            } else {
                match &topic {
                    None => Slot::Error(ApiError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name:?} does not exist"),
                    )),
                    Some(topic) => match topic.lookup(p.index, me) {
                        Err(e) => Slot::Error(e),
                        // Cut off from the controller and the followers, this broker is a
                        // stale leader: the client looks the leader up again, elsewhere.
                        Ok(partition) if ctx.cut_off_leader(&partition) => {
                            Slot::Error(ApiError::new(
                                ResponseError::NotLeaderOrFollower,
                                format!(
                                    "broker {me} has lost contact with the controller and the \
                                     followers of {name}-{}: it no longer leads it",
                                    p.index
                                ),
                            ))
                        }
                        Ok(partition) => match p.records {
                            Some(records) if !records.is_empty() => {
                                let min_isr = min_insync_replicas(&ctx.config, topic);
                                appends.push((partition, records, min_isr, topic.clone()));
                                Slot::Append(appends.len() - 1)
                            }
                            // Kafka's ProduceRequest.validateRecords: at least one batch.
                            _ => Slot::Error(ApiError::new(
                                ResponseError::InvalidRecord,
                                "the request carries no record batch",
                            )),
                        },
                    },
                }
            };
            slots.push((p.index, slot));
        }
        layout.push((topic_data.name, slots));
    }

    let partitions: Vec<(Arc<Partition>, usize)> = appends
        .iter()
        .map(|(p, _, min_isr, _)| (p.clone(), *min_isr))
        .collect();
    let mut results: Vec<Result<(AppendInfo, i32), ApiError>> = if appends.is_empty() {
        Vec::new()
    } else {
        let results = blocking(move || {
            let now = now_ms();
            appends
                .into_iter()
                .map(|(partition, records, min_isr, topic)| {
                    let mut records = records.to_vec();
                    partition
                        .append_as_leader(&mut records, now, acks == -1, min_isr)
                        .inspect(|(info, _)| {
                            // Kafka's BytesInPerSec and MessagesInPerSec: what the leader
                            // appended, whatever then becomes of acks=all.
                            if let (Some(metrics), false) = (&topic.metrics, info.duplicate) {
                                metrics.appended(records.len(), info.num_records);
                            }
                        })
                        .inspect_err(|e| {
                            tracing::debug!(
                                topic = %partition.topic, partition = partition.index,
                                error = %e.message, "produce rejected"
                            );
                        })
                })
                .collect::<Vec<_>>()
        })
        .await;
        ctx.replicas.notify_appended();
        results
    };
    if acks == 0 {
        return None;
    }
    if acks == -1 {
        let deadline = Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
        for ((partition, min_isr), result) in partitions.iter().zip(results.iter_mut()) {
            if let Ok((info, epoch)) = result {
                if let Err(e) =
                    wait_replicated(partition, info.last_offset, *epoch, *min_isr, deadline).await
                {
                    tracing::debug!(
                        topic = %partition.topic, partition = partition.index,
                        error = %e.message, "acks=all produce failed"
                    );
                    *result = Err(e);
                }
            }
        }
    }

    let responses = layout
        .into_iter()
        .map(|(name, slots)| {
            let partition_responses = slots
                .into_iter()
                .map(|(index, slot)| {
                    let response = PartitionProduceResponse::default()
                        .with_index(index)
                        .with_log_append_time_ms(-1);
                    let error = |e: &ApiError| {
                        PartitionProduceResponse::default()
                            .with_index(index)
                            .with_log_append_time_ms(-1)
                            .with_error_code(e.code)
                            .with_base_offset(-1)
                            .with_error_message(Some(str_bytes(e.message.clone())))
                    };
                    match slot {
                        Slot::Error(e) => error(&e),
                        Slot::Append(i) => match &results[i] {
                            // A duplicate carries the original offsets: success, as Kafka.
                            Ok((info, _)) => response
                                .with_base_offset(info.base_offset)
                                .with_log_start_offset(info.log_start_offset),
                            Err(e) => error(e),
                        },
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// acks=all: waits until the in-sync replicas hold the batch ending at `last_offset`,
/// written in leader `epoch`; the error a producer gets otherwise.
async fn wait_replicated(
    partition: &Partition,
    last_offset: i64,
    epoch: i32,
    min_isr: usize,
    deadline: Instant,
) -> Result<(), ApiError> {
    let name = format!("{}-{}", partition.topic, partition.index);
    partition
        .wait_replicated(last_offset, epoch, min_isr, deadline)
        .await
        .map_err(|e| match e {
            NotReplicated::LeadershipLost => ApiError::new(
                ResponseError::NotLeaderOrFollower,
                format!("leadership of {name} moved before the batch at {last_offset} was replicated"),
            ),
            // Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND: the write is in, but the ISR shrank
            // below the minimum while it was replicated.
            NotReplicated::IsrShrank => ApiError::new(
                ResponseError::NotEnoughReplicasAfterAppend,
                format!(
                    "{name}: the in-sync replica set shrank below min.insync.replicas={min_isr}"
                ),
            ),
            NotReplicated::TimedOut => ApiError::new(
                ResponseError::RequestTimedOut,
                format!(
                    "{name}: the batch at {last_offset} was not replicated to the in-sync replicas in time"
                ),
            ),
        })
}
