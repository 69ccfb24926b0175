//! Checks of the deployment files under `deploy/` and of
//! `docs/operations.md`: no broker needed, but `promtool` (Debian's
//! `prometheus` package) must be installed.
//!
//! - the Prometheus rules and configuration pass `promtool check`, the rule
//!   unit tests (`deploy/prometheus/alerts_test.yml`) pass, and every
//!   dashboard query is valid PromQL;
//! - every metric the alerts and the dashboard use is one the pipeline
//!   registers (`propensity_kafka::metrics::METRIC_NAMES`), and every
//!   registered metric is documented;
//! - every alert has a summary, a description and a runbook link whose
//!   anchor exists in `docs/operations.md`;
//! - the Kubernetes probes point at `/readyz` and `/healthz`, and the
//!   Kubernetes and Compose grace periods exceed `kafka.drain_timeout_secs`;
//! - the Kubernetes ConfigMap is generated from `config/propensity.toml`
//!   (`deploy/kubernetes/generate.sh --check` passes, the copy is the
//!   shipped file), and the cluster's settings (`cluster.env`) are valid
//!   overrides the binary accepts;
//! - one scrape path: the pods carry `prometheus.io` annotations, the
//!   Service none, and the Prometheus Operator overlay removes them and
//!   adds a PodMonitor that selects the pods, plus a PrometheusRule equal
//!   to `alerts.yml`; no alert or dashboard query selects on a job name;
//! - topics are created by an init container of every pod (`topics create`
//!   is idempotent), never by a Job, whose pod template is immutable;
//! - Compose runs the Kafka version `deploy/local/kafka` tests with;
//! - docs agree: figures of memory per visitor only in README's Performance
//!   section, the build prerequisites `.ci/run` installs listed in README,
//!   the first build's duration stated, no stray lines in manifest headers;
//! - with `kubectl` installed, `kubectl kustomize` renders the base (with
//!   the StatefulSet and, swapped in, the Deployment) and the operator
//!   overlay, and the rendered objects keep these promises (skipped, saying
//!   so, without kubectl).
//!
//! The YAML files are read with `serde_yaml_ng` (every document of a
//! `---` stream, merge keys `<<` applied), into the typed structs below
//! where the checks look at particular fields; a file that does not parse
//! fails the test with its path.
//!
//! Why one file of this size: one check per deployment promise, sharing the
//! typed views of the YAML files declared here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};

use propensity_kafka::metrics::METRIC_NAMES;
use propensity_kafka::KafkaSettings;
use propensity_system_tests::{binary, workspace_root};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

const HISTOGRAMS: &[&str] = &[
    "propensity_outcome_probability",
    "propensity_batch_processing_seconds",
    "propensity_event_to_offer_latency_seconds",
    "propensity_restore_seconds",
];

/// Alerts the runbooks cover; alerts.yml must define at least these.
const REQUIRED_ALERTS: &[&str] = &[
    "PipelineDown",
    "NotReady",
    "ConsumerLagGrowing",
    "DeadLettersFlowing",
    "NoOffersWhileEventsFlow",
    "TransactionAborts",
    "ModelReloadFailures",
];

/// Sections of the configuration the Kubernetes cluster settings
/// (`cluster.env`) may override: the deployment's, never the engine's (a
/// difference in `[features]` alone would make every model trained with the
/// shipped config fail).
const DEPLOYMENT_SECTIONS: &[&str] = &["kafka", "http", "logging", "models"];

/// The Kubernetes manifests of the base (`deploy/kubernetes`).
const KUBERNETES_DIR: &str = "deploy/kubernetes";
/// The Prometheus Operator overlay.
const OPERATOR_DIR: &str = "deploy/prometheus/operator";
/// An overlay of the base and what its header promises.
struct Overlay {
    dir: &'static str,
    replicas: i64,
    namespace: &'static str,
    /// Cluster settings (`propensity-env`) it must render.
    env: &'static [(&'static str, &'static str)],
}

/// The dev and prod overlays.
const OVERLAYS: [Overlay; 2] = [
    Overlay {
        dir: "deploy/overlays/dev",
        replicas: 1,
        namespace: "propensity-dev",
        env: &[
            ("PROPENSITY__KAFKA__BROKERS", "kafka:9092"),
            ("PROPENSITY__KAFKA__PARTITIONS", "3"),
            ("PROPENSITY__KAFKA__REPLICATION_FACTOR", "1"),
        ],
    },
    Overlay {
        dir: "deploy/overlays/prod",
        replicas: 3,
        namespace: "propensity",
        env: &[
            ("PROPENSITY__KAFKA__PARTITIONS", "12"),
            ("PROPENSITY__KAFKA__REPLICATION_FACTOR", "3"),
        ],
    },
];
/// The annotations of annotation-based scraping.
const SCRAPE_ANNOTATIONS: &[&str] = &[
    "prometheus.io/scrape",
    "prometheus.io/port",
    "prometheus.io/path",
];

fn path(rel: &str) -> PathBuf {
    workspace_root().join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Runs promtool in the workspace root; a missing promtool is a failure
/// with the fix, never a skip.
fn promtool(args: &[&str]) -> Output {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!(
                    "promtool is not installed, and these checks need it: install Debian's \
                     `prometheus` package (`apt-get install -y prometheus`, as .ci/run does) \
                     or put Prometheus' promtool on PATH"
                )
            }
            panic!("cannot run promtool: {e}")
        });
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Identifiers `propensity_[a-z_]+` in `text` (not preceded by another
/// identifier character), histogram suffixes stripped.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("propensity_").map(|i| i + from) {
        let preceded = i > 0 && {
            let c = bytes[i - 1];
            c.is_ascii_alphanumeric() || c == b'_' || c == b':'
        };
        let mut end = i + "propensity_".len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        from = end;
        if preceded {
            continue;
        }
        let name = text[i..end].trim_end_matches('_');
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| HISTOGRAMS.contains(b)))
            .unwrap_or(name);
        names.insert(base.to_owned());
    }
    names
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/dashboards/propensity.json"))
        .expect("deploy/grafana/dashboards/propensity.json is not valid JSON")
}

/// Every string value under a key named `key`, anywhere in `v`.
fn strings_under<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match x {
                    Value::String(s) if k == key => out.push(s),
                    _ => strings_under(x, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| strings_under(x, key, out)),
        _ => {}
    }
}

/// Every string in `v`.
fn all_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Object(map) => map.values().for_each(|x| all_strings(x, out)),
        Value::Array(items) => items.iter().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

/// GitHub's heading anchor: lower case, punctuation removed, spaces to `-`.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Anchors of the Markdown headings of `text` (outside code fences).
fn markdown_anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            anchors.insert(github_anchor(&line[hashes..]));
        }
    }
    anchors
}

/// The documents of the YAML file `rel` (a `---`-separated stream; empty
/// documents skipped), with merge keys (`<<: *anchor`) applied as
/// Kubernetes, Compose and Prometheus apply them.
fn yaml_documents(rel: &str) -> Vec<serde_yaml_ng::Value> {
    let text = read(rel);
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut value = serde_yaml_ng::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"));
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("{rel}: bad merge key: {e}"));
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

/// `value`, a document of `rel`, as a `T`.
fn from_yaml<T: DeserializeOwned>(rel: &str, value: serde_yaml_ng::Value) -> T {
    serde_yaml_ng::from_value(value).unwrap_or_else(|e| panic!("{rel}: unexpected structure: {e}"))
}

/// The YAML file `rel`, which must hold exactly one document, as a `T`.
fn yaml<T: DeserializeOwned>(rel: &str) -> T {
    let mut docs = yaml_documents(rel);
    assert_eq!(
        docs.len(),
        1,
        "{rel}: expected one YAML document, found {}",
        docs.len()
    );
    from_yaml(rel, docs.remove(0))
}

/// The Kubernetes object of kind `kind` in the manifest `rel`, which must
/// hold exactly one of that kind (among any number of `---` documents).
fn kubernetes_object<T: DeserializeOwned>(rel: &str, kind: &str) -> T {
    let mut found: Vec<_> = yaml_documents(rel)
        .into_iter()
        .filter(|doc| doc.get("kind").and_then(serde_yaml_ng::Value::as_str) == Some(kind))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{rel}: expected one {kind}, found {}",
        found.len()
    );
    from_yaml(rel, found.remove(0))
}

/// A Prometheus rule file: only what the checks read.
#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

/// An alerting rule (`alert`) or a recording rule (`record`, no `alert`).
#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A StatefulSet or Deployment: only what the checks read.
#[derive(Deserialize)]
struct Workload {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: WorkloadSpec,
}

#[derive(Deserialize)]
struct WorkloadSpec {
    replicas: Option<i64>,
    template: PodTemplate,
}

#[derive(Deserialize)]
struct PodTemplate {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: PodSpec,
}

/// Metadata of any Kubernetes object: only what the checks read.
#[derive(Deserialize, Default)]
struct ObjectMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    termination_grace_period_seconds: Option<i64>,
    #[serde(default)]
    init_containers: Vec<Container>,
    containers: Vec<Container>,
    #[serde(default)]
    volumes: Vec<Volume>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    image: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    env_from: Vec<EnvFromSource>,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMount>,
    readiness_probe: Option<Probe>,
    liveness_probe: Option<Probe>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvFromSource {
    config_map_ref: Option<NameRef>,
}

#[derive(Deserialize)]
struct NameRef {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    config_map: Option<NameRef>,
}

/// A Service: only what the checks read.
#[derive(Deserialize)]
struct Service {
    metadata: ObjectMeta,
}

/// A kustomization: only what the checks read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    config_map_generator: Vec<ConfigMapGenerator>,
}

#[derive(Deserialize)]
struct ConfigMapGenerator {
    name: String,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    envs: Vec<String>,
}

/// The Prometheus Operator's PodMonitor: only what the checks read.
#[derive(Deserialize)]
struct PodMonitor {
    spec: PodMonitorSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodMonitorSpec {
    selector: LabelSelector,
    pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PodMetricsEndpoint {
    port: String,
    path: Option<String>,
}

/// The Prometheus Operator's PrometheusRule: its groups, compared whole.
#[derive(Deserialize)]
struct PrometheusRule {
    spec: serde_yaml_ng::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value_from: Option<EnvVarSource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVarSource {
    field_ref: Option<FieldRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldRef {
    field_path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    http_get: Option<HttpGet>,
}

#[derive(Deserialize)]
struct HttpGet {
    path: String,
    port: IntOrString,
}

/// Kubernetes' IntOrString: a port number or a port name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    String(String),
}

#[derive(Deserialize)]
struct ConfigMap {
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// A Compose file: only what the checks read.
#[derive(Deserialize)]
struct Compose {
    services: BTreeMap<String, ComposeService>,
}

#[derive(Deserialize)]
struct ComposeService {
    image: Option<String>,
    /// The map form of `environment` (values may be numbers or booleans).
    #[serde(default)]
    environment: BTreeMap<String, serde_yaml_ng::Value>,
    stop_grace_period: Option<String>,
}

/// Grafana's datasource provisioning file.
#[derive(Deserialize)]
struct DatasourceProvisioning {
    datasources: Vec<Datasource>,
}

#[derive(Deserialize)]
struct Datasource {
    uid: Option<String>,
}

/// `kafka.drain_timeout_secs` of a configuration (the default when absent).
fn drain_timeout_secs(config: &toml::Table) -> f64 {
    config
        .get("kafka")
        .and_then(|k| k.get("drain_timeout_secs"))
        .map(|v| {
            v.as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .expect("kafka.drain_timeout_secs is not a number")
        })
        .unwrap_or_else(|| KafkaSettings::default().drain_timeout_secs)
}

fn shipped_config() -> toml::Table {
    toml::from_str(&read("config/propensity.toml")).expect("config/propensity.toml is not TOML")
}

/// The base kustomization.
fn kustomization() -> Kustomization {
    yaml(&format!("{KUBERNETES_DIR}/kustomization.yaml"))
}

/// The configMapGenerator entry `name` of the base kustomization.
fn generator(name: &str) -> ConfigMapGenerator {
    kustomization()
        .config_map_generator
        .into_iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| {
            panic!("{KUBERNETES_DIR}/kustomization.yaml generates no ConfigMap {name}")
        })
}

/// The `propensity.toml` the Kubernetes ConfigMap is generated from.
fn configmap_toml() -> String {
    let files = generator("propensity-config").files;
    assert_eq!(
        files,
        ["propensity.toml"],
        "the ConfigMap propensity-config must hold exactly the file propensity.toml"
    );
    let text = read(&format!("{KUBERNETES_DIR}/propensity.toml"));
    assert!(
        !text.trim().is_empty(),
        "the ConfigMap's propensity.toml is empty"
    );
    text
}

/// The cluster settings (`cluster.env`, the ConfigMap propensity-env): the
/// `NAME=value` lines, comments and blank lines skipped, as kustomize reads
/// an env file.
fn cluster_env() -> Vec<(String, String)> {
    let envs = generator("propensity-env").envs;
    assert_eq!(
        envs,
        ["cluster.env"],
        "propensity-env must come from cluster.env"
    );
    read(&format!("{KUBERNETES_DIR}/cluster.env"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("cluster.env: not NAME=value: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The value `cluster.env` sets for `section.key`, if any.
fn cluster_setting(section: &str, key: &str) -> Option<String> {
    let name = format!(
        "PROPENSITY__{}__{}",
        section.to_uppercase(),
        key.to_uppercase()
    );
    cluster_env()
        .into_iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[test]
fn prometheus_rules_and_config_pass_promtool() {
    promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    promtool(&["test", "rules", "deploy/prometheus/alerts_test.yml"]);
    // rule_files in prometheus.yml is relative to the file: checks alerts.yml
    // again, as Prometheus will load it.
    let out = promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 rule files found"), "{text}");
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let dash = dashboard();
    let mut exprs = Vec::new();
    strings_under(&dash, "expr", &mut exprs);
    assert!(
        exprs.len() >= 20,
        "only {} queries in the dashboard",
        exprs.len()
    );
    // Grafana's variables replaced by what they expand to, each query a
    // recording rule: `promtool check rules` parses them all.
    let mut rules = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$instance", ".+");
        assert!(
            !e.contains('$'),
            "unexpanded variable in dashboard query {e}"
        );
        rules.push(serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": e }));
    }
    let rules = serde_yaml_ng::to_string(&serde_json::json!({
        "groups": [{ "name": "dashboard", "rules": rules }]
    }))
    .expect("the dashboard queries as a rule file");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).expect("write temp rules");
    promtool(&["check", "rules", &file.display().to_string()]);
}

#[test]
fn dashboard_is_a_complete_grafana_dashboard() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "propensity");
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(x + w <= 24, "panel {title} is wider than the grid");
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets.iter().chain([p]) {
            let uid = t["datasource"]["uid"].as_str().unwrap_or("");
            assert!(
                uid == "${datasource}" || uid == "prometheus",
                "panel {title}: datasource uid {uid:?}"
            );
        }
    }
    // The datasource variable defaults to the provisioned datasource.
    let ds_var = dash["templating"]["list"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == "datasource"))
        .expect("a `datasource` variable");
    assert_eq!(ds_var["current"]["value"], "prometheus");
    let file = "deploy/grafana/provisioning/datasources/prometheus.yml";
    let provisioning: DatasourceProvisioning = yaml(file);
    assert!(
        provisioning
            .datasources
            .iter()
            .any(|d| d.uid.as_deref() == Some("prometheus")),
        "{file} provisions no datasource with uid `prometheus`"
    );
}

#[test]
fn metrics_used_are_documented_and_registered() {
    let registered: BTreeSet<&str> = METRIC_NAMES.iter().copied().collect();
    // The documented metrics are the rows of the docs' metrics table.
    let ops_doc = read("docs/operations.md");
    let documented: BTreeSet<String> = ops_doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `propensity_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|rest| format!("propensity_{rest}"))
        .collect();
    assert!(
        !documented.is_empty(),
        "docs/operations.md has no metrics table"
    );
    for name in &documented {
        assert!(
            registered.contains(name.as_str()),
            "{name} is documented (and used by dashboards or alerts) but \
             propensity_kafka::metrics::METRIC_NAMES does not register it"
        );
    }
    let ops = read("docs/operations.md");
    for name in &registered {
        assert!(
            ops.contains(&format!("| `{name}` |")),
            "{name} is registered but missing from the metrics table of docs/operations.md"
        );
    }

    // The strings of the rule file (expressions, annotations), not its
    // comments.
    let alerts: Value = yaml("deploy/prometheus/alerts.yml");
    let mut strings = Vec::new();
    all_strings(&alerts, &mut strings);
    let alerts = metric_names(&strings.join("\n"));
    let dash = dashboard();
    let mut strings = Vec::new();
    all_strings(&dash, &mut strings);
    let dashboard_names = metric_names(&strings.join("\n"));
    assert!(!alerts.is_empty() && !dashboard_names.is_empty());
    for (file, names) in [
        ("deploy/prometheus/alerts.yml", &alerts),
        (
            "deploy/grafana/dashboards/propensity.json",
            &dashboard_names,
        ),
    ] {
        for name in names {
            assert!(
                documented.contains(name.as_str()),
                "{file} uses {name}, which is not a documented metric"
            );
            assert!(
                registered.contains(name.as_str()),
                "{file} uses {name}, which the pipeline does not register"
            );
        }
    }
    // The dashboard charts every metric.
    for name in &documented {
        assert!(
            dashboard_names.contains(name),
            "the dashboard does not chart {name}"
        );
    }
}

#[test]
fn every_alert_has_annotations_and_a_runbook() {
    let rules: RuleFile = yaml("deploy/prometheus/alerts.yml");
    let anchors = markdown_anchors(&read("docs/operations.md"));
    let alerts: Vec<(&str, &Rule)> = rules
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| Some((r.alert.as_deref()?, r)))
        .collect();
    for required in REQUIRED_ALERTS {
        assert!(
            alerts.iter().any(|(n, _)| n == required),
            "alerts.yml has no alert {required}"
        );
    }
    for (name, rule) in &alerts {
        let annotation = |key: &str| {
            rule.annotations
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        for key in ["summary", "description"] {
            assert!(
                annotation(key).is_some(),
                "alert {name} has no {key} annotation"
            );
        }
        let url =
            annotation("runbook_url").unwrap_or_else(|| panic!("alert {name} has no runbook_url"));
        let anchor = url
            .split_once("docs/operations.md#")
            .map(|(_, a)| a)
            .unwrap_or_else(|| {
                panic!("alert {name}: runbook_url {url} is not docs/operations.md#…")
            });
        assert!(
            anchors.contains(anchor),
            "alert {name}: docs/operations.md has no heading with anchor #{anchor}"
        );
    }
}

#[test]
fn kubernetes_probes_and_grace_period() {
    let drain = drain_timeout_secs(&shipped_config());
    let configmap: toml::Table =
        toml::from_str(&configmap_toml()).expect("the ConfigMap's propensity.toml is not TOML");
    let drain = drain.max(drain_timeout_secs(&configmap)).max(
        cluster_setting("kafka", "drain_timeout_secs")
            .map_or(0.0, |v| v.parse().expect("cluster.env: drain_timeout_secs")),
    );
    let mut replicas = None;
    for (file, kind) in [
        ("deploy/kubernetes/statefulset.yaml", "StatefulSet"),
        ("deploy/kubernetes/deployment.yaml", "Deployment"),
    ] {
        let workload: Workload = kubernetes_object(file, kind);
        let pod = &workload.spec.template.spec;
        let container = pod
            .containers
            .iter()
            .find(|c| c.name == "propensity")
            .unwrap_or_else(|| panic!("{file}: no container `propensity`"));
        let http_get = |probe: &Option<Probe>, what: &str| -> (String, String) {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .unwrap_or_else(|| panic!("{file}: no {what} httpGet"));
            let port = match &get.port {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => s.clone(),
            };
            (get.path.clone(), port)
        };
        let readiness = http_get(&container.readiness_probe, "readinessProbe");
        let liveness = http_get(&container.liveness_probe, "livenessProbe");
        assert_eq!(readiness.0, "/readyz", "{file}");
        assert_eq!(liveness.0, "/healthz", "{file}");
        for (_, port) in [&readiness, &liveness] {
            assert!(
                matches!(port.as_str(), "http" | "9464"),
                "{file}: probe port {port:?}"
            );
        }
        assert!(
            container.ports.iter().any(|p| p.container_port == 9464),
            "{file}: no containerPort 9464"
        );
        let grace = pod
            .termination_grace_period_seconds
            .unwrap_or_else(|| panic!("{file}: no terminationGracePeriodSeconds"))
            as f64;
        assert!(
            grace > drain,
            "{file}: terminationGracePeriodSeconds {grace} must exceed kafka.drain_timeout_secs {drain}"
        );
        let field_path = container
            .env
            .iter()
            .find(|e| e.name == "PROPENSITY_INSTANCE_ID")
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(
            field_path,
            Some("metadata.name"),
            "{file}: PROPENSITY_INSTANCE_ID must come from the pod name"
        );
        if kind == "StatefulSet" {
            replicas = workload.spec.replicas;
        }
    }
    let replicas = replicas.expect("replicas");
    let partitions = cluster_setting("kafka", "partitions")
        .map(|v| v.parse::<i64>().expect("cluster.env: partitions"))
        .or_else(|| {
            configmap
                .get("kafka")
                .and_then(|k| k.get("partitions"))
                .and_then(toml::Value::as_integer)
        })
        .unwrap_or_else(|| KafkaSettings::default().partitions.into());
    assert!(
        replicas <= partitions,
        "{replicas} replicas but only {partitions} partitions: the extra pods would idle"
    );
}

#[test]
fn compose_grace_period_covers_the_drain() {
    let drain = drain_timeout_secs(&shipped_config());
    let file = "deploy/docker/docker-compose.yml";
    let compose: Compose = yaml(file);
    let service = |name: &str| {
        compose
            .services
            .get(name)
            .unwrap_or_else(|| panic!("{file}: no service {name}"))
    };
    let propensity = service("propensity");
    let grace = propensity
        .stop_grace_period
        .as_deref()
        .expect("stop_grace_period");
    let secs: f64 = if let Some(m) = grace.strip_suffix('m') {
        m.parse::<f64>().expect("minutes") * 60.0
    } else {
        grace.trim_end_matches('s').parse().expect("seconds")
    };
    assert!(
        secs > drain,
        "stop_grace_period {grace} must exceed kafka.drain_timeout_secs {drain}"
    );
    let brokers = propensity.environment.get("PROPENSITY__KAFKA__BROKERS");
    assert_eq!(
        brokers.and_then(serde_yaml_ng::Value::as_str),
        Some("kafka:9092"),
        "{file}: PROPENSITY__KAFKA__BROKERS of service propensity"
    );
    // The broker version the system tests run on (deploy/local/kafka's
    // default KAFKA_VERSION) is the one Compose deploys.
    let script = read("deploy/local/kafka");
    let version = script
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_VERSION=\"${KAFKA_VERSION:-"))
        .and_then(|rest| rest.strip_suffix("}\""))
        .expect("deploy/local/kafka: no line KAFKA_VERSION=\"${KAFKA_VERSION:-X}\"");
    assert_eq!(
        service("kafka").image.as_deref(),
        Some(format!("apache/kafka:{version}").as_str()),
        "{file}: the kafka service must run the version deploy/local/kafka tests with"
    );
}

/// `propensity check-config FILE` with `env` as the only `PROPENSITY__`
/// variables (none from this environment); returns what it printed.
fn check_config(file: &std::path::Path, env: &[(String, String)]) -> Result<String, String> {
    let mut cmd = Command::new(binary());
    cmd.args(["check-config", &file.display().to_string()]);
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("PROPENSITY__")) {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().expect("run propensity check-config");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn kubernetes_configmap_is_generated_from_the_shipped_config() {
    // The script that writes the copies agrees with what is committed …
    let out = Command::new("bash")
        .args(["deploy/kubernetes/generate.sh", "--check"])
        .current_dir(workspace_root())
        .output()
        .expect("run deploy/kubernetes/generate.sh");
    assert!(
        out.status.success(),
        "deploy/kubernetes/generate.sh --check: a generated file is stale (run the script):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // … and, whatever the script does, the ConfigMap's file is the shipped
    // one behind a comment header: byte for byte, so nothing drifts.
    let text = configmap_toml();
    let shipped = read("config/propensity.toml");
    let header = text.strip_suffix(shipped.as_str()).unwrap_or_else(|| {
        panic!("{KUBERNETES_DIR}/propensity.toml is not config/propensity.toml behind a header")
    });
    assert!(
        header.lines().all(|l| l.starts_with('#')),
        "{KUBERNETES_DIR}/propensity.toml: its header holds more than comments:\n{header}"
    );
    // No hand-written ConfigMap beside the generated ones.
    for resource in kustomization().resources {
        let kinds: Vec<String> = yaml_documents(&format!("{KUBERNETES_DIR}/{resource}"))
            .iter()
            .filter_map(|d| d.get("kind")?.as_str().map(str::to_owned))
            .collect();
        assert!(
            !kinds.iter().any(|k| k == "ConfigMap"),
            "{resource}: a hand-written ConfigMap drifts; generate it in kustomization.yaml"
        );
    }
}

#[test]
fn kubernetes_cluster_settings_are_valid_overrides() {
    let env = cluster_env();
    assert!(!env.is_empty(), "cluster.env sets nothing");
    let shipped = shipped_config();
    for (name, value) in &env {
        let path: Vec<String> = name
            .strip_prefix("PROPENSITY__")
            .unwrap_or_else(|| panic!("cluster.env: {name} is not a PROPENSITY__ override"))
            .split("__")
            .map(str::to_lowercase)
            .collect();
        assert!(
            DEPLOYMENT_SECTIONS.contains(&path[0].as_str()),
            "cluster.env: {name} overrides [{}], an engine section; change config/propensity.toml instead",
            path[0]
        );
        assert!(!value.trim().is_empty(), "cluster.env: {name} is empty");
        assert!(
            shipped.contains_key(&path[0]),
            "cluster.env: {name}: config/propensity.toml has no section [{}]",
            path[0]
        );
    }
    // The binary accepts the pods' configuration: the generated file with
    // the cluster's overrides, and they take effect.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("propensity.toml");
    std::fs::write(&file, configmap_toml()).expect("write config");
    let printed = check_config(&file, &env).unwrap_or_else(|e| {
        panic!("propensity check-config rejects the pods' configuration (propensity.toml + cluster.env):\n{e}")
    });
    for (name, value) in &env {
        assert!(
            printed.contains(value.as_str()),
            "check-config does not show {name}={value} in the effective configuration:\n{printed}"
        );
    }
}

/// The pod templates of the StatefulSet and the Deployment.
fn workloads() -> Vec<(&'static str, Workload)> {
    [
        ("deploy/kubernetes/statefulset.yaml", "StatefulSet"),
        ("deploy/kubernetes/deployment.yaml", "Deployment"),
    ]
    .into_iter()
    .map(|(file, kind)| (file, kubernetes_object(file, kind)))
    .collect()
}

#[test]
fn one_scrape_path_annotated_pods_or_the_operator() {
    let service: Service = kubernetes_object("deploy/kubernetes/service.yaml", "Service");
    for a in SCRAPE_ANNOTATIONS {
        assert!(
            !service.metadata.annotations.contains_key(*a),
            "service.yaml carries {a}: annotation-based scraping would scrape every pod twice \
             (through the pod and through the service); annotate the pods only"
        );
    }
    for (file, workload) in workloads() {
        let annotations = &workload.spec.template.metadata.annotations;
        for a in SCRAPE_ANNOTATIONS {
            assert!(annotations.contains_key(*a), "{file}: the pods lack {a}");
        }
        assert_eq!(annotations["prometheus.io/port"], "9464", "{file}");
    }
    // The operator overlay: the base, a PodMonitor selecting the pipeline
    // pods on their `http` port, the rules, and the annotations removed.
    let overlay: Kustomization = yaml(&format!("{OPERATOR_DIR}/kustomization.yaml"));
    assert!(
        overlay.resources.iter().any(|r| r == "../../kubernetes"),
        "{OPERATOR_DIR} does not build on deploy/kubernetes"
    );
    let overlay_text = read(&format!("{OPERATOR_DIR}/kustomization.yaml"));
    assert!(
        overlay_text.contains("path: /spec/template/metadata/annotations"),
        "{OPERATOR_DIR} must remove the pods' scrape annotations (one scrape path)"
    );
    let monitor: PodMonitor =
        kubernetes_object(&format!("{OPERATOR_DIR}/podmonitor.yaml"), "PodMonitor");
    let (_, statefulset) = workloads().remove(0);
    let pod_labels = &statefulset.spec.template.metadata.labels;
    for (k, v) in &monitor.spec.selector.match_labels {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the PodMonitor selects {k}={v}, which the pods do not carry"
        );
    }
    let endpoint = &monitor.spec.pod_metrics_endpoints[0];
    assert_eq!(endpoint.port, "http");
    assert_eq!(endpoint.path.as_deref().unwrap_or("/metrics"), "/metrics");
    let rule: PrometheusRule = kubernetes_object(
        &format!("{OPERATOR_DIR}/prometheusrule.yaml"),
        "PrometheusRule",
    );
    let alerts = yaml_documents("deploy/prometheus/alerts.yml").remove(0);
    assert_eq!(
        rule.spec, alerts,
        "prometheusrule.yaml's spec is not deploy/prometheus/alerts.yml: run deploy/kubernetes/generate.sh"
    );
}

/// Whether `expr` selects series by the value of their `job` label.
fn uses_job_label(expr: &str) -> bool {
    let e: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    // Matchers on the job's value (`on (job, instance)` only matches
    // series of the same target, whatever the job is called).
    ["job=", "job!"].iter().any(|p| e.contains(p))
}

#[test]
fn alerts_and_dashboard_do_not_depend_on_a_job_name() {
    // Scrape jobs are named by whoever deploys (`kubernetes-pods`, the
    // Operator's `podMonitor/<ns>/<name>/0`, …): a rule that selects
    // job="propensity" never matches there, and PipelineDown fires forever.
    let alerts: Value = yaml("deploy/prometheus/alerts.yml");
    let mut exprs = Vec::new();
    strings_under(&alerts, "expr", &mut exprs);
    let dash = dashboard();
    strings_under(&dash, "expr", &mut exprs);
    assert!(exprs.len() > 20);
    for e in exprs {
        assert!(
            !uses_job_label(e),
            "this query depends on the scrape job's name: {e}"
        );
    }
}

#[test]
fn topics_are_created_by_an_init_container_not_a_job() {
    for resource in kustomization().resources {
        let file = format!("{KUBERNETES_DIR}/{resource}");
        for doc in yaml_documents(&file) {
            assert_ne!(
                doc.get("kind").and_then(serde_yaml_ng::Value::as_str),
                Some("Job"),
                "{file}: a Job's pod template is immutable, so `kubectl apply -k` after an image \
                 bump fails while the finished Job exists; create topics in an init container"
            );
        }
    }
    for (file, workload) in workloads() {
        let pod = &workload.spec.template.spec;
        let main = pod
            .containers
            .iter()
            .find(|c| c.name == "propensity")
            .unwrap_or_else(|| panic!("{file}: no container `propensity`"));
        let init = pod
            .init_containers
            .iter()
            .find(|c| {
                c.args
                    .starts_with(&["topics".to_owned(), "create".to_owned()])
            })
            .unwrap_or_else(|| panic!("{file}: no init container running `topics create`"));
        assert_eq!(init.image, main.image, "{file}: the init container's image");
        // The same configuration as the pipeline: file and cluster settings.
        let config_arg = |c: &Container| {
            c.args
                .windows(2)
                .find(|w| w[0] == "--config")
                .map(|w| w[1].clone())
        };
        assert_eq!(config_arg(init), config_arg(main), "{file}: --config");
        let env_maps = |c: &Container| -> Vec<String> {
            c.env_from
                .iter()
                .filter_map(|e| Some(e.config_map_ref.as_ref()?.name.clone()))
                .collect()
        };
        assert_eq!(env_maps(init), env_maps(main), "{file}: envFrom");
        assert!(
            env_maps(main).iter().any(|n| n == "propensity-env"),
            "{file}: the cluster settings (propensity-env) are not given to the pipeline"
        );
        let mounts = |c: &Container| -> BTreeSet<(String, String)> {
            c.volume_mounts
                .iter()
                .map(|m| (m.name.clone(), m.mount_path.clone()))
                .collect()
        };
        let config_mount = mounts(main)
            .into_iter()
            .find(|(_, p)| p == "/etc/propensity")
            .unwrap_or_else(|| panic!("{file}: no config mount"));
        assert!(
            mounts(init).contains(&config_mount),
            "{file}: init container lacks the config"
        );
        let volume = pod
            .volumes
            .iter()
            .find(|v| v.name == config_mount.0)
            .and_then(|v| v.config_map.as_ref())
            .map(|c| c.name.as_str());
        assert_eq!(volume, Some("propensity-config"), "{file}: config volume");
        assert_eq!(workload.metadata.name, "propensity", "{file}");
    }
}

#[test]
fn docs_agree_with_readme_and_ci() {
    // Memory per visitor is measured once, in README's Performance section;
    // everything else refers to it (two copies drifted to 661 MiB/700 B
    // against 604.6 MiB/634 B).
    let mut files: Vec<String> = Vec::new();
    for dir in ["docs", "deploy/kubernetes", "deploy/docker", "deploy/local"] {
        for entry in std::fs::read_dir(path(dir)).expect("read dir") {
            let p = entry.expect("dir entry").path();
            if p.is_file() {
                files.push(format!(
                    "{dir}/{}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
    }
    for file in &files {
        let Ok(text) = std::fs::read_to_string(path(file)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let figure = lower
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| {
                    let number = w[0].trim_matches(|c: char| !c.is_alphanumeric());
                    !number.is_empty()
                        && number
                            .chars()
                            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
                        && ["mib", "bytes", "b"]
                            .contains(&w[1].trim_matches(|c: char| !c.is_alphabetic()))
                });
            assert!(
                !(figure && lower.contains("visitor")),
                "{file}:{}: states a memory-per-visitor figure; refer to README's Performance section instead: {line}",
                n + 1
            );
        }
    }
    // The build prerequisites .ci/run installs are listed in README.
    let readme = read("README.md");
    let ci = read(".ci/run");
    let packages = ci
        .lines()
        .find_map(|l| l.trim().strip_prefix("for pkg in "))
        .and_then(|l| l.split_once(';'))
        .map(|(list, _)| list.split_whitespace().collect::<Vec<_>>())
        .expect(".ci/run: no `for pkg in …; do` line");
    assert!(packages.len() >= 4);
    for pkg in packages {
        assert!(
            readme.contains(&format!("`{pkg}`")),
            "README does not list `{pkg}`, a build prerequisite .ci/run installs"
        );
    }
    // The first build's time is stated next to the "< 1 minute" demo.
    assert!(
        readme.contains("first build") && readme.contains("minutes"),
        "README must say how long the first build takes"
    );
    // Headers of the manifests speak about the manifest (a line addressed
    // to a requester once slipped into deployment.yaml's).
    for dir in [KUBERNETES_DIR, OPERATOR_DIR] {
        for entry in std::fs::read_dir(path(dir)).expect("read dir") {
            let p = entry.expect("dir entry").path();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for line in text.lines().take_while(|l| l.starts_with('#')) {
                let lower = line.to_lowercase();
                for stray in ["request", "todo", "fixme", "xxx", "issue"] {
                    assert!(
                        !lower.contains(stray),
                        "{}: stray header line: {line}",
                        p.display()
                    );
                }
            }
        }
    }
}

/// `kubectl kustomize DIR` parsed into its objects, or `None` (with the
/// reason printed) when kubectl is not installed.
fn kustomize(dir: &std::path::Path) -> Option<Vec<serde_yaml_ng::Value>> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: kubectl is not installed, so `kubectl kustomize` cannot render \
                 deploy/kubernetes here; the file-level checks above still ran"
            );
            return None;
        }
        Err(e) => panic!("cannot run kubectl: {e}"),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde_yaml_ng::Value::deserialize(d).expect("rendered YAML"))
            .filter(|v| !v.is_null())
            .collect(),
    )
}

fn of_kind<'a>(objects: &'a [serde_yaml_ng::Value], kind: &str) -> Vec<&'a serde_yaml_ng::Value> {
    objects
        .iter()
        .filter(|o| o.get("kind").and_then(serde_yaml_ng::Value::as_str) == Some(kind))
        .collect()
}

/// The checks of one rendered kustomization: generated ConfigMaps wired
/// into the pods, the configuration file the shipped one, one scrape path.
fn check_rendered(what: &str, objects: &[serde_yaml_ng::Value], kind: &str, annotated: bool) {
    let configmaps = of_kind(objects, "ConfigMap");
    let name_of = |prefix: &str| -> String {
        configmaps
            .iter()
            .filter_map(|c| c.get("metadata")?.get("name")?.as_str())
            .find(|n| n.starts_with(prefix))
            .unwrap_or_else(|| panic!("{what}: no ConfigMap {prefix}*"))
            .to_owned()
    };
    let (config, env) = (name_of("propensity-config-"), name_of("propensity-env-"));
    let config_map: ConfigMap = configmaps
        .iter()
        .find(|c| {
            c.get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                == Some(config.as_str())
        })
        .map(|c| serde_yaml_ng::from_value((*c).clone()).expect("ConfigMap"))
        .expect("the config ConfigMap");
    assert!(
        config_map.data["propensity.toml"].ends_with(&read("config/propensity.toml")),
        "{what}: the rendered configuration is not config/propensity.toml"
    );
    let workloads = of_kind(objects, kind);
    assert_eq!(workloads.len(), 1, "{what}: one {kind}");
    let workload: Workload = serde_yaml_ng::from_value(workloads[0].clone()).expect(kind);
    let pod = &workload.spec.template.spec;
    assert!(
        pod.volumes
            .iter()
            .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == config)),
        "{what}: the pods do not mount {config}"
    );
    for c in pod.containers.iter().chain(&pod.init_containers) {
        assert!(
            c.env_from
                .iter()
                .any(|e| e.config_map_ref.as_ref().is_some_and(|r| r.name == env)),
            "{what}: container {} does not read {env}",
            c.name
        );
    }
    assert!(of_kind(objects, "Job").is_empty(), "{what}: a Job");
    let service: Service =
        serde_yaml_ng::from_value(of_kind(objects, "Service")[0].clone()).expect("Service");
    let pod_annotations = &workload.spec.template.metadata.annotations;
    for a in SCRAPE_ANNOTATIONS {
        assert!(
            !service.metadata.annotations.contains_key(*a),
            "{what}: Service has {a}"
        );
        assert_eq!(
            pod_annotations.contains_key(*a),
            annotated,
            "{what}: pods and {a}"
        );
    }
}

#[test]
fn kustomize_renders_what_the_files_promise() {
    let base = path(KUBERNETES_DIR);
    let Some(objects) = kustomize(&base) else {
        return;
    };
    check_rendered("deploy/kubernetes", &objects, "StatefulSet", true);
    let Some(objects) = kustomize(&path(OPERATOR_DIR)) else {
        return;
    };
    check_rendered(OPERATOR_DIR, &objects, "StatefulSet", false);
    assert_eq!(
        of_kind(&objects, "PodMonitor").len(),
        1,
        "{OPERATOR_DIR}: PodMonitor"
    );
    assert_eq!(
        of_kind(&objects, "PrometheusRule").len(),
        1,
        "{OPERATOR_DIR}: PrometheusRule"
    );
    // The Deployment alternative, swapped in as the kustomization says.
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&base).expect("read deploy/kubernetes") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap_or_default())).expect("copy");
    }
    let k = dir.path().join("kustomization.yaml");
    let text = std::fs::read_to_string(&k).expect("kustomization");
    assert!(text.contains("  - statefulset.yaml\n"));
    std::fs::write(
        &k,
        text.replace("  - statefulset.yaml\n", "  - deployment.yaml\n"),
    )
    .expect("write");
    let Some(objects) = kustomize(dir.path()) else {
        return;
    };
    check_rendered(
        "deploy/kubernetes with deployment.yaml",
        &objects,
        "Deployment",
        true,
    );
}

/// The dev and prod overlays render, keep everything the base promises, and
/// set the replicas, namespace and cluster settings their headers state.
#[test]
fn dev_and_prod_overlays_render_what_they_promise() {
    for Overlay {
        dir,
        replicas,
        namespace,
        env,
    } in OVERLAYS
    {
        let Some(objects) = kustomize(&path(dir)) else {
            return;
        };
        check_rendered(dir, &objects, "StatefulSet", true);
        let sets = of_kind(&objects, "StatefulSet");
        let set = sets
            .first()
            .unwrap_or_else(|| panic!("{dir}: no StatefulSet"));
        assert_eq!(
            set.get("spec")
                .and_then(|s| s.get("replicas"))
                .and_then(|r| r.as_i64()),
            Some(replicas),
            "{dir}: replicas"
        );
        for o in &objects {
            let ns = o
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(|n| n.as_str());
            assert_eq!(ns, Some(namespace), "{dir}: namespace of {o:?}");
        }
        let maps = of_kind(&objects, "ConfigMap");
        let data = maps
            .iter()
            .find(|c| {
                c.get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str())
                    .is_some_and(|n| n.starts_with("propensity-env-"))
            })
            .and_then(|c| c.get("data"))
            .unwrap_or_else(|| panic!("{dir}: no propensity-env ConfigMap"));
        for (key, want) in env {
            assert_eq!(
                data.get(*key).and_then(|v| v.as_str()),
                Some(*want),
                "{dir}: {key}"
            );
        }
    }
}
