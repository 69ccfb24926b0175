//! Per-visitor latent traits (intent, engagement, true device and traffic
//! source) and what of them the visitor's events reveal (the optional `device`
//! and `traffic` objects, presence of `session_id`).

use rand::Rng;

use crate::sampling::{pick_weighted, SimRng};

/// Why the visitor came. Latent: never written to the wire, only expressed
/// through behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    /// Just looking (the majority).
    Browser,
    /// Wants to buy a product.
    Buyer,
    /// Interested in webinars.
    WebinarCurious,
    /// Looking for a loan.
    LoanSeeker,
    /// Has a problem (refund, shipping, …).
    SupportSeeker,
}

/// Device class, mirroring the wire `device.category` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceCategory {
    Desktop,
    Mobile,
    Tablet,
    Other,
}

impl DeviceCategory {
    pub fn name(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Mobile => "mobile",
            Self::Tablet => "tablet",
            Self::Other => "other",
        }
    }
}

/// Where the visitor came from. The `source`/`medium`/`campaign` reported on
/// the wire are derived from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    GoogleOrganic,
    GoogleCpc,
    BingOrganic,
    Direct,
    Newsletter,
    FacebookSocial,
    FacebookPaid,
    Partner,
}

impl Channel {
    /// (source, medium, campaign) as reported on the wire.
    pub fn wire(self) -> (&'static str, &'static str, Option<&'static str>) {
        match self {
            Self::GoogleOrganic => ("google", "organic", None),
            Self::GoogleCpc => ("google", "cpc", Some("brand-search-q4")),
            Self::BingOrganic => ("bing", "organic", None),
            Self::Direct => ("direct", "none", None),
            Self::Newsletter => ("newsletter", "email", Some("november-newsletter")),
            Self::FacebookSocial => ("facebook", "social", None),
            Self::FacebookPaid => ("facebook", "paid_social", Some("black-friday-2026")),
            Self::Partner => ("partner", "referral", Some("partner-offers")),
        }
    }

    /// The external referrer of a session's landing page, if the channel has one.
    pub fn referrer(self) -> Option<&'static str> {
        match self {
            Self::GoogleOrganic | Self::GoogleCpc => Some("https://www.google.com/"),
            Self::BingOrganic => Some("https://www.bing.com/"),
            Self::FacebookSocial | Self::FacebookPaid => Some("https://www.facebook.com/"),
            Self::Partner => Some("https://partner.example.org/offers"),
            Self::Direct | Self::Newsletter => None,
        }
    }
}

/// Optional wire `device` object, fixed per visitor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReportedDevice {
    pub category: DeviceCategory,
    pub browser: Option<&'static str>,
    pub os: Option<&'static str>,
}

/// Optional wire `traffic` object, fixed per visitor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReportedTraffic {
    pub source: Option<&'static str>,
    pub medium: Option<&'static str>,
    pub campaign: Option<&'static str>,
}

/// Everything fixed about a visitor before their first event.
#[derive(Debug, Clone)]
pub(crate) struct VisitorProfile {
    /// `v-000123` style id.
    pub visitor_id: String,
    /// The number used inside event/session/consent ids.
    pub number: usize,
    pub intent: Intent,
    /// Latent engagement in (0, 1), mean 0.5: longer sessions, longer dwell,
    /// higher conversion.
    pub engagement: f64,
    /// True device, which drives behaviour even when not reported.
    pub device: DeviceCategory,
    /// True acquisition channel, likewise.
    pub channel: Channel,
    pub reported_device: Option<ReportedDevice>,
    pub reported_traffic: Option<ReportedTraffic>,
    /// Whether the visitor's events carry an explicit `session_id`; the others
    /// rely on the engine's 20-minute inactivity rule.
    pub sends_session_id: bool,
    /// Number of sessions, 1–3.
    pub sessions: usize,
}

impl VisitorProfile {
    /// Turns the visitor into one brought by a paid social campaign for a
    /// sale (the drift scenario, see `SimulationParams::campaign_after`):
    /// mostly buyers and bargain hunters, on their phones. Intent,
    /// device and channel are drawn again from the campaign's population
    /// with `rng` (a stream of its own, so the usual visitors' draws are
    /// untouched), and what the visitor reports follows.
    pub fn join_campaign(&mut self, rng: &mut SimRng) {
        use Intent::*;
        // A sale: bargain hunters, many of whom buy.
        self.intent = pick_weighted(
            rng,
            &[
                (Browser, 0.36),
                (Buyer, 0.56),
                (WebinarCurious, 0.02),
                (LoanSeeker, 0.03),
                (SupportSeeker, 0.03),
            ],
        );
        self.device = pick_weighted(
            rng,
            &[
                (DeviceCategory::Mobile, 0.85),
                (DeviceCategory::Desktop, 0.12),
                (DeviceCategory::Tablet, 0.03),
            ],
        );
        self.channel = if rng.random_bool(0.8) {
            Channel::FacebookPaid
        } else {
            sample_channel(rng, self.intent)
        };
        self.reported_device = self
            .reported_device
            .is_some()
            .then(|| report_device(rng, self.device));
        if let Some(t) = self.reported_traffic.as_mut() {
            let (source, medium, campaign) = self.channel.wire();
            t.source = Some(source);
            t.medium = t.medium.map(|_| medium);
            t.campaign = campaign;
        }
    }

    /// Draws a profile for visitor `number` (1-based).
    pub fn sample(rng: &mut SimRng, number: usize) -> Self {
        use Intent::*;
        let intent = pick_weighted(
            rng,
            &[
                (Browser, 0.52),
                (Buyer, 0.22),
                (WebinarCurious, 0.09),
                (LoanSeeker, 0.10),
                (SupportSeeker, 0.07),
            ],
        );
        // Mean of three uniforms: bell-shaped on (0, 1).
        let engagement = (rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>()) / 3.0;
        let device = pick_weighted(
            rng,
            &[
                (DeviceCategory::Desktop, 0.52),
                (DeviceCategory::Mobile, 0.40),
                (DeviceCategory::Tablet, 0.07),
                (DeviceCategory::Other, 0.01),
            ],
        );
        let channel = sample_channel(rng, intent);
        let reported_device = rng.random_bool(0.92).then(|| report_device(rng, device));
        let reported_traffic = rng.random_bool(0.88).then(|| {
            let (source, medium, campaign) = channel.wire();
            ReportedTraffic {
                source: Some(source),
                // Medium and campaign are sometimes stripped by redirects.
                medium: rng.random_bool(0.9).then_some(medium),
                campaign: campaign.filter(|_| rng.random_bool(0.85)),
            }
        });
        let sends_session_id = rng.random_bool(0.5);
        let sessions = pick_weighted(rng, &[(1, 0.72), (2, 0.20), (3, 0.08)]);
        Self {
            visitor_id: format!("v-{number:06}"),
            number,
            intent,
            engagement,
            device,
            channel,
            reported_device,
            reported_traffic,
            sends_session_id,
            sessions,
        }
    }
}

/// Channels correlate with intent (loan seekers arrive via partners, webinar
/// fans via the newsletter, support seekers directly), which makes the traffic
/// features informative.
fn sample_channel(rng: &mut SimRng, intent: Intent) -> Channel {
    use Channel::*;
    let weights: [f64; 8] = match intent {
        //                        GOrg  GCpc  Bing  Dir   News  FbS   FbP   Part
        Intent::Browser => [0.30, 0.06, 0.06, 0.22, 0.06, 0.14, 0.08, 0.08],
        Intent::Buyer => [0.24, 0.18, 0.05, 0.18, 0.17, 0.04, 0.08, 0.06],
        Intent::WebinarCurious => [0.22, 0.05, 0.04, 0.14, 0.35, 0.10, 0.04, 0.06],
        Intent::LoanSeeker => [0.26, 0.12, 0.06, 0.12, 0.08, 0.04, 0.04, 0.28],
        Intent::SupportSeeker => [0.34, 0.02, 0.06, 0.44, 0.06, 0.04, 0.02, 0.02],
    };
    let channels = [
        GoogleOrganic,
        GoogleCpc,
        BingOrganic,
        Direct,
        Newsletter,
        FacebookSocial,
        FacebookPaid,
        Partner,
    ];
    let items: Vec<(Channel, f64)> = channels.into_iter().zip(weights).collect();
    pick_weighted(rng, &items)
}

fn report_device(rng: &mut SimRng, category: DeviceCategory) -> ReportedDevice {
    let (browser, os) = match category {
        DeviceCategory::Desktop => (
            pick_weighted(
                rng,
                &[
                    ("Chrome", 0.6),
                    ("Edge", 0.15),
                    ("Firefox", 0.1),
                    ("Safari", 0.15),
                ],
            ),
            pick_weighted(
                rng,
                &[
                    ("Windows", 0.65),
                    ("macOS", 0.28),
                    ("Linux", 0.04),
                    ("ChromeOS", 0.03),
                ],
            ),
        ),
        DeviceCategory::Mobile => {
            if rng.random_bool(0.45) {
                ("Safari", "iOS")
            } else {
                (
                    pick_weighted(rng, &[("Chrome", 0.75), ("Samsung Internet", 0.25)]),
                    "Android",
                )
            }
        }
        DeviceCategory::Tablet => {
            if rng.random_bool(0.6) {
                ("Safari", "iPadOS")
            } else {
                ("Chrome", "Android")
            }
        }
        DeviceCategory::Other => ("Silk", "Fire OS"),
    };
    ReportedDevice {
        category,
        browser: rng.random_bool(0.9).then_some(browser),
        os: rng.random_bool(0.9).then_some(os),
    }
}
