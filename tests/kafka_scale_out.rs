//! Scale-out mid-stream: one instance, then three in the same group; the
//! partitions and their state move: each instance's `/metrics` shows it
//! owned partitions and consumed and processed events, and the offers
//! still equal the replay's, none twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use propensity_system_tests::{assert_same_offers, offers_in, Deployment, Instance};

/// The sum of every sample of metric `name` (all label sets).
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What one instance's `/metrics` showed.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    max_assigned: f64,
    consumed: f64,
    processed: f64,
}

fn observe(seen: &mut BTreeMap<String, Seen>, name: &str, inst: &Instance) {
    let (status, m) = inst.http_get("/metrics", None);
    if status != 200 {
        return;
    }
    let s = seen.entry(name.to_owned()).or_default();
    s.max_assigned = s
        .max_assigned
        .max(metric_sum(&m, "propensity_assigned_partitions"));
    s.consumed = s
        .consumed
        .max(metric_sum(&m, "propensity_events_consumed_total"));
    s.processed = s
        .processed
        .max(metric_sum(&m, "propensity_events_processed_total"));
}

#[test]
fn one_to_three_instances_mid_stream() {
    let d = Deployment::new("scale", 6, false);
    d.wait_topics_visible(Duration::from_secs(30));
    let traffic = d.generate(250, 23, 0.0);
    let first = d.start("a");
    let mut others: Vec<(&str, Instance)> = Vec::new();
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut last_scrape = Instant::now();
    d.produce_paced(&traffic, |i, total| {
        if i == total / 2 {
            others.push(("b", d.start("b")));
            others.push(("c", d.start("c")));
        }
        if last_scrape.elapsed() > Duration::from_millis(250) {
            observe(&mut seen, "a", &first);
            for (name, inst) in &others {
                observe(&mut seen, name, inst);
            }
            last_scrape = Instant::now();
        }
    });
    d.wait_processed(Duration::from_secs(180));
    // Counters are published at each commit: everything is committed now.
    observe(&mut seen, "a", &first);
    for (name, inst) in &others {
        observe(&mut seen, name, inst);
    }
    eprintln!("per instance: {seen:?}");
    for name in ["a", "b", "c"] {
        let s = seen.get(name).copied().unwrap_or_default();
        assert!(
            s.max_assigned > 0.0,
            "instance {name} never owned a partition: {seen:?}"
        );
        assert!(
            s.consumed > 0.0 && s.processed > 0.0,
            "instance {name} consumed {} and processed {} events: {seen:?}",
            s.consumed,
            s.processed
        );
    }
    // Incremental rebalancing: the first instance restored its state once
    // (at start) and gave partitions away without restoring the ones it
    // kept; each revocation named only some partitions. A rewind (logged
    // as one) is the one other cause of a restore, by design: when a join
    // bumps the group generation while a commit is in flight, the broker
    // refuses the offsets (ILLEGAL_GENERATION), the transaction is aborted
    // and the partitions still owned are rebuilt from the changelog. A CI
    // run saw exactly that; such restores are counted apart.
    let log = strip_ansi(&first.log_text());
    let restores = log
        .lines()
        .filter(|l| l.contains("restoring partition state"))
        .count();
    let rewinds = log.lines().filter(|l| l.contains("rewinding")).count();
    let why: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("restor") || l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert_eq!(
        restores,
        1 + rewinds,
        "instance a restored state {restores} times after {rewinds} rewind(s); joining instances must not make it re-read the partitions it keeps:\n{}",
        why.join("\n")
    );
    let revoked: Vec<usize> = log
        .lines()
        .filter(|l| l.contains("partitions revoked") && l.contains("lost=false"))
        .filter_map(|l| {
            let list = l.split('[').nth(1)?.split(']').next()?;
            Some(list.split(',').filter(|p| !p.trim().is_empty()).count())
        })
        .collect();
    assert!(
        revoked.iter().any(|n| (1..6).contains(n)),
        "instance a handed over some, not all, of its partitions: revocations {revoked:?}"
    );
    for (_, inst) in others {
        assert!(inst.terminate(Duration::from_secs(30)).success());
    }
    assert!(first.terminate(Duration::from_secs(30)).success());
    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let replay = d.replay_all(&traffic);
    assert_same_offers(&kafka, &replay.offers);
    // Session state moved between instances with its decided arms: the
    // conversions after a handover are attributed as replay attributes them.
    d.assert_decision_log_matches(&replay, &kafka);
}

/// The log without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
