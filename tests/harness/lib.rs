//! Harness of the system tests: a real Kafka broker (started by
//! `tests/run-all.sh` or `.ci/run` through `deploy/local/kafka`), the real
//! `propensity` binary run as separate processes, fresh topics with random
//! names per test, and the file replay of the same records as the oracle.
//!
//! One module per job: [`deployment`] runs the deployment under test
//! ([`Deployment`], [`Instance`]), [`topics`] reads topics back, [`load`]
//! makes background load, [`acked`] sends with the broker's
//! acknowledgement, [`fixtures`] builds events and consent records, [`http`]
//! makes one loopback GET, and
//! [`metrics`] parses `/metrics`; this file finds the environment (broker,
//! binary, models) and re-exports everything at the crate root.
//!
//! Background load: `PROPENSITY_TEST_LOAD=1` (with `PROPENSITY_TEST_LOAD_MBPS`,
//! `PROPENSITY_TEST_LOAD_MAX_SECS`, `PROPENSITY_TEST_LOAD_CPU_THREADS`) runs
//! every test under load, see [`load`].
//!
//! Debugging: `PROPENSITY_TEST_KEEP=1` keeps every test's directory (a
//! failing test always keeps it), `PROPENSITY_TEST_RUST_LOG` replaces the
//! instances' `RUST_LOG`, and `PROPENSITY_BIN` runs another binary.

pub mod acked;
pub mod deployment;
pub mod fixtures;
pub mod http;
pub mod load;
pub mod metrics;
pub mod topics;

pub use acked::{AckProducer, Acked};
pub use deployment::{
    Deployment, Instance, PartitionProgress, ReplayOutputs, Traffic, CONTROL_GROUP_MAP,
};
pub use fixtures::{consent_record, now_epoch_ms, page_view, rfc3339};
pub use http::http_get;
pub use load::{background_load, load_requested, LoadGuard};
pub use metrics::{Metrics, Reconciliation};
pub use topics::{
    assert_same_decisions, assert_same_offers, assert_same_records, json_values, offers_by_id,
    offers_in, read_json, read_json_lines, read_lines, read_topic, set_max_message_bytes, Record,
};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The last `n` lines of `text`, for failure messages about a process's
/// output.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

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

pub(crate) fn run_ok(cmd: &mut Command) -> String {
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

pub(crate) fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{:08x}", std::process::id(), nanos)
}

/// The artifacts of [`models_dir`]: (outcome, artifact JSON), by outcome.
pub fn trained_artifacts() -> Vec<(String, serde_json::Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(models_dir()).expect("models") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let outcome = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_owned();
        let text = std::fs::read_to_string(&path).expect("model");
        found.push((outcome, serde_json::from_str(&text).expect("json")));
    }
    assert!(!found.is_empty(), "no model artifacts");
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
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
