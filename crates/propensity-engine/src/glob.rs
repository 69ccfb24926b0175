//! URL path patterns: a glob where `*` matches any run of characters
//! (including `/`) and everything else matches itself. Deliberately smaller
//! than regular expressions: patterns come from business users' configs and
//! must be obvious to read and impossible to make slow.

use std::fmt;

/// A compiled URL path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    /// The literal pieces between `*`s.
    pieces: Vec<String>,
    /// Whether the pattern starts with `*`.
    open_start: bool,
    /// Whether the pattern ends with `*`.
    open_end: bool,
    /// The source text, for messages.
    source: String,
}

impl UrlPattern {
    /// Compiles a pattern; it must start with `/` or `*`.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !(pattern.starts_with('/') || pattern.starts_with('*')) {
            return Err(format!(
                "`{pattern}` must start with `/` or `*` (it is matched against the URL path)"
            ));
        }
        Ok(Self {
            pieces: pattern
                .split('*')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            open_start: pattern.starts_with('*'),
            open_end: pattern.ends_with('*'),
            source: pattern.to_owned(),
        })
    }

    /// Whether `path` matches. Greedy-free: each literal piece is found left
    /// to right, which is correct for `*`-only globs and linear in the input.
    pub fn matches(&self, path: &str) -> bool {
        if self.pieces.is_empty() {
            return self.open_start || path.is_empty();
        }
        let mut rest = path;
        let last = self.pieces.len() - 1;
        for (i, piece) in self.pieces.iter().enumerate() {
            if i == 0 && !self.open_start {
                match rest.strip_prefix(piece.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                }
                if i == last && !self.open_end {
                    return rest.is_empty();
                }
                continue;
            }
            if i == last && !self.open_end {
                return rest.ends_with(piece.as_str());
            }
            match rest.find(piece.as_str()) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

impl fmt::Display for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The path of a URL: after the authority, before `?` or `#`. A bare path is
/// returned as is.
pub fn url_path(url: &str) -> &str {
    // Searches for single ASCII characters (every event's URL goes through
    // here): `str::find(char)` is a vectorised byte search, unlike
    // `find("://")` or `find([..])`, and finds the same first occurrence.
    let mut scheme_end = None;
    let mut from = 0;
    while let Some(k) = url[from..].find(':') {
        let i = from + k;
        if url[i..].starts_with("://") {
            scheme_end = Some(i);
            break;
        }
        from = i + 1;
    }
    let after_scheme = match scheme_end {
        Some(i) => {
            let rest = &url[i + 3..];
            match rest.find('/') {
                Some(j) => &rest[j..],
                None => "/",
            }
        }
        None => url,
    };
    let end = match (after_scheme.find('?'), after_scheme.find('#')) {
        (Some(q), Some(h)) => q.min(h),
        (Some(e), None) | (None, Some(e)) => e,
        (None, None) => after_scheme.len(),
    };
    &after_scheme[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        UrlPattern::parse(p).unwrap().matches(s)
    }

    #[test]
    fn literal_and_wildcards() {
        assert!(m("/checkout/complete", "/checkout/complete"));
        assert!(!m("/checkout/complete", "/checkout/complete/x"));
        assert!(m("/checkout*", "/checkout/payment"));
        assert!(m("/checkout*", "/checkout"));
        assert!(!m("/checkout*", "/cart"));
        assert!(m("*/complete", "/checkout/complete"));
        assert!(m("/products/*/reviews", "/products/a/b/reviews"));
        assert!(!m("/products/*/reviews", "/products/reviews"));
        assert!(m("*", "/anything"));
        assert!(m("/a*b*c", "/axxbyyc"));
        assert!(!m("/a*b*c", "/axxbyy"));
        assert!(UrlPattern::parse("checkout").is_err());
    }

    #[test]
    fn paths_of_urls() {
        assert_eq!(url_path("https://shop.example.com/p/1?x=2#f"), "/p/1");
        assert_eq!(url_path("https://shop.example.com"), "/");
        assert_eq!(url_path("/cart?x"), "/cart");
        for url in [
            "",
            "://",
            "https://",
            "https://h",
            "https://h/a:b//c?d#e",
            "h/x#y?z",
            "é://ü/ä?ö",
            "x:/y://z/w",
            "//a/b",
        ] {
            let reference = {
                let after = match url.find("://") {
                    Some(i) => match url[i + 3..].find('/') {
                        Some(j) => &url[i + 3 + j..],
                        None => "/",
                    },
                    None => url,
                };
                &after[..after.find(['?', '#']).unwrap_or(after.len())]
            };
            assert_eq!(url_path(url), reference, "{url}");
        }
    }
}
