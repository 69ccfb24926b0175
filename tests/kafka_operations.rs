//! Operating a running pipeline on a real broker: `/metrics` passes
//! `promtool check metrics` and its counters move exactly as the traffic
//! says; `/healthz` and `/readyz`; the admin access endpoint; erasure that
//! reaches the state changelog (a restore brings nothing of the visitor
//! back); model hot reload that refuses a bad artifact and swaps in new
//! ones without stopping, through the directory watcher and through SIGHUP,
//! with the scores and offers made after each reload carrying the new
//! model versions; and the metric names `/metrics` exports are exactly the
//! ones docs/operations.md documents.
//!
//! Why one file of this size: three end-to-end scenarios of 120 to 170
//! steps each, and the small helpers they share (metric parsing, waits,
//! fixtures).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use propensity_engine::replay::{merge_order, RecordKind};
use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_system_tests::Traffic as Files;
use propensity_system_tests::{
    json_values, read_lines, trained_artifacts, workspace_root, Deployment, Instance,
    CONTROL_GROUP_MAP,
};
use serde_json::{json, Value};

fn promtool_check(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: apt-get install prometheus (.ci/run does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of one series in Prometheus text format (0 when absent).
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn event(visitor: &str, n: u32) -> Value {
    json!({
        "event_id": format!("{visitor}-{n}"),
        "visitor_id": visitor,
        "type": "page_view",
        "timestamp": format!("2026-11-29T10:00:{:02}.000Z", 10 + n),
        "page": {"url": "https://shop.example.com/pricing"},
        "device": {"category": "desktop"}
    })
}

fn consent(visitor: &str, tracking: bool) -> Value {
    json!({
        "visitor_id": visitor,
        "timestamp": "2026-11-29T10:00:00.000Z",
        "purposes": {"tracking": tracking, "sales": tracking, "marketing": tracking, "support": tracking}
    })
}

struct Traffic<'a> {
    producer: TrafficProducer,
    d: &'a Deployment,
}

impl Traffic<'_> {
    fn send(&self, topic: &str, key: &str, value: Option<&Value>) {
        let bytes = value.map(|v| serde_json::to_vec(v).expect("json"));
        self.producer
            .send(OutgoingRecord {
                topic,
                key: Some(key.as_bytes()),
                value: bytes.as_deref(),
            })
            .expect("send");
    }
    fn flush(&self) {
        self.producer.flush(Duration::from_secs(30)).expect("flush");
    }
    fn consent(&self, visitor: &str, v: Option<&Value>) {
        self.send(&self.d.settings.consent_topic, visitor, v);
    }
    fn event(&self, visitor: &str, v: &Value) {
        self.send(&self.d.settings.events_topic, visitor, Some(v));
    }
}

fn held(instance: &Instance, visitor: &str) -> Value {
    let (status, body) = instance.http_get(&format!("/v1/visitors/{visitor}"), Some("admin-token"));
    assert_eq!(status, 200, "access request: {body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["held"].clone()
}

#[test]
fn metrics_health_access_and_erasure() {
    let d = Deployment::new("ops", 1, false);
    d.wait_topics_visible(Duration::from_secs(30));
    let instance = d.start("a");
    let t = Traffic {
        producer: TrafficProducer::new(&d.settings).expect("producer"),
        d: &d,
    };
    for v in ["deny-1", "deny-2", "deny-3", "deny-4", "deny-5"] {
        t.consent(v, Some(&consent(v, false)));
    }
    for v in ["keep-1", "keep-2", "erase-me"] {
        t.consent(v, Some(&consent(v, true)));
    }
    t.flush();
    for n in 0..3 {
        for v in ["deny-1", "deny-2", "deny-3", "deny-4", "deny-5"] {
            t.event(v, &event(v, n));
        }
    }
    for n in 0..4 {
        for v in ["keep-1", "keep-2", "erase-me"] {
            t.event(v, &event(v, n));
        }
    }
    t.send(&d.settings.events_topic, "keep-1", None);
    t.producer
        .send(OutgoingRecord {
            topic: &d.settings.events_topic,
            key: Some(b"keep-1"),
            value: Some(b"{broken"),
        })
        .expect("send");
    t.flush();
    d.wait_processed(Duration::from_secs(60));

    // Health.
    assert_eq!(instance.http_get("/healthz", None).0, 200);
    let (status, body) = instance.http_get("/readyz", None);
    assert_eq!(status, 200, "readyz: {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["ready"],
        true
    );

    // Metrics: valid exposition format, and the counts the traffic implies.
    let mut metrics = String::new();
    wait_for(
        "metrics to reflect the traffic",
        Duration::from_secs(20),
        || {
            metrics = instance.http_get("/metrics", None).1;
            value(&metrics, "propensity_events_processed_total") >= 12.0
        },
    );
    promtool_check(&metrics);
    assert_eq!(
        value(
            &metrics,
            r#"propensity_events_dropped_total{reason="no_consent"}"#
        ),
        15.0,
        "{metrics}"
    );
    assert_eq!(value(&metrics, "propensity_events_processed_total"), 12.0);
    assert_eq!(
        value(
            &metrics,
            r#"propensity_events_consumed_total{type="page_view"}"#
        ),
        27.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"propensity_events_consumed_total{type="invalid"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"propensity_dead_letters_total{reason="invalid_json",source="events"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"propensity_consent_records_total{result="applied"}"#
        ),
        8.0
    );
    assert_eq!(value(&metrics, "propensity_ready"), 1.0);
    assert!(
        value(
            &metrics,
            r#"propensity_transactions_total{result="committed"}"#
        ) >= 1.0
    );
    assert_eq!(
        value(
            &metrics,
            "propensity_outcome_probability_count{outcome=\"purchase\"}"
        ),
        12.0
    );
    assert!(
        metrics.contains("propensity_model_info{outcome=\"purchase\",role=\"champion\",version="),
        "{metrics}"
    );
    assert!(
        !metrics.contains("keep-1") && !metrics.contains("deny-1"),
        "no visitor id in any label"
    );

    // Access: held state for a consenting visitor; the admin API needs the token.
    assert_eq!(instance.http_get("/v1/visitors/keep-1", None).0, 401);
    assert_eq!(
        instance.http_get("/v1/visitors/keep-1", Some("wrong")).0,
        401
    );
    assert!(
        held(&instance, "erase-me")["state"]["session"].is_object(),
        "erase-me has a session before erasure"
    );

    // Erasure by tombstone: forgotten now, and in the changelog nothing but
    // the erasure.
    t.consent("erase-me", None);
    t.flush();
    wait_for("the erasure to apply", Duration::from_secs(20), || {
        held(&instance, "erase-me")["state"].is_null()
    });
    wait_for("the erasure to be counted", Duration::from_secs(20), || {
        value(
            &instance.http_get("/metrics", None).1,
            "propensity_erasures_total",
        ) == 1.0
    });
    assert!(instance.terminate(Duration::from_secs(30)).success());
    let changelog = d.read_topic(&d.settings.changelog_topic);
    let last = changelog
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(b"erase-me".as_slice()))
        .expect("erase-me had changelog records");
    let snapshot: Value = serde_json::from_slice(
        last.value
            .as_deref()
            .expect("the erasure is the visitor's last changelog record"),
    )
    .expect("JSON");
    assert_eq!(snapshot["consent"]["erased"], true, "{snapshot}");
    for held in ["session", "last_offer_ms", "last_event_ms"] {
        assert!(snapshot[held].is_null(), "{held} kept: {snapshot}");
    }
    assert_eq!(snapshot["buffer"], json!([]), "{snapshot}");

    // A restore from the changelog brings nothing of the visitor back, and
    // does bring back the others (so the check can fail).
    let again = d.start("b");
    wait_for("readiness after restore", Duration::from_secs(60), || {
        again.http_get("/readyz", None).0 == 200
    });
    assert!(
        held(&again, "erase-me")["state"].is_null(),
        "erased visitor restored: {}",
        held(&again, "erase-me")
    );
    assert!(
        held(&again, "keep-1")["state"]["session"].is_object(),
        "keep-1's session was restored"
    );
    assert!(again.terminate(Duration::from_secs(30)).success());
}

/// Model version per outcome.
type Versions = BTreeMap<String, String>;

/// The model versions served per outcome, from `propensity_model_info`.
fn served_versions(metrics: &str) -> BTreeMap<String, String> {
    let label = |l: &str, name: &str| -> Option<String> {
        let start = l.find(&format!("{name}=\""))? + name.len() + 2;
        let len = l[start..].find('"')?;
        Some(l[start..start + len].to_owned())
    };
    metrics
        .lines()
        .filter(|l| l.starts_with("propensity_model_info{") && l.ends_with(" 1"))
        .filter_map(|l| Some((label(l, "outcome")?, label(l, "version")?)))
        .collect()
}

/// Installs the trained models into `dir`, each with `suffix` appended to
/// its `model_version` (temp file + rename, as documented); returns the
/// versions per outcome.
fn install_models(dir: &Path, suffix: &str) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    for (outcome, mut v) in trained_artifacts() {
        let version = format!("{}{suffix}", v["model_version"].as_str().expect("version"));
        v["model_version"] = json!(version);
        let tmp = dir.join(format!(".{outcome}.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(&v).expect("json")).expect("write");
        std::fs::rename(&tmp, dir.join(format!("{outcome}.json"))).expect("rename");
        versions.insert(outcome, version);
    }
    versions
}

/// Splits traffic into `parts` consecutive slices of its time order (as
/// files).
fn split_in_time(d: &Deployment, traffic: &Files, parts: usize) -> Vec<Files> {
    let events = read_lines(&traffic.events);
    let consent = read_lines(&traffic.consent);
    let ev: Vec<&[u8]> = events.iter().map(|l| l.as_bytes()).collect();
    let co: Vec<&[u8]> = consent.iter().map(|l| l.as_bytes()).collect();
    let order = merge_order(&ev, &co);
    let per = order.len().div_ceil(parts);
    order
        .chunks(per)
        .enumerate()
        .map(|(k, chunk)| {
            let (mut e, mut c) = (String::new(), String::new());
            for r in chunk {
                match r.kind {
                    RecordKind::Event => e.push_str(&format!("{}\n", events[r.index])),
                    RecordKind::Consent => c.push_str(&format!("{}\n", consent[r.index])),
                }
            }
            let files = Files {
                events: d.dir.path().join(format!("part-{k}-events.jsonl")),
                consent: d.dir.path().join(format!("part-{k}-consent.jsonl")),
            };
            std::fs::write(&files.events, e).expect("write");
            std::fs::write(&files.consent, c).expect("write");
            files
        })
        .collect()
}

/// Parsed records of a topic.
fn topic_json(d: &Deployment, topic: &str) -> Vec<Value> {
    d.read_topic(topic)
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("json"))
        .collect()
}

/// (scores, offers) committed so far, once nothing more arrives for a
/// second (consent applied after the last event commit is included).
fn settled_counts(d: &Deployment) -> (usize, usize) {
    let count = || {
        (
            d.read_topic(&d.settings.scores_topic).len(),
            d.read_topic(&d.settings.offers_topic).len(),
        )
    };
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(1200));
        let now = count();
        if now == last {
            return now;
        }
        last = now;
    }
}

fn wait_served(instance: &Instance, versions: &BTreeMap<String, String>, what: &str) {
    let mut served = BTreeMap::new();
    let started = Instant::now();
    while served != *versions {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: still serving {served:?}, expected {versions:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
        served = served_versions(&instance.http_get("/metrics", None).1);
    }
}

#[test]
fn models_hot_reload_refuses_bad_artifacts() {
    let mut d = Deployment::new("reload", 1, true);
    d.wait_topics_visible(Duration::from_secs(30));
    let dir = d.dir.path().join("models");
    std::fs::create_dir_all(&dir).expect("dir");
    let trained = install_models(&dir, "");
    d.env.retain(|(k, _)| {
        k != "PROPENSITY__MODELS__DIR" && k != "PROPENSITY__MODELS__WATCH_INTERVAL_SECS"
    });
    d.env.push((
        "PROPENSITY__MODELS__DIR".into(),
        format!("\"{}\"", dir.display()),
    ));
    let watch = |d: &mut Deployment, secs: &str| {
        d.env
            .retain(|(k, _)| k != "PROPENSITY__MODELS__WATCH_INTERVAL_SECS");
        d.env.push((
            "PROPENSITY__MODELS__WATCH_INTERVAL_SECS".into(),
            secs.to_owned(),
        ));
    };
    watch(&mut d, "0.5");
    let traffic = d.generate(200, 27, 0.0);
    let parts = split_in_time(&d, &traffic, 5);
    // Per phase: what it shows, the versions its scores and offers must
    // carry, and the (scores, offers) committed before it began.
    let mut phases: Vec<(&str, Versions, (usize, usize))> = Vec::new();
    let mut run_phase =
        |d: &Deployment, what: &'static str, versions: &BTreeMap<String, String>| {
            let start = settled_counts(d);
            d.produce_paced(&parts[phases.len()], |_, _| {});
            d.wait_processed(Duration::from_secs(120));
            phases.push((what, versions.clone(), start));
        };

    let instance = d.start("a");
    wait_for("readiness", Duration::from_secs(60), || {
        instance.http_get("/readyz", None).0 == 200
    });
    wait_served(&instance, &trained, "start");
    run_phase(&d, "trained models", &trained);

    // A bad artifact is refused as a whole; the old models keep serving.
    let purchase = dir.join("purchase.json");
    let good = std::fs::read_to_string(&purchase).expect("model");
    std::fs::write(&purchase, good.replace("\"weights\"", "\"wrong\"")).expect("write");
    wait_for(
        "the bad model to be refused",
        Duration::from_secs(20),
        || {
            value(
                &instance.http_get("/metrics", None).1,
                r#"propensity_model_reloads_total{result="failure"}"#,
            ) >= 1.0
        },
    );
    assert_eq!(
        instance.http_get("/readyz", None).0,
        200,
        "still serving with the old model"
    );
    assert_eq!(
        served_versions(&instance.http_get("/metrics", None).1),
        trained
    );
    assert!(
        instance.log_text().contains("model reload refused"),
        "the refusal is logged"
    );
    run_phase(&d, "after a refused reload", &trained);

    // New artifacts: the directory watcher swaps them in.
    let watched = install_models(&dir, "-watch");
    wait_served(&instance, &watched, "after the watcher's reload");
    run_phase(&d, "after the watcher's reload", &watched);
    assert!(instance.terminate(Duration::from_secs(30)).success());

    // Without the watch, new files change nothing until SIGHUP.
    watch(&mut d, "0.0");
    let instance = d.start("a");
    wait_for("readiness", Duration::from_secs(60), || {
        instance.http_get("/readyz", None).0 == 200
    });
    wait_served(&instance, &watched, "restart");
    let signalled = install_models(&dir, "-hup");
    std::thread::sleep(Duration::from_secs(2));
    let metrics = instance.http_get("/metrics", None).1;
    assert_eq!(
        served_versions(&metrics),
        watched,
        "reloaded without SIGHUP"
    );
    run_phase(&d, "new files, no SIGHUP yet", &watched);
    instance.signal("HUP");
    wait_served(&instance, &signalled, "after SIGHUP");
    assert_eq!(
        value(
            &instance.http_get("/metrics", None).1,
            r#"propensity_model_reloads_total{result="success"}"#
        ),
        1.0
    );
    run_phase(&d, "after SIGHUP", &signalled);
    assert!(instance.terminate(Duration::from_secs(30)).success());

    // Every score and offer of each phase carries that phase's versions.
    let scores = topic_json(&d, &d.settings.scores_topic);
    let offers = topic_json(&d, &d.settings.offers_topic);
    let ends: Vec<(usize, usize)> = phases
        .iter()
        .skip(1)
        .map(|p| p.2)
        .chain([(scores.len(), offers.len())])
        .collect();
    for ((what, versions, (s0, o0)), (s1, o1)) in phases.iter().zip(ends) {
        let (s, o) = (&scores[*s0..s1], &offers[*o0..o1]);
        eprintln!("{what}: {} scores, {} offers", s.len(), o.len());
        assert!(
            !s.is_empty() && !o.is_empty(),
            "{what}: {} scores and {} offers: the phase proves nothing",
            s.len(),
            o.len()
        );
        for r in s.iter().chain(o) {
            let outcome = r["outcome"].as_str().expect("outcome");
            assert_eq!(
                r["model_version"].as_str(),
                versions.get(outcome).map(String::as_str),
                "{what}: wrong model version on {r}"
            );
        }
    }
}

/// The metric names the Metrics section of docs/operations.md documents
/// (first column of its table).
fn documented_metrics() -> BTreeSet<String> {
    let path = workspace_root().join("docs/operations.md");
    let text = std::fs::read_to_string(&path).expect("docs/operations.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Metrics\n"))
        .expect("a `## Metrics` section");
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .filter(|name| name.starts_with("propensity_"))
        .map(str::to_owned)
        .collect()
}

/// The metric families `/metrics` exports (`# TYPE` lines).
fn exported_metrics(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("propensity_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn metrics_match_the_documentation() {
    let documented = documented_metrics();
    assert!(
        documented.len() >= 10,
        "parsed only {documented:?} from docs/operations.md"
    );
    let mut d = Deployment::new("metrics-doc", 2, false);
    d.wait_topics_visible(Duration::from_secs(30));
    d.env.push((
        "PROPENSITY__KAFKA__STATISTICS_INTERVAL_MS".into(),
        "200".into(),
    ));
    // The drift and online-evaluation gauges from the first scored event
    // and the first resolved session (their defaults wait for thousands).
    for key in ["DRIFT_MIN_EVENTS", "ONLINE_EVAL_MIN_SESSIONS"] {
        d.env
            .push((format!("PROPENSITY__KAFKA__{key}"), "1".into()));
    }
    // Traffic that makes every labelled family appear: dead letters,
    // suppressed offers, drops, revocations and erasures; returning
    // visitors' sessions resolve.
    let traffic = d.generate(150, 31, 0.02);
    let instance = d.start("a");
    d.produce_paced(&traffic, |_, _| {});
    d.wait_processed(Duration::from_secs(120));
    let mut exported = BTreeSet::new();
    let started = Instant::now();
    while !documented.is_subset(&exported) && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
        exported = exported_metrics(&instance.http_get("/metrics", None).1);
    }
    // The decision counter, kind by kind, equals the records on the
    // decisions topic (both count committed work).
    let records = json_values(&d.read_topic(&d.settings.decisions_topic), "decision");
    assert!(!records.is_empty(), "no decision published");
    let kinds = [
        "offered",
        "held_out",
        "capped",
        "no_purpose",
        "lower_priority",
        "contact_policy",
    ];
    let on_topic: Vec<f64> = kinds
        .iter()
        .map(|k| records.iter().filter(|r| r["decision"] == *k).count() as f64)
        .collect();
    let counted = || -> Vec<f64> {
        let m = instance.metrics();
        kinds
            .iter()
            .map(|k| m.sum_where("propensity_decisions_total", &[("decision", k)]))
            .collect()
    };
    let started = Instant::now();
    while counted() != on_topic && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        counted(),
        on_topic,
        "decisions by kind {kinds:?}: metric vs topic"
    );
    // `propensity report`, computed from the decisions and conversions
    // topics, equals the metrics map by map: decisions by kind, and each
    // arm's sessions and conversions.
    let report = d.report_from_kafka();
    let m = instance.metrics();
    let maps = report.as_object().expect("report by map");
    assert!(maps.contains_key(CONTROL_GROUP_MAP.0), "{report}");
    for (map, row) in maps {
        for kind in kinds {
            assert_eq!(
                row["decisions"][kind].as_f64(),
                Some(m.sum_where(
                    "propensity_decisions_total",
                    &[("action_map", map), ("decision", kind)]
                )),
                "{map} {kind}: report vs metric"
            );
        }
        let g = &row["control_group"];
        for (arm, sessions, converted) in [
            ("treatment", "offered_sessions", "offered_converted"),
            ("control", "held_out_sessions", "held_out_converted"),
        ] {
            let labels = [("action_map", map.as_str()), ("arm", arm)];
            assert_eq!(
                g[sessions].as_f64(),
                Some(m.sum_where("propensity_control_group_sessions_total", &labels)),
                "{map} {arm} sessions: report vs metric"
            );
            assert_eq!(
                g[converted].as_f64(),
                Some(m.sum_where("propensity_control_group_conversions_total", &labels)),
                "{map} {arm} conversions: report vs metric"
            );
        }
    }
    let g = &report[CONTROL_GROUP_MAP.0]["control_group"];
    eprintln!("{}: {g}", CONTROL_GROUP_MAP.0);
    assert!(g["held_out_sessions"].as_u64() > Some(0), "{g}");
    assert!(instance.terminate(Duration::from_secs(30)).success());
    let undocumented: Vec<&String> = exported.difference(&documented).collect();
    let missing: Vec<&String> = documented.difference(&exported).collect();
    eprintln!(
        "{} documented, {} exported",
        documented.len(),
        exported.len()
    );
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "exported but not documented in docs/operations.md: {undocumented:?}; \
         documented but not exported: {missing:?}"
    );
}
