//! Node names (pure): host names reported by clients become DNS labels,
//! unique within the tailnet, so that `<name>.<base_domain>` resolves.

/// Longest DNS label.
pub const MAX_LABEL: usize = 63;

/// Turns whatever a client reports as its host name into a DNS label:
/// lower case, letters/digits/hyphens, no leading or trailing hyphen, at most
/// 63 characters. Anything else becomes a hyphen; an empty result is `node`.
pub fn sanitize_label(hostname: &str) -> String {
    // Only the first label of an FQDN-looking host name counts.
    let first = hostname.split('.').next().unwrap_or_default();
    let mut out = String::with_capacity(first.len());
    for c in first.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    let mut label: String = trimmed.chars().take(MAX_LABEL).collect();
    while label.ends_with('-') {
        label.pop();
    }
    if label.is_empty() {
        "node".to_string()
    } else {
        label
    }
}

/// Why a name an admin typed is not a valid node name.
pub fn validate_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a node name cannot be empty".into());
    }
    if name.len() > MAX_LABEL {
        return Err(format!(
            "node name {name:?} is {} characters long; the limit is {MAX_LABEL}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "node name {name:?} contains {c:?}; use lower-case letters, digits and hyphens (a DNS label)"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "node name {name:?} must not start or end with a hyphen"
        ));
    }
    Ok(())
}

/// Picks `base`, or `base-1`, `base-2`… — the first that `taken` says is free.
pub fn unique_label(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_string();
    }
    for i in 1u64.. {
        let suffix = format!("-{i}");
        let keep = MAX_LABEL.saturating_sub(suffix.len()).min(base.len());
        let candidate = format!("{}{}", base[..keep].trim_end_matches('-'), suffix);
        if !taken(&candidate) {
            return candidate;
        }
    }
    unreachable!("u64 suffixes exhausted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_to_dns_labels() {
        assert_eq!(sanitize_label("My_Laptop"), "my-laptop");
        assert_eq!(sanitize_label("box.example.com"), "box");
        assert_eq!(sanitize_label("--weird  name!!--"), "weird-name");
        assert_eq!(sanitize_label("Ünïcode-host"), "n-code-host");
        assert_eq!(sanitize_label(""), "node");
        assert_eq!(sanitize_label("___"), "node");
        let long = "a".repeat(100);
        assert_eq!(sanitize_label(&long).len(), 63);
        assert!(validate_label(&sanitize_label(&format!("{}-b", "a".repeat(62)))).is_ok());
    }

    #[test]
    fn unique_labels_get_numbered_suffixes() {
        let taken = ["web", "web-1"];
        assert_eq!(unique_label("web", |n| taken.contains(&n)), "web-2");
        assert_eq!(unique_label("db", |n| taken.contains(&n)), "db");
        let long = "a".repeat(63);
        let got = unique_label(&long, |n| n == long);
        assert_eq!(got.len(), 63);
        assert!(got.ends_with("-1"));
    }

    #[test]
    fn validation_explains_what_is_wrong() {
        assert!(validate_label("ok-name-1").is_ok());
        assert!(validate_label("Bad").unwrap_err().contains("'B'"));
        assert!(validate_label("-x").unwrap_err().contains("hyphen"));
        assert!(
            validate_label(&"a".repeat(64))
                .unwrap_err()
                .contains("limit is 63")
        );
        assert!(validate_label("").is_err());
    }
}
