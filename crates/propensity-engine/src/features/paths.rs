//! What the features take from a URL path: its page category (the longest
//! match among the spec's matchers) and, in a [`PathInfo`], the
//! vocabulary slot of its first segment and the hash that tells the
//! session's distinct pages apart.
//!
//! Invariants kept here:
//! - Pure functions of the path under one spec, so callers may cache them
//!   (the engine does).
//! - A path no category matches is "other", index `categories.len()`; only
//!   then is [`PathInfo::segment`] meaningful (it is 0 otherwise).

use crate::stable_hash::stable_hash;

use super::spec::FeatureSpec;
use super::vocabulary::{first_segment, VocabularyField};

/// What the features take from a URL path (see [`FeatureSpec::path_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathInfo {
    /// Page category ("other" = the number of categories).
    pub category: u16,
    /// Slot of the first path segment in the `path_segment` group
    /// (meaningful for "other"; "other" again when the vocabulary lacks it).
    pub segment: u16,
    /// Hash identifying the page among a session's distinct pages.
    pub page_hash: u32,
}

impl FeatureSpec {
    /// Category index of a URL path ("other" = `categories.len()`).
    pub fn category_of(&self, path: &str) -> u16 {
        let b = path.as_bytes();
        for (p, idx, exact) in &self.matchers {
            let p = p.as_bytes();
            // Cheap rejections before comparing: the length, then the
            // byte after the leading `/`, where most matchers differ.
            let fits = if *exact {
                b.len() == p.len()
            } else {
                b.len() >= p.len()
            };
            if !fits || (p.len() > 1 && b.get(1) != p.get(1)) {
                continue;
            }
            if b.get(..p.len()) == Some(p) {
                return *idx;
            }
        }
        self.categories.len() as u16
    }

    /// Index of the "other" page category.
    pub(super) fn other(&self) -> u16 {
        self.categories.len() as u16
    }

    /// What the features need to know about a URL path. A pure function of
    /// the path (under this spec), so callers may cache it: the engine does,
    /// since most events are page views of a site's few hundred pages.
    pub fn path_info(&self, path: &str) -> PathInfo {
        let category = self.category_of(path);
        let segment = if category == self.other() {
            let vocabulary = &self.vocabulary;
            first_segment(path).map_or(vocabulary.path_segment.len() as u16, |s| {
                vocabulary.index_of(VocabularyField::PathSegment, s)
            })
        } else {
            0
        };
        PathInfo {
            category,
            segment,
            page_hash: stable_hash(path.as_bytes()) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::settings::test_settings as settings;

    #[test]
    fn categories_by_longest_match() {
        let spec = FeatureSpec::compile(&settings()).unwrap();
        assert_eq!(spec.category_of("/products/x"), 0);
        assert_eq!(spec.category_of("/checkout/complete"), 1);
        assert_eq!(spec.category_of("/"), 2);
        assert_eq!(spec.category_of("/blog/x"), 3);
    }
}
