//! Wire contract v1: decoding visitor events and consent records from bytes,
//! and the output records (offers, outcome scores, dead letters).
//!
//! Decoding is two steps: serde reads into borrowed `Raw*` structs whose
//! fields are all optional (so a missing field is *our* finding, with the
//! field's name, not serde's), then validation turns them into [`Event`] /
//! [`ConsentUpdate`] or a [`DecodeError`] with a stable reason code. Unknown
//! fields are ignored for forward compatibility. Strings borrow from the
//! input where JSON escapes allow, so the hot path allocates nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::purpose::{Purpose, PurposeSet};
use crate::timestamp::{parse_rfc3339, EventTime};

/// Maximum length of `event_id`, `visitor_id` and `session_id`.
pub const MAX_ID_LEN: usize = 128;
/// Maximum length of `page.url`.
pub const MAX_URL_LEN: usize = 2048;

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

    fn parse(s: &str) -> Option<Self> {
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

fn parse_form_action(s: &str) -> Option<FormAction> {
    Some(match s {
        "started" => FormAction::Started,
        "submitted" => FormAction::Submitted,
        "abandoned" => FormAction::Abandoned,
        _ => return None,
    })
}

fn parse_chat_action(s: &str) -> Option<ChatAction> {
    Some(match s {
        "requested" => ChatAction::Requested,
        "started" => ChatAction::Started,
        "message" => ChatAction::Message,
        "ended" => ChatAction::Ended,
        _ => return None,
    })
}

fn parse_device(s: &str) -> Option<DeviceCategory> {
    Some(match s {
        "desktop" => DeviceCategory::Desktop,
        "mobile" => DeviceCategory::Mobile,
        "tablet" => DeviceCategory::Tablet,
        "other" => DeviceCategory::Other,
        _ => return None,
    })
}

/// Why a record was dead-lettered: a stable code that consumers and metrics
/// may depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// Bytes are not UTF-8.
    InvalidUtf8,
    /// Not a JSON object.
    InvalidJson,
    /// A required field is absent (or null).
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// `timestamp` is not RFC 3339.
    InvalidTimestamp,
    /// `type` is not one of the known event types.
    UnknownType,
    /// The record exceeds the size limit.
    TooLarge,
    /// The Kafka key differs from `visitor_id`.
    KeyMismatch,
}

impl DeadLetterReason {
    /// All reasons, for metrics and summaries.
    pub const ALL: [DeadLetterReason; 8] = [
        DeadLetterReason::InvalidUtf8,
        DeadLetterReason::InvalidJson,
        DeadLetterReason::MissingField,
        DeadLetterReason::InvalidField,
        DeadLetterReason::InvalidTimestamp,
        DeadLetterReason::UnknownType,
        DeadLetterReason::TooLarge,
        DeadLetterReason::KeyMismatch,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            DeadLetterReason::InvalidUtf8 => "invalid_utf8",
            DeadLetterReason::InvalidJson => "invalid_json",
            DeadLetterReason::MissingField => "missing_field",
            DeadLetterReason::InvalidField => "invalid_field",
            DeadLetterReason::InvalidTimestamp => "invalid_timestamp",
            DeadLetterReason::UnknownType => "unknown_type",
            DeadLetterReason::TooLarge => "too_large",
            DeadLetterReason::KeyMismatch => "key_mismatch",
        }
    }
}

/// A record that failed to decode: the reason code and a human message
/// naming the field. The message never quotes field *values* (they may be
/// personal data); it only names fields and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Stable reason code.
    pub reason: DeadLetterReason,
    /// Human explanation.
    pub message: String,
}

impl DecodeError {
    fn new(reason: DeadLetterReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
    fn missing(field: &str) -> Self {
        Self::new(
            DeadLetterReason::MissingField,
            format!("required field `{field}` is missing"),
        )
    }
    fn invalid(field: &str, why: &str) -> Self {
        Self::new(
            DeadLetterReason::InvalidField,
            format!("field `{field}` {why}"),
        )
    }
}

// ---------------------------------------------------------------- raw forms

/// A JSON string that borrows from the input when it has no escapes. serde
/// only borrows a `Cow<str>` field that is not wrapped in `Option`, so this
/// newtype does the borrowing itself (`visit_borrowed_str`).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// Unwraps an optional [`Text`].
fn cow(t: Option<Text<'_>>) -> Option<Cow<'_, str>> {
    t.map(|t| t.0)
}

/// Deserializes only from a JSON object. serde's derived struct impls also
/// accept an array (fields by position), which the contract does not allow:
/// `"chat": ["started"]` or a top-level array must be dead-lettered, not
/// decoded with fields assigned by position.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(ObjVisitor(std::marker::PhantomData))
    }
}

/// `deserialize_with` for optional object fields (null is `None`).
fn object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Obj<T>>::deserialize(d)?.map(|o| o.0))
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    event_id: Option<Text<'a>>,
    #[serde(borrow)]
    visitor_id: Option<Text<'a>>,
    #[serde(borrow)]
    session_id: Option<Text<'a>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    timestamp: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    page: Option<RawPage<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    search: Option<RawSearch<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    form: Option<RawForm<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    chat: Option<RawChat<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    custom: Option<RawCustom<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    device: Option<RawDevice<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    traffic: Option<RawTraffic<'a>>,
}

#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    url: Option<Text<'a>>,
    #[serde(borrow)]
    title: Option<Text<'a>>,
    #[serde(borrow)]
    referrer: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawSearch<'a> {
    #[serde(borrow)]
    query: Option<Text<'a>>,
    results: Option<u64>,
}

#[derive(Deserialize)]
struct RawForm<'a> {
    #[serde(borrow)]
    form_id: Option<Text<'a>>,
    #[serde(borrow)]
    action: Option<Text<'a>>,
    fields_completed: Option<u32>,
}

#[derive(Deserialize)]
struct RawChat<'a> {
    #[serde(borrow)]
    action: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawCustom<'a> {
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    properties: Option<BTreeMap<Cow<'a, str>, PropertyValue<'a>>>,
}

/// A custom event property value: string, number or boolean only.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PropertyValue<'a> {
    /// Boolean.
    Bool(bool),
    /// Number.
    Number(f64),
    /// String.
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

#[derive(Deserialize)]
struct RawTraffic<'a> {
    #[serde(borrow)]
    source: Option<Text<'a>>,
    #[serde(borrow)]
    medium: Option<Text<'a>>,
    #[serde(borrow)]
    campaign: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawDevice<'a> {
    #[serde(borrow)]
    category: Option<Text<'a>>,
    #[serde(borrow)]
    browser: Option<Text<'a>>,
    #[serde(borrow)]
    os: Option<Text<'a>>,
}

// ---------------------------------------------------------- validated forms

/// Page context of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<'a> {
    /// The page URL (≤ 2048 chars).
    pub url: Cow<'a, str>,
    /// Page title.
    pub title: Option<Cow<'a, str>>,
    /// Referrer URL.
    pub referrer: Option<Cow<'a, str>>,
}

/// A search. The query is personal data: it is never logged or stored, only
/// whether results were found feeds features.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// Number of results, when known.
    pub results: Option<u64>,
}

/// A form interaction. Form contents are not part of the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Form<'a> {
    /// Form id.
    pub form_id: Cow<'a, str>,
    /// What happened.
    pub action: FormAction,
    /// How many fields were completed, when known.
    pub fields_completed: Option<u32>,
}

/// A custom event.
#[derive(Debug, Clone, PartialEq)]
pub struct Custom<'a> {
    /// Event name.
    pub name: Cow<'a, str>,
}

/// Device context.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Device<'a> {
    /// Category.
    pub category: Option<DeviceCategory>,
    /// Browser name.
    pub browser: Option<Cow<'a, str>>,
    /// Operating system.
    pub os: Option<Cow<'a, str>>,
}

/// Traffic attribution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Traffic<'a> {
    /// e.g. `google`, `newsletter`.
    pub source: Option<Cow<'a, str>>,
    /// e.g. `cpc`, `email`.
    pub medium: Option<Cow<'a, str>>,
    /// Campaign name.
    pub campaign: Option<Cow<'a, str>>,
}

/// A validated visitor event, borrowing from the input bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Unique event id.
    pub event_id: Cow<'a, str>,
    /// Pseudonymous visitor id.
    pub visitor_id: Cow<'a, str>,
    /// Explicit session id.
    pub session_id: Option<Cow<'a, str>>,
    /// Event type.
    pub kind: EventKind,
    /// Event time.
    pub time: EventTime,
    /// Page context (always present for page views).
    pub page: Option<Page<'a>>,
    /// Search (present for searches).
    pub search: Option<Search>,
    /// Form (present for form fills).
    pub form: Option<Form<'a>>,
    /// Chat action (present for chats).
    pub chat: Option<ChatAction>,
    /// Custom event (present for custom events).
    pub custom: Option<Custom<'a>>,
    /// Device context.
    pub device: Option<Device<'a>>,
    /// Traffic attribution.
    pub traffic: Option<Traffic<'a>>,
}

fn check_id<'a>(field: &str, v: Option<Cow<'a, str>>) -> Result<Cow<'a, str>, DecodeError> {
    let v = v.ok_or_else(|| DecodeError::missing(field))?;
    if v.is_empty() {
        return Err(DecodeError::invalid(field, "must not be empty"));
    }
    // A string has at most as many characters as bytes: counting them is
    // only needed when the byte length is over the limit.
    if v.len() > MAX_ID_LEN && v.chars().count() > MAX_ID_LEN {
        return Err(DecodeError::invalid(field, "is longer than 128 characters"));
    }
    Ok(v)
}

fn check_len<'a>(
    field: &str,
    v: Option<Cow<'a, str>>,
    max: usize,
) -> Result<Option<Cow<'a, str>>, DecodeError> {
    match v {
        Some(s) if s.len() > max => Err(DecodeError::invalid(
            field,
            &format!("is longer than {max} bytes"),
        )),
        other => Ok(other),
    }
}

/// Turns a serde error on a record into a reason code. serde's messages say
/// *what* type was wrong but not *which* field, so on this (rare) path the
/// record is parsed again generically to find the field by name.
fn classify_serde_error(
    bytes: &[u8],
    err: &serde_json::Error,
    fields: &[(&str, Shape)],
) -> DecodeError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => DecodeError::new(
            DeadLetterReason::InvalidJson,
            format!(
                "not valid JSON (line {}, column {})",
                err.line(),
                err.column()
            ),
        ),
        Category::Data => {
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
                return DecodeError::new(DeadLetterReason::InvalidJson, "not valid JSON");
            };
            if !value.is_object() {
                return DecodeError::new(
                    DeadLetterReason::InvalidJson,
                    "the record must be a JSON object",
                );
            }
            for (path, shape) in fields {
                let mut v = Some(&value);
                for part in path.split('.') {
                    v = v.and_then(|x| x.get(part));
                }
                if let Some(v) = v {
                    if !v.is_null() && !shape.accepts(v) {
                        return DecodeError::invalid(path, shape.expected());
                    }
                }
            }
            DecodeError::new(DeadLetterReason::InvalidField, "a field has the wrong type")
        }
    }
}

/// The JSON shape a field must have, for naming the field in errors.
#[derive(Clone, Copy)]
enum Shape {
    Str,
    Obj,
    UInt,
    Bool,
    Properties,
}

impl Shape {
    fn accepts(self, v: &serde_json::Value) -> bool {
        match self {
            Shape::Str => v.is_string(),
            Shape::Obj => v.is_object(),
            Shape::UInt => v.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)),
            Shape::Bool => v.is_boolean(),
            Shape::Properties => v.as_object().is_some_and(|o| {
                o.values()
                    .all(|x| x.is_string() || x.is_number() || x.is_boolean())
            }),
        }
    }
    fn expected(self) -> &'static str {
        match self {
            Shape::Str => "must be a string",
            Shape::Obj => "must be an object",
            Shape::UInt => "must be a non-negative integer",
            Shape::Bool => "must be a boolean",
            Shape::Properties => "must be an object of strings, numbers and booleans",
        }
    }
}

const EVENT_SHAPES: &[(&str, Shape)] = &[
    ("event_id", Shape::Str),
    ("visitor_id", Shape::Str),
    ("session_id", Shape::Str),
    ("type", Shape::Str),
    ("timestamp", Shape::Str),
    ("page", Shape::Obj),
    ("page.url", Shape::Str),
    ("page.title", Shape::Str),
    ("page.referrer", Shape::Str),
    ("search", Shape::Obj),
    ("search.query", Shape::Str),
    ("search.results", Shape::UInt),
    ("form", Shape::Obj),
    ("form.form_id", Shape::Str),
    ("form.action", Shape::Str),
    ("form.fields_completed", Shape::UInt),
    ("chat", Shape::Obj),
    ("chat.action", Shape::Str),
    ("custom", Shape::Obj),
    ("custom.name", Shape::Str),
    ("custom.properties", Shape::Properties),
    ("device", Shape::Obj),
    ("device.category", Shape::Str),
    ("device.browser", Shape::Str),
    ("device.os", Shape::Str),
    ("traffic", Shape::Obj),
    ("traffic.source", Shape::Str),
    ("traffic.medium", Shape::Str),
    ("traffic.campaign", Shape::Str),
];

/// Checks the size limit and UTF-8, and returns the record as text: serde
/// then reads it with `from_str`, which does not validate every string a
/// second time (`from_slice` would).
fn check_size_and_utf8(bytes: &[u8], max_bytes: usize) -> Result<&str, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::new(
            DeadLetterReason::TooLarge,
            format!(
                "record is {} bytes, over the limit of {max_bytes}",
                bytes.len()
            ),
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        DecodeError::new(
            DeadLetterReason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })
}

/// Decodes and validates a visitor event.
pub fn decode_event(bytes: &[u8], max_bytes: usize) -> Result<Event<'_>, DecodeError> {
    let text = check_size_and_utf8(bytes, max_bytes)?;
    let Obj(raw) = serde_json::from_str::<Obj<RawEvent<'_>>>(text)
        .map_err(|e| classify_serde_error(bytes, &e, EVENT_SHAPES))?;
    validate_event(raw)
}

fn validate_event(raw: RawEvent<'_>) -> Result<Event<'_>, DecodeError> {
    let event_id = check_id("event_id", cow(raw.event_id))?;
    let visitor_id = check_id("visitor_id", cow(raw.visitor_id))?;
    let session_id = match cow(raw.session_id) {
        Some(s) => Some(check_id("session_id", Some(s))?),
        None => None,
    };
    let kind_text = cow(raw.kind).ok_or_else(|| DecodeError::missing("type"))?;
    let kind = EventKind::parse(&kind_text).ok_or_else(|| {
        DecodeError::new(
            DeadLetterReason::UnknownType,
            "field `type` must be one of page_view, search, form_fill, chat, custom",
        )
    })?;
    let ts = cow(raw.timestamp).ok_or_else(|| DecodeError::missing("timestamp"))?;
    let time = parse_rfc3339(&ts).ok_or_else(|| {
        DecodeError::new(
            DeadLetterReason::InvalidTimestamp,
            "field `timestamp` must be RFC 3339, e.g. 2026-11-29T10:00:00.123Z",
        )
    })?;

    let page = match raw.page {
        Some(p) => {
            let url = cow(p.url).ok_or_else(|| DecodeError::missing("page.url"))?;
            if url.len() > MAX_URL_LEN {
                return Err(DecodeError::invalid(
                    "page.url",
                    "is longer than 2048 bytes",
                ));
            }
            Some(Page {
                url,
                title: check_len("page.title", cow(p.title), 4096)?,
                referrer: check_len("page.referrer", cow(p.referrer), MAX_URL_LEN)?,
            })
        }
        None if kind == EventKind::PageView => return Err(DecodeError::missing("page")),
        None => None,
    };
    let search = match raw.search {
        Some(s) => {
            // The query is required by the contract but never kept: it may
            // contain personal data and only its presence matters here.
            if s.query.is_none() {
                return Err(DecodeError::missing("search.query"));
            }
            Some(Search { results: s.results })
        }
        None if kind == EventKind::Search => return Err(DecodeError::missing("search")),
        None => None,
    };
    let form = match raw.form {
        Some(f) => {
            let form_id = cow(f.form_id).ok_or_else(|| DecodeError::missing("form.form_id"))?;
            let action_text = cow(f.action).ok_or_else(|| DecodeError::missing("form.action"))?;
            let action = parse_form_action(&action_text).ok_or_else(|| {
                DecodeError::invalid(
                    "form.action",
                    "must be one of started, submitted, abandoned",
                )
            })?;
            Some(Form {
                form_id: check_len("form.form_id", Some(form_id), 256)?.unwrap_or_default(),
                action,
                fields_completed: f.fields_completed,
            })
        }
        None if kind == EventKind::FormFill => return Err(DecodeError::missing("form")),
        None => None,
    };
    let chat = match raw.chat {
        Some(c) => {
            let a = cow(c.action).ok_or_else(|| DecodeError::missing("chat.action"))?;
            Some(parse_chat_action(&a).ok_or_else(|| {
                DecodeError::invalid(
                    "chat.action",
                    "must be one of requested, started, message, ended",
                )
            })?)
        }
        None if kind == EventKind::Chat => return Err(DecodeError::missing("chat")),
        None => None,
    };
    let custom = match raw.custom {
        Some(c) => {
            let name = cow(c.name).ok_or_else(|| DecodeError::missing("custom.name"))?;
            if name.is_empty() {
                return Err(DecodeError::invalid("custom.name", "must not be empty"));
            }
            // Properties were type-checked by serde (string/number/bool);
            // their values are not used by the engine.
            drop(c.properties);
            Some(Custom {
                name: check_len("custom.name", Some(name), 256)?.unwrap_or_default(),
            })
        }
        None if kind == EventKind::Custom => return Err(DecodeError::missing("custom")),
        None => None,
    };
    let device = match raw.device {
        Some(d) => Some(Device {
            category: match cow(d.category) {
                Some(c) => Some(parse_device(&c).ok_or_else(|| {
                    DecodeError::invalid(
                        "device.category",
                        "must be one of desktop, mobile, tablet, other",
                    )
                })?),
                None => None,
            },
            browser: check_len("device.browser", cow(d.browser), 256)?,
            os: check_len("device.os", cow(d.os), 256)?,
        }),
        None => None,
    };
    Ok(Event {
        event_id,
        visitor_id,
        session_id,
        kind,
        time,
        page,
        search,
        form,
        chat,
        custom,
        device,
        traffic: match raw.traffic {
            Some(t) => Some(Traffic {
                source: check_len("traffic.source", cow(t.source), 256)?,
                medium: check_len("traffic.medium", cow(t.medium), 256)?,
                campaign: check_len("traffic.campaign", cow(t.campaign), 256)?,
            }),
            None => None,
        },
    })
}

// ------------------------------------------------------------------ consent

#[derive(Deserialize)]
struct RawConsent<'a> {
    #[serde(borrow)]
    visitor_id: Option<Text<'a>>,
    #[serde(borrow)]
    timestamp: Option<Text<'a>>,
    #[serde(default, deserialize_with = "object")]
    purposes: Option<RawPurposes>,
    erase: Option<bool>,
    #[serde(borrow)]
    #[allow(dead_code)]
    source: Option<Text<'a>>,
    #[serde(borrow)]
    #[allow(dead_code)]
    consent_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawPurposes {
    tracking: Option<bool>,
    support: Option<bool>,
    sales: Option<bool>,
    marketing: Option<bool>,
}

const CONSENT_SHAPES: &[(&str, Shape)] = &[
    ("visitor_id", Shape::Str),
    ("timestamp", Shape::Str),
    ("purposes", Shape::Obj),
    ("purposes.tracking", Shape::Bool),
    ("purposes.support", Shape::Bool),
    ("purposes.sales", Shape::Bool),
    ("purposes.marketing", Shape::Bool),
    ("erase", Shape::Bool),
    ("source", Shape::Str),
    ("consent_id", Shape::Str),
];

/// What a consent record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentChange {
    /// The visitor's complete consent state (not a delta).
    State(PurposeSet),
    /// Forget everything about the visitor.
    Erase,
}

/// A validated consent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentUpdate<'a> {
    /// Visitor id.
    pub visitor_id: Cow<'a, str>,
    /// Record time, epoch ms.
    pub time_ms: i64,
    /// What it says.
    pub change: ConsentChange,
}

/// Decodes a consent record. `key` is the Kafka key when there is one: it
/// must equal `visitor_id`. A missing value with a key is a tombstone, which
/// means erasure at `tombstone_time_ms` (the Kafka record time).
pub fn decode_consent<'a>(
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    tombstone_time_ms: i64,
    max_bytes: usize,
) -> Result<ConsentUpdate<'a>, DecodeError> {
    let Some(bytes) = value else {
        let key = key.ok_or_else(|| DecodeError::missing("key"))?;
        let visitor = std::str::from_utf8(key).map_err(|_| {
            DecodeError::new(DeadLetterReason::InvalidUtf8, "tombstone key is not UTF-8")
        })?;
        let visitor_id = check_id("key", Some(Cow::Borrowed(visitor)))?;
        return Ok(ConsentUpdate {
            visitor_id,
            time_ms: tombstone_time_ms,
            change: ConsentChange::Erase,
        });
    };
    let text = check_size_and_utf8(bytes, max_bytes)?;
    let Obj(raw) = serde_json::from_str::<Obj<RawConsent<'_>>>(text)
        .map_err(|e| classify_serde_error(bytes, &e, CONSENT_SHAPES))?;
    let visitor_id = check_id("visitor_id", cow(raw.visitor_id))?;
    check_key(key, &visitor_id)?;
    let ts = cow(raw.timestamp).ok_or_else(|| DecodeError::missing("timestamp"))?;
    let time = parse_rfc3339(&ts).ok_or_else(|| {
        DecodeError::new(
            DeadLetterReason::InvalidTimestamp,
            "field `timestamp` must be RFC 3339, e.g. 2026-11-29T10:00:00.123Z",
        )
    })?;
    let change = if raw.erase == Some(true) {
        ConsentChange::Erase
    } else {
        let p = raw
            .purposes
            .ok_or_else(|| DecodeError::missing("purposes"))?;
        // A missing purpose is false: consent must be explicit.
        ConsentChange::State(
            PurposeSet::NONE
                .with(Purpose::Tracking, p.tracking == Some(true))
                .with(Purpose::Support, p.support == Some(true))
                .with(Purpose::Sales, p.sales == Some(true))
                .with(Purpose::Marketing, p.marketing == Some(true)),
        )
    };
    Ok(ConsentUpdate {
        visitor_id,
        time_ms: time.epoch_ms,
        change,
    })
}

/// Checks a Kafka key against the record's visitor id.
pub fn check_key(key: Option<&[u8]>, visitor_id: &str) -> Result<(), DecodeError> {
    match key {
        Some(k) if k != visitor_id.as_bytes() => Err(DecodeError::new(
            DeadLetterReason::KeyMismatch,
            "the message key differs from field `visitor_id` (records must be keyed by visitor_id)",
        )),
        _ => Ok(()),
    }
}

// ------------------------------------------------------------------ outputs

/// One feature's part in a score: `weight × standardized value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Feature name.
    pub feature: String,
    /// The feature's raw value.
    pub value: f64,
    /// Its contribution to the log-odds.
    pub contribution: f64,
}

/// An engagement offer (output topic, key = `visitor_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Deterministic id: the same inputs always give the same id.
    pub offer_id: String,
    /// Visitor id.
    pub visitor_id: String,
    /// Session id (explicit, or derived `auto-…`).
    pub session_id: String,
    /// Action map that fired.
    pub action_map: String,
    /// What to do.
    pub action: crate::config::ActionSpec,
    /// The consent purpose the offer relies on.
    pub purpose: Purpose,
    /// The outcome whose probability fired the map.
    pub outcome: String,
    /// P(outcome achieved in this session).
    pub probability: f64,
    /// Version of the model that scored it.
    pub model_version: String,
    /// The event after which the offer was decided.
    pub trigger_event_id: String,
    /// That event's time, RFC 3339.
    pub event_time: String,
    /// When the decision was made, RFC 3339 (the event time in replay; wall
    /// clock in the Kafka runtime).
    pub decided_at: String,
    /// The top three contributions by absolute value.
    pub explanation: Vec<Contribution>,
}

/// An outcome score (optional output): one per scored event and outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeScore<'a> {
    /// Scored event.
    pub event_id: &'a str,
    /// Visitor id.
    pub visitor_id: &'a str,
    /// Session id.
    pub session_id: &'a str,
    /// Outcome.
    pub outcome: &'a str,
    /// P(outcome achieved).
    pub probability: f64,
    /// Model version.
    pub model_version: &'a str,
    /// Event time, RFC 3339.
    pub event_time: &'a str,
}

/// Where a record came from, for dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Origin {
    /// A line of a file.
    File {
        /// Path.
        file: String,
        /// 1-based line number.
        line: u64,
    },
    /// A Kafka record.
    Kafka {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// Anything else (tests, benchmarks).
    Unknown,
}

/// A dead-lettered record.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter<'a> {
    /// Reason code.
    pub reason: DeadLetterReason,
    /// Human message.
    pub error: String,
    /// The original bytes, whole.
    pub payload: &'a [u8],
    /// Where it came from.
    pub origin: &'a Origin,
}

#[derive(Serialize)]
struct DeadLetterLine<'a> {
    reason: &'static str,
    error: &'a str,
    source: &'a Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

impl DeadLetter<'_> {
    /// The JSON-lines form used in files: the payload as a string when it is
    /// UTF-8, otherwise base64 in `payload_base64`, so it is kept whole.
    pub fn to_json_line(&self) -> String {
        let text = std::str::from_utf8(self.payload).ok();
        let line = DeadLetterLine {
            reason: self.reason.code(),
            error: &self.error,
            source: self.origin,
            payload: text,
            payload_base64: if text.is_none() {
                Some(base64::engine::general_purpose::STANDARD.encode(self.payload))
            } else {
                None
            },
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 65_536;

    fn reason_of(s: &str) -> DeadLetterReason {
        decode_event(s.as_bytes(), MAX).unwrap_err().reason
    }

    #[test]
    fn decodes_a_page_view_and_ignores_unknown_fields() {
        let e = decode_event(
            br#"{"event_id":"e1","visitor_id":"v1","type":"page_view","timestamp":"2026-11-29T10:00:00.123Z","page":{"url":"https://x/p"},"future_field":{"a":1}}"#,
            MAX,
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::PageView);
        assert_eq!(e.page.unwrap().url, "https://x/p");
        assert!(e.session_id.is_none());
    }

    #[test]
    fn reason_codes() {
        assert_eq!(reason_of("not json"), DeadLetterReason::InvalidJson);
        assert_eq!(reason_of("[1,2]"), DeadLetterReason::InvalidJson);
        assert_eq!(
            reason_of(
                r#"{"visitor_id":"v","type":"chat","timestamp":"2026-11-29T10:00:00Z","chat":{"action":"started"}}"#
            ),
            DeadLetterReason::MissingField
        );
        assert_eq!(
            reason_of(
                r#"{"event_id":"e","visitor_id":"v","type":"teleport","timestamp":"2026-11-29T10:00:00Z"}"#
            ),
            DeadLetterReason::UnknownType
        );
        assert_eq!(
            reason_of(
                r#"{"event_id":"e","visitor_id":"v","type":"chat","timestamp":"yesterday","chat":{"action":"started"}}"#
            ),
            DeadLetterReason::InvalidTimestamp
        );
        assert_eq!(
            reason_of(
                r#"{"event_id":"e","visitor_id":"","type":"chat","timestamp":"2026-11-29T10:00:00Z","chat":{"action":"started"}}"#
            ),
            DeadLetterReason::InvalidField
        );
        assert_eq!(
            reason_of(
                r#"{"event_id":"e","visitor_id":"v","type":"page_view","timestamp":"2026-11-29T10:00:00Z"}"#
            ),
            DeadLetterReason::MissingField
        );
        assert_eq!(
            decode_event(b"{\"a\":\"\xff\"}", MAX).unwrap_err().reason,
            DeadLetterReason::InvalidUtf8
        );
        assert_eq!(
            decode_event(&[b' '; 300], 256).unwrap_err().reason,
            DeadLetterReason::TooLarge
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = decode_event(
            br#"{"event_id":"e","visitor_id":5,"type":"chat","timestamp":"2026-11-29T10:00:00Z","chat":{"action":"started"}}"#,
            MAX,
        )
        .unwrap_err();
        assert_eq!(err.reason, DeadLetterReason::InvalidField);
        assert!(err.message.contains("`visitor_id`"), "{}", err.message);
        let err = decode_event(
            br#"{"event_id":"e","visitor_id":"v","type":"custom","timestamp":"2026-11-29T10:00:00Z","custom":{"name":"x","properties":{"a":[1]}}}"#,
            MAX,
        )
        .unwrap_err();
        assert!(
            err.message.contains("`custom.properties`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn over_long_ids_are_rejected() {
        let id = "x".repeat(129);
        let line = format!(
            r#"{{"event_id":"{id}","visitor_id":"v","type":"chat","timestamp":"2026-11-29T10:00:00Z","chat":{{"action":"started"}}}}"#
        );
        assert_eq!(reason_of(&line), DeadLetterReason::InvalidField);
    }

    #[test]
    fn consent_records() {
        let c = decode_consent(
            Some(b"v1"),
            Some(br#"{"visitor_id":"v1","timestamp":"2026-11-29T10:00:00Z","purposes":{"tracking":true,"sales":true}}"#),
            0,
            MAX,
        )
        .unwrap();
        match c.change {
            ConsentChange::State(p) => {
                assert!(p.grants(Purpose::Tracking) && p.grants(Purpose::Sales));
                assert!(!p.grants(Purpose::Marketing));
            }
            ConsentChange::Erase => panic!("not an erasure"),
        }
        let e = decode_consent(
            None,
            Some(br#"{"visitor_id":"v1","timestamp":"2026-11-29T10:00:00Z","erase":true}"#),
            0,
            MAX,
        )
        .unwrap();
        assert_eq!(e.change, ConsentChange::Erase);
        let t = decode_consent(Some(b"v9"), None, 42, MAX).unwrap();
        assert_eq!(
            (t.visitor_id.as_ref(), t.time_ms, t.change),
            ("v9", 42, ConsentChange::Erase)
        );
        let m = decode_consent(
            Some(b"other"),
            Some(br#"{"visitor_id":"v1","timestamp":"2026-11-29T10:00:00Z","purposes":{}}"#),
            0,
            MAX,
        )
        .unwrap_err();
        assert_eq!(m.reason, DeadLetterReason::KeyMismatch);
    }

    #[test]
    fn dead_letter_line_keeps_payload_whole() {
        let origin = Origin::File {
            file: "in.jsonl".into(),
            line: 7,
        };
        let dl = DeadLetter {
            reason: DeadLetterReason::InvalidJson,
            error: "not valid JSON".into(),
            payload: b"{oops",
            origin: &origin,
        };
        let v: serde_json::Value = serde_json::from_str(&dl.to_json_line()).unwrap();
        assert_eq!(v["payload"], "{oops");
        assert_eq!(v["reason"], "invalid_json");
        assert_eq!(v["source"]["line"], 7);
        let bin = DeadLetter {
            payload: &[0xff, 0x00],
            ..dl
        };
        let v: serde_json::Value = serde_json::from_str(&bin.to_json_line()).unwrap();
        assert_eq!(v["payload_base64"], "/wA=");
    }
}
