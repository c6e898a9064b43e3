//! DeleteRecords: advance a partition's log start offset; offset -1 means the high
//! watermark. Segments wholly below the new start are deleted.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::blocking;
use crate::server::BrokerContext;

pub async fn delete_records(
    ctx: &Arc<BrokerContext>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
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
                    .map(|p| {
                        let result = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        let Some(partition) =
                            topic.as_ref().and_then(|t| t.partition(p.partition_index))
                        else {
                            return result
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        let Some(mut log) = partition.log() else {
                            return result
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        let offset = if p.offset == -1 {
                            log.log_end_offset()
                        } else {
                            p.offset
                        };
                        if offset < 0 {
                            return result.with_error_code(ResponseError::OffsetOutOfRange.code());
                        }
                        match log.delete_records_before(offset) {
                            Ok(low_watermark) => result.with_low_watermark(low_watermark),
                            Err(e) => result.with_error_code(e.kafka_error_code()),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await;
    DeleteRecordsResponse::default().with_topics(topics)
}
