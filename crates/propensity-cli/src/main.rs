//! The `propensity` binary: argument parsing, logging set-up and dispatch to
//! the offline commands (files), the benchmark and the Kafka runtime. All
//! logic lives in the library crates and the modules here; this file only
//! wires them together.
//!
//! Why one file of this size: clap's derive keeps every subcommand's flags
//! in one `Command` enum and `main` matches it once; a command's flags and
//! its dispatch arm are read together, and each arm only calls into a
//! module.

mod adaptive_snapshot;
mod bench;
mod config_file;
mod config_reference;
mod decisions_report;
mod demo;
mod feature_list;
mod http_server;
mod jsonl;
mod kafka_bench;
mod kafka_commands;
mod logging;
mod model_files;
mod model_roles;
mod offline;
mod progress;
mod report;
mod restore_bench;
mod shell_integration;
mod tail;
mod topics_describe;
mod vocabulary_pass;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use propensity_simulator::SimulationParams;

use crate::config_file::Config;
use crate::progress::Progress;

/// `--version`: the crate version and the git revision it was built from
/// (`unknown` outside a git checkout; see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("PROPENSITY_GIT_REVISION"),
    ")"
);

/// Streaming outcome prediction with consent-first engagement offers.
#[derive(Parser)]
#[command(name = "propensity", version = VERSION, about)]
struct Cli {
    /// Configuration file (default: the shipped config embedded in the binary).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// No progress bars (they are drawn only when stderr is a terminal), and
    /// logs at warn and above only; beats RUST_LOG and `logging.filter`.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More log detail: -v debug, -vv trace; beats RUST_LOG and `logging.filter`.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// The two inputs of the offline commands.
#[derive(clap::Args)]
struct TrafficFiles {
    /// Visitor events (JSON lines, `-` for stdin).
    #[arg(long)]
    events: PathBuf,
    /// Consent records (JSON lines).
    #[arg(long)]
    consent: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Generate synthetic traffic: events.jsonl and consent.jsonl.
    Generate {
        /// Number of visitors.
        #[arg(long, default_value_t = 2000)]
        visitors: usize,
        /// Random seed (same seed, same traffic).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Fraction of extra malformed event lines.
        #[arg(long, default_value_t = 0.0)]
        invalid_rate: f64,
        /// Visitor arrivals are spread over this many seconds.
        #[arg(long, default_value_t = 3600)]
        span_secs: u64,
        /// A drift scenario: visitors arriving after this fraction of the
        /// span (0 … 1) come from a paid social campaign for a sale (mostly
        /// buyers, mostly mobile) instead of the usual population.
        #[arg(long)]
        campaign_after: Option<f64>,
    },
    /// Train one model per outcome on consented events. Outcomes with fewer than
    /// `training.min_positives` positives are skipped (warning, no artifact); weak or
    /// miscalibrated holdouts and dead-lettered input give warnings on stderr.
    Train {
        #[command(flatten)]
        input: TrafficFiles,
        /// Output directory of model artifacts.
        #[arg(long)]
        out: PathBuf,
        /// Train only these outcomes (comma-separated configured names).
        #[arg(long, value_delimiter = ',', value_name = "A,B")]
        outcomes: Option<Vec<String>>,
        /// Fail (exit 1) if there is any warning — an outcome skipped for too few
        /// positives, a holdout AUC below `training.auc_floor`, a calibration error above
        /// `training.max_calibration_error`, dead-lettered input — before any artifact is
        /// written; the error lists every warning. For CI pipelines.
        #[arg(long)]
        strict: bool,
        /// Keep the vocabulary of the models in this directory instead of learning one from
        /// the input: the new models then hot-reload into an engine serving those (a
        /// running engine refuses models of another vocabulary until restarted).
        #[arg(long, value_name = "DIR")]
        vocabulary_from: Option<PathBuf>,
    },
    /// Evaluate models: AUC, log loss, Brier, calibration.
    Evaluate {
        #[command(flatten)]
        input: TrafficFiles,
        /// Models directory.
        #[arg(long)]
        models: PathBuf,
        /// Also write the report here: report.html (self-contained), roc.png,
        /// calibration.png, scores.png, gains.png and evaluation.json.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Run the engine on files (events and consent merged by time).
    Replay {
        #[command(flatten)]
        input: TrafficFiles,
        /// Models directory.
        #[arg(long)]
        models: PathBuf,
        /// Offers output (`-` for stdout).
        #[arg(long)]
        offers_out: PathBuf,
        /// Outcome scores output.
        #[arg(long)]
        scores_out: Option<PathBuf>,
        /// Decision records output: one per action map whose trigger and
        /// conditions held (offered, held_out, capped, no_purpose,
        /// lower_priority).
        #[arg(long)]
        decisions_out: Option<PathBuf>,
        /// Conversion records output: one per action map and arm a session
        /// had an offered or held_out decision in, when it then achieved
        /// the map's outcome (`report` joins them with the decisions).
        #[arg(long)]
        conversions_out: Option<PathBuf>,
        /// Offer feedback (JSON lines: offer_id, visitor_id, action_map,
        /// status, timestamp), merged with the events by time: counted per
        /// map and status, and driving the maps' contact policies.
        #[arg(long)]
        feedback: Option<PathBuf>,
        /// Dead letters output.
        #[arg(long)]
        dead_letters_out: Option<PathBuf>,
        /// Summary (counts that reconcile) as JSON.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// At the end, snapshot the adaptive models (`[adaptive]`) here: per
        /// learning outcome an artifact (the partitions' weights averaged),
        /// and every partition's learner state in `learners.json`.
        #[arg(long, value_name = "DIR")]
        adaptive_out: Option<PathBuf>,
    },
    /// Generate, train, evaluate and replay in one go (no Kafka needed).
    Demo {
        /// Output directory.
        #[arg(long, default_value = "propensity-demo")]
        out: PathBuf,
        /// Visitors in the training traffic.
        #[arg(long, default_value_t = 4000)]
        train_visitors: usize,
        /// Visitors in the evaluation traffic.
        #[arg(long, default_value_t = 2000)]
        eval_visitors: usize,
    },
    /// Engine throughput vs a parse-only baseline, and memory per visitor.
    Bench {
        /// Visitors of generated traffic.
        #[arg(long, default_value_t = 20000)]
        visitors: usize,
        /// Alternating measurement rounds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Concurrent visitors for the memory measurement (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        memory_visitors: usize,
        /// End with a JSON line of the results.
        #[arg(long)]
        json: bool,
        /// Benchmark the Kafka pipeline against a pass-through baseline
        /// and measure event-to-offer latency (needs the configured broker).
        #[arg(long)]
        kafka: bool,
        /// With --kafka: event rate of the latency run.
        #[arg(long, default_value_t = 5000.0)]
        latency_rate: f64,
        /// With --kafka: seconds of the latency run.
        #[arg(long, default_value_t = 20.0)]
        latency_secs: f64,
        /// Benchmark the restore of one partition holding
        /// --restore-visitors visitors, against plain reads of its changelog
        /// and consent topic (needs the configured broker).
        #[arg(long, conflicts_with_all = ["kafka", "training"])]
        restore: bool,
        /// With --restore: visitors held by the partition.
        #[arg(long, default_value_t = 200_000)]
        restore_visitors: usize,
        /// With --kafka: repeat the latency run while a background producer
        /// writes this many ~1 KiB records/s to a scratch topic of its own
        /// (0: as fast as it can), loading the broker and the machine.
        #[arg(long, requires = "kafka")]
        background_load: Option<f64>,
        /// Benchmark training instead: split, matrix, l2 grid and refit on
        /// generated traffic (--visitors, --rounds); see benches/README.md.
        #[arg(long, conflicts_with = "kafka")]
        training: bool,
        /// With --training: threads running fits (0: every core). Without
        /// it: engine-only scaling, one engine per partition on 1 thread vs
        /// on this many threads (0: the single-thread throughput bench).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// With --training: write the exact matrices and labels (.npy) and a
        /// manifest to this directory, for benches/training_vs_sklearn.py.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
    /// Champion and challenger models: their status side by side, or the
    /// promotion of a challenger.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Create the Kafka topics (compacted where needed), or describe them.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Produce event and consent files to their topics (murmur2 partitioner,
    /// keyed by visitor_id, in time order).
    Produce {
        #[command(flatten)]
        input: TrafficFiles,
        /// Records per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Run the pipeline on Kafka (exactly-once), until SIGTERM/SIGINT.
    Run {
        /// Stable id of this instance (transactional id and static group
        /// membership); default: $PROPENSITY_INSTANCE_ID, else the host name.
        #[arg(long)]
        instance_id: Option<String>,
        /// On exit, write the engine counters summary here.
        #[arg(long)]
        summary_json: Option<PathBuf>,
    },
    /// List every feature of the configured spec: index, name, unit,
    /// transform and meaning.
    Features {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// List the features of the models in this directory (their learned vocabulary:
        /// `browser.firefox`, `form_started.signup`, …); without it, the configured
        /// features before training, where every open-ended value is `<field>.other`.
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
    },
    /// Print records of an output topic as its consumers see them
    /// (read_committed, nothing committed): one line per record.
    Tail(tail::TailArgs),
    /// Decisions per action map and each control group's uplift, read back
    /// from decision and conversion records (files, or the topics with
    /// --from-kafka): a table, optionally JSON and an uplift chart.
    Report(decisions_report::ReportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man pages (roff): `propensity man | man -l -`.
    Man,
    /// Every configuration key with its default, environment variable and
    /// meaning (generated from the embedded configuration).
    ConfigReference {
        /// One JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration and print it (secrets masked).
    CheckConfig {
        /// The file to check (default: --config, else the embedded default).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Per outcome: the champion (`<dir>/<outcome>.json`) and the challenger
    /// (`<dir>/challengers/<outcome>.json`) side by side, with their holdout
    /// AUC from training and, with --instance, their online evaluation on a
    /// running instance.
    Status {
        /// Models directory (default: `models.dir` of the configuration).
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
        /// A running instance's HTTP address (`host:port` of `http.listen`):
        /// adds its live figures, read from the admin API with
        /// `http.admin_token`.
        #[arg(long, value_name = "HOST:PORT")]
        instance: Option<String>,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Snapshot the adaptive models (`[adaptive]`) of a running deployment:
    /// every partition's latest committed learner state is read from the
    /// changelog topic, and each learning outcome's learners are
    /// consolidated (weights averaged) into an artifact in --out, with
    /// `learners.json` beside them. Install an artifact as a champion or a
    /// challenger like any other.
    SnapshotAdaptive {
        /// Where to write the artifacts.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Models directory (default: `models.dir` of the configuration).
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
    },
    /// Make the challenger of OUTCOME its champion: the two files are
    /// exchanged atomically (the old champion becomes the challenger, so
    /// promoting again rolls back); running instances pick it up with their
    /// hot reload (`models.watch_interval_secs`, or SIGHUP).
    Promote {
        /// The outcome.
        outcome: String,
        /// Models directory (default: `models.dir` of the configuration).
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create missing topics; existing ones are left as they are.
    Create,
    /// Per topic: partitions, compaction and other configs, offsets, and
    /// the group's committed offsets and lag on the events topic.
    Describe {
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        // The reader of stdout went away (`| head -1`): its choice, not a
        // failure of ours (see shell_integration).
        if shell_integration::is_broken_pipe(&err) {
            std::process::exit(0);
        }
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    Config::load(path)
}

/// Commands that read no configuration refuse `--config` rather than
/// ignore it, so a user never believes a file took effect when it did not.
fn refuse_config(config: Option<&Path>, command: &str) -> Result<()> {
    match config {
        Some(path) => anyhow::bail!(
            "`propensity {command}` reads no configuration, so --config {} would have no effect; leave it out",
            path.display()
        ),
        None => Ok(()),
    }
}

fn run(cli: Cli) -> Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let progress = Progress::for_stderr(cli.quiet);
    let verbosity = logging::Verbosity::from_flags(cli.quiet, cli.verbose);
    match cli.command {
        Command::Completions { shell } => {
            refuse_config(cli.config.as_deref(), "completions")?;
            shell_integration::completions::<Cli>(shell, &mut out)?;
        }
        Command::Man => {
            refuse_config(cli.config.as_deref(), "man")?;
            shell_integration::man_page::<Cli>(&mut out)?;
        }
        Command::Report(args) => {
            let config = load_config(cli.config.as_deref())?;
            logging::init(&config, verbosity)?;
            decisions_report::run(&config, &args, &mut out)?;
        }
        Command::Tail(args) => {
            let config = load_config(cli.config.as_deref())?;
            logging::init(&config, verbosity)?;
            tail::run(&config, &args, &mut out)?;
        }
        Command::Models {
            action:
                ModelsAction::Status {
                    models,
                    instance,
                    json,
                },
        } => {
            let config = load_config(cli.config.as_deref())?;
            let dir = models.unwrap_or_else(|| config.file.models.dir.clone());
            let live = match &instance {
                Some(addr) => Some(model_roles::fetch_live(
                    addr,
                    &config.file.http.admin_token,
                )?),
                None => None,
            };
            let status = model_roles::status(&config, &dir, live.as_ref())?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
            } else {
                model_roles::print_status(&status, &mut out)?;
            }
        }
        Command::Models {
            action: ModelsAction::SnapshotAdaptive { out: dir, models },
        } => {
            let config = load_config(cli.config.as_deref())?;
            logging::init(&config, verbosity)?;
            let models = models.unwrap_or_else(|| config.file.models.dir.clone());
            for o in adaptive_snapshot::snapshot_from_kafka(&config, &models, &dir)? {
                match &o.model_version {
                    Some(v) => writeln!(
                        out,
                        "{}: {} ({} partitions, {} updates{}) -> {}",
                        o.outcome,
                        v,
                        o.partitions,
                        o.updates,
                        if o.skipped_other_base > 0 {
                            format!(
                                "; {} partitions learnt from an older champion, skipped",
                                o.skipped_other_base
                            )
                        } else {
                            String::new()
                        },
                        dir.join(format!("{}.json", o.outcome)).display()
                    )?,
                    None => writeln!(
                        out,
                        "{}: no learner of the current champion in the changelog yet",
                        o.outcome
                    )?,
                }
            }
        }
        Command::Models {
            action: ModelsAction::Promote { outcome, models },
        } => {
            let config = load_config(cli.config.as_deref())?;
            logging::init(&config, verbosity)?;
            if config.engine.outcome_index(&outcome).is_none() {
                anyhow::bail!(
                    "outcome `{outcome}` is not declared in the configuration ([[outcomes]])"
                );
            }
            let dir = models.unwrap_or_else(|| config.file.models.dir.clone());
            let (champion, challenger) = model_files::promote(&dir, &outcome)?;
            tracing::info!(%outcome, %champion, %challenger, "challenger promoted");
            writeln!(
                out,
                "{outcome}: {champion} is now the champion, {challenger} the challenger (running instances switch at their next model reload)"
            )?;
        }
        Command::Topics {
            action: TopicsAction::Describe { json },
        } => {
            let config = load_config(cli.config.as_deref())?;
            logging::init(&config, verbosity)?;
            topics_describe::run(&config, json, &mut out)?;
        }
        Command::Generate {
            visitors,
            seed,
            out: dir,
            invalid_rate,
            span_secs,
            campaign_after,
        } => {
            refuse_config(cli.config.as_deref(), "generate")?;
            let params = SimulationParams {
                visitors,
                seed,
                invalid_rate,
                span_secs,
                campaign_after,
                ..SimulationParams::default()
            };
            let s = offline::generate_files(&params, &dir, &progress)?;
            writeln!(
                out,
                "generated {} visitors, {} sessions, {} events (+{} malformed), {} consent records into {}",
                s.visitors,
                s.sessions,
                s.events,
                s.invalid_lines,
                s.consent_records,
                dir.display()
            )?;
            writeln!(out, "outcomes reached: {:?}", s.outcomes_reached)?;
            writeln!(
                out,
                "consent scenarios: {:?}",
                s.visitors_by_consent_scenario
            )?;
        }
        Command::Train {
            input: TrafficFiles { events, consent },
            out: dir,
            outcomes,
            strict,
            vocabulary_from,
        } => {
            let config = load_config(cli.config.as_deref())?;
            let options = offline::TrainOptions {
                outcomes,
                strict,
                vocabulary_from,
            };
            let report = offline::train(&config, &events, &consent, &dir, &options, &progress)?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            offline::print_train_report(&report, &mut out)?;
        }
        Command::Evaluate {
            input: TrafficFiles { events, consent },
            models,
            report,
        } => {
            let config = load_config(cli.config.as_deref())?;
            let e = offline::evaluate(
                &config,
                &events,
                &consent,
                &models,
                report.as_deref(),
                &progress,
            )?;
            offline::print_evaluation(&e, &mut out)?;
        }
        Command::Replay {
            input: TrafficFiles { events, consent },
            models,
            offers_out,
            scores_out,
            decisions_out,
            conversions_out,
            feedback,
            dead_letters_out,
            summary_json,
            adaptive_out,
        } => {
            let config = load_config(cli.config.as_deref())?;
            let to_stdout = [
                Some(&offers_out),
                scores_out.as_ref(),
                decisions_out.as_ref(),
                conversions_out.as_ref(),
                dead_letters_out.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|p| p == Path::new("-"));
            let summary = offline::replay_files(
                &config,
                &offline::ReplayArgs {
                    events: &events,
                    consent: &consent,
                    models: &models,
                    offers_out: &offers_out,
                    scores_out: scores_out.as_deref(),
                    decisions_out: decisions_out.as_deref(),
                    conversions_out: conversions_out.as_deref(),
                    feedback: feedback.as_deref(),
                    dead_letters_out: dead_letters_out.as_deref(),
                    summary_json: summary_json.as_deref(),
                    adaptive_out: adaptive_out.as_deref(),
                },
                None,
                &progress.beside_stdout(to_stdout),
            )?;
            // With offers on stdout, the summary goes to stderr.
            if offers_out == Path::new("-") {
                offline::print_replay_summary(&summary, &mut io::stderr())?;
            } else {
                offline::print_replay_summary(&summary, &mut out)?;
            }
        }
        Command::Demo {
            out: dir,
            train_visitors,
            eval_visitors,
        } => {
            let config = load_config(cli.config.as_deref())?;
            demo::run_demo(
                &config,
                &dir,
                &demo::DemoSize {
                    train_visitors,
                    eval_visitors,
                },
                &mut out,
                &progress,
            )?;
        }
        Command::Bench {
            visitors,
            rounds,
            json,
            training: true,
            threads,
            export,
            ..
        } => {
            let config = load_config(cli.config.as_deref())?;
            let r = bench::run_training_bench(
                &config,
                &bench::TrainingBenchOptions {
                    visitors,
                    rounds,
                    threads,
                    export,
                },
                &mut out,
            )?;
            bench::print_training_bench(&r, &mut out)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&r)?)?;
            }
        }
        Command::Bench {
            visitors,
            rounds,
            memory_visitors,
            json,
            kafka: true,
            latency_rate,
            latency_secs,
            background_load,
            ..
        } => {
            let config = load_config(cli.config.as_deref())?;
            if std::env::var_os("RUST_LOG").is_some() || verbosity != logging::Verbosity::Configured
            {
                logging::init(&config, verbosity)?;
            }
            let r = kafka_bench::run_kafka_bench(
                &config,
                &kafka_bench::KafkaBenchOptions {
                    visitors,
                    rounds: rounds.min(3),
                    latency_rate,
                    latency_secs,
                    background_load,
                },
                &mut out,
            )?;
            let _ = memory_visitors;
            writeln!(
                out,
                "pipeline (exactly-once, {} workers): {:.0} events/s, pass-through: {:.0} events/s, ratio {:.3} (medians of {} rounds, {} partitions)",
                r.workers, r.pipeline_events_per_sec, r.passthrough_events_per_sec, r.ratio, r.pipeline_rounds.len(), r.partitions
            )?;
            writeln!(
                out,
                "pipeline with 1 worker: {:.0} events/s, ratio to pass-through {:.3}; {} workers / 1 worker {:.3}",
                r.one_worker_events_per_sec,
                r.one_worker_ratio,
                r.workers,
                r.pipeline_events_per_sec / r.one_worker_events_per_sec
            )?;
            writeln!(
                out,
                "event-to-offer latency at {:.0} events/s: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} offers, commit interval {} ms)",
                r.latency_rate, r.latency_p50_ms, r.latency_p90_ms, r.latency_p99_ms, r.latency_max_ms, r.latency_samples, r.commit_interval_ms
            )?;
            if let Some(loaded) = &r.loaded {
                let l = &loaded.latency;
                writeln!(
                    out,
                    "event-to-offer latency at {:.0} events/s under background load ({:.0} records/s of {} bytes acknowledged): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} offers)",
                    r.latency_rate, loaded.load_acked_per_sec, loaded.load_record_bytes, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.samples
                )?;
            }
            if json {
                writeln!(out, "{}", serde_json::to_string(&r)?)?;
            }
        }
        Command::Bench {
            rounds,
            json,
            restore: true,
            restore_visitors,
            ..
        } => {
            let config = load_config(cli.config.as_deref())?;
            if std::env::var_os("RUST_LOG").is_some() || verbosity != logging::Verbosity::Configured
            {
                logging::init(&config, verbosity)?;
            }
            let r = restore_bench::run_restore_bench(
                &config,
                &restore_bench::RestoreBenchOptions {
                    visitors: restore_visitors,
                    rounds,
                },
                &mut out,
            )?;
            writeln!(
                out,
                "restore of one partition holding {} visitors: {:.3} s (median of {}; {} changelog records, {} consent records of the {} in the topic); plain read of the changelog {:.3} s, ratio {:.2}; plain read of the whole consent topic {:.3} s",
                r.visitors,
                r.restore_seconds,
                r.restore_rounds.len(),
                r.changelog_records,
                r.consent_records,
                r.consent_topic_records,
                r.changelog_read_seconds,
                r.ratio_to_changelog_read,
                r.consent_topic_read_seconds
            )?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&r)?)?;
            }
        }
        Command::Bench {
            visitors,
            rounds,
            threads,
            json,
            ..
        } if threads > 0 => {
            let config = load_config(cli.config.as_deref())?;
            let r = bench::run_scaling_bench(
                &config,
                &bench::ScalingOptions {
                    visitors,
                    rounds,
                    threads,
                },
                &mut out,
            )?;
            writeln!(
                out,
                "engine, {} partitions: 1 thread {:.0} events/s, {} threads {:.0} events/s (medians of {}), speed-up {:.3}",
                r.partitions,
                r.one_thread_events_per_sec,
                r.threads,
                r.threads_events_per_sec,
                r.speedup_rounds.len(),
                r.speedup
            )?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&r)?)?;
            }
        }
        Command::Bench {
            visitors,
            rounds,
            memory_visitors,
            json,
            ..
        } => {
            let config = load_config(cli.config.as_deref())?;
            let r = bench::run_bench(
                &config,
                &bench::BenchOptions {
                    visitors,
                    rounds,
                    memory_visitors,
                },
                &mut out,
            )?;
            writeln!(
                out,
                "engine: {:.0} events/s (median of {}), parse-only: {:.0} events/s, ratio {:.3}",
                r.engine_events_per_sec, r.rounds, r.parse_only_events_per_sec, r.ratio
            )?;
            for s in &r.stages {
                writeln!(
                    out,
                    "  stage {:<22} {:>8.1} ns/event {:>6.1}% of the engine",
                    s.stage,
                    s.ns_per_event,
                    s.share * 100.0
                )?;
            }
            let c = &r.challengers;
            writeln!(
                out,
                "one challenger per outcome: {:.0} vs {:.0} events/s single-model, ratio {:.3}; with scores published: {:.0} vs {:.0}, ratio {:.3}",
                c.with_challengers_events_per_sec,
                c.single_events_per_sec,
                c.ratio,
                c.with_challengers_scores_published_events_per_sec,
                c.single_scores_published_events_per_sec,
                c.ratio_scores_published
            )?;
            if r.memory_visitors > 0 {
                writeln!(
                    out,
                    "memory: {} concurrent visitors in {:.1} MiB resident ({:.0} bytes/visitor)",
                    r.memory_visitors, r.memory_rss_mib, r.memory_bytes_per_visitor
                )?;
            }
            if json {
                writeln!(out, "{}", serde_json::to_string(&r)?)?;
            }
        }
        Command::Topics {
            action: TopicsAction::Create,
        } => {
            let config = load_config(cli.config.as_deref())?;
            for (topic, created) in kafka_commands::topics_create(&config)? {
                writeln!(
                    out,
                    "{topic}: {}",
                    if created { "created" } else { "exists" }
                )?;
            }
        }
        Command::Produce {
            input: TrafficFiles { events, consent },
            rate,
        } => {
            let config = load_config(cli.config.as_deref())?;
            let (e, c) =
                kafka_commands::produce_files(&config, &events, &consent, rate, &progress)?;
            writeln!(out, "produced {e} events and {c} consent records")?;
        }
        Command::Run {
            instance_id,
            summary_json,
        } => {
            let config = load_config(cli.config.as_deref())?;
            logging::init(&config, verbosity)?;
            let instance_id = instance_id
                .or_else(|| std::env::var("PROPENSITY_INSTANCE_ID").ok())
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "0".to_owned());
            let result = kafka_commands::run(
                &config,
                kafka_commands::RunOptions {
                    instance_id,
                    summary_json,
                },
            );
            logging::log_stopped(&result);
            result?;
        }
        Command::Features { json, models } => {
            let config = load_config(cli.config.as_deref())?;
            let config = match models {
                Some(dir) => model_files::load_models(&dir, &config)?.config,
                None => config,
            };
            feature_list::print(&config.engine.features, json, &mut out)?;
        }
        Command::ConfigReference { json } => {
            config_reference::print(&config_reference::reference()?, json, &mut out)?;
        }
        Command::CheckConfig { file } => {
            let path = file.or(cli.config);
            let config = load_config(path.as_deref())
                .with_context(|| "configuration is invalid".to_string())?;
            writeln!(out, "# {} is valid", config.origin)?;
            writeln!(
                out,
                "# feature fingerprint without a learned vocabulary: {}",
                config.engine.features.fingerprint()
            )?;
            // Models carry the vocabulary their features were built on, so
            // the fingerprint they must match is the one with it.
            let dir = &config.file.models.dir;
            match model_files::load_models(dir, &config) {
                Ok(served) => writeln!(
                    out,
                    "# models in {} load; their feature fingerprint: {}",
                    dir.display(),
                    served.config.engine.features.fingerprint()
                )?,
                Err(e) => writeln!(out, "# models in {} do not load: {e:#}", dir.display())?,
            }
            write!(out, "{}", config.to_masked_toml()?)?;
        }
    }
    out.flush()?;
    Ok(())
}
