//! The progress bars as users meet them, through the real binary: nothing
//! of them when stderr is redirected (scripts, CI logs); drawn on a
//! terminal, in colour unless `NO_COLOR` is set; nothing with `--quiet`.
//! The terminal is a pseudo-terminal from util-linux `script`.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_propensity");

/// Glyphs of indicatif's default bar and spinner.
const BAR_GLYPHS: [char; 4] = ['█', '░', '⠁', '⠂'];

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run propensity");
    assert!(
        out.status.success(),
        "propensity {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn assert_no_progress(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains("\x1b["), "{what}: escape codes in {text:?}");
    assert!(
        !text.contains(BAR_GLYPHS),
        "{what}: progress glyphs in {text:?}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Every command with bars, stderr a pipe: stderr stays empty (the old
/// per-65,536-records chatter included) and stdout has no escape codes.
#[test]
fn redirected_stderr_gets_no_bars_or_escape_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = |name: &str| dir.path().join(name);
    let traffic = d("traffic");
    let events = traffic.join("events.jsonl");
    let consent = traffic.join("consent.jsonl");
    let (events, consent) = (path(&events), path(&consent));
    let commands: Vec<Vec<&str>> = vec![
        vec!["generate", "--visitors", "6000", "--out", path(&traffic)],
        vec!["train", "--events", events, "--consent", consent],
        vec!["evaluate", "--events", events, "--consent", consent],
        vec!["replay", "--events", events, "--consent", consent],
    ];
    let (models, offers) = (d("models"), d("offers.jsonl"));
    for args in commands {
        let mut args = args;
        match args[0] {
            "train" => args.extend(["--out", path(&models)]),
            "evaluate" => args.extend(["--models", path(&models)]),
            "replay" => args.extend(["--models", path(&models), "--offers-out", path(&offers)]),
            _ => {}
        }
        let out = run(&args);
        assert_no_progress(&format!("{} stderr", args[0]), &out.stderr);
        assert_no_progress(&format!("{} stdout", args[0]), &out.stdout);
        assert!(
            out.stderr.is_empty(),
            "{} wrote to a redirected stderr: {:?}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `propensity generate` under a pseudo-terminal; returns what the terminal
/// received (stdout goes to /dev/null, so that is stderr).
fn generate_on_a_terminal(extra: &str, env: &[(&str, &str)]) -> Option<String> {
    let script = Path::new("/usr/bin/script");
    if !script.exists() {
        eprintln!("skipped: no util-linux `script` for a pseudo-terminal");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let shell = format!(
        "'{BIN}' generate --visitors 10000 --out '{}' {extra} >/dev/null",
        path(dir.path())
    );
    let mut cmd = Command::new(script);
    cmd.args(["-qec", &shell, "/dev/null"])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run script");
    assert!(
        out.status.success(),
        "{shell} failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// SGR sequences (`ESC [ … m`): the colour codes, as opposed to the cursor
/// movement a bar needs to redraw itself.
fn sgr_sequences(text: &str) -> Vec<&str> {
    text.match_indices("\x1b[")
        .filter_map(|(i, _)| {
            let rest = &text[i + 2..];
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            (rest.as_bytes()[end] == b'm').then(|| &text[i..i + 3 + end])
        })
        .collect()
}

#[test]
fn a_terminal_gets_bars_in_colour() {
    let Some(tty) = generate_on_a_terminal("", &[]) else {
        return;
    };
    assert!(tty.contains("writing records"), "no bar drawn: {tty:?}");
    assert!(!sgr_sequences(&tty).is_empty(), "no colour: {tty:?}");
}

/// `NO_COLOR` wins even over `CLICOLOR_FORCE`, which would make `console`
/// colour the bar if the template asked for it.
#[test]
fn no_color_leaves_bars_without_colour_codes() {
    let Some(tty) = generate_on_a_terminal("", &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")])
    else {
        return;
    };
    assert!(tty.contains("writing records"), "no bar drawn: {tty:?}");
    assert_eq!(sgr_sequences(&tty), Vec::<&str>::new(), "{tty:?}");
}

#[test]
fn quiet_draws_nothing_on_a_terminal() {
    let Some(tty) = generate_on_a_terminal("--quiet", &[]) else {
        return;
    };
    assert_no_progress("--quiet on a terminal", tty.as_bytes());
    assert!(!tty.contains("writing records"), "{tty:?}");
}
