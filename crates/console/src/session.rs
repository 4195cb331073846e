//! Console sessions: a random token in an HttpOnly, SameSite=Strict cookie
//! (Secure when the server speaks TLS) maps to the API key the console
//! calls the API with, and to the session's CSRF token. Only a hash of the
//! token is kept, so the table cannot be replayed from a memory dump of the
//! keys. Sessions live in memory: a restart signs everybody out.
//!
//! Every state-changing request carries the session's CSRF token (a form
//! field `_csrf` or the `X-CSRF-Token` header), compared in constant time.
//! The sign-in form, before any session exists, is protected by a
//! double-submit token: a short-lived cookie and a form field that must
//! match.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

pub const SESSION_COOKIE: &str = "headway_console";
pub const LOGIN_COOKIE: &str = "headway_console_login";
/// Where the cookies are sent: the console only, never the API.
pub const COOKIE_PATH: &str = "/admin";
/// At most this many sessions; the oldest goes first.
const MAX_SESSIONS: usize = 1024;

/// A one-shot message shown on the next page (the result of an action,
/// or a secret shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flash {
    Done(String),
    Failed(String),
    /// A secret shown once: what it is, and the secret.
    Secret {
        what: String,
        secret: String,
    },
}

#[derive(Debug)]
pub struct Session {
    /// The API key the console calls the API with on this person's behalf.
    pub api_key: String,
    pub csrf: String,
    /// Who signed in (an OIDC name or "API key <prefix>").
    pub who: String,
    /// An API key minted for this session (OIDC sign-in), deleted at sign-out.
    pub minted_key_prefix: Option<String>,
    pub expires: Instant,
    flash: Mutex<Vec<Flash>>,
}

impl Session {
    pub fn push_flash(&self, flash: Flash) {
        let mut f = self.flash.lock();
        if f.len() < 8 {
            f.push(flash);
        }
    }

    pub fn take_flash(&self) -> Vec<Flash> {
        std::mem::take(&mut *self.flash.lock())
    }

    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| same_secret(p, &self.csrf))
    }
}

pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A fresh random token (256 bits, hex).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Arc<Session>>>,
}

/// What a new session needs.
pub struct NewSession {
    pub api_key: String,
    pub who: String,
    pub minted_key_prefix: Option<String>,
    pub ttl: Duration,
}

impl Sessions {
    /// Opens a session; returns its cookie token.
    pub fn open(&self, new: NewSession) -> (String, Arc<Session>) {
        let token = random_token();
        let now = Instant::now();
        let session = Arc::new(Session {
            api_key: new.api_key,
            csrf: random_token(),
            who: new.who,
            minted_key_prefix: new.minted_key_prefix,
            expires: now + new.ttl,
            flash: Mutex::new(Vec::new()),
        });
        let mut map = self.by_hash.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(hash(&token), session.clone());
        (token, session)
    }

    /// The live session of this cookie token.
    pub fn get(&self, token: &str) -> Option<Arc<Session>> {
        let key = hash(token);
        let mut map = self.by_hash.lock();
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, token: &str) -> Option<Arc<Session>> {
        self.by_hash.lock().remove(&hash(token))
    }

    pub fn len(&self) -> usize {
        self.by_hash.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value; `max_age` zero deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_is_found_by_its_token_only_until_it_expires_or_closes() {
        let sessions = Sessions::default();
        let (token, s) = sessions.open(NewSession {
            api_key: "k".into(),
            who: "w".into(),
            minted_key_prefix: None,
            ttl: Duration::from_secs(60),
        });
        assert!(sessions.get(&token).is_some());
        assert!(sessions.get(&random_token()).is_none());
        assert!(s.csrf_ok(Some(&s.csrf.clone())));
        assert!(!s.csrf_ok(Some("nope")));
        assert!(!s.csrf_ok(None));
        assert!(sessions.close(&token).is_some());
        assert!(sessions.get(&token).is_none());
        let (short, _) = sessions.open(NewSession {
            api_key: "k".into(),
            who: "w".into(),
            minted_key_prefix: None,
            ttl: Duration::ZERO,
        });
        assert!(sessions.get(&short).is_none());
    }

    #[test]
    fn cookies_are_read_by_exact_name_and_written_strict() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; headway_console_login=x; headway_console=tok"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("x"));
        assert_eq!(cookie(&h, "b"), None);
        let c = set_cookie(SESSION_COOKIE, "t", Duration::from_secs(5), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "t", Duration::ZERO, false).contains("Secure"));
    }
}
