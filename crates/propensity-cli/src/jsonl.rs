//! JSON-lines files: reading an input (a path or `-` for stdin) whole and
//! splitting it into records, and the output sinks of file replay.
//!
//! Blank lines are not records and are skipped (a trailing newline is not an
//! empty record); every other line is one record, dead-lettered if bad.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use propensity_engine::wire::{Conversion, Decision};
use propensity_engine::{DeadLetter, EngineSink, Offer, OutcomeScore};

use crate::progress::{Progress, Unit};

/// Bytes read per call, so the progress bar moves while a large file loads.
const READ_CHUNK: u64 = 1 << 20;

/// An input file held in memory.
pub struct InputFile {
    /// Display name (path or `<stdin>`).
    pub name: String,
    data: Vec<u8>,
}

impl InputFile {
    /// Reads `path` (`-`: stdin), counting the bytes on `bar`.
    pub fn read(path: &Path, bar: &ProgressBar) -> Result<Self> {
        if path == Path::new("-") {
            let data =
                read_counted(io::stdin().lock(), 0, bar).context("cannot read standard input")?;
            return Ok(Self {
                name: "<stdin>".into(),
                data,
            });
        }
        let data = File::open(path)
            .and_then(|f| {
                let size = f.metadata().map_or(0, |m| m.len());
                read_counted(f, size, bar)
            })
            .with_context(|| format!("cannot read input file {}", path.display()))?;
        Ok(Self {
            name: path.display().to_string(),
            data,
        })
    }

    /// Non-blank lines, without their line terminators.
    pub fn lines(&self) -> Vec<&[u8]> {
        self.data
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect()
    }
}

/// Reads the events and consent inputs under one bar of bytes (a spinner
/// when either is stdin, whose size is unknown).
pub fn read_inputs(
    events: &Path,
    consent: &Path,
    progress: &Progress,
) -> Result<(InputFile, InputFile)> {
    let size = |p: &Path| {
        (p != Path::new("-"))
            .then(|| std::fs::metadata(p).ok().map(|m| m.len()))
            .flatten()
    };
    let total = size(events).zip(size(consent)).map(|(e, c)| e + c);
    let bar = progress.bar("reading input", Unit::Bytes, total);
    let inputs = (
        InputFile::read(events, &bar)?,
        InputFile::read(consent, &bar)?,
    );
    bar.finish_and_clear();
    Ok(inputs)
}

/// `read_to_end` would fill a file's exact-size buffer in one call and the
/// bar would jump from nothing to done; chunks keep it moving.
fn read_counted(source: impl Read, size: u64, bar: &ProgressBar) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut reader = bar.wrap_read(source);
    while (&mut reader).take(READ_CHUNK).read_to_end(&mut data)? > 0 {}
    Ok(data)
}

/// Opens an output (`-`: stdout), creating parent directories.
pub fn create_output(path: &Path) -> Result<Box<dyn Write>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufWriter::new(io::stdout())));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    let f = File::create(path)
        .with_context(|| format!("cannot create output file {}", path.display()))?;
    Ok(Box::new(BufWriter::with_capacity(1 << 16, f)))
}

/// Where file replay writes: offers always; scores and dead letters when
/// asked. Write errors are kept and reported at the end rather than
/// aborting mid-run (the engine sink interface is infallible).
pub struct FileSink {
    offers: Box<dyn Write>,
    scores: Option<Box<dyn Write>>,
    decisions: Option<Box<dyn Write>>,
    conversions: Option<Box<dyn Write>>,
    dead_letters: Option<Box<dyn Write>>,
    /// Offers written.
    pub offers_written: u64,
    /// Dead letters written (or counted, without a file).
    pub dead_letters_seen: u64,
    error: Option<io::Error>,
    paths: Vec<PathBuf>,
}

impl FileSink {
    /// Opens the outputs.
    pub fn create(
        offers: &Path,
        scores: Option<&Path>,
        dead_letters: Option<&Path>,
    ) -> Result<Self> {
        Ok(Self {
            offers: create_output(offers)?,
            scores: scores.map(create_output).transpose()?,
            decisions: None,
            conversions: None,
            dead_letters: dead_letters.map(create_output).transpose()?,
            offers_written: 0,
            dead_letters_seen: 0,
            error: None,
            paths: [Some(offers), scores, dead_letters]
                .into_iter()
                .flatten()
                .map(Path::to_path_buf)
                .collect(),
        })
    }

    /// Also writes decision records to `decisions` and conversion records
    /// to `conversions`, when given.
    pub fn with_decisions(
        mut self,
        decisions: Option<&Path>,
        conversions: Option<&Path>,
    ) -> Result<Self> {
        for (path, out) in [
            (decisions, &mut self.decisions),
            (conversions, &mut self.conversions),
        ] {
            if let Some(path) = path {
                *out = Some(create_output(path)?);
                self.paths.push(path.to_path_buf());
            }
        }
        Ok(self)
    }

    /// Writes `value` as one JSON line to `out`, when that output is open.
    fn write_json(
        out: Option<&mut (dyn Write + 'static)>,
        value: &impl serde::Serialize,
        error: &mut Option<io::Error>,
    ) {
        let Some(out) = out else { return };
        match serde_json::to_vec(value) {
            Ok(line) => Self::write_line(out, &line, error),
            Err(e) => *error = Some(io::Error::other(e)),
        }
    }

    fn write_line(out: &mut dyn Write, line: &[u8], error: &mut Option<io::Error>) {
        if error.is_some() {
            return;
        }
        if let Err(e) = out.write_all(line).and_then(|()| out.write_all(b"\n")) {
            *error = Some(e);
        }
    }

    /// Flushes everything and reports the first write error.
    pub fn finish(mut self) -> Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e).context(format!("writing outputs {:?}", self.paths));
        }
        self.offers.flush()?;
        if let Some(s) = &mut self.scores {
            s.flush()?;
        }
        for out in [&mut self.decisions, &mut self.conversions]
            .into_iter()
            .flatten()
        {
            out.flush()?;
        }
        if let Some(d) = &mut self.dead_letters {
            d.flush()?;
        }
        Ok(())
    }
}

impl EngineSink for FileSink {
    fn offer(&mut self, offer: Offer) {
        self.offers_written += 1;
        match serde_json::to_vec(&offer) {
            Ok(line) => Self::write_line(&mut *self.offers, &line, &mut self.error),
            Err(e) => self.error = Some(io::Error::other(e)),
        }
    }

    fn dead_letter(&mut self, dead_letter: DeadLetter<'_>) {
        self.dead_letters_seen += 1;
        if let Some(out) = &mut self.dead_letters {
            Self::write_line(
                &mut **out,
                dead_letter.to_json_line().as_bytes(),
                &mut self.error,
            );
        }
    }

    fn wants_scores(&self) -> bool {
        self.scores.is_some()
    }

    fn score(&mut self, score: &OutcomeScore<'_>) {
        Self::write_json(self.scores.as_deref_mut(), score, &mut self.error);
    }

    fn wants_decisions(&self) -> bool {
        self.decisions.is_some()
    }

    fn decision(&mut self, decision: &Decision<'_>) {
        Self::write_json(self.decisions.as_deref_mut(), decision, &mut self.error);
    }

    fn wants_conversions(&self) -> bool {
        self.conversions.is_some()
    }

    fn conversion(&mut self, conversion: &Conversion<'_>) {
        Self::write_json(self.conversions.as_deref_mut(), conversion, &mut self.error);
    }
}
