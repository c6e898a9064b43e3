//! DeleteRecords: advance a partition's log start offset on its leader; offset -1 means the
//! high watermark, and offsets past it are out of range. Segments wholly below the new start
//! are deleted; followers follow the leader's log start through replication.

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
                        let result = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        let partition = match &topic {
                            Some(topic) => match topic.lookup(p.partition_index, me) {
                                Ok(partition) => partition,
                                Err(e) => return result.with_error_code(e.code),
                            },
                            None => {
                                return result
                                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            }
                        };
                        let mut log = match partition.leader_log() {
                            Ok((log, _)) => log,
                            Err(e) => return result.with_error_code(e.code),
                        };
                        let hw = log.high_watermark();
                        let offset = if p.offset == -1 { hw } else { p.offset };
                        if offset < 0 || offset > hw {
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
