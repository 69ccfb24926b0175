//! Compact per-visitor state: which containers hold it, and [`MaybeMs`], the
//! one that is still written here. An engine shard holds one entry per
//! concurrent visitor (a million is a normal load), so what an entry costs
//! is what bounds memory: a `String` or `Vec` is 24 bytes plus a separate
//! heap block (32 bytes at least with glibc's malloc) even for a few bytes
//! of content, and an `Option<i64>` is 16 bytes for 8 of time.
//!
//! The containers are kept crates, not home-made ones:
//! - strings (visitor and session ids, the current path, the traffic
//!   source) are [`compact_str::CompactString`]: 24 bytes like a `String`,
//!   up to 24 bytes inline, and `Option<CompactString>` is 24 bytes too.
//!   Visitor ids, derived `auto-…` session ids (21 bytes) and most paths
//!   need no heap block.
//! - short lists (event-id hashes, distinct pages, one slot per outcome,
//!   per action map and per feature counter) are [`smallvec::SmallVec`] with
//!   its `union` feature, which keeps the inline/heap state in the length
//!   word instead of an enum tag: `SmallVec<[u64; 3]>` is 32 bytes and
//!   `SmallVec<[f32; 4]>` 24, as the hand-written vectors they replace were
//!   (the tests below pin this, since without `union` each is 8 bytes more
//!   and the visitor's heap block moves up a malloc size class). Its
//!   `const_generics` feature admits any inline length (the feature
//!   counters keep 48).
//!
//! Both serialize exactly like the `String` / `Vec<T>` they stand for (a
//! string, a sequence), and [`MaybeMs`] like `Option<i64>`, so the changelog
//! format does not depend on the in-memory representation.
//!
//! They replaced hand-written `SmallStr`, `InlineVec` and `Slots` (the last
//! two near twins) with no loss. `propensity bench --memory-visitors
//! 200000` (release, 2 busy cores), ten alternating runs of each binary,
//! medians: engine/parse-only ratio 0.433 hand-written, 0.444 with
//! `SmallVec` alone, 0.464 with `SmallVec` and `CompactString` (the
//! spread within each is ±0.05); 565, 564 and 564 bytes per visitor
//! (resident memory moves in steps of about 10 bytes per visitor here).
//! `VisitorEntry` (40), `Activity` (488), `Session` (464) and
//! `Accumulators` (264 bytes) kept their sizes. `tinyvec::TinyVec` was not
//! taken: it is an enum of an `ArrayVec` (with its own length) and a `Vec`,
//! a word larger than `SmallVec` with `union` for these lists.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An optional time in epoch milliseconds in 8 bytes. Kept hand-written:
/// `Option<i64>` takes 16, and the field sits in every visitor's hash-table
/// entry ([`crate::visitor::VisitorEntry::last_event_ms`], a table that
/// holds up to twice as many slots as visitors, so 8 bytes there is up to
/// 16 per visitor) as well as in every session and offer record.
/// `Option<NonZeroI64>` would lose time 0, and a crate such as `nonmax`
/// gives the same 8 bytes for a dependency; this is forty lines whose
/// "none" rule is the engine's own.
///
/// `i64::MIN` stands for "none": it is not a time RFC 3339 can express
/// (years 0000–9999 are within ±4·10¹⁴ ms), so no event or record time is
/// lost to it. Serializes like `Option<i64>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MaybeMs(i64);

impl MaybeMs {
    /// No time.
    pub const NONE: MaybeMs = MaybeMs(i64::MIN);

    /// The time, if any.
    #[inline]
    pub fn get(self) -> Option<i64> {
        (self.0 != i64::MIN).then_some(self.0)
    }

    /// Wraps an optional time (`Some(i64::MIN)` reads back as `None`).
    #[inline]
    pub fn new(t: Option<i64>) -> Self {
        MaybeMs(t.unwrap_or(i64::MIN))
    }

    /// Whether a time is held.
    #[inline]
    pub fn is_some(self) -> bool {
        self.0 != i64::MIN
    }
}

impl Default for MaybeMs {
    fn default() -> Self {
        Self::NONE
    }
}

impl From<Option<i64>> for MaybeMs {
    fn from(t: Option<i64>) -> Self {
        Self::new(t)
    }
}

impl fmt::Debug for MaybeMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

impl Serialize for MaybeMs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for MaybeMs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<i64>::deserialize(d).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    //! The properties of the crate containers that the engine's memory and
    //! changelog format rely on: a feature flag or version bump that
    //! changes them fails here rather than in a benchmark.

    use super::*;
    use compact_str::CompactString;
    use smallvec::SmallVec;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    use std::mem::size_of;

    fn hash_of<T: Hash + ?Sized>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn containers_keep_their_size() {
        assert_eq!(size_of::<CompactString>(), 24);
        assert_eq!(size_of::<Option<CompactString>>(), 24);
        // The `union` feature: the inline/heap state shares the length word.
        assert_eq!(size_of::<SmallVec<[u64; 3]>>(), 32);
        assert_eq!(size_of::<SmallVec<[f32; 4]>>(), 24);
        assert_eq!(size_of::<SmallVec<[u32; 4]>>(), 24);
        assert_eq!(size_of::<SmallVec<[u32; 5]>>(), 32);
        assert_eq!(size_of::<SmallVec<[f32; 48]>>(), 200);
        assert_eq!(size_of::<MaybeMs>(), 8);
    }

    #[test]
    fn strings_are_inline_up_to_24_bytes_and_serialize_like_a_string() {
        for s in [
            "",
            "visitor-000000001",
            "auto-0123456789abcdef",
            &"x".repeat(24),
            &"y".repeat(25),
            "/products/a-very-long-path-name",
        ] {
            let c = CompactString::new(s);
            assert_eq!(c.as_str(), s);
            assert_eq!(c.is_heap_allocated(), s.len() > 24, "{s}");
            // Maps keyed by it are queried with a `&str` (`Borrow<str>`).
            assert_eq!(hash_of(&c), hash_of(s));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<CompactString>(&json).unwrap(), c);
        }
        let mut source = CompactString::new("Ünïcode-Sources-Are-Long");
        source.make_ascii_lowercase();
        assert_eq!(source, "Ünïcode-Sources-Are-Long".to_ascii_lowercase());
    }

    #[test]
    fn lists_spill_and_serialize_like_a_vec() {
        let mut v: SmallVec<[u64; 3]> = SmallVec::new();
        for i in 0..5 {
            v.push(i);
        }
        assert!(v.spilled());
        v.remove(0);
        assert_eq!(&*v, &[1, 2, 3, 4]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, serde_json::to_string(&v.to_vec()).unwrap());
        assert_eq!(json, "[1,2,3,4]");
        assert_eq!(
            serde_json::from_str::<SmallVec<[u64; 3]>>(&json).unwrap(),
            v
        );
        let short: SmallVec<[u32; 4]> = serde_json::from_str("[0,2,0]").unwrap();
        assert!(!short.spilled());
        assert_eq!(&*short, &[0, 2, 0]);
        let slots: SmallVec<[f32; 4]> = SmallVec::from_elem(f32::NAN, 3);
        assert_eq!(slots.len(), 3);
        assert!(slots.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn maybe_ms_is_an_option() {
        for t in [None, Some(0), Some(-5), Some(1_795_946_400_123)] {
            let m = MaybeMs::new(t);
            assert_eq!(m.get(), t);
            assert_eq!(m.is_some(), t.is_some());
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, serde_json::to_string(&t).unwrap());
            assert_eq!(serde_json::from_str::<MaybeMs>(&json).unwrap(), m);
        }
    }
}
