//! `propensity models status` and `propensity models promote`: the
//! champion and challenger of each outcome side by side, and promotion of
//! a challenger. Status reads the model directory (versions, training
//! figures) and, given a running instance's HTTP address, its live online
//! evaluation from the admin API (`GET /v1/models`). Promotion exchanges
//! the two files atomically ([`crate::model_files::promote`]); running
//! instances pick it up with their hot reload, log it and count it
//! (`propensity_model_promotions_total`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use propensity_engine::ModelArtifact;
use serde_json::{json, Value};

use crate::config_file::Config;
use crate::model_files::{artifact_path, challenger_path, read_artifact};

/// One model of one role, as status shows it.
fn describe(artifact: Option<&ModelArtifact>) -> Value {
    let Some(a) = artifact else {
        return Value::Null;
    };
    // Training figures `train` records (absent from hand-made artifacts).
    let t = &a.training;
    json!({
        "model_version": a.model_version,
        "holdout_auc": t.get("holdout_auc"),
        "holdout_log_loss": t.get("holdout_log_loss"),
        "training_rows": t.get("rows"),
    })
}

/// The status of every configured outcome: champion and challenger from
/// the files, and the live figures of `live` (the admin API's answer)
/// where given.
pub fn status(config: &Config, dir: &Path, live: Option<&Value>) -> Result<Value> {
    let mut outcomes = Vec::new();
    for outcome in &config.engine.outcomes {
        let name = outcome.name.as_str();
        let read = |path: std::path::PathBuf| -> Result<Option<ModelArtifact>> {
            if path.exists() {
                read_artifact(&path, name).map(Some)
            } else {
                Ok(None)
            }
        };
        let champion = read(artifact_path(dir, name))?;
        let challenger = read(challenger_path(dir, name))?;
        let live_outcome = live
            .and_then(|l| l.get("outcomes"))
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|o| o["outcome"] == name));
        let mut entry = json!({
            "outcome": name,
            "champion": describe(champion.as_ref()),
            "challenger": describe(challenger.as_ref()),
        });
        if let Some(l) = live_outcome {
            entry["live"] = l.clone();
        }
        outcomes.push(entry);
    }
    Ok(json!({ "models_dir": dir.display().to_string(), "outcomes": outcomes }))
}

/// The status as a table: one line per outcome and role.
pub fn print_status(status: &Value, out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "{:<24} {:<10} {:<36} {:>8} {:>9} {:>8} {:>9} {:>8}",
        "outcome", "role", "model_version", "holdout", "sessions", "auc", "log_loss", "brier"
    )?;
    let num = |v: &Value, digits: usize| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
    };
    for o in status["outcomes"].as_array().into_iter().flatten() {
        for role in ["champion", "challenger"] {
            let m = &o[role];
            let live = &o["live"][role];
            let version = m["model_version"].as_str().unwrap_or("(none)");
            let sessions = live["sessions"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |s| s.to_string());
            writeln!(
                out,
                "{:<24} {:<10} {:<36} {:>8} {:>9} {:>8} {:>9} {:>8}",
                o["outcome"].as_str().unwrap_or(""),
                role,
                version,
                num(&m["holdout_auc"], 3),
                sessions,
                num(&live["auc"], 3),
                num(&live["log_loss"], 4),
                num(&live["brier"], 4),
            )?;
            if let Some(v) = live["model_version"].as_str().filter(|v| *v != version) {
                writeln!(
                    out,
                    "{:<24} {:<10} (the instance serves {v}: it has not reloaded yet)",
                    "", ""
                )?;
            }
        }
    }
    Ok(())
}

/// `GET /v1/models` of a running instance at `addr` (`host:port` of its
/// HTTP endpoints), with the admin bearer token.
pub fn fetch_live(addr: &str, token: &str) -> Result<Value> {
    let addr = addr
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(&addr)
        .with_context(|| format!("cannot connect to the instance at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /v1/models HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("no answer from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{addr} did not answer HTTP");
    };
    let body: Value = serde_json::from_str(body.trim())
        .with_context(|| format!("{addr}/v1/models did not answer JSON"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "{addr}/v1/models: {} ({})",
            head.lines().next().unwrap_or(""),
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(body)
}
