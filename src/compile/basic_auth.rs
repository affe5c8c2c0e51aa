//! `auth-type: basic` with ingress-nginx's `auth-secret`, `auth-secret-type` and `auth-realm`:
//! the users of the Secret, compiled into a [`BasicAuth`].
//!
//! Fail closed: when an Ingress asks for basic auth and vane cannot apply it (digest, an
//! unknown secret type, no `auth-secret`, a Secret in another namespace, missing, without the
//! `auth` key or without a usable user), its routes answer 503 and a diagnostic says why. A
//! single line that cannot be used (an unknown hash scheme, say) is reported naming its user,
//! who then cannot log in; the other users can.

use std::sync::Arc;

use http::HeaderValue;
use xxhash_rust::xxh3::Xxh3;

use super::secrets::{self, SecretInput, Secrets};
use super::{reasons, Annotations, Sink};
use crate::api::annotations::{self, keys, AuthSecretType};
use crate::table::{BasicAuth, ObjectRef, PasswordHash};

/// The key of an `auth-file` Secret that holds the htpasswd lines.
const AUTH_FILE_KEY: &str = "auth";

/// Most users one Secret may hold: a bound on what a Secret can make vane store.
const MAX_USERS: usize = 10_000;

/// What an Ingress's basic auth annotations come to.
pub(super) struct Parsed {
    /// The users, `Ok(None)` without `auth-type`, or why basic auth cannot be applied (then
    /// reported; the routes are refused).
    pub auth: Result<Option<Arc<BasicAuth>>, String>,
    /// The Secret read (or looked for), which the Ingress's compile depends on.
    pub secret: Option<SecretInput>,
}

pub(super) fn parse(
    annotations: &Annotations<'_>,
    object: &ObjectRef,
    secrets: &Secrets<'_>,
    sink: &mut Sink,
) -> Parsed {
    let mut secret = None;
    let auth = users(annotations, object, secrets, &mut secret, sink);
    Parsed { auth, secret }
}

fn users(
    annotations: &Annotations<'_>,
    object: &ObjectRef,
    secrets: &Secrets<'_>,
    input: &mut Option<SecretInput>,
    sink: &mut Sink,
) -> Result<Option<Arc<BasicAuth>>, String> {
    if annotations
        .parse_or_refuse(keys::AUTH_TYPE, annotations::parse_auth_type, sink)?
        .is_none()
    {
        return Ok(None);
    }
    let secret_type = annotations
        .parse_or_refuse(
            keys::AUTH_SECRET_TYPE,
            annotations::parse_auth_secret_type,
            sink,
        )?
        .unwrap_or(AuthSecretType::File);
    let realm = annotations
        .parse_or_refuse(keys::AUTH_REALM, annotations::parse_realm, sink)?
        .unwrap_or_default();
    let refuse = |sink: &mut Sink, reason, why: String| {
        sink.report(
            object,
            reason,
            format!("{why}; the Ingress's routes answer 503 until it is fixed"),
        );
        format!("{} cannot be applied", keys::AUTH_TYPE)
    };
    let Some((namespace, name)) =
        annotations.parse_or_refuse(keys::AUTH_SECRET, annotations::parse_secret_ref, sink)?
    else {
        let why = format!("{}: basic needs {}", keys::AUTH_TYPE, keys::AUTH_SECRET);
        return Err(refuse(sink, reasons::REFUSED_ANNOTATION, why));
    };
    // ingress-nginx refuses another namespace's Secret unless allow-cross-namespace-resources
    // is set (off by default); vane has no such switch.
    if let Some(namespace) = namespace.filter(|n| **n != *object.namespace) {
        let why = format!(
            "{}: the Secret must be in the Ingress's namespace {:?}, not {namespace:?}",
            keys::AUTH_SECRET,
            object.namespace
        );
        return Err(refuse(sink, reasons::REFUSED_ANNOTATION, why));
    }
    let namespace = &*object.namespace;
    let described = format!("Secret {namespace}/{name} of {}", keys::AUTH_SECRET);
    *input = Some(SecretInput::of(secrets, namespace, &name));
    let Some(secret) = secrets.get(namespace, &name) else {
        let why = format!("{described} not found");
        return Err(refuse(sink, reasons::SECRET_NOT_FOUND, why));
    };
    let lines: Vec<(String, &[u8])> = match secret_type {
        AuthSecretType::File => {
            let Some(file) = secrets::value(secret, AUTH_FILE_KEY) else {
                let why = format!("{described} has no key {AUTH_FILE_KEY:?}");
                return Err(refuse(sink, reasons::INVALID_SECRET, why));
            };
            htpasswd_lines(file)
        }
        AuthSecretType::Map => secrets::entries(secret)
            .into_iter()
            .map(|(user, hash)| (user.to_owned(), hash))
            .collect(),
    };
    let mut users: Vec<(Box<str>, PasswordHash)> = Vec::new();
    for (user, hash) in lines.into_iter().take(MAX_USERS) {
        let parsed = match std::str::from_utf8(hash) {
            Ok(hash) if !user.is_empty() => PasswordHash::parse(hash),
            Ok(_) => Err("its line has no user name".into()),
            Err(_) => Err("its hash is not text".into()),
        };
        match parsed {
            Ok(hash) => users.push((user.into(), hash)),
            Err(why) => sink.report(
                object,
                reasons::INVALID_SECRET,
                format!("{described}: user {user:?}: {why}; that user cannot log in"),
            ),
        }
    }
    // The first line of a name wins, as nginx reads its file top down.
    users.sort_by(|a, b| a.0.cmp(&b.0));
    users.dedup_by(|later, first| later.0 == first.0);
    if users.is_empty() {
        let why = format!("{described} has no user who can log in");
        return Err(refuse(sink, reasons::INVALID_SECRET, why));
    }
    let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
        .map_err(|_| refuse(sink, reasons::REFUSED_ANNOTATION, "invalid realm".into()))?;
    Ok(Some(Arc::new(BasicAuth {
        challenge,
        identity: identity(&users),
        users: users.into(),
    })))
}

/// The users of an htpasswd file: `user:hash` per line, optionally followed by `:comment` as
/// nginx allows; blank lines and `#` comments are skipped.
fn htpasswd_lines(file: &[u8]) -> Vec<(String, &[u8])> {
    file.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.trim_ascii().is_empty() && !line.starts_with(b"#"))
        .map(|line| {
            let mut fields = line.splitn(3, |&b| b == b':');
            let user = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
            (user, fields.next().unwrap_or_default())
        })
        .collect()
}

/// A digest of the users and their hashes (see [`BasicAuth::identity`]).
fn identity(users: &[(Box<str>, PasswordHash)]) -> u64 {
    let mut hasher = Xxh3::new();
    for (user, hash) in users {
        hasher.update(user.as_bytes());
        hasher.update(b"\0");
        hasher.update(format!("{hash:?}").as_bytes());
        hasher.update(b"\n");
    }
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_lines_skip_comments_and_blanks_and_drop_trailing_fields() {
        let file = b"# users\nalice:{PLAIN}a\r\n\n  \nbob:{PLAIN}b:the builder\ncarol\n";
        let lines = htpasswd_lines(file);
        let lines: Vec<(&str, &[u8])> = lines.iter().map(|(u, h)| (u.as_str(), *h)).collect();
        assert_eq!(
            lines,
            vec![
                ("alice", &b"{PLAIN}a"[..]),
                ("bob", &b"{PLAIN}b"[..]),
                ("carol", &b""[..])
            ]
        );
    }
}
