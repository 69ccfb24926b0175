//! Looking at a deployment's topics from outside, without joining the
//! group or committing anything: the bounded broker probe every inspection
//! starts with ([`probe`]), and `propensity topics describe`
//! ([`describe`]: per topic its partitions, the configs the runtime
//! depends on, its offsets, and for the events topic the group's committed
//! offsets and lag).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, OwnedResourceSpecifier, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::client_config;
use crate::client_log::LoggedContext;
use crate::error::KafkaError;
use crate::reader::OffsetQuery;
use crate::settings::KafkaSettings;
use crate::topics::{topics, TopicRole};

/// Topic configs worth seeing next to a topic: compaction (consent and
/// changelog must be compacted), retention (an output that expires before
/// its consumers read it loses offers), and the size and durability limits
/// behind dead letters cut to fit and `NOT_ENOUGH_REPLICAS` aborts.
pub const SHOWN_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "min.compaction.lag.ms",
    "max.message.bytes",
    "min.insync.replicas",
];

/// What the broker's metadata says about one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicLayout {
    /// Partition ids, ascending.
    pub partitions: Vec<i32>,
    /// Replicas of the first partition (every partition has as many unless
    /// someone reassigned them by hand).
    pub replication_factor: usize,
}

/// The topics the brokers know, by name.
pub type ClusterView = BTreeMap<String, TopicLayout>;

/// Asks the brokers for every topic's metadata, waiting at most `timeout`,
/// after the bounded reachability probe
/// ([`crate::reachability::probe_brokers`]): librdkafka on its own keeps
/// retrying unreachable brokers for a minute and repeats the cause at every
/// layer; this fails once, naming `kafka.brokers`.
pub fn probe(settings: &KafkaSettings, timeout: Duration) -> Result<ClusterView, KafkaError> {
    crate::reachability::probe_brokers(settings)?;
    let consumer: BaseConsumer<LoggedContext> =
        client_config::reader(settings, "inspect").create_with_context(LoggedContext)?;
    let md = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| KafkaError::from_call(&settings.brokers, e))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            partitions.sort_unstable();
            let replication_factor = t.partitions().first().map_or(0, |p| p.replicas().len());
            (
                t.name().to_owned(),
                TopicLayout {
                    partitions,
                    replication_factor,
                },
            )
        })
        .collect())
}

/// Offsets of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionOffsets {
    /// Partition id.
    pub partition: i32,
    /// Log start offset (earlier records were deleted or compacted away).
    pub start: i64,
    /// End offset as a `read_committed` consumer sees it (the last stable
    /// offset: records of open transactions are not counted yet).
    pub end: i64,
    /// The group's committed offset (events topic only; `None`: nothing
    /// committed yet, so the group starts from the log start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed: Option<i64>,
    /// Records the group has still to process: `end − committed`, or
    /// `end − start` before its first commit (events topic only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}

/// One topic of the deployment as `topics describe` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// What the runtime uses it for (`events`, `consent`, …).
    pub role: &'static str,
    /// Whether the brokers know it.
    pub exists: bool,
    /// Partition count (0 when missing).
    pub partition_count: usize,
    /// Replicas per partition.
    pub replication_factor: usize,
    /// The [`SHOWN_CONFIGS`] the broker reports, by name.
    pub configs: BTreeMap<String, String>,
    /// Offsets per partition.
    pub partitions: Vec<PartitionOffsets>,
}

/// The short name of a role, as `topics describe` and `tail` spell it.
pub fn role_name(role: TopicRole) -> &'static str {
    match role {
        TopicRole::Events => "events",
        TopicRole::Consent => "consent",
        TopicRole::Offers => "offers",
        TopicRole::Scores => "scores",
        TopicRole::Decisions => "decisions",
        TopicRole::Conversions => "conversions",
        TopicRole::Feedback => "feedback",
        TopicRole::DeadLetters => "dead-letters",
        TopicRole::Changelog => "changelog",
    }
}

/// Describes every topic of the deployment (missing ones included, marked
/// so), after a [`probe`] bounded by `timeout`.
pub async fn describe(
    settings: &KafkaSettings,
    timeout: Duration,
) -> Result<Vec<TopicDescription>, KafkaError> {
    let cluster = probe(settings, timeout)?;
    let configs = topic_configs(settings, &cluster, timeout).await?;
    let mut out = Vec::new();
    for (name, role) in topics(settings) {
        let Some(layout) = cluster.get(&name) else {
            out.push(TopicDescription {
                name,
                role: role_name(role),
                exists: false,
                partition_count: 0,
                replication_factor: 0,
                configs: BTreeMap::new(),
                partitions: Vec::new(),
            });
            continue;
        };
        let query = OffsetQuery::new(settings, "inspect", &name)?;
        let starts = query.start_offsets(&layout.partitions)?;
        let ends = query.end_offsets(&layout.partitions)?;
        // Only the events topic is consumed by the group; consent and the
        // changelog are read by assignment and have no committed offsets.
        let committed = if role == TopicRole::Events {
            Some(group_committed(
                settings,
                &name,
                &layout.partitions,
                timeout,
            )?)
        } else {
            None
        };
        let partitions = layout
            .partitions
            .iter()
            .map(|&p| {
                let start = starts.get(&p).copied().unwrap_or(0);
                let end = ends.get(&p).copied().unwrap_or(0);
                let done = committed.as_ref().map(|c| c.get(&p).copied());
                PartitionOffsets {
                    partition: p,
                    start,
                    end,
                    committed: done.flatten(),
                    lag: done.map(|c| (end - c.unwrap_or(start)).max(0)),
                }
            })
            .collect();
        out.push(TopicDescription {
            role: role_name(role),
            exists: true,
            partition_count: layout.partitions.len(),
            replication_factor: layout.replication_factor,
            configs: configs.get(&name).cloned().unwrap_or_default(),
            partitions,
            name,
        });
    }
    Ok(out)
}

/// The [`SHOWN_CONFIGS`] of every existing topic of the deployment, in one
/// DescribeConfigs request.
async fn topic_configs(
    settings: &KafkaSettings,
    cluster: &ClusterView,
    timeout: Duration,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, KafkaError> {
    let admin: AdminClient<LoggedContext> =
        client_config::admin(settings).create_with_context(LoggedContext)?;
    let names: Vec<String> = topics(settings)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| cluster.contains_key(n))
        .collect();
    let specs: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let mut out = BTreeMap::new();
    if specs.is_empty() {
        return Ok(out);
    }
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    for res in admin.describe_configs(specs.iter(), &opts).await? {
        let res = res.map_err(|code| KafkaError::Topics(format!("describe configs: {code}")))?;
        let OwnedResourceSpecifier::Topic(name) = &res.specifier else {
            continue;
        };
        let shown = SHOWN_CONFIGS
            .iter()
            .filter_map(|key| {
                let value = res.get(key)?.value.clone()?;
                Some(((*key).to_owned(), value))
            })
            .collect();
        out.insert(name.clone(), shown);
    }
    Ok(out)
}

/// The group's committed offsets on `topic`, read without joining the
/// group. The runtime commits them inside its transactions
/// (`send_offsets_to_transaction`), so they move only when a transaction
/// commits: they are exactly the input whose outputs are visible.
fn group_committed(
    settings: &KafkaSettings,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let mut cfg = client_config::reader(settings, "inspect");
    cfg.set("group.id", &settings.group_id);
    let consumer: BaseConsumer<LoggedContext> = cfg.create_with_context(LoggedContext)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}
