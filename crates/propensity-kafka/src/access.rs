//! Data-subject access: "what does Propensity hold about this visitor?"
//! answered by the pipeline thread that owns the visitor's partition (the
//! engines are owned by that thread, so questions travel to it through a
//! channel and it answers between batches). Also the Java client's murmur2
//! partitioner, to say which partition — and so which instance — owns a
//! visitor held elsewhere.

use std::sync::mpsc::{Receiver, Sender};

use serde::Serialize;

/// A question for the pipeline.
pub struct AccessRequest {
    /// The visitor asked about.
    pub visitor_id: String,
    /// Where the answer goes.
    pub reply: Sender<AccessAnswer>,
}

/// The pipeline's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AccessAnswer {
    /// This instance owns the visitor's partition; `held` is everything kept
    /// (null when nothing is).
    Owned {
        /// Partition of the visitor.
        partition: i32,
        /// What is held.
        held: Option<serde_json::Value>,
    },
    /// Another instance owns the partition.
    OwnedElsewhere {
        /// Partition of the visitor.
        partition: i32,
        /// Partitions this instance owns.
        owned_here: Vec<i32>,
    },
}

/// The channel pair between HTTP and pipeline.
pub fn access_channel() -> (Sender<AccessRequest>, Receiver<AccessRequest>) {
    std::sync::mpsc::channel()
}

/// Kafka's murmur2 hash (the Java client's default partitioner for keyed
/// records; librdkafka's `murmur2_random` is the same).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition of a key among `partitions`, as the Java client computes it.
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        // Values from Kafka's UtilsTest.testMurmur2 (the Java client).
        let cases: [(&[u8], i32); 3] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key) as i32,
                expected,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }
}
