//! What the pipeline tells the outside world between batches: consumer lag
//! and stalled partitions (metrics and `/readyz`), the engine counters as of
//! the last commit, the drift of committed work against the models'
//! training populations, and answers to the HTTP access requests. Nothing
//! here changes what is processed or committed.

use std::time::{Duration, Instant};

use super::{now_ms, Core};
use crate::access::{partition_of, AccessAnswer};
use crate::committed_window::window_psi;

impl Core {
    /// Answers the HTTP access requests waiting on the channel: a
    /// visitor's consent, state and recent offers, from the shard that owns
    /// its partition (or which partitions this instance owns instead).
    pub(super) fn answer_access_requests(&mut self) {
        let Some(rx) = &self.opts.access else { return };
        while let Ok(req) = rx.try_recv() {
            let partition = partition_of(req.visitor_id.as_bytes(), self.opts.settings.partitions);
            let answer = match self.shards.get(&partition) {
                Some(shard) => {
                    let view = shard.engine.visitor_view(&req.visitor_id);
                    let offers: Vec<&propensity_engine::Offer> =
                        shard.recent_offers_of(&req.visitor_id).collect();
                    let held = match view {
                        None if offers.is_empty() => None,
                        view => Some(serde_json::json!({
                            "consent": view.as_ref().and_then(|v| v.0),
                            "state": view.as_ref().and_then(|v| v.1.clone()),
                            "recent_offers": offers,
                        })),
                    };
                    AccessAnswer::Owned { partition, held }
                }
                None => AccessAnswer::OwnedElsewhere {
                    partition,
                    owned_here: self.shards.keys().copied().collect(),
                },
            };
            let _ = req.reply.send(answer);
        }
    }

    /// Lag from committed offsets against the current end offsets, and the
    /// stalled partitions (lag, and no commit for the stall timeout).
    pub(super) fn refresh_lag(&mut self) {
        let every = Duration::from_millis(self.opts.settings.statistics_interval_ms.max(100));
        if self.last_lag_refresh.elapsed() < every {
            return;
        }
        self.last_lag_refresh = Instant::now();
        let partitions = self.progress.partitions();
        match self.events.end_offsets(&partitions) {
            Ok(ends) => {
                let now = Instant::now();
                for (p, end) in ends {
                    self.progress.end(p, end, now);
                }
                if std::mem::take(&mut self.lag_query_failing) {
                    tracing::info!("end offsets of the events topic readable again");
                }
            }
            Err(e) => {
                // The lag and stall gauges keep their last known ends.
                if !std::mem::replace(&mut self.lag_query_failing, true) {
                    tracing::warn!(error = %e, "cannot read the events topic's end offsets: consumer lag and stall detection use the last known ones");
                }
            }
        }
        self.publish_progress();
    }

    /// Lag per partition and the stalled set, to the status endpoint (and
    /// from there the metrics); the stall warning is logged when the set
    /// changes.
    pub(super) fn publish_progress(&self) {
        let topic = &self.opts.settings.events_topic;
        let lags: Vec<(String, i32, i64)> = self
            .progress
            .lags()
            .into_iter()
            .map(|(p, lag)| (topic.clone(), p, lag))
            .collect();
        if let Ok(mut l) = self.opts.status.consumer_lag.lock() {
            *l = lags;
        }
        let timeout = Duration::from_secs_f64(self.opts.settings.stall_timeout_secs);
        let stalled = self.progress.stalled(timeout, Instant::now());
        if let Ok(mut s) = self.opts.status.stalled_partitions.lock() {
            // Said when the set changes, not at every refresh.
            if *s != stalled {
                if stalled.is_empty() {
                    tracing::info!("no partition is stalled any more");
                } else {
                    tracing::warn!(partitions = ?stalled, timeout_secs = timeout.as_secs_f64(), "partitions with lag have committed nothing within the stall timeout");
                }
            }
            *s = stalled;
        }
    }

    /// The drift and online-evaluation figures of the windows of the
    /// partitions held, every statistics interval (also while idle, so
    /// the windows slide and the last commit's counts are shown).
    pub(super) fn publish_monitoring(&mut self) {
        let every = Duration::from_millis(self.opts.settings.statistics_interval_ms.max(100));
        if self.last_monitoring_publish.elapsed() < every {
            return;
        }
        self.last_monitoring_publish = Instant::now();
        let now = now_ms();
        let mut drift = Vec::new();
        let mut online = Vec::new();
        for shard in self.shards.values() {
            shard.monitoring.add_drift_to(&mut drift, now);
            shard.monitoring.add_online_to(&mut online, now);
        }
        let models = self.opts.models.current();
        let references = (0..models.outcomes()).map(|i| {
            models
                .get(i)
                .and_then(|m| m.drift_reference())
                .map(|r| &**r)
        });
        let psi = window_psi(&drift, references, self.opts.settings.drift_min_events);
        self.opts.metrics.publish_drift(&psi);
        let min = self.opts.settings.online_eval_min_sessions;
        let online: Vec<_> = online
            .iter()
            .map(|c| c.summary().filter(|s| s.sessions >= min.max(1)))
            .collect();
        self.opts.metrics.publish_online_eval(&online);
        if let Ok(mut shown) = self.opts.status.online_evaluation.lock() {
            *shown = online;
        }
    }

    /// The engine counters as of each shard's last commit, plus retired
    /// shards', to the metrics and the status endpoint.
    pub(super) fn publish_counters(&self) {
        let mut total = self.retired.clone();
        for shard in self.shards.values() {
            total.merge(&shard.reported_counters());
        }
        self.opts.metrics.publish_engine(&total);
        if let Ok(mut c) = self.opts.status.engine.lock() {
            *c = total;
        }
    }
}
