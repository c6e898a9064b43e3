//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4, the
//! same as earliest without tiered storage), or the earliest offset whose timestamp is at
//! least the one asked for.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::blocking;
use crate::server::replica_manager::Partition;
use crate::server::BrokerContext;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

fn lookup(partition: &Partition, timestamp: i64, version: i16) -> ListOffsetsPartitionResponse {
    let mut response = ListOffsetsPartitionResponse::default()
        .with_partition_index(partition.index)
        .with_timestamp(-1)
        .with_offset(-1);
    // The leader epoch field exists from v4; a single broker's partitions stay in epoch 0.
    if version >= 4 {
        response = response.with_leader_epoch(0);
    }
    let Some(log) = partition.log() else {
        return response.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    match timestamp {
        LATEST => response.with_offset(log.log_end_offset()),
        EARLIEST | EARLIEST_LOCAL => response.with_offset(log.log_start_offset()),
        MAX_TIMESTAMP => match log.max_timestamp_offset() {
            Some((offset, ts)) => response.with_offset(offset).with_timestamp(ts),
            None => response,
        },
        t if t >= 0 => match log.offset_for_timestamp(t) {
            Ok(Some((offset, ts))) => response.with_offset(offset).with_timestamp(ts),
            Ok(None) => response,
            Err(e) => response.with_error_code(e.kafka_error_code()),
        },
        _ => response.with_error_code(ResponseError::InvalidRequest.code()),
    }
}

pub async fn list_offsets(
    ctx: &Arc<BrokerContext>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let replicas = ctx.replicas.clone();
    let topics = blocking(move || {
        request
            .topics
            .into_iter()
            .map(|t| {
                let topic = replicas.topic(&t.name.0);
                let partitions = t
                    .partitions
                    .iter()
                    .map(
                        |p| match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                            Some(partition) => lookup(partition, p.timestamp, version),
                            None => ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                                .with_timestamp(-1)
                                .with_offset(-1),
                        },
                    )
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await;
    ListOffsetsResponse::default().with_topics(topics)
}
