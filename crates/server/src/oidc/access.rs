//! Who may log in: `oidc.allowed_groups`, `allowed_domains`,
//! `allowed_users` and `email_verified_required`, with headscale's meaning.
//! Pure: a decision over the configuration and a person's claims.

use headway_config::OidcConfig;

use super::claims::Person;

/// The login rules of `oidc.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AllowRules {
    pub domains: Vec<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub email_verified_required: bool,
}

impl AllowRules {
    pub(crate) fn from_config(c: &OidcConfig) -> Self {
        AllowRules {
            domains: c.allowed_domains.clone(),
            users: c.allowed_users.clone(),
            groups: c.allowed_groups.clone(),
            email_verified_required: c.email_verified_required,
        }
    }
}

/// Why someone may not log in; the text is shown to them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("your account is not in any of the groups allowed to log in")]
    Group,
    #[error(
        "your e-mail address is not verified by the identity provider, and only verified addresses are checked against the allowed list"
    )]
    UnverifiedEmail,
    #[error("your e-mail domain is not one of those allowed to log in")]
    Domain,
    #[error("your account is not one of those allowed to log in")]
    User,
}

/// Checks, in headscale's order: groups (when listed); then, when domains or
/// users are listed, that the e-mail can be trusted; then the domain; then
/// the address. Every configured list must be satisfied. Domains and
/// addresses compare without regard to case.
pub(crate) fn check(rules: &AllowRules, person: &Person) -> Result<(), Refusal> {
    if !rules.groups.is_empty() && !rules.groups.iter().any(|g| person.groups.contains(g)) {
        return Err(Refusal::Group);
    }
    let checks_email = !rules.domains.is_empty() || !rules.users.is_empty();
    if !checks_email {
        return Ok(());
    }
    if rules.email_verified_required && !person.email_verified {
        return Err(Refusal::UnverifiedEmail);
    }
    if !rules.domains.is_empty() {
        let domain = person
            .email
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or_default();
        if domain.is_empty() || !rules.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return Err(Refusal::Domain);
        }
    }
    if !rules.users.is_empty()
        && (person.email.is_empty()
            || !rules
                .users
                .iter()
                .any(|u| u.eq_ignore_ascii_case(&person.email)))
    {
        return Err(Refusal::User);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Person {
        Person {
            issuer: "https://idp.example.com".into(),
            subject: "sub-1".into(),
            email: "alice@example.com".into(),
            email_verified: true,
            groups: vec!["staff".into(), "vpn".into()],
            ..Default::default()
        }
    }

    fn rules() -> AllowRules {
        AllowRules {
            email_verified_required: true,
            ..Default::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_lists_let_everyone_in() {
        assert_eq!(check(&rules(), &alice()), Ok(()));
        let unverified = Person {
            email_verified: false,
            ..alice()
        };
        assert_eq!(check(&rules(), &unverified), Ok(()));
    }

    #[test]
    fn allowed_domains() {
        let r = AllowRules {
            domains: strings(&["example.com", "example.org"]),
            ..rules()
        };
        assert_eq!(check(&r, &alice()), Ok(()));
        let shouting = Person {
            email: "ALICE@EXAMPLE.COM".into(),
            ..alice()
        };
        assert_eq!(check(&r, &shouting), Ok(()));
        for email in [
            "alice@evil.com",
            "alice@sub.example.com",
            "alice@example.com.evil.com",
            "example.com",
            "",
        ] {
            let p = Person {
                email: email.into(),
                ..alice()
            };
            assert_eq!(check(&r, &p), Err(Refusal::Domain), "{email}");
        }
    }

    #[test]
    fn allowed_users_are_email_addresses() {
        let r = AllowRules {
            users: strings(&["alice@example.com"]),
            ..rules()
        };
        assert_eq!(check(&r, &alice()), Ok(()));
        let bob = Person {
            email: "bob@example.com".into(),
            ..alice()
        };
        assert_eq!(check(&r, &bob), Err(Refusal::User));
        // A preferred user name equal to the address does not count.
        let no_email = Person {
            email: String::new(),
            preferred_username: "alice@example.com".into(),
            ..alice()
        };
        assert_eq!(check(&r, &no_email), Err(Refusal::User));
    }

    #[test]
    fn allowed_groups() {
        let r = AllowRules {
            groups: strings(&["admins", "vpn"]),
            ..rules()
        };
        assert_eq!(check(&r, &alice()), Ok(()));
        let outsider = Person {
            groups: strings(&["staff"]),
            ..alice()
        };
        assert_eq!(check(&r, &outsider), Err(Refusal::Group));
        let no_groups = Person {
            groups: vec![],
            ..alice()
        };
        assert_eq!(check(&r, &no_groups), Err(Refusal::Group));
        // Groups do not need a verified e-mail.
        let unverified = Person {
            email_verified: false,
            ..alice()
        };
        assert_eq!(check(&r, &unverified), Ok(()));
    }

    #[test]
    fn email_checks_need_a_verified_address_unless_told_otherwise() {
        let r = AllowRules {
            domains: strings(&["example.com"]),
            ..rules()
        };
        let unverified = Person {
            email_verified: false,
            ..alice()
        };
        assert_eq!(check(&r, &unverified), Err(Refusal::UnverifiedEmail));
        let lax = AllowRules {
            email_verified_required: false,
            ..r
        };
        assert_eq!(check(&lax, &unverified), Ok(()));
    }

    #[test]
    fn every_list_must_be_satisfied() {
        let r = AllowRules {
            domains: strings(&["example.com"]),
            users: strings(&["bob@example.com"]),
            groups: strings(&["staff"]),
            ..rules()
        };
        assert_eq!(check(&r, &alice()), Err(Refusal::User));
        let bob = Person {
            email: "bob@example.com".into(),
            ..alice()
        };
        assert_eq!(check(&r, &bob), Ok(()));
        let bob_elsewhere = Person {
            groups: vec![],
            ..bob
        };
        assert_eq!(check(&r, &bob_elsewhere), Err(Refusal::Group));
    }
}
