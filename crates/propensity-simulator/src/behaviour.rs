//! The behaviour model: how a visitor with a latent intent and engagement walks
//! the site session by session, and when outcomes happen.
//!
//! Design invariant (the reason the simulator exists): outcome probabilities
//! are logistic functions of *observed* behaviour so far (page counts, dwell,
//! cart/form activity), the reported-or-not device and channel, hour of day,
//! plus latent engagement and per-session noise. A logistic model on the
//! engine's features can therefore learn them, but not perfectly.
//!
//! Timing invariants: gaps between events of a session are 5–120 s, sessions of
//! a visitor are more than 30 min apart, and sessions hold 3–40 events. So
//! sessions derived from a 20-minute inactivity gap coincide with the explicit
//! `session_id`s.
//!
//! Why one file of this size: it is one state machine (`SessionSim`) whose
//! steps, action weights and outcome logits read each other's fields;
//! split across files, a reader would have to hold them all open to follow
//! one session.

use std::collections::VecDeque;

use rand::Rng;

use crate::profile::{Channel, DeviceCategory, Intent, VisitorProfile};
use crate::sampling::{
    pick, pick_weighted, sigmoid, standard_normal, uniform_ms, weighted_index, SimRng,
};
use crate::site::{
    Page, BLOG_POSTS, GENERAL_QUERIES, HELP_ARTICLES, LOANS, LOAN_QUERIES, PRODUCTS,
    PRODUCT_QUERIES, SUPPORT_QUERIES, WEBINARS, WEBINAR_QUERIES,
};
use crate::timefmt::hour_of_day;

/// Fewest / most events in a session.
const MIN_EVENTS: usize = 3;
const MAX_EVENTS: usize = 40;
/// Fields of the long loan application form.
pub(crate) const LOAN_FORM_FIELDS: u32 = 25;
/// Form ids on the wire (the engine's config matches on them).
pub(crate) const WEBINAR_FORM: &str = "webinar-signup";
pub(crate) const LOAN_FORM: &str = "loan-application";
/// Minimum pause between sessions: comfortably above the engine's 20-minute
/// inactivity rule.
const MIN_SESSION_GAP_MS: i64 = 31 * 60_000;

/// A business outcome a session can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Page view of `/checkout/complete`.
    Purchase,
    /// `webinar-signup` form submitted.
    WebinarSignup,
    /// `loan-application` form submitted.
    ApplicationComplete,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [
        Self::Purchase,
        Self::WebinarSignup,
        Self::ApplicationComplete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::WebinarSignup => "webinar_signup",
            Self::ApplicationComplete => "application_complete",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormAction {
    Started,
    Submitted,
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatAction {
    Requested,
    Started,
    Message,
    Ended,
}

/// A scalar custom-event property value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PropValue {
    Str(&'static str),
    Int(i64),
    Num(f64),
    Bool(bool),
}

/// The type-specific part of an event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    PageView {
        with_title: bool,
        referrer: Option<String>,
    },
    Search {
        query: &'static str,
        results: Option<u32>,
    },
    Form {
        form_id: &'static str,
        action: FormAction,
        fields_completed: Option<u32>,
    },
    Chat(ChatAction),
    Custom {
        name: &'static str,
        properties: Vec<(&'static str, PropValue)>,
    },
}

/// One generated (valid) event, before serialization.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SimEvent {
    pub time_ms: i64,
    /// The viewed page for page views (always set); optional context otherwise.
    pub page: Option<Page>,
    pub payload: Payload,
    /// Set on the event that achieves an outcome.
    pub outcome: Option<Outcome>,
}

/// State that carries over between a visitor's sessions.
#[derive(Debug, Default)]
struct VisitorMemory {
    /// Items left in the cart (a returning buyer may finish checkout later).
    cart_items: u32,
    /// Most loan-form fields ever completed (applicants resume).
    loan_fields_best: u32,
}

/// Simulates all sessions of a visitor; the first starts at `first_start_ms`.
pub(crate) fn simulate_visitor(
    rng: &mut SimRng,
    profile: &VisitorProfile,
    first_start_ms: i64,
) -> Vec<Vec<SimEvent>> {
    let mut memory = VisitorMemory::default();
    let mut sessions = Vec::with_capacity(profile.sessions);
    let mut start = first_start_ms;
    for index in 0..profile.sessions {
        let events = SessionSim::new(rng, profile, &mut memory, index).run(start);
        let last = events.last().map_or(start, |e| e.time_ms);
        // Returning visitors come back after 31 min to ~6 days (mean ~18 h).
        let pause_h = (-(1.0 - rng.random::<f64>()).ln() * 18.0).min(144.0);
        start = last + MIN_SESSION_GAP_MS + (pause_h * 3_600_000.0) as i64;
        sessions.push(events);
    }
    sessions
}

/// Counters of what the session has shown so far: the inputs of the outcome
/// model (mirroring what an engine can compute from the events).
#[derive(Debug, Default)]
struct Observed {
    product_views: u32,
    pricing_views: u32,
    cart_views: u32,
    webinar_views: u32,
    loan_views: u32,
    apply_views: u32,
    add_to_cart: u32,
    videos: u32,
    calculators: u32,
    loan_form_attempts: u32,
    product_dwell_ms: i64,
    webinar_dwell_ms: i64,
    loan_dwell_ms: i64,
    webinar_form_used: bool,
    chat_used: bool,
}

/// Follow-up events already decided when their trigger was emitted.
#[derive(Debug, Clone, Copy)]
enum Pending {
    WebinarResult,
    LoanResult,
    Chat(ChatAction),
}

/// A navigation or interaction the visitor can choose next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Home,
    Product,
    Pricing,
    Cart,
    Webinar,
    Loan,
    Apply,
    Blog,
    Help,
    Contact,
    About,
    Careers,
    Search,
    AddToCart,
    Video,
    Calculator,
    WebinarForm,
    LoanForm,
    Chat,
}

const ACTIONS: [Action; 19] = [
    Action::Home,
    Action::Product,
    Action::Pricing,
    Action::Cart,
    Action::Webinar,
    Action::Loan,
    Action::Apply,
    Action::Blog,
    Action::Help,
    Action::Contact,
    Action::About,
    Action::Careers,
    Action::Search,
    Action::AddToCart,
    Action::Video,
    Action::Calculator,
    Action::WebinarForm,
    Action::LoanForm,
    Action::Chat,
];

/// Base preference for each action (order of [`ACTIONS`]) by intent. Context
/// rules in [`SessionSim::action_weights`] zero out impossible actions (e.g.
/// add-to-cart off a product page).
fn base_weights(intent: Intent) -> [f64; 19] {
    match intent {
        //                 Home Prod Pric Cart Web  Loan Appl Blog Help Cont Abou Care Srch A2C  Vid  Calc WFrm LFrm Chat
        Intent::Browser => [
            8.0, 16.0, 3.0, 3.0, 5.0, 6.0, 1.5, 18.0, 3.0, 1.0, 4.0, 3.0, 5.0, 6.0, 3.0, 3.0, 3.0,
            3.0, 0.4,
        ],
        Intent::Buyer => [
            4.0, 26.0, 8.0, 12.0, 1.0, 1.0, 0.2, 3.0, 2.0, 1.0, 1.0, 0.3, 9.0, 18.0, 2.0, 0.3, 1.0,
            0.5, 0.8,
        ],
        Intent::WebinarCurious => [
            4.0, 4.0, 1.0, 1.0, 24.0, 2.0, 0.3, 9.0, 1.0, 1.0, 2.0, 0.5, 4.0, 1.0, 7.0, 0.3, 16.0,
            0.5, 0.5,
        ],
        Intent::LoanSeeker => [
            4.0, 3.0, 2.0, 0.8, 2.0, 22.0, 6.0, 4.0, 3.0, 2.0, 1.0, 0.3, 5.0, 0.8, 1.0, 9.0, 1.0,
            40.0, 1.0,
        ],
        Intent::SupportSeeker => [
            5.0, 5.0, 1.0, 1.5, 0.5, 1.0, 0.1, 2.0, 26.0, 8.0, 1.0, 0.3, 10.0, 1.0, 0.5, 0.2, 0.5,
            0.2, 5.0,
        ],
    }
}

struct SessionSim<'a> {
    rng: &'a mut SimRng,
    profile: &'a VisitorProfile,
    memory: &'a mut VisitorMemory,
    /// 0-based session index within the visitor.
    index: usize,
    /// The intent acted out in this session: usually the visitor's, but a
    /// session now and then wanders (a buyer just browsing today), which keeps
    /// intent from being perfectly readable off the first pages.
    intent: Intent,
    events: Vec<SimEvent>,
    page: Page,
    seen: Observed,
    pending: VecDeque<Pending>,
    reached: [bool; 3],
    /// Per-session latent noise added to each outcome's logit: what keeps the
    /// outcomes from being a deterministic function of behaviour.
    noise: [f64; 3],
}

/// What the walk does next.
enum Step {
    Emit(Option<Page>, Payload, Option<Outcome>),
    End,
}

impl<'a> SessionSim<'a> {
    fn new(
        rng: &'a mut SimRng,
        profile: &'a VisitorProfile,
        memory: &'a mut VisitorMemory,
        index: usize,
    ) -> Self {
        let noise = [1.5, 1.2, 1.5].map(|sd| sd * standard_normal(rng));
        let intent = if rng.random_bool(0.85) {
            profile.intent
        } else {
            pick(
                rng,
                &[
                    Intent::Browser,
                    Intent::Browser,
                    Intent::Buyer,
                    Intent::WebinarCurious,
                    Intent::LoanSeeker,
                    Intent::SupportSeeker,
                ],
            )
        };
        Self {
            rng,
            profile,
            memory,
            index,
            intent,
            events: Vec::new(),
            page: Page::Home,
            seen: Observed::default(),
            pending: VecDeque::new(),
            reached: [false; 3],
            noise,
        }
    }

    fn run(mut self, start_ms: i64) -> Vec<SimEvent> {
        let mut limit = self.planned_length();
        let landing = self.landing_page();
        // Only the first session carries the acquisition referrer; returning
        // visitors mostly come back directly.
        let referrer = if self.index == 0 {
            self.profile.channel.referrer().map(str::to_owned)
        } else {
            None
        };
        let mut time = start_ms;
        let payload = self.page_view_payload(referrer);
        self.emit(time, Step::Emit(Some(landing), payload, None));
        loop {
            let len = self.events.len();
            // Decided follow-ups and an active checkout may run past the planned
            // length (a visitor in the middle of paying does not just vanish),
            // but never past the hard cap.
            let mid_flow = !self.pending.is_empty() || self.in_funnel();
            if len >= MAX_EVENTS || (len >= limit && !mid_flow) {
                break;
            }
            let gap = self.gap_after_last();
            self.account_dwell(gap);
            time += gap;
            let step = self.next_step(time, len >= limit);
            let step = match step {
                Step::End if len < MIN_EVENTS => self.choose_action(),
                other => other,
            };
            if matches!(step, Step::End) {
                break;
            }
            if let Some(outcome) = self.emit(time, step) {
                self.reached[outcome.index()] = true;
                // After an outcome the session ends or continues briefly.
                let len = self.events.len();
                limit = if self.rng.random_bool(0.5) {
                    len
                } else {
                    limit.min(len + self.rng.random_range(1..=3))
                };
                limit = limit.max(MIN_EVENTS);
            }
        }
        self.events
    }

    /// Events planned for the session (3–40): longer for engaged visitors and
    /// for goal-directed intents.
    fn planned_length(&mut self) -> usize {
        let extra_mean = match self.intent {
            Intent::Browser => 5.0,
            Intent::Buyer => 10.0,
            Intent::WebinarCurious => 7.0,
            Intent::LoanSeeker => 9.0,
            Intent::SupportSeeker => 6.0,
        } * (0.4 + 1.2 * self.profile.engagement);
        let extra = -(1.0 - self.rng.random::<f64>()).ln() * extra_mean;
        (MIN_EVENTS + extra as usize).min(MAX_EVENTS)
    }

    fn landing_page(&mut self) -> Page {
        if self.memory.cart_items > 0 && self.rng.random_bool(0.3) {
            return Page::Cart;
        }
        if self.rng.random_bool(0.3) {
            return Page::Home;
        }
        let section = match self.intent {
            // Campaign landing pages bring browsers into every section.
            Intent::Browser => pick_weighted(
                self.rng,
                &[
                    (Action::Blog, 0.35),
                    (Action::Product, 0.3),
                    (Action::Webinar, 0.12),
                    (Action::Loan, 0.1),
                    (Action::About, 0.08),
                    (Action::Help, 0.05),
                ],
            ),
            Intent::Buyer => {
                pick_weighted(self.rng, &[(Action::Product, 0.8), (Action::Pricing, 0.2)])
            }
            Intent::WebinarCurious => {
                pick_weighted(self.rng, &[(Action::Webinar, 0.8), (Action::Blog, 0.2)])
            }
            Intent::LoanSeeker => {
                pick_weighted(self.rng, &[(Action::Loan, 0.85), (Action::Blog, 0.15)])
            }
            Intent::SupportSeeker => {
                pick_weighted(self.rng, &[(Action::Help, 0.8), (Action::Contact, 0.2)])
            }
        };
        self.page_for(section).unwrap_or(Page::Home)
    }

    /// Page-view payload; titles are usually reported.
    fn page_view_payload(&mut self, referrer: Option<String>) -> Payload {
        Payload::PageView {
            with_title: self.rng.random_bool(0.9),
            referrer,
        }
    }

    fn in_funnel(&self) -> bool {
        let last_is_page_view = matches!(
            self.events.last(),
            Some(SimEvent {
                payload: Payload::PageView { .. },
                ..
            })
        );
        last_is_page_view
            && match self.page {
                Page::Cart => self.memory.cart_items > 0,
                Page::Checkout | Page::Payment => true,
                _ => false,
            }
    }

    /// Appends the event; returns the outcome it achieves, if any.
    fn emit(&mut self, time_ms: i64, step: Step) -> Option<Outcome> {
        let Step::Emit(page, payload, outcome) = step else {
            return None;
        };
        if let (Payload::PageView { .. }, Some(p)) = (&payload, page) {
            self.page = p;
            self.count_view(p);
        }
        self.events.push(SimEvent {
            time_ms,
            page,
            payload,
            outcome,
        });
        outcome
    }

    fn count_view(&mut self, page: Page) {
        let s = &mut self.seen;
        match page {
            Page::Product(_) => s.product_views += 1,
            Page::Pricing => s.pricing_views += 1,
            Page::Cart => s.cart_views += 1,
            Page::Webinar(_) => s.webinar_views += 1,
            Page::Loan(_) => s.loan_views += 1,
            Page::Apply => s.apply_views += 1,
            _ => {}
        }
    }

    /// Whether `page` is one this visitor's intent makes them linger on.
    fn is_interesting(&self, page: Page) -> bool {
        match self.intent {
            Intent::Browser => matches!(page, Page::Blog(_) | Page::About | Page::Careers),
            Intent::Buyer => matches!(
                page,
                Page::Product(_) | Page::Pricing | Page::Cart | Page::Checkout | Page::Payment
            ),
            Intent::WebinarCurious => matches!(page, Page::Webinar(_) | Page::Blog(_)),
            Intent::LoanSeeker => matches!(page, Page::Loan(_) | Page::Apply),
            Intent::SupportSeeker => matches!(page, Page::Help(_) | Page::Contact),
        }
    }

    /// Time until the next event, 5–120 s, depending on what just happened.
    fn gap_after_last(&mut self) -> i64 {
        let engagement = self.profile.engagement;
        let Some(last) = self.events.last() else {
            return uniform_ms(self.rng, 5.0, 30.0);
        };
        let (lo, hi) = match &last.payload {
            // The long loan form takes a while to fill in.
            Payload::Form {
                form_id,
                action: FormAction::Started,
                ..
            } if *form_id == LOAN_FORM => (60.0, 120.0),
            Payload::Form {
                action: FormAction::Started,
                ..
            } => (20.0, 75.0),
            Payload::Form { .. } => (5.0, 30.0),
            Payload::Chat(_) => (8.0, 60.0),
            Payload::Search { .. } => (5.0, 25.0),
            Payload::Custom { .. } => (5.0, 40.0),
            Payload::PageView { .. } => {
                if last.page.is_some_and(|p| self.is_interesting(p)) {
                    (15.0 + 45.0 * engagement, 120.0)
                } else {
                    (5.0, 25.0 + 35.0 * engagement)
                }
            }
        };
        uniform_ms(self.rng, lo, hi)
    }

    /// Dwell time is attributed to the page the visitor is on.
    fn account_dwell(&mut self, gap_ms: i64) {
        match self.page {
            Page::Product(_) => self.seen.product_dwell_ms += gap_ms,
            Page::Webinar(_) => self.seen.webinar_dwell_ms += gap_ms,
            Page::Loan(_) | Page::Apply => self.seen.loan_dwell_ms += gap_ms,
            _ => {}
        }
    }

    fn next_step(&mut self, time_ms: i64, over_limit: bool) -> Step {
        if let Some(pending) = self.pending.pop_front() {
            if let Some(step) = self.resolve_pending(pending, time_ms) {
                return step;
            }
        }
        if self.in_funnel() {
            let (next, offset) = match self.page {
                Page::Cart => (Page::Checkout, 0.4),
                Page::Checkout => (Page::Payment, 0.55),
                _ => (Page::Complete, 0.35),
            };
            let p = sigmoid(self.purchase_logit(time_ms) + offset);
            if self.rng.random_bool(p) {
                let outcome = (next == Page::Complete).then_some(Outcome::Purchase);
                if outcome.is_some() {
                    self.memory.cart_items = 0;
                }
                let payload = self.page_view_payload(Some(self.page.url()));
                return Step::Emit(Some(next), payload, outcome);
            }
            // Checkout abandonment often ends the visit.
            if over_limit || self.rng.random_bool(0.4) {
                return Step::End;
            }
        }
        self.choose_action()
    }

    fn resolve_pending(&mut self, pending: Pending, time_ms: i64) -> Option<Step> {
        let context = Some(self.page);
        match pending {
            Pending::WebinarResult => {
                let p = sigmoid(self.webinar_logit(time_ms));
                if self.rng.random_bool(p) {
                    let fields = self.rng.random_range(3..=5);
                    Some(Step::Emit(
                        context,
                        form(WEBINAR_FORM, FormAction::Submitted, Some(fields)),
                        Some(Outcome::WebinarSignup),
                    ))
                } else if self.rng.random_bool(0.6) {
                    let fields = self.rng.random_range(0..=2);
                    Some(Step::Emit(
                        context,
                        form(WEBINAR_FORM, FormAction::Abandoned, Some(fields)),
                        None,
                    ))
                } else {
                    None // silently navigated away
                }
            }
            Pending::LoanResult => {
                let p = sigmoid(self.loan_logit(time_ms));
                if self.rng.random_bool(p) {
                    self.memory.loan_fields_best = LOAN_FORM_FIELDS;
                    Some(Step::Emit(
                        context,
                        form(LOAN_FORM, FormAction::Submitted, Some(LOAN_FORM_FIELDS)),
                        Some(Outcome::ApplicationComplete),
                    ))
                } else {
                    let fields = self.rng.random_range(1..LOAN_FORM_FIELDS);
                    self.memory.loan_fields_best = self.memory.loan_fields_best.max(fields);
                    // Field counts are sometimes not reported on abandonment.
                    let reported = self.rng.random_bool(0.85).then_some(fields);
                    self.rng.random_bool(0.8).then(|| {
                        Step::Emit(
                            context,
                            form(LOAN_FORM, FormAction::Abandoned, reported),
                            None,
                        )
                    })
                }
            }
            Pending::Chat(action) => {
                match action {
                    ChatAction::Started => {
                        let messages = self.rng.random_range(1..=4);
                        self.pending.extend(std::iter::repeat_n(
                            Pending::Chat(ChatAction::Message),
                            messages,
                        ));
                        if self.rng.random_bool(0.9) {
                            self.pending.push_back(Pending::Chat(ChatAction::Ended));
                        }
                    }
                    ChatAction::Requested | ChatAction::Message | ChatAction::Ended => {}
                }
                Some(Step::Emit(context, Payload::Chat(action), None))
            }
        }
    }

    fn action_weights(&self) -> [f64; 19] {
        let mut weights = base_weights(self.intent);
        let page = self.page;
        for (w, action) in weights.iter_mut().zip(ACTIONS) {
            let factor = match action {
                Action::AddToCart => f64::from(u8::from(matches!(page, Page::Product(_)))),
                Action::Video => f64::from(u8::from(matches!(
                    page,
                    Page::Product(_) | Page::Webinar(_) | Page::Blog(_) | Page::Loan(_)
                ))),
                Action::Calculator => {
                    f64::from(u8::from(matches!(page, Page::Loan(_) | Page::Apply)))
                }
                Action::WebinarForm => f64::from(u8::from(
                    matches!(page, Page::Webinar(_)) && !self.seen.webinar_form_used,
                )),
                Action::LoanForm => f64::from(u8::from(
                    page == Page::Apply
                        && self.seen.loan_form_attempts < 2
                        && !self.reached[Outcome::ApplicationComplete.index()],
                )),
                Action::Chat if self.seen.chat_used => 0.0,
                Action::Chat if matches!(page, Page::Help(_) | Page::Contact) => 3.0,
                // Carts with items pull buyers back; empty carts rarely get a look.
                Action::Cart if self.memory.cart_items == 0 => 0.3,
                Action::Cart => 2.0 + f64::from(self.memory.cart_items.min(4)),
                // Loan pages lead to the application.
                Action::Apply => 1.0 + f64::from(self.seen.loan_views.min(4)),
                Action::Pricing if matches!(page, Page::Product(_)) => 1.5,
                _ => 1.0,
            };
            *w *= factor;
        }
        weights
    }

    fn choose_action(&mut self) -> Step {
        let weights = self.action_weights();
        let action = ACTIONS[weighted_index(self.rng, &weights)];
        let context = self.rng.random_bool(0.9).then_some(self.page);
        match action {
            Action::Search => {
                let query = self.search_query();
                let results = self.rng.random_bool(0.85).then(|| {
                    if self.rng.random_bool(0.08) {
                        0
                    } else {
                        self.rng.random_range(1..=40)
                    }
                });
                Step::Emit(context, Payload::Search { query, results }, None)
            }
            Action::AddToCart => {
                self.seen.add_to_cart += 1;
                self.memory.cart_items += 1;
                let product = match self.page {
                    Page::Product(i) => &PRODUCTS[i],
                    _ => &PRODUCTS[0],
                };
                let quantity = if self.rng.random_bool(0.85) { 1 } else { 2 };
                let properties = vec![
                    ("product", PropValue::Str(product.slug)),
                    ("price", PropValue::Num(product.price)),
                    ("quantity", PropValue::Int(quantity)),
                ];
                Step::Emit(
                    Some(self.page),
                    Payload::Custom {
                        name: "add_to_cart",
                        properties,
                    },
                    None,
                )
            }
            Action::Video => {
                self.seen.videos += 1;
                let properties = vec![
                    (
                        "seconds_watched",
                        PropValue::Int(self.rng.random_range(5..=600)),
                    ),
                    ("autoplay", PropValue::Bool(self.rng.random_bool(0.2))),
                ];
                Step::Emit(
                    Some(self.page),
                    Payload::Custom {
                        name: "video_played",
                        properties,
                    },
                    None,
                )
            }
            Action::Calculator => {
                self.seen.calculators += 1;
                let amount = f64::from(self.rng.random_range(10..=400u32)) * 100.0;
                let properties = vec![
                    ("amount", PropValue::Num(amount)),
                    (
                        "term_months",
                        PropValue::Int(pick(self.rng, &[12, 24, 36, 48, 60, 84])),
                    ),
                ];
                let properties = if self.rng.random_bool(0.1) {
                    Vec::new()
                } else {
                    properties
                };
                Step::Emit(
                    Some(self.page),
                    Payload::Custom {
                        name: "calculator_used",
                        properties,
                    },
                    None,
                )
            }
            Action::WebinarForm => {
                self.seen.webinar_form_used = true;
                self.pending.push_back(Pending::WebinarResult);
                Step::Emit(
                    Some(self.page),
                    form(WEBINAR_FORM, FormAction::Started, Some(0)),
                    None,
                )
            }
            Action::LoanForm => {
                self.seen.loan_form_attempts += 1;
                self.pending.push_back(Pending::LoanResult);
                let fields = self.rng.random_bool(0.7).then_some(0);
                Step::Emit(
                    Some(self.page),
                    form(LOAN_FORM, FormAction::Started, fields),
                    None,
                )
            }
            Action::Chat => {
                self.seen.chat_used = true;
                if self.rng.random_bool(0.85) {
                    self.pending.push_back(Pending::Chat(ChatAction::Started));
                }
                Step::Emit(context, Payload::Chat(ChatAction::Requested), None)
            }
            navigation => {
                let page = self.page_for(navigation).unwrap_or(Page::Home);
                let referrer = self.rng.random_bool(0.85).then(|| self.page.url());
                Step::Emit(Some(page), self.page_view_payload(referrer), None)
            }
        }
    }

    /// The page a navigation action leads to (`None` for interactions).
    fn page_for(&mut self, action: Action) -> Option<Page> {
        Some(match action {
            Action::Home => Page::Home,
            Action::Product => Page::Product(self.rng.random_range(0..PRODUCTS.len())),
            Action::Pricing => Page::Pricing,
            Action::Cart => Page::Cart,
            Action::Webinar => Page::Webinar(self.rng.random_range(0..WEBINARS.len())),
            Action::Loan => Page::Loan(self.rng.random_range(0..LOANS.len())),
            Action::Apply => Page::Apply,
            Action::Blog => Page::Blog(self.rng.random_range(0..BLOG_POSTS.len())),
            Action::Help => Page::Help(self.rng.random_range(0..HELP_ARTICLES.len())),
            Action::Contact => Page::Contact,
            Action::About => Page::About,
            Action::Careers => Page::Careers,
            _ => return None,
        })
    }

    fn search_query(&mut self) -> &'static str {
        // One search in five is off-topic for the intent.
        let intent = if self.rng.random_bool(0.2) {
            Intent::Browser
        } else {
            self.intent
        };
        match intent {
            Intent::Buyer => pick(self.rng, &PRODUCT_QUERIES),
            Intent::WebinarCurious => pick(self.rng, &WEBINAR_QUERIES),
            Intent::LoanSeeker => pick(self.rng, &LOAN_QUERIES),
            Intent::SupportSeeker => pick(self.rng, &SUPPORT_QUERIES),
            Intent::Browser => match self.rng.random_range(0..5) {
                0 => pick(self.rng, &GENERAL_QUERIES),
                1 => pick(self.rng, &WEBINAR_QUERIES),
                2 => pick(self.rng, &LOAN_QUERIES),
                3 => pick(self.rng, &SUPPORT_QUERIES),
                _ => pick(self.rng, &PRODUCT_QUERIES),
            },
        }
    }

    /// Shared context effects: device, channel, hour of day, engagement.
    fn context_logit(&self, time_ms: i64, mobile_penalty: f64) -> f64 {
        let device = match self.profile.device {
            DeviceCategory::Desktop => 0.3,
            DeviceCategory::Tablet => 0.0,
            DeviceCategory::Mobile => -mobile_penalty,
            DeviceCategory::Other => -0.3,
        };
        let hour = hour_of_day(time_ms);
        let time = if (17..=22).contains(&hour) {
            0.35
        } else if hour <= 5 {
            -0.2
        } else {
            0.0
        };
        device + time + 1.5 * (self.profile.engagement - 0.5)
    }

    fn purchase_logit(&self, time_ms: i64) -> f64 {
        let s = &self.seen;
        let channel = match self.profile.channel {
            Channel::Newsletter => 0.6,
            Channel::GoogleCpc => 0.25,
            Channel::Direct => 0.15,
            Channel::Partner => 0.1,
            Channel::FacebookSocial => -0.35,
            Channel::FacebookPaid => -0.1,
            Channel::GoogleOrganic | Channel::BingOrganic => 0.0,
        };
        let intent = if self.intent == Intent::Buyer {
            0.3
        } else {
            -0.1
        };
        -1.6 + 0.45 * f64::from(s.pricing_views.min(2))
            + 0.3 * f64::from(s.cart_views.min(3))
            + 0.3 * f64::from(s.add_to_cart.min(3))
            + 0.35 * (s.product_dwell_ms as f64 / 60_000.0).min(4.0)
            + channel
            + intent
            + self.context_logit(time_ms, 0.45)
            + self.noise[Outcome::Purchase.index()]
    }

    fn webinar_logit(&self, time_ms: i64) -> f64 {
        let s = &self.seen;
        let channel = match self.profile.channel {
            Channel::Newsletter => 0.7,
            Channel::FacebookSocial | Channel::FacebookPaid => -0.2,
            _ => 0.0,
        };
        let intent = if self.intent == Intent::WebinarCurious {
            0.3
        } else {
            -0.2
        };
        -0.9 + 0.35 * f64::from(s.webinar_views.min(3))
            + 0.4 * f64::from(s.videos.min(2))
            + 0.3 * (s.webinar_dwell_ms as f64 / 60_000.0).min(3.0)
            + channel
            + intent
            + self.context_logit(time_ms, 0.35)
            + self.noise[Outcome::WebinarSignup.index()]
    }

    fn loan_logit(&self, time_ms: i64) -> f64 {
        let s = &self.seen;
        let channel = match self.profile.channel {
            Channel::Partner => 0.5,
            Channel::GoogleCpc => 0.2,
            _ => 0.0,
        };
        let intent = if self.intent == Intent::LoanSeeker {
            0.3
        } else {
            -0.3
        };
        -2.7 + 0.3 * f64::from(s.loan_views.min(3))
            + 0.45 * f64::from(s.calculators.min(2))
            + 0.3 * f64::from(s.apply_views.min(2))
            + 0.25 * (s.loan_dwell_ms as f64 / 60_000.0).min(4.0)
            + 0.04 * f64::from(self.memory.loan_fields_best)
            + channel
            + intent
            + self.context_logit(time_ms, 0.6)
            + self.noise[Outcome::ApplicationComplete.index()]
    }
}

fn form(form_id: &'static str, action: FormAction, fields_completed: Option<u32>) -> Payload {
    Payload::Form {
        form_id,
        action,
        fields_completed,
    }
}
