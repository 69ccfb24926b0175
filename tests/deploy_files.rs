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
//! - the Kubernetes ConfigMap holds a valid configuration whose engine
//!   sections match `config/propensity.toml`.
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

/// Sections of the Kubernetes configuration that are about the deployment
/// rather than the engine, and so may differ from config/propensity.toml.
const DEPLOYMENT_SECTIONS: &[&str] = &["kafka", "http", "logging", "models"];

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
    spec: WorkloadSpec,
}

#[derive(Deserialize)]
struct WorkloadSpec {
    replicas: Option<i64>,
    template: PodTemplate,
}

#[derive(Deserialize)]
struct PodTemplate {
    spec: PodSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    termination_grace_period_seconds: Option<i64>,
    containers: Vec<Container>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    readiness_probe: Option<Probe>,
    liveness_probe: Option<Probe>,
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

/// The `propensity.toml` entry of the Kubernetes ConfigMap.
fn configmap_toml() -> String {
    let file = "deploy/kubernetes/configmap.yaml";
    let mut configmap: ConfigMap = kubernetes_object(file, "ConfigMap");
    let text = configmap
        .data
        .remove("propensity.toml")
        .unwrap_or_else(|| panic!("{file}: no data entry propensity.toml"));
    assert!(
        !text.trim().is_empty(),
        "the ConfigMap's propensity.toml is empty"
    );
    text
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
    let drain = drain.max(drain_timeout_secs(&configmap));
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
    let partitions = configmap
        .get("kafka")
        .and_then(|k| k.get("partitions"))
        .and_then(toml::Value::as_integer)
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
    assert_eq!(
        service("kafka").image.as_deref(),
        Some("apache/kafka:4.1.0"),
        "{file}: image of service kafka"
    );
}

#[test]
fn kubernetes_configmap_is_a_valid_configuration() {
    let text = configmap_toml();
    let configmap: toml::Table = toml::from_str(&text).expect("the ConfigMap's TOML");
    let shipped = shipped_config();
    // Engine sections are the shipped ones (a difference in [features]
    // alone would make every model trained with the shipped config fail).
    let keys: BTreeSet<&String> = shipped.keys().chain(configmap.keys()).collect();
    for key in keys {
        if DEPLOYMENT_SECTIONS.contains(&key.as_str()) {
            continue;
        }
        assert_eq!(
            shipped.get(key),
            configmap.get(key),
            "section `{key}` of deploy/kubernetes/configmap.yaml differs from \
             config/propensity.toml: carry the change over"
        );
    }
    // And the binary accepts it (unknown keys are errors).
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("propensity.toml");
    std::fs::write(&file, &text).expect("write config");
    let mut cmd = Command::new(binary());
    cmd.args(["check-config", &file.display().to_string()]);
    // The file alone, without overrides from this environment.
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("PROPENSITY__")) {
        cmd.env_remove(name);
    }
    let out = cmd.output().expect("run propensity check-config");
    assert!(
        out.status.success(),
        "propensity check-config rejects the ConfigMap's configuration:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
