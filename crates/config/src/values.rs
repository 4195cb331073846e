//! Turning one YAML value into one typed value, with a message that shows
//! the value and says what was expected. These functions know nothing about
//! keys or layers; `decode` adds the key and where the value came from.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_yaml_ng::Value;
use url::Url;

use crate::model::{DnsRecord, DnsRecordType, Nameserver};
use crate::source::kind;

/// A value that could not be read: where inside it (`[2]`, `.name`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    pub at: String,
    pub message: String,
}

impl Bad {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            at: String::new(),
            message: message.into(),
        }
    }

    /// Prefixes the position with `step` (`[1]`, `.corp.example`).
    fn at(mut self, step: impl Display) -> Self {
        self.at = format!("{step}{}", self.at);
        self
    }
}

pub(crate) type Parsed<T> = Result<T, Bad>;

/// The value as it appears in a message: strings quoted, lists and
/// mappings by kind only.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "an empty value".to_owned(),
        other => kind(other).to_owned(),
    }
}

fn wrong_type(value: &Value, expected: &str) -> Bad {
    Bad::new(format!("expected {expected}, found {}", kind(value)))
}

/// Any scalar as text; nothing is the empty string.
pub(crate) fn text(value: &Value) -> Parsed<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(wrong_type(other, "a string")),
    }
}

/// Text where empty means "not set".
pub(crate) fn optional_text(value: &Value) -> Parsed<Option<String>> {
    let s = text(value)?;
    Ok((!s.trim().is_empty()).then_some(s))
}

/// Text that must not be empty.
pub(crate) fn required_text(value: &Value) -> Parsed<String> {
    optional_text(value)?.ok_or_else(|| Bad::new("must not be empty"))
}

/// A secret: like [`optional_text`], but a message never shows it.
pub(crate) fn secret_text(value: &Value) -> Parsed<Option<String>> {
    match value {
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => {
            Err(wrong_type(value, "a string"))
        }
        _ => optional_text(value),
    }
}

/// `true`/`false`, also as the strings Go's `strconv.ParseBool` accepts.
pub(crate) fn boolean(value: &Value) -> Parsed<bool> {
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "true" | "True" | "TRUE" | "t" | "T" | "1" => Some(true),
            "false" | "False" | "FALSE" | "f" | "F" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| {
        Bad::new(format!(
            "{} is not a boolean; expected true or false",
            show(value)
        ))
    })
}

/// A whole number that fits `T`.
pub(crate) fn unsigned<T: TryFrom<u64> + Display + Copy>(value: &Value, min: T, max: T) -> Parsed<T>
where
    u64: From<T>,
{
    let number = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    number
        .filter(|n| (u64::from(min)..=u64::from(max)).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            Bad::new(format!(
                "{} is not a whole number from {min} to {max}",
                show(value)
            ))
        })
}

const DURATION_EXAMPLES: &str = "expected e.g. 30m, 1h30m, 90s, 7d or 0";

/// A duration in Go's `time.ParseDuration` form, plus the `d`, `w` and `y`
/// units headscale accepts for `node.expiry`. A bare `0` is zero; other
/// bare numbers are refused because headscale would read them as
/// nanoseconds, which nobody means.
pub(crate) fn duration(value: &Value) -> Parsed<Duration> {
    match value {
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
        Value::Number(n) => Err(Bad::new(format!(
            "{n} has no unit; write e.g. \"{n}s\" for seconds ({DURATION_EXAMPLES})"
        ))),
        Value::String(s) => parse_duration(s).map_err(|why| {
            if s.trim().parse::<f64>().is_ok() {
                Bad::new(format!(
                    "{s:?} has no unit; write e.g. \"{}s\" for seconds ({DURATION_EXAMPLES})",
                    s.trim()
                ))
            } else {
                Bad::new(format!(
                    "{s:?} is not a valid duration ({why}); {DURATION_EXAMPLES}"
                ))
            }
        }),
        other => Err(Bad::new(format!(
            "{} is not a duration; {DURATION_EXAMPLES}",
            show(other)
        ))),
    }
}

/// A duration where zero means "off".
pub(crate) fn optional_duration(value: &Value) -> Parsed<Option<Duration>> {
    Ok(Some(duration(value)?).filter(|d| !d.is_zero()))
}

/// Parses Go duration syntax (`1h30m`, `1.5h`, `300ms`, `2us`) extended
/// with days, weeks and 365-day years.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    const NANOS_PER_SECOND: u128 = 1_000_000_000;
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err("it is empty".to_owned());
    }
    let mut nanos: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(format!("expected a number before {unit:?}"));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3_600 * NANOS_PER_SECOND,
            "d" => 86_400 * NANOS_PER_SECOND,
            "w" => 7 * 86_400 * NANOS_PER_SECOND,
            "y" => 365 * 86_400 * NANOS_PER_SECOND,
            "" => return Err(format!("missing unit after {number}")),
            other => return Err(format!("unknown unit {other:?}")),
        };
        let too_long = || "it is too long".to_owned();
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_long())?
        };
        // Fractions beyond nanoseconds do not matter; cap the digits so the
        // arithmetic cannot overflow.
        let fraction = &fraction[..fraction.len().min(18)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction
                .parse()
                .map_err(|_| format!("{number:?} is not a number"))?;
            digits * unit_nanos / 10u128.pow(u32::try_from(fraction.len()).unwrap_or(18))
        };
        nanos = whole
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(fraction_nanos))
            .and_then(|n| n.checked_add(nanos))
            .ok_or_else(too_long)?;
        rest = after;
    }
    if negative && nanos > 0 {
        return Err("it is negative; use 0 to turn it off".to_owned());
    }
    let nanos = u64::try_from(nanos).map_err(|_| "it is too long".to_owned())?;
    Ok(Duration::from_nanos(nanos))
}

/// A listen address: `IP:port`, also Go's `:port` (all interfaces) and
/// `localhost:port`.
pub(crate) fn socket_addr(value: &Value) -> Parsed<SocketAddr> {
    let s = required_text(value)?;
    let s = s.trim();
    let parsed = s.parse::<SocketAddr>().ok().or_else(|| {
        let (host, port) = s.rsplit_once(':')?;
        let port = port.parse::<u16>().ok()?;
        match host {
            "" => Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
            "localhost" => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            _ => None,
        }
    });
    parsed.ok_or_else(|| {
        Bad::new(format!(
            "{s:?} is not a valid listen address; expected IP:port, e.g. 0.0.0.0:8080 or [::]:8080"
        ))
    })
}

/// A listen address where empty means "do not listen".
pub(crate) fn optional_socket_addr(value: &Value) -> Parsed<Option<SocketAddr>> {
    match optional_text(value)? {
        None => Ok(None),
        Some(_) => socket_addr(value).map(Some),
    }
}

/// An `http`/`https` URL with a host.
pub(crate) fn http_url(value: &Value) -> Parsed<Url> {
    let s = required_text(value)?;
    let s = s.trim();
    let url = Url::parse(s).map_err(|e| {
        Bad::new(format!(
            "{s:?} is not a valid URL ({e}); expected e.g. https://headway.example.com"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Bad::new(format!(
            "{s:?} must start with http:// or https://"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Bad::new(format!(
            "{s:?} has no host name; expected e.g. https://headway.example.com"
        )));
    }
    Ok(url)
}

/// An IPv4 prefix; empty means "no IPv4".
pub(crate) fn ipv4_prefix(value: &Value) -> Parsed<Option<Ipv4Net>> {
    let Some(s) = optional_text(value)? else {
        return Ok(None);
    };
    s.trim().parse().map(Some).map_err(|_| {
        Bad::new(format!(
            "{s:?} is not a valid IPv4 prefix; expected e.g. 100.64.0.0/10"
        ))
    })
}

/// An IPv6 prefix; empty means "no IPv6".
pub(crate) fn ipv6_prefix(value: &Value) -> Parsed<Option<Ipv6Net>> {
    let Some(s) = optional_text(value)? else {
        return Ok(None);
    };
    s.trim().parse().map(Some).map_err(|_| {
        Bad::new(format!(
            "{s:?} is not a valid IPv6 prefix; expected e.g. fd7a:115c:a1e0::/48"
        ))
    })
}

/// A trusted proxy range; the whole address space is refused, as headscale
/// does, because it would let any client spoof its address.
pub(crate) fn trusted_proxy(value: &Value) -> Parsed<IpNet> {
    let s = required_text(value)?;
    let net: IpNet = s.trim().parse().map_err(|_| {
        Bad::new(format!(
            "{s:?} is not a valid IP prefix; expected e.g. 10.0.0.0/8 or 127.0.0.1/32"
        ))
    })?;
    if net.prefix_len() == 0 {
        return Err(Bad::new(format!(
            "{s:?} would trust every address; list the proxies' own addresses instead"
        )));
    }
    Ok(net.trunc())
}

/// An IP address, an `IP:port`, or a DNS-over-HTTP(S) URL.
pub(crate) fn nameserver(value: &Value) -> Parsed<Nameserver> {
    let s = required_text(value)?;
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Nameserver::Ip(ip));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(Nameserver::IpPort(addr));
    }
    match Url::parse(s) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(Nameserver::Url(url))
        }
        _ => Err(Bad::new(format!(
            "{s:?} is not a nameserver; expected an IP address (1.1.1.1) or a DNS-over-HTTPS URL (https://dns.example/dns-query)"
        ))),
    }
}

/// One of a fixed set of words (compared without regard to case).
pub(crate) fn one_of<T: Copy>(value: &Value, choices: &[(&str, T)]) -> Parsed<T> {
    let s = text(value)?;
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
        .map(|(_, choice)| *choice)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Bad::new(format!(
                "{} is not a valid choice; expected one of: {}",
                show(value),
                names.join(", ")
            ))
        })
}

/// A list of items; nothing is the empty list.
pub(crate) fn list<T>(value: &Value, item: impl Fn(&Value) -> Parsed<T>) -> Parsed<Vec<T>> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| item(v).map_err(|bad| bad.at(format!("[{i}]"))))
            .collect(),
        other => Err(wrong_type(other, "a list")),
    }
}

/// A mapping with string keys; nothing is the empty mapping.
pub(crate) fn map<T>(
    value: &Value,
    entry: impl Fn(&str, &Value) -> Parsed<T>,
) -> Parsed<BTreeMap<String, T>> {
    match value {
        Value::Null => Ok(BTreeMap::new()),
        Value::Mapping(entries) => entries
            .iter()
            .map(|(k, v)| {
                let k = text(k).map_err(|_| Bad::new("keys must be strings"))?;
                let parsed = entry(&k, v).map_err(|bad| bad.at(format!(".{k}")))?;
                Ok((k, parsed))
            })
            .collect(),
        other => Err(wrong_type(other, "a mapping")),
    }
}

/// A domain name as MagicDNS needs it: labels of letters, digits, `-` and
/// `_`, no trailing dot.
pub(crate) fn domain(value: &Value) -> Parsed<Option<String>> {
    let Some(s) = optional_text(value)? else {
        return Ok(None);
    };
    let s = s.trim();
    if s.ends_with('.') {
        return Err(Bad::new(format!(
            "{s:?} must not end with a dot; write {:?}",
            s.trim_end_matches('.')
        )));
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if s.len() > 253 || !s.split('.').all(label_ok) {
        return Err(Bad::new(format!(
            "{s:?} is not a valid domain name; expected e.g. tailnet.example.com"
        )));
    }
    Ok(Some(s.to_ascii_lowercase()))
}

/// An e-mail address: something `@` a domain, without spaces (the
/// provider's word decides the rest).
pub(crate) fn email_address(value: &Value) -> Parsed<String> {
    let s = required_text(value)?;
    let s = s.trim();
    let looks_right = match s.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    };
    if !looks_right || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Bad::new(format!(
            "{s:?} is not an e-mail address; expected e.g. alice@example.com"
        )));
    }
    Ok(s.to_owned())
}

/// A search domain or split-DNS domain: any non-empty name without spaces.
pub(crate) fn loose_domain(name: &str) -> Parsed<String> {
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('/') {
        return Err(Bad::new(format!("{name:?} is not a domain name")));
    }
    Ok(name.to_owned())
}

/// One `dns.extra_records` entry: `{name, type, value}`.
pub(crate) fn dns_record(value: &Value) -> Parsed<DnsRecord> {
    let Value::Mapping(fields) = value else {
        return Err(wrong_type(value, "a mapping with name, type and value"));
    };
    let field = |name: &str| {
        let v = fields
            .get(name)
            .ok_or_else(|| Bad::new(format!("missing {name}")))?;
        required_text(v).map_err(|bad| bad.at(format!(".{name}")))
    };
    let name = field("name")?;
    let record_type = one_of(
        fields.get("type").unwrap_or(&Value::Null),
        &[("A", DnsRecordType::A), ("AAAA", DnsRecordType::Aaaa)],
    )
    .map_err(|bad| bad.at(".type"))?;
    let raw = field("value")?;
    let ip: IpAddr = raw
        .trim()
        .parse()
        .map_err(|_| Bad::new(format!("{raw:?} is not an IP address")).at(".value"))?;
    match (record_type, ip) {
        (DnsRecordType::A, IpAddr::V4(_)) | (DnsRecordType::Aaaa, IpAddr::V6(_)) => {}
        _ => {
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(Bad::new(format!(
                "{raw:?} is an {family} address, which does not fit a record of type {}",
                record_type.as_str()
            ))
            .at(".value"));
        }
    }
    Ok(DnsRecord {
        name,
        record_type,
        value: ip,
    })
}

/// Unix permission bits in octal: `"0770"`, `"0o770"` or `770`. A YAML
/// number is read digit by digit as octal, as headscale does, so `770`
/// means `0o770`.
pub(crate) fn file_mode(value: &Value) -> Parsed<u32> {
    let s = text(value)?;
    let digits = s.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o777 && !digits.is_empty())
        .ok_or_else(|| {
            Bad::new(format!(
                "{} is not an octal permission; expected e.g. \"0770\"",
                show(value)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn go_durations() {
        let secs = Duration::from_secs;
        for (text, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("30m", secs(1800)),
            ("1h", secs(3600)),
            ("24h", secs(86_400)),
            ("1h30m", secs(5400)),
            ("1.5h", secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("300ms", Duration::from_millis(300)),
            ("2us", Duration::from_micros(2)),
            ("2µs", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            ("180d", secs(180 * 86_400)),
            ("1w", secs(7 * 86_400)),
            ("1y", secs(365 * 86_400)),
            ("+5s", secs(5)),
            ("1m1h", secs(3660)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for text in [
            "",
            "1",
            "1x",
            "h",
            "-5s",
            ".s",
            "1.2.3s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn duration_messages() {
        assert_eq!(duration(&yaml("0")), Ok(Duration::ZERO));
        let bad = duration(&s("10 minutes")).unwrap_err();
        assert_eq!(
            bad.message,
            "\"10 minutes\" is not a valid duration (unknown unit \" minutes\"); expected e.g. 30m, 1h30m, 90s, 7d or 0"
        );
        let bare = duration(&yaml("1800")).unwrap_err();
        assert!(
            bare.message
                .starts_with("1800 has no unit; write e.g. \"1800s\""),
            "{}",
            bare.message
        );
        assert!(
            duration(&s("90"))
                .unwrap_err()
                .message
                .contains("has no unit")
        );
        assert_eq!(optional_duration(&s("0s")), Ok(None));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            socket_addr(&s("0.0.0.0:8080")).unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(socket_addr(&s("[::]:443")).unwrap().to_string(), "[::]:443");
        assert_eq!(
            socket_addr(&s(":8080")).unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(
            socket_addr(&s("localhost:9090")).unwrap().to_string(),
            "127.0.0.1:9090"
        );
        assert_eq!(
            socket_addr(&s("0.0.0.0")).unwrap_err().message,
            "\"0.0.0.0\" is not a valid listen address; expected IP:port, e.g. 0.0.0.0:8080 or [::]:8080"
        );
        assert_eq!(optional_socket_addr(&s("")), Ok(None));
        assert_eq!(optional_socket_addr(&Value::Null), Ok(None));
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            ipv4_prefix(&s("100.64.0.0/10"))
                .unwrap()
                .unwrap()
                .to_string(),
            "100.64.0.0/10"
        );
        assert_eq!(
            ipv4_prefix(&s("100.64.0.0/33")).unwrap_err().message,
            "\"100.64.0.0/33\" is not a valid IPv4 prefix; expected e.g. 100.64.0.0/10"
        );
        assert!(ipv4_prefix(&s("fd7a:115c:a1e0::/48")).is_err());
        assert!(ipv6_prefix(&s("100.64.0.0/10")).is_err());
        assert_eq!(ipv6_prefix(&s("")), Ok(None));
        assert!(
            trusted_proxy(&s("0.0.0.0/0"))
                .unwrap_err()
                .message
                .contains("every address")
        );
        assert_eq!(
            trusted_proxy(&s("10.1.2.3/8")).unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            http_url(&s("https://hw.example.com")).unwrap().as_str(),
            "https://hw.example.com/"
        );
        assert!(
            http_url(&s("ftp://x"))
                .unwrap_err()
                .message
                .contains("must start with http:// or https://")
        );
        assert!(
            http_url(&s("hw.example.com"))
                .unwrap_err()
                .message
                .contains("is not a valid URL")
        );
        assert_eq!(http_url(&s("")).unwrap_err().message, "must not be empty");
    }

    #[test]
    fn booleans_and_numbers() {
        assert_eq!(boolean(&yaml("true")), Ok(true));
        assert_eq!(boolean(&s("False")), Ok(false));
        assert_eq!(
            boolean(&s("yes")).unwrap_err().message,
            "\"yes\" is not a boolean; expected true or false"
        );
        assert_eq!(unsigned::<u16>(&yaml("5432"), 1, u16::MAX), Ok(5432));
        assert_eq!(
            unsigned::<u16>(&yaml("70000"), 1, u16::MAX)
                .unwrap_err()
                .message,
            "70000 is not a whole number from 1 to 65535"
        );
        assert_eq!(
            text(&yaml("[a]")).unwrap_err().message,
            "expected a string, found a list"
        );
    }

    #[test]
    fn lists_report_the_index() {
        let bad = list(&yaml("[1.1.1.1, 1.1.1]"), nameserver).unwrap_err();
        assert_eq!(bad.at, "[1]");
        assert!(bad.message.starts_with("\"1.1.1\" is not a nameserver"));
        assert_eq!(list(&Value::Null, nameserver), Ok(vec![]));
        let ns = list(
            &yaml("[1.1.1.1, '9.9.9.9:5353', 'https://dns.nextdns.io/abc']"),
            nameserver,
        )
        .unwrap();
        assert_eq!(
            ns.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["1.1.1.1", "9.9.9.9:5353", "https://dns.nextdns.io/abc"]
        );
    }

    #[test]
    fn email_addresses() {
        assert_eq!(
            email_address(&s(" alice@example.com ")),
            Ok("alice@example.com".to_owned())
        );
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "alice @example.com",
            "a@b.",
        ] {
            assert_eq!(
                email_address(&s(bad)).unwrap_err().message,
                format!(
                    "{:?} is not an e-mail address; expected e.g. alice@example.com",
                    bad.trim()
                ),
                "{bad}"
            );
        }
        assert!(email_address(&s("")).is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(
            domain(&s("Tailnet.Example.com")),
            Ok(Some("tailnet.example.com".into()))
        );
        assert!(
            domain(&s("example.com."))
                .unwrap_err()
                .message
                .contains("must not end with a dot")
        );
        assert!(domain(&s("bad domain")).is_err());
        assert_eq!(domain(&s("")), Ok(None));
    }

    #[test]
    fn extra_records() {
        let record = dns_record(&yaml(
            "{name: grafana.example.com, type: A, value: 100.64.0.3}",
        ))
        .unwrap();
        assert_eq!(record.value, IpAddr::from([100, 64, 0, 3]));
        let bad = dns_record(&yaml("{name: x, type: AAAA, value: 100.64.0.3}")).unwrap_err();
        assert_eq!(bad.at, ".value");
        assert!(
            dns_record(&yaml("{name: x, type: MX, value: 1.2.3.4}"))
                .unwrap_err()
                .message
                .contains("expected one of: A, AAAA")
        );
        assert_eq!(
            dns_record(&yaml("{type: A, value: 1.2.3.4}"))
                .unwrap_err()
                .message,
            "missing name"
        );
    }

    #[test]
    fn file_modes() {
        assert_eq!(file_mode(&s("0770")), Ok(0o770));
        assert_eq!(file_mode(&s("0o770")), Ok(0o770));
        assert_eq!(file_mode(&yaml("770")), Ok(0o770));
        assert!(file_mode(&s("0780")).is_err());
        assert!(file_mode(&s("17777")).is_err());
    }

    #[test]
    fn choices() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum A {
            X,
            Y,
        }
        let choices = [("sequential", A::X), ("random", A::Y)];
        assert_eq!(one_of(&s("Random"), &choices), Ok(A::Y));
        assert_eq!(
            one_of(&s("linear"), &choices).unwrap_err().message,
            "\"linear\" is not a valid choice; expected one of: sequential, random"
        );
        let _ = A::X;
    }
}
