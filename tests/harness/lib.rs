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
//!
//! Tests of races and liveness must do the opposite: their producers never
//! wait for the pipeline's commits between records (they may wait for the
//! broker's acknowledgement of a send, see [`AckProducer`]), so that a
//! pipeline that only works when traffic is spaced out fails them.
//!
//! **Background load.** `PROPENSITY_TEST_LOAD=1` makes every [`Deployment`]
//! start a [`LoadGuard`]: a thread in the test process that writes ~1 KiB
//! records to a throwaway topic of its own (`load-<suffix>`, deleted
//! afterwards) at `PROPENSITY_TEST_LOAD_MBPS` MB/s (default 3) for at most
//! `PROPENSITY_TEST_LOAD_MAX_SECS` seconds (default 600), loading the
//! broker and the machine for the duration of the test; it stops when the
//! deployment is dropped. `PROPENSITY_TEST_LOAD_CPU_THREADS` (default 0)
//! adds threads that burn CPU, for scheduling delays. Tests that always
//! want load use
//! [`Deployment::new_under_load`] (or hold [`background_load`]'s guard).
//! Every Kafka system test can run under it, e.g.
//! `PROPENSITY_TEST_LOAD=1 cargo test -p propensity-system-tests --test kafka_end_to_end`.
//!
//! Debugging: `PROPENSITY_TEST_KEEP=1` keeps every test's directory (a
//! failing test always keeps it), `PROPENSITY_TEST_RUST_LOG` replaces the
//! instances' `RUST_LOG`, and `PROPENSITY_BIN` runs another binary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use propensity_engine::replay::{merge_order, RecordKind};
use propensity_kafka::probe::CommitProbe;
use propensity_kafka::produce::{visitor_key, OutgoingRecord, TrafficProducer};
use propensity_kafka::reader::PartitionReader;
use propensity_kafka::{CancellationToken, KafkaSettings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
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
    /// Reads the group's committed offsets per partition, and watermarks.
    group_probe: BaseConsumer,
    /// Background load, when asked for (dropped with the deployment).
    load: Option<LoadGuard>,
}

fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{:08x}", std::process::id(), nanos)
}

impl Deployment {
    /// A deployment with `partitions` partitions; scores published when
    /// `scores` is set. Under `PROPENSITY_TEST_LOAD=1` it carries
    /// background load (see the module doc).
    pub fn new(name: &str, partitions: i32, scores: bool) -> Self {
        Self::create(name, partitions, scores, load_requested().then_some(None))
    }

    /// Like [`Deployment::new`], always with background load.
    pub fn new_under_load(name: &str, partitions: i32, scores: bool) -> Self {
        Self::create(name, partitions, scores, Some(None))
    }

    /// Like [`Deployment::new_under_load`], at `mbps` MB/s and with
    /// `cpu_threads` CPU-burning threads, unless `PROPENSITY_TEST_LOAD_MBPS`
    /// / `PROPENSITY_TEST_LOAD_CPU_THREADS` say otherwise.
    pub fn new_under_load_at(
        name: &str,
        partitions: i32,
        scores: bool,
        mbps: f64,
        cpu_threads: usize,
    ) -> Self {
        Self::create(name, partitions, scores, Some(Some((mbps, cpu_threads))))
    }

    /// `load`: `None` none, `Some(None)` the defaults, `Some(Some((r, c)))`
    /// `r` MB/s and `c` CPU threads.
    fn create(
        name: &str,
        partitions: i32,
        scores: bool,
        load: Option<Option<(f64, usize)>>,
    ) -> Self {
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
        let group_probe: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .create()
            .expect("group probe");
        let mut d = Self {
            suffix,
            settings,
            env,
            dir,
            offsets_probe,
            group_probe,
            load: None,
        };
        run_ok(&mut d.command(&["topics", "create"]));
        if let Some(spec) = load {
            let (mbps, cpu) = spec.unzip();
            d.load = Some(LoadGuard::start_at(&d.settings, &d.suffix, mbps, cpu));
        }
        d
    }

    /// A `propensity` command with this deployment's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let log = std::env::var("PROPENSITY_TEST_RUST_LOG")
            .unwrap_or_else(|_| "info,librdkafka=warn,rdkafka=warn".to_owned());
        c.env("RUST_LOG", log);
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
        if std::thread::panicking() || std::env::var_os("PROPENSITY_TEST_KEEP").is_some() {
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
    // A commit's markers reach the partitions after the commit returns:
    // read everything the group's offsets already account for.
    let ends = reader
        .settled_end_offsets(&parts, Duration::from_secs(60), &CancellationToken::new())
        .expect("settled end offsets");
    let mut out = Vec::new();
    reader
        .read_until(&ends, &CancellationToken::new(), |p, m| {
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

// ---- load, acknowledged sends, offsets, metrics (races and liveness) ----

/// Whether `PROPENSITY_TEST_LOAD=1` asks for background load.
pub fn load_requested() -> bool {
    std::env::var("PROPENSITY_TEST_LOAD").is_ok_and(|v| v.trim() == "1")
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .unwrap_or(default)
}

/// A current-thread runtime for the admin client's futures.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Background load for the lifetime of a test (see the module doc): a
/// thread writing ~1 KiB records to a throwaway topic at a fixed byte rate,
/// bounded in time; stopped, reported and its topic deleted on drop.
pub struct LoadGuard {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    burners: Vec<std::thread::JoinHandle<()>>,
    topic: String,
    settings: KafkaSettings,
    sent: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    started: Instant,
}

/// Background load for a test that always wants it, on a topic of its own.
pub fn background_load(settings: &KafkaSettings) -> LoadGuard {
    LoadGuard::start(settings, &random_suffix())
}

struct LoadContext {
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl rdkafka::ClientContext for LoadContext {}

impl rdkafka::producer::ProducerContext for LoadContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

impl LoadGuard {
    /// Creates `load-<suffix>` and starts writing to it.
    pub fn start(settings: &KafkaSettings, suffix: &str) -> Self {
        Self::start_at(settings, suffix, None, None)
    }

    /// Like [`LoadGuard::start`], at `mbps` MB/s and with `cpu_threads`
    /// CPU-burning threads when given (the environment's
    /// `PROPENSITY_TEST_LOAD_MBPS` / `PROPENSITY_TEST_LOAD_CPU_THREADS` win).
    pub fn start_at(
        settings: &KafkaSettings,
        suffix: &str,
        mbps: Option<f64>,
        cpu_threads: Option<usize>,
    ) -> Self {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let mbps = env_f64("PROPENSITY_TEST_LOAD_MBPS", mbps.unwrap_or(3.0));
        let cpu_threads = std::env::var("PROPENSITY_TEST_LOAD_CPU_THREADS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(cpu_threads.unwrap_or(0))
            .min(8);
        let max_secs = env_f64("PROPENSITY_TEST_LOAD_MAX_SECS", 600.0);
        let topic = format!("load-{suffix}");
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .create()
            .expect("admin client");
        let new = NewTopic::new(&topic, 3, TopicReplication::Fixed(1))
            .set("retention.ms", "60000")
            .set("segment.bytes", "8388608");
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let created = block_on(admin.create_topics([&new], &opts)).expect("create load topic");
        for r in created {
            r.unwrap_or_else(|(t, e)| panic!("cannot create load topic {t}: {e}"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, acked, failed) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let producer: rdkafka::producer::BaseProducer<LoadContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "20000")
            .create_with_context(LoadContext {
                acked: acked.clone(),
                failed: failed.clone(),
            })
            .expect("load producer");
        let thread = {
            let (stop, sent, topic) = (stop.clone(), sent.clone(), topic.clone());
            std::thread::Builder::new()
                .name("test-load".into())
                .spawn(move || {
                    use rdkafka::producer::{BaseRecord, Producer};
                    // ~1 KiB, varied so that nothing compresses it away.
                    let payloads: Vec<Vec<u8>> = (0..64u32)
                        .map(|i| {
                            (0..1024u32)
                                .map(|j| {
                                    (i.wrapping_mul(2_654_435_761) ^ j.wrapping_mul(40_503)) as u8
                                })
                                .collect()
                        })
                        .collect();
                    let per_second = mbps * 1_000_000.0 / 1024.0;
                    let started = Instant::now();
                    let deadline = started + Duration::from_secs_f64(max_secs);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let due = (started.elapsed().as_secs_f64() * per_second) as u64;
                        while n < due && !stop.load(Ordering::Relaxed) {
                            let p = &payloads[(n % 64) as usize];
                            // A full queue (slow broker) drops load, never
                            // blocks: the rate stays bounded.
                            if producer
                                .send(BaseRecord::<[u8], [u8]>::to(&topic).payload(p))
                                .is_ok()
                            {
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                            n += 1;
                        }
                        producer.poll(Duration::from_millis(10));
                    }
                    let _ = producer.flush(Duration::from_secs(5));
                })
                .expect("load thread")
        };
        let deadline = Instant::now() + Duration::from_secs_f64(max_secs);
        let burners = (0..cpu_threads)
            .map(|i| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("test-cpu-load-{i}"))
                    .spawn(move || {
                        let mut x = 0x9e37_79b9_7f4a_7c15u64;
                        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                            for _ in 0..100_000 {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                            }
                            std::hint::black_box(x);
                        }
                    })
                    .expect("cpu load thread")
            })
            .collect();
        eprintln!(
            "background load: {mbps} MB/s of 1 KiB records to {topic}, {cpu_threads} CPU-burning threads (at most {max_secs} s)"
        );
        Self {
            stop,
            thread: Some(thread),
            burners,
            topic,
            settings: settings.clone(),
            sent,
            acked,
            failed,
            started: Instant::now(),
        }
    }

    /// Records acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for t in self.burners.drain(..) {
            let _ = t.join();
        }
        let secs = self.started.elapsed().as_secs_f64();
        let acked = self.acked.load(Ordering::Relaxed);
        eprintln!(
            "background load: {} records sent, {acked} acknowledged ({:.1} MB, {:.2} MB/s over {secs:.1} s), {} failed",
            self.sent.load(Ordering::Relaxed),
            acked as f64 * 1024.0 / 1e6,
            acked as f64 * 1024.0 / 1e6 / secs.max(0.001),
            self.failed.load(Ordering::Relaxed),
        );
        if let Ok(admin) = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .create::<AdminClient<DefaultClientContext>>()
        {
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            let _ = block_on(admin.delete_topics(&[self.topic.as_str()], &opts));
        }
    }
}

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

#[derive(Default)]
struct AckContext {
    results: Mutex<HashMap<usize, Result<Acked, String>>>,
}

impl rdkafka::ClientContext for AckContext {}

impl rdkafka::producer::ProducerContext for AckContext {
    type DeliveryOpaque = Box<usize>;
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, ticket: Box<usize>) {
        let result = match r {
            Ok(m) => Ok(Acked {
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, _)) => Err(e.to_string()),
        };
        if let Ok(mut map) = self.results.lock() {
            map.insert(*ticket, result);
        }
    }
}

/// A producer (murmur2 partitioner, idempotent, like the data platform's)
/// that tells per send when and where the broker acknowledged it, and can
/// set a record's Kafka timestamp (tombstones are dated by it).
pub struct AckProducer {
    producer: rdkafka::producer::BaseProducer<AckContext>,
    next: AtomicUsize,
}

impl AckProducer {
    /// A producer with extra librdkafka properties (e.g.
    /// `message.max.bytes`).
    pub fn new(settings: &KafkaSettings, extra: &[(&str, &str)]) -> Self {
        let mut cfg = propensity_kafka::client_config::plain_producer(settings);
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        Self {
            producer: cfg
                .create_with_context(AckContext::default())
                .expect("producer"),
            next: AtomicUsize::new(0),
        }
    }

    /// Queues a record (never waits for the pipeline); returns its ticket.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) -> usize {
        use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
        use rdkafka::producer::BaseRecord;
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let mut record =
            BaseRecord::<[u8], [u8], Box<usize>>::with_opaque_to(topic, Box::new(ticket));
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(t) = timestamp_ms {
            record = record.timestamp(t);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer.poll(Duration::ZERO);
                    return ticket;
                }
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("cannot queue a record to {topic}: {e}"),
            }
        }
    }

    /// Sends a JSON value keyed by its `visitor_id`.
    pub fn send_json(&self, topic: &str, value: &Value, timestamp_ms: Option<i64>) -> usize {
        let bytes = serde_json::to_vec(value).expect("json");
        let key = value["visitor_id"].as_str().map(str::as_bytes);
        self.send(topic, key, Some(&bytes), timestamp_ms)
    }

    /// Waits for the broker's acknowledgement of each ticket; panics on a
    /// failed delivery or after `timeout`.
    pub fn wait_acked(&self, tickets: &[usize], timeout: Duration) -> Vec<Acked> {
        use rdkafka::producer::Producer as _;
        let started = Instant::now();
        loop {
            {
                let map = self.producer.context().results.lock().expect("acks");
                if tickets.iter().all(|t| map.contains_key(t)) {
                    return tickets
                        .iter()
                        .map(|t| {
                            map[t]
                                .clone()
                                .unwrap_or_else(|e| panic!("the broker refused a record: {e}"))
                        })
                        .collect();
                }
            }
            assert!(
                started.elapsed() < timeout,
                "records not acknowledged within {timeout:?}"
            );
            self.producer.poll(Duration::from_millis(1));
        }
    }

    /// Waits until everything sent so far is acknowledged (panics on a
    /// failed delivery).
    pub fn flush(&self, timeout: Duration) {
        let tickets: Vec<usize> = (0..self.next.load(Ordering::Relaxed)).collect();
        self.wait_acked(&tickets, timeout);
    }
}

/// RFC 3339 (UTC, milliseconds) of an epoch time.
pub fn rfc3339(epoch_ms: i64) -> String {
    propensity_engine::timestamp::format_rfc3339_ms(epoch_ms)
}

/// Wall-clock now, epoch milliseconds.
pub fn now_epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A page view of `visitor` at `time_ms` (paths cycle through a shop's
/// funnel, so sessions get scored and some get offers).
pub fn page_view(event_id: &str, visitor: &str, time_ms: i64, n: usize) -> Value {
    let path = [
        "/products/widget-1",
        "/pricing",
        "/cart",
        "/checkout",
        "/checkout/payment",
    ][n % 5];
    serde_json::json!({
        "event_id": event_id,
        "visitor_id": visitor,
        "type": "page_view",
        "timestamp": rfc3339(time_ms),
        "page": {"url": format!("https://shop.example.com{path}")},
        "device": {"category": "desktop"}
    })
}

/// A consent record: `tracking` as given, the other purposes as `others`.
pub fn consent_record(visitor: &str, time_ms: i64, tracking: bool, others: bool) -> Value {
    serde_json::json!({
        "visitor_id": visitor,
        "timestamp": rfc3339(time_ms),
        "purposes": {"tracking": tracking, "sales": others, "marketing": others, "support": others}
    })
}

/// One partition of the events topic as the group sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (`None`: nothing committed).
    pub committed: Option<i64>,
    /// Low watermark.
    pub low: i64,
    /// High watermark (end).
    pub high: i64,
}

impl PartitionProgress {
    /// Records not committed yet.
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low)).max(0)
    }
}

impl Deployment {
    /// The group's committed offset and the watermarks of every events
    /// partition, queried from outside the group.
    pub fn group_progress(&self) -> Result<Vec<PartitionProgress>, String> {
        let topic = &self.settings.events_topic;
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.settings.partitions {
            tpl.add_partition(topic, p);
        }
        let committed = self
            .group_probe
            .committed_offsets(tpl, Duration::from_secs(10))
            .map_err(|e| format!("committed offsets: {e}"))?;
        let mut out = Vec::new();
        for p in 0..self.settings.partitions {
            let (low, high) = self
                .group_probe
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(|e| format!("watermarks: {e}"))?;
            let committed = committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            out.push(PartitionProgress {
                partition: p,
                committed,
                low,
                high,
            });
        }
        Ok(out)
    }

    /// `(low, high)` watermarks of every partition of `topic`.
    pub fn watermarks(&self, topic: &str) -> Vec<(i64, i64)> {
        (0..self.settings.partitions)
            .map(|p| {
                self.group_probe
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap_or((-1, -1))
            })
            .collect()
    }

    /// Waits until the group's commits reach the end of every events
    /// partition as of now; on timeout says which partitions are stuck
    /// where. Returns how long it took.
    pub fn wait_all_committed(&self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let ends: Vec<i64> = loop {
            match self.group_progress() {
                Ok(p) => break p.iter().map(|x| x.high).collect(),
                Err(e) if started.elapsed() > timeout => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        let mut last = Vec::new();
        loop {
            if let Ok(progress) = self.group_progress() {
                let stuck: Vec<PartitionProgress> = progress
                    .into_iter()
                    .filter(|p| p.committed.unwrap_or(0) < ends[p.partition as usize])
                    .collect();
                if stuck.is_empty() {
                    return Ok(started.elapsed());
                }
                last = stuck;
            }
            if started.elapsed() > timeout {
                let report: Vec<String> = last
                    .iter()
                    .map(|p| {
                        format!(
                            "partition {} committed {:?} of end {}",
                            p.partition, p.committed, ends[p.partition as usize]
                        )
                    })
                    .collect();
                return Err(format!(
                    "the group did not commit every events partition to its end within {timeout:?}; stuck: {}",
                    report.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A scrape of `/metrics`: `(name, labels, value)` per series.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Every series.
    pub series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// Parses the Prometheus text format.
    pub fn parse(text: &str) -> Self {
        let mut series = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (head, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.trim_end_matches('}');
                    let labels = body
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                        .collect();
                    (n.to_owned(), labels)
                }
                None => (head.to_owned(), BTreeMap::new()),
            };
            series.push((name, labels, value));
        }
        Self { series }
    }

    /// Sum of every series of `name` whose labels include `labels`.
    pub fn sum_where(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Sum of every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.sum_where(name, &[])
    }

    /// Values of `name` by one label.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, l, v) in &self.series {
            if n == name {
                *out.entry(l.get(label).cloned().unwrap_or_default())
                    .or_insert(0.0) += v;
            }
        }
        out
    }

    /// Whether a series of `name` with exactly these label values exists.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.series.iter().any(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The event accounting of this scrape.
    pub fn reconciliation(&self) -> Reconciliation {
        let u = |x: f64| x.max(0.0).round() as u64;
        Reconciliation {
            consumed: u(self.sum("propensity_events_consumed_total")),
            processed: u(self.sum("propensity_events_processed_total")),
            dropped: u(self.sum("propensity_events_dropped_total")),
            dead_lettered: u(
                self.sum_where("propensity_dead_letters_total", &[("source", "events")])
            ),
            buffered: u(self.sum("propensity_buffered_events")),
        }
    }
}

/// `consumed = processed + dropped + dead-lettered + buffered`, from
/// `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Events consumed (every type, and invalid records).
    pub consumed: u64,
    /// Processed.
    pub processed: u64,
    /// Dropped, all reasons.
    pub dropped: u64,
    /// Dead-lettered events.
    pub dead_lettered: u64,
    /// Waiting for a first consent record.
    pub buffered: u64,
}

impl Reconciliation {
    /// Whether the books balance.
    pub fn balanced(&self) -> bool {
        self.consumed == self.processed + self.dropped + self.dead_lettered + self.buffered
    }

    /// Adds another instance's figures.
    pub fn add(&mut self, o: &Reconciliation) {
        self.consumed += o.consumed;
        self.processed += o.processed;
        self.dropped += o.dropped;
        self.dead_lettered += o.dead_lettered;
        self.buffered += o.buffered;
    }
}

impl std::fmt::Display for Reconciliation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "consumed {} vs processed {} + dropped {} + dead-lettered {} + buffered {} = {}",
            self.consumed,
            self.processed,
            self.dropped,
            self.dead_lettered,
            self.buffered,
            self.processed + self.dropped + self.dead_lettered + self.buffered
        )
    }
}

impl Instance {
    /// A scrape of `GET /metrics` (panics unless 200).
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.http_get("/metrics", None);
        assert_eq!(status, 200, "GET /metrics: {body}");
        Metrics::parse(&body)
    }

    /// Waits until `GET /readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let (status, body) = self.http_get("/readyz", None);
            if status == 200 {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "instance not ready within {timeout:?}: {status} {body}; log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `/metrics` until `ok` holds or `timeout` passes; returns the
    /// last scrape and whether `ok` held.
    pub fn wait_metrics(
        &self,
        timeout: Duration,
        ok: impl Fn(&Metrics) -> bool,
    ) -> (Metrics, bool) {
        let started = Instant::now();
        loop {
            let m = self.metrics();
            if ok(&m) {
                return (m, true);
            }
            if started.elapsed() > timeout {
                return (m, false);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Parsed JSON values of a topic's records.
pub fn json_values(records: &[Record], what: &str) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
        })
        .collect()
}

// ---- helpers for existing-test fixes ----

impl Instance {
    /// The process id (for `kill -HUP <pid>` and other signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a `kill` name such as `HUP` or `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }
}

impl Deployment {
    /// Waits until the broker's metadata shows every topic of this
    /// deployment with all its partitions (`topics create` returns when
    /// the controller has created them, a moment before the broker serves
    /// them, and `propensity run` refuses to start on a missing topic).
    pub fn wait_topics_visible(&self, timeout: Duration) {
        use rdkafka::consumer::Consumer as _;
        let client: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .create()
            .expect("metadata client");
        let s = &self.settings;
        let topics = [
            &s.events_topic,
            &s.consent_topic,
            &s.offers_topic,
            &s.dead_letter_topic,
            &s.changelog_topic,
            &s.scores_topic,
        ];
        let started = Instant::now();
        for topic in topics.into_iter().filter(|t| !t.is_empty()) {
            loop {
                let visible = client
                    .fetch_metadata(Some(topic), Duration::from_secs(5))
                    .ok()
                    .is_some_and(|m| {
                        m.topics().iter().any(|t| {
                            t.name() == topic.as_str()
                                && t.error().is_none()
                                && t.partitions().len() >= s.partitions as usize
                                && t.partitions().iter().all(|p| p.leader() >= 0)
                        })
                    });
                if visible {
                    break;
                }
                assert!(
                    started.elapsed() < timeout,
                    "topic {topic} not visible within {timeout:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
