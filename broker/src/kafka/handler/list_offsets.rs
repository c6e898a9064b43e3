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
    // Only the leader answers, and clients see offsets below the high watermark only.
    let (log, epoch) = match partition.leader_log() {
        Ok(found) => found,
        Err(e) => return response.with_error_code(e.code),
    };
    // The leader epoch field exists from v4.
    if version >= 4 {
        response = response.with_leader_epoch(epoch);
    }
    let hw = log.high_watermark();
    let below_hw = |(offset, ts): (i64, i64)| (offset < hw).then_some((offset, ts));
    match timestamp {
        LATEST => response.with_offset(hw),
        EARLIEST | EARLIEST_LOCAL => response.with_offset(log.log_start_offset()),
        MAX_TIMESTAMP => match log.max_timestamp_offset().and_then(below_hw) {
            Some((offset, ts)) => response.with_offset(offset).with_timestamp(ts),
            None => response,
        },
        t if t >= 0 => match log.offset_for_timestamp(t) {
            Ok(Some(found)) => match below_hw(found) {
                Some((offset, ts)) => response.with_offset(offset).with_timestamp(ts),
                None => response,
            },
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
    let me = ctx.config.broker_id;
    let topics = blocking(move || {
        request
            .topics
            .into_iter()
            .map(|t| {
                let topic = replicas.topic(&t.name.0);
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let found = match &topic {
                            Some(topic) => topic.lookup(p.partition_index, me).map_err(|e| e.code),
                            None => Err(ResponseError::UnknownTopicOrPartition.code()),
                        };
                        match found {
                            Ok(partition) => lookup(&partition, p.timestamp, version),
                            Err(code) => ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                                .with_timestamp(-1)
                                .with_offset(-1),
                        }
                    })
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
