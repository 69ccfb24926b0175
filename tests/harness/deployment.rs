//! The deployment under test: [`Deployment`] (one test's topics, group,
//! directory and probes; starts instances, produces traffic, replays it,
//! watches the group's progress) and [`Instance`] (one running
//! `propensity run` process: HTTP, metrics, signals, shutdown).
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
//! Over 600 lines on purpose: [`Deployment`] and [`Instance`] are one job
//! (a deployment and the processes it starts), and every `impl` block of
//! both is kept here together rather than split across files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use propensity_engine::replay::{merge_order, RecordKind};
use propensity_kafka::probe::CommitProbe;
use propensity_kafka::produce::{visitor_key, OutgoingRecord, TrafficProducer};
use propensity_kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::{
    assert_same_decisions, assert_same_records, binary, brokers, json_values, load_requested,
    models_dir, random_suffix, read_json, read_json_lines, read_lines, read_topic, run_ok,
    workspace_root, LoadGuard, Metrics, Record,
};

/// `[kafka] workers` of every deployment's instances, unless a test sets
/// its own: more than one, so that every system test checks the trust
/// guarantees (consent first, one transaction per batch, per-partition
/// order, reconciling counts, exactly-once) with a batch's partitions
/// processed on several threads at once; more than this machine's 2 cores,
/// so that workers also interleave on one core.
pub const TEST_WORKERS: usize = 3;

/// Generated traffic files.
pub struct Traffic {
    /// Events file.
    pub events: PathBuf,
    /// Consent file.
    pub consent: PathBuf,
}

/// The deployment's configuration file, in its directory.
const CONFIG_FILE: &str = "propensity.toml";

/// The map that has a control group in every deployment, and its share.
/// It also has a contact policy ([`CONTACT_POLICY`]).
pub const CONTROL_GROUP_MAP: (&str, f64) = ("checkout-assist-chat", 0.3);

/// The contact policy of [`CONTROL_GROUP_MAP`] in every deployment: two
/// declines within 30 days suppress it for 30 days.
pub const CONTACT_POLICY: &str =
    "contact_policy = { max_declines = 2, within_days = 30, suppress_days = 30 }";

/// Writes the shipped configuration with a control group on
/// [`CONTROL_GROUP_MAP`]: every system test then runs held-out decisions
/// and conversions in both arms through its hard conditions, and `replay`
/// (same file) must agree with them.
fn write_config(path: &Path) {
    let shipped = std::fs::read_to_string(workspace_root().join("config/propensity.toml"))
        .expect("config/propensity.toml");
    let (map, share) = CONTROL_GROUP_MAP;
    let name_line = format!("name = \"{map}\"\n");
    assert!(
        shipped.contains(&name_line),
        "no action map {map} in the shipped config"
    );
    let mut text = String::new();
    let mut in_map = false;
    for line in shipped.lines() {
        if line.starts_with("[[") || line.starts_with('[') {
            in_map = false;
        }
        if format!("{line}\n") == name_line {
            in_map = true;
        }
        if in_map && line.starts_with("holdout_fraction") {
            text.push_str(&format!("holdout_fraction = {share}\n{CONTACT_POLICY}\n"));
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    assert!(
        text.contains(&format!("holdout_fraction = {share}")),
        "{map}: no holdout_fraction line to set"
    );
    std::fs::write(path, text).expect("write the deployment config");
}

/// What `propensity replay` wrote.
pub struct ReplayOutputs {
    /// Offers.
    pub offers: Vec<Value>,
    /// Decision records.
    pub decisions: Vec<Value>,
    /// Conversion records.
    pub conversions: Vec<Value>,
    /// The summary (`--summary-json`).
    pub summary: Value,
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
        // Decisions are always published: every system test then checks
        // that they are written without disturbing anything else, and the
        // crash tests compare them with `replay`'s.
        settings.decisions_topic = format!("decisions-{suffix}");
        settings.conversions_topic = format!("conversions-{suffix}");
        // Feedback is always read: tests without it check that an empty
        // feedback topic changes nothing.
        settings.feedback_topic = format!("feedback-{suffix}");
        let dir = tempfile::Builder::new()
            .prefix(&format!("propensity-{name}-"))
            .tempdir()
            .expect("tempdir");
        write_config(&dir.path().join(CONFIG_FILE));
        let models = models_dir();
        let env = vec![
            ("PROPENSITY__KAFKA__BROKERS", settings.brokers.clone()),
            ("PROPENSITY__KAFKA__GROUP_ID", settings.group_id.clone()),
            ("PROPENSITY__KAFKA__PARTITIONS", partitions.to_string()),
            ("PROPENSITY__KAFKA__WORKERS", TEST_WORKERS.to_string()),
            ("PROPENSITY__MODELS__DIR", models.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        // Every topic name, quoted (TOML strings: an empty name stays a
        // string, which turns that optional output off).
        .chain(
            [
                ("EVENTS", &settings.events_topic),
                ("CONSENT", &settings.consent_topic),
                ("OFFERS", &settings.offers_topic),
                ("DEAD_LETTER", &settings.dead_letter_topic),
                ("CHANGELOG", &settings.changelog_topic),
                ("SCORES", &settings.scores_topic),
                ("DECISIONS", &settings.decisions_topic),
                ("CONVERSIONS", &settings.conversions_topic),
                ("FEEDBACK", &settings.feedback_topic),
            ]
            .map(|(key, topic)| {
                (
                    format!("PROPENSITY__KAFKA__{key}_TOPIC"),
                    format!("\"{topic}\""),
                )
            }),
        )
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

    /// A `propensity` command with this deployment's configuration and
    /// environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        // (`generate` reads no configuration and refuses one.)
        if args.first() != Some(&"generate") {
            c.arg("--config").arg(self.dir.path().join(CONFIG_FILE));
        }
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
        let summary = self.dir.path().join(format!("summary-{instance}.json"));
        let mut command = self.command(&["run", "--instance-id", instance, "--summary-json"]);
        command.arg(&summary);
        Instance::spawn(command, self.dir.path(), instance, summary)
    }

    /// The offers `propensity replay` makes of the same records.
    pub fn replay_offers(&self, traffic: &Traffic) -> Vec<Value> {
        self.replay(traffic).0
    }

    /// The offers and the summary of `propensity replay` on the same
    /// records.
    pub fn replay(&self, traffic: &Traffic) -> (Vec<Value>, Value) {
        let r = self.replay_all(traffic);
        (r.offers, r.summary)
    }

    /// What `propensity evaluate` reports of the same records with the
    /// deployment's models (its `evaluation.json`).
    pub fn evaluate(&self, traffic: &Traffic) -> Value {
        let report = self.dir.path().join("evaluate-report");
        let models = models_dir();
        run_ok(
            self.command(&["evaluate", "--events"])
                .arg(&traffic.events)
                .arg("--consent")
                .arg(&traffic.consent)
                .arg("--models")
                .arg(&models)
                .arg("--report")
                .arg(&report),
        );
        read_json(&report.join("evaluation.json"))
    }

    /// Every output of `propensity replay` on the same records.
    pub fn replay_all(&self, traffic: &Traffic) -> ReplayOutputs {
        self.replay_with_feedback(traffic, None)
    }

    /// [`Deployment::replay_all`] with an offer-feedback file.
    pub fn replay_with_feedback(
        &self,
        traffic: &Traffic,
        feedback: Option<&Path>,
    ) -> ReplayOutputs {
        let out = self.dir.path().join("replay-offers.jsonl");
        let decisions = self.dir.path().join("replay-decisions.jsonl");
        let conversions = self.dir.path().join("replay-conversions.jsonl");
        let summary = self.dir.path().join("replay-summary.json");
        let mut command = self.command(&["replay"]);
        if let Some(f) = feedback {
            command.arg("--feedback").arg(f);
        }
        run_ok(
            command
                .arg("--events")
                .arg(&traffic.events)
                .arg("--consent")
                .arg(&traffic.consent)
                .arg("--models")
                .arg(models_dir())
                .arg("--offers-out")
                .arg(&out)
                .arg("--decisions-out")
                .arg(&decisions)
                .arg("--conversions-out")
                .arg(&conversions)
                .arg("--summary-json")
                .arg(&summary),
        );
        let summary = serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary"))
            .expect("summary JSON");
        ReplayOutputs {
            offers: read_json_lines(&out),
            decisions: read_json_lines(&decisions),
            conversions: read_json_lines(&conversions),
            summary,
        }
    }

    /// The decisions and conversions on Kafka equal `replay`'s, each
    /// exactly once (see [`assert_same_decisions`] and
    /// [`assert_same_records`]), and the control group saw held-out
    /// decisions and conversions in its control arm.
    pub fn assert_decision_log_matches(&self, replay: &ReplayOutputs, kafka_offers: &[Value]) {
        let decisions = json_values(&self.read_topic(&self.settings.decisions_topic), "decision");
        assert_same_decisions(&decisions, &replay.decisions, kafka_offers);
        let conversions = json_values(
            &self.read_topic(&self.settings.conversions_topic),
            "conversion",
        );
        assert_same_records(
            &conversions,
            &replay.conversions,
            "conversion_id",
            &["arm", "action_map", "session_id", "event_id"],
        );
        let held_out = decisions
            .iter()
            .filter(|x| x["decision"] == "held_out")
            .count();
        let control = conversions.iter().filter(|x| x["arm"] == "control").count();
        eprintln!(
            "{} decisions ({held_out} held out), {} conversions ({control} in control)",
            decisions.len(),
            conversions.len()
        );
        assert!(
            held_out > 0 && control > 0,
            "the control group saw no held-out decision or conversion"
        );
    }

    /// `propensity report --from-kafka --json -`: the table computed from
    /// the decision, conversion and feedback topics.
    pub fn report_from_kafka(&self) -> Value {
        let out = self
            .command(&["report", "--from-kafka", "--json", "-"])
            .output()
            .expect("propensity report");
        assert!(
            out.status.success(),
            "report: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("report JSON")
    }

    /// Every committed record of a topic.
    pub fn read_topic(&self, topic: &str) -> Vec<Record> {
        read_topic(&self.settings, topic)
    }

    /// Produces traffic with `propensity produce` (the CLI's own producer,
    /// in time order, without pacing), failing the test if it fails.
    pub fn produce_with_cli(&self, traffic: &Traffic) {
        let out = self
            .command(&["produce", "--events"])
            .arg(&traffic.events)
            .arg("--consent")
            .arg(&traffic.consent)
            .output()
            .expect("propensity produce");
        assert!(
            out.status.success(),
            "produce: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
        // The runtime's own list of the deployment's topics (optional ones
        // only when set).
        let topics: Vec<String> = propensity_kafka::topics::topics(s)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let started = Instant::now();
        for topic in &topics {
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

/// The assertion librdkafka 2.12.1 aborts on when a partition's fetcher is
/// stopped twice during a rebalance (confluentinc/librdkafka#5573).
const LIBRDKAFKA_STOP_ABORT: &str =
    "rd_kafka_assignment_partition_stopped: Assertion `rktp->rktp_started' failed";

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
    /// Starts `command` (a `propensity run …`) with its log in `dir`, its
    /// HTTP endpoints on a free loopback port and `admin-token` as the
    /// admin bearer token; `summary` is where its `--summary-json` goes.
    pub fn spawn(mut command: Command, dir: &Path, instance: &str, summary: PathBuf) -> Instance {
        let log = dir.join(format!("run-{instance}-{}.log", random_suffix()));
        let file = std::fs::File::create(&log).expect("log file");
        let http_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = command
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

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

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
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let started = Instant::now();
        loop {
            match crate::http::http_get(self.http_port, path, &auth) {
                Ok(answer) => return answer,
                Err(e) => {
                    // A process that has ended will never listen: say so,
                    // and why, instead of 30 s later "connection refused".
                    if self.has_ended() {
                        panic!("{}", self.ended_report());
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "cannot connect to the instance's HTTP port: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Whether the process has ended, a zombie not reaped yet included.
    /// Read from `/proc`, so that callers holding `&self` can ask.
    fn has_ended(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()));
        match stat {
            // The state follows the command name, which is in parentheses.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    /// What a test prints about an instance that ended unexpectedly: the end
    /// of its log, and the upstream issue when the log ends in the
    /// librdkafka abort this project knows of.
    fn ended_report(&self) -> String {
        let text = self.log_text();
        let tail = crate::last_lines(&text, 12);
        let known = if text.contains(LIBRDKAFKA_STOP_ABORT) {
            "\nThis is librdkafka 2.12.1 aborting on a partition's fetcher stopped twice \
             (confluentinc/librdkafka#5573, fixed in librdkafka 2.16.0, which no \
             rdkafka-sys release bundles yet): some assignment change stopped a partition \
             again before its first stop was served; see \"librdkafka aborts during a \
             rebalance\" in docs/operations.md."
        } else {
            ""
        };
        format!(
            "the instance logging to {} has ended; its log ends with:\n{tail}{known}",
            self.log.display()
        )
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

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

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance whose process has died is reported at once, with the end
    /// of its log and, for the known librdkafka abort, the upstream issue.
    #[test]
    fn a_dead_instance_is_reported_with_its_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "printf '%s\\n' \"$0\" >&2; exit 134",
            &format!("propensity: rdkafka_assignment.c:926: {LIBRDKAFKA_STOP_ABORT}."),
        ]);
        let instance =
            Instance::spawn(command, dir.path(), "dead", dir.path().join("summary.json"));
        let started = Instant::now();
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            instance.http_get("/readyz", None)
        }))
        .expect_err("a dead instance cannot answer");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "reported after {:?}, not at once",
            started.elapsed()
        );
        assert!(message.contains("has ended"), "{message}");
        assert!(message.contains(LIBRDKAFKA_STOP_ABORT), "{message}");
        assert!(message.contains("librdkafka#5573"), "{message}");
    }
}
