//! Wire contract v1: encodes simulated events and consent records as one-line
//! JSON records. Field names and value spellings here must match the engine's
//! parser exactly; optional fields are omitted (never `null`).

use serde::Serialize;

use crate::behaviour::{ChatAction, FormAction, Payload, PropValue, SimEvent};
use crate::consent::ConsentRecord;
use crate::profile::VisitorProfile;
use crate::timefmt::format_timestamp;

#[derive(Serialize)]
struct WireEvent<'a> {
    event_id: &'a str,
    visitor_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<WirePage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<WireSearch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    form: Option<WireForm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat: Option<WireChat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<WireCustom<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<WireDevice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic: Option<WireTraffic>,
}

#[derive(Serialize)]
struct WirePage {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrer: Option<String>,
}

#[derive(Serialize)]
struct WireSearch {
    query: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<u32>,
}

#[derive(Serialize)]
struct WireForm {
    form_id: &'static str,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields_completed: Option<u32>,
}

#[derive(Serialize)]
struct WireChat {
    action: &'static str,
}

#[derive(Serialize)]
struct WireCustom<'a> {
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<OrderedMap<'a>>,
}

/// A JSON object written in the given key order. Used instead of
/// `serde_json::Map`, whose order depends on whether some crate in the build
/// enables serde_json's `preserve_order` feature; output must be byte-identical
/// per seed in every build.
pub(crate) struct OrderedMap<'a>(pub &'a [(&'a str, serde_json::Value)]);

impl Serialize for OrderedMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct WireDevice {
    category: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    browser: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<&'static str>,
}

#[derive(Serialize)]
struct WireTraffic {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    medium: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<&'static str>,
}

fn form_action(action: FormAction) -> &'static str {
    match action {
        FormAction::Started => "started",
        FormAction::Submitted => "submitted",
        FormAction::Abandoned => "abandoned",
    }
}

fn chat_action(action: ChatAction) -> &'static str {
    match action {
        ChatAction::Requested => "requested",
        ChatAction::Started => "started",
        ChatAction::Message => "message",
        ChatAction::Ended => "ended",
    }
}

fn prop_value(value: PropValue) -> serde_json::Value {
    match value {
        PropValue::Str(s) => serde_json::Value::from(s),
        PropValue::Int(i) => serde_json::Value::from(i),
        // Non-finite floats cannot occur (prices/amounts are literals or
        // integers × 100); `from` would map them to null, which would still be
        // a well-formed record.
        PropValue::Num(x) => serde_json::Value::from(x),
        PropValue::Bool(b) => serde_json::Value::from(b),
    }
}

/// The `event_id` of a visitor's `n`-th (1-based) event: unique across the run.
pub(crate) fn event_id(profile: &VisitorProfile, n: usize) -> String {
    format!("e-{:06}-{n}", profile.number)
}

/// The `session_id` of a visitor's `index`-th (0-based) session.
pub(crate) fn session_id(profile: &VisitorProfile, index: usize) -> String {
    format!("s-{:06}-{}", profile.number, index + 1)
}

/// Encodes one visitor event.
pub(crate) fn event_line(
    profile: &VisitorProfile,
    event_id: &str,
    session_id: Option<&str>,
    event: &SimEvent,
) -> Result<String, serde_json::Error> {
    // Declared before `record`, which borrows it for custom events.
    let properties_buf: Vec<(&str, serde_json::Value)>;
    let mut record = WireEvent {
        event_id,
        visitor_id: &profile.visitor_id,
        session_id,
        kind: "",
        timestamp: format_timestamp(event.time_ms),
        page: event.page.map(|p| WirePage {
            url: p.url(),
            title: None,
            referrer: None,
        }),
        search: None,
        form: None,
        chat: None,
        custom: None,
        device: profile.reported_device.as_ref().map(|d| WireDevice {
            category: d.category.name(),
            browser: d.browser,
            os: d.os,
        }),
        traffic: profile.reported_traffic.as_ref().map(|t| WireTraffic {
            source: t.source,
            medium: t.medium,
            campaign: t.campaign,
        }),
    };
    match &event.payload {
        Payload::PageView {
            with_title,
            referrer,
        } => {
            record.kind = "page_view";
            if let (Some(page), Some(wire)) = (event.page, record.page.as_mut()) {
                wire.title = with_title.then(|| page.title());
                wire.referrer.clone_from(referrer);
            }
        }
        Payload::Search { query, results } => {
            record.kind = "search";
            record.search = Some(WireSearch {
                query,
                results: *results,
            });
        }
        Payload::Form {
            form_id,
            action,
            fields_completed,
        } => {
            record.kind = "form_fill";
            record.form = Some(WireForm {
                form_id,
                action: form_action(*action),
                fields_completed: *fields_completed,
            });
        }
        Payload::Chat(action) => {
            record.kind = "chat";
            record.chat = Some(WireChat {
                action: chat_action(*action),
            });
        }
        Payload::Custom { name, properties } => {
            record.kind = "custom";
            properties_buf = properties
                .iter()
                .map(|(k, v)| (*k, prop_value(*v)))
                .collect();
            let properties = (!properties_buf.is_empty()).then_some(OrderedMap(&properties_buf));
            record.custom = Some(WireCustom { name, properties });
        }
    }
    serde_json::to_string(&record)
}

#[derive(Serialize)]
struct WireConsent<'a> {
    visitor_id: &'a str,
    timestamp: String,
    purposes: WirePurposes,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent_id: Option<&'a str>,
}

#[derive(Serialize)]
struct WirePurposes {
    tracking: bool,
    support: bool,
    sales: bool,
    marketing: bool,
}

#[derive(Serialize)]
struct WireErasure<'a> {
    visitor_id: &'a str,
    timestamp: String,
    erase: bool,
}

/// Encodes one consent record or erasure request.
pub(crate) fn consent_line(
    visitor_id: &str,
    record: &ConsentRecord,
) -> Result<String, serde_json::Error> {
    match record {
        ConsentRecord::State {
            time_ms,
            purposes,
            source,
            consent_id,
        } => serde_json::to_string(&WireConsent {
            visitor_id,
            timestamp: format_timestamp(*time_ms),
            purposes: WirePurposes {
                tracking: purposes.tracking,
                support: purposes.support,
                sales: purposes.sales,
                marketing: purposes.marketing,
            },
            source: *source,
            consent_id: consent_id.as_deref(),
        }),
        ConsentRecord::Erase { time_ms } => serde_json::to_string(&WireErasure {
            visitor_id,
            timestamp: format_timestamp(*time_ms),
            erase: true,
        }),
    }
}
