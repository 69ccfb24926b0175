//! The closed vocabularies of the wire contract: event kinds, form and chat
//! actions, device categories, with their wire names.
//!
//! Invariants: the wire names are part of the contract (consumers, config
//! files and model artifacts spell them), so each appears identically in
//! serde's `snake_case` form, in `as_str` and in the `parse` functions the
//! decoder uses; and each `ALL` lists its variants in declaration order,
//! which is feature order (`EventKind::index` is the discriminant).

use serde::{Deserialize, Serialize};

/// Event types of the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A page was viewed.
    PageView,
    /// A site search.
    Search,
    /// A form interaction.
    FormFill,
    /// A chat interaction.
    Chat,
    /// A custom event from the tracking SDK's "record" call.
    Custom,
}

impl EventKind {
    /// All kinds, in feature order.
    pub const ALL: [EventKind; 5] = [
        EventKind::PageView,
        EventKind::Search,
        EventKind::FormFill,
        EventKind::Chat,
        EventKind::Custom,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PageView => "page_view",
            EventKind::Search => "search",
            EventKind::FormFill => "form_fill",
            EventKind::Chat => "chat",
            EventKind::Custom => "custom",
        }
    }

    /// Index into [`EventKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "page_view" => EventKind::PageView,
            "search" => EventKind::Search,
            "form_fill" => EventKind::FormFill,
            "chat" => EventKind::Chat,
            "custom" => EventKind::Custom,
            _ => return None,
        })
    }
}

/// Form actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormAction {
    /// The visitor started filling the form.
    Started,
    /// The form was submitted.
    Submitted,
    /// The visitor left the form unfinished.
    Abandoned,
}

/// Chat actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatAction {
    /// The visitor asked for a chat.
    Requested,
    /// A chat started.
    Started,
    /// A message was exchanged.
    Message,
    /// The chat ended.
    Ended,
}

/// Device categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceCategory {
    /// Desktop or laptop.
    Desktop,
    /// Phone.
    Mobile,
    /// Tablet.
    Tablet,
    /// Anything else.
    Other,
}

impl DeviceCategory {
    /// All categories, in feature order.
    pub const ALL: [DeviceCategory; 4] = [
        DeviceCategory::Desktop,
        DeviceCategory::Mobile,
        DeviceCategory::Tablet,
        DeviceCategory::Other,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceCategory::Desktop => "desktop",
            DeviceCategory::Mobile => "mobile",
            DeviceCategory::Tablet => "tablet",
            DeviceCategory::Other => "other",
        }
    }
}

pub(super) fn parse_form_action(s: &str) -> Option<FormAction> {
    Some(match s {
        "started" => FormAction::Started,
        "submitted" => FormAction::Submitted,
        "abandoned" => FormAction::Abandoned,
        _ => return None,
    })
}

pub(super) fn parse_chat_action(s: &str) -> Option<ChatAction> {
    Some(match s {
        "requested" => ChatAction::Requested,
        "started" => ChatAction::Started,
        "message" => ChatAction::Message,
        "ended" => ChatAction::Ended,
        _ => return None,
    })
}

pub(super) fn parse_device(s: &str) -> Option<DeviceCategory> {
    Some(match s {
        "desktop" => DeviceCategory::Desktop,
        "mobile" => DeviceCategory::Mobile,
        "tablet" => DeviceCategory::Tablet,
        "other" => DeviceCategory::Other,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serde name, `as_str` and `parse` agree, and `ALL` is in
    /// discriminant order (features index by `index()`).
    #[test]
    fn wire_names_agree_and_all_is_in_order() {
        for (i, k) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).ok(), Some(k.as_str().into()));
        }
        for d in DeviceCategory::ALL {
            assert_eq!(parse_device(d.as_str()), Some(d));
            assert_eq!(serde_json::to_value(d).ok(), Some(d.as_str().into()));
        }
        for (name, a) in [
            ("started", FormAction::Started),
            ("submitted", FormAction::Submitted),
            ("abandoned", FormAction::Abandoned),
        ] {
            assert_eq!(parse_form_action(name), Some(a));
            assert_eq!(serde_json::to_value(a).ok(), Some(name.into()));
        }
        for (name, a) in [
            ("requested", ChatAction::Requested),
            ("started", ChatAction::Started),
            ("message", ChatAction::Message),
            ("ended", ChatAction::Ended),
        ] {
            assert_eq!(parse_chat_action(name), Some(a));
            assert_eq!(serde_json::to_value(a).ok(), Some(name.into()));
        }
    }
}
