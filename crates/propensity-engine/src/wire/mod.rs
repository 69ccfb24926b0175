//! Wire contract v1: decoding visitor events and consent records from bytes,
//! and the output records (offers, outcome scores, dead letters).
//!
//! Decoding is two steps: serde reads into borrowed `Raw*` structs whose
//! fields are all optional (so a missing field is *our* finding, with the
//! field's name, not serde's), then validation turns them into [`Event`] /
//! [`ConsentUpdate`] or a [`DecodeError`] with a stable reason code. Unknown
//! fields are ignored for forward compatibility. Strings borrow from the
//! input where JSON escapes allow, so the hot path allocates nothing.
//!
//! One job per file; the submodules are private and everything public is
//! re-exported here, so every item keeps its `wire::X` path:
//!
//! - `vocab`: the closed vocabularies (event kinds, form and chat actions,
//!   device categories) and their wire names.
//! - `errors`: dead-letter reason codes, [`DecodeError`], and the
//!   classification of serde failures into a reason and a field name.
//! - `decode`: what both decoders share: the size and UTF-8 check, the
//!   borrowing / object-only serde helpers, id and length checks, the
//!   Kafka key check.
//! - `event`: the event decoder: raw and validated event forms and the
//!   event shape table.
//! - `consent`: the consent decoder.
//! - `output`: the records the engine emits: offers (with their action),
//!   outcome scores, dead letters and their JSON-lines form.
//!
//! Dependencies point one way: `vocab` and `errors` depend on nothing else
//! here, `decode` on `errors`, the two decoders on `decode`, `errors` and
//! (events) `vocab`, `output` on `errors` only; nothing here depends on the
//! engine's configuration, features or model.

mod consent;
mod decode;
mod errors;
mod event;
mod feedback;
mod output;
mod vocab;

pub use consent::{decode_consent, ConsentChange, ConsentUpdate};
pub use decode::{check_key, MAX_ID_LEN};
pub use errors::{DeadLetterReason, DecodeError};
pub use event::{
    decode_event, Custom, Device, Event, Form, Page, PropertyValue, Search, Traffic, MAX_URL_LEN,
};
pub use feedback::{decode_feedback, FeedbackStatus, FeedbackUpdate};
pub use output::{
    ActionSpec, Arm, Contribution, Conversion, DeadLetter, Decision, DecisionKind, ModelRole,
    Offer, Origin, OutcomeScore,
};
pub use vocab::{ChatAction, DeviceCategory, EventKind, FormAction};
