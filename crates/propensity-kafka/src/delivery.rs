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
//!
//! It also owns how producers' delivery reports are served while waiting
//! ([`serve_then_pause`], [`serve_until`]): never with rust-rdkafka's
//! `poll(d)` for `d > 0`, which busy-loops (see [`serve_then_pause`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Partitioner, ProducerContext};

/// How long a waiting producer pauses between two servings of its events:
/// a delivery report waits at most this long to be served.
pub const DELIVERY_POLL_PAUSE: Duration = Duration::from_millis(1);

/// Serves the producer's queued events (delivery reports, errors) without
/// blocking, then sleeps `pause`.
///
/// Why not `producer.poll(pause)`: rust-rdkafka 0.39 hands librdkafka the
/// time left before its deadline in whole milliseconds, so once less than
/// a millisecond is left it polls with timeout 0 over and over until the
/// deadline: `poll(1 ms)` is a millisecond of busy CPU, and every longer
/// poll ends with one. The pipeline waited in 1 ms polls while draining
/// deliveries and, on a helper thread, during every transactional call:
/// that spinning took about a third of the process's CPU under
/// `bench --kafka`, CPU the broker on the same cores needed to finish the
/// very commit being waited for.
pub fn serve_then_pause<C, Part>(producer: &BaseProducer<C, Part>, pause: Duration)
where
    C: ProducerContext<Part>,
    Part: Partitioner,
{
    producer.poll(Duration::ZERO);
    std::thread::sleep(pause);
}

/// Serves the producer's events every [`DELIVERY_POLL_PAUSE`] until `done`
/// is set (parked in between; unpark the thread after setting `done` to
/// end the wait at once).
pub fn serve_until<C, Part>(producer: &BaseProducer<C, Part>, done: &AtomicBool)
where
    C: ProducerContext<Part>,
    Part: Partitioner,
{
    while !done.load(Ordering::Acquire) {
        producer.poll(Duration::ZERO);
        std::thread::park_timeout(DELIVERY_POLL_PAUSE);
    }
}

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
    use rdkafka::ClientConfig;

    /// CPU time (user + system) the calling thread has used, in clock
    /// ticks (`/proc/thread-self/stat` fields 14 and 15).
    fn thread_cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
        // The command name (field 2) may hold spaces: count after its ')'.
        let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }

    fn idle_producer() -> BaseProducer<DeliveryWatch> {
        // No broker behind it: nothing is ever delivered, so a wait only
        // costs what the waiting itself burns.
        ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create_with_context(DeliveryWatch::default())
            .expect("producer")
    }

    /// Ticks are 10 ms: a second of spinning is ~100, even a thread that
    /// gets a third of a busy core spins ~33; serving every millisecond and
    /// sleeping in between costs a few.
    const MOST_TICKS_PER_IDLE_SECOND: u64 = 20;

    #[test]
    fn serving_deliveries_until_done_sleeps_instead_of_spinning() {
        let producer = idle_producer();
        let done = AtomicBool::new(false);
        let before = thread_cpu_ticks();
        std::thread::scope(|scope| {
            let (waiter, done) = (std::thread::current(), &done);
            scope.spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                done.store(true, Ordering::Release);
                waiter.unpark();
            });
            serve_until(&producer, done);
        });
        let used = thread_cpu_ticks() - before;
        assert!(
            used < MOST_TICKS_PER_IDLE_SECOND,
            "serving an idle producer for 1 s used {used} ticks of CPU"
        );
    }

    #[test]
    fn pausing_between_servings_sleeps_instead_of_spinning() {
        let producer = idle_producer();
        let before = thread_cpu_ticks();
        for _ in 0..500 {
            serve_then_pause(&producer, Duration::from_millis(2));
        }
        let used = thread_cpu_ticks() - before;
        assert!(
            used < MOST_TICKS_PER_IDLE_SECOND,
            "500 pauses of 2 ms used {used} ticks of CPU"
        );
    }

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
