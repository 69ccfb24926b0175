//! librdkafka's log and error callbacks, forwarded to `tracing` once.
//!
//! rdkafka's default callbacks log with the target `librdkafka` *and* start
//! the message with `librdkafka:`, so a subscriber that prints targets (the
//! binary's does) writes `librdkafka: librdkafka: FAIL …`. Every client
//! context of this crate forwards to [`forward_log`] / [`forward_error`]
//! instead, which keep the target (so `RUST_LOG=librdkafka=warn` still
//! selects these lines) and put librdkafka's facility in a field.
//! [`LoggedContext`] is the context of clients that need nothing else.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};

/// The `tracing` target of every line librdkafka writes.
pub const TARGET: &str = "librdkafka";

/// One librdkafka log line, at the matching `tracing` level.
pub fn forward_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    // `tracing` levels must be constants at each call site, hence the match.
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: TARGET, facility, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: TARGET, facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: TARGET, facility, "{message}");
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: TARGET, facility, "{message}"),
    }
}

/// A global client error (broker down, authentication failed, …).
pub fn forward_error(error: &RdKafkaError, reason: &str) {
    tracing::error!(target: TARGET, error = %error, "{reason}");
}

/// The client context of clients without callbacks of their own: logs
/// through [`forward_log`] and [`forward_error`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LoggedContext;

impl ClientContext for LoggedContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        forward_error(&error, reason);
    }
}

impl ConsumerContext for LoggedContext {}

impl ProducerContext for LoggedContext {
    type DeliveryOpaque = ();

    /// Delivery results are read from the producer by its owner (flush,
    /// errors on send); nothing to do per record here.
    fn delivery(&self, _result: &DeliveryResult<'_>, _opaque: ()) {}
}
