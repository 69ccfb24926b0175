//! `propensity tail` and `propensity topics describe` on a real broker:
//! tail prints exactly the committed records (all of them from the
//! beginning, only new ones by default, `--count` of them), dead letters
//! with the headers the runtime writes; describe shows each topic's
//! partitions, compaction and end offsets, and the group's committed
//! offsets after a run; `run` ends its log with a `stopped` line.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::Duration;

use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_system_tests::Deployment;
use serde_json::Value;

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn tail(d: &Deployment, args: &[&str]) -> Vec<String> {
    let mut all = vec!["tail"];
    all.extend_from_slice(args);
    all.extend(["--timeout", "60"]);
    let out = d.command(&all).output().expect("run tail");
    ok(out, &format!("tail {args:?}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn describe(d: &Deployment) -> Value {
    let out = d
        .command(&["topics", "describe", "--json"])
        .output()
        .expect("describe");
    serde_json::from_str(&ok(out, "topics describe")).expect("describe JSON")
}

fn topic<'a>(described: &'a Value, name: &str) -> &'a Value {
    described["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("{name} not described: {described}"))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn offer(i: usize) -> String {
    format!(
        r#"{{"offer_id":"o-{i}","visitor_id":"v-{i}","session_id":"s-{i}","action_map":"m","action":{{"type":"chat"}},"purpose":"sales","outcome":"purchase","probability":0.{i}5,"model_version":"x","trigger_event_id":"e-{i}","event_time":"2026-11-29T10:00:0{i}.000Z","decided_at":"2026-11-29T10:00:0{i}.000Z","explanation":[]}}"#
    )
}

fn produce(d: &Deployment, values: &[String]) {
    let producer = TrafficProducer::new(&d.settings).expect("producer");
    for (i, v) in values.iter().enumerate() {
        let key = format!("v-{i}");
        producer
            .send(OutgoingRecord {
                topic: &d.settings.offers_topic,
                key: Some(key.as_bytes()),
                value: Some(v.as_bytes()),
            })
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

#[test]
fn tail_prints_exactly_the_records_and_describe_counts_them() {
    let d = Deployment::new("tail", 3, false);
    let first: Vec<String> = (0..7).map(offer).collect();
    produce(&d, &first);

    let all = tail(
        &d,
        &["offers", "--from-beginning", "--count", "7", "--json"],
    );
    assert_eq!(sorted(all), sorted(first.clone()));
    let three = tail(
        &d,
        &["offers", "--from-beginning", "--count", "3", "--json"],
    );
    assert_eq!(three.len(), 3);
    assert!(three.iter().all(|l| first.contains(l)), "{three:?}");
    let pretty = tail(&d, &["offers", "--from-beginning", "--count", "1"]);
    assert!(
        pretty[0].contains(" offer purchase ") && pretty[0].contains("visitor v-"),
        "{pretty:?}"
    );

    // Without --from-beginning only records committed after the start come.
    let mut child = d
        .command(&[
            "tail",
            "offers",
            "--count",
            "2",
            "--json",
            "--timeout",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tail");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("tailing") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("stderr") > 0,
            "tail ended before it started reading"
        );
    }
    let second: Vec<String> = (7..9).map(offer).collect();
    produce(&d, &second);
    let out = child.wait_with_output().expect("tail ends");
    let new = ok(out, "tail of new records");
    assert_eq!(
        sorted(new.lines().map(str::to_owned).collect()),
        sorted(second)
    );

    // Fewer records than --count within the timeout: status 1, saying so.
    let short = d
        .command(&[
            "tail",
            "offers",
            "--from-beginning",
            "--count",
            "10",
            "--timeout",
            "3",
        ])
        .output()
        .expect("tail");
    assert_eq!(short.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("9 of 10 records"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );

    let described = describe(&d);
    let offers = topic(&described, &d.settings.offers_topic);
    assert_eq!(offers["partition_count"], 3);
    let ends: Vec<i64> = offers["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["end"].as_i64().expect("end"))
        .collect();
    let watermarks: Vec<i64> = d
        .watermarks(&d.settings.offers_topic)
        .iter()
        .map(|(_, high)| *high)
        .collect();
    assert_eq!(ends, watermarks);
    assert_eq!(ends.iter().sum::<i64>(), 9);
    let consent = topic(&described, &d.settings.consent_topic);
    assert_eq!(consent["configs"]["cleanup.policy"], "compact");
    assert_eq!(described["check_problems"], Value::Null, "{described}");
}

#[test]
fn tail_shows_what_a_run_published_and_describe_the_group_offsets() {
    let d = Deployment::new("tailrun", 2, false);
    let traffic = d.generate(250, 21, 0.02);
    let instance = d.start("a");
    d.produce_paced(&traffic, |_, _| {});
    d.wait_processed(Duration::from_secs(120));

    let described = describe(&d);
    let events = topic(&described, &d.settings.events_topic);
    assert_eq!(events["partition_count"], 2);
    for p in events["partitions"].as_array().expect("partitions") {
        assert_eq!(p["committed"], p["end"], "{p}");
        assert_eq!(p["lag"], 0, "{p}");
    }

    let log = instance.log.clone();
    let status = instance.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit: {status}");
    // The log ends by saying the process stopped, and why.
    let text = std::fs::read_to_string(&log).expect("run log");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.contains("stopped") && last.contains("exit_code=0") && last.contains("SIGTERM"),
        "last log line: {last}"
    );
    assert!(!text.contains('\x1b'), "escape codes in a log file");

    let offers: Vec<String> = d
        .read_topic(&d.settings.offers_topic)
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert!(!offers.is_empty(), "the run made no offers");
    let n = offers.len().to_string();
    let tailed = tail(&d, &["offers", "--from-beginning", "--count", &n, "--json"]);
    assert_eq!(sorted(tailed), sorted(offers.clone()));

    // Decisions (the harness publishes them): the records as published,
    // and one readable line each.
    let decisions: Vec<String> = d
        .read_topic(&d.settings.decisions_topic)
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert!(
        decisions.len() >= offers.len(),
        "fewer decisions than offers"
    );
    let k = decisions.len().to_string();
    let tailed = tail(
        &d,
        &["decisions", "--from-beginning", "--count", &k, "--json"],
    );
    assert_eq!(sorted(tailed), sorted(decisions.clone()));
    let pretty = tail(&d, &["decisions", "--from-beginning", "--count", &k]);
    assert_eq!(pretty.len(), decisions.len());
    assert!(
        pretty.iter().all(|l| l.contains("  decision ")),
        "{pretty:?}"
    );

    let dlq = d.read_topic(&d.settings.dead_letter_topic);
    assert!(!dlq.is_empty(), "the traffic has no malformed lines");
    let m = dlq.len().to_string();
    let json = tail(
        &d,
        &["dead-letters", "--from-beginning", "--count", &m, "--json"],
    );
    let pretty = tail(&d, &["dead-letters", "--from-beginning", "--count", &m]);
    for r in &dlq {
        let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        let reason = &r.headers["propensity.reason"];
        let found = json
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).expect("dead letter JSON"))
            .find(|j| {
                ["__connect.errors.partition", "__connect.errors.offset"]
                    .iter()
                    .all(|h| j["headers"][h] == r.headers[*h].as_str())
            })
            .unwrap_or_else(|| panic!("no tailed dead letter of the record {:?}", r.headers));
        assert_eq!(found["value"], value.as_str());
        for (k, v) in &r.headers {
            assert_eq!(found["headers"][k], v.as_str(), "header {k}");
        }
        let from = format!(
            "dead letter {reason}  from {}/{}@{}",
            d.settings.events_topic,
            r.headers["__connect.errors.partition"],
            r.headers["__connect.errors.offset"]
        );
        assert!(
            pretty.iter().any(|l| l.starts_with(&from)),
            "no line starts with {from:?}: {pretty:?}"
        );
    }
}
