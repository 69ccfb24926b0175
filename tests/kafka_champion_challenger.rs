//! Champion/challenger on Kafka, with the pipeline lagging behind a
//! producer that does not wait (and, under `PROPENSITY_TEST_LOAD=1`, a
//! loaded machine): every scored event gets exactly one champion and one
//! challenger score; `propensity models promote` mid-stream exchanges the
//! roles atomically (per event the two scores are always one model each,
//! and each partition switches once, never back); offers only ever come
//! from the champion of their event; the running instance logs and counts
//! the promotion; the admin API and `propensity models status` show both
//! roles with their online evaluation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use propensity_system_tests::{json_values, trained_artifacts, Deployment};
use serde_json::{json, Value};

/// Installs the trained models as champions, and as challengers the same
/// models with the intercept moved by +0.4 and `-challenger` appended to
/// the version; returns (champion, challenger) versions per outcome.
fn install_pairs(dir: &Path) -> BTreeMap<String, (String, String)> {
    std::fs::create_dir_all(dir.join("challengers")).expect("dir");
    let mut versions = BTreeMap::new();
    for (outcome, champion) in trained_artifacts() {
        let mut challenger = champion.clone();
        let version = champion["model_version"].as_str().expect("version");
        challenger["model_version"] = json!(format!("{version}-challenger"));
        challenger["intercept"] = json!(champion["intercept"].as_f64().expect("intercept") + 0.4);
        std::fs::write(
            dir.join(format!("{outcome}.json")),
            serde_json::to_string_pretty(&champion).expect("json"),
        )
        .expect("write");
        std::fs::write(
            dir.join("challengers").join(format!("{outcome}.json")),
            serde_json::to_string_pretty(&challenger).expect("json"),
        )
        .expect("write");
        versions.insert(
            outcome,
            (version.to_owned(), format!("{version}-challenger")),
        );
    }
    versions
}

#[test]
fn promotion_is_atomic_while_events_flow() {
    let mut d = Deployment::new("challenger", 2, true);
    d.wait_topics_visible(Duration::from_secs(30));
    let dir = d.dir.path().join("models");
    let pairs = install_pairs(&dir);
    d.env.retain(|(k, _)| k != "PROPENSITY__MODELS__DIR");
    for (k, v) in [
        ("PROPENSITY__MODELS__DIR", format!("\"{}\"", dir.display())),
        ("PROPENSITY__MODELS__WATCH_INTERVAL_SECS", "0.2".to_owned()),
        (
            "PROPENSITY__KAFKA__ONLINE_EVAL_MIN_SESSIONS",
            "1".to_owned(),
        ),
        (
            "PROPENSITY__KAFKA__STATISTICS_INTERVAL_MS",
            "500".to_owned(),
        ),
    ] {
        d.env.push((k.to_owned(), v));
    }
    let traffic = d.generate(600, 41, 0.0);
    let events = std::fs::read_to_string(&traffic.events)
        .expect("events")
        .lines()
        .count() as f64;
    // A producer that never waits for the pipeline, at a rate that keeps
    // events flowing for several seconds, started with the instance: the
    // promotion lands while events are read, scored and committed.
    let mut producer = d
        .command(&["produce", "--rate", "1000", "--events"])
        .arg(&traffic.events)
        .arg("--consent")
        .arg(&traffic.consent)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("propensity produce");
    let instance = d.start("a");
    // Promote once a third of the events is processed, while the rest is
    // still being read.
    let (_, reached) = instance.wait_metrics(Duration::from_secs(120), |m| {
        m.sum("propensity_events_processed_total") >= events / 3.0
    });
    assert!(reached, "a third of the events processed");
    let out = d
        .command(&["models", "promote", "purchase", "--models"])
        .arg(&dir)
        .output()
        .expect("propensity models promote");
    assert!(
        out.status.success(),
        "promote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (before, after) = pairs["purchase"].clone();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{after} is now the champion")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (_, promoted) = instance.wait_metrics(Duration::from_secs(60), |m| {
        m.sum_where(
            "propensity_model_promotions_total",
            &[("outcome", "purchase")],
        ) == 1.0
    });
    assert!(promoted, "the instance counted the promotion");
    let processed_at_promotion = instance.metrics().sum("propensity_events_processed_total");
    assert!(
        producer.wait().expect("producer").success(),
        "the producer failed"
    );
    d.wait_processed(Duration::from_secs(240));
    let processed = instance.metrics().sum("propensity_events_processed_total");
    assert!(
        processed > processed_at_promotion + events / 4.0,
        "events were processed after the promotion: {processed_at_promotion} then {processed} of {events}"
    );
    assert!(instance.log_text().contains("challenger promoted"));

    // The admin API and `models status` show the swapped roles side by
    // side, with online figures for both.
    let (code, body) = instance.http_get("/v1/models", Some("admin-token"));
    assert_eq!(code, 200, "{body}");
    let live: Value = serde_json::from_str(&body).expect("json");
    let purchase = live["outcomes"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["outcome"] == "purchase"))
        .expect("purchase")
        .clone();
    assert_eq!(purchase["champion"]["model_version"], json!(after));
    assert_eq!(purchase["challenger"]["model_version"], json!(before));
    assert_eq!(instance.http_get("/v1/models", None).0, 401);
    let out = d
        .command(&["models", "status", "--json", "--models"])
        .arg(&dir)
        .args(["--instance", &format!("127.0.0.1:{}", instance.http_port)])
        .env("PROPENSITY__HTTP__ADMIN_TOKEN", "admin-token")
        .output()
        .expect("propensity models status");
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("json");
    let row = status["outcomes"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["outcome"] == "purchase"))
        .expect("purchase")
        .clone();
    assert_eq!(row["champion"]["model_version"], json!(after));
    assert_eq!(row["challenger"]["model_version"], json!(before));
    assert_eq!(row["live"]["champion"]["model_version"], json!(after));
    let roles_evaluated = status["outcomes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| {
            o["live"]["champion"]["sessions"].as_u64().unwrap_or(0) > 0
                && o["live"]["challenger"]["sessions"].as_u64().unwrap_or(0) > 0
        })
        .count();
    assert!(
        roles_evaluated >= 1,
        "online evaluation of both roles: {status}"
    );
    assert!(instance.terminate(Duration::from_secs(60)).success());

    // Scores: per event and outcome, one champion and one challenger, of
    // the two models of the pair, and the purchase pair swapped exactly
    // once per partition.
    let records = d.read_topic(&d.settings.scores_topic);
    let mut by_event: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    let mut switch_seen: BTreeMap<i32, bool> = BTreeMap::new();
    let mut champion_of: BTreeMap<(String, String), String> = BTreeMap::new();
    for r in &records {
        let v: Value = serde_json::from_slice(r.value.as_deref().expect("value")).expect("json");
        let outcome = v["outcome"].as_str().expect("outcome").to_owned();
        let role = v["role"].as_str().expect("role").to_owned();
        let version = v["model_version"].as_str().expect("version").to_owned();
        let event = v["event_id"].as_str().expect("event").to_owned();
        let (champion, challenger) = &pairs[&outcome];
        if outcome == "purchase" && role == "champion" {
            // Within a partition, records are in processing order: once
            // the promoted model serves, the old one never serves again.
            let switched = switch_seen.entry(r.partition).or_insert(false);
            if version == after {
                *switched = true;
            } else {
                assert!(
                    !*switched,
                    "partition {}: {before} served again after the promotion",
                    r.partition
                );
            }
        }
        assert!(
            version == *champion || version == *challenger,
            "{outcome}: unexpected version {version}"
        );
        if role == "champion" {
            champion_of.insert((event.clone(), outcome.clone()), version.clone());
        }
        by_event
            .entry((event, outcome))
            .or_default()
            .push((role, version));
    }
    assert!(by_event.len() > 1_000, "{} scored events", by_event.len());
    let mut swapped = 0;
    for ((event, outcome), scores) in &by_event {
        let mut roles: Vec<&str> = scores.iter().map(|(r, _)| r.as_str()).collect();
        roles.sort_unstable();
        assert_eq!(
            roles,
            ["challenger", "champion"],
            "{event}/{outcome}: {scores:?}"
        );
        assert_ne!(
            scores[0].1, scores[1].1,
            "{event}/{outcome}: both roles scored by one model: {scores:?}"
        );
        if outcome == "purchase" && champion_of[&(event.clone(), outcome.clone())] == after {
            swapped += 1;
        } else if outcome != "purchase" {
            assert_eq!(
                champion_of[&(event.clone(), outcome.clone())],
                pairs[outcome].0
            );
        }
    }
    let purchase_events = by_event.keys().filter(|(_, o)| o == "purchase").count();
    eprintln!(
        "{} scored (event, outcome) pairs; purchase: {swapped} of {purchase_events} scored by the promoted champion",
        by_event.len()
    );
    assert!(
        swapped > 0 && swapped < purchase_events,
        "both sides of the promotion: {swapped} of {purchase_events}"
    );

    // Offers come from the champion of their event, never the challenger.
    let offers = json_values(&d.read_topic(&d.settings.offers_topic), "offer");
    assert!(!offers.is_empty(), "offers were made");
    for o in &offers {
        let key = (
            o["trigger_event_id"].as_str().expect("event").to_owned(),
            o["outcome"].as_str().expect("outcome").to_owned(),
        );
        assert_eq!(
            o["model_version"].as_str(),
            champion_of.get(&key).map(String::as_str),
            "offer {} not from its event's champion",
            o["offer_id"]
        );
    }
}
