//! What an ID token says, once it is proven genuine: signature against the
//! provider's published keys (asymmetric algorithms only), issuer, audience,
//! expiry, nonce and the access token hash are all checked by the
//! `openidconnect` crate here; then the user-info answer fills in what the
//! token left out, as headscale does.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use headway_state::tailnet::OidcIdentity;
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, ClaimsVerificationError, ClientId,
    IdTokenVerifier, IssuerUrl, JwsSigningAlgorithm, Nonce, SignatureVerificationError,
    UserInfoClaims,
};
use serde::{Deserialize, Deserializer, Serialize};

/// Claims beyond the standard ones that Headway reads: `groups`, which some
/// providers send as one string when there is one group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ExtraClaims {
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub groups: Option<Vec<String>>,
}

impl AdditionalClaims for ExtraClaims {}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Groups {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Groups>::deserialize(d)? {
        None => None,
        Some(Groups::One(g)) => Some(vec![g]),
        Some(Groups::Many(v)) => Some(v),
    })
}

pub(crate) type IdToken = openidconnect::IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub(crate) type IdTokenClaims = openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim>;
pub(crate) type UserInfo = UserInfoClaims<ExtraClaims, CoreGenderClaim>;

/// What an ID token is checked against: the provider's identity and keys.
#[derive(Debug, Clone)]
pub(crate) struct TrustAnchor {
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    pub keys: CoreJsonWebKeySet,
    /// Signature algorithms accepted: those the provider announces, less
    /// `none` and the shared-secret (HMAC) ones, whose key is the client
    /// secret and proves nothing about the provider.
    pub algorithms: Vec<CoreJwsSigningAlgorithm>,
}

impl TrustAnchor {
    pub(crate) fn accepted_algorithms(
        announced: &[CoreJwsSigningAlgorithm],
    ) -> Vec<CoreJwsSigningAlgorithm> {
        let algs: Vec<_> = announced
            .iter()
            .filter(|a| !a.uses_shared_secret() && **a != CoreJwsSigningAlgorithm::None)
            .cloned()
            .collect();
        if algs.is_empty() {
            // OpenID Connect's default.
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        } else {
            algs
        }
    }
}

/// Why an ID token was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the ID token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the ID token is signed with a key the provider does not publish")]
    UnknownKey,
    #[error("the ID token failed verification: {0}")]
    Invalid(ClaimsVerificationError),
    #[error("the access token does not match the ID token's at_hash")]
    AccessTokenMismatch,
}

impl TokenError {
    /// The provider may have rotated its keys since they were fetched.
    pub(crate) fn may_be_key_rotation(&self) -> bool {
        matches!(self, TokenError::UnknownKey)
    }
}

/// Verifies a raw ID token (and, when it carries `at_hash`, the access token
/// issued with it) at time `now`; returns its claims.
pub(crate) fn verify_id_token(
    raw: &str,
    access_token: Option<&AccessToken>,
    anchor: &TrustAnchor,
    nonce: &Nonce,
    now: DateTime<Utc>,
) -> Result<IdTokenClaims, TokenError> {
    let token = IdToken::from_str(raw).map_err(|e| TokenError::Malformed(e.to_string()))?;
    let verifier: IdTokenVerifier<'_, CoreJsonWebKey> = IdTokenVerifier::new_public_client(
        anchor.client_id.clone(),
        anchor.issuer.clone(),
        anchor.keys.clone(),
    )
    .set_allowed_algs(anchor.algorithms.clone())
    .set_time_fn(move || now);
    let claims = token
        .claims(&verifier, nonce)
        .map_err(|e| match e {
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => TokenError::UnknownKey,
            e => TokenError::Invalid(e),
        })?
        .clone();
    if let (Some(expected), Some(access_token)) = (claims.access_token_hash(), access_token) {
        let alg = token
            .signing_alg()
            .map_err(|e| TokenError::Invalid(ClaimsVerificationError::SignatureVerification(e)))?;
        let key = token
            .signing_key(&verifier)
            .map_err(|e| TokenError::Invalid(ClaimsVerificationError::SignatureVerification(e)))?;
        let actual = AccessTokenHash::from_token(access_token, alg, key)
            .map_err(|_| TokenError::AccessTokenMismatch)?;
        if actual != *expected {
            return Err(TokenError::AccessTokenMismatch);
        }
    }
    Ok(claims)
}

/// A person as the provider describes them, from the ID token and the
/// user-info answer together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Person {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub preferred_username: String,
    pub picture: String,
    pub groups: Vec<String>,
    /// When the ID token expires.
    pub token_expiry: DateTime<Utc>,
}

impl Person {
    pub(crate) fn from_id_token(c: &IdTokenClaims) -> Self {
        Person {
            issuer: c.issuer().to_string(),
            subject: c.subject().to_string(),
            email: c.email().map(|e| e.to_string()).unwrap_or_default(),
            email_verified: c.email_verified().unwrap_or(false),
            name: c
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string())
                .unwrap_or_default(),
            preferred_username: c
                .preferred_username()
                .map(|u| u.to_string())
                .unwrap_or_default(),
            picture: c
                .picture()
                .and_then(|p| p.get(None))
                .map(|p| p.to_string())
                .unwrap_or_default(),
            groups: c.additional_claims().groups.clone().unwrap_or_default(),
            token_expiry: c.expiration(),
        }
    }

    /// Fills in from the user-info answer: its values win where present
    /// (it is often the only place providers put profile claims). Ignored
    /// when it is about another subject.
    pub(crate) fn merge_user_info(&mut self, info: &UserInfo) {
        if info.subject().as_str() != self.subject {
            return;
        }
        fn set(field: &mut String, value: Option<String>) {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                *field = v;
            }
        }
        set(&mut self.email, info.email().map(|e| e.to_string()));
        if let Some(v) = info.email_verified() {
            self.email_verified = v;
        }
        set(
            &mut self.name,
            info.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
        );
        set(
            &mut self.preferred_username,
            info.preferred_username().map(|u| u.to_string()),
        );
        set(
            &mut self.picture,
            info.picture()
                .and_then(|p| p.get(None))
                .map(|p| p.to_string()),
        );
        if let Some(groups) = &info.additional_claims().groups {
            self.groups = groups.clone();
        }
    }

    /// Whether the e-mail address can be believed.
    pub(crate) fn email_trusted(&self, verified_required: bool) -> bool {
        !self.email.is_empty() && (self.email_verified || !verified_required)
    }

    /// The stable key of this person across logins: issuer and subject.
    pub(crate) fn provider_id(&self) -> String {
        provider_id(&self.issuer, &self.subject)
    }

    /// What the user record is made from.
    pub(crate) fn identity(&self, email_verified_required: bool) -> OidcIdentity {
        let email = if self.email_trusted(email_verified_required) && looks_like_email(&self.email)
        {
            self.email.clone()
        } else {
            String::new()
        };
        OidcIdentity {
            provider_id: self.provider_id(),
            preferred_username: self.preferred_username.clone(),
            email,
            display_name: self.name.clone(),
            profile_pic_url: self.picture.clone(),
        }
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// `https://idp.example.com/248289761001`: the issuer and the subject joined
/// by one slash, the form headscale stores, so users carried over from
/// headscale are recognised.
pub(crate) fn provider_id(issuer: &str, subject: &str) -> String {
    let issuer = issuer.trim().trim_end_matches('/');
    let subject = subject.trim().trim_start_matches('/');
    match (issuer.is_empty(), subject.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("/{subject}"),
        (false, true) => issuer.to_string(),
        (false, false) => format!("{issuer}/{subject}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use openidconnect::core::{CoreEdDsaPrivateSigningKey, CoreHmacKey};
    use openidconnect::{
        Audience, EndUserEmail, EndUserUsername, JsonWebKeyId, PrivateSigningKey, StandardClaims,
        SubjectIdentifier,
    };

    // Test-only keys, made for these tests and used nowhere else.
    const PROVIDER_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIM9NRIgqTKVBftRLsfHJofzARIX36aev19xfY82hmS8X\n-----END PRIVATE KEY-----\n";
    const FORGER_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEnMDHzf2wRQM2hpENbHONf43PMJiM1mPNXjLICkTctm\n-----END PRIVATE KEY-----\n";
    const ISSUER: &str = "https://idp.example.com";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn key(pem: &str) -> CoreEdDsaPrivateSigningKey {
        CoreEdDsaPrivateSigningKey::from_ed25519_pem(pem, Some(JsonWebKeyId::new("k1".into())))
            .unwrap()
    }

    fn anchor() -> TrustAnchor {
        TrustAnchor {
            issuer: IssuerUrl::new(ISSUER.into()).unwrap(),
            client_id: ClientId::new("headway".into()),
            keys: CoreJsonWebKeySet::new(vec![key(PROVIDER_KEY).as_verification_key()]),
            algorithms: TrustAnchor::accepted_algorithms(&[CoreJwsSigningAlgorithm::EdDsa]),
        }
    }

    fn claims(nonce: &str) -> IdTokenClaims {
        IdTokenClaims::new(
            IssuerUrl::new(ISSUER.into()).unwrap(),
            vec![Audience::new("headway".into())],
            now() + Duration::hours(1),
            now(),
            StandardClaims::new(SubjectIdentifier::new("sub-1".into()))
                .set_email(Some(EndUserEmail::new("alice@example.com".into())))
                .set_email_verified(Some(true))
                .set_preferred_username(Some(EndUserUsername::new("alice".into()))),
            ExtraClaims {
                groups: Some(vec!["staff".into()]),
            },
        )
        .set_nonce(Some(Nonce::new(nonce.into())))
    }

    fn sign(claims: IdTokenClaims, pem: &str, access_token: Option<&AccessToken>) -> String {
        IdToken::new(
            claims,
            &key(pem),
            CoreJwsSigningAlgorithm::EdDsa,
            access_token,
            None,
        )
        .unwrap()
        .to_string()
    }

    fn nonce() -> Nonce {
        Nonce::new("n-123".into())
    }

    #[test]
    fn a_genuine_token_is_accepted() {
        let raw = sign(claims("n-123"), PROVIDER_KEY, None);
        let c = verify_id_token(&raw, None, &anchor(), &nonce(), now()).unwrap();
        let p = Person::from_id_token(&c);
        assert_eq!(p.subject, "sub-1");
        assert_eq!(p.issuer, ISSUER);
        assert_eq!(p.email, "alice@example.com");
        assert!(p.email_verified);
        assert_eq!(p.groups, ["staff"]);
        assert_eq!(p.token_expiry, now() + Duration::hours(1));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let raw = sign(claims("n-123"), FORGER_KEY, None);
        let err = verify_id_token(&raw, None, &anchor(), &nonce(), now()).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::Invalid(ClaimsVerificationError::SignatureVerification(_))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_token_with_a_key_id_the_provider_does_not_publish_asks_for_a_key_refresh() {
        let forger = CoreEdDsaPrivateSigningKey::from_ed25519_pem(
            FORGER_KEY,
            Some(JsonWebKeyId::new("k2".into())),
        )
        .unwrap();
        let raw = IdToken::new(
            claims("n-123"),
            &forger,
            CoreJwsSigningAlgorithm::EdDsa,
            None,
            None,
        )
        .unwrap()
        .to_string();
        let err = verify_id_token(&raw, None, &anchor(), &nonce(), now()).unwrap_err();
        assert!(err.may_be_key_rotation(), "{err:?}");
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let raw = sign(claims("n-123"), PROVIDER_KEY, None);
        let mut parts: Vec<String> = raw.split('.').map(str::to_string).collect();
        let other = sign(
            claims("n-123").set_subject(SubjectIdentifier::new("admin".into())),
            FORGER_KEY,
            None,
        );
        parts[1] = other.split('.').nth(1).unwrap().to_string();
        let forged = parts.join(".");
        assert!(verify_id_token(&forged, None, &anchor(), &nonce(), now()).is_err());
    }

    #[test]
    fn an_hmac_token_made_with_the_client_secret_is_refused() {
        let hmac = CoreHmacKey::new("client-secret".as_bytes());
        let raw = IdToken::new(
            claims("n-123"),
            &hmac,
            CoreJwsSigningAlgorithm::HmacSha256,
            None,
            None,
        )
        .unwrap()
        .to_string();
        let mut a = anchor();
        // Even when the provider announces HS256.
        a.algorithms = TrustAnchor::accepted_algorithms(&[
            CoreJwsSigningAlgorithm::HmacSha256,
            CoreJwsSigningAlgorithm::EdDsa,
        ]);
        assert_eq!(a.algorithms, [CoreJwsSigningAlgorithm::EdDsa]);
        assert!(verify_id_token(&raw, None, &a, &nonce(), now()).is_err());
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let raw = sign(claims("n-123"), PROVIDER_KEY, None);
        let mut parts: Vec<&str> = raw.split('.').collect();
        // {"alg":"none"}
        parts[0] = "eyJhbGciOiJub25lIn0";
        parts[2] = "";
        assert!(verify_id_token(&parts.join("."), None, &anchor(), &nonce(), now()).is_err());
    }

    #[test]
    fn wrong_nonce_audience_issuer_or_expiry_is_refused() {
        let raw = sign(claims("other-nonce"), PROVIDER_KEY, None);
        assert!(matches!(
            verify_id_token(&raw, None, &anchor(), &nonce(), now()).unwrap_err(),
            TokenError::Invalid(ClaimsVerificationError::InvalidNonce(_))
        ));

        let raw = sign(
            claims("n-123").set_audiences(vec![Audience::new("someone-else".into())]),
            PROVIDER_KEY,
            None,
        );
        assert!(matches!(
            verify_id_token(&raw, None, &anchor(), &nonce(), now()).unwrap_err(),
            TokenError::Invalid(ClaimsVerificationError::InvalidAudience(_))
        ));

        let raw = sign(
            claims("n-123").set_issuer(IssuerUrl::new("https://evil.example.com".into()).unwrap()),
            PROVIDER_KEY,
            None,
        );
        assert!(matches!(
            verify_id_token(&raw, None, &anchor(), &nonce(), now()).unwrap_err(),
            TokenError::Invalid(ClaimsVerificationError::InvalidIssuer(_))
        ));

        let raw = sign(claims("n-123"), PROVIDER_KEY, None);
        assert!(matches!(
            verify_id_token(&raw, None, &anchor(), &nonce(), now() + Duration::hours(2))
                .unwrap_err(),
            TokenError::Invalid(ClaimsVerificationError::Expired(_))
        ));
    }

    #[test]
    fn the_access_token_must_match_at_hash() {
        let issued = AccessToken::new("the-real-access-token".into());
        let raw = sign(claims("n-123"), PROVIDER_KEY, Some(&issued));
        assert!(verify_id_token(&raw, Some(&issued), &anchor(), &nonce(), now()).is_ok());
        let swapped = AccessToken::new("someone-elses-token".into());
        assert!(matches!(
            verify_id_token(&raw, Some(&swapped), &anchor(), &nonce(), now()).unwrap_err(),
            TokenError::AccessTokenMismatch
        ));
    }

    #[test]
    fn groups_may_be_one_string() {
        let one: ExtraClaims = serde_json::from_str(r#"{"groups":"admins"}"#).unwrap();
        assert_eq!(one.groups, Some(vec!["admins".to_string()]));
        let none: ExtraClaims = serde_json::from_str("{}").unwrap();
        assert_eq!(none.groups, None);
    }

    fn user_info(json: &str) -> UserInfo {
        UserInfo::from_json::<std::io::Error>(json.as_bytes(), None).unwrap()
    }

    #[test]
    fn user_info_fills_in_and_wins_but_only_for_the_same_subject() {
        let mut p = Person {
            issuer: ISSUER.into(),
            subject: "sub-1".into(),
            email: "old@example.com".into(),
            name: "Old".into(),
            ..Default::default()
        };
        let info = user_info(
            r#"{"sub":"sub-1","email":"alice@example.com","email_verified":"true",
                "name":"Alice","preferred_username":"alice","picture":"https://p.example/a.png",
                "groups":["staff"]}"#,
        );
        p.merge_user_info(&info);
        assert_eq!(p.email, "alice@example.com");
        assert!(p.email_verified);
        assert_eq!(p.name, "Alice");
        assert_eq!(p.preferred_username, "alice");
        assert_eq!(p.picture, "https://p.example/a.png");
        assert_eq!(p.groups, ["staff"]);

        let other = user_info(r#"{"sub":"sub-2","email":"mallory@example.com"}"#);
        p.merge_user_info(&other);
        assert_eq!(p.email, "alice@example.com");
    }

    #[test]
    fn the_identity_keeps_an_email_only_when_it_is_trusted() {
        let p = Person {
            issuer: ISSUER.into(),
            subject: "sub-1".into(),
            email: "alice@example.com".into(),
            email_verified: false,
            ..Default::default()
        };
        assert_eq!(p.identity(true).email, "");
        assert_eq!(p.identity(false).email, "alice@example.com");
        assert_eq!(
            p.identity(true).provider_id,
            "https://idp.example.com/sub-1"
        );
        let not_an_address = Person {
            email: "alice".into(),
            email_verified: true,
            ..p
        };
        assert_eq!(not_an_address.identity(true).email, "");
    }

    #[test]
    fn provider_ids_join_issuer_and_subject_with_one_slash() {
        assert_eq!(
            provider_id("https://idp.example.com/", "/123"),
            "https://idp.example.com/123"
        );
        assert_eq!(
            provider_id("https://idp.example.com/realms/x", "auth0|abc"),
            "https://idp.example.com/realms/x/auth0|abc"
        );
        // `..` stays a subject: it must not collapse onto the issuer.
        assert_eq!(
            provider_id("https://idp.example.com", ".."),
            "https://idp.example.com/.."
        );
        assert_eq!(provider_id("", "abc"), "/abc");
    }
}
