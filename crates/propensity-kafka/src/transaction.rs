//! The transactional producer's blocking calls, and the decisions around
//! them: what to retry, when to abort, when to give up on the producer and
//! make a new one.
//!
//! librdkafka's `commit_transaction` and `abort_transaction` wait for every
//! queued record to be delivered or purged, and those outcomes arrive as
//! delivery reports on the producer's event queue. A `BaseProducer` has no
//! thread of its own serving that queue, so while one of these calls runs a
//! scoped thread polls it ([`while_polling`]); without it an abort can fail
//! with "message(s) remaining: the event queue must be polled" and every
//! later call with "Conflicting abort_transaction API call is already in
//! progress", which left partitions stuck for good.
//!
//! The decisions are written against [`Failure`] (a classification, not a
//! librdkafka type) so that they are unit-tested without a broker:
//! - a retriable failure repeats the *same* call (librdkafka resumes a
//!   timed-out commit or abort when it is called again), a bounded number
//!   of times;
//! - a commit that fails otherwise is aborted; an abort that keeps failing,
//!   or any fatal error (e.g. fenced), means the producer is replaced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::producer::Producer;

use crate::delivery::serve_until;
use crate::shard::{drain_deliveries, TxProducer};

/// How a failed transactional call must be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Call the same API again (librdkafka resumes it).
    Retriable,
    /// The transaction cannot commit: abort it and rewind.
    Abortable,
    /// The producer is unusable (fenced, fatal): replace it and rewind.
    Fatal,
}

/// A classified failure of a transactional call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// How to handle it.
    pub kind: FailureKind,
    /// librdkafka's message (no payloads: safe to log).
    pub message: String,
}

impl Failure {
    /// Classifies a librdkafka error.
    pub fn classify(e: &RdKafkaError) -> Self {
        let kind = match e {
            RdKafkaError::Transaction(r) if r.is_fatal() => FailureKind::Fatal,
            RdKafkaError::Transaction(r) if r.txn_requires_abort() => FailureKind::Abortable,
            RdKafkaError::Transaction(r) if r.is_retriable() => FailureKind::Retriable,
            _ => FailureKind::Abortable,
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

/// Retries of one call while librdkafka calls it retriable.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included).
    pub attempts: u32,
    /// Wait before the second attempt; doubled up to `max_backoff`.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Runs `call` until it succeeds, fails with a failure that is not
/// retriable, or the attempts are used up (the last failure is returned).
/// `retry_all` treats every non-fatal failure as retriable (used for
/// aborts: an abort is the way back, so it is driven to completion).
pub fn settle(
    mut call: impl FnMut() -> Result<(), Failure>,
    policy: RetryPolicy,
    retry_all: bool,
    mut wait: impl FnMut(Duration),
) -> Result<(), Failure> {
    let mut backoff = policy.first_backoff;
    let mut attempt = 1;
    loop {
        let failure = match call() {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        let again = match failure.kind {
            FailureKind::Retriable => true,
            FailureKind::Abortable => retry_all,
            FailureKind::Fatal => false,
        };
        if !again || attempt >= policy.attempts {
            return Err(failure);
        }
        tracing::warn!(error = %failure.message, attempt, "transactional call failed, retrying");
        wait(backoff);
        backoff = (backoff * 2).min(policy.max_backoff);
        attempt += 1;
    }
}

/// What a commit attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Committed.
    Committed,
    /// Not committed, and aborted: the caller rewinds.
    Aborted(Failure),
    /// Not committed, and the producer must be replaced (it may still hold
    /// the transaction open: a new producer with the same transactional id
    /// fences it and aborts it). The caller rewinds.
    ProducerLost(Failure),
}

/// What an abort came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortOutcome {
    /// Aborted: the producer is ready for the next transaction.
    Aborted,
    /// The abort could not be completed: replace the producer.
    ProducerLost(Failure),
}

/// The two calls that end a transaction, as the decisions need them.
pub trait TransactionEnd {
    /// Commits the open transaction (records queued so far included).
    fn commit(&self) -> Result<(), Failure>;
    /// Aborts the open transaction.
    fn abort(&self) -> Result<(), Failure>;
}

/// Ends a transaction by committing it: retriable failures are retried;
/// an abortable one is aborted (driven to completion); a fatal one, or an
/// abort that cannot complete, loses the producer.
pub fn commit_or_abort(
    txn: &impl TransactionEnd,
    policy: RetryPolicy,
    mut wait: impl FnMut(Duration),
) -> CommitOutcome {
    match settle(|| txn.commit(), policy, false, &mut wait) {
        Ok(()) => CommitOutcome::Committed,
        Err(f) if f.kind == FailureKind::Fatal => CommitOutcome::ProducerLost(f),
        Err(f) => match abort(txn, policy, wait) {
            AbortOutcome::Aborted => CommitOutcome::Aborted(f),
            AbortOutcome::ProducerLost(g) => CommitOutcome::ProducerLost(g),
        },
    }
}

/// Ends a transaction by aborting it, retrying until it completes; a fatal
/// failure or used-up attempts lose the producer.
pub fn abort(
    txn: &impl TransactionEnd,
    policy: RetryPolicy,
    wait: impl FnMut(Duration),
) -> AbortOutcome {
    match settle(|| txn.abort(), policy, true, wait) {
        Ok(()) => AbortOutcome::Aborted,
        Err(f) => AbortOutcome::ProducerLost(f),
    }
}

/// Runs `call` while a scoped thread serves the producer's event queue
/// (delivery reports), so librdkafka's blocking transactional calls can
/// finish.
pub fn while_polling<T>(producer: &TxProducer, call: impl FnOnce() -> T) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let server = scope.spawn(|| serve_until(producer, &done));
        let result = call();
        done.store(true, Ordering::Release);
        // Ends the server's pause now rather than up to a pause later.
        server.thread().unpark();
        result
    })
}

/// The real producer's end calls, each bounded by `timeout` and run while
/// the producer is polled.
pub struct PolledProducer<'a> {
    /// The producer.
    pub producer: &'a TxProducer,
    /// Timeout of one call.
    pub timeout: Duration,
}

impl TransactionEnd for PolledProducer<'_> {
    fn commit(&self) -> Result<(), Failure> {
        // Deliveries first, in 1 ms steps: rust-rdkafka's own flush inside
        // `commit_transaction` waits in 100 ms steps.
        drain_deliveries(self.producer, self.timeout).map_err(|e| Failure::classify(&e))?;
        while_polling(self.producer, || {
            self.producer.commit_transaction(self.timeout)
        })
        .map_err(|e| Failure::classify(&e))
    }

    fn abort(&self) -> Result<(), Failure> {
        while_polling(self.producer, || {
            self.producer.abort_transaction(self.timeout)
        })
        .map_err(|e| Failure::classify(&e))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    /// Scripted results of commit and abort calls, and a record of calls.
    struct Scripted {
        commits: RefCell<VecDeque<Result<(), Failure>>>,
        aborts: RefCell<VecDeque<Result<(), Failure>>>,
        calls: RefCell<Vec<&'static str>>,
    }

    impl Scripted {
        fn new(commits: Vec<Result<(), Failure>>, aborts: Vec<Result<(), Failure>>) -> Self {
            Self {
                commits: RefCell::new(commits.into()),
                aborts: RefCell::new(aborts.into()),
                calls: RefCell::new(Vec::new()),
            }
        }
    }

    impl TransactionEnd for Scripted {
        fn commit(&self) -> Result<(), Failure> {
            self.calls.borrow_mut().push("commit");
            self.commits.borrow_mut().pop_front().unwrap_or(Ok(()))
        }
        fn abort(&self) -> Result<(), Failure> {
            self.calls.borrow_mut().push("abort");
            self.aborts.borrow_mut().pop_front().unwrap_or(Ok(()))
        }
    }

    fn fail(kind: FailureKind) -> Result<(), Failure> {
        Err(Failure {
            kind,
            message: format!("{kind:?}"),
        })
    }

    const POLICY: RetryPolicy = RetryPolicy {
        attempts: 4,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
    };

    #[test]
    fn a_retriable_commit_failure_repeats_the_commit() {
        let txn = Scripted::new(vec![fail(FailureKind::Retriable), Ok(())], vec![]);
        let mut waits = Vec::new();
        let outcome = commit_or_abort(&txn, POLICY, |d| waits.push(d));
        assert_eq!(outcome, CommitOutcome::Committed);
        assert_eq!(*txn.calls.borrow(), ["commit", "commit"]);
        assert_eq!(waits, [Duration::from_millis(1)]);
    }

    #[test]
    fn an_abortable_commit_failure_aborts_and_reports_it() {
        let txn = Scripted::new(vec![fail(FailureKind::Abortable)], vec![]);
        let outcome = commit_or_abort(&txn, POLICY, |_| {});
        assert!(matches!(outcome, CommitOutcome::Aborted(f) if f.kind == FailureKind::Abortable));
        assert_eq!(*txn.calls.borrow(), ["commit", "abort"]);
    }

    #[test]
    fn retriable_failures_that_never_end_give_up_and_abort() {
        let txn = Scripted::new(vec![fail(FailureKind::Retriable); 10], vec![]);
        let outcome = commit_or_abort(&txn, POLICY, |_| {});
        assert!(matches!(outcome, CommitOutcome::Aborted(_)));
        assert_eq!(
            *txn.calls.borrow(),
            ["commit", "commit", "commit", "commit", "abort"]
        );
    }

    #[test]
    fn a_fatal_commit_failure_loses_the_producer_without_an_abort() {
        let txn = Scripted::new(vec![fail(FailureKind::Fatal)], vec![]);
        let outcome = commit_or_abort(&txn, POLICY, |_| {});
        assert!(matches!(outcome, CommitOutcome::ProducerLost(_)));
        assert_eq!(*txn.calls.borrow(), ["commit"]);
    }

    #[test]
    fn an_abort_is_driven_to_completion_through_failures() {
        // The failure seen in the field: the first abort times out with
        // records remaining, the next ones conflict with the abort still in
        // progress; calling abort again completes it.
        let txn = Scripted::new(
            vec![],
            vec![
                fail(FailureKind::Retriable),
                fail(FailureKind::Abortable),
                Ok(()),
            ],
        );
        assert_eq!(abort(&txn, POLICY, |_| {}), AbortOutcome::Aborted);
        assert_eq!(*txn.calls.borrow(), ["abort", "abort", "abort"]);
    }

    #[test]
    fn an_abort_that_cannot_complete_loses_the_producer() {
        let txn = Scripted::new(vec![], vec![fail(FailureKind::Abortable); 10]);
        assert!(matches!(
            abort(&txn, POLICY, |_| {}),
            AbortOutcome::ProducerLost(_)
        ));
        assert_eq!(txn.calls.borrow().len(), POLICY.attempts as usize);
        let fatal = Scripted::new(vec![], vec![fail(FailureKind::Fatal)]);
        assert!(matches!(
            abort(&fatal, POLICY, |_| {}),
            AbortOutcome::ProducerLost(_)
        ));
        assert_eq!(fatal.calls.borrow().len(), 1);
    }

    #[test]
    fn a_commit_whose_abort_fails_loses_the_producer() {
        let txn = Scripted::new(
            vec![fail(FailureKind::Abortable)],
            vec![fail(FailureKind::Fatal)],
        );
        assert!(matches!(
            commit_or_abort(&txn, POLICY, |_| {}),
            CommitOutcome::ProducerLost(_)
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let mut waits = Vec::new();
        let r = settle(
            || fail(FailureKind::Retriable),
            POLICY,
            false,
            |d| waits.push(d),
        );
        assert!(r.is_err());
        assert_eq!(
            waits,
            [
                Duration::from_millis(1),
                Duration::from_millis(2),
                Duration::from_millis(4)
            ]
        );
    }
}
