//! The Kafka-facing commands: `topics create`, `produce` and `run`. `run`
//! owns process concerns the library leaves to the binary: signals (first
//! SIGTERM/SIGINT drains, a second exits at once, SIGHUP reloads models),
//! the drain timeout, the model-directory watcher and the final summary.
//! Each command asks the brokers first, within `kafka.probe_timeout_secs`:
//! `topics create` and `produce` fail with the broker named, `run` serves
//! its endpoints and retries until the broker answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use propensity_engine::replay::{merge_order, RecordKind};
use propensity_engine::EngineSummary;
use propensity_kafka::access::access_channel;
use propensity_kafka::produce::{visitor_key, OutgoingRecord, TrafficProducer};
use propensity_kafka::reachability::probe_brokers;
use propensity_kafka::topics::{check_topics, create_topics};
use propensity_kafka::{
    run_pipeline, CancellationToken, KafkaSettings, ModelHandle, PipelineMetrics, PipelineOptions,
    RuntimeStatus,
};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::http_server::{serve, HttpState};

use crate::config_file::Config;
use crate::jsonl::read_inputs;
use crate::model_files::{load_models, reload_models, ServedModels};
use crate::progress::{Progress, Unit};

/// `propensity topics create`.
pub fn topics_create(config: &Config) -> Result<Vec<(String, bool)>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(create_topics(&config.file.kafka))?)
}

/// `propensity produce`: both files to their topics in replay order
/// (merged by record time, consent first at equal times).
pub fn produce_files(
    config: &Config,
    events: &Path,
    consent: &Path,
    rate: Option<f64>,
    progress: &Progress,
) -> Result<(u64, u64)> {
    // Before reading the files and queueing records: an unreachable broker
    // otherwise shows only when the final flush times out.
    probe_brokers(&config.file.kafka)?;
    let (ev, co) = read_inputs(events, consent, progress)?;
    let ev_lines = ev.lines();
    let co_lines = co.lines();
    let order = merge_order(&ev_lines, &co_lines);
    let keys: Vec<Option<String>> = order
        .iter()
        .map(|r| match r.kind {
            RecordKind::Event => visitor_key(ev_lines[r.index]),
            RecordKind::Consent => visitor_key(co_lines[r.index]),
        })
        .collect();
    let k = &config.file.kafka;
    let producer = TrafficProducer::new(k)?;
    let bar = progress.bar("producing", Unit::Records, Some(order.len() as u64));
    let records = order.iter().zip(&keys).map(|(r, key)| OutgoingRecord {
        topic: match r.kind {
            RecordKind::Event => &k.events_topic,
            RecordKind::Consent => &k.consent_topic,
        },
        key: key.as_deref().map(str::as_bytes),
        value: Some(match r.kind {
            RecordKind::Event => ev_lines[r.index],
            RecordKind::Consent => co_lines[r.index],
        }),
    });
    // Counted as handed to the producer; after the last one `send_all`
    // waits (up to a minute) for the broker's acknowledgements, which the
    // bar says instead of sitting at 100 % unexplained.
    let records = records
        .inspect(|_| bar.inc(1))
        .chain(std::iter::from_fn(|| {
            bar.set_message("awaiting acks");
            None
        }));
    producer.send_all(records, rate)?;
    bar.finish_and_clear();
    Ok((ev_lines.len() as u64, co_lines.len() as u64))
}

/// Options of `run`.
pub struct RunOptions {
    /// Instance id (stable per instance).
    pub instance_id: String,
    /// Write the engine summary here on exit.
    pub summary_json: Option<PathBuf>,
}

/// The signals `run` handles, registered before anything waits on the
/// broker and kept until the process ends.
struct Signals {
    /// SIGTERM: drain and stop (a second one: stop now).
    term: Signal,
    /// SIGINT: as SIGTERM.
    int: Signal,
    /// SIGHUP: reload the models.
    hup: Signal,
}

impl Signals {
    /// Registers the handlers; needs a runtime context.
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// First and longest pause between two attempts to reach the broker at
/// start: retries are quick while an orchestrator starts the broker next
/// to us, and a long outage costs a probe every half minute.
const BROKER_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Waits until the brokers answer and the topics check out, and returns the
/// topics' partition count; `None` when SIGTERM/SIGINT (or the end of the
/// HTTP endpoints) stopped the wait. An unreachable broker is someone
/// else's outage: it is retried with backoff, shown in `/readyz`
/// (`last_error`) and logged when its reason changes. Topic problems need
/// someone to act, so they end the start with the problems named.
async fn await_topics(
    k: &KafkaSettings,
    status: &RuntimeStatus,
    signals: &mut Signals,
    shutdown: &CancellationToken,
) -> Result<Option<i32>> {
    let mut backoff = BROKER_BACKOFF.0;
    let mut logged: Option<String> = None;
    loop {
        // The check blocks on librdkafka for up to the probe timeout: off
        // the runtime's workers, so that a signal is seen at once.
        let check = {
            let (k, rt) = (k.clone(), tokio::runtime::Handle::current());
            tokio::task::spawn_blocking(move || rt.block_on(check_topics(&k)))
        };
        let result = tokio::select! {
            r = check => r.context("the topic check panicked")?,
            _ = signals.term.recv() => return Ok(None),
            _ = signals.int.recv() => return Ok(None),
            _ = shutdown.cancelled() => return Ok(None),
        };
        let e = match result {
            Ok(partitions) => {
                RuntimeStatus::set(&status.broker_reachable, true);
                status.clear_error();
                return Ok(Some(partitions));
            }
            Err(e) if e.is_unreachable() => e,
            Err(e) => {
                return Err(anyhow::Error::new(e).context("cannot start: topics are not ready"))
            }
        };
        let message = e.to_string();
        RuntimeStatus::set(&status.broker_reachable, false);
        status.error(message.clone());
        if logged.as_deref() != Some(message.as_str()) {
            tracing::warn!(error = %message, retry_in_secs = backoff.as_secs_f64(), "waiting for the Kafka broker; retrying with backoff");
            logged = Some(message);
        } else {
            tracing::debug!(
                retry_in_secs = backoff.as_secs_f64(),
                "the Kafka broker is still unreachable"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = signals.term.recv() => return Ok(None),
            _ = signals.int.recv() => return Ok(None),
            _ = shutdown.cancelled() => return Ok(None),
        }
        backoff = (backoff * 2).min(BROKER_BACKOFF.1);
    }
}

/// `propensity run`.
pub fn run(config: &Config, opts: RunOptions) -> Result<()> {
    let models_dir = config.file.models.dir.clone();
    // The engine runs with the features of the models' vocabulary.
    let ServedModels { config, models } = load_models(&models_dir, config)
        .with_context(|| format!("cannot start: models in {}", models_dir.display()))?;
    let config = &config;
    let k = config.file.kafka.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Signals are ours from here on: a SIGTERM while the broker is still
    // awaited must stop the process cleanly, not kill it.
    let mut signals = {
        let _runtime = rt.enter();
        Signals::new()?
    };

    let shutdown = CancellationToken::new();
    let status = Arc::new(RuntimeStatus::default());
    let metrics = Arc::new(
        PipelineMetrics::new(&config.engine)
            .map_err(|e| anyhow::anyhow!("cannot register metrics: {e}"))?,
    );
    metrics.set_models(&models);
    let handle = Arc::new(ModelHandle::new(models));
    let (access_tx, access_rx) = access_channel();
    let listen: std::net::SocketAddr = config.file.http.listen.parse().with_context(|| {
        format!(
            "config key `http.listen`: `{}` is not an address like 0.0.0.0:9464",
            config.file.http.listen
        )
    })?;
    let http_state = Arc::new(HttpState {
        status: status.clone(),
        metrics: metrics.clone(),
        models_loaded: true,
        admin_token: config.file.http.admin_token.clone(),
        access: access_tx,
        models: handle.clone(),
        outcomes: config
            .engine
            .outcomes
            .iter()
            .map(|o| o.name.clone())
            .collect(),
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("cannot listen on http.listen {listen}"))?;
    // The HTTP endpoints are how the platform sees this instance, so they
    // start before anything waits on the broker: /healthz answers and
    // /readyz says why the instance is not ready from the first second. If
    // they stop, the pipeline drains and the process exits with an error
    // instead of running on unobserved.
    let http_failed = CancellationToken::new();
    {
        let (shutdown, http_failed) = (shutdown.clone(), http_failed.clone());
        rt.spawn(async move {
            if let Err(e) = serve(listener, http_state).await {
                tracing::error!(error = %e, "http endpoints stopped; stopping the pipeline");
                http_failed.cancel();
                shutdown.cancel();
            }
        });
    }

    let Some(partitions) = rt.block_on(await_topics(&k, &status, &mut signals, &shutdown))? else {
        // Stopped before the pipeline started: nothing to drain. The
        // runtime may still hold a probe waiting on the broker; it ends
        // with the process.
        rt.shutdown_background();
        if http_failed.is_cancelled() {
            anyhow::bail!(
                "the http endpoints stopped (see the error above) before the broker answered"
            );
        }
        tracing::info!("stopped before the broker answered");
        return Ok(());
    };
    tracing::info!(partitions, instance = %opts.instance_id, "topics checked");

    // The partition count the topics really have (access requests map a
    // visitor to its partition with it).
    let settings = propensity_kafka::KafkaSettings {
        partitions,
        ..k.clone()
    };
    let pipeline_opts = PipelineOptions {
        settings,
        instance_id: opts.instance_id.clone(),
        engine_config: config.engine_with_partitions(partitions)?,
        models: handle.clone(),
        status: status.clone(),
        shutdown: shutdown.clone(),
        metrics: metrics.clone(),
        access: Some(access_rx),
    };
    // The pipeline thread says when it ends (for whatever reason) through a
    // oneshot, so the signal loop wakes on it instead of polling.
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let r = run_pipeline(pipeline_opts);
            let _ = done_tx.send(());
            r
        })?;

    let drain = Duration::from_secs_f64(k.drain_timeout_secs);
    let watch = config.file.models.watch_interval_secs;
    let reload_config = config.clone();
    let stop = shutdown.clone();
    let drained = rt.block_on(async move {
        let Signals {
            mut term,
            mut int,
            mut hup,
        } = signals;
        let mut stamp = crate::model_files::files_stamp(&models_dir, &reload_config.engine);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(if watch > 0.0 { watch } else { 3600.0 }));
        let reload = |why: &str| match reload_models(&models_dir, &reload_config.engine) {
            Ok(m) => {
                metrics.model_reload(true);
                let previous = handle.current();
                for i in m.promoted_since(&previous) {
                    metrics.model_promoted(i);
                    tracing::info!(
                        outcome = %reload_config.engine.outcomes[i].name,
                        champion = m.get(i).map_or("", |c| c.version.as_str()),
                        challenger = m.challenger(i).map_or("", |c| c.version.as_str()),
                        "challenger promoted: it serves from the next event"
                    );
                }
                handle.swap(m);
                tracing::info!(reason = why, "models reloaded");
            }
            Err(e) => {
                metrics.model_reload(false);
                tracing::error!(reason = why, error = %format!("{e:#}"), "model reload refused; the previous models keep serving");
            }
        };
        let finished = loop {
            tokio::select! {
                _ = term.recv() => break false,
                _ = int.recv() => break false,
                _ = stop.cancelled() => break false,
                _ = &mut done_rx => break true,
                _ = hup.recv() => { reload("SIGHUP"); stamp = crate::model_files::files_stamp(&models_dir, &reload_config.engine); }
                _ = tick.tick(), if watch > 0.0 => {
                    let now = crate::model_files::files_stamp(&models_dir, &reload_config.engine);
                    if now != stamp {
                        stamp = now;
                        reload("model files changed");
                    }
                }
            }
        };
        if finished {
            return anyhow::Ok(true);
        }
        tracing::info!(timeout_secs = drain.as_secs_f64(), "stopping: draining the open transaction");
        stop.cancel();
        // A second signal means "now".
        tokio::spawn(async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
        anyhow::Ok(tokio::time::timeout(drain, done_rx).await.is_ok())
    })?;
    if !drained {
        anyhow::bail!(
            "drain timeout of {:.1} s exceeded; exiting without a clean commit",
            drain.as_secs_f64()
        );
    }
    let result = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;
    if let Some(path) = &opts.summary_json {
        let counters = status.engine.lock().map(|c| c.clone()).unwrap_or_default();
        let summary = EngineSummary::new(&counters, &config.engine);
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    result.context("pipeline failed")?;
    if http_failed.is_cancelled() {
        anyhow::bail!("the http endpoints stopped (see the error above), so the pipeline was drained and stopped");
    }
    Ok(())
}
