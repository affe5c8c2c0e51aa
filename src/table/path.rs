//! Path matching, as Ingress `networking.k8s.io/v1` defines it.
//!
//! - `Exact` matches the request path byte for byte (case- and slash-sensitive).
//! - `Prefix` matches element-wise on `/`: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, but not
//!   `/foobar`. A trailing slash in the rule is ignored, so `/foo/` behaves as `/foo`.
//! - `ImplementationSpecific` is treated as `Prefix` by vane.
//!
//! The longest match wins, and Exact beats Prefix on the same path. An exact match always covers
//! the whole request path, so it is at least as long as any prefix match: checking exact rules
//! first and then prefixes longest-first gives precisely that order.
//!
//! Request paths are matched in normal form ([`normalize_request_path`]), as nginx matches its
//! locations: otherwise `/public/../admin` would match a `/public` route and reach a backend
//! that resolves it to `/admin`. The request still goes upstream as the client wrote it.

use std::borrow::Cow;

use foldhash::HashMap;

use serde::Serialize;

/// How a rule's path is compared with the request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PathKind {
    Exact,
    Prefix,
}

/// A validated path rule. For `Prefix`, `path` is stored without its trailing slash (the root
/// prefix `/` is stored as the empty string), which makes matching a single comparison.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathRule {
    kind: PathKind,
    path: Box<str>,
}

impl PathRule {
    /// Request paths are compared decoded (see [`normalize_request_path`]), so rules are too:
    /// `/%61pi` is the rule `/api`. (Compile has rejected dot segments, `//` and `%2F`.)
    pub fn exact(path: &str) -> Self {
        Self {
            kind: PathKind::Exact,
            path: decode_unreserved(path).into(),
        }
    }

    pub fn prefix(path: &str) -> Self {
        Self {
            kind: PathKind::Prefix,
            path: decode_unreserved(path).trim_end_matches('/').into(),
        }
    }

    pub fn kind(&self) -> PathKind {
        self.kind
    }

    /// The rule as a user would write it (`/` for the root prefix).
    pub fn display_path(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }
}

impl std::fmt::Display for PathRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}", self.kind, self.display_path())
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

/// The path rules of one host, indexed for lookup. Values are route indexes.
#[derive(Clone, Debug, Default)]
pub struct PathMatcher {
    exact: HashMap<Box<str>, usize>,
    /// Sorted by prefix length, longest first.
    prefixes: Vec<(Box<str>, usize)>,
}

impl PathMatcher {
    /// Builds the matcher. `rules` must not contain the same rule twice (compile resolves
    /// conflicts before this point); if it does, the first one wins.
    pub fn new(rules: impl IntoIterator<Item = (PathRule, usize)>) -> Self {
        let mut matcher = Self::default();
        for (rule, route) in rules {
            matcher.insert(rule, route);
        }
        matcher
    }

    /// Adds a rule, unless the same rule is there already (the first one wins). Prefixes stay
    /// sorted as they come, so a table indexes each host's rules without a pass of its own.
    pub(super) fn insert(&mut self, rule: PathRule, route: usize) {
        match rule.kind {
            PathKind::Exact => {
                self.exact.entry(rule.path).or_insert(route);
            }
            PathKind::Prefix => {
                if self.prefixes.iter().any(|(p, _)| *p == rule.path) {
                    return;
                }
                // After every prefix at least as long: equal lengths keep their (deterministic)
                // input order.
                let at = self
                    .prefixes
                    .iter()
                    .position(|(p, _)| p.len() < rule.path.len())
                    .unwrap_or(self.prefixes.len());
                self.prefixes.insert(at, (rule.path, route));
            }
        }
    }

    pub fn lookup(&self, path: &str) -> Option<usize> {
        if let Some(&route) = self.exact.get(path) {
            return Some(route);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|&(_, route)| route)
    }
}

/// The form of a request path that routes are matched against, nginx's (its `$uri`):
/// - percent-encoded unreserved characters (`%2e`, `%61`, ...) and slashes (`%2F`) decoded; a
///   decoded slash separates segments like any other, so `/public%2F..%2Fadmin` is `/admin`
///   (nginx decodes before it merges slashes and resolves dot segments, and an origin that
///   decodes `%2F` would serve `/admin` too); other escapes stay as they are, on both sides;
/// - runs of slashes merged;
/// - `.` and `..` segments resolved, never above the root (RFC 3986 section 5.2.4).
///
/// A path already in normal form (nearly every request) is returned as it is, unallocated.
/// Paths that do not start with `/` (`*` of `OPTIONS *`) are left alone.
pub fn normalize_request_path(path: &str) -> Cow<'_, str> {
    // One pass over the bytes: this runs for every request.
    let bytes = path.as_bytes();
    let suspect = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' || (b == b'/' && matches!(bytes.get(i + 1), Some(b'/' | b'.'))));
    if !suspect || !path.starts_with('/') {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    // Whether the normal form ends with a slash: `/a/`, `/a/.` and `/a/b/..` all name a
    // directory, which matters to Exact rules.
    let mut directory = false;
    for segment in decoded.split('/').skip(1) {
        directory = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &segments {
        normal.push('/');
        normal.push_str(segment);
    }
    if directory || normal.is_empty() {
        normal.push('/');
    }
    if normal == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normal)
    }
}

/// Decodes `%XX` where XX is an unreserved character (ALPHA, DIGIT, `-`, `.`, `_`, `~`) or `/`.
fn decode_unreserved(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let unreserved_at = |i: usize| -> Option<u8> {
        let hex = bytes.get(i + 1..i + 3)?;
        let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        (value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~' | b'/'))
            .then_some(value)
    };
    if !(0..bytes.len()).any(|i| bytes[i] == b'%' && unreserved_at(i).is_some()) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    // A decoded hex digit right after `%` or `%H` would spell a new escape (`%3%32` would
    // become `%32`), which a second decoding (ours, or the backend's) turns into something
    // else: it stays encoded, so that the normal form is stable.
    let spells_escape = |out: &str, value: u8| {
        let tail = out.as_bytes();
        value.is_ascii_hexdigit()
            && (tail.last() == Some(&b'%')
                || matches!(tail, [.., b'%', h] if h.is_ascii_hexdigit()))
    };
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], unreserved_at(i)) {
            (b'%', Some(value)) if !spells_escape(&out, value) => {
                out.push(char::from(value));
                i += 3;
            }
            _ => {
                // Copy up to the next '%' at once: `i` and the next '%' are character
                // boundaries, so multi-byte characters stay whole.
                let next = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == b'%')
                    .map_or(bytes.len(), |n| i + 1 + n);
                out.push_str(&path[i..next]);
                i = next;
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_are_matched_in_normal_form() {
        let cases = [
            ("/", "/"),
            ("/api/v1", "/api/v1"),
            (
                "/.well-known/acme-challenge/x",
                "/.well-known/acme-challenge/x",
            ),
            ("/public/../admin", "/admin"),
            ("/public/./x", "/public/x"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/../../etc", "/etc"),
            ("/..", "/"),
            ("//admin", "/admin"),
            ("/a//b///", "/a/b/"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E./admin", "/admin"),
            ("/%61pi", "/api"),
            ("/a%2Fb", "/a/b"),
            ("/a%2f..", "/"),
            ("/public%2F..%2Fadmin", "/admin"),
            ("/%2F%2Fadmin", "/admin"),
            ("/100%", "/100%"),
            ("/%3%32", "/%3%32"),
            ("/%%32e%%32e/admin", "/%%32e%%32e/admin"),
            ("/%2%65", "/%2%65"),
            ("/%zz/é/%41é", "/%zz/é/Aé"),
            ("*", "*"),
        ];
        for (path, normal) in cases {
            assert_eq!(normalize_request_path(path), normal, "{path}");
        }
        assert!(matches!(
            normalize_request_path("/api/v1/items"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn rules_with_encoded_unreserved_characters_match_like_requests() {
        let rule = PathRule::prefix("/%61pi/");
        assert_eq!(rule, PathRule::prefix("/api"));
        assert!(matches(&rule, &normalize_request_path("/%61pi/x")));
        assert!(matches(&PathRule::exact("/%7Euser"), "/~user"));
    }

    /// Whether `rule` alone matches `path`, through the matcher routing uses.
    fn matches(rule: &PathRule, path: &str) -> bool {
        PathMatcher::new([(rule.clone(), 0)]).lookup(path).is_some()
    }

    #[test]
    fn prefix_rule_matches_element_wise() {
        let rule = PathRule::prefix("/foo");
        for (path, expected) in [
            ("/foo", true),
            ("/foo/", true),
            ("/foo/bar", true),
            ("/foobar", false),
            ("/FOO", false),
            ("/", false),
        ] {
            assert_eq!(matches(&rule, path), expected, "Prefix /foo against {path}");
        }
    }

    #[test]
    fn trailing_slash_in_prefix_rule_is_ignored() {
        assert_eq!(PathRule::prefix("/aaa/bbb/"), PathRule::prefix("/aaa/bbb"));
        assert!(matches(&PathRule::prefix("/aaa/bbb/"), "/aaa/bbb"));
    }

    #[test]
    fn root_prefix_matches_every_path() {
        let rule = PathRule::prefix("/");
        assert!(matches(&rule, "/"));
        assert!(matches(&rule, "/anything/at/all"));
        assert_eq!(rule.display_path(), "/");
    }

    #[test]
    fn exact_rule_is_case_and_slash_sensitive() {
        let rule = PathRule::exact("/foo");
        assert!(matches(&rule, "/foo"));
        assert!(!matches(&rule, "/foo/"));
        assert!(!matches(&rule, "/FOO"));
    }

    #[test]
    fn matcher_prefers_exact_then_longest_prefix() {
        let m = PathMatcher::new([
            (PathRule::prefix("/"), 0),
            (PathRule::prefix("/aaa"), 1),
            (PathRule::prefix("/aaa/bbb"), 2),
            (PathRule::exact("/aaa/bbb"), 3),
        ]);
        assert_eq!(m.lookup("/aaa/bbb"), Some(3));
        assert_eq!(m.lookup("/aaa/bbb/ccc"), Some(2));
        assert_eq!(m.lookup("/aaa/b"), Some(1));
        assert_eq!(m.lookup("/aaaccc"), Some(0));
        assert_eq!(m.lookup("/zzz"), Some(0));
    }
}
