//! Stable 64-bit hashing for everything that must not change between builds,
//! machines or releases: hashed feature buckets (a model trained today must
//! see the same bucket tomorrow), offer ids (consumers deduplicate on them),
//! event-id sets and the feature-spec fingerprint.
//!
//! `std`'s `DefaultHasher` is explicitly unstable across releases and
//! `ahash` is randomised per process, so neither may feed anything that is
//! persisted or compared across runs. FNV-1a is tiny, allocation-free and
//! fixed forever; a SplitMix64 finaliser repairs its weak low-bit avalanche
//! so that `hash % buckets` spreads well even for short inputs.

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hashes `bytes` with a `seed` mixed into the initial state.
///
/// Different seeds give independent hash functions; they are used to build
/// 128-bit offer ids from two 64-bit halves.
pub fn stable_hash_seeded(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET ^ splitmix(seed);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    splitmix(h)
}

/// Hashes `bytes` with seed 0.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    stable_hash_seeded(0, bytes)
}

/// Hashes several parts so that `["ab", "c"]` and `["a", "bc"]` differ: each
/// part is followed by its length, which makes the encoding unambiguous.
pub fn stable_hash_parts(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET ^ splitmix(seed);
    for part in parts {
        for &b in part.iter().chain((part.len() as u64).to_le_bytes().iter()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    splitmix(h)
}

/// The SplitMix64 finaliser: a bijective mix with full avalanche.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps `bytes` to one of `buckets` buckets (`buckets` must be non-zero).
pub fn bucket_of(bytes: &[u8], buckets: usize) -> usize {
    (stable_hash(bytes) % buckets as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_pinned_forever() {
        // These values are persisted in models and offer ids: if this test
        // fails, the change breaks every trained model and every consumer's
        // deduplication. Do not update the constants; revert the change.
        assert_eq!(stable_hash(b""), 0x5b21_f68f_fa77_f14c);
        assert_eq!(stable_hash(b"purchase"), 0xc9e9_5663_0c15_111b);
        assert_eq!(stable_hash(b"/products"), 0x6142_5f7f_05ab_7d8a);
    }

    #[test]
    fn parts_are_unambiguous() {
        assert_ne!(
            stable_hash_parts(1, &[b"ab", b"c"]),
            stable_hash_parts(1, &[b"a", b"bc"])
        );
    }

    #[test]
    fn seeds_give_independent_functions() {
        assert_ne!(stable_hash_seeded(1, b"x"), stable_hash_seeded(2, b"x"));
    }

    #[test]
    fn buckets_spread() {
        let mut counts = [0usize; 8];
        for i in 0..8000 {
            counts[bucket_of(format!("/p/{i}").as_bytes(), 8)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
