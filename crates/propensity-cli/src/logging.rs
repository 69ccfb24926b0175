//! Log output of the commands that log (`run`, `tail`, `topics describe`,
//! and `bench --kafka` when asked): where it goes (stderr), its format
//! (`logging.format`), which filter applies, whether it has colour, and
//! the closing line of `run`.
//!
//! The filter comes from the first of: `-q`/`-v` on the command line, the
//! `RUST_LOG` variable, `logging.filter` in the config. Flags beat the
//! environment and the environment beats the file, as for the config's own
//! `PROPENSITY__…` overrides: the most specific, shortest-lived setting
//! wins, so `-v` works on a deployment whose environment sets `RUST_LOG`.
//!
//! Colour follows the rule of the progress bars ([`crate::progress::decide`]):
//! only when stderr is a terminal and `NO_COLOR` is unset or empty, so a log
//! redirected to a file or collected by a platform has no escape codes.

use std::io::{self, IsTerminal};

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

use crate::config_file::Config;

/// How chatty the command line asked the logs to be (`-q`, `-v`, `-vv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: warnings and errors only (and no progress bars).
    Quiet,
    /// Neither flag: `RUST_LOG`, else `logging.filter`.
    Configured,
    /// `-v`: debug; `-vv` and more: trace.
    Verbose(u8),
}

impl Verbosity {
    /// From the two global flags (clap makes them exclusive).
    pub fn from_flags(quiet: bool, verbose: u8) -> Self {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Configured,
            (false, n) => Verbosity::Verbose(n),
        }
    }
}

/// Where a filter came from, to name it when it does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterSource {
    /// `-q` / `-v`.
    Flags,
    /// The `RUST_LOG` variable.
    Environment,
    /// `logging.filter`.
    Config,
}

/// The filter directives that apply, and where they came from (see the
/// module doc for the order).
pub fn choose_filter(
    verbosity: Verbosity,
    rust_log: Option<&str>,
    config_filter: &str,
) -> (String, FilterSource) {
    match (verbosity, rust_log.filter(|s| !s.trim().is_empty())) {
        (Verbosity::Quiet, _) => ("warn".to_owned(), FilterSource::Flags),
        (Verbosity::Verbose(1), _) => ("debug".to_owned(), FilterSource::Flags),
        (Verbosity::Verbose(_), _) => ("trace".to_owned(), FilterSource::Flags),
        (Verbosity::Configured, Some(env)) => (env.to_owned(), FilterSource::Environment),
        (Verbosity::Configured, None) => (config_filter.to_owned(), FilterSource::Config),
    }
}

/// Whether log lines may carry colour: the progress bars' rule with
/// `--quiet` left out (quiet logs are still logs).
pub fn colour_allowed(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    crate::progress::decide(stderr_is_terminal, false, no_color).colour
}

/// Installs the subscriber: stderr, text or JSON per `logging.format`.
pub fn init(config: &Config, verbosity: Verbosity) -> Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (directives, source) =
        choose_filter(verbosity, rust_log.as_deref(), &config.file.logging.filter);
    let filter = EnvFilter::try_new(&directives).with_context(|| match source {
        FilterSource::Flags => "the log level of -q/-v is not a valid filter".to_owned(),
        FilterSource::Environment => format!("RUST_LOG=`{directives}` is not a valid filter"),
        FilterSource::Config => format!(
            "config key `logging.filter` in {}: `{directives}` is not a valid filter",
            config.origin
        ),
    })?;
    let colour = colour_allowed(
        io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(io::stderr);
    let result = if config.file.logging.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

/// The last line `run` logs, whatever ended it: an operator reading a log
/// (or a platform collecting it) sees that the process stopped on purpose
/// and why, rather than a log that just ends. On failure only the
/// outermost message is logged; the full cause chain follows once on
/// stderr as the command's error.
pub fn log_stopped(result: &Result<()>) {
    match result {
        Ok(()) => tracing::info!(
            exit_code = 0,
            reason = "stop requested (SIGTERM/SIGINT); the open transaction was committed",
            "stopped"
        ),
        Err(e) => tracing::error!(exit_code = 1, reason = %e, "stopped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_rust_log_which_beats_the_config() {
        let env = Some("info,librdkafka=warn");
        assert_eq!(
            choose_filter(Verbosity::Configured, env, "warn"),
            ("info,librdkafka=warn".to_owned(), FilterSource::Environment)
        );
        assert_eq!(
            choose_filter(Verbosity::Configured, None, "warn"),
            ("warn".to_owned(), FilterSource::Config)
        );
        // An empty RUST_LOG is as good as unset.
        assert_eq!(
            choose_filter(Verbosity::Configured, Some(" "), "warn").1,
            FilterSource::Config
        );
        assert_eq!(
            choose_filter(Verbosity::Quiet, env, "info").0,
            "warn".to_owned()
        );
        assert_eq!(choose_filter(Verbosity::Verbose(1), env, "info").0, "debug");
        assert_eq!(choose_filter(Verbosity::Verbose(3), env, "info").0, "trace");
    }

    #[test]
    fn verbosity_from_flags() {
        assert_eq!(Verbosity::from_flags(false, 0), Verbosity::Configured);
        assert_eq!(Verbosity::from_flags(true, 0), Verbosity::Quiet);
        assert_eq!(Verbosity::from_flags(false, 2), Verbosity::Verbose(2));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some(OsStr::new(""))));
        assert!(!colour_allowed(true, Some(OsStr::new("1"))));
        assert!(!colour_allowed(false, None));
    }
}
