//! Reading the adaptive models' committed state out of the changelog topic
//! (the records marked [`ADAPTIVE_STATE_HEADER`], one per partition and
//! commit that changed its learners), for snapshots of a running
//! deployment: read_committed, no group, nothing committed.

use std::collections::BTreeMap;
use std::time::Duration;

use propensity_engine::adaptive::LearnerState;
use rdkafka::message::{Headers, Message};

use crate::error::KafkaError;
use crate::reader::PartitionReader;
use crate::settings::KafkaSettings;
use crate::shard::ADAPTIVE_STATE_HEADER;
use crate::CancellationToken;

/// Per changelog partition, its latest committed learner states (by
/// outcome name); partitions without any are absent.
pub type PartitionLearnerStates = BTreeMap<i32, Vec<(String, LearnerState)>>;

/// Reads every partition of `kafka.changelog_topic` to its end and keeps
/// the latest adaptive-state record of each.
pub fn read_latest_learner_states(
    settings: &KafkaSettings,
) -> Result<PartitionLearnerStates, KafkaError> {
    let topic = &settings.changelog_topic;
    let cluster = crate::inspect::probe(settings, Duration::from_secs(10))?;
    let Some(layout) = cluster.get(topic.as_str()) else {
        return Err(KafkaError::Config {
            key: "kafka.changelog_topic".into(),
            message: format!("topic `{topic}` does not exist on `{}`", settings.brokers),
        });
    };
    let mut reader = PartitionReader::new(settings, "adaptive-snapshot", topic)?;
    let from_start: Vec<(i32, Option<i64>)> =
        layout.partitions.iter().map(|p| (*p, None)).collect();
    reader.assign(&from_start)?;
    let ends = reader.end_offsets(&layout.partitions)?;
    let mut latest = PartitionLearnerStates::new();
    let mut unreadable = None;
    reader.read_until(&ends, &CancellationToken::new(), |p, msg| {
        let marked = msg
            .headers()
            .is_some_and(|h| h.iter().any(|x| x.key == ADAPTIVE_STATE_HEADER));
        if !marked {
            return;
        }
        match serde_json::from_slice(msg.payload().unwrap_or_default()) {
            Ok(states) => {
                latest.insert(p, states);
            }
            Err(e) => {
                unreadable.get_or_insert(format!("partition {p} offset {}: {e}", msg.offset()));
            }
        }
    })?;
    match unreadable {
        Some(e) => Err(KafkaError::Config {
            key: "kafka.changelog_topic".into(),
            message: format!("an adaptive state record is unreadable: {e}"),
        }),
        None => Ok(latest),
    }
}
