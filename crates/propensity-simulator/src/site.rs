//! The simulated website: its host, page catalog (URL paths the engine's shipped
//! config matches on), page titles, and search vocabulary.
//!
//! The URL paths here are part of the contract with the engine's config
//! (`/checkout/complete`, `/webinars/…`, `/loans/…`, `/apply`, …); change them
//! only together with that config.

/// Scheme and host of every page URL.
pub const HOST: &str = "https://shop.example.com";

/// A product: URL slug, display name and price in EUR.
pub(crate) struct Product {
    pub slug: &'static str,
    pub name: &'static str,
    pub price: f64,
}

pub(crate) const PRODUCTS: [Product; 10] = [
    Product {
        slug: "widget-1",
        name: "Widget 1",
        price: 19.0,
    },
    Product {
        slug: "widget-2",
        name: "Widget 2",
        price: 24.5,
    },
    Product {
        slug: "widget-3",
        name: "Widget 3",
        price: 39.0,
    },
    Product {
        slug: "widget-4",
        name: "Widget 4",
        price: 49.9,
    },
    Product {
        slug: "gadget-pro",
        name: "Gadget Pro",
        price: 199.0,
    },
    Product {
        slug: "gadget-mini",
        name: "Gadget Mini",
        price: 79.0,
    },
    Product {
        slug: "smart-lamp",
        name: "Smart Lamp",
        price: 59.0,
    },
    Product {
        slug: "desk-organizer",
        name: "Desk Organizer",
        price: 29.9,
    },
    Product {
        slug: "travel-mug",
        name: "Travel Mug",
        price: 14.5,
    },
    Product {
        slug: "noise-cancelling-headphones",
        name: "Noise-Cancelling Headphones",
        price: 249.0,
    },
];

pub(crate) const WEBINARS: [(&str, &str); 4] = [
    ("intro-to-home-finance", "Intro to Home Finance"),
    ("saving-for-retirement", "Saving for Retirement"),
    ("small-business-growth", "Small Business Growth"),
    ("smart-home-basics", "Smart Home Basics"),
];

pub(crate) const LOANS: [(&str, &str); 4] = [
    ("personal-loan", "Personal Loan"),
    ("car-loan", "Car Loan"),
    ("home-improvement-loan", "Home Improvement Loan"),
    ("student-loan", "Student Loan"),
];

pub(crate) const BLOG_POSTS: [(&str, &str); 6] = [
    ("10-tips-for-saving", "10 Tips for Saving"),
    ("how-to-choose-a-widget", "How to Choose a Widget"),
    ("company-news-2026", "Company News 2026"),
    ("remote-work-setup", "Remote Work Setup"),
    ("budgeting-101", "Budgeting 101"),
    ("gift-guide", "Gift Guide"),
];

pub(crate) const HELP_ARTICLES: [(&str, &str); 6] = [
    ("refunds", "Refunds"),
    ("returns", "Returns"),
    ("shipping", "Shipping"),
    ("payment-methods", "Payment Methods"),
    ("order-status", "Order Status"),
    ("account", "Your Account"),
];

/// A page of the site. Indices point into the catalogs above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    Home,
    Product(usize),
    Pricing,
    Cart,
    Checkout,
    Payment,
    /// Viewing this page *is* the purchase outcome.
    Complete,
    Webinar(usize),
    Loan(usize),
    Apply,
    Blog(usize),
    Help(usize),
    Contact,
    About,
    Careers,
}

impl Page {
    /// The URL path (no host).
    pub fn path(self) -> String {
        match self {
            Page::Home => "/".to_owned(),
            Page::Product(i) => format!("/products/{}", PRODUCTS[i].slug),
            Page::Pricing => "/pricing".to_owned(),
            Page::Cart => "/cart".to_owned(),
            Page::Checkout => "/checkout".to_owned(),
            Page::Payment => "/checkout/payment".to_owned(),
            Page::Complete => "/checkout/complete".to_owned(),
            Page::Webinar(i) => format!("/webinars/{}", WEBINARS[i].0),
            Page::Loan(i) => format!("/loans/{}", LOANS[i].0),
            Page::Apply => "/apply".to_owned(),
            Page::Blog(i) => format!("/blog/{}", BLOG_POSTS[i].0),
            Page::Help(i) => format!("/help/{}", HELP_ARTICLES[i].0),
            Page::Contact => "/contact".to_owned(),
            Page::About => "/about".to_owned(),
            Page::Careers => "/careers".to_owned(),
        }
    }

    /// The absolute URL.
    pub fn url(self) -> String {
        format!("{HOST}{}", self.path())
    }

    /// The HTML title a browser would report.
    pub fn title(self) -> String {
        let name = match self {
            Page::Home => "Home",
            Page::Product(i) => PRODUCTS[i].name,
            Page::Pricing => "Pricing",
            Page::Cart => "Your Cart",
            Page::Checkout => "Checkout",
            Page::Payment => "Payment",
            Page::Complete => "Thank You for Your Order",
            Page::Webinar(i) => WEBINARS[i].1,
            Page::Loan(i) => LOANS[i].1,
            Page::Apply => "Apply for a Loan",
            Page::Blog(i) => BLOG_POSTS[i].1,
            Page::Help(i) => HELP_ARTICLES[i].1,
            Page::Contact => "Contact Us",
            Page::About => "About Us",
            Page::Careers => "Careers",
        };
        format!("{name} | Shop Example")
    }
}

/// Product searches (buyers).
pub(crate) const PRODUCT_QUERIES: [&str; 8] = [
    "widget 3",
    "gadget pro price",
    "smart lamp",
    "noise cancelling headphones",
    "travel mug",
    "widget",
    "gadget mini vs gadget pro",
    "desk organizer",
];
/// Webinar searches.
pub(crate) const WEBINAR_QUERIES: [&str; 4] = [
    "webinar schedule",
    "free webinar",
    "retirement webinar",
    "webinar recording",
];
/// Loan searches.
pub(crate) const LOAN_QUERIES: [&str; 5] = [
    "loan rates",
    "personal loan",
    "car loan calculator",
    "apply for loan",
    "loan requirements",
];
/// Support searches.
pub(crate) const SUPPORT_QUERIES: [&str; 6] = [
    "refund",
    "return policy",
    "shipping time",
    "cancel order",
    "contact support",
    "where is my order",
];
/// Undirected searches (browsers).
pub(crate) const GENERAL_QUERIES: [&str; 5] =
    ["careers", "about us", "blog", "gift ideas", "opening hours"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_paths() {
        assert_eq!(
            Page::Complete.url(),
            "https://shop.example.com/checkout/complete"
        );
        assert_eq!(
            Page::Product(2).url(),
            "https://shop.example.com/products/widget-3"
        );
        assert_eq!(Page::Payment.path(), "/checkout/payment");
        assert!(Page::Webinar(0).path().starts_with("/webinars/"));
        assert!(Page::Loan(0).path().starts_with("/loans/"));
        assert_eq!(Page::Apply.path(), "/apply");
        assert!(Page::Help(0).path().starts_with("/help/"));
        assert!(Page::Blog(0).path().starts_with("/blog/"));
    }
}
