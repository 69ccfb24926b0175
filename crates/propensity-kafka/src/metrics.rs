//! Prometheus metrics of a running pipeline: names in one place
//! ([`METRIC_NAMES`], checked against the dashboard and alert rules by the
//! deploy tests), updated from engine counters at every commit (as deltas,
//! so counters stay monotonic across partition moves) and from the runtime
//! status at scrape time. No label carries a visitor id or any other
//! unbounded value: labels are event types, reason codes, action maps and
//! outcomes from the config, topics and partition numbers.

use std::sync::Mutex;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use propensity_engine::drift::DriftPsi;
use propensity_engine::online_eval::OnlineEvaluation;
use propensity_engine::wire::{DecisionKind, FeedbackStatus};
use propensity_engine::{
    DeadLetterReason, DropReason, EngineConfig, EngineCounters, ModelRole, ModelSet,
};

use crate::status::RuntimeStatus;

/// Every metric the pipeline exports (histograms by base name).
pub const METRIC_NAMES: &[&str] = &[
    "propensity_build_info",
    "propensity_ready",
    "propensity_assigned_partitions",
    "propensity_restoring_partitions",
    "propensity_changelog_restored_records_total",
    "propensity_restore_seconds",
    "propensity_consent_restored_records_total",
    "propensity_events_consumed_total",
    "propensity_events_processed_total",
    "propensity_events_dropped_total",
    "propensity_dead_letters_total",
    "propensity_consent_records_total",
    "propensity_erasures_total",
    "propensity_revocations_total",
    "propensity_events_scored_total",
    "propensity_offers_published_total",
    "propensity_offers_suppressed_total",
    "propensity_decisions_total",
    "propensity_control_group_sessions_total",
    "propensity_control_group_conversions_total",
    "propensity_feedback_records_total",
    "propensity_offer_feedback_total",
    "propensity_outcome_probability",
    "propensity_batch_processing_seconds",
    "propensity_event_to_offer_latency_seconds",
    "propensity_consumer_lag",
    "propensity_stalled_partitions",
    "propensity_producer_restarts_total",
    "propensity_events_rewound_total",
    "propensity_rebalances_total",
    "propensity_transactions_total",
    "propensity_active_sessions",
    "propensity_buffered_events",
    "propensity_model_info",
    "propensity_model_reloads_total",
    "propensity_model_promotions_total",
    "propensity_score_psi",
    "propensity_feature_psi",
    "propensity_drift_window_events",
    "propensity_online_auc",
    "propensity_online_auc_floor",
    "propensity_online_log_loss",
    "propensity_online_brier",
    "propensity_online_sessions",
    "propensity_online_calibration",
];

/// The `result` labels of `propensity_feedback_records_total`.
const FEEDBACK_RESULTS: [&str; 4] = [
    "applied",
    "dropped_no_consent",
    "dropped_unknown_map",
    "dead_lettered",
];

/// The metrics of one process.
pub struct PipelineMetrics {
    registry: Registry,
    ready: IntGauge,
    assigned: IntGauge,
    restoring: IntGauge,
    restored_records: IntCounter,
    /// Wall time of one restore (all partitions restored together).
    pub restore_seconds: Histogram,
    /// Consent records read while restoring (the changelog side is
    /// `restored_records`).
    pub consent_restored_records: IntCounter,
    events_consumed: IntCounterVec,
    processed: IntCounter,
    dropped: IntCounterVec,
    dead_letters: IntCounterVec,
    consent_records: IntCounterVec,
    erasures: IntCounter,
    revocations: IntCounter,
    scored: IntCounter,
    offers: IntCounterVec,
    suppressed: IntCounterVec,
    /// Every decision of an action map, by kind (offered, held_out, capped,
    /// no_purpose, lower_priority): what a control group is measured with.
    decisions: IntCounterVec,
    /// Sessions with an `offered` (arm `treatment`) or `held_out` (arm
    /// `control`) decision of a map, and those of them that then achieved
    /// its outcome: a dashboard's uplift is the difference of the ratios.
    control_sessions: IntCounterVec,
    control_conversions: IntCounterVec,
    /// Feedback records by result (applied, dropped_no_consent,
    /// dropped_unknown_map, dead_lettered).
    feedback_records: IntCounterVec,
    /// Applied offer feedback by map and status.
    offer_feedback: IntCounterVec,
    /// Outcome probability per outcome, in config order.
    probability: Vec<Histogram>,
    /// Engine time per batch.
    pub batch_seconds: Histogram,
    /// Event (Kafka timestamp) to offer committed.
    pub offer_latency: Histogram,
    lag: IntGaugeVec,
    stalled: IntGauge,
    producer_restarts: IntCounter,
    /// Event records whose results an aborted transaction discarded.
    pub events_rewound: IntCounter,
    rebalances: IntCounter,
    transactions: IntCounterVec,
    active_sessions: IntGauge,
    buffered: IntGauge,
    model_info: IntGaugeVec,
    /// Which outcomes learn online, and in which role.
    adaptive: Option<propensity_engine::config::AdaptiveConfig>,
    model_promotions: IntCounterVec,
    model_reloads: IntCounterVec,
    /// Drift over `kafka.drift_window_secs`, per outcome (and feature).
    score_psi: GaugeVec,
    feature_psi: GaugeVec,
    drift_events: IntGaugeVec,
    /// Online evaluation over `kafka.online_eval_window_secs`, per outcome.
    online_auc: GaugeVec,
    online_auc_floor: prometheus::Gauge,
    online_log_loss: GaugeVec,
    online_brier: GaugeVec,
    online_sessions: IntGaugeVec,
    online_calibration: GaugeVec,
    /// Feature names in vector order.
    feature_names: Vec<String>,
    /// Outcome names in config order.
    outcomes: Vec<String>,
    /// (action map name, action type) in engine order.
    maps: Vec<(String, &'static str)>,
    /// Totals already published: counters advance by the difference.
    published: Mutex<Published>,
}

#[derive(Default)]
struct Published {
    engine: EngineCounters,
    restored: u64,
    rebalances: u64,
    commits: u64,
    aborts: u64,
    producer_restarts: u64,
    unproducible: u64,
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> prometheus::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn float_gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn delta(new: u64, old: u64) -> u64 {
    new.saturating_sub(old)
}

impl PipelineMetrics {
    /// Registers every metric for a configuration.
    pub fn new(config: &EngineConfig) -> prometheus::Result<Self> {
        let r = Registry::new();
        let build = gauge_vec(
            &r,
            "propensity_build_info",
            "Build information (always 1).",
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let probability_vec = HistogramVec::new(
            HistogramOpts::new(
                "propensity_outcome_probability",
                "Scored probability that the session achieves the outcome.",
            )
            .buckets(vec![0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
            &["outcome"],
        )?;
        r.register(Box::new(probability_vec.clone()))?;
        let probability = config
            .outcomes
            .iter()
            .map(|o| probability_vec.with_label_values(&[o.name.as_str()]))
            .collect();
        let batch_seconds = histogram(
            &r,
            "propensity_batch_processing_seconds",
            "Engine time per batch of events (decode to offers), seconds.",
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ],
        )?;
        let offer_latency = histogram(
            &r,
            "propensity_event_to_offer_latency_seconds",
            "From the triggering event's Kafka timestamp to the commit of its offer, seconds.",
            &[
                0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?;
        let restore_seconds = histogram(
            &r,
            "propensity_restore_seconds",
            "Wall time of restoring newly assigned (or rebuilt) partitions from the changelog and consent, seconds.",
            &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,],
        )?;
        let m = Self {
            ready: gauge(
                &r,
                "propensity_ready",
                "1 when partitions are assigned and their state restored.",
            )?,
            assigned: gauge(
                &r,
                "propensity_assigned_partitions",
                "Partitions assigned to this instance.",
            )?,
            restoring: gauge(
                &r,
                "propensity_restoring_partitions",
                "Partitions whose state is being restored.",
            )?,
            restored_records: counter(
                &r,
                "propensity_changelog_restored_records_total",
                "State changelog records read while restoring partitions.",
            )?,
            restore_seconds,
            consent_restored_records: counter(
                &r,
                "propensity_consent_restored_records_total",
                "Consent topic records read while restoring partitions.",
            )?,
            events_consumed: counter_vec(
                &r,
                "propensity_events_consumed_total",
                "Visitor events consumed in committed transactions, by type (invalid: dead-lettered records).",
                &["type"],
            )?,
            processed: counter(
                &r,
                "propensity_events_processed_total",
                "Events processed (consented, scored).",
            )?,
            dropped: counter_vec(
                &r,
                "propensity_events_dropped_total",
                "Valid events not processed, by reason.",
                &["reason"],
            )?,
            dead_letters: counter_vec(
                &r,
                "propensity_dead_letters_total",
                "Records dead-lettered, by reason and input.",
                &["reason", "source"],
            )?,
            consent_records: counter_vec(
                &r,
                "propensity_consent_records_total",
                "Consent records consumed, by result.",
                &["result"],
            )?,
            erasures: counter(&r, "propensity_erasures_total", "Erasure requests applied.")?,
            revocations: counter(
                &r,
                "propensity_revocations_total",
                "Consent revocations applied.",
            )?,
            scored: counter(
                &r,
                "propensity_events_scored_total",
                "Outcome scores computed (event × outcome).",
            )?,
            offers: counter_vec(
                &r,
                "propensity_offers_published_total",
                "Offers published, by action map and action type.",
                &["action_map", "action_type"],
            )?,
            suppressed: counter_vec(
                &r,
                "propensity_offers_suppressed_total",
                "Offers an action map would have made, suppressed by reason.",
                &["action_map", "reason"],
            )?,
            control_sessions: counter_vec(
                &r,
                "propensity_control_group_sessions_total",
                "Sessions with an offered (arm treatment) or held-out (arm control) decision of an action map.",
                &["action_map", "arm"],
            )?,
            control_conversions: counter_vec(
                &r,
                "propensity_control_group_conversions_total",
                "Of those sessions, the ones that then achieved the map's outcome.",
                &["action_map", "arm"],
            )?,
            feedback_records: counter_vec(
                &r,
                "propensity_feedback_records_total",
                "Offer-feedback records consumed, by result: applied, dropped_no_consent, dropped_unknown_map, dead_lettered.",
                &["result"],
            )?,
            offer_feedback: counter_vec(
                &r,
                "propensity_offer_feedback_total",
                "Applied offer feedback by action map and status (shown, accepted, declined, ignored, expired).",
                &["action_map", "status"],
            )?,
            decisions: counter_vec(
                &r,
                "propensity_decisions_total",
                "Decisions of an action map whose trigger and conditions held, by kind (offered, held_out, capped, no_purpose, lower_priority, contact_policy).",
                &["action_map", "decision"],
            )?,
            probability,
            batch_seconds,
            offer_latency,
            lag: gauge_vec(
                &r,
                "propensity_consumer_lag",
                "Consumer lag in records: end offset minus the group's committed offset, per owned partition.",
                &["topic", "partition"],
            )?,
            stalled: gauge(
                &r,
                "propensity_stalled_partitions",
                "Owned partitions with lag that have committed nothing within kafka.stall_timeout_secs.",
            )?,
            producer_restarts: counter(
                &r,
                "propensity_producer_restarts_total",
                "Transactional producers replaced (fatal error, fenced, or an abort that could not complete).",
            )?,
            events_rewound: counter(
                &r,
                "propensity_events_rewound_total",
                "Event records consumed again because the transaction holding their results was aborted or their partition lost; the other event counters count committed work only.",
            )?,
            rebalances: counter(
                &r,
                "propensity_rebalances_total",
                "Consumer group rebalances seen.",
            )?,
            transactions: counter_vec(
                &r,
                "propensity_transactions_total",
                "Kafka transactions, by result.",
                &["result"],
            )?,
            active_sessions: gauge(&r, "propensity_active_sessions", "Sessions held in memory.")?,
            buffered: gauge(
                &r,
                "propensity_buffered_events",
                "Events waiting for a first consent record.",
            )?,
            model_info: gauge_vec(
                &r,
                "propensity_model_info",
                "Loaded model version per outcome and role (champion, or challenger scored in shadow; always 1).",
                &["outcome", "version", "role"],
            )?,
            model_promotions: counter_vec(
                &r,
                "propensity_model_promotions_total",
                "Challenger promotions this instance picked up with a model reload (the outcome's champion and challenger exchanged), per outcome.",
                &["outcome"],
            )?,
            model_reloads: counter_vec(
                &r,
                "propensity_model_reloads_total",
                "Model reloads, by result.",
                &["result"],
            )?,
            score_psi: float_gauge_vec(
                &r,
                "propensity_score_psi",
                "Population stability index of the model's scores over kafka.drift_window_secs against its training population (absent below kafka.drift_min_events scored events or without a drift reference).",
                &["outcome"],
            )?,
            feature_psi: float_gauge_vec(
                &r,
                "propensity_feature_psi",
                "Population stability index of one feature over kafka.drift_window_secs against the model's training population (absent like propensity_score_psi).",
                &["outcome", "feature"],
            )?,
            drift_events: gauge_vec(
                &r,
                "propensity_drift_window_events",
                "Scored events of committed work in the drift window (the drift sample: one event in 8), per outcome.",
                &["outcome"],
            )?,
            online_auc: float_gauge_vec(
                &r,
                "propensity_online_auc",
                "AUC of the outcome's model over the sessions resolved in the committed work of kafka.online_eval_window_secs: each session's last score before the outcome (positive) or its end (negative). Per role: the champion's, and the challenger's scored in shadow. Absent below kafka.online_eval_min_sessions or without both classes.",
                &["outcome", "role"],
            )?,
            online_auc_floor: {
                let g = prometheus::Gauge::new(
                    "propensity_online_auc_floor",
                    "kafka.online_auc_floor: the OnlineAucLow alert fires while propensity_online_auc is below it.",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            online_log_loss: float_gauge_vec(
                &r,
                "propensity_online_log_loss",
                "Mean log loss of the outcome's model (per role) over the resolved sessions of the online-evaluation window.",
                &["outcome", "role"],
            )?,
            online_brier: float_gauge_vec(
                &r,
                "propensity_online_brier",
                "Mean Brier score of the outcome's model (per role) over the resolved sessions of the online-evaluation window.",
                &["outcome", "role"],
            )?,
            online_sessions: gauge_vec(
                &r,
                "propensity_online_sessions",
                "Sessions resolved in the online-evaluation window, per outcome, role and result (achieved or not).",
                &["outcome", "role", "result"],
            )?,
            online_calibration: float_gauge_vec(
                &r,
                "propensity_online_calibration",
                "Calibration of the outcome's model by decile of probability over the online-evaluation window: the mean predicted probability and the observed rate of its resolved sessions (per role).",
                &["outcome", "role", "decile", "kind"],
            )?,
            adaptive: config.adaptive.clone(),
            feature_names: config.features.names().to_vec(),
            outcomes: config.outcomes.iter().map(|o| o.name.clone()).collect(),
            maps: config
                .action_maps
                .iter()
                .map(|m| (m.name.clone(), m.action.type_name()))
                .collect(),
            published: Mutex::new(Published::default()),
            registry: r,
        };
        // Pre-create labelled series so dashboards show zeros, not gaps.
        for outcome in &m.outcomes {
            m.model_promotions.with_label_values(&[outcome]);
        }
        for reason in DropReason::ALL {
            m.dropped.with_label_values(&[reason.code()]);
        }
        // A dead-letter series born at its first non-zero value hides that
        // first burst from rate(): an instance that dead-letters a batch of
        // garbage and nothing after would never raise DeadLettersFlowing.
        for source in ["events", "consent", "feedback"] {
            for reason in DeadLetterReason::ALL {
                m.dead_letters.with_label_values(&[reason.code(), source]);
            }
        }
        m.dead_letters
            .with_label_values(&[crate::shard::UNPRODUCIBLE_REASON, "events"]);
        for result in ["committed", "aborted"] {
            m.transactions.with_label_values(&[result]);
        }
        for result in ["success", "failure"] {
            m.model_reloads.with_label_values(&[result]);
        }
        for result in FEEDBACK_RESULTS {
            m.feedback_records.with_label_values(&[result]);
        }
        for (name, kind) in &m.maps {
            m.offers.with_label_values(&[name.as_str(), kind]);
            for status in FeedbackStatus::ALL {
                m.offer_feedback
                    .with_label_values(&[name.as_str(), status.as_str()]);
            }
            for arm in ["treatment", "control"] {
                m.control_sessions.with_label_values(&[name.as_str(), arm]);
                m.control_conversions
                    .with_label_values(&[name.as_str(), arm]);
            }
        }
        Ok(m)
    }

    /// Records a scored probability of outcome `outcome` (config order).
    pub fn observe_probability(&self, outcome: usize, p: f64) {
        if let Some(h) = self.probability.get(outcome) {
            h.observe(p);
        }
    }

    /// Publishes the drift window's PSIs (one per outcome, config order):
    /// an outcome without one (too few events, no reference) has its
    /// series removed, so an alert never reads a stale value.
    pub fn publish_drift(&self, psi: &[Option<DriftPsi>]) {
        for (i, name) in self.outcomes.iter().enumerate() {
            let name = name.as_str();
            match psi.get(i).and_then(Option::as_ref) {
                Some(d) => {
                    self.score_psi.with_label_values(&[name]).set(d.score);
                    self.drift_events
                        .with_label_values(&[name])
                        .set(i64::try_from(d.events).unwrap_or(i64::MAX));
                    for (f, v) in self.feature_names.iter().zip(&d.features) {
                        let labels = [name, f.as_str()];
                        match v {
                            Some(v) => self.feature_psi.with_label_values(&labels).set(*v),
                            // Not monitored (the time features).
                            None => {
                                let _ = self.feature_psi.remove_label_values(&labels);
                            }
                        }
                    }
                }
                None => {
                    let _ = self.score_psi.remove_label_values(&[name]);
                    let _ = self.drift_events.remove_label_values(&[name]);
                    for f in &self.feature_names {
                        let _ = self.feature_psi.remove_label_values(&[name, f.as_str()]);
                    }
                }
            }
        }
    }

    /// Sets the online AUC floor the alert compares with.
    pub fn set_online_auc_floor(&self, floor: f64) {
        self.online_auc_floor.set(floor);
    }

    /// Publishes the online-evaluation figures (one per outcome, config
    /// order): an outcome without them (too few resolved sessions) has its
    /// series removed, so an alert never reads a stale value.
    pub fn publish_online_eval(&self, figures: &[Option<OnlineEvaluation>]) {
        let n = self.outcomes.len();
        for (slot, f) in figures.iter().enumerate().take(2 * n) {
            let name = self.outcomes[slot % n].as_str();
            let role = ModelRole::ALL[slot / n].as_str();
            let f = f.as_ref();
            let auc = f.and_then(|f| f.auc);
            match auc {
                Some(a) => self.online_auc.with_label_values(&[name, role]).set(a),
                None => {
                    let _ = self.online_auc.remove_label_values(&[name, role]);
                }
            }
            for decile in 0..10u8 {
                let d = decile.to_string();
                let bin = f.and_then(|f| f.calibration.iter().find(|c| c.decile == decile));
                for (kind, value) in [
                    ("predicted", bin.map(|b| b.mean_predicted)),
                    ("observed", bin.map(|b| b.observed_rate)),
                ] {
                    let labels = [name, role, d.as_str(), kind];
                    match value {
                        Some(v) => self.online_calibration.with_label_values(&labels).set(v),
                        None => {
                            let _ = self.online_calibration.remove_label_values(&labels);
                        }
                    }
                }
            }
            match f {
                Some(f) => {
                    self.online_log_loss
                        .with_label_values(&[name, role])
                        .set(f.log_loss);
                    self.online_brier
                        .with_label_values(&[name, role])
                        .set(f.brier);
                    let achieved = i64::try_from(f.positives).unwrap_or(i64::MAX);
                    let total = i64::try_from(f.sessions).unwrap_or(i64::MAX);
                    self.online_sessions
                        .with_label_values(&[name, role, "achieved"])
                        .set(achieved);
                    self.online_sessions
                        .with_label_values(&[name, role, "not_achieved"])
                        .set(total - achieved);
                }
                None => {
                    let _ = self.online_log_loss.remove_label_values(&[name, role]);
                    let _ = self.online_brier.remove_label_values(&[name, role]);
                    for result in ["achieved", "not_achieved"] {
                        let _ = self
                            .online_sessions
                            .remove_label_values(&[name, role, result]);
                    }
                }
            }
        }
    }

    /// Records a model reload.
    pub fn model_reload(&self, ok: bool) {
        self.model_reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    /// Sets the model-version info series (champions and challengers; an
    /// outcome that learns online shows its learners' version, the
    /// champion's with `+ftrl`, in the role they play).
    pub fn set_models(&self, models: &ModelSet) {
        self.model_info.reset();
        for (i, name) in self.outcomes.iter().enumerate() {
            for role in ModelRole::ALL {
                let learns = self.adaptive.as_ref().is_some_and(|a| a.learns_as(i, role));
                let version = match (learns, models.get(i), models.in_role(i, role)) {
                    (true, Some(base), _) => {
                        Some(propensity_engine::adaptive::learner_version(&base.version))
                    }
                    (false, _, Some(m)) => Some(m.version.clone()),
                    _ => None,
                };
                if let Some(v) = version {
                    self.model_info
                        .with_label_values(&[name.as_str(), v.as_str(), role.as_str()])
                        .set(1);
                }
            }
        }
    }

    /// Counts a promotion of outcome `idx`'s challenger.
    pub fn model_promoted(&self, idx: usize) {
        if let Some(name) = self.outcomes.get(idx) {
            self.model_promotions.with_label_values(&[name]).inc();
        }
    }

    /// Publishes engine totals (process-wide sums) as counter deltas and
    /// gauges.
    pub fn publish_engine(&self, totals: &EngineCounters) {
        let Ok(mut published) = self.published.lock() else {
            return;
        };
        let old = &published.engine;
        for (i, kind) in propensity_engine::wire::EventKind::ALL.iter().enumerate() {
            self.events_consumed
                .with_label_values(&[kind.as_str()])
                .inc_by(delta(
                    totals.events_by_type[i],
                    old.events_by_type.get(i).copied().unwrap_or(0),
                ));
        }
        let invalid: u64 = totals.events_dead_lettered.iter().sum();
        let old_invalid: u64 = old.events_dead_lettered.iter().sum();
        self.events_consumed
            .with_label_values(&["invalid"])
            .inc_by(delta(invalid, old_invalid));
        self.processed
            .inc_by(delta(totals.events_processed, old.events_processed));
        for reason in DropReason::ALL {
            let i = reason as usize;
            self.dropped
                .with_label_values(&[reason.code()])
                .inc_by(delta(totals.events_dropped[i], old.events_dropped[i]));
        }
        for (i, reason) in DeadLetterReason::ALL.iter().enumerate() {
            for (source, new, old) in [
                (
                    "events",
                    totals.events_dead_lettered[i],
                    old.events_dead_lettered[i],
                ),
                (
                    "consent",
                    totals.consent_dead_lettered[i],
                    old.consent_dead_lettered[i],
                ),
                (
                    "feedback",
                    totals.feedback.dead_lettered[i],
                    old.feedback.dead_lettered[i],
                ),
            ] {
                let d = delta(new, old);
                if d > 0 {
                    self.dead_letters
                        .with_label_values(&[reason.code(), source])
                        .inc_by(d);
                }
            }
        }
        let consent_dl: u64 = totals.consent_dead_lettered.iter().sum();
        let old_consent_dl: u64 = old.consent_dead_lettered.iter().sum();
        for (result, new, old) in [
            ("applied", totals.consent_applied, old.consent_applied),
            ("stale", totals.consent_stale, old.consent_stale),
            ("dead_lettered", consent_dl, old_consent_dl),
        ] {
            self.consent_records
                .with_label_values(&[result])
                .inc_by(delta(new, old));
        }
        let (f, of) = (&totals.feedback, &old.feedback);
        let dead: u64 = f.dead_lettered.iter().sum();
        let old_dead: u64 = of.dead_lettered.iter().sum();
        // In FEEDBACK_RESULTS order.
        for (result, new, old) in [
            ("applied", f.applied, of.applied),
            (
                "dropped_no_consent",
                f.dropped_no_consent,
                of.dropped_no_consent,
            ),
            (
                "dropped_unknown_map",
                f.dropped_unknown_map,
                of.dropped_unknown_map,
            ),
            ("dead_lettered", dead, old_dead),
        ] {
            self.feedback_records
                .with_label_values(&[result])
                .inc_by(delta(new, old));
        }
        for (i, (name, _)) in self.maps.iter().enumerate() {
            let (new, old) = (f.by_map_status.get(i), of.by_map_status.get(i));
            for status in FeedbackStatus::ALL {
                let at = |v: Option<&[u64; 5]>| v.map_or(0, |c| c[status.index()]);
                let d = delta(at(new), at(old));
                if d > 0 {
                    self.offer_feedback
                        .with_label_values(&[name.as_str(), status.as_str()])
                        .inc_by(d);
                }
            }
        }
        self.erasures.inc_by(delta(totals.erasures, old.erasures));
        self.revocations
            .inc_by(delta(totals.revocations, old.revocations));
        self.scored.inc_by(delta(totals.scores, old.scores));
        for (i, (name, kind)) in self.maps.iter().enumerate() {
            let get = |v: &Vec<u64>| v.get(i).copied().unwrap_or(0);
            self.offers
                .with_label_values(&[name.as_str(), kind])
                .inc_by(delta(get(&totals.offers_by_map), get(&old.offers_by_map)));
            for (reason, new, old) in [
                (
                    "frequency_cap",
                    get(&totals.suppressed_by_cap),
                    get(&old.suppressed_by_cap),
                ),
                (
                    "purpose",
                    get(&totals.suppressed_by_purpose),
                    get(&old.suppressed_by_purpose),
                ),
            ] {
                let d = delta(new, old);
                if d > 0 {
                    self.suppressed
                        .with_label_values(&[name.as_str(), reason])
                        .inc_by(d);
                }
            }
            for (kind, new, old) in [
                (
                    DecisionKind::Offered,
                    &totals.offers_by_map,
                    &old.offers_by_map,
                ),
                (
                    DecisionKind::HeldOut,
                    &totals.held_out_by_map,
                    &old.held_out_by_map,
                ),
                (
                    DecisionKind::Capped,
                    &totals.suppressed_by_cap,
                    &old.suppressed_by_cap,
                ),
                (
                    DecisionKind::NoPurpose,
                    &totals.suppressed_by_purpose,
                    &old.suppressed_by_purpose,
                ),
                (
                    DecisionKind::LowerPriority,
                    &totals.lower_priority_by_map,
                    &old.lower_priority_by_map,
                ),
                (
                    DecisionKind::ContactPolicy,
                    &totals.suppressed_by_contact_by_map,
                    &old.suppressed_by_contact_by_map,
                ),
            ] {
                let d = delta(get(new), get(old));
                if d > 0 {
                    self.decisions
                        .with_label_values(&[name.as_str(), kind.as_str()])
                        .inc_by(d);
                }
            }
            for (arm, sessions, converted) in [
                (
                    "treatment",
                    (
                        &totals.sessions_offered_by_map,
                        &old.sessions_offered_by_map,
                    ),
                    (
                        &totals.converted_offered_by_map,
                        &old.converted_offered_by_map,
                    ),
                ),
                (
                    "control",
                    (
                        &totals.sessions_held_out_by_map,
                        &old.sessions_held_out_by_map,
                    ),
                    (
                        &totals.converted_held_out_by_map,
                        &old.converted_held_out_by_map,
                    ),
                ),
            ] {
                self.control_sessions
                    .with_label_values(&[name.as_str(), arm])
                    .inc_by(delta(get(sessions.0), get(sessions.1)));
                self.control_conversions
                    .with_label_values(&[name.as_str(), arm])
                    .inc_by(delta(get(converted.0), get(converted.1)));
            }
        }
        self.active_sessions.set(totals.active_sessions as i64);
        self.buffered.set(totals.buffered_events as i64);
        published.engine = totals.clone();
    }

    /// Updates the status-derived series and renders the text format.
    pub fn render(&self, status: &RuntimeStatus) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        self.ready.set(i64::from(status.ready.load(Relaxed)));
        self.assigned.set(status.assigned_partitions.load(Relaxed));
        self.restoring
            .set(status.restoring_partitions.load(Relaxed));
        if let Ok(mut p) = self.published.lock() {
            let restored = status.restored_records.load(Relaxed);
            self.restored_records.inc_by(delta(restored, p.restored));
            p.restored = restored;
            let rebalances = status.rebalances.load(Relaxed);
            self.rebalances.inc_by(delta(rebalances, p.rebalances));
            p.rebalances = rebalances;
            let commits = status.commits.load(Relaxed);
            self.transactions
                .with_label_values(&["committed"])
                .inc_by(delta(commits, p.commits));
            p.commits = commits;
            let aborts = status.aborts.load(Relaxed);
            self.transactions
                .with_label_values(&["aborted"])
                .inc_by(delta(aborts, p.aborts));
            p.aborts = aborts;
            let restarts = status.producer_restarts.load(Relaxed);
            self.producer_restarts
                .inc_by(delta(restarts, p.producer_restarts));
            p.producer_restarts = restarts;
            // Unproducible events never reach an engine: counted here as
            // consumed (invalid) and dead-lettered, so the counts reconcile.
            let unproducible = status.unproducible_events.load(Relaxed);
            let d = delta(unproducible, p.unproducible);
            if d > 0 {
                self.events_consumed
                    .with_label_values(&["invalid"])
                    .inc_by(d);
                self.dead_letters
                    .with_label_values(&[crate::shard::UNPRODUCIBLE_REASON, "events"])
                    .inc_by(d);
            }
            p.unproducible = unproducible;
        }
        if let Ok(stalled) = status.stalled_partitions.lock() {
            self.stalled.set(stalled.len() as i64);
        }
        if let Ok(lags) = status.consumer_lag.lock() {
            self.lag.reset();
            for (topic, partition, lag) in lags.iter() {
                self.lag
                    .with_label_values(&[topic.as_str(), &partition.to_string()])
                    .set(*lag);
            }
        }
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
