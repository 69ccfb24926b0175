//! The models in use, swappable while the pipeline runs: a reload replaces
//! the whole set (all outcomes at once) and bumps a version the pipeline
//! checks once per loop, so every event is scored by one consistent set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use propensity_engine::ModelSet;

/// Shared, atomically swappable models.
#[derive(Debug)]
pub struct ModelHandle {
    version: AtomicU64,
    models: RwLock<Arc<ModelSet>>,
}

impl ModelHandle {
    /// A handle holding `models`.
    pub fn new(models: Arc<ModelSet>) -> Self {
        Self {
            version: AtomicU64::new(1),
            models: RwLock::new(models),
        }
    }

    /// Replaces the models.
    pub fn swap(&self, models: Arc<ModelSet>) {
        if let Ok(mut m) = self.models.write() {
            *m = models;
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Current version (changes on every swap).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current models.
    pub fn current(&self) -> Arc<ModelSet> {
        match self.models.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
