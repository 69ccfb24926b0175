//! `/metrics` scrapes: [`Metrics`] parses the exposition text, and
//! [`Reconciliation`] checks that every record read is accounted for.

use std::collections::BTreeMap;

/// A scrape of `/metrics`: `(name, labels, value)` per series.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Every series.
    pub series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// Parses the Prometheus text format.
    pub fn parse(text: &str) -> Self {
        let mut series = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (head, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.trim_end_matches('}');
                    let labels = body
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                        .collect();
                    (n.to_owned(), labels)
                }
                None => (head.to_owned(), BTreeMap::new()),
            };
            series.push((name, labels, value));
        }
        Self { series }
    }

    /// Sum of every series of `name` whose labels include `labels`.
    pub fn sum_where(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Sum of every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.sum_where(name, &[])
    }

    /// Values of `name` by one label.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, l, v) in &self.series {
            if n == name {
                *out.entry(l.get(label).cloned().unwrap_or_default())
                    .or_insert(0.0) += v;
            }
        }
        out
    }

    /// Whether a series of `name` with exactly these label values exists.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.series.iter().any(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The event accounting of this scrape.
    pub fn reconciliation(&self) -> Reconciliation {
        let u = |x: f64| x.max(0.0).round() as u64;
        Reconciliation {
            consumed: u(self.sum("propensity_events_consumed_total")),
            processed: u(self.sum("propensity_events_processed_total")),
            dropped: u(self.sum("propensity_events_dropped_total")),
            dead_lettered: u(
                self.sum_where("propensity_dead_letters_total", &[("source", "events")])
            ),
            buffered: u(self.sum("propensity_buffered_events")),
        }
    }
}

/// `consumed = processed + dropped + dead-lettered + buffered`, from
/// `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Events consumed (every type, and invalid records).
    pub consumed: u64,
    /// Processed.
    pub processed: u64,
    /// Dropped, all reasons.
    pub dropped: u64,
    /// Dead-lettered events.
    pub dead_lettered: u64,
    /// Waiting for a first consent record.
    pub buffered: u64,
}

impl Reconciliation {
    /// Whether the books balance.
    pub fn balanced(&self) -> bool {
        self.consumed == self.processed + self.dropped + self.dead_lettered + self.buffered
    }

    /// Adds another instance's figures.
    pub fn add(&mut self, o: &Reconciliation) {
        self.consumed += o.consumed;
        self.processed += o.processed;
        self.dropped += o.dropped;
        self.dead_lettered += o.dead_lettered;
        self.buffered += o.buffered;
    }
}

impl std::fmt::Display for Reconciliation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "consumed {} vs processed {} + dropped {} + dead-lettered {} + buffered {} = {}",
            self.consumed,
            self.processed,
            self.dropped,
            self.dead_lettered,
            self.buffered,
            self.processed + self.dropped + self.dead_lettered + self.buffered
        )
    }
}
