//! Topic administration: `propensity topics create` and the start-up check
//! that the topics exist with the settings the runtime relies on. Every
//! problem found is reported, each naming the topic and what to change.
//! Both ask the brokers for metadata first, bounded by
//! `kafka.probe_timeout_secs` ([`probe_brokers`]), so an unreachable broker
//! is reported in seconds, by name, instead of after librdkafka's minute.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use crate::client_config;
use crate::client_log::LoggedContext;
use crate::error::KafkaError;
use crate::reachability::probe_brokers;
use crate::settings::KafkaSettings;

/// What a topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    /// Visitor events (input).
    Events,
    /// Consent records (input, compacted).
    Consent,
    /// Offer feedback (input, co-partitioned).
    Feedback,
    /// Offers (output).
    Offers,
    /// Scores (output).
    Scores,
    /// Decisions (output).
    Decisions,
    /// Conversions attributed to decisions (output).
    Conversions,
    /// Dead letters (output).
    DeadLetters,
    /// State changelog (compacted).
    Changelog,
}

impl TopicRole {
    fn compacted(self) -> bool {
        matches!(self, TopicRole::Consent | TopicRole::Changelog)
    }
    fn co_partitioned(self) -> bool {
        matches!(
            self,
            TopicRole::Events | TopicRole::Consent | TopicRole::Feedback | TopicRole::Changelog
        )
    }
}

/// The topics of a deployment with their roles.
pub fn topics(settings: &KafkaSettings) -> Vec<(String, TopicRole)> {
    let mut t = vec![
        (settings.events_topic.clone(), TopicRole::Events),
        (settings.consent_topic.clone(), TopicRole::Consent),
        (settings.offers_topic.clone(), TopicRole::Offers),
        (settings.dead_letter_topic.clone(), TopicRole::DeadLetters),
        (settings.changelog_topic.clone(), TopicRole::Changelog),
    ];
    if !settings.scores_topic.is_empty() {
        t.push((settings.scores_topic.clone(), TopicRole::Scores));
    }
    if !settings.decisions_topic.is_empty() {
        t.push((settings.decisions_topic.clone(), TopicRole::Decisions));
    }
    if !settings.feedback_topic.is_empty() {
        t.push((settings.feedback_topic.clone(), TopicRole::Feedback));
    }
    if !settings.conversions_topic.is_empty() {
        t.push((settings.conversions_topic.clone(), TopicRole::Conversions));
    }
    t
}

fn admin_client(settings: &KafkaSettings) -> Result<AdminClient<LoggedContext>, KafkaError> {
    Ok(client_config::admin(settings).create_with_context(LoggedContext)?)
}

/// Creates every missing topic (compacted ones with `cleanup.policy=compact`);
/// returns `(topic, created?)` for each.
pub async fn create_topics(settings: &KafkaSettings) -> Result<Vec<(String, bool)>, KafkaError> {
    // One name twice in a request would make librdkafka answer with fewer
    // results than asked for; validation refuses shared topic names.
    settings.validate()?;
    probe_brokers(settings)?;
    let admin = admin_client(settings)?;
    let list = topics(settings);
    let new: Vec<NewTopic<'_>> = list
        .iter()
        .map(|(name, role)| {
            let t = NewTopic::new(
                name,
                settings.partitions,
                TopicReplication::Fixed(settings.replication_factor),
            );
            if role.compacted() {
                t.set("cleanup.policy", "compact")
                    .set("min.compaction.lag.ms", "0")
            } else {
                t
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(|e| KafkaError::from_call(&settings.brokers, e))?;
    let mut out = Vec::new();
    for r in results {
        match r {
            Ok(name) => out.push((name, true)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => out.push((name, false)),
            Err((name, code)) => {
                return Err(KafkaError::Topics(format!(
                    "cannot create topic `{name}`: {code}"
                )))
            }
        }
    }
    // The controller answers before every broker serves the new topics: a
    // `run` started right after would find them missing. Wait until the
    // metadata shows them all.
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    let started = std::time::Instant::now();
    loop {
        let counts = partition_counts(settings, &names)?;
        if counts.iter().all(Option::is_some) {
            return Ok(out);
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(KafkaError::Topics(
                "topics were created but the broker did not serve them within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Partition count of every topic that exists (`None`: missing).
fn partition_counts(
    settings: &KafkaSettings,
    names: &[&str],
) -> Result<Vec<Option<usize>>, KafkaError> {
    let consumer: BaseConsumer<LoggedContext> =
        client_config::reader(settings, "metadata").create_with_context(LoggedContext)?;
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(|e| KafkaError::from_call(&settings.brokers, e))?;
    Ok(names
        .iter()
        .map(|n| {
            md.topics()
                .iter()
                .find(|t| t.name() == *n && t.error().is_none())
                .map(|t| t.partitions().len())
        })
        .collect())
}

/// Checks that the runtime's topics exist and are compatible; returns the
/// number of partitions of the co-partitioned topics. An unreachable broker
/// is [`KafkaError::Unreachable`] (retry), topic problems are
/// [`KafkaError::Topics`] (someone must act).
pub async fn check_topics(settings: &KafkaSettings) -> Result<i32, KafkaError> {
    probe_brokers(settings)?;
    let list = topics(settings);
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    let counts = partition_counts(settings, &names)?;
    let mut problems = Vec::new();
    for ((name, role), count) in list.iter().zip(&counts) {
        if count.is_none() {
            problems.push(format!(
                "topic `{name}` ({role:?}) does not exist: run `propensity topics create` or create it"
            ));
        }
    }
    let events = counts[0];
    for ((name, role), count) in list.iter().zip(&counts) {
        if let (Some(e), Some(c)) = (events, count) {
            if role.co_partitioned() && *c != e {
                problems.push(format!(
                    "topic `{name}` ({role:?}) has {c} partitions but the events topic `{}` has {e}: events, consent, feedback and the changelog must have the same partition count (co-partitioning by visitor_id)",
                    settings.events_topic
                ));
            }
        }
    }
    let admin = admin_client(settings)?;
    let specs: Vec<ResourceSpecifier<'_>> = list
        .iter()
        .zip(&counts)
        .filter(|((_, role), c)| role.compacted() && c.is_some())
        .map(|((n, _), _)| ResourceSpecifier::Topic(n))
        .collect();
    if !specs.is_empty() {
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(15)));
        let described = admin
            .describe_configs(specs.iter(), &opts)
            .await
            .map_err(|e| KafkaError::from_call(&settings.brokers, e))?;
        for res in described {
            let res =
                res.map_err(|code| KafkaError::Topics(format!("describe configs: {code}")))?;
            let name = match &res.specifier {
                rdkafka::admin::OwnedResourceSpecifier::Topic(n) => n.clone(),
                other => format!("{other:?}"),
            };
            let policy = res
                .get("cleanup.policy")
                .and_then(|e| e.value.clone())
                .unwrap_or_default();
            if !policy.split(',').any(|p| p.trim() == "compact") {
                problems.push(format!(
                    "topic `{name}` must be compacted (cleanup.policy=compact), it has `{policy}`: the latest record per visitor must never expire"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(events.unwrap_or(0) as i32)
    } else {
        Err(KafkaError::Topics(problems.join("; ")))
    }
}
