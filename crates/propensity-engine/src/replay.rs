//! Replay ordering: merging a file of visitor events, a file of consent
//! records and (optionally) a file of offer feedback into one processing
//! order, by record time. Pure, so file replay, training and evaluation all
//! see the same order and so the same decisions.
//!
//! Order: by record timestamp; at equal times consent, then feedback, then
//! events (the consent-first rule of the Kafka runtime: a consent record
//! written no later than an event is applied before it; feedback, read the
//! same way, likewise); otherwise input order (stable sort). A line without a readable timestamp (it will be dead-lettered)
//! keeps the time of the line before it in its file, so it stays near its
//! neighbours and the merge remains deterministic.

use std::borrow::Cow;

use serde::Deserialize;

use crate::engine::{Engine, EngineSink};
use crate::timestamp::parse_rfc3339;
use crate::wire::Origin;

/// Which input a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordKind {
    /// The consent input (sorts first at equal times).
    Consent,
    /// The visitor-event input.
    Event,
}

/// A record's place in the merged order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderedRecord {
    /// Input.
    pub kind: RecordKind,
    /// Index of the line within its input.
    pub index: usize,
    /// Record time used for ordering.
    pub time_ms: i64,
}

#[derive(Deserialize)]
struct TimeOnly<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
}

/// The timestamp of a JSON record, if it has a readable one.
pub fn record_time(bytes: &[u8]) -> Option<i64> {
    let t: TimeOnly<'_> = serde_json::from_slice(bytes).ok()?;
    parse_rfc3339(t.timestamp.as_deref()?).map(|t| t.epoch_ms)
}

fn times(lines: &[&[u8]]) -> Vec<i64> {
    let mut last = i64::MIN;
    lines
        .iter()
        .map(|l| {
            if let Some(t) = record_time(l) {
                last = t;
            }
            last
        })
        .collect()
}

/// The merged processing order of two inputs.
pub fn merge_order(events: &[&[u8]], consent: &[&[u8]]) -> Vec<OrderedRecord> {
    let mut order: Vec<OrderedRecord> = times(consent)
        .into_iter()
        .enumerate()
        .map(|(index, time_ms)| OrderedRecord {
            kind: RecordKind::Consent,
            index,
            time_ms,
        })
        .chain(
            times(events)
                .into_iter()
                .enumerate()
                .map(|(index, time_ms)| OrderedRecord {
                    kind: RecordKind::Event,
                    index,
                    time_ms,
                }),
        )
        .collect();
    order.sort_by(|a, b| a.time_ms.cmp(&b.time_ms).then(a.kind.cmp(&b.kind)));
    order
}

/// Names of the inputs, for dead-letter origins.
#[derive(Debug, Clone)]
pub struct ReplaySources<'a> {
    /// Event file name.
    pub events: &'a str,
    /// Consent file name.
    pub consent: &'a str,
    /// Feedback file name (when there is a feedback input).
    pub feedback: &'a str,
}

/// One step of a replay: a record of the events/consent order, or the
/// feedback record at this index.
enum Step {
    Record(OrderedRecord),
    Feedback(usize),
}

/// [`merge_order`] with the feedback records merged in: at equal times
/// after consent and before events, else in input order.
fn replay_order(events: &[&[u8]], consent: &[&[u8]], feedback: &[&[u8]]) -> Vec<Step> {
    // (time, rank at equal times, position) sorts stably: the two-input
    // order is already sorted, and feedback keeps its input order.
    let mut keyed: Vec<(i64, u8, usize, Step)> = merge_order(events, consent)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let rank = if r.kind == RecordKind::Consent { 0 } else { 2 };
            (r.time_ms, rank, i, Step::Record(r))
        })
        .chain(
            times(feedback)
                .into_iter()
                .enumerate()
                .map(|(i, t)| (t, 1, i, Step::Feedback(i))),
        )
        .collect();
    keyed.sort_by_key(|(t, rank, i, _)| (*t, *rank, *i));
    keyed.into_iter().map(|(_, _, _, s)| s).collect()
}

/// Runs an engine over the inputs in merged order, then `finish`es it.
/// Decision time is the event time, so output is reproducible. `progress`
/// is called every 65,536 records with the count so far.
pub fn replay(
    engine: &mut Engine,
    events: &[&[u8]],
    consent: &[&[u8]],
    feedback: &[&[u8]],
    sources: &ReplaySources<'_>,
    sink: &mut impl EngineSink,
    mut progress: impl FnMut(usize),
) {
    for (n, step) in replay_order(events, consent, feedback)
        .into_iter()
        .enumerate()
    {
        if n % 65_536 == 0 && n > 0 {
            progress(n);
        }
        let rec = match step {
            Step::Record(rec) => rec,
            Step::Feedback(index) => {
                let origin = Origin::File {
                    file: sources.feedback.to_owned(),
                    line: index as u64 + 1,
                };
                engine.process_feedback(None, feedback[index], &origin, sink);
                continue;
            }
        };
        match rec.kind {
            RecordKind::Event => {
                let origin = Origin::File {
                    file: sources.events.to_owned(),
                    line: rec.index as u64 + 1,
                };
                engine.process_event(None, events[rec.index], &origin, None, sink);
            }
            RecordKind::Consent => {
                let origin = Origin::File {
                    file: sources.consent.to_owned(),
                    line: rec.index as u64 + 1,
                };
                engine.process_consent(
                    None,
                    Some(consent[rec.index]),
                    rec.time_ms,
                    &origin,
                    None,
                    sink,
                );
            }
        }
    }
    engine.finish(sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_goes_between_consent_and_events_at_equal_times() {
        let t0: &[u8] = br#"{"timestamp":"2026-11-29T10:00:00Z"}"#;
        let t1: &[u8] = br#"{"timestamp":"2026-11-29T10:00:01Z"}"#;
        let steps = replay_order(&[t0, t1], &[t0], &[t1, t0]);
        let names: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Record(r) => format!("{:?}{}", r.kind, r.index),
                Step::Feedback(i) => format!("Feedback{i}"),
            })
            .collect();
        assert_eq!(
            names,
            ["Consent0", "Feedback1", "Event0", "Feedback0", "Event1"]
        );
    }

    #[test]
    fn consent_first_at_equal_times_and_bad_lines_stay_near() {
        let ev: Vec<&[u8]> = vec![
            br#"{"timestamp":"2026-11-29T10:00:01Z"}"#,
            b"garbage",
            br#"{"timestamp":"2026-11-29T10:00:00Z"}"#,
        ];
        let co: Vec<&[u8]> = vec![br#"{"timestamp":"2026-11-29T10:00:00Z"}"#];
        let order: Vec<(RecordKind, usize)> = merge_order(&ev, &co)
            .into_iter()
            .map(|r| (r.kind, r.index))
            .collect();
        assert_eq!(
            order,
            vec![
                (RecordKind::Consent, 0),
                (RecordKind::Event, 2),
                (RecordKind::Event, 0),
                (RecordKind::Event, 1)
            ]
        );
    }
}
