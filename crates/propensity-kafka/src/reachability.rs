//! Failing fast when the brokers cannot be reached: one metadata request
//! to the bootstrap brokers, bounded by `kafka.probe_timeout_secs`, made
//! before a command starts work that would otherwise sit out librdkafka's
//! own timeouts (a minute for admin requests and flushes) and then report a
//! bare `OperationTimedOut`.
//!
//! The probe listens to librdkafka's error callback, which carries the
//! reason a connection failed ("Connection refused", "Name or service not
//! known", a TLS handshake failure): that reason, not the timeout, is what
//! an operator needs. librdkafka prefixes it with the broker's address; the
//! address is cut so that the final message names the brokers exactly once.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::client_config;
use crate::error::KafkaError;
use crate::settings::KafkaSettings;

/// Keeps the most telling connection error librdkafka reported.
#[derive(Default)]
struct ProbeContext {
    reason: Mutex<Option<String>>,
}

impl ClientContext for ProbeContext {
    // The probe speaks through its result; librdkafka's own log lines
    // would repeat the same failure once per reconnect attempt.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: crate::client_log::TARGET, ?level, facility, "{message}");
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        // "1/1 brokers are down" follows every failed connection and says
        // less than the connection error before it.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        // The first reason: later ones add "identical error(s) suppressed".
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert_with(|| reason.to_owned());
        }
    }
}

impl ConsumerContext for ProbeContext {}

/// Asks the bootstrap brokers for metadata, waiting at most
/// `kafka.probe_timeout_secs`; an unanswered request becomes
/// [`KafkaError::Unreachable`] with librdkafka's reason.
pub fn probe_brokers(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let timeout = Duration::from_secs_f64(settings.probe_timeout_secs);
    let consumer: BaseConsumer<ProbeContext> =
        client_config::reader(settings, "probe").create_with_context(ProbeContext::default())?;
    let Err(e) = consumer.fetch_metadata(None, timeout) else {
        return Ok(());
    };
    // Error events (and the log lines `-v` shows) wait in the client's
    // queue until it is served, one per poll.
    let reason = || {
        consumer
            .context()
            .reason
            .lock()
            .ok()
            .and_then(|r| r.clone())
    };
    for _ in 0..64 {
        if reason().is_some() {
            break;
        }
        if consumer.poll(Duration::ZERO).is_none() && reason().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let reason = reason();
    let cause = match reason {
        Some(r) => format!(
            "{} (no answer within {} s)",
            strip_addresses(&r),
            settings.probe_timeout_secs
        ),
        None => format!("no answer within {} s ({e})", settings.probe_timeout_secs),
    };
    Err(KafkaError::Unreachable {
        brokers: settings.brokers.clone(),
        cause,
    })
}

/// librdkafka's connection error without the broker's address, which the
/// message names once already: the `host:port/id: ` prefix goes, and so do
/// the clauses that repeat the address ("Connect to ipv4#127.0.0.1:1
/// failed: Connection refused" becomes "connect failed: Connection
/// refused").
fn strip_addresses(reason: &str) -> String {
    // `127.0.0.1:1/bootstrap: …` or `kafka-0:9092/1: …`
    let mut text = match reason.split_once(": ") {
        Some((head, tail)) if head.contains('/') && !head.contains(' ') => tail,
        _ => reason,
    }
    .to_owned();
    // "(after 0ms in state CONNECT)": librdkafka's timing, noise here.
    if let Some(i) = text.find(" (after ") {
        if text.ends_with(')') {
            text.truncate(i);
        }
    }
    for (start, end, replacement) in [
        ("Connect to ", " failed: ", "connect failed: "),
        (
            "Failed to resolve '",
            "': ",
            "cannot resolve the host name: ",
        ),
    ] {
        if let Some(i) = text.find(start) {
            if let Some(j) = text[i..].find(end) {
                text.replace_range(i..i + j + end.len(), replacement);
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_reasons_lose_the_address() {
        assert_eq!(
            strip_addresses("127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"),
            "connect failed: Connection refused"
        );
        assert_eq!(
            strip_addresses("nohost:9092/bootstrap: Failed to resolve 'nohost:9092': Name or service not known (after 2ms in state CONNECT)"),
            "cannot resolve the host name: Name or service not known"
        );
        assert_eq!(
            strip_addresses("k:9093/1: SSL handshake failed: certificate verify failed"),
            "SSL handshake failed: certificate verify failed"
        );
        assert_eq!(strip_addresses("something else: x"), "something else: x");
    }

    #[test]
    fn an_unreachable_broker_fails_within_the_probe_timeout() {
        let settings = KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            probe_timeout_secs: 1.0,
            ..KafkaSettings::default()
        };
        let started = std::time::Instant::now();
        let e = probe_brokers(&settings).expect_err("nothing listens on port 1");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let text = e.to_string();
        assert_eq!(text.matches("127.0.0.1:1").count(), 1, "{text}");
        assert!(
            text.contains("refused") || text.contains("no answer"),
            "{text}"
        );
    }
}
