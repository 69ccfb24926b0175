//! Consent purposes and the compact set of granted purposes a visitor has.

use serde::{Deserialize, Serialize};

/// A purpose a visitor can consent to. `tracking` gates all processing; the
/// others gate offers whose action map requires them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Processing of activity at all.
    Tracking,
    /// Support-related engagement (e.g. help chat).
    Support,
    /// Sales engagement (e.g. checkout chat, callbacks).
    Sales,
    /// Marketing (e.g. content offers).
    Marketing,
}

impl Purpose {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Tracking => "tracking",
            Purpose::Support => "support",
            Purpose::Sales => "sales",
            Purpose::Marketing => "marketing",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Purpose::Tracking => 1,
            Purpose::Support => 2,
            Purpose::Sales => 4,
            Purpose::Marketing => 8,
        }
    }
}

/// A set of granted purposes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PurposeSet(u8);

impl PurposeSet {
    /// No purpose granted.
    pub const NONE: PurposeSet = PurposeSet(0);

    /// The set of the given purposes.
    pub fn from_purposes(purposes: &[Purpose]) -> Self {
        PurposeSet(purposes.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Adds `p` when `granted`.
    pub fn with(self, p: Purpose, granted: bool) -> Self {
        if granted {
            PurposeSet(self.0 | p.bit())
        } else {
            PurposeSet(self.0 & !p.bit())
        }
    }

    /// Whether `p` is granted.
    pub fn grants(self, p: Purpose) -> bool {
        self.0 & p.bit() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let s = PurposeSet::NONE
            .with(Purpose::Tracking, true)
            .with(Purpose::Sales, true);
        assert!(s.grants(Purpose::Tracking) && s.grants(Purpose::Sales));
        assert!(!s.grants(Purpose::Marketing) && !s.grants(Purpose::Support));
        assert!(!s.with(Purpose::Tracking, false).grants(Purpose::Tracking));
        assert_eq!(
            PurposeSet::from_purposes(&[Purpose::Sales, Purpose::Tracking]),
            s
        );
    }
}
