//! Harness of the system tests: a real Kafka broker (started by
//! `tests/run-all.sh` or `.ci/run` through `deploy/local/kafka`), the real
//! `propensity` binary run as separate processes, fresh topics with random
//! names per test, and the file replay of the same records as the oracle.
//!
//! The one subtle part is producing test traffic so that the Kafka run is
//! comparable with the replay: replay applies consent in record-time order,
//! while the runtime applies every consent record *already written* before
//! an event batch first (consent-first). So the producer writes records in
//! time order and, before writing a consent record of a visitor whose
//! earlier events were produced, waits until the pipeline has committed
//! past those events. That is exactly the situation consent-first describes,
//! and then both runs see each visitor's records in the same order.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use propensity_engine::replay::{merge_order, RecordKind};
use propensity_kafka::probe::CommitProbe;
use propensity_kafka::produce::{visitor_key, OutgoingRecord, TrafficProducer};
use propensity_kafka::reader::PartitionReader;
use propensity_kafka::KafkaSettings;
use rdkafka::message::Headers;
use rdkafka::Message;
use serde_json::Value;

/// The broker address, from `PROPENSITY_TEST_BROKERS`.
pub fn brokers() -> String {
    std::env::var("PROPENSITY_TEST_BROKERS").unwrap_or_else(|_| {
        panic!(
            "PROPENSITY_TEST_BROKERS is not set: these tests need a real Kafka broker. \
             Run `tests/run-all.sh` (starts one with deploy/local/kafka), or start one and \
             export PROPENSITY_TEST_BROKERS=127.0.0.1:9092"
        )
    })
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `propensity` binary (`PROPENSITY_BIN`, else the workspace's debug
/// build).
pub fn binary() -> PathBuf {
    let path = std::env::var("PROPENSITY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/debug/propensity"));
    assert!(
        path.exists(),
        "{} does not exist: build it with `cargo build -p propensity-cli` (tests/run-all.sh does)",
        path.display()
    );
    path
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("cannot run the propensity binary");
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Models trained once per test binary on generated traffic.
pub fn models_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = workspace_root()
            .join("target/system-tests")
            .join(format!("models-{}", std::process::id()));
        let traffic = dir.join("traffic");
        run_ok(
            Command::new(binary())
                .args(["generate", "--visitors", "1500", "--seed", "1", "--out"])
                .arg(&traffic),
        );
        run_ok(
            Command::new(binary())
                .args(["train", "--events"])
                .arg(traffic.join("events.jsonl"))
                .arg("--consent")
                .arg(traffic.join("consent.jsonl"))
                .arg("--out")
                .arg(dir.join("models")),
        );
        dir.join("models")
    })
    .clone()
}

/// Generated traffic files.
pub struct Traffic {
    /// Events file.
    pub events: PathBuf,
    /// Consent file.
    pub consent: PathBuf,
}

/// One test's deployment: its own topics and group, its own directory.
pub struct Deployment {
    /// Random suffix of every name.
    pub suffix: String,
    /// Kafka settings (for the harness's own clients).
    pub settings: KafkaSettings,
    /// Environment overrides given to every `propensity` process.
    pub env: Vec<(String, String)>,
    /// Scratch directory.
    pub dir: tempfile::TempDir,
    /// Reads the pipeline group's committed offsets (never joins it).
    offsets_probe: CommitProbe,
}

fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{:08x}", std::process::id(), nanos)
}

impl Deployment {
    /// A deployment with `partitions` partitions; scores published when
    /// `scores` is set.
    pub fn new(name: &str, partitions: i32, scores: bool) -> Self {
        let suffix = format!("{name}-{}", random_suffix());
        let mut settings = KafkaSettings {
            brokers: brokers(),
            group_id: format!("g-{suffix}"),
            events_topic: format!("events-{suffix}"),
            consent_topic: format!("consent-{suffix}"),
            offers_topic: format!("offers-{suffix}"),
            dead_letter_topic: format!("dlq-{suffix}"),
            changelog_topic: format!("changelog-{suffix}"),
            partitions,
            ..KafkaSettings::default()
        };
        if scores {
            settings.scores_topic = format!("scores-{suffix}");
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("propensity-{name}-"))
            .tempdir()
            .expect("tempdir");
        let models = models_dir();
        let env = vec![
            ("PROPENSITY__KAFKA__BROKERS", settings.brokers.clone()),
            ("PROPENSITY__KAFKA__GROUP_ID", settings.group_id.clone()),
            (
                "PROPENSITY__KAFKA__EVENTS_TOPIC",
                settings.events_topic.clone(),
            ),
            (
                "PROPENSITY__KAFKA__CONSENT_TOPIC",
                settings.consent_topic.clone(),
            ),
            (
                "PROPENSITY__KAFKA__OFFERS_TOPIC",
                settings.offers_topic.clone(),
            ),
            (
                "PROPENSITY__KAFKA__DEAD_LETTER_TOPIC",
                settings.dead_letter_topic.clone(),
            ),
            (
                "PROPENSITY__KAFKA__CHANGELOG_TOPIC",
                settings.changelog_topic.clone(),
            ),
            (
                "PROPENSITY__KAFKA__SCORES_TOPIC",
                format!("\"{}\"", settings.scores_topic),
            ),
            ("PROPENSITY__KAFKA__PARTITIONS", partitions.to_string()),
            ("PROPENSITY__MODELS__DIR", models.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let offsets_probe = CommitProbe::new(&settings).expect("probe");
        let d = Self {
            suffix,
            settings,
            env,
            dir,
            offsets_probe,
        };
        run_ok(&mut d.command(&["topics", "create"]));
        d
    }

    /// A `propensity` command with this deployment's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn");
        c
    }

    /// Generates traffic into this deployment's directory.
    pub fn generate(&self, visitors: usize, seed: u64, invalid_rate: f64) -> Traffic {
        let out = self.dir.path().join(format!("traffic-{seed}"));
        run_ok(
            self.command(&[
                "generate",
                "--visitors",
                &visitors.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .args(["--invalid-rate", &invalid_rate.to_string(), "--out"])
            .arg(&out),
        );
        Traffic {
            events: out.join("events.jsonl"),
            consent: out.join("consent.jsonl"),
        }
    }

    /// Starts an instance of `propensity run`, with its HTTP endpoints on a
    /// free loopback port and `admin-token` as the admin bearer token.
    pub fn start(&self, instance: &str) -> Instance {
        let log = self
            .dir
            .path()
            .join(format!("run-{instance}-{}.log", random_suffix()));
        let summary = self.dir.path().join(format!("summary-{instance}.json"));
        let file = std::fs::File::create(&log).expect("log file");
        let http_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = self
            .command(&["run", "--instance-id", instance, "--summary-json"])
            .arg(&summary)
            .env(
                "PROPENSITY__HTTP__LISTEN",
                format!("\"127.0.0.1:{http_port}\""),
            )
            .env("PROPENSITY__HTTP__ADMIN_TOKEN", "admin-token")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("cannot start propensity run");
        Instance {
            child,
            log,
            summary,
            http_port,
        }
    }

    /// The offers `propensity replay` makes of the same records.
    pub fn replay_offers(&self, traffic: &Traffic) -> Vec<Value> {
        self.replay(traffic).0
    }

    /// The offers and the summary of `propensity replay` on the same
    /// records.
    pub fn replay(&self, traffic: &Traffic) -> (Vec<Value>, Value) {
        let out = self.dir.path().join("replay-offers.jsonl");
        let summary = self.dir.path().join("replay-summary.json");
        run_ok(
            self.command(&["replay", "--events"])
                .arg(&traffic.events)
                .arg("--consent")
                .arg(&traffic.consent)
                .arg("--models")
                .arg(models_dir())
                .arg("--offers-out")
                .arg(&out)
                .arg("--summary-json")
                .arg(&summary),
        );
        let summary = serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary"))
            .expect("summary JSON");
        (read_json_lines(&out), summary)
    }

    /// Every committed record of a topic.
    pub fn read_topic(&self, topic: &str) -> Vec<Record> {
        read_topic(&self.settings, topic)
    }

    /// Produces traffic in time order with consent barriers (see the
    /// module doc). `between(i)` is called before record `i`, so a test can
    /// kill, restart or scale instances mid-stream.
    pub fn produce_paced(&self, traffic: &Traffic, mut between: impl FnMut(usize, usize)) {
        let events = read_lines(&traffic.events);
        let consent = read_lines(&traffic.consent);
        let ev: Vec<&[u8]> = events.iter().map(|l| l.as_bytes()).collect();
        let co: Vec<&[u8]> = consent.iter().map(|l| l.as_bytes()).collect();
        let order = merge_order(&ev, &co);
        let producer = TrafficProducer::new(&self.settings).expect("producer");
        let mut pending: HashSet<String> = HashSet::new();
        let (started, mut barriers) = (Instant::now(), 0usize);
        let (mut flush_time, mut wait_time) = (Duration::ZERO, Duration::ZERO);
        for (i, rec) in order.iter().enumerate() {
            between(i, order.len());
            let (topic, line) = match rec.kind {
                RecordKind::Event => (&self.settings.events_topic, ev[rec.index]),
                RecordKind::Consent => (&self.settings.consent_topic, co[rec.index]),
            };
            let key = visitor_key(line);
            if rec.kind == RecordKind::Consent {
                if key.as_ref().is_some_and(|k| pending.contains(k)) {
                    let t = Instant::now();
                    producer.flush(Duration::from_secs(60)).expect("flush");
                    flush_time += t.elapsed();
                    let t = Instant::now();
                    self.wait_processed(Duration::from_secs(180));
                    wait_time += t.elapsed();
                    pending.clear();
                    barriers += 1;
                }
            } else if let Some(k) = &key {
                pending.insert(k.clone());
            }
            producer
                .send(OutgoingRecord {
                    topic,
                    key: key.as_deref().map(str::as_bytes),
                    value: Some(line),
                })
                .expect("send");
            if rec.kind == RecordKind::Consent {
                let t = Instant::now();
                producer.flush(Duration::from_secs(60)).expect("flush");
                flush_time += t.elapsed();
            }
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
        eprintln!(
            "produced {} records with {barriers} consent barriers in {:.1} s ({:.1} s flushing, {:.1} s waiting for commits)",
            order.len(),
            started.elapsed().as_secs_f64(),
            flush_time.as_secs_f64(),
            wait_time.as_secs_f64()
        );
    }

    /// Waits until the group has committed every event written so far.
    pub fn wait_processed(&self, timeout: Duration) {
        self.offsets_probe
            .wait_until_committed(timeout)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Deployment {
    /// A failing test keeps its directory (instance logs, traffic, summaries)
    /// and says where it is.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!("test files kept in {}", self.dir.path().display());
        }
    }
}

/// A running `propensity run`.
pub struct Instance {
    child: Child,
    /// Its log.
    pub log: PathBuf,
    /// Its summary (written on clean exit).
    pub summary: PathBuf,
    /// Port of its HTTP endpoints on 127.0.0.1.
    pub http_port: u16,
}

impl Instance {
    /// SIGKILL: no chance to commit or clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "instance did not exit within {timeout:?} after SIGTERM; log: {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the instance's HTTP endpoints: (status, body). Retries
    /// while the server is not listening yet.
    pub fn http_get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        use std::io::{Read, Write};
        let started = Instant::now();
        loop {
            match std::net::TcpStream::connect(("127.0.0.1", self.http_port)) {
                Ok(mut s) => {
                    let auth = token
                        .map(|t| format!("Authorization: Bearer {t}\r\n"))
                        .unwrap_or_default();
                    let req = format!(
                        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
                    );
                    s.write_all(req.as_bytes()).expect("write");
                    let mut resp = String::new();
                    s.read_to_string(&mut resp).expect("read");
                    let status = resp
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    let body = resp
                        .split_once("\r\n\r\n")
                        .map(|(_, b)| b.to_owned())
                        .unwrap_or_default();
                    return (status, body);
                }
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "cannot connect to the instance's HTTP port: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A consumed record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: BTreeMap<String, String>,
}

/// Reads every committed record of `topic` (read_committed, to the end).
pub fn read_topic(settings: &KafkaSettings, topic: &str) -> Vec<Record> {
    let mut reader = PartitionReader::new(settings, &format!("test-{}", random_suffix()), topic)
        .expect("reader");
    let parts: Vec<i32> = (0..settings.partitions).collect();
    let from: Vec<(i32, Option<i64>)> = parts.iter().map(|p| (*p, None)).collect();
    reader.assign(&from).expect("assign");
    let ends = reader.end_offsets(&parts).expect("ends");
    let mut out = Vec::new();
    reader
        .read_until(&ends, &AtomicBool::new(false), |p, m| {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_owned(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                partition: p,
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        })
        .expect("read");
    out
}

/// Lines of a file.
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// A JSON document in a file.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// JSON lines of a file.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    read_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Offers keyed by `offer_id`, without `decided_at` (wall clock in Kafka,
/// event time in replay). Panics on a duplicate id: exactly-once means
/// every offer exists once.
pub fn offers_by_id(offers: &[Value], what: &str) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for o in offers {
        let mut o = o.clone();
        let id = o["offer_id"].as_str().expect("offer_id").to_owned();
        if let Some(obj) = o.as_object_mut() {
            obj.remove("decided_at");
        }
        assert!(
            map.insert(id.clone(), o).is_none(),
            "{what}: offer {id} appears twice"
        );
    }
    map
}

/// The offers a topic holds, parsed.
pub fn offers_in(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("offer JSON")
        })
        .collect()
}

/// Asserts that Kafka's offers equal the replay's, naming what differs.
pub fn assert_same_offers(kafka: &[Value], replay: &[Value]) {
    let k = offers_by_id(kafka, "kafka");
    let r = offers_by_id(replay, "replay");
    let missing: Vec<&String> = r.keys().filter(|id| !k.contains_key(*id)).collect();
    let extra: Vec<&String> = k.keys().filter(|id| !r.contains_key(*id)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "offers differ: {} missing from Kafka, {} extra in Kafka (of {} replayed); first missing: {:?}; first extra: {:?}",
        missing.len(),
        extra.len(),
        r.len(),
        missing.first().map(|id| &r[*id]),
        extra.first().map(|id| &k[*id])
    );
    for (id, offer) in &r {
        let got = &k[id];
        for field in [
            "visitor_id",
            "session_id",
            "action_map",
            "outcome",
            "trigger_event_id",
            "event_time",
            "model_version",
            "action",
            "purpose",
        ] {
            assert_eq!(
                got[field], offer[field],
                "offer {id}: field {field} differs"
            );
        }
        let (a, b) = (got["probability"].as_f64(), offer["probability"].as_f64());
        assert_eq!(a, b, "offer {id}: probability differs");
    }
    assert!(
        !r.is_empty(),
        "the replay made no offers: the comparison would prove nothing"
    );
}
