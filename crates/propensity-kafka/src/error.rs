//! The Kafka runtime's one error type, split by who must act: the user
//! (configuration, topics), the broker (transient, retried) or us (fatal).
//!
//! Messages are meant to be printed with their cause chain (`{:#}` in the
//! binary), so a variant either shows a wrapped error's text or exposes it
//! as its `source`, never both: doing both printed every librdkafka error
//! twice (`kafka: X: X`).

use thiserror::Error;

/// Errors of the Kafka runtime.
#[derive(Debug, Error)]
pub enum KafkaError {
    /// A configuration key is invalid.
    #[error("config key `{key}`: {message}")]
    Config {
        /// Key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Topics are missing or incompatible.
    #[error("topic check failed: {0}")]
    Topics(String),
    /// A librdkafka client error. Its text is shown here and it is not
    /// exposed as the source (see the module doc); the librdkafka error's
    /// own source is its bare code, which its text already contains.
    #[error("kafka: {0}")]
    Client(rdkafka::error::KafkaError),
    /// The bootstrap brokers did not answer: down, unreachable, refusing
    /// the connection or the handshake, or too slow. The one message a
    /// network failure gets, naming the brokers once and what to check.
    #[error("broker {brokers} unreachable: {cause}. Check that it is running and reachable from this host, that `kafka.brokers` names it, and that the `kafka.client` security settings match its listener")]
    Unreachable {
        /// The configured bootstrap servers (`kafka.brokers`).
        brokers: String,
        /// What librdkafka reported, without the broker's address.
        cause: String,
    },
    /// The engine refused something (models, state).
    #[error(transparent)]
    Engine(#[from] propensity_engine::EngineError),
    /// The producer was fenced or hit a fatal error.
    #[error("fatal producer error: {0}")]
    Fatal(String),
    /// A reader made no progress for too long although records wait (the
    /// caller aborts and rebuilds, and the partition shows as stalled).
    #[error("reading `{topic}` made no progress for {secs} s: {why}")]
    NoProgress {
        /// Topic read.
        topic: String,
        /// Seconds without progress.
        secs: u64,
        /// What was last seen.
        why: String,
    },
    /// Shut down while waiting.
    #[error("shutting down")]
    Shutdown,
}

impl From<rdkafka::error::KafkaError> for KafkaError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        KafkaError::Client(e)
    }
}

/// librdkafka error codes that mean "the brokers did not answer" rather
/// than "the brokers answered no".
fn is_network_code(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::MessageTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::Resolve
            | C::Authentication
            | C::SaslAuthenticationFailed
            | C::SSL
            | C::TimedOutQueue
    )
}

impl KafkaError {
    /// A librdkafka error of a call to the brokers of `brokers`: a network
    /// failure becomes [`KafkaError::Unreachable`] (naming the brokers),
    /// anything else stays a client error.
    pub fn from_call(brokers: &str, e: rdkafka::error::KafkaError) -> Self {
        // rdkafka reports no code for admin-operation errors; they carry one.
        let code = match &e {
            rdkafka::error::KafkaError::AdminOp(code) => Some(*code),
            other => other.rdkafka_error_code(),
        };
        match code {
            Some(code) if is_network_code(code) => KafkaError::Unreachable {
                brokers: brokers.to_owned(),
                cause: e.to_string(),
            },
            _ => KafkaError::Client(e),
        }
    }

    /// This error as a person reads it in logs and `/readyz`: a client
    /// error that means the brokers did not answer names them and what to
    /// check ([`KafkaError::Unreachable`]); anything else is unchanged.
    pub fn reported(self, brokers: &str) -> Self {
        match self {
            KafkaError::Client(e) => KafkaError::from_call(brokers, e),
            other => other,
        }
    }

    /// Whether this is a broker outage (retry later) rather than something
    /// a user must change.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, KafkaError::Unreachable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError as RdKafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    /// The whole chain as the binary prints it (`{:#}` of anyhow).
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut next = e.source();
        while let Some(s) = next {
            text.push_str(": ");
            text.push_str(&s.to_string());
            next = s.source();
        }
        text
    }

    #[test]
    fn client_errors_print_their_text_once() {
        let e = KafkaError::from(RdKafkaError::AdminOp(RDKafkaErrorCode::PolicyViolation));
        let text = chain(&e);
        assert_eq!(text.matches("PolicyViolation").count(), 1, "{text}");
    }

    #[test]
    fn network_failures_name_the_brokers_once_and_what_to_check() {
        let e = KafkaError::from_call(
            "k1:9092,k2:9092",
            RdKafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut),
        );
        assert!(e.is_unreachable());
        let text = chain(&e);
        assert_eq!(text.matches("k1:9092,k2:9092").count(), 1, "{text}");
        assert_eq!(text.matches("OperationTimedOut").count(), 1, "{text}");
        assert!(text.contains("kafka.brokers"), "{text}");
        let refused = KafkaError::from_call(
            "k:1",
            RdKafkaError::AdminOp(RDKafkaErrorCode::TopicAuthorizationFailed),
        );
        assert!(!refused.is_unreachable(), "an answer is not an outage");
    }

    /// Errors of the running pipeline (a batch, a restore) are reported the
    /// same way: an outage names the brokers, other errors are unchanged.
    #[test]
    fn pipeline_errors_report_an_outage_with_the_brokers() {
        let outage = KafkaError::Client(RdKafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure,
        ))
        .reported("k:9092");
        assert!(outage.is_unreachable(), "{outage}");
        assert!(
            outage.to_string().contains("broker k:9092 unreachable"),
            "{outage}"
        );
        let other = KafkaError::Client(RdKafkaError::MessageConsumption(
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ))
        .reported("k:9092");
        assert!(!other.is_unreachable(), "{other}");
        let fatal = KafkaError::Fatal("fenced".into()).reported("k:9092");
        assert_eq!(fatal.to_string(), "fatal producer error: fenced");
    }
}
