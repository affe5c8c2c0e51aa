//! Label and field selectors, parsed from a request's query, and the [`Filter`] they make up:
//! which objects a list or watch sees (kind, namespace, selectors) and in which form.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::resource::{convert, meta_str, partial, Resource};
use crate::server::Target;

#[derive(Debug)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_labels(selector: &str) -> Result<Vec<LabelReq>, ApiError> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: {selector:?}"));
    let mut reqs = Vec::new();
    for term in split_terms(selector) {
        let req = if let Some(key) = term.strip_prefix('!') {
            LabelReq::NotExists(key.trim().to_string())
        } else if let Some((key, value)) = term.split_once("!=") {
            LabelReq::Ne(key.trim().into(), value.trim().into())
        } else if let Some((key, value)) = term.split_once("==") {
            LabelReq::Eq(key.trim().into(), value.trim().into())
        } else if let Some((key, value)) = term.split_once('=') {
            LabelReq::Eq(key.trim().into(), value.trim().into())
        } else if let Some(open) = term.find('(') {
            let values: Vec<String> = term[open + 1..]
                .trim_end()
                .strip_suffix(')')
                .ok_or_else(bad)?
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let words: Vec<&str> = term[..open].split_whitespace().collect();
            match words.as_slice() {
                [key, "in"] => LabelReq::In(key.to_string(), values),
                [key, "notin"] => LabelReq::NotIn(key.to_string(), values),
                _ => return Err(bad()),
            }
        } else if term.split_whitespace().count() == 1 {
            LabelReq::Exists(term.to_string())
        } else {
            return Err(bad());
        };
        let key = match &req {
            LabelReq::Eq(k, _)
            | LabelReq::Ne(k, _)
            | LabelReq::In(k, _)
            | LabelReq::NotIn(k, _)
            | LabelReq::Exists(k)
            | LabelReq::NotExists(k) => k,
        };
        if key.is_empty() {
            return Err(bad());
        }
        reqs.push(req);
    }
    Ok(reqs)
}

impl LabelReq {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        match self {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::Ne(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        }
    }
}

#[derive(Debug)]
struct FieldReq {
    path: Vec<String>,
    value: String,
    negate: bool,
}

fn parse_fields(selector: &str) -> Result<Vec<FieldReq>, ApiError> {
    let mut reqs = Vec::new();
    for term in split_terms(selector) {
        let (path, value, negate) = if let Some((p, v)) = term.split_once("!=") {
            (p, v, true)
        } else if let Some((p, v)) = term.split_once("==") {
            (p, v, false)
        } else if let Some((p, v)) = term.split_once('=') {
            (p, v, false)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid selector: '{selector}'; can't understand '{term}'"
            )));
        };
        reqs.push(FieldReq {
            path: path.trim().split('.').map(str::to_string).collect(),
            value: value.trim().to_string(),
            negate,
        });
    }
    Ok(reqs)
}

impl FieldReq {
    fn matches(&self, object: &Value) -> bool {
        let found = self
            .path
            .iter()
            .try_fold(object, |v, segment| v.get(segment.as_str()));
        let actual = match found {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        (actual == self.value) != self.negate
    }
}

/// Which objects a list or watch sees, and in which form.
pub(crate) struct Filter {
    pub(crate) res: &'static Resource,
    namespace: Option<String>,
    fields: Vec<FieldReq>,
    labels: Vec<LabelReq>,
    /// The metadata-only form (`PartialObjectMetadata`) was asked for.
    pub(crate) meta_only: bool,
}

impl Filter {
    pub(crate) fn new(
        target: &Target,
        query: &HashMap<String, String>,
        meta_only: bool,
    ) -> Result<Filter, ApiError> {
        Ok(Filter {
            res: target.res,
            namespace: target.namespace.clone(),
            fields: parse_fields(query.get("fieldSelector").map_or("", String::as_str))?,
            labels: parse_labels(query.get("labelSelector").map_or("", String::as_str))?,
            meta_only,
        })
    }

    pub(crate) fn in_scope(&self, kind: &str, namespace: &str) -> bool {
        kind == self.res.kind && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }

    fn selects(&self, view: &Value) -> bool {
        let labels = view
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.fields.iter().all(|f| f.matches(view)) && self.labels.iter().all(|l| l.matches(labels))
    }

    /// The requested form of a stored object.
    pub(crate) fn output(&self, view: Value) -> Value {
        if self.meta_only {
            partial(&view)
        } else {
            view
        }
    }

    /// The requested form of a stored object, if it is in scope and selected.
    pub(crate) fn project(&self, stored: &Value) -> Option<Value> {
        let namespace = meta_str(stored, "namespace").unwrap_or_default();
        if !self.in_scope(self.res.kind, namespace) {
            return None;
        }
        let view = convert(stored, self.res.stored(), self.res);
        self.selects(&view).then(|| self.output(view))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The kube client tests use `=` and `!=` only; these are the other operators.
    #[test]
    fn label_selectors_take_every_operator() {
        let labels = json!({"app": "web", "tier": "edge"});
        let selects = |selector: &str| {
            let reqs = parse_labels(selector).unwrap();
            reqs.iter().all(|r| r.matches(labels.as_object()))
        };
        assert!(selects("app=web, tier==edge"));
        assert!(selects("app in (web, api),tier notin (db)"));
        assert!(!selects("app notin (web)"));
        assert!(selects("app,!missing"));
        assert!(!selects("!app"));
        assert!(selects("missing!=x"), "!= matches an absent label");
        assert!(selects(""), "the empty selector selects everything");
    }

    #[test]
    fn field_selectors_follow_dotted_paths() {
        let object = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let selects = |selector: &str| {
            let reqs = parse_fields(selector).unwrap();
            reqs.iter().all(|r| r.matches(&object))
        };
        assert!(selects("metadata.name=web,spec.replicas==2"));
        assert!(selects("metadata.namespace!=default"));
        assert!(
            selects("metadata.namespace="),
            "an absent field is the empty string"
        );
        assert!(!selects("metadata.name!=web"));
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        for selector in ["app in web", "a b", "in (x)", "=x", "app in (x"] {
            assert!(parse_labels(selector).is_err(), "{selector}");
        }
        assert!(parse_fields("metadata.name").is_err());
    }
}
