//! Basic authentication of a route (`auth-type: basic`): its users with their password hashes,
//! as compiled from the `auth-secret` Secret, and the check of one password against a hash.
//!
//! A hash is parsed when the table is compiled, so a line vane cannot use is reported then
//! (that user cannot log in) rather than found per request. The schemes are those htpasswd
//! writes and nginx's `auth_basic_user_file` accepts: bcrypt (`$2y$`, `$2b$`, `$2a$`), apr1
//! MD5 (`$apr1$`), MD5-crypt (`$1$`), SHA-256 and SHA-512 crypt (`$5$`, `$6$`), `{SHA}` and
//! `{PLAIN}`. DES crypt, which cuts passwords to 8 characters, is not among them.

use base64::Engine as _;
use http::HeaderValue;
use sha1::Digest as _;
use sha_crypt::PasswordVerifier as _;
use subtle::ConstantTimeEq as _;

/// Highest bcrypt cost vane verifies: each step doubles the work, and cost 14 is already about
/// a second of CPU. A hash that asks for more is refused at compile time, so that one Secret
/// cannot make every login attempt a denial of service.
pub const MAX_BCRYPT_COST: u32 = 14;
/// Highest `rounds=` of SHA-crypt vane verifies (its default is 5,000): about as costly as
/// [`MAX_BCRYPT_COST`].
pub const MAX_SHA_CRYPT_ROUNDS: u32 = 1_000_000;

/// The users of one Ingress's basic authentication, and how to ask for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// The `WWW-Authenticate` of a 401: `Basic realm="REALM"`.
    pub challenge: HeaderValue,
    /// By user name, sorted, without repeats (the first line of a name wins, as in nginx).
    pub users: Box<[(Box<str>, PasswordHash)]>,
    /// A digest of the users and hashes: what a credential verified against them is cached
    /// under, so that a changed Secret (a rotated password) invalidates the cache.
    pub identity: u64,
}

impl BasicAuth {
    /// The hash of `user`, if there is such a user.
    pub fn user(&self, user: &str) -> Option<&PasswordHash> {
        self.users
            .binary_search_by(|(name, _)| (**name).cmp(user))
            .ok()
            .map(|at| &self.users[at].1)
    }
}

/// One user's password hash, as read from an htpasswd line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordHash {
    /// A crypt(3) modular hash (`$2y$`, `$apr1$`, `$1$`, `$5$`, `$6$`), checked by hashing the
    /// password with its salt and parameters.
    Crypt(Box<str>),
    /// `{SHA}`: SHA-1 of the password, unsalted.
    Sha1([u8; 20]),
    /// `{PLAIN}`: the password itself.
    Plain(Box<[u8]>),
}

impl PasswordHash {
    /// Reads a hash as htpasswd writes it, or says why it cannot be used.
    pub fn parse(hash: &str) -> Result<Self, String> {
        let hash = hash.trim();
        if let Some(plain) = hash.strip_prefix("{PLAIN}") {
            return Ok(Self::Plain(plain.as_bytes().into()));
        }
        if let Some(digest) = hash.strip_prefix("{SHA}") {
            return base64::engine::general_purpose::STANDARD
                .decode(digest)
                .ok()
                .and_then(|bytes| <[u8; 20]>::try_from(bytes).ok())
                .map(Self::Sha1)
                .ok_or_else(|| "its {SHA} hash is not 20 bytes in base64".into());
        }
        let scheme = match hash.split('$').nth(1) {
            Some(scheme @ ("2a" | "2b" | "2y" | "apr1" | "1" | "5" | "6"))
                if hash.starts_with('$') =>
            {
                scheme
            }
            _ => {
                return Err(
                    "its hash is of no scheme vane knows (bcrypt, apr1, $1$, $5$, $6$, {SHA}, \
                     {PLAIN})"
                        .into(),
                )
            }
        };
        let well_formed = match scheme {
            "5" | "6" => sha_crypt::PasswordHashRef::new(hash).is_ok(),
            _ => crypt3_rs::Hash::try_from(hash).is_ok(),
        };
        if !well_formed {
            return Err(format!("its ${scheme}$ hash is malformed"));
        }
        check_cost(scheme, hash)?;
        Ok(Self::Crypt(hash.into()))
    }

    /// Whether checking a password costs real CPU time (a salted, iterated hash), so that it
    /// belongs off the async workers.
    pub fn is_costly(&self) -> bool {
        matches!(self, Self::Crypt(_))
    }

    /// Whether `password` matches. The final comparison takes the same time wherever the
    /// bytes differ.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Plain(expected) => bool::from(expected.as_ref().ct_eq(password)),
            Self::Sha1(expected) => {
                bool::from(sha1::Sha1::digest(password).as_slice().ct_eq(expected))
            }
            // sha-crypt compares in constant time itself.
            Self::Crypt(hash) if hash.starts_with("$5$") || hash.starts_with("$6$") => {
                sha_crypt::ShaCrypt::default()
                    .verify_password(password, &**hash)
                    .is_ok()
            }
            Self::Crypt(hash) => crypt3_rs::Hash::try_from(&**hash)
                .and_then(|parsed| parsed.hash_with(password))
                .is_ok_and(|computed| {
                    bool::from(computed.as_str().as_bytes().ct_eq(hash.as_bytes()))
                }),
        }
    }
}

/// Refuses bcrypt costs and SHA-crypt rounds above what vane verifies.
fn check_cost(scheme: &str, hash: &str) -> Result<(), String> {
    let mut fields = hash.split('$').skip(2);
    match scheme {
        "2a" | "2b" | "2y" => {
            let cost = fields
                .next()
                .and_then(|c| c.parse::<u32>().ok())
                .unwrap_or(u32::MAX);
            if cost > MAX_BCRYPT_COST {
                return Err(format!(
                    "its bcrypt cost {cost} is above {MAX_BCRYPT_COST}, the most vane verifies"
                ));
            }
        }
        "5" | "6" => {
            let rounds = fields
                .next()
                .and_then(|f| f.strip_prefix("rounds="))
                .map(|r| r.parse::<u32>().unwrap_or(u32::MAX));
            if let Some(rounds) = rounds.filter(|&r| r > MAX_SHA_CRYPT_ROUNDS) {
                return Err(format!(
                    "its {rounds} rounds are above {MAX_SHA_CRYPT_ROUNDS}, the most vane verifies"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes of "password" as `htpasswd` and `openssl passwd` (`-apr1`, `-1`, `-5`, `-6`)
    /// write them. bcrypt's `2a`, `2b` and `2y` hash ASCII passwords alike.
    const HASHES: &[&str] = &[
        "$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe",
        "$2b$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe",
        "$2a$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe",
        "$apr1$63JlJ2NH$smE0mnB5h3tDri0zkpWXt1",
        "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/",
        "$5$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC.",
        "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
        "$6$rounds=10000$saltsalt$ZqOTO2O04D/DgwZlm.rZTgWxvBaIf4LQsZKtXFEu9UHJ4CvgmdLAGxKUzJ0mPO98OevETdY6oK/Oac6j2Axxq/",
        "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        "{PLAIN}password",
    ];

    #[test]
    fn each_scheme_verifies_the_right_password_only() {
        for hash in HASHES {
            let parsed = PasswordHash::parse(hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
            assert!(parsed.verify(b"password"), "{hash}");
            assert!(!parsed.verify(b"Password"), "{hash}");
            assert!(!parsed.verify(b""), "{hash}");
        }
    }

    #[test]
    fn unknown_malformed_and_too_costly_hashes_are_refused() {
        for bad in [
            "password",
            "xOAFZqRz5RduI",
            "$2y$05$short",
            "{SHA}bm90IDIwIGJ5dGVz",
            "$7$whatever",
            "$2y$31$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe",
            "$6$rounds=999999999$salt$x",
            "",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad:?}");
        }
    }
}
