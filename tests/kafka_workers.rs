//! One worker and several give the same outputs: the same traffic,
//! produced into two deployments before either instance starts, is run
//! once with `[kafka] workers = 1` and once with `workers = 4` (more
//! threads than this test machine has cores, so partitions really share
//! and switch threads). Every output record must come out the same, in the
//! same order per visitor: offers (but for their `decided_at` wall-clock
//! time) and every score in the same order per visitor, every dead letter
//! for the same input line with the same reason.

use std::collections::BTreeMap;
use std::time::Duration;

use propensity_system_tests::{Deployment, Record, Traffic};
use serde_json::Value;

/// Output records of one topic, per key, in the order they were written.
type PerKey = BTreeMap<String, Vec<String>>;

fn per_key(records: &[Record], normalise: impl Fn(&[u8]) -> String) -> PerKey {
    let mut map = PerKey::new();
    for r in records {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        map.entry(key)
            .or_default()
            .push(normalise(r.value.as_deref().unwrap_or_default()));
    }
    map
}

fn offer_without_wall_clock(value: &[u8]) -> String {
    let mut offer: Value = serde_json::from_slice(value).expect("offer JSON");
    offer
        .as_object_mut()
        .expect("offer object")
        .remove("decided_at");
    offer.to_string()
}

fn as_text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// Offers, scores and dead letters (per input line) of a run with
/// `workers` batch workers over `traffic` preloaded into `d`.
fn outputs_with(d: &mut Deployment, traffic: &Traffic, workers: usize) -> [PerKey; 3] {
    d.produce_with_cli(traffic);
    d.env
        .push(("PROPENSITY__KAFKA__WORKERS".into(), workers.to_string()));
    let instance = d.start("a");
    d.wait_processed(Duration::from_secs(180));
    let status = instance.terminate(Duration::from_secs(30));
    assert!(status.success(), "propensity run exited with {status}");
    // Keyed by the original line they carry, with their reason: keyless
    // input (malformed lines) is spread over the input partitions by the
    // producer, so input offsets differ between the two deployments, and a
    // keyless dead letter may land on any dead-letter partition, so only
    // the set of dead letters is an output property.
    let dead_letters: Vec<Record> = d
        .read_topic(&d.settings.dead_letter_topic)
        .into_iter()
        .map(|mut r| {
            r.key = r.value.take();
            r.value = Some(r.headers["propensity.reason"].clone().into_bytes());
            r
        })
        .collect();
    [
        per_key(
            &d.read_topic(&d.settings.offers_topic),
            offer_without_wall_clock,
        ),
        per_key(&d.read_topic(&d.settings.scores_topic), as_text),
        per_key(&dead_letters, as_text),
    ]
}

#[test]
fn one_worker_and_many_give_the_same_outputs() {
    let mut one = Deployment::new("workers-one", 6, true);
    let mut many = Deployment::new("workers-many", 6, true);
    // The same traffic (same seed) for both.
    let traffic = one.generate(300, 17, 0.02);
    let single = outputs_with(&mut one, &traffic, 1);
    let parallel = outputs_with(&mut many, &traffic, 4);
    for (name, (a, b)) in ["offers", "scores", "dead letters"]
        .iter()
        .zip(single.iter().zip(parallel.iter()))
    {
        let records: usize = a.values().map(Vec::len).sum();
        assert!(records > 0, "the traffic gives no {name} to compare");
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{name}: different keys with 1 and 4 workers"
        );
        for (key, seq) in a {
            assert!(
                b[key] == *seq,
                "{name} of key {key} differ with 1 and 4 workers: {} vs {} records; first difference at {:?}",
                seq.len(),
                b[key].len(),
                seq.iter().zip(&b[key]).position(|(x, y)| x != y)
            );
        }
    }
}
