//! Liveness on a real broker: the pipeline keeps making progress on every
//! partition whatever the input and the group do, with producers that never
//! wait for the pipeline.
//!
//! - A record too large to dead-letter whole becomes one truncated dead
//!   letter and blocks no partition.
//! - Scaling from one instance to three while events flow loses nothing,
//!   stalls nothing and duplicates no offer (equal to the replay's).
//! - `propensity_consumer_lag` is the group's real committed lag.
//! - An instance with nothing to do waits for records instead of spinning.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use propensity_engine::replay::{merge_order, RecordKind};
use propensity_kafka::produce::{visitor_key, OutgoingRecord, TrafficProducer};
use propensity_system_tests::{
    assert_same_offers, consent_record, now_epoch_ms, offers_by_id, offers_in, page_view,
    read_lines, AckProducer, Acked, Deployment, Reconciliation, Traffic,
};

#[test]
fn an_oversized_record_becomes_one_truncated_dead_letter_and_blocks_nothing() {
    const VISITORS: usize = 120;
    const EVENTS_EACH: usize = 4;
    const OVERSIZED: usize = 1_040_000;
    let started = Instant::now();
    let d = Deployment::new("oversize", 6, true);
    let instance = d.start("a");
    // The default broker accepts ~1 MiB records; librdkafka's default
    // message.max.bytes (1,000,000) would refuse this one at the producer.
    let producer = AckProducer::new(&d.settings, &[("message.max.bytes", "2000000")]);
    let (events, consent) = (&d.settings.events_topic, &d.settings.consent_topic);
    let base = now_epoch_ms() - 3_600_000;
    let mut visitors: Vec<String> = (0..VISITORS).map(|i| format!("live-{i}")).collect();
    visitors.push("big".to_owned());
    let grants: Vec<usize> = visitors
        .iter()
        .map(|v| producer.send_json(consent, &consent_record(v, base, true, true), None))
        .collect();
    producer.wait_acked(&grants, Duration::from_secs(30));

    let mut normal = 0u64;
    for n in 0..EVENTS_EACH / 2 {
        for v in &visitors {
            let t = base + 1000 * (n as i64 + 1);
            producer.send_json(events, &page_view(&format!("{v}-{n}"), v, t, n), None);
            normal += 1;
        }
    }
    // One valid-looking event of ~1 MB, keyed like the others.
    let head = format!(
        r#"{{"event_id":"big-oversized","visitor_id":"big","type":"page_view","timestamp":"{}","page":{{"url":"https://shop.example.com/cart"}},"pad":""#,
        propensity_system_tests::rfc3339(base + 5_000)
    );
    let mut big = head.into_bytes();
    big.resize(OVERSIZED - 2, b'x');
    big.extend_from_slice(b"\"}");
    assert_eq!(big.len(), OVERSIZED);
    let big_ticket = producer.send(events, Some(b"big"), Some(&big), None);
    // Garbage: not UTF-8 and not JSON, plain text, an empty value, a null
    // value.
    let garbage: Vec<(&[u8], Option<&[u8]>)> = vec![
        (b"g-0", Some(b"\x00\x01\xfe\xffgarbage")),
        (b"g-1", Some(b"not json at all")),
        (b"g-2", Some(b"")),
        (b"g-3", None),
    ];
    let garbage_tickets: Vec<usize> = garbage
        .iter()
        .map(|(k, v)| producer.send(events, Some(k), *v, None))
        .collect();
    // More normal traffic after it, on every partition (including the
    // oversized record's).
    let mut after_big: Vec<String> = Vec::new();
    for n in EVENTS_EACH / 2..EVENTS_EACH {
        for v in &visitors {
            let id = format!("{v}-{n}");
            let t = base + 10_000 + 1000 * n as i64;
            producer.send_json(events, &page_view(&id, v, t, n), None);
            if v == "big" {
                after_big.push(id);
            }
            normal += 1;
        }
    }
    let big_at = producer.wait_acked(&[big_ticket], Duration::from_secs(30))[0];
    let garbage_at = producer.wait_acked(&garbage_tickets, Duration::from_secs(30));
    producer.flush(Duration::from_secs(60));
    println!(
        "produced {normal} normal events to 6 partitions, 1 oversized record of {OVERSIZED} bytes at partition {} offset {}, {} garbage records",
        big_at.partition,
        big_at.offset,
        garbage.len()
    );

    let committed = d.wait_all_committed(Duration::from_secs(60));
    let elapsed = started.elapsed().as_secs_f64();
    if let Err(e) = &committed {
        panic!(
            "{e} — the oversized record ({OVERSIZED} bytes) is at partition {} offset {}; after {elapsed:.1} s. Instance log: {}",
            big_at.partition,
            big_at.offset,
            instance.log.display()
        );
    }
    println!(
        "every partition committed to its end {:.1} s after the last record",
        committed.as_ref().map_or(0.0, Duration::as_secs_f64)
    );

    let total = normal + 1 + garbage.len() as u64;
    let (m, ok) = instance.wait_metrics(Duration::from_secs(30), |m| {
        m.reconciliation().consumed >= total
    });
    let r = m.reconciliation();
    println!(
        "metrics: {r}; dead letters by reason {:?}; test took {:.1} s",
        m.by_label("propensity_dead_letters_total", "reason"),
        started.elapsed().as_secs_f64()
    );
    assert!(
        ok,
        "/metrics counted {} consumed, {total} produced",
        r.consumed
    );
    assert!(r.balanced(), "{r}");
    assert_eq!(r.consumed, total, "{r}");
    assert_eq!(r.dead_lettered, 1 + garbage.len() as u64, "{r}");
    assert_eq!(r.processed, normal, "{r}");
    let dlq = d.read_topic(&d.settings.dead_letter_topic);
    println!(
        "dead-letter topic watermarks: {:?}",
        d.watermarks(&d.settings.dead_letter_topic)
    );
    let at = |r: &propensity_system_tests::Record| -> Option<Acked> {
        Some(Acked {
            partition: r.headers.get("__connect.errors.partition")?.parse().ok()?,
            offset: r.headers.get("__connect.errors.offset")?.parse().ok()?,
        })
    };
    let big_letters: Vec<&propensity_system_tests::Record> =
        dlq.iter().filter(|r| at(r) == Some(big_at)).collect();
    println!(
        "dead letters: {} (expected {}); for the oversized record: {} with value sizes {:?} and headers {:?}",
        dlq.len(),
        1 + garbage.len(),
        big_letters.len(),
        big_letters
            .iter()
            .map(|r| r.value.as_ref().map_or(0, Vec::len))
            .collect::<Vec<_>>(),
        big_letters.first().map(|r| &r.headers)
    );
    assert_eq!(
        big_letters.len(),
        1,
        "exactly one dead letter for the oversized record"
    );
    let letter = big_letters[0];
    let value = letter.value.as_deref().unwrap_or_default();
    assert!(
        value.len() < 1_000_000 && !value.is_empty(),
        "the dead letter's value is cut to fit: {} bytes",
        value.len()
    );
    assert!(
        big.starts_with(value),
        "the truncated value is a prefix of the original record"
    );
    assert_eq!(
        letter
            .headers
            .get("propensity.truncated")
            .map(String::as_str),
        Some("true"),
        "headers: {:?}",
        letter.headers
    );
    assert_eq!(
        letter
            .headers
            .get("propensity.original_size")
            .map(String::as_str),
        Some(OVERSIZED.to_string().as_str()),
        "headers: {:?}",
        letter.headers
    );
    assert_eq!(
        letter.headers.get("__connect.errors.topic"),
        Some(&d.settings.events_topic)
    );
    for (i, g) in garbage_at.iter().enumerate() {
        let n = dlq.iter().filter(|r| at(r) == Some(*g)).count();
        assert_eq!(n, 1, "garbage record {i} ({g:?}): {n} dead letters");
    }
    assert_eq!(dlq.len(), 1 + garbage.len(), "dead letters in all");

    let scored: HashSet<String> =
        propensity_system_tests::json_values(&d.read_topic(&d.settings.scores_topic), "score")
            .iter()
            .filter_map(|s| s["event_id"].as_str().map(str::to_owned))
            .collect();
    for id in &after_big {
        assert!(
            scored.contains(id),
            "{id}, after the oversized record on its partition, was not scored"
        );
    }

    // Readiness may lag a refresh behind the commits.
    let t = Instant::now();
    let (status, body) = loop {
        let (status, body) = instance.http_get("/readyz", None);
        if status == 200 || t.elapsed() > Duration::from_secs(15) {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 200, "/readyz at the end (waited 15 s): {body}");
    assert!(instance.terminate(Duration::from_secs(30)).success());
}

/// Per instance: the most partitions it held, events processed, rebalances.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    max_assigned: f64,
    processed: f64,
    rebalances: f64,
}

#[test]
fn scaling_one_to_three_while_events_flow_loses_and_stalls_nothing() {
    const RATE: f64 = 700.0;
    let started = Instant::now();
    let d = Deployment::new("scaleflow", 6, false);
    let generated = d.generate(1000, 31, 0.0);
    // Our own consent: every visitor grants everything before any event,
    // so the run cannot depend on when consent is applied.
    let event_lines = read_lines(&generated.events);
    let ev: Vec<&[u8]> = event_lines.iter().map(|l| l.as_bytes()).collect();
    let order = merge_order(&ev, &[]);
    let first_ms = order
        .iter()
        .filter_map(|r| propensity_engine::replay::record_time(ev[r.index]))
        .min()
        .expect("events");
    let mut seen_visitors = HashSet::new();
    let mut consent_lines = Vec::new();
    let mut ordered_events: Vec<&str> = Vec::new();
    for r in &order {
        assert_eq!(r.kind, RecordKind::Event);
        let line = event_lines[r.index].as_str();
        if let Some(v) = visitor_key(line.as_bytes()) {
            if seen_visitors.insert(v.clone()) {
                consent_lines
                    .push(consent_record(&v, first_ms - 3_600_000, true, true).to_string());
            }
        }
        ordered_events.push(line);
    }
    // The files hold exactly what is produced, in production order.
    let traffic = Traffic {
        events: d.dir.path().join("produced-events.jsonl"),
        consent: d.dir.path().join("produced-consent.jsonl"),
    };
    std::fs::write(&traffic.events, ordered_events.join("\n") + "\n").expect("write");
    std::fs::write(&traffic.consent, consent_lines.join("\n") + "\n").expect("write");

    let producer = TrafficProducer::new(&d.settings).expect("producer");
    let consent_keys: Vec<Option<String>> = consent_lines
        .iter()
        .map(|l| visitor_key(l.as_bytes()))
        .collect();
    producer
        .send_all(
            consent_lines
                .iter()
                .zip(&consent_keys)
                .map(|(l, k)| OutgoingRecord {
                    topic: &d.settings.consent_topic,
                    key: k.as_deref().map(str::as_bytes),
                    value: Some(l.as_bytes()),
                }),
            None,
        )
        .expect("consent");

    let event_keys: Vec<Option<String>> = ordered_events
        .iter()
        .map(|l| visitor_key(l.as_bytes()))
        .collect();
    let done = AtomicBool::new(false);
    let mut instances = vec![("a", d.start("a"))];
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    let scrape = |instances: &[(&'static str, propensity_system_tests::Instance)],
                  seen: &mut BTreeMap<&'static str, Seen>| {
        for (name, inst) in instances {
            let m = inst.metrics();
            let s = seen.entry(*name).or_default();
            s.max_assigned = s.max_assigned.max(m.sum("propensity_assigned_partitions"));
            s.processed = m.sum("propensity_events_processed_total");
            s.rebalances = m.sum("propensity_rebalances_total");
        }
    };
    let produce_secs = std::thread::scope(|scope| {
        let producing = scope.spawn(|| {
            let t = Instant::now();
            let n = producer
                .send_all(
                    ordered_events
                        .iter()
                        .zip(&event_keys)
                        .map(|(l, k)| OutgoingRecord {
                            topic: &d.settings.events_topic,
                            key: k.as_deref().map(str::as_bytes),
                            value: Some(l.as_bytes()),
                        }),
                    Some(RATE),
                )
                .expect("events");
            done.store(true, Ordering::SeqCst);
            (n, t.elapsed())
        });
        let t = Instant::now();
        let mut scaled = false;
        while !done.load(Ordering::SeqCst) {
            if !scaled && t.elapsed() >= Duration::from_secs(4) {
                instances.push(("b", d.start("b")));
                instances.push(("c", d.start("c")));
                scaled = true;
                println!(
                    "started b and c {:.1} s into production",
                    t.elapsed().as_secs_f64()
                );
            }
            scrape(&instances, &mut seen);
            std::thread::sleep(Duration::from_millis(500));
        }
        let (n, took) = producing.join().expect("producer thread");
        assert!(scaled, "production ended before b and c were started");
        println!(
            "produced {n} events of {} visitors at ~{RATE}/s in {:.1} s, without waiting for the pipeline",
            seen_visitors.len(),
            took.as_secs_f64()
        );
        took
    });

    // Everything must be committed, while the instances are watched.
    let ends: Vec<i64> = d
        .group_progress()
        .expect("progress")
        .iter()
        .map(|p| p.high)
        .collect();
    let t = Instant::now();
    let timeout = Duration::from_secs(120);
    loop {
        scrape(&instances, &mut seen);
        let progress = d.group_progress().expect("progress");
        let stuck: Vec<String> = progress
            .iter()
            .filter(|p| p.committed.unwrap_or(0) < ends[p.partition as usize])
            .map(|p| {
                format!(
                    "partition {} committed {:?} of {}",
                    p.partition, p.committed, ends[p.partition as usize]
                )
            })
            .collect();
        if stuck.is_empty() {
            println!(
                "every partition committed {:.1} s after production ended",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            t.elapsed() < timeout,
            "not committed within {timeout:?} after production ended ({:.1} s of production); stuck: {}; seen per instance: {seen:?}",
            produce_secs.as_secs_f64(),
            stuck.join("; ")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // An instance publishes its counters right after its commit returns,
    // so the group's offsets can show the end a moment before the counts
    // do. The counts are of committed work only (a batch redone after an
    // abort counts once): over all instances they equal the events sent.
    let produced = ordered_events.len() as u64;
    let t = Instant::now();
    let mut total = Reconciliation::default();
    let mut books = Vec::new();
    while t.elapsed() < Duration::from_secs(30) {
        scrape(&instances, &mut seen);
        total = Reconciliation::default();
        books.clear();
        for (name, inst) in &instances {
            let r = inst.metrics().reconciliation();
            total.add(&r);
            books.push((*name, r));
        }
        if total.consumed >= produced {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("per instance: {seen:?}");
    for (name, r) in &books {
        println!("instance {name}: {r}");
        assert!(r.balanced(), "instance {name}: {r}");
    }
    for (name, s) in &seen {
        assert!(
            s.max_assigned > 0.0,
            "instance {name} never had a partition assigned: {s:?}"
        );
        assert!(
            s.processed > 0.0,
            "instance {name} processed no events: {s:?}"
        );
    }
    assert_eq!(
        total.consumed, produced,
        "events consumed over all instances vs produced"
    );
    for (name, inst) in instances {
        let status = inst.terminate(Duration::from_secs(30));
        assert!(status.success(), "instance {name} exited with {status}");
    }

    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let unique = offers_by_id(&kafka, "kafka (read_committed)");
    let replay = d.replay_offers(&traffic);
    println!(
        "offers: {} on the topic ({} distinct), {} from the replay; test took {:.1} s",
        kafka.len(),
        unique.len(),
        replay.len(),
        started.elapsed().as_secs_f64()
    );
    print_offer_differences(&kafka, &replay);
    assert_same_offers(&kafka, &replay);
}

/// Per visitor whose offers differ: Kafka's and the replay's offers
/// (trigger event, action map), so a failure shows what went wrong.
fn print_offer_differences(kafka: &[serde_json::Value], replay: &[serde_json::Value]) {
    let ids = |v: &[serde_json::Value]| -> HashSet<String> {
        v.iter()
            .filter_map(|o| o["offer_id"].as_str().map(str::to_owned))
            .collect()
    };
    let (k, r) = (ids(kafka), ids(replay));
    let mut visitors: Vec<String> = kafka
        .iter()
        .chain(replay)
        .filter(|o| {
            let id = o["offer_id"].as_str().unwrap_or("");
            k.contains(id) != r.contains(id)
        })
        .filter_map(|o| o["visitor_id"].as_str().map(str::to_owned))
        .collect();
    visitors.sort();
    visitors.dedup();
    if visitors.is_empty() {
        return;
    }
    println!(
        "offers differ for {} visitors ({} missing from Kafka, {} extra in Kafka):",
        visitors.len(),
        r.difference(&k).count(),
        k.difference(&r).count()
    );
    let summary = |v: &[serde_json::Value], visitor: &str| -> Vec<String> {
        v.iter()
            .filter(|o| o["visitor_id"] == visitor)
            .map(|o| {
                format!(
                    "{}:{}",
                    o["trigger_event_id"].as_str().unwrap_or("?"),
                    o["action_map"].as_str().unwrap_or("?")
                )
            })
            .collect()
    };
    for v in visitors.iter().take(10) {
        println!(
            "  {v}: kafka {:?} / replay {:?}",
            summary(kafka, v),
            summary(replay, v)
        );
    }
}

#[test]
fn consumer_lag_metric_matches_the_groups_committed_lag() {
    const VISITORS: usize = 100;
    const EVENTS: usize = 3000;
    let started = Instant::now();
    let d = Deployment::new("lag", 3, false);
    let producer = AckProducer::new(&d.settings, &[]);
    let base = now_epoch_ms() - 3_600_000;
    for i in 0..VISITORS {
        let v = format!("lag-{i}");
        producer.send_json(
            &d.settings.consent_topic,
            &consent_record(&v, base, true, true),
            None,
        );
    }
    for n in 0..EVENTS {
        let v = format!("lag-{}", n % VISITORS);
        let t = base + 1000 + (n / VISITORS) as i64 * 1000;
        producer.send_json(
            &d.settings.events_topic,
            &page_view(&format!("{v}-{n}"), &v, t, n / VISITORS),
            None,
        );
    }
    producer.flush(Duration::from_secs(60));
    let real = d.group_progress().expect("progress");
    let real_lag: i64 = real.iter().map(|p| p.lag()).sum();
    println!("produced {EVENTS} events before the start; the group's real lag: {real_lag}");
    assert_eq!(real_lag, EVENTS as i64);

    let instance = d.start("a");
    let topic = d.settings.events_topic.clone();
    // After the first assignment, a lag series per assigned partition.
    let (m, ok) = instance.wait_metrics(Duration::from_secs(60), |m| {
        m.sum("propensity_assigned_partitions") > 0.0
    });
    assert!(ok, "no partition assigned within 60 s");
    let assigned = m.sum("propensity_assigned_partitions") as i32;
    let first_seen = Instant::now();
    let (m, ok) = instance.wait_metrics(Duration::from_secs(20), |m| {
        (0..assigned).all(|p| {
            m.has(
                "propensity_consumer_lag",
                &[("topic", topic.as_str()), ("partition", &p.to_string())],
            )
        })
    });
    let lag_series = m.by_label("propensity_consumer_lag", "partition");
    println!(
        "assigned {assigned} partitions; consumer lag series after {:.1} s: {lag_series:?}",
        first_seen.elapsed().as_secs_f64()
    );
    assert!(
        ok,
        "propensity_consumer_lag{{topic=\"{topic}\"}} is missing for some of the {assigned} assigned partitions within 20 s of the assignment: {lag_series:?}"
    );

    d.wait_all_committed(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    // Once processed, the metric converges on the real committed lag (0).
    let t = Instant::now();
    // A missing series does not count as 0.
    let (converged, last) = loop {
        let m = instance.metrics();
        let metric: BTreeMap<i32, Option<i64>> = (0..d.settings.partitions)
            .map(|p| {
                let labels = [("topic", topic.as_str()), ("partition", &p.to_string())];
                let v = m
                    .has("propensity_consumer_lag", &labels)
                    .then(|| m.sum_where("propensity_consumer_lag", &labels) as i64);
                (p, v)
            })
            .collect();
        let real: Vec<(i32, i64)> = d
            .group_progress()
            .expect("progress")
            .iter()
            .map(|p| (p.partition, p.lag()))
            .collect();
        let same = real.iter().all(|(p, l)| metric.get(p) == Some(&Some(*l)));
        if same || t.elapsed() > Duration::from_secs(20) {
            break (same, (metric, real));
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let metric_sum: i64 = last.0.values().flatten().sum();
    let real_sum: i64 = last.1.iter().map(|(_, l)| l).sum();
    println!(
        "after processing: metric lag {:?} (sum {metric_sum}), real committed lag {:?} (sum {real_sum}), converged after {:.1} s: {converged}; test took {:.1} s",
        last.0,
        last.1,
        t.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        converged,
        "propensity_consumer_lag {:?} (sum {metric_sum}) did not match the group's committed lag {:?} (sum {real_sum}) within 20 s",
        last.0,
        last.1
    );
    assert_eq!(real_sum, 0);
    assert!(instance.terminate(Duration::from_secs(30)).success());
}

/// CPU seconds (user + system) the process has used so far, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // The command name (field 2) may hold spaces: count from its ')'.
    let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| -> f64 { fields[i].parse().expect("CPU ticks in /proc stat") };
    let ticks = field(11) + field(12);
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    let per_sec: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK");
    ticks / per_sec
}

#[test]
fn an_idle_instance_waits_for_records_instead_of_spinning() {
    const IDLE: Duration = Duration::from_secs(6);
    let d = Deployment::new("idle", 3, false);
    let instance = d.start("a");
    instance.wait_ready(Duration::from_secs(120));
    // Some work first, so that the idle period follows commits (the spin
    // this guards against began once the last commit was older than the
    // commit interval).
    let traffic = d.generate(40, 5, 0.0);
    d.produce_paced(&traffic, |_, _| {});
    d.wait_processed(Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_seconds(instance.pid());
    std::thread::sleep(IDLE);
    let used = cpu_seconds(instance.pid()) - before;
    println!("idle instance used {used:.2} CPU-s in {} s", IDLE.as_secs());
    // A spinning loop used a whole core (about 0.5-0.6 CPU-s per second
    // measured on the 2-core test machine, shared with the broker); waiting
    // on the poll uses a few hundredths. A fifth of a core leaves room for
    // the metrics, HTTP and librdkafka threads on a loaded machine.
    assert!(
        used < 0.2 * IDLE.as_secs_f64(),
        "an instance with nothing to do used {used:.2} CPU-s in {} s: its loop is spinning",
        IDLE.as_secs()
    );
    instance.kill9();
}
