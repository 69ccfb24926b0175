//! librdkafka client configurations: the user's pass-through properties
//! first, then the settings exactly-once and co-partitioning depend on,
//! which always win (validation already refuses user entries for them).

use rdkafka::ClientConfig;

use crate::settings::KafkaSettings;

/// The partitioner every Propensity producer uses: librdkafka's murmur2 with
/// random placement of null keys, which places keyed records exactly like
/// the Java client's default partitioner. Producers of the events and consent
/// topics must use murmur2 as well, or a visitor's events and consent land on
/// different partition numbers.
pub const PARTITIONER: &str = "murmur2_random";

fn base(settings: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in &settings.client {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &settings.brokers);
    c
}

/// The group consumer of the events topic.
pub fn events_consumer(settings: &KafkaSettings, instance_id: &str) -> ClientConfig {
    let mut c = base(settings);
    let queued_kib = (settings.max_in_flight_bytes / 2 / 1024).max(1024);
    c.set("group.id", &settings.group_id)
        // Static membership: a restarted instance takes its partitions back
        // at once instead of waiting for a rebalance.
        .set(
            "group.instance.id",
            format!("{}-{instance_id}", settings.group_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // Incremental rebalancing: adding or removing an instance moves
        // only the partitions that change owner; the others keep their
        // state and keep processing.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("queued.max.messages.kbytes", queued_kib.to_string())
        .set("enable.partition.eof", "false");
    set_default(&mut c, settings, "session.timeout.ms", "10000");
    set_default(&mut c, settings, "heartbeat.interval.ms", "1000");
    set_prefetch_backoff(&mut c, settings);
    c
}

/// librdkafka stops fetching a partition whose prefetch queue is full for
/// `fetch.queue.backoff.ms` (1 s by default). A reader that drains the
/// queue faster than that then idles until the backoff ends: restores were
/// seen taking whole extra seconds this way. A short backoff keeps the
/// prefetch going as soon as there is room.
fn set_prefetch_backoff(c: &mut ClientConfig, settings: &KafkaSettings) {
    set_default(c, settings, "fetch.queue.backoff.ms", "10");
}

/// A consumer that reads partitions by assignment (consent and changelog
/// readers): no group membership, no commits, committed data only.
pub fn reader(settings: &KafkaSettings, purpose: &str) -> ClientConfig {
    let mut c = base(settings);
    c.set(
        "group.id",
        format!("{}-{purpose}-reader", settings.group_id),
    )
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("isolation.level", "read_committed")
    .set("auto.offset.reset", "earliest")
    .set("enable.partition.eof", "false");
    set_prefetch_backoff(&mut c, settings);
    c
}

/// The transactional producer of an instance.
pub fn transactional_producer(settings: &KafkaSettings, instance_id: &str) -> ClientConfig {
    let mut c = base(settings);
    let queued_kib = (settings.max_in_flight_bytes / 2 / 1024).max(1024);
    c.set(
        "transactional.id",
        format!(
            "{}-{}-{instance_id}",
            settings.transactional_id_prefix, settings.group_id
        ),
    )
    .set("enable.idempotence", "true")
    .set("partitioner", PARTITIONER)
    .set("queue.buffering.max.kbytes", queued_kib.to_string());
    set_default(&mut c, settings, "transaction.timeout.ms", "10000");
    set_default(&mut c, settings, "linger.ms", "5");
    c
}

/// A plain producer (test traffic, benchmarks).
pub fn plain_producer(settings: &KafkaSettings) -> ClientConfig {
    let mut c = base(settings);
    c.set("partitioner", PARTITIONER)
        .set("enable.idempotence", "true");
    set_default(&mut c, settings, "linger.ms", "5");
    c
}

/// An admin client.
pub fn admin(settings: &KafkaSettings) -> ClientConfig {
    base(settings)
}

fn set_default(c: &mut ClientConfig, settings: &KafkaSettings, key: &str, value: &str) {
    if !settings.client.contains_key(key) {
        c.set(key, value);
    }
}
