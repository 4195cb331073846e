//! Extra DNS records served by MagicDNS, from `dns.extra_records_path`: a
//! JSON file the server re-reads when it changes. Records from the config
//! file itself are in the settings; these are added to them.

use std::net::IpAddr;
use std::sync::Arc;

use headway_proto::tailcfg::DnsRecord;
use serde::Deserialize;

use super::Tailnet;
use crate::error::{Error, Result};
use crate::events::Event;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    name: String,
    #[serde(rename = "type")]
    record_type: String,
    value: String,
}

fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Reads the records file (`[{"name": …, "type": "A"|"AAAA", "value": …}]`),
/// refusing anything a client could not serve, with the entry's position.
pub fn parse_extra_records(json: &str) -> Result<Vec<DnsRecord>> {
    let entries: Vec<RecordFile> = serde_json::from_str(json).map_err(|e| {
        Error::Invalid(format!(
            "extra DNS records: {e} (expected a JSON list like [{{\"name\": \"db.example.com\", \"type\": \"A\", \"value\": \"100.64.0.7\"}}])"
        ))
    })?;
    let mut out = Vec::with_capacity(entries.len());
    for (i, r) in entries.into_iter().enumerate() {
        let at = format!("extra DNS records[{i}] ({:?})", r.name);
        if !valid_dns_name(&r.name) {
            return Err(Error::Invalid(format!("{at}: not a valid DNS name")));
        }
        let ip: IpAddr = r.value.parse().map_err(|_| {
            Error::Invalid(format!("{at}: value {:?} is not an IP address", r.value))
        })?;
        let kind = r.record_type.to_ascii_uppercase();
        match (kind.as_str(), ip) {
            ("A", IpAddr::V4(_)) | ("AAAA", IpAddr::V6(_)) => {}
            ("A", _) => {
                return Err(Error::Invalid(format!(
                    "{at}: type A needs an IPv4 value, got {ip}"
                )));
            }
            ("AAAA", _) => {
                return Err(Error::Invalid(format!(
                    "{at}: type AAAA needs an IPv6 value, got {ip}"
                )));
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "{at}: type {:?} is not served; use A or AAAA",
                    r.record_type
                )));
            }
        }
        out.push(DnsRecord {
            name: r.name,
            r#type: kind,
            value: ip.to_string(),
        });
    }
    Ok(out)
}

impl Tailnet {
    /// The records from `dns.extra_records_path` in force.
    pub fn extra_dns_records(&self) -> Arc<Vec<DnsRecord>> {
        self.extra_dns.read().clone()
    }

    /// Replaces the file's records; every node gets the new DNS config.
    pub fn set_extra_dns_records(&self, records: Vec<DnsRecord>) {
        if **self.extra_dns.read() == records {
            return;
        }
        tracing::info!(records = records.len(), "extra DNS records updated");
        *self.extra_dns.write() = Arc::new(records);
        self.announce(Event::DnsChanged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_valid_records_and_explains_bad_ones() {
        let ok = parse_extra_records(
            r#"[{"name": "db.corp.example", "type": "A", "value": "100.64.0.9"},
                {"name": "db.corp.example", "type": "aaaa", "value": "fd7a:115c:a1e0::9"}]"#,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].r#type, "AAAA");
        for (bad, says) in [
            (
                r#"[{"name": "x", "type": "A", "value": "fd00::1"}]"#,
                "needs an IPv4",
            ),
            (
                r#"[{"name": "bad_name", "type": "A", "value": "1.2.3.4"}]"#,
                "not a valid DNS name",
            ),
            (
                r#"[{"name": "x", "type": "MX", "value": "1.2.3.4"}]"#,
                "use A or AAAA",
            ),
            (
                r#"[{"name": "x", "type": "A", "value": "nope"}]"#,
                "not an IP address",
            ),
            (
                r#"[{"name": "x", "type": "A", "value": "1.2.3.4", "ttl": 5}]"#,
                "unknown field",
            ),
            ("{", "expected a JSON list"),
        ] {
            let e = parse_extra_records(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
