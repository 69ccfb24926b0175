//! A real Prometheus server (Debian's `prometheus` package) scraping a
//! running `propensity run` instance with the shipped scrape configuration
//! and the shipped alert rules, asked through its HTTP API:
//!
//! - the instance's target is up;
//! - every query of the Grafana dashboard returns data, with the
//!   dashboard's variables replaced as Grafana would (`$instance` by its
//!   "All" value, `$__rate_interval` by a window covering the traffic);
//! - every rule evaluates without error, and while the pipeline is
//!   healthy (traffic with offers, dead letters from 2 % malformed lines,
//!   nothing else wrong) the only active alert is `DeadLettersFlowing`,
//!   pending: those malformed lines are more than 1 dead letter per second
//!   over its 5-minute window, and its `for:` of 5 minutes outlasts the
//!   test. That it goes pending on the first burst depends on the
//!   dead-letter series existing at zero before any dead letter (a series
//!   born at its first value hides that value from `rate()`);
//! - once the instance is killed, `PipelineDown` fires and `InstanceDown`
//!   is at least pending.
//!
//! What differs from the shipped files, and why:
//! - `deploy/prometheus/prometheus.yml`: the targets point at the test's
//!   instance and Prometheus on loopback, every interval is 1 s (the test
//!   would otherwise wait minutes), and the Propensity job is renamed
//!   `kubernetes-pods`: the rules must not depend on the job's name;
//! - `deploy/prometheus/alerts.yml`: `for:` of `PipelineDown` (2m) and
//!   `InstanceDown` (5m) shortened to 5s, everything else as shipped.
//!
//! Without a `prometheus` binary on PATH the test says so loudly and
//! passes, except under CI (`CI` set), where `.ci/run` installs it and a
//! missing binary is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use propensity_system_tests::{http_get, workspace_root, Deployment};
use serde_json::Value;

/// Alerts whose `for:` the test shortens, and to what.
const SHORTENED: &[&str] = &["PipelineDown", "InstanceDown"];
const SHORT_FOR: &str = "5s";
/// Job name of the instance in the test's scrape configuration.
const JOB: &str = "kubernetes-pods";
/// What `$__rate_interval` becomes: longer than the whole test, so every
/// rate covers all the traffic.
const RATE_INTERVAL: &str = "2m";

/// The `prometheus` binary, or `None` (after saying why) when the test
/// cannot run here.
fn prometheus_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = "the `prometheus` server is not installed: install Debian's `prometheus` \
                   package (`apt-get install -y prometheus`, as .ci/run does)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("\n!!!!!!!! SKIPPED kafka_prometheus: {msg} !!!!!!!!\n");
    }
    found
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on `port` (the configuration's self-scrape
    /// target names it).
    fn start(binary: &Path, dir: &Path, config: &Path, port: u16) -> Self {
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("prometheus log"))
            .spawn()
            .expect("cannot start prometheus");
        Self { child, port, log }
    }

    /// `GET path`: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path, "")
            .unwrap_or_else(|e| panic!("prometheus on port {}: {e}", self.port))
    }

    /// `GET /api/v1/<path>`'s `data`, asserting success.
    fn api(&self, path: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/{path}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/api/v1/{path}: {status} not JSON ({e}): {body}"));
        assert_eq!(v["status"], "success", "/api/v1/{path}: {v}");
        v["data"].clone()
    }

    /// The instant vector of `query`.
    fn query(&self, query: &str) -> Vec<Value> {
        let data = self.api(&format!("query?query={}", encode(query)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `/-/ready` answers 200.
    fn wait_ready(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.get("/-/ready").0 == 200;
            if ready {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "prometheus not ready within {timeout:?}; log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The active alerts: (name, state).
    fn alerts(&self) -> Vec<(String, String)> {
        self.api("alerts")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("?").to_owned(),
                    a["state"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect()
    }

    /// Polls until `ok` holds for the query's result, or panics saying what
    /// it saw last.
    fn wait_query(&self, query: &str, timeout: Duration, ok: impl Fn(&[Value]) -> bool) {
        let started = Instant::now();
        loop {
            let result = self.query(query);
            if ok(&result) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "{query} within {timeout:?}: last result {result:?}; prometheus log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn yaml_file(rel: &str) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(workspace_root().join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The shipped scrape configuration, pointed at the test's processes (see
/// the module doc for every change).
fn scrape_config(instance_port: u16, prometheus_port: u16) -> serde_yaml_ng::Value {
    use serde_yaml_ng::Value as Y;
    let mut config = yaml_file("deploy/prometheus/prometheus.yml");
    config["global"]["scrape_interval"] = Y::from("1s");
    config["global"]["evaluation_interval"] = Y::from("1s");
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .expect("prometheus.yml: scrape_configs");
    let mut seen = Vec::new();
    for job in jobs.iter_mut() {
        let name = job["job_name"].as_str().unwrap_or_default().to_owned();
        let target = match name.as_str() {
            "propensity" => {
                job["job_name"] = Y::from(JOB);
                format!("127.0.0.1:{instance_port}")
            }
            "prometheus" => format!("127.0.0.1:{prometheus_port}"),
            other => panic!("prometheus.yml: unexpected job {other}: teach this test about it"),
        };
        seen.push(name);
        job["scrape_interval"] = Y::from("1s");
        job["scrape_timeout"] = Y::from("1s");
        let statics = job["static_configs"]
            .as_sequence_mut()
            .expect("static_configs");
        assert_eq!(statics.len(), 1, "one static_configs entry per job");
        statics[0]["targets"] = Y::Sequence(vec![Y::from(target)]);
    }
    assert!(seen.iter().any(|n| n == "propensity"), "no propensity job");
    config["rule_files"] = Y::Sequence(vec![Y::from("alerts.yml")]);
    config
}

/// The shipped rules with the `for:` of [`SHORTENED`] alerts shortened.
fn test_rules() -> (serde_yaml_ng::Value, usize) {
    use serde_yaml_ng::Value as Y;
    let mut rules = yaml_file("deploy/prometheus/alerts.yml");
    let mut alerts = 0;
    let mut shortened = 0;
    for group in rules["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            let Some(name) = rule.get("alert").and_then(Y::as_str).map(str::to_owned) else {
                continue;
            };
            alerts += 1;
            if SHORTENED.contains(&name.as_str()) {
                rule["for"] = Y::from(SHORT_FOR);
                shortened += 1;
            }
        }
    }
    assert_eq!(
        shortened,
        SHORTENED.len(),
        "alerts.yml lacks one of {SHORTENED:?}"
    );
    (rules, alerts)
}

/// Every query of the dashboard, its variables replaced.
fn dashboard_queries() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, x) in map {
                    match x {
                        Value::String(s) if k == "expr" => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let text =
        std::fs::read_to_string(workspace_root().join("deploy/grafana/dashboards/propensity.json"))
            .expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON");
    // `$instance` becomes its "All" value, as the dashboard opens.
    let all = dash["templating"]["list"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == "instance"))
        .and_then(|v| v["allValue"].as_str())
        .expect("the instance variable's allValue")
        .to_owned();
    let mut exprs = Vec::new();
    walk(&dash, &mut exprs);
    exprs
        .into_iter()
        .map(|e| {
            let e = e
                .replace("$__rate_interval", RATE_INTERVAL)
                .replace("$__interval", "15s")
                .replace("$instance", &all);
            assert!(!e.contains('$'), "unexpanded variable in {e}");
            e
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_the_instance_with_the_shipped_config_and_rules() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let mut d = Deployment::new("prom", 2, false);
    // The online-evaluation panels from the first resolved session (the
    // default waits for thousands) and the drift panels from 300 sampled
    // events (the default waits for 1,000, more than this traffic makes),
    // refreshed often enough for the scrapes below. Fewer drift events
    // would make the healthy traffic look drifted: the events of one
    // visitor score alike, so a few hundred of them are a small sample
    // (PSI 0.26 seen with 1 and a tenth of this traffic).
    for (key, value) in [
        ("DRIFT_MIN_EVENTS", "300"),
        ("ONLINE_EVAL_MIN_SESSIONS", "1"),
        ("STATISTICS_INTERVAL_MS", "500"),
    ] {
        d.env
            .push((format!("PROPENSITY__KAFKA__{key}"), value.to_owned()));
    }
    let instance = d.start("a");
    instance.wait_ready(Duration::from_secs(60));

    let dir = d.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let prometheus_port = free_port();
    let (rules, alert_count) = test_rules();
    std::fs::write(
        dir.join("alerts.yml"),
        serde_yaml_ng::to_string(&rules).expect("rules YAML"),
    )
    .expect("write rules");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        serde_yaml_ng::to_string(&scrape_config(instance.http_port, prometheus_port))
            .expect("config YAML"),
    )
    .expect("write config");
    // The self-scrape target in the configuration names this port.
    let prometheus = Prometheus::start(&binary, &dir, &config, prometheus_port);
    prometheus.wait_ready(Duration::from_secs(60));

    // The target is up, in a job not called `propensity`.
    prometheus.wait_query(
        &format!("up{{job=\"{JOB}\"}} == 1"),
        Duration::from_secs(30),
        |r| r.len() == 1,
    );
    let targets = prometheus.api("targets");
    let active = targets["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ours = active
        .iter()
        .find(|t| t["labels"]["job"] == JOB)
        .expect("the instance's target");
    assert_eq!(ours["health"], "up", "{ours}");

    // Healthy traffic while Prometheus watches: offers, suppressed offers,
    // dead letters (2 % malformed lines).
    let traffic = d.generate(1500, 3, 0.02);
    d.produce_with_cli(&traffic);
    d.wait_processed(Duration::from_secs(120));
    // Scrapes after the last commit: every counter's final value is in.
    let scrapes_before = prometheus.query(&format!("count_over_time(up{{job=\"{JOB}\"}}[10m])"));
    let count = |r: &[Value]| -> f64 {
        r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let from = count(&scrapes_before);
    prometheus.wait_query(
        &format!("count_over_time(up{{job=\"{JOB}\"}}[10m])"),
        Duration::from_secs(30),
        |r| count(r) >= from + 3.0,
    );
    prometheus.wait_query(
        &format!("sum(rate(propensity_events_processed_total[{RATE_INTERVAL}])) > 0"),
        Duration::from_secs(30),
        |r| r.len() == 1,
    );

    // Every dashboard query returns data.
    let mut empty = Vec::new();
    let queries = dashboard_queries();
    for q in &queries {
        if prometheus.query(q).is_empty() {
            empty.push(q.clone());
        }
    }
    assert!(
        empty.is_empty(),
        "{} of {} dashboard queries return no data on a healthy, busy pipeline:\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n")
    );

    // Every rule evaluates, and nothing is pending or firing.
    let groups = prometheus.api("rules")["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rules: Vec<Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(rules.len(), alert_count, "rules loaded");
    for r in &rules {
        assert_eq!(
            r["health"], "ok",
            "rule {} does not evaluate: {}",
            r["name"], r["lastError"]
        );
    }
    let active = prometheus.alerts();
    let psi: Vec<String> = prometheus
        .query("propensity_score_psi")
        .iter()
        .map(|s| format!("{}: {}", s["metric"]["outcome"], s["value"][1]))
        .collect();
    eprintln!("score PSI at the end: {psi:?}");
    // The rule's threshold: more than 1 per second over 5 minutes. All the
    // traffic's dead letters fall inside that window.
    let dead_letters = count(&prometheus.query("sum(propensity_dead_letters_total)"));
    assert!(
        dead_letters > 300.0,
        "the traffic should dead-letter more than 5 min x 1/s records, made {dead_letters}"
    );
    let expected = vec![("DeadLettersFlowing".to_owned(), "pending".to_owned())];
    assert_eq!(
        active, expected,
        "alerts active on a healthy pipeline with {dead_letters} dead letters"
    );
    eprintln!(
        "healthy: target up, {} dashboard queries with data, {} rules ok, \
         only DeadLettersFlowing pending ({dead_letters} dead letters)",
        queries.len(),
        rules.len()
    );

    // Kill the instance: PipelineDown fires, InstanceDown follows.
    instance.kill9();
    let started = Instant::now();
    loop {
        let active = prometheus.alerts();
        let state = |name: &str| {
            active
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone())
                .unwrap_or_default()
        };
        if state("PipelineDown") == "firing" {
            eprintln!(
                "{:.1} s after the kill: {active:?}",
                started.elapsed().as_secs_f64()
            );
            assert!(
                matches!(state("InstanceDown").as_str(), "pending" | "firing"),
                "InstanceDown for the killed instance: {active:?}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "PipelineDown not firing 60 s after the instance was killed: {active:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
