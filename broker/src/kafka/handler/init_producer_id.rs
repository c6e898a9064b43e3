//! InitProducerId (API key 22) for idempotent producers (KIP-98), with the KIP-360 epoch
//! bump.
//!
//! ```text
//! producer_id = -1                ──▶ a new id from this broker's block (from the controller), epoch 0
//! producer_id/epoch known (v3+)   ──▶ the same id, epoch + 1 (a new id, epoch 0, on overflow)
//! transactional_id set            ──▶ INVALID_REQUEST: transactions are not supported
//! no id left, controller lease lapsed ──▶ connection closed: the client asks another broker
//! ```
//!
//! Kafka's transaction coordinator answers every non-transactional request with a fresh id.
//! Here a producer that names its current id and epoch gets that id back with the next epoch
//! instead, as KIP-360 allows: the partitions then see a new epoch starting at sequence 0,
//! and batches of the old epoch are refused with `INVALID_PRODUCER_EPOCH`.
//!
//! Transactions are out of scope, and `FindCoordinator` is not advertised, so real
//! transactional clients fail before they get here. A raw request with a transactional id is
//! answered `INVALID_REQUEST` (42), which every client treats as fatal, rather than a
//! coordinator error (`NOT_COORDINATOR`, `COORDINATOR_NOT_AVAILABLE`), which clients retry
//! forever, or `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`, which would send the user looking for
//! an ACL problem that does not exist.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::CloseConnection;
use crate::controller::{Command, Outcome};
use crate::server::BrokerContext;

/// Highest epoch handed out; Kafka keeps `Short.MAX_VALUE` free, and bumping past this gives
/// the producer a new id instead (Kafka's `TransactionMetadata.isEpochExhausted`).
const MAX_PRODUCER_EPOCH: i16 = i16::MAX - 1;

/// How often a pending producer id allocation checks that this broker still holds its
/// controller lease.
const LEASE_CHECK: Duration = Duration::from_millis(100);

/// A broker whose controller lease lapsed has no way to get a producer id block. An error
/// answer would bring the client straight back: librdkafka retries InitProducerId on a
/// broker it is connected to, and a client that learned of this broker from the others
/// may be connected to it alone. Closing the connection sends it to another broker.
fn cut_off() -> CloseConnection {
    CloseConnection(
        "InitProducerId needs a producer id block from the controller, and this broker has \
         lost contact with it"
            .to_string(),
    )
}

pub async fn init_producer_id(
    ctx: &Arc<BrokerContext>,
    request: InitProducerIdRequest,
) -> Result<InitProducerIdResponse, CloseConnection> {
    let error = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(transactional_id) = &request.transactional_id {
        tracing::info!(
            transactional_id = %transactional_id.0,
            "InitProducerId for a transactional producer refused: transactions are not supported"
        );
        return Ok(error(ResponseError::InvalidRequest));
    }
    let current_id = request.producer_id.0;
    let current_epoch = request.producer_epoch;
    let bump = current_id >= 0
        && (0..MAX_PRODUCER_EPOCH).contains(&current_epoch)
        && ctx.replicas.is_allocated_producer_id(current_id);
    if bump {
        tracing::debug!(
            producer_id = current_id,
            producer_epoch = current_epoch + 1,
            "bumped producer epoch"
        );
        return Ok(InitProducerIdResponse::default()
            .with_producer_id(ProducerId(current_id))
            .with_producer_epoch(current_epoch + 1));
    }
    if current_id >= 0 && current_epoch < 0 {
        // KIP-360: an id without an epoch (or an epoch without an id) is malformed.
        return Ok(error(ResponseError::InvalidRequest));
    }
    // Ids come from blocks the controller hands out; a new block is committed through
    // the metadata quorum before any id from it is used, so ids never repeat.
    let id = loop {
        if let Some(id) = ctx.replicas.take_producer_id() {
            break id;
        }
        if ctx.lease_lapsed() {
            return Err(cut_off());
        }
        let command = Command::AllocateProducerIds {
            broker_id: ctx.config.broker_id,
        };
        // Raced against the lease: a broker cut off from the controller would otherwise
        // hold the request for the whole controller timeout, longer than clients wait.
        let submit = ctx.submit(command);
        tokio::pin!(submit);
        let result = loop {
            tokio::select! {
                result = &mut submit => break result,
                () = tokio::time::sleep(LEASE_CHECK) => {
                    if ctx.lease_lapsed() {
                        return Err(cut_off());
                    }
                }
            }
        };
        match result {
            Ok(Outcome::ProducerIds { start, end }) => {
                tracing::info!(start, end, "got a block of producer ids");
                ctx.replicas.add_producer_id_block(start, end);
            }
            Ok(other) => {
                tracing::error!(?other, "unexpected answer to a producer id allocation");
                return Ok(error(ResponseError::UnknownServerError));
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot allocate a producer id");
                return Ok(InitProducerIdResponse::default()
                    .with_error_code(e.code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1));
            }
        }
    };
    tracing::debug!(producer_id = id, "allocated producer id");
    Ok(InitProducerIdResponse::default()
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(0))
}
