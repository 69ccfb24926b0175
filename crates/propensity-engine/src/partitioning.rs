//! Which Kafka partition a visitor belongs to: the Java client's default
//! partitioner for keyed records (murmur2 of the key, made positive, modulo
//! the partition count; librdkafka's `murmur2_random` is the same), with
//! the visitor id as the key.
//!
//! Partitions are the unit of ordering and ownership: the Kafka runtime
//! runs one engine per partition, `replay` one engine for all of them. So
//! every engine-level clock and bound (watermark, pre-consent TTL sweep,
//! idle sweep, the total buffer cap, session serials) is kept per
//! partition, and the engine places a visitor with this function; both
//! deployments then see the same per-partition state for the same
//! per-partition input order. Pure: the same bytes always give the same
//! partition, on every platform.

/// Largest supported partition count. Session serials carry the partition
/// in their top bits (see [`crate::Engine`]), which leaves room for 2^44
/// sessions per partition; Kafka clusters stay far below this count.
pub const MAX_PARTITIONS: u32 = 1 << 20;

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
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

/// The partition of a key among `partitions` (at least 1 is assumed), as
/// the Java client computes it: `toPositive(murmur2(key)) % partitions`,
/// where `toPositive` clears the sign bit (it is not `abs`).
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    partition_of_u32(key, partitions.max(1) as u32) as i32
}

/// [`partition_of`] on unsigned counts; one partition needs no hashing.
pub fn partition_of_u32(key: &[u8], partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
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

    #[test]
    fn partition_is_the_positive_hash_modulo_the_count() {
        // toPositive(-973932308) = 0x7fffffff & -973932308 = 1173551340.
        assert_eq!(partition_of(b"21", 6), 1_173_551_340 % 6);
        // toPositive(-790332482) = 1357151166.
        assert_eq!(partition_of(b"foobar", 7), 1_357_151_166 % 7);
        // toPositive(-985981536) = 1161502112.
        assert_eq!(
            partition_of(b"a-little-bit-long-string", 12),
            1_161_502_112 % 12
        );
        // One partition (or a nonsensical count) is partition 0.
        assert_eq!(partition_of(b"foobar", 1), 0);
        assert_eq!(partition_of(b"foobar", 0), 0);
        assert_eq!(partition_of_u32(b"foobar", 1), 0);
        for n in 1..40u32 {
            let p = partition_of_u32(b"visitor-000123", n);
            assert!(p < n);
            assert_eq!(p as i32, partition_of(b"visitor-000123", n as i32));
        }
    }
}
