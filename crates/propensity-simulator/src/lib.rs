//! Propensity simulator: deterministic, realistic synthetic visitor traffic
//! (events and consent records in wire contract v1) for exercising and
//! training the Propensity pipeline.
//!
//! This file owns the public API: [`generate`], [`write_lines`] and the result
//! types. The behaviour model lives in `behaviour`, consent scenarios in
//! `consent`, JSON encoding in `wire`, malformed lines in `malformed`.
//!
//! Determinism: output is a pure function of [`SimulationParams`]. Each
//! visitor draws from its own ChaCha8 stream of the seed, nothing iterates a
//! hash map, and no clock is read.

mod behaviour;
mod consent;
mod error;
mod malformed;
mod params;
mod profile;
mod sampling;
mod site;
pub mod timefmt;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use serde::Serialize;

pub use error::SimulationError;
pub use params::{
    ConsentMix, ConsentScenario, SimulationParams, DEFAULT_START_TIME_MS, MAX_SPAN_SECS,
};
pub use site::HOST;

/// One wire record with the metadata a producer needs to publish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimedLine {
    /// When the record happens (epoch ms); equals its `timestamp` field for
    /// valid records. Malformed lines carry a plausible time near a real event.
    pub time_ms: i64,
    /// The visitor the record belongs to (a natural partition key). For
    /// malformed lines this is the visitor they were modelled on, even when
    /// the line's own `visitor_id` is broken or absent.
    pub visitor_id: String,
    /// One JSON record (or, for some malformed lines, non-JSON text), no newline.
    pub line: String,
}

/// What [`generate`] produced, for reporting and assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrafficSummary {
    /// Distinct visitors.
    pub visitors: usize,
    /// Sessions over all visitors (1–3 per visitor).
    pub sessions: usize,
    /// Valid event lines (excludes `invalid_lines`).
    pub events: usize,
    /// Consent lines (consent states plus erasure requests).
    pub consent_records: usize,
    /// Malformed lines mixed into the events.
    pub invalid_lines: usize,
    /// Sessions that reached each outcome (`purchase`, `webinar_signup`,
    /// `application_complete`; all keys present). A session counts once per
    /// outcome.
    pub outcomes_reached: BTreeMap<String, usize>,
    /// Visitors per consent scenario, keyed by [`ConsentScenario::name`] (all
    /// keys present).
    pub visitors_by_consent_scenario: BTreeMap<String, usize>,
}

/// The generated streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedTraffic {
    /// Visitor events (valid and malformed), sorted by `time_ms`; ties keep
    /// generation order.
    pub events: Vec<TimedLine>,
    /// Consent records and erasure requests, sorted the same way.
    pub consent: Vec<TimedLine>,
    /// Counts describing the above.
    pub summary: TrafficSummary,
}

/// Generates traffic for `params`; identical params give identical output.
///
/// Errors: [`SimulationError::InvalidParameter`] naming the offending field.
pub fn generate(params: &SimulationParams) -> Result<GeneratedTraffic, SimulationError> {
    params.validate()?;
    let mut summary = TrafficSummary {
        visitors: params.visitors,
        outcomes_reached: behaviour::Outcome::ALL
            .iter()
            .map(|o| (o.name().to_owned(), 0))
            .collect(),
        visitors_by_consent_scenario: ConsentScenario::ALL
            .iter()
            .map(|s| (s.name().to_owned(), 0))
            .collect(),
        ..TrafficSummary::default()
    };
    // ~14 events and ~1.1 consent records per visitor on average.
    let mut events = Vec::with_capacity(params.visitors.saturating_mul(16));
    let mut consent = Vec::with_capacity(params.visitors.saturating_mul(2));
    // Validation bounds span_secs, so this cannot overflow.
    let span_ms = params.span_secs as i64 * 1000;

    for index in 0..params.visitors {
        let mut rng = sampling::stream_rng(params.seed, index as u64 + 1);
        let mut profile = profile::VisitorProfile::sample(&mut rng, index + 1);
        let offset_ms = rng.random_range(0..=span_ms);
        let first_start = params.start_time_ms + offset_ms;
        if params
            .campaign_after
            .is_some_and(|f| offset_ms as f64 >= f * span_ms as f64)
        {
            // A stream of its own (after every visitor's), so the usual
            // visitors' traffic is the same with or without the shift.
            let stream = params.visitors as u64 + 1 + index as u64;
            profile.join_campaign(&mut sampling::stream_rng(params.seed, stream));
        }
        let sessions = behaviour::simulate_visitor(&mut rng, &profile, first_start);
        // Drawn after the behaviour so that changing the consent mix leaves the
        // visitors' behaviour untouched.
        let scenario = consent::sample_scenario(&mut rng, &params.consent_mix);
        *summary
            .visitors_by_consent_scenario
            .entry(scenario.name().to_owned())
            .or_default() += 1;
        for record in consent::consent_records(&mut rng, scenario, profile.number, &sessions) {
            consent.push(TimedLine {
                time_ms: record.time_ms(),
                visitor_id: profile.visitor_id.clone(),
                line: wire::consent_line(&profile.visitor_id, &record)?,
            });
        }

        let mut event_number = 0;
        for (session_index, session) in sessions.iter().enumerate() {
            summary.sessions += 1;
            let session_id = profile
                .sends_session_id
                .then(|| wire::session_id(&profile, session_index));
            let mut reached = BTreeSet::new();
            for event in session {
                event_number += 1;
                let event_id = wire::event_id(&profile, event_number);
                events.push(TimedLine {
                    time_ms: event.time_ms,
                    visitor_id: profile.visitor_id.clone(),
                    line: wire::event_line(&profile, &event_id, session_id.as_deref(), event)?,
                });
                if let Some(outcome) = event.outcome {
                    reached.insert(outcome.name());
                }
            }
            for name in reached {
                *summary.outcomes_reached.entry(name.to_owned()).or_default() += 1;
            }
        }
    }
    summary.events = events.len();
    summary.consent_records = consent.len();

    // Malformed lines come from their own stream (0), modelled on random
    // valid events so their times and visitors are plausible.
    let invalid = malformed::malformed_count(summary.events, params.invalid_rate);
    let mut rng = sampling::stream_rng(params.seed, 0);
    for n in 1..=invalid {
        let anchor = &events[rng.random_range(0..summary.events)];
        let time_ms = anchor.time_ms + rng.random_range(0..1000);
        let visitor_id = anchor.visitor_id.clone();
        let line = malformed::malformed_line(&mut rng, n, &visitor_id, time_ms);
        events.push(TimedLine {
            time_ms,
            visitor_id,
            line,
        });
    }
    summary.invalid_lines = invalid;

    // Stable sorts: equal times keep generation order.
    events.sort_by_key(|l| l.time_ms);
    consent.sort_by_key(|l| l.time_ms);
    Ok(GeneratedTraffic {
        events,
        consent,
        summary,
    })
}

/// Writes each line's record followed by `\n`.
///
/// Output is staged in 64 KiB chunks, so an unbuffered writer (a raw file or
/// socket) still sees few large writes.
pub fn write_lines(lines: &[TimedLine], out: &mut impl std::io::Write) -> std::io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let mut buffer = Vec::with_capacity(CHUNK + 1024);
    for line in lines {
        buffer.extend_from_slice(line.line.as_bytes());
        buffer.push(b'\n');
        if buffer.len() >= CHUNK {
            out.write_all(&buffer)?;
            buffer.clear();
        }
    }
    out.write_all(&buffer)?;
    out.flush()
}
