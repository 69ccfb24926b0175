//! A side-input reader reassigned in quick succession, as a revocation
//! followed by a rewind does to the consent reader (keep some partitions,
//! then none), must not end the process.
//!
//! librdkafka 2.12.1 aborts when a partition's fetcher is stopped a second
//! time before the first stop's reply is served
//! (confluentinc/librdkafka#5573); a plain `assign` stops every partition,
//! kept ones included, so two assignments close together did exactly that
//! and an instance was seen aborting. `PartitionReader::assign` now leaves
//! kept partitions alone.
//!
//! An abort cannot be caught, so the reassignments run in a child process:
//! this test binary run again with [`CHILD`] set, and the parent checks
//! that it exited cleanly.

use std::process::Command;
use std::time::Duration;

use propensity_kafka::reader::PartitionReader;
use propensity_kafka::{CancellationToken, KafkaSettings};
use propensity_system_tests::{brokers, last_lines, AckProducer, Deployment};

/// Set (to the events topic's name) in the child process.
const CHILD: &str = "PROPENSITY_TEST_REASSIGNMENT_CHILD";
/// Rounds of (read everything, keep all but one partition, keep none).
const ROUNDS: usize = 150;
const TEST_NAME: &str = "quick_reassignments_of_a_reader_do_not_end_the_process";

#[test]
fn quick_reassignments_of_a_reader_do_not_end_the_process() {
    if let Ok(topic) = std::env::var(CHILD) {
        reassign_in_rounds(&topic);
        return;
    }
    let d = Deployment::new("reassign", 6, false);
    let topic = d.settings.events_topic.clone();
    // Records in every partition, so that each round's reader has fetchers
    // running when its assignment changes.
    let producer = AckProducer::new(&d.settings, &[]);
    for i in 0..600 {
        let key = format!("v-{i}");
        producer.send(&topic, Some(key.as_bytes()), Some(b"{}"), None);
    }
    producer.flush(Duration::from_secs(60));

    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(CHILD, &topic)
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the child ended with {} after reassigning its reader:\n{}",
        output.status,
        last_lines(&stderr, 15)
    );
    assert!(
        stdout.contains(&format!("{ROUNDS} rounds")),
        "the child did not report its rounds: {stdout}"
    );
}

/// The child: each round reads every partition to its end from the start
/// (as a restore does), then keeps all partitions but one at their
/// positions (a revocation), then keeps none (the rewind after it).
fn reassign_in_rounds(topic: &str) {
    let settings = KafkaSettings {
        brokers: brokers(),
        group_id: format!("{topic}-reassign"),
        ..KafkaSettings::default()
    };
    let mut reader = PartitionReader::new(&settings, "reassign", topic).expect("reader");
    let partitions: Vec<i32> = (0..6).collect();
    let never = CancellationToken::new();
    let mut delivered = 0usize;
    for _ in 0..ROUNDS {
        let from_start: Vec<(i32, Option<i64>)> = partitions.iter().map(|p| (*p, None)).collect();
        reader.assign(&from_start).expect("assign from the start");
        let ends = reader.end_offsets(&partitions).expect("end offsets");
        reader
            .read_until(&ends, &never, |_, _| delivered += 1)
            .expect("read to the end");
        let kept: Vec<(i32, Option<i64>)> = reader
            .assigned()
            .into_iter()
            .filter(|(p, _)| *p != 0)
            .map(|(p, pos)| (p, Some(pos)))
            .collect();
        reader.assign(&kept).expect("keep all but one");
        reader.assign(&[]).expect("keep none");
    }
    println!("{ROUNDS} rounds, {delivered} records delivered");
}
