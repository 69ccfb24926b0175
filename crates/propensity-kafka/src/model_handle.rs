//! The models in use, swappable while the pipeline runs: a reload replaces
//! the whole set (all outcomes at once) and bumps a version the pipeline
//! checks once per loop, so every event is scored by one consistent set.
//! Readers never wait for a reload (`arc-swap`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use propensity_engine::ModelSet;

/// Shared, atomically swappable models.
#[derive(Debug)]
pub struct ModelHandle {
    version: AtomicU64,
    models: ArcSwap<ModelSet>,
}

impl ModelHandle {
    /// A handle holding `models`.
    pub fn new(models: Arc<ModelSet>) -> Self {
        Self {
            version: AtomicU64::new(1),
            models: ArcSwap::new(models),
        }
    }

    /// Replaces the models. The version moves after the set, so a reader
    /// that sees a new version also gets the new set (at worst it picks up
    /// a newer set one loop early and loads it again).
    pub fn swap(&self, models: Arc<ModelSet>) {
        self.models.store(models);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Current version (changes on every swap).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current models.
    pub fn current(&self) -> Arc<ModelSet> {
        self.models.load_full()
    }
}
