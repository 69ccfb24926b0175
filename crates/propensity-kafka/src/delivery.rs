//! Delivery reports of the transactional producer: it notes whether the
//! broker (or librdkafka) refused a record for what the record *is* — too
//! large, invalid, against a topic policy — as opposed to failures of the
//! moment (timeouts, an unreachable broker, a fenced producer).
//!
//! A refused record fails its whole transaction, and the same input would
//! produce the same record again after the rewind, forever. The pipeline
//! uses this distinction to isolate such an input record and dead-letter it
//! in a minimal form (see `pipeline`), instead of stalling every partition;
//! failures of the moment never lead there, so an outage never turns
//! healthy input into dead letters.

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};

/// Producer context that counts refused deliveries.
#[derive(Debug, Default)]
pub struct DeliveryWatch {
    refused: AtomicU64,
}

impl DeliveryWatch {
    /// Refused deliveries since the last call (and resets the count).
    pub fn take_refused(&self) -> u64 {
        self.refused.swap(0, Ordering::AcqRel)
    }

    /// Notes a record refused synchronously by `send`.
    pub fn note_refused(&self) {
        self.refused.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether an error says the record itself can never be produced as it is.
pub fn is_refusal(e: &RdKafkaError) -> bool {
    let code = match e {
        RdKafkaError::MessageProduction(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::PolicyViolation
    )
}

impl ClientContext for DeliveryWatch {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::client_log::forward_log(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        crate::client_log::forward_error(&error, reason);
    }
}

impl ProducerContext for DeliveryWatch {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((e, _)) = result {
            if is_refusal(e) {
                tracing::warn!(error = %e, "the broker refused a record");
                self.note_refused();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_validity_errors_are_refusals_outages_are_not() {
        let refusal = RdKafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(is_refusal(&refusal));
        for e in [
            RdKafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            RdKafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure),
            RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
            RdKafkaError::Flush(RDKafkaErrorCode::MessageSizeTooLarge),
        ] {
            assert!(!is_refusal(&e), "{e} is not a refusal");
        }
    }
}
