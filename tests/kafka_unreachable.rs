//! A broker that is not there (`127.0.0.1:1`, where nothing listens), as a
//! new user meets it with a wrong `PROPENSITY__KAFKA__BROKERS`: every
//! command that needs the broker fails within seconds, not after
//! librdkafka's minute, with one message that names the broker once, says
//! what to check and repeats no text of its cause; `run` instead stays up,
//! answers `/healthz` and explains in `/readyz` why it is not ready while it
//! retries, and a SIGTERM during the retries ends it at once with exit 0.
//! Needs no broker: the real binary against a closed port.

use std::process::Command;
use std::time::{Duration, Instant};

use propensity_system_tests::{binary, models_dir, Instance};
use serde_json::Value;

const BROKER: &str = "127.0.0.1:1";

/// `propensity …` against the closed port.
fn command(args: &[&str]) -> Command {
    let mut c = Command::new(binary());
    c.args(args)
        .env("PROPENSITY__KAFKA__BROKERS", BROKER)
        .env("RUST_LOG", "info");
    c
}

/// The longest text that occurs twice in `s` without overlapping, if it is
/// longer than `min` characters: an error that repeats its cause chain
/// (`X: Y: X: Y`) has one as long as its cause.
fn repeated(s: &str, min: usize) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut longest: Option<String> = None;
    for len in (min + 1)..=chars.len() / 2 {
        let found = (0..=chars.len() - 2 * len).find_map(|i| {
            let needle: String = chars[i..i + len].iter().collect();
            let rest: String = chars[i + len..].iter().collect();
            rest.contains(&needle).then_some(needle)
        });
        match found {
            Some(n) => longest = Some(n),
            None => break,
        }
    }
    longest
}

/// Runs a command that must fail fast: returns its stderr.
fn fails_fast(what: &str, mut cmd: Command) -> String {
    let started = Instant::now();
    let out = cmd.output().expect("cannot run the propensity binary");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{what} succeeded against {BROKER}: {stderr}"
    );
    // The default probe timeout is 5 s; librdkafka's own waits were 60 s.
    assert!(
        took < Duration::from_secs(15),
        "{what} took {took:?} to report an unreachable broker: {stderr}"
    );
    stderr
}

/// The one error line of a failed command, checked for the broker named
/// once, the hint, and no repeated text.
fn check_message(what: &str, stderr: &str) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{what}: no error line in {stderr}"));
    assert_eq!(
        line.matches(BROKER).count(),
        1,
        "{what}: the broker is not named exactly once: {line}"
    );
    assert!(
        line.contains("unreachable") && line.contains("kafka.brokers"),
        "{what}: the message does not say what is wrong and what to check: {line}"
    );
    if let Some(r) = repeated(line, 20) {
        panic!("{what}: the message repeats `{r}`: {line}");
    }
    assert_eq!(
        stderr.matches("error: ").count(),
        1,
        "{what}: more than one error printed: {stderr}"
    );
}

#[test]
fn the_repetition_check_sees_a_repeated_cause_chain() {
    let old = "error: kafka: Admin operation error: OperationTimedOut (Local: Timed out): Admin operation error: OperationTimedOut (Local: Timed out)";
    assert!(repeated(old, 20).is_some());
    assert_eq!(repeated("error: broker x unreachable: y", 20), None);
}

#[test]
fn commands_that_need_the_broker_fail_fast_naming_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let traffic = dir.path().join("traffic");
    let generated = command(&["generate", "--visitors", "20", "--out"])
        .arg(&traffic)
        .output()
        .expect("generate");
    assert!(generated.status.success(), "generate failed");

    let stderr = fails_fast("topics create", command(&["topics", "create"]));
    check_message("topics create", &stderr);

    let mut produce = command(&["produce", "--events"]);
    produce
        .arg(traffic.join("events.jsonl"))
        .arg("--consent")
        .arg(traffic.join("consent.jsonl"));
    let stderr = fails_fast("produce", produce);
    check_message("produce", &stderr);

    // Before generating and training: nothing on stdout but the error.
    let mut bench = command(&["bench", "--kafka"]);
    let started = Instant::now();
    let out = bench.output().expect("bench");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && started.elapsed() < Duration::from_secs(15),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("training"),
        "bench --kafka trained before checking the broker"
    );
    check_message("bench --kafka", &stderr);
}

fn readyz(instance: &Instance) -> (u16, Value) {
    let (status, body) = instance.http_get("/readyz", None);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn run_answers_probes_and_retries_until_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = command(&["run", "--instance-id", "unreachable"]);
    cmd.env("PROPENSITY__MODELS__DIR", models_dir())
        .env("PROPENSITY__KAFKA__PROBE_TIMEOUT_SECS", "1");
    let started = Instant::now();
    let mut instance = Instance::spawn(cmd, dir.path(), "unreachable", dir.path().join("s.json"));

    // Liveness from the first second, before the first probe has ended.
    let (status, body) = instance.http_get("/healthz", None);
    assert_eq!(status, 200, "/healthz: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "/healthz took {:?}; log: {}",
        started.elapsed(),
        instance.log_text()
    );

    // Not ready, with the reason, while it retries.
    let reason = loop {
        let (status, body) = readyz(&instance);
        assert_eq!(status, 503, "/readyz: {body}");
        if let Some(e) = body["last_error"].as_str() {
            break e.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/readyz gave no reason: {body}; log: {}",
            instance.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        reason.starts_with(&format!("broker {BROKER} unreachable: ")),
        "{reason}"
    );
    assert_eq!(reason.matches(BROKER).count(), 1, "{reason}");

    // Still up after several retries (the old start-up exited after one
    // failed topic check).
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        instance.exited().is_none(),
        "run exited instead of retrying; log: {}",
        instance.log_text()
    );
    let (status, body) = readyz(&instance);
    assert_eq!(
        (status, body["ready"].as_bool()),
        (503, Some(false)),
        "{body}"
    );
    let log = instance.log_text();
    assert_eq!(
        log.matches("waiting for the Kafka broker").count(),
        1,
        "the same reason is logged once, not per retry: {log}"
    );

    // SIGTERM during the retries: exit 0, promptly.
    let stopping = Instant::now();
    let log_path = instance.log.clone();
    let status = instance.terminate(Duration::from_secs(5));
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    assert!(
        status.success(),
        "exit {status:?} after SIGTERM; log: {log}"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "took {:?} to stop",
        stopping.elapsed()
    );
}
