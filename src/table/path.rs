//! Path matching, as Ingress `networking.k8s.io/v1` defines it.
//!
//! - `Exact` matches the request path byte for byte (case- and slash-sensitive).
//! - `Prefix` matches element-wise on `/`: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, but not
//!   `/foobar`. A trailing slash in the rule is ignored, so `/foo/` behaves as `/foo`.
//! - `ImplementationSpecific` is treated as `Prefix` by vane, unless its Ingress asks for
//!   regular expressions (`use-regex` or `rewrite-target`): then it is a [`PathKind::Regex`],
//!   matched case-insensitively and anchored at the start of the path, as ingress-nginx's
//!   `location ~* "^..."`.
//!
//! Exact rules are tried first; then Prefix and Regex rules together, longest rule first (the
//! length of the path as written), and the first that matches wins: ingress-nginx's order for
//! its locations. Among Prefix rules alone that is the longest match. An exact match always
//! covers the whole request path, so Exact beats Prefix on the same path.
//!
//! Request paths are matched in normal form ([`normalize_request_path`]), as nginx matches its
//! locations: otherwise `/public/../admin` would match a `/public` route and reach a backend
//! that resolves it to `/admin`. The request still goes upstream as the client wrote it.

use std::borrow::Cow;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use foldhash::HashMap;
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use serde::Serialize;

/// How a rule's path is compared with the request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PathKind {
    Exact,
    Prefix,
    Regex,
}

/// A validated path rule. For `Prefix`, `path` is stored without its trailing slash (the root
/// prefix `/` is stored as the empty string), which makes matching a single comparison. For
/// `Regex`, `path` is the expression as written and `regex` its compiled form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathRule {
    kind: PathKind,
    /// Shared by every table the rule is compiled into, as hosts are.
    path: Arc<str>,
    regex: Option<PathRegex>,
}

/// Most bytes a path expression may have, and most capture groups.
const MAX_REGEX_LEN: usize = 1024;
const MAX_REGEX_GROUPS: usize = 32;
/// What one compiled expression may take: its program, and its lazy DFA's cache.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
const REGEX_DFA_LIMIT: usize = 512 * 1024;

/// A compiled path expression, compared and ordered by its source (a `Regex` is neither).
#[derive(Clone, Debug)]
pub struct PathRegex(Arc<Regex>);

impl PathRegex {
    /// `pattern` as ingress-nginx's `location ~* "^pattern"` reads it: case-insensitive and
    /// anchored at the start. The whole expression is anchored (`^(?:pattern)`), so that a
    /// top-level `a|b` cannot match `b` anywhere in the path, as nginx's `^a|b` would. The
    /// `regex` crate matches in linear time (no backtracking, so no ReDoS); it refuses
    /// lookaround and backreferences, which PCRE has. Like nginx's PCRE (without its UTF
    /// mode), it matches bytes and folds ASCII case only: Unicode classes would make every
    /// match run a much larger automaton, and request paths are ASCII.
    fn new(pattern: &str) -> Result<Self, String> {
        if pattern.len() > MAX_REGEX_LEN {
            return Err(format!(
                "is a regular expression longer than {MAX_REGEX_LEN} bytes"
            ));
        }
        let regex = regex_builder(pattern).build().map_err(|e| {
            format!(
                "is not a regular expression vane can use: {}",
                first_line(&e)
            )
        })?;
        if regex.captures_len() > MAX_REGEX_GROUPS + 1 {
            return Err(format!("has more than {MAX_REGEX_GROUPS} capture groups"));
        }
        Ok(Self(Arc::new(regex)))
    }

    /// `path` taken literally (case-insensitively, as nginx's `rewrite "(?i)PATH"` takes the
    /// path of a rule that is not an expression).
    pub fn literal(path: &str) -> Self {
        Self::new(&regex::escape(path)).expect("an escaped path within the bounds compiles")
    }

    /// The compiled expression, for its capture groups.
    pub fn regex(&self) -> &Regex {
        &self.0
    }
}

fn regex_builder(pattern: &str) -> RegexBuilder {
    let mut builder = RegexBuilder::new(&format!("^(?:{pattern})"));
    builder
        .case_insensitive(true)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_LIMIT);
    builder
}

/// The regex crate's errors span lines (the pattern, a caret); a diagnostic wants one.
fn first_line(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or(text.lines().next().unwrap_or_default())
        .trim_start_matches("error: ")
        .to_owned()
}

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for PathRegex {}

impl Hash for PathRegex {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state)
    }
}

impl PartialOrd for PathRegex {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathRegex {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_str().cmp(other.0.as_str())
    }
}

impl PathRule {
    /// Request paths are compared decoded (see [`normalize_request_path`]), so rules are too:
    /// `/%61pi` is the rule `/api`. (Compile has rejected dot segments, `//` and `%2F`.)
    pub fn exact(path: &str) -> Self {
        Self {
            kind: PathKind::Exact,
            path: decode_unreserved(path).into(),
            regex: None,
        }
    }

    pub fn prefix(path: &str) -> Self {
        Self {
            kind: PathKind::Prefix,
            path: decode_unreserved(path).trim_end_matches('/').into(),
            regex: None,
        }
    }

    /// A regular-expression rule, or why `pattern` cannot be one (it does not compile in the
    /// `regex` crate's syntax, or exceeds the bounds on length, size and capture groups).
    pub fn regex(pattern: &str) -> Result<Self, String> {
        Ok(Self {
            kind: PathKind::Regex,
            path: pattern.into(),
            regex: Some(PathRegex::new(pattern)?),
        })
    }

    pub fn kind(&self) -> PathKind {
        self.kind
    }

    /// The compiled expression of a `Regex` rule.
    pub fn compiled(&self) -> Option<&PathRegex> {
        self.regex.as_ref()
    }

    /// The length rules are ordered by (longest first): the path as written, less a Prefix's
    /// trailing slash, which does not change what it matches.
    fn order_len(&self) -> usize {
        self.path.len()
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

/// A Prefix or Regex rule of a [`PathMatcher`], in match order.
#[derive(Clone, Debug)]
enum Ordered {
    Prefix(Arc<str>),
    Regex {
        /// The index of the expression in the matcher's `RegexSet`.
        index: usize,
        regex: PathRegex,
        /// The length of the expression as written, which orders it.
        len: usize,
    },
}

impl Ordered {
    fn len(&self) -> usize {
        match self {
            Ordered::Prefix(prefix) => prefix.len(),
            Ordered::Regex { len, .. } => *len,
        }
    }
}

/// The path rules of one host, indexed for lookup. Values are route indexes.
#[derive(Clone, Debug, Default)]
pub struct PathMatcher {
    exact: HashMap<Arc<str>, usize>,
    /// Prefix and Regex rules, longest first.
    ordered: Vec<(Ordered, usize)>,
    /// Every Regex rule of the host in one automaton, so that a lookup runs one pass over the
    /// path however many expressions there are, rather than one pass per expression.
    regexes: Option<RegexSet>,
}

impl PathMatcher {
    /// Builds the matcher. `rules` must not contain the same rule twice (compile resolves
    /// conflicts before this point); if it does, the first one wins.
    pub fn new(rules: impl IntoIterator<Item = (PathRule, usize)>) -> Self {
        let mut matcher = Self::default();
        for (rule, route) in rules {
            matcher.insert(rule, route);
        }
        matcher.index_regexes();
        matcher
    }

    /// Adds a rule, unless the same rule is there already (the first one wins). Prefix and
    /// Regex rules stay in match order as they come, so a table indexes each host's rules
    /// without a pass of its own; [`index_regexes`](Self::index_regexes) must follow the last.
    pub(super) fn insert(&mut self, rule: PathRule, route: usize) {
        if rule.kind == PathKind::Exact {
            self.exact.entry(rule.path).or_insert(route);
            return;
        }
        let len = rule.order_len();
        let entry = match rule.regex {
            Some(regex) => Ordered::Regex {
                index: 0,
                regex,
                len,
            },
            None => Ordered::Prefix(rule.path),
        };
        let same = |(other, _): &(Ordered, usize)| match (other, &entry) {
            (Ordered::Prefix(a), Ordered::Prefix(b)) => a == b,
            (Ordered::Regex { regex: a, .. }, Ordered::Regex { regex: b, .. }) => a == b,
            _ => false,
        };
        if self.ordered.iter().any(same) {
            return;
        }
        // After every rule at least as long: equal lengths keep their (deterministic) input
        // order.
        let at = self
            .ordered
            .iter()
            .position(|(other, _)| other.len() < len)
            .unwrap_or(self.ordered.len());
        self.ordered.insert(at, (entry, route));
    }

    /// Builds the automaton of the Regex rules, in match order (nothing to do without any).
    pub(super) fn index_regexes(&mut self) {
        let mut patterns = Vec::new();
        for (rule, _) in &mut self.ordered {
            if let Ordered::Regex { index, regex, .. } = rule {
                *index = patterns.len();
                patterns.push(regex.0.as_str().to_owned());
            }
        }
        // Each expression compiled alone within the bounds, so the set of them does too (its
        // limits grow with the number of expressions); were it refused all the same, each
        // rule would be matched with its own expression, slower but alike. A host with one
        // expression (the common case) needs no set: it would match as its expression does,
        // and building it again at every compile is what a reload would pay per such host.
        self.regexes = (patterns.len() > 1)
            .then(|| {
                RegexSetBuilder::new(&patterns)
                    .case_insensitive(true)
                    .unicode(false)
                    .size_limit(REGEX_SIZE_LIMIT.saturating_mul(patterns.len()))
                    .dfa_size_limit(REGEX_DFA_LIMIT.saturating_mul(patterns.len()).min(64 << 20))
                    .build()
                    .ok()
            })
            .flatten();
    }

    pub fn lookup(&self, path: &str) -> Option<usize> {
        if let Some(&route) = self.exact.get(path) {
            return Some(route);
        }
        // The expressions run only when a Regex rule is reached, and then once for all.
        let mut matched = None;
        self.ordered
            .iter()
            .find(|(rule, _)| match rule {
                Ordered::Prefix(prefix) => prefix_matches(prefix, path),
                Ordered::Regex { index, regex, .. } => match &self.regexes {
                    Some(set) => matched
                        .get_or_insert_with(|| set.matches(path.as_bytes()))
                        .matched(*index),
                    None => regex.0.is_match(path.as_bytes()),
                },
            })
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
    fn regex_rules_are_anchored_case_insensitive_and_bounded() {
        let rule = PathRule::regex("/foo/[0-9]+|/bar").unwrap();
        assert!(matches(&rule, "/FOO/12/x"));
        assert!(matches(&rule, "/bar"));
        assert!(
            !matches(&rule, "/x/bar"),
            "the whole alternation is anchored"
        );
        assert!(!matches(&rule, "/foo/x"));
        for bad in [
            "/(?=x)",
            r"/(a)\1",
            "/[",
            &"a".repeat(2000),
            &"(a)".repeat(40),
        ] {
            assert!(PathRule::regex(bad).is_err(), "{bad:?}");
        }
        // A blowup in program size is refused, not built.
        assert!(PathRule::regex(r"/(?:[a-z]{1000}){1000}").is_err());
    }

    #[test]
    fn prefix_and_regex_rules_go_longest_first_after_exact() {
        let m = PathMatcher::new([
            (PathRule::prefix("/foo/bar"), 0),
            (PathRule::regex("/foo/bar/[a-z]{3}").unwrap(), 1),
            (PathRule::exact("/foo/bar/bar"), 2),
            (PathRule::regex("/f.*").unwrap(), 3),
        ]);
        assert_eq!(m.lookup("/foo/bar/bar"), Some(2));
        assert_eq!(m.lookup("/foo/bar/baz"), Some(1));
        assert_eq!(m.lookup("/foo/bar/12"), Some(0));
        assert_eq!(m.lookup("/fizz"), Some(3));
        assert_eq!(m.lookup("/zzz"), None);
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
