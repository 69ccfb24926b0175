//! Compact containers for per-visitor state. An engine shard holds one
//! entry per concurrent visitor (a million is a normal load), so what an
//! entry costs is what bounds memory: a `String` or `Vec` is 24 bytes plus a
//! separate heap block (32 bytes at least with glibc's malloc) even for a
//! few bytes of content. The types here keep short content inline and fall
//! back to the heap only when it does not fit, which also saves an
//! allocation (and a pointer chase) on the hot path.
//!
//! [`SmallStr`], [`InlineVec`] and [`Slots`] serialize exactly like the
//! `String` / `Vec<T>` they replace, and [`MaybeMs`] like `Option<i64>`, so
//! the changelog format does not depend on the in-memory representation.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

/// Bytes a [`SmallStr`] keeps inline: 22 fills the 24 bytes a `Box<str>`
/// plus the enum tag occupy anyway.
const INLINE_STR: usize = 22;

/// An immutable string that stores up to 22 bytes inline (ids such as
/// `visitor_id`, derived `auto-…` session ids and most URL paths) and longer
/// ones in a `Box<str>`. 24 bytes, like a `String`, but without a heap block
/// for short content.
///
/// Invariant: content of at most 22 bytes (`INLINE_STR`) is always inline, so
/// equal strings have equal representations; inline bytes are UTF-8 and
/// the unused inline bytes are zero, so two inline strings are equal when
/// their whole fixed-size arrays are (compared without a `memcmp` call).
#[derive(Clone)]
pub struct SmallStr(StrRepr);

#[derive(Clone)]
enum StrRepr {
    Inline { len: u8, bytes: [u8; INLINE_STR] },
    Heap(Box<str>),
}

impl SmallStr {
    /// The empty string.
    pub const EMPTY: SmallStr = SmallStr(StrRepr::Inline {
        len: 0,
        bytes: [0; INLINE_STR],
    });

    /// A copy of `s`.
    pub fn new(s: &str) -> Self {
        Self::from_bytes_of(s)
    }

    /// A copy of `s` with ASCII letters lower-cased (what
    /// `str::to_ascii_lowercase` returns, without the temporary `String`).
    pub fn ascii_lowercase(s: &str) -> Self {
        if s.len() <= INLINE_STR {
            let mut bytes = [0; INLINE_STR];
            for (d, c) in bytes.iter_mut().zip(s.bytes()) {
                *d = c.to_ascii_lowercase();
            }
            SmallStr(StrRepr::Inline {
                len: s.len() as u8,
                bytes,
            })
        } else {
            SmallStr(StrRepr::Heap(s.to_ascii_lowercase().into_boxed_str()))
        }
    }

    /// A copy of `s` when it fits inline (no allocation), else `None`.
    pub fn inline(s: &str) -> Option<Self> {
        (s.len() <= INLINE_STR).then(|| Self::from_bytes_of(s))
    }

    fn from_bytes_of(s: &str) -> Self {
        if s.len() <= INLINE_STR {
            let mut bytes = [0; INLINE_STR];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            SmallStr(StrRepr::Inline {
                len: s.len() as u8,
                bytes,
            })
        } else {
            SmallStr(StrRepr::Heap(s.into()))
        }
    }

    /// Replaces the content with `s`, keeping the heap block when the
    /// content is unchanged.
    pub fn set(&mut self, s: &str) {
        if self.as_bytes() != s.as_bytes() {
            *self = Self::new(s);
        }
    }

    /// The content as bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            StrRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StrRepr::Heap(s) => s.as_bytes(),
        }
    }

    /// The content. Inline content was copied from a `&str` (or lower-cased
    /// byte-wise, which keeps UTF-8 valid), so the check cannot fail; it is
    /// a few nanoseconds on at most 22 bytes and keeps the crate free of
    /// `unsafe`.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            StrRepr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            StrRepr::Heap(s) => s,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for SmallStr {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl From<&str> for SmallStr {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl PartialEq for SmallStr {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (StrRepr::Inline { len: a, bytes: x }, StrRepr::Inline { len: b, bytes: y }) => {
                a == b && x == y
            }
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for SmallStr {}

impl PartialEq<str> for SmallStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// Hashes like `[u8]` so that maps keyed by `SmallStr` can be queried with
/// `&[u8]` (the [`Borrow`] contract), without building a key.
impl Hash for SmallStr {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for SmallStr {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SmallStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SmallStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SmallStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<SmallStr, E> {
                Ok(SmallStr::new(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// A vector of `Copy` items that keeps up to `N` of them inline and moves
/// to a `Vec` beyond that. For per-session lists that are usually short
/// (event-id hashes, distinct pages, one slot per outcome or action map).
///
/// Invariant: `N <= 255` (the inline length is a `u8`; checked at compile
/// time when the type is used).
#[derive(Clone)]
pub struct InlineVec<T: Copy + Default, const N: usize>(VecRepr<T, N>);

#[derive(Clone)]
enum VecRepr<T: Copy + Default, const N: usize> {
    Inline { len: u8, items: [T; N] },
    Heap(Vec<T>),
}

impl<T: Copy + Default, const N: usize> InlineVec<T, N> {
    const FITS: () = assert!(N <= u8::MAX as usize, "InlineVec capacity must fit a u8");

    /// An empty vector.
    pub fn new() -> Self {
        let () = Self::FITS;
        InlineVec(VecRepr::Inline {
            len: 0,
            items: [T::default(); N],
        })
    }

    /// `n` copies of `value`.
    pub fn from_elem(value: T, n: usize) -> Self {
        let () = Self::FITS;
        if n <= N {
            let mut items = [T::default(); N];
            items[..n].fill(value);
            InlineVec(VecRepr::Inline {
                len: n as u8,
                items,
            })
        } else {
            InlineVec(VecRepr::Heap(vec![value; n]))
        }
    }

    /// A copy of `items`.
    pub fn from_slice(items: &[T]) -> Self {
        let mut v = Self::from_elem(T::default(), items.len());
        v.copy_from_slice(items);
        v
    }

    /// Appends an item (moving to the heap when the inline space is full).
    pub fn push(&mut self, item: T) {
        match &mut self.0 {
            VecRepr::Inline { len, items } if usize::from(*len) < N => {
                items[usize::from(*len)] = item;
                *len += 1;
            }
            VecRepr::Inline { items, .. } => {
                let mut v = Vec::with_capacity(2 * N.max(2));
                v.extend_from_slice(items);
                v.push(item);
                self.0 = VecRepr::Heap(v);
            }
            VecRepr::Heap(v) => v.push(item),
        }
    }

    /// Removes the first item, shifting the others down (nothing when
    /// empty).
    pub fn remove_first(&mut self) {
        match &mut self.0 {
            VecRepr::Inline { len, items } => {
                if *len > 0 {
                    items.copy_within(1..usize::from(*len), 0);
                    *len -= 1;
                }
            }
            VecRepr::Heap(v) => {
                if !v.is_empty() {
                    v.remove(0);
                }
            }
        }
    }
}

impl<T: Copy + Default, const N: usize> Default for InlineVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default, const N: usize> Deref for InlineVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.0 {
            VecRepr::Inline { len, items } => &items[..usize::from(*len)],
            VecRepr::Heap(v) => v,
        }
    }
}

impl<T: Copy + Default, const N: usize> DerefMut for InlineVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.0 {
            VecRepr::Inline { len, items } => &mut items[..usize::from(*len)],
            VecRepr::Heap(v) => v,
        }
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for InlineVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Copy + Default + fmt::Debug, const N: usize> fmt::Debug for InlineVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Copy + Default + Serialize, const N: usize> Serialize for InlineVec<T, N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de, T: Copy + Default + Deserialize<'de>, const N: usize> Deserialize<'de>
    for InlineVec<T, N>
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<T>::deserialize(d)?;
        Ok(if v.len() <= N {
            Self::from_slice(&v)
        } else {
            InlineVec(VecRepr::Heap(v))
        })
    }
}

/// A fixed-length list of `Copy` slots (one per outcome, one per action
/// map): up to `N` inline, more in a `Box<[T]>`. Unlike [`InlineVec`] it
/// cannot grow, which keeps it at 24 bytes (a `Vec` fallback makes 32).
///
/// Invariant: `N <= 255`, checked at compile time when the type is used.
#[derive(Clone)]
pub struct Slots<T: Copy + Default, const N: usize>(SlotsRepr<T, N>);

#[derive(Clone)]
enum SlotsRepr<T: Copy + Default, const N: usize> {
    Inline { len: u8, items: [T; N] },
    Heap(Box<[T]>),
}

impl<T: Copy + Default, const N: usize> Slots<T, N> {
    const FITS: () = assert!(N <= u8::MAX as usize, "Slots capacity must fit a u8");

    /// `n` copies of `value`.
    pub fn from_elem(value: T, n: usize) -> Self {
        let () = Self::FITS;
        if n <= N {
            let mut items = [T::default(); N];
            items[..n].fill(value);
            Slots(SlotsRepr::Inline {
                len: n as u8,
                items,
            })
        } else {
            Slots(SlotsRepr::Heap(vec![value; n].into_boxed_slice()))
        }
    }

    /// A copy of `items`.
    pub fn from_slice(items: &[T]) -> Self {
        let mut s = Self::from_elem(T::default(), items.len());
        s.copy_from_slice(items);
        s
    }
}

impl<T: Copy + Default, const N: usize> Deref for Slots<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.0 {
            SlotsRepr::Inline { len, items } => &items[..usize::from(*len)],
            SlotsRepr::Heap(v) => v,
        }
    }
}

impl<T: Copy + Default, const N: usize> DerefMut for Slots<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.0 {
            SlotsRepr::Inline { len, items } => &mut items[..usize::from(*len)],
            SlotsRepr::Heap(v) => v,
        }
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for Slots<T, N> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Copy + Default + fmt::Debug, const N: usize> fmt::Debug for Slots<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Copy + Default + Serialize, const N: usize> Serialize for Slots<T, N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de, T: Copy + Default + Deserialize<'de>, const N: usize> Deserialize<'de> for Slots<T, N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_slice(&Vec::<T>::deserialize(d)?))
    }
}

/// An optional time in epoch milliseconds in 8 bytes (`Option<i64>` takes
/// 16). `i64::MIN` stands for "none": it is not a time RFC 3339 can express
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
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of<T: Hash + ?Sized>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn small_str_inline_and_heap_agree() {
        for s in [
            "",
            "v-000001",
            "auto-0123456789abcdef",
            &"x".repeat(22),
            &"y".repeat(23),
        ] {
            let a = SmallStr::new(s);
            assert_eq!(a.as_str(), s);
            assert_eq!(a.len(), s.len());
            assert_eq!(hash_of(&a), hash_of(s.as_bytes()));
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<SmallStr>(&json).unwrap(), a);
        }
        assert_eq!(SmallStr::ascii_lowercase("GooGle").as_str(), "google");
        assert_eq!(
            SmallStr::ascii_lowercase("Ünïcode-Sources-Are-Long").as_str(),
            "Ünïcode-Sources-Are-Long".to_ascii_lowercase()
        );
        let mut p = SmallStr::new("/a");
        p.set("/products/a-very-long-path-name");
        assert_eq!(p.as_str(), "/products/a-very-long-path-name");
        p.set("/b");
        assert_eq!(p, *"/b");
        assert_eq!(SmallStr::inline("/b"), Some(SmallStr::new("/b")));
        assert_eq!(SmallStr::inline(&"z".repeat(23)), None);
        assert_ne!(SmallStr::new("ab"), SmallStr::new("a"));
        assert_eq!(SmallStr::ascii_lowercase("AB"), SmallStr::new("ab"));
    }

    #[test]
    fn slots_are_small_and_serialize_like_a_vec() {
        assert_eq!(std::mem::size_of::<Slots<f32, 4>>(), 24);
        let mut s: Slots<u32, 4> = Slots::from_elem(0, 3);
        s[1] += 2;
        assert_eq!(serde_json::to_string(&s).unwrap(), "[0,2,0]");
        let big: Slots<u32, 2> = Slots::from_slice(&[1, 2, 3]);
        assert_eq!(&*big, &[1, 2, 3]);
        assert_eq!(
            serde_json::from_str::<Slots<u32, 2>>("[1,2,3]").unwrap(),
            big
        );
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
        assert_eq!(std::mem::size_of::<MaybeMs>(), 8);
    }

    #[test]
    fn inline_vec_spills_and_serializes_like_a_vec() {
        let mut v: InlineVec<u64, 2> = InlineVec::new();
        for i in 0..5 {
            v.push(i);
        }
        assert_eq!(&*v, &[0, 1, 2, 3, 4]);
        v.remove_first();
        assert_eq!(&*v, &[1, 2, 3, 4]);
        let mut w: InlineVec<u64, 4> = InlineVec::from_slice(&[7, 8]);
        w.remove_first();
        w.push(9);
        assert_eq!(&*w, &[8, 9]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, "[1,2,3,4]");
        assert_eq!(serde_json::from_str::<InlineVec<u64, 2>>(&json).unwrap(), v);
        let f: InlineVec<f32, 4> = InlineVec::from_elem(f32::NAN, 3);
        assert_eq!(f.len(), 3);
        assert!(f.iter().all(|x| x.is_nan()));
    }
}
