//! Progress display on stderr for the long-running commands (`generate`,
//! `train`, `evaluate`, `replay`, `produce`, `demo`): owns the decision
//! whether to draw at all and whether in colour, and hands out bars and
//! spinners that follow it.
//!
//! Bars are drawn only when stderr is a terminal and `--quiet` is not given,
//! so redirected output, CI logs and scripts see nothing of them. Colour
//! additionally needs `NO_COLOR` unset or empty (<https://no-color.org>).
//! Without colour the templates carry no style at all, so no colour escape
//! reaches the terminal whatever `console` concludes from `CLICOLOR_FORCE`.
//!
//! Every bar clears itself when finished or dropped: the commands' results
//! go to stdout afterwards, and on an error the message should not follow a
//! half-drawn bar. The commands that draw bars install no tracing
//! subscriber (only `run`, `tail`, `topics describe` and `bench --kafka`
//! log), so no log line can land in the middle of a bar.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// What the progress display may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Display {
    /// Draw bars at all.
    pub draw: bool,
    /// Use colour in them.
    pub colour: bool,
}

/// The decision, from its inputs only (so it can be tested without a
/// terminal): draw when stderr is a terminal and not `--quiet`; colour when
/// drawing and `NO_COLOR` is unset or empty.
pub fn decide(stderr_is_terminal: bool, quiet: bool, no_color: Option<&OsStr>) -> Display {
    let draw = stderr_is_terminal && !quiet;
    Display {
        draw,
        colour: draw && no_color.is_none_or(OsStr::is_empty),
    }
}

/// What a bar counts, which decides how its numbers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes of input (`12.5 MiB/40.0 MiB`).
    Bytes,
    /// Records or visitors (`120,000/400,000`).
    Records,
}

/// Hands out bars that follow one [`Display`] decision.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    display: Display,
}

/// How often spinners redraw on their own (the work behind them reports
/// nothing while it runs, e.g. a linfa fit).
const SPINNER_TICK: Duration = Duration::from_millis(120);

impl Progress {
    /// The decision for this process: `--quiet`, whether stderr is a
    /// terminal, and `NO_COLOR`.
    pub fn for_stderr(quiet: bool) -> Self {
        Self {
            display: decide(
                std::io::stderr().is_terminal(),
                quiet,
                std::env::var_os("NO_COLOR").as_deref(),
            ),
        }
    }

    /// Never draws (tests, and callers whose caller owns the terminal).
    pub fn hidden() -> Self {
        Self {
            display: Display {
                draw: false,
                colour: false,
            },
        }
    }

    /// For a command that may write its records to stdout as it goes
    /// (`replay --offers-out -`): when stdout is the same terminal, those
    /// lines would tear the bar apart, so nothing is drawn.
    pub fn beside_stdout(self, writes_stdout: bool) -> Self {
        if writes_stdout && std::io::stdout().is_terminal() {
            Self {
                display: Display {
                    draw: false,
                    colour: false,
                },
            }
        } else {
            self
        }
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.display.draw {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    /// A bar with rate and ETA when `total` is known, else a spinner that
    /// counts.
    pub fn bar(&self, message: &'static str, unit: Unit, total: Option<u64>) -> ProgressBar {
        let template = match total {
            Some(_) => bar_template(unit, self.display.colour),
            None => counter_template(unit, self.display.colour),
        };
        let bar = ProgressBar::with_draw_target(total, self.target())
            .with_style(style(&template))
            .with_message(message)
            .with_finish(ProgressFinish::AndClear);
        if total.is_none() {
            self.tick(&bar);
        }
        bar
    }

    /// A spinner with a message and the elapsed time, for work that reports
    /// no amounts.
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, self.target())
            .with_style(style(&spinner_template(self.display.colour)))
            .with_message(message.into())
            .with_finish(ProgressFinish::AndClear);
        self.tick(&bar);
        bar
    }

    fn tick(&self, bar: &ProgressBar) {
        // A hidden bar needs no ticker thread.
        if self.display.draw {
            bar.enable_steady_tick(SPINNER_TICK);
        }
    }
}

/// Falls back to indicatif's default look rather than failing a command
/// over a template (the tests parse every template).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn amounts(unit: Unit) -> &'static str {
    match unit {
        Unit::Bytes => "{binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
        Unit::Records => "{human_pos}/{human_len} {per_sec:0}",
    }
}

fn bar_template(unit: Unit, colour: bool) -> String {
    // A wide bar takes what the numbers leave, so the line never wraps.
    let bar = if colour {
        "{wide_bar:.cyan/blue}"
    } else {
        "{wide_bar}"
    };
    format!("{{msg:<20}} {bar} {} eta {{eta}}", amounts(unit))
}

fn counter_template(unit: Unit, colour: bool) -> String {
    let count = match unit {
        Unit::Bytes => "{binary_bytes} {binary_bytes_per_sec}",
        Unit::Records => "{human_pos} {per_sec:0}",
    };
    format!("{} {{msg}} {count}", spinner_part(colour))
}

fn spinner_template(colour: bool) -> String {
    format!("{} {{msg}} {{elapsed}}", spinner_part(colour))
}

fn spinner_part(colour: bool) -> &'static str {
    if colour {
        "{spinner:.cyan}"
    } else {
        "{spinner}"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(colour: bool) -> Vec<String> {
        let mut all = vec![spinner_template(colour)];
        for unit in [Unit::Bytes, Unit::Records] {
            all.push(bar_template(unit, colour));
            all.push(counter_template(unit, colour));
        }
        all
    }

    #[test]
    fn bars_are_drawn_only_on_a_terminal_without_quiet() {
        let unset = None;
        assert!(decide(true, false, unset).draw);
        assert!(!decide(false, false, unset).draw, "redirected stderr");
        assert!(!decide(true, true, unset).draw, "--quiet");
        assert!(!decide(false, true, unset).draw);
    }

    #[test]
    fn colour_needs_a_drawn_bar_and_no_color_unset_or_empty() {
        let set = Some(OsStr::new("1"));
        assert!(decide(true, false, None).colour);
        // no-color.org: only a non-empty value disables colour.
        assert!(decide(true, false, Some(OsStr::new(""))).colour);
        assert!(!decide(true, false, set).colour);
        assert!(!decide(true, false, Some(OsStr::new("0"))).colour);
        assert!(!decide(false, false, None).colour, "stderr not a terminal");
        assert!(!decide(true, true, None).colour, "--quiet");
    }

    #[test]
    fn every_template_parses() {
        for t in templates(true).into_iter().chain(templates(false)) {
            assert!(ProgressStyle::with_template(&t).is_ok(), "{t}");
        }
    }

    /// A style spec is `{key:….colour}`: without colour no key may carry
    /// one; with colour the bar and spinner do.
    #[test]
    fn only_coloured_templates_carry_styles() {
        let styled = |t: &str| {
            t.split('{')
                .skip(1)
                .filter_map(|k| k.split('}').next())
                .any(|k| {
                    k.split_once(':')
                        .is_some_and(|(_, spec)| spec.contains('.'))
                })
        };
        for t in templates(false) {
            assert!(!styled(&t), "colourless template has a style: {t}");
        }
        for t in templates(true) {
            assert!(styled(&t), "coloured template has no style: {t}");
        }
    }
}
