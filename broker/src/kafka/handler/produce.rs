//! Produce: validate each partition's record batches, append them to the leader's log, and
//! answer according to `acks` (0: no response, 1 and -1: after the append; on a single
//! broker the high watermark moves with the append, so acks=all waits for nothing more).
//!
//! Idempotent producers: a retried batch the log already holds is answered with error code 0
//! and the offset the original got (the log appends nothing); a sequence gap or a fenced
//! epoch is answered `OUT_OF_ORDER_SEQUENCE_NUMBER` (45) or `INVALID_PRODUCER_EPOCH` (47),
//! through `Error::kafka_error_code` like every other log error.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use super::{blocking, str_bytes};
use crate::controller::topic_config;
use crate::server::replica_manager::{now_ms, Partition};
use crate::server::BrokerContext;

/// Where one partition's answer comes from.
enum Slot {
    Error(i16, String),
    Append(usize),
}

pub async fn produce(
    ctx: &Arc<BrokerContext>,
    request: ProduceRequest,
    _version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let valid_acks = matches!(acks, -1..=1);
    // Work to run on the blocking pool: (partition, records).
    let mut appends: Vec<(Arc<Partition>, bytes::Bytes)> = Vec::new();
    let mut layout: Vec<(kafka_protocol::messages::TopicName, Vec<(i32, Slot)>)> = Vec::new();
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = ctx.replicas.topic(&name);
        let mut slots = Vec::with_capacity(topic_data.partition_data.len());
        for p in topic_data.partition_data {
            let slot = if !valid_acks {
                Slot::Error(
                    ResponseError::InvalidRequiredAcks.code(),
                    format!("acks must be -1, 0 or 1, not {acks}"),
                )
            } else if let Some(partition) = topic.as_ref().and_then(|t| t.partition(p.index)) {
                let min_isr = topic
                    .as_ref()
                    .map(|t| topic_config::min_insync_replicas(&t.record.configs))
                    .unwrap_or(1);
                if acks == -1 && min_isr > 1 {
                    Slot::Error(
                        ResponseError::NotEnoughReplicas.code(),
                        format!("min.insync.replicas={min_isr} but the in-sync replica set has 1 member"),
                    )
                } else {
                    match p.records {
                        Some(records) if !records.is_empty() => {
                            appends.push((partition.clone(), records));
                            Slot::Append(appends.len() - 1)
                        }
                        // Kafka's ProduceRequest.validateRecords: at least one batch.
                        _ => Slot::Error(
                            ResponseError::InvalidRecord.code(),
                            "the request carries no record batch".into(),
                        ),
                    }
                }
            } else {
                Slot::Error(
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("this server does not host {name}-{}", p.index),
                )
            };
            slots.push((p.index, slot));
        }
        layout.push((topic_data.name, slots));
    }

    let results = if appends.is_empty() {
        Vec::new()
    } else {
        let results = blocking(move || {
            let now = now_ms();
            appends
                .into_iter()
                .map(|(partition, records)| {
                    let Some(mut log) = partition.log() else {
                        let e = partition.deleted_error();
                        return Err((e.code, e.message));
                    };
                    let mut records = records.to_vec();
                    log.append_as_leader(&mut records, now).map_err(|e| {
                        tracing::debug!(
                            topic = %partition.topic, partition = partition.index, error = %e,
                            "produce rejected"
                        );
                        (e.kafka_error_code(), e.to_string())
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

    let responses = layout
        .into_iter()
        .map(|(name, slots)| {
            let partition_responses = slots
                .into_iter()
                .map(|(index, slot)| {
                    let response = PartitionProduceResponse::default()
                        .with_index(index)
                        .with_log_append_time_ms(-1);
                    match slot {
                        Slot::Error(code, message) => response
                            .with_error_code(code)
                            .with_base_offset(-1)
                            .with_error_message(Some(str_bytes(message))),
                        Slot::Append(i) => match &results[i] {
                            // A duplicate carries the original offsets: success, as Kafka.
                            Ok(info) => response
                                .with_base_offset(info.base_offset)
                                .with_log_start_offset(info.log_start_offset),
                            Err((code, message)) => response
                                .with_error_code(*code)
                                .with_base_offset(-1)
                                .with_error_message(Some(str_bytes(message.clone()))),
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
