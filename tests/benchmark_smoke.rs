//! Smoke runs of the benchmarks (the benchmarks themselves are not part of
//! the tests: their figures come from release builds on a quiet machine).
//! Each runs on tiny traffic and must finish and report every figure it
//! promises, with values that can be true: `bench` with its per-stage
//! costs, `bench --threads` (engine-only scaling), `bench --kafka` (the
//! pipeline with one worker and with the configured workers, the
//! pass-through and the latency run, quiet and under background load,
//! against the test broker), `bench --restore` (a partition's restore
//! against plain reads of its topics). The Kafka Streams comparison has
//! its own smoke run in tests/run-all.sh.

use propensity_system_tests::Deployment;
use serde_json::Value;

/// Runs `propensity <args>` and returns its last line (the `--json` line).
fn json_of(d: &Deployment, args: &[&str]) -> Value {
    let out = d.command(args).output().expect("run propensity");
    assert!(
        out.status.success(),
        "propensity {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"))
}

fn positive(v: &Value, field: &str) -> f64 {
    let x = v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"));
    assert!(x > 0.0 && x.is_finite(), "{field} = {x} in {v}");
    x
}

#[test]
fn engine_bench_reports_every_stage() {
    let d = Deployment::new("bench-engine", 1, false);
    let r = json_of(
        &d,
        &[
            "bench",
            "--visitors",
            "400",
            "--rounds",
            "1",
            "--memory-visitors",
            "50000",
            "--json",
        ],
    );
    positive(&r, "engine_events_per_sec");
    positive(&r, "parse_only_events_per_sec");
    positive(&r, "memory_bytes_per_visitor");
    // Shadow scoring: both rates of the same rounds and their ratio.
    for key in [
        "single_events_per_sec",
        "with_challengers_events_per_sec",
        "ratio",
        "ratio_scores_published",
    ] {
        positive(&r["challengers"], key);
    }
    let stages: Vec<&str> = r["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["stage"].as_str().expect("stage name"))
        .collect();
    assert_eq!(stages.len(), 5, "stages: {stages:?}");
}

#[test]
fn engine_scaling_bench_runs_one_and_n_threads() {
    let d = Deployment::new("bench-threads", 1, false);
    let r = json_of(
        &d,
        &[
            "bench",
            "--threads",
            "2",
            "--visitors",
            "400",
            "--rounds",
            "2",
            "--json",
        ],
    );
    assert_eq!(r["threads"], 2, "{r}");
    positive(&r, "one_thread_events_per_sec");
    positive(&r, "threads_events_per_sec");
    positive(&r, "speedup");
    assert_eq!(r["speedup_rounds"].as_array().map(Vec::len), Some(2), "{r}");
}

#[test]
fn kafka_bench_runs_one_worker_n_workers_the_pass_through_and_loaded_latency() {
    let d = Deployment::new("bench-kafka", 1, false);
    let r = json_of(
        &d,
        &[
            "bench",
            "--kafka",
            "--visitors",
            "300",
            "--rounds",
            "1",
            "--latency-rate",
            "300",
            "--latency-secs",
            "3",
            "--background-load",
            "500",
            "--json",
        ],
    );
    assert!(r["workers"].as_u64().is_some_and(|w| w >= 1), "{r}");
    positive(&r, "pipeline_events_per_sec");
    positive(&r, "one_worker_events_per_sec");
    positive(&r, "passthrough_events_per_sec");
    positive(&r, "latency_p99_ms");
    assert!(r["latency_samples"].as_u64().is_some_and(|n| n > 0), "{r}");
    // The latency run repeated under background load, which really ran.
    let loaded = &r["loaded"];
    positive(loaded, "load_acked_per_sec");
    positive(&loaded["latency"], "p99_ms");
    assert!(
        loaded["latency"]["samples"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );
}

#[test]
fn restore_bench_times_restores_of_a_bounded_consent_tail() {
    let d = Deployment::new("bench-restore", 1, false);
    let r = json_of(
        &d,
        &[
            "bench",
            "--restore",
            "--restore-visitors",
            "500",
            "--rounds",
            "2",
            "--json",
        ],
    );
    assert_eq!(r["visitors"], 500, "{r}");
    positive(&r, "restore_seconds");
    positive(&r, "changelog_read_seconds");
    positive(&r, "consent_topic_read_seconds");
    assert_eq!(r["restore_rounds"].as_array().map(Vec::len), Some(2), "{r}");
    // Every visitor has a snapshot; the restore reads the consent changes
    // of its round only (5 = 1 % of 500), not the 500 grants before them.
    assert!(
        r["changelog_records"].as_u64().is_some_and(|n| n >= 500),
        "{r}"
    );
    assert_eq!(r["consent_records"], 5, "{r}");
    assert_eq!(r["consent_topic_records"], 510, "{r}");
}
