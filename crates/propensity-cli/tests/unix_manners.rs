//! The binary as a Unix tool, through the real executable and no broker:
//! `--version` names the git revision; completions and the man page cover
//! every subcommand; `--config` is refused where nothing reads it; a
//! closed stdout pipe ends the command quietly with status 0; an
//! unreachable broker is named once, within the timeout, in logs without
//! colour codes or doubled `librdkafka:` prefixes; `-q`/`-v` beat
//! `RUST_LOG`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_propensity");

fn propensity(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .expect("run propensity")
}

fn stdout_of(args: &[&str]) -> String {
    let out = propensity(args);
    assert!(
        out.status.success(),
        "propensity {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The subcommands `--help` lists (nested ones as `topics create`).
fn subcommands() -> Vec<String> {
    let mut names = Vec::new();
    for (parent, help) in [
        (None, stdout_of(&["--help"])),
        (Some("topics"), stdout_of(&["topics", "--help"])),
    ] {
        let listed = help
            .split("Commands:")
            .nth(1)
            .and_then(|s| s.split("\n\n").next())
            .expect("a Commands: section");
        for line in listed.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if name != "help" {
                names.push(match parent {
                    Some(p) => format!("{p} {name}"),
                    None => name.to_owned(),
                });
            }
        }
    }
    assert!(names.len() >= 15, "too few subcommands found: {names:?}");
    names
}

#[test]
fn version_names_the_crate_version_and_the_git_revision() {
    let v = stdout_of(&["--version"]);
    assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}");
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        Some(rev) => assert_eq!(
            v.trim(),
            format!("propensity {} (git {rev})", env!("CARGO_PKG_VERSION"))
        ),
        None => assert!(v.contains("(git unknown)"), "{v}"),
    }
}

#[test]
fn completions_cover_every_subcommand() {
    let subcommands = subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for name in &subcommands {
            // Nested commands appear by their last word.
            let last = name.rsplit(' ').next().unwrap_or(name);
            assert!(script.contains(last), "{shell} completion lacks `{name}`");
        }
    }
}

#[test]
fn the_man_page_covers_every_subcommand() {
    let man = stdout_of(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH propensity"),
        "not roff"
    );
    for name in subcommands() {
        let page = format!(".TH propensity-{} ", name.replace(' ', "-"));
        assert!(man.contains(&page), "no page `{page}`");
    }
}

#[test]
fn commands_that_read_no_configuration_refuse_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("traffic");
    for args in [
        vec![
            "generate",
            "--visitors",
            "5",
            "--out",
            out_dir.to_str().expect("UTF-8"),
        ],
        vec!["completions", "bash"],
        vec!["man"],
    ] {
        let mut with_config = args.clone();
        with_config.extend(["--config", "my.toml"]);
        let out = propensity(&with_config);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} accepted --config: {err}"
        );
        assert!(
            err.contains("--config my.toml") && err.contains("no effect"),
            "{args:?}: {err}"
        );
    }
    assert!(
        !out_dir.exists(),
        "generate ran although it refused --config"
    );
}

/// `replay --offers-out - | head -1` with a real pipe: the reader leaves
/// after one line while the replay still writes; it ends with status 0 and
/// says nothing.
#[test]
fn a_closed_stdout_pipe_ends_quietly_with_status_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_owned();
    let (traffic, models) = (p("traffic"), p("models"));
    let events = format!("{traffic}/events.jsonl");
    let consent = format!("{traffic}/consent.jsonl");
    stdout_of(&["generate", "--visitors", "2000", "--out", &traffic]);
    stdout_of(&[
        "train",
        "--events",
        &events,
        "--consent",
        &consent,
        "--out",
        &models,
    ]);
    let replay = [
        "replay",
        "--events",
        &events,
        "--consent",
        &consent,
        "--models",
        &models,
        "--offers-out",
    ];
    // More offers than a pipe buffers (64 KiB), or the writer would never
    // meet the closed pipe and the test would prove nothing.
    let all = p("offers.jsonl");
    let mut to_file = replay.to_vec();
    to_file.push(&all);
    stdout_of(&to_file);
    let size = std::fs::metadata(&all).expect("offers file").len();
    assert!(size > 256 * 1024, "only {size} bytes of offers");

    let mut to_pipe = replay.to_vec();
    to_pipe.push("-");
    let mut child = Command::new(BIN)
        .args(&to_pipe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn replay");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("first offer");
    assert!(first.contains("offer_id"), "{first}");
    drop(reader);
    let out = child.wait_with_output().expect("replay ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    assert!(
        !err.contains("Broken pipe") && !err.contains("error"),
        "{err}"
    );
}

/// A tail of an address where nothing listens: fails within its timeout,
/// naming the brokers once; with `-v` the librdkafka lines are there, with
/// one `librdkafka` (the target) each, and no colour codes on a pipe.
#[test]
fn an_unreachable_broker_is_named_once_in_plain_logs() {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["tail", "offers", "--timeout", "2", "-v"])
        .env("PROPENSITY__KAFKA__BROKERS", "127.0.0.1:1")
        // librdkafka logs its configuration at creation: log lines that
        // come whether or not a connection attempt fails in time.
        .env("PROPENSITY__KAFKA__CLIENT__DEBUG", "conf")
        .env("RUST_LOG", "error")
        .env_remove("NO_COLOR")
        .output()
        .expect("run tail");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the probe is not bounded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: broker 127.0.0.1:1 unreachable"),
        "{err}"
    );
    assert_eq!(last.matches("127.0.0.1:1").count(), 1, "{last}");
    assert_eq!(err.matches("unreachable").count(), 1, "{err}");
    // -v beats RUST_LOG=error: librdkafka's debug lines are shown.
    assert!(err.contains("DEBUG librdkafka:"), "{err}");
    assert!(!err.contains("librdkafka: librdkafka:"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "escape codes in a log on a pipe: {err:?}"
    );

    // -q beats RUST_LOG=debug.
    let quiet = Command::new(BIN)
        .args(["tail", "offers", "--timeout", "1", "-q"])
        .env("PROPENSITY__KAFKA__BROKERS", "127.0.0.1:1")
        .env("RUST_LOG", "debug")
        .output()
        .expect("run tail");
    let err = String::from_utf8_lossy(&quiet.stderr);
    assert!(!err.contains("DEBUG"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn tail_refuses_scores_when_none_are_published() {
    let out = propensity(&["tail", "scores", "--timeout", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("`kafka.scores_topic` is empty"), "{err}");
    let out = propensity(&["tail", "decisions", "--timeout", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("decisions are not published")
            && err.contains("`kafka.decisions_topic` is empty"),
        "{err}"
    );
}
