//! The policy language: reading HuJSON into typed rules, and checking them.
//!
//! This module owns the *shape* of a policy: which fields exist, what a
//! selector (`alias`) may look like, which selectors are allowed where, and
//! the refusal messages (Tailscale's wording, with the JSON path and
//! position). It does not look at nodes: whatever depends on the tailnet
//! (who is in a group, which node has which tag) is done by `compile`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use headway_proto::tailcfg::PortRange;
use ipnet::IpNet;
use serde_json::Value;

use crate::error::{ErrorKind, PolicyError, Position, Result};
use crate::hujson::{self, Json, JsonValue, LineIndex, Member};

/// A selector of `src`, `dst`, `target`, owners and approvers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alias {
    /// `*`: every tailnet address (and, as a source, every approved subnet).
    Wildcard,
    /// A user by login name or e-mail, e.g. `odin@example.com` or `odin@`.
    User(String),
    /// `user:*@example.com`: every user whose e-mail is in that domain.
    UserDomain(String),
    Group(String),
    Tag(String),
    /// A name from `hosts`, resolved to its prefix when read.
    Host {
        name: String,
        net: IpNet,
    },
    /// An IP address or CIDR written literally.
    Prefix(IpNet),
    Auto(AutoGroup),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AutoGroup {
    Internet,
    Member,
    Tagged,
    SelfDevices,
    NonRoot,
    DangerAll,
    /// Role-based groups (admin, owner, …): headway has no user roles, so they match nobody.
    Role(&'static str),
}

impl AutoGroup {
    fn parse(name: &str) -> Option<AutoGroup> {
        Some(match name {
            "internet" => AutoGroup::Internet,
            "member" => AutoGroup::Member,
            "tagged" => AutoGroup::Tagged,
            "self" => AutoGroup::SelfDevices,
            "nonroot" => AutoGroup::NonRoot,
            "danger-all" => AutoGroup::DangerAll,
            "admin" => AutoGroup::Role("admin"),
            "owner" => AutoGroup::Role("owner"),
            "it-admin" => AutoGroup::Role("it-admin"),
            "network-admin" => AutoGroup::Role("network-admin"),
            "billing-admin" => AutoGroup::Role("billing-admin"),
            "auditor" => AutoGroup::Role("auditor"),
            "shared" => AutoGroup::Role("shared"),
            _ => return None,
        })
    }

    pub fn name(&self) -> String {
        let n = match self {
            AutoGroup::Internet => "internet",
            AutoGroup::Member => "member",
            AutoGroup::Tagged => "tagged",
            AutoGroup::SelfDevices => "self",
            AutoGroup::NonRoot => "nonroot",
            AutoGroup::DangerAll => "danger-all",
            AutoGroup::Role(r) => r,
        };
        format!("autogroup:{n}")
    }
}

impl std::fmt::Display for Alias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Alias::Wildcard => f.write_str("*"),
            Alias::User(u) => f.write_str(u),
            Alias::UserDomain(d) => write!(f, "user:*@{d}"),
            Alias::Group(g) | Alias::Tag(g) => f.write_str(g),
            Alias::Host { name, .. } => f.write_str(name),
            Alias::Prefix(p) => {
                if p.prefix_len() == p.max_prefix_len() {
                    write!(f, "{}", p.addr())
                } else {
                    write!(f, "{p}")
                }
            }
            Alias::Auto(a) => f.write_str(&a.name()),
        }
    }
}

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub offset: usize,
}

/// An IP protocol restriction with its ports (`tcp:443`, `*`, `icmp:*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoPorts {
    /// Empty: Tailscale's default set (TCP, UDP, ICMP) — `IPProto` is left out.
    pub protos: Vec<i32>,
    pub ports: Vec<PortRange>,
}

/// A network-level grant: sources may reach destinations with these protocols/ports.
/// ACLs are turned into these too (one per destination, since ACL ports are per destination).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub src: Vec<Spanned<Alias>>,
    pub dst: Vec<Spanned<Alias>>,
    pub ip: Vec<ProtoPorts>,
    /// Application capabilities (`app`), opaque JSON arguments per capability name.
    pub app: BTreeMap<String, Vec<Value>>,
    pub via: Vec<String>,
    /// Where it came from, e.g. `acls[2]` or `grants[0]`, for messages.
    pub origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshActionKind {
    Accept,
    Check,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SshRuleSpec {
    pub action: SshActionKind,
    pub src: Vec<Spanned<Alias>>,
    pub dst: Vec<Spanned<Alias>>,
    pub users: Vec<String>,
    /// `None`: default (12h); `Some(0)`: always.
    pub check_period_secs: Option<u64>,
    pub accept_env: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeAttrSpec {
    pub target: Vec<Spanned<Alias>>,
    pub attr: Vec<String>,
    pub ip_pool: Vec<IpNet>,
}

/// One entry of the policy's `tests` block.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyTestSpec {
    pub src: Option<String>,
    pub proto: Option<String>,
    pub accept: Vec<String>,
    pub deny: Vec<String>,
    pub index: usize,
}

/// One entry of the policy's `sshTests` block.
#[derive(Debug, Clone, PartialEq)]
pub struct SshTestSpec {
    pub src: Option<String>,
    pub dst: Vec<String>,
    pub accept: Vec<String>,
    pub check: Vec<String>,
    pub deny: Vec<String>,
    pub index: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AutoApprovers {
    pub routes: Vec<(IpNet, Vec<Alias>)>,
    pub exit_node: Vec<Alias>,
}

/// An owner of a tag (who may put it on a node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    User(String),
    Group(String),
    Tag(String),
    Auto(AutoGroup),
}

/// A parsed and checked policy. Build it with [`Policy::parse`].
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) groups: BTreeMap<String, Vec<String>>,
    pub(crate) hosts: BTreeMap<String, IpNet>,
    pub(crate) tag_owners: BTreeMap<String, Vec<Owner>>,
    /// ACLs and grants in one list, in policy order (grants first, then ACLs).
    pub(crate) grants: Vec<Grant>,
    /// Whether the policy had an `acls` or `grants` field at all (absent means allow-all).
    pub(crate) has_access_rules: bool,
    pub(crate) ssh: Vec<SshRuleSpec>,
    pub(crate) node_attrs: Vec<NodeAttrSpec>,
    pub(crate) auto_approvers: AutoApprovers,
    pub(crate) tests: Vec<PolicyTestSpec>,
    pub(crate) ssh_tests: Vec<SshTestSpec>,
    pub(crate) randomize_client_port: bool,
    /// `localpart:*@<domain>` domains used by SSH rules, with where they were written;
    /// checked against the tailnet's users at compile time.
    pub(crate) localpart_domains: Vec<(String, String, usize)>,
    pub(crate) lines: LineIndex,
}

/// Capabilities users may grant although they are in the tailscale.com domain.
const GRANTABLE_TAILSCALE_CAPS: &[&str] = &[
    "tailscale.com/cap/drive",
    "tailscale.com/cap/relay",
    "tailscale.com/cap/webui",
    "tailscale.com/cap/kubernetes",
    "tailscale.com/cap/tsidp",
    "tailscale.com/cap/secrets",
];

/// Top-level fields Tailscale accepts that do not change access; read and ignored.
const IGNORED_TOP_LEVEL: &[&str] = &["derpMap", "disableIPv4", "OneCGNATRoute", "attrConfig"];

/// Reads the policy, remembering the JSON path for messages.
struct Reader<'a> {
    lines: &'a LineIndex,
}

type Path = String;

fn child(path: &str, key: &str) -> Path {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> Path {
    format!("{path}[{i}]")
}

fn keyed(path: &str, key: &str) -> Path {
    format!("{path}[{key:?}]")
}

impl Reader<'_> {
    fn pos(&self, offset: usize) -> Option<Position> {
        Some(self.lines.position(offset))
    }

    fn err(
        &self,
        kind: ErrorKind,
        path: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError::new(kind, message).at(path, self.pos(offset))
    }

    fn type_err(&self, path: &str, j: &Json, expected: &str) -> PolicyError {
        self.err(
            ErrorKind::InvalidType,
            path,
            j.offset,
            format!("expected {expected}, got {}", j.type_name()),
        )
    }

    fn object<'j>(&self, path: &str, j: &'j Json) -> Result<&'j [Member]> {
        match &j.value {
            JsonValue::Object(m) => Ok(m),
            _ => Err(self.type_err(path, j, "an object")),
        }
    }

    /// The members of an object, each matched case-insensitively (as Go's JSON does)
    /// against `known`; unknown or repeated fields are refused.
    fn fields<'j>(
        &self,
        path: &str,
        j: &'j Json,
        known: &[&'static str],
    ) -> Result<BTreeMap<&'static str, &'j Member>> {
        let mut out = BTreeMap::new();
        for m in self.object(path, j)? {
            let Some(name) = known.iter().find(|k| k.eq_ignore_ascii_case(&m.key)) else {
                return Err(self.err(
                    ErrorKind::UnknownField,
                    &child(path, &m.key),
                    m.key_offset,
                    format!(
                        "unknown field {:?}; expected one of: {}",
                        m.key,
                        known.join(", ")
                    ),
                ));
            };
            if out.insert(*name, m).is_some() {
                return Err(self.err(
                    ErrorKind::InvalidValue,
                    &child(path, &m.key),
                    m.key_offset,
                    format!("duplicate field {:?}", m.key),
                ));
            }
        }
        Ok(out)
    }

    fn string(&self, path: &str, j: &Json) -> Result<String> {
        match &j.value {
            JsonValue::String(s) => Ok(s.clone()),
            _ => Err(self.type_err(path, j, "a string")),
        }
    }

    fn array<'j>(&self, path: &str, j: &'j Json) -> Result<&'j [Json]> {
        match &j.value {
            JsonValue::Array(a) => Ok(a),
            _ => Err(self.type_err(path, j, "an array")),
        }
    }

    /// A list of strings; `null` counts as empty.
    fn strings(&self, path: &str, j: &Json) -> Result<Vec<Spanned<String>>> {
        if j.value == JsonValue::Null {
            return Ok(vec![]);
        }
        self.array(path, j)?
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Ok(Spanned {
                    value: self.string(&index(path, i), item)?,
                    offset: item.offset,
                })
            })
            .collect()
    }

    fn boolean(&self, path: &str, j: &Json) -> Result<bool> {
        match j.value {
            JsonValue::Bool(b) => Ok(b),
            JsonValue::Null => Ok(false),
            _ => Err(self.type_err(path, j, "true or false")),
        }
    }
}

fn is_user(s: &str) -> bool {
    s.contains('@')
}

/// Parses an IP or CIDR the way policy selectors may write them.
pub(crate) fn parse_prefix(s: &str) -> Option<IpNet> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(IpNet::from(ip));
    }
    let net = s.parse::<IpNet>().ok()?;
    Some(net.trunc())
}

/// What a selector string is, before checking that it is allowed where it is used.
pub(crate) fn parse_alias(
    raw: &str,
    hosts: &BTreeMap<String, IpNet>,
) -> std::result::Result<Alias, String> {
    let s = raw.trim();
    if s == "*" {
        return Ok(Alias::Wildcard);
    }
    if let Some(p) = parse_prefix(s) {
        return Ok(Alias::Prefix(p));
    }
    if let Some(rest) = s.strip_prefix("autogroup:") {
        return AutoGroup::parse(rest)
            .map(Alias::Auto)
            .ok_or_else(|| format!("autogroup {s:?} is not valid"));
    }
    if s.starts_with("group:") {
        return Ok(Alias::Group(s.to_owned()));
    }
    if s.starts_with("tag:") {
        return Ok(Alias::Tag(s.to_owned()));
    }
    if let Some(domain) = s.strip_prefix("user:*@") {
        return Ok(Alias::UserDomain(domain.to_owned()));
    }
    if is_user(s) {
        return Ok(Alias::User(s.to_owned()));
    }
    if let Some(net) = hosts.get(s) {
        return Ok(Alias::Host {
            name: s.to_owned(),
            net: *net,
        });
    }
    Err(format!(
        "{s:?}: invalid address (not an IP, a CIDR, or a name defined in hosts)"
    ))
}

/// Splits `alias:ports`; IPv6 addresses may be bracketed (`[fd7a::1]:22`).
pub(crate) fn split_alias_ports(s: &str) -> std::result::Result<(String, String), String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("{s:?}: missing ']' after IPv6 address"));
        };
        if !matches!(host.parse::<IpAddr>(), Ok(IpAddr::V6(_))) {
            return Err(format!(
                "{s:?}: square brackets are only valid around IPv6 addresses"
            ));
        }
        let Some(ports) = after.strip_prefix(':') else {
            return Err(format!("{s:?}: missing port after ']'"));
        };
        return Ok((host.to_owned(), ports.to_owned()));
    }
    match s.rfind(':') {
        Some(i) if i > 0 => Ok((s[..i].to_owned(), s[i + 1..].to_owned())),
        _ => Err(format!(
            "{s:?}: missing port (write it as alias:port, alias:* for all ports)"
        )),
    }
}

/// Parses `*`, `22`, `80-443`, `22,80,443`.
pub(crate) fn parse_ports(s: &str) -> std::result::Result<Vec<PortRange>, String> {
    if s == "*" {
        return Ok(vec![PortRange::ANY]);
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (part, None),
        };
        let first: u16 = first
            .parse()
            .map_err(|_| "invalid first integer".to_owned())?;
        let last: u16 = match last {
            Some(l) => l.parse().map_err(|_| "invalid last integer".to_owned())?,
            None => first,
        };
        if first > last {
            return Err(format!(
                "first port {first} is greater than last port {last}"
            ));
        }
        out.push(PortRange { first, last });
    }
    Ok(out)
}

/// IANA numbers of the protocol names Tailscale knows.
pub(crate) fn protocol_number(name: &str) -> std::result::Result<i32, String> {
    let lower = name.to_ascii_lowercase();
    let n = match lower.as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "ipv4" | "ip-in-ip" => 4,
        "tcp" => 6,
        "egp" => 8,
        "igp" => 9,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" => 58,
        "sctp" => 132,
        "fc" => 133,
        _ => {
            if lower.len() > 1 && lower.starts_with('0') || lower == "0" {
                return Err(format!("protocol number {name:?}: leading 0 not permitted"));
            }
            return match lower.parse::<i32>() {
                Ok(n) if (0..=255).contains(&n) => Ok(n),
                _ => Err(format!(
                    "proto name {name:?} not known; use protocol number 0-255 or protocol name (icmp, tcp, udp, etc.)"
                )),
            };
        }
    };
    Ok(n)
}

fn supports_ports(protos: &[i32]) -> bool {
    protos.is_empty() || protos.iter().all(|p| matches!(p, 6 | 17 | 132))
}

/// Parses a go `time.Duration` string (`1h30m`, `168h0m1s`, `0s`), in seconds.
fn parse_go_duration(s: &str) -> std::result::Result<u64, String> {
    let bad = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Ok(total.round() as u64)
}

fn format_go_duration(secs: u64) -> String {
    format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60)
}

const MAX_CHECK_PERIOD_SECS: u64 = 168 * 3600;

impl Policy {
    /// Reads and checks a policy (HuJSON). The whole language is checked
    /// here; only references to the tailnet (`localpart:*@domain` users)
    /// wait for [`Policy::compile`](crate::Policy::compile).
    pub fn parse(text: &str) -> Result<Policy> {
        let lines = LineIndex::new(text);
        let root = if text.trim().is_empty() {
            Json {
                value: JsonValue::Object(vec![]),
                offset: 0,
            }
        } else {
            hujson::parse(text)?
        };
        let r = Reader { lines: &lines };
        let mut known: Vec<&'static str> = vec![
            "acls",
            "grants",
            "groups",
            "hosts",
            "tagOwners",
            "autoApprovers",
            "ssh",
            "nodeAttrs",
            "tests",
            "sshTests",
            "randomizeClientPort",
        ];
        known.extend_from_slice(IGNORED_TOP_LEVEL);
        let f = r.fields("", &root, &known)?;

        let hosts = match f.get("hosts") {
            Some(m) => read_hosts(&r, "hosts", &m.value)?,
            None => BTreeMap::new(),
        };
        let groups = match f.get("groups") {
            Some(m) => read_groups(&r, "groups", &m.value)?,
            None => BTreeMap::new(),
        };
        let tag_owners = match f.get("tagOwners") {
            Some(m) => read_tag_owners(&r, "tagOwners", &m.value)?,
            None => BTreeMap::new(),
        };
        let names = Names {
            groups: &groups,
            hosts: &hosts,
            tag_owners: &tag_owners,
        };

        let mut grants = Vec::new();
        if let Some(m) = f.get("grants") {
            for (i, g) in r.array("grants", &m.value)?.iter().enumerate() {
                grants.push(read_grant(&r, &index("grants", i), g, &names)?);
            }
        }
        if let Some(m) = f.get("acls") {
            for (i, a) in r.array("acls", &m.value)?.iter().enumerate() {
                grants.extend(read_acl(&r, &index("acls", i), a, &names)?);
            }
        }
        let has_access_rules = f.contains_key("acls") || f.contains_key("grants");

        let mut ssh = Vec::new();
        let mut localpart_domains = Vec::new();
        if let Some(m) = f.get("ssh")
            && m.value.value != JsonValue::Null
        {
            for (i, s) in r.array("ssh", &m.value)?.iter().enumerate() {
                ssh.push(read_ssh(
                    &r,
                    &index("ssh", i),
                    s,
                    &names,
                    &mut localpart_domains,
                )?);
            }
        }
        let mut node_attrs = Vec::new();
        if let Some(m) = f.get("nodeAttrs") {
            for (i, a) in r.array("nodeAttrs", &m.value)?.iter().enumerate() {
                node_attrs.push(read_node_attr(&r, &index("nodeAttrs", i), a, &names)?);
            }
        }
        let auto_approvers = match f.get("autoApprovers") {
            Some(m) => read_auto_approvers(&r, "autoApprovers", &m.value, &names)?,
            None => AutoApprovers::default(),
        };
        let tests = match f.get("tests") {
            Some(m) => read_tests(&r, "tests", &m.value)?,
            None => vec![],
        };
        let ssh_tests = match f.get("sshTests") {
            Some(m) => read_ssh_tests(&r, "sshTests", &m.value, &names)?,
            None => vec![],
        };
        let randomize_client_port = match f.get("randomizeClientPort") {
            Some(m) => r.boolean("randomizeClientPort", &m.value)?,
            None => false,
        };
        for name in IGNORED_TOP_LEVEL {
            let _ = f.get(name);
        }

        Ok(Policy {
            groups,
            hosts,
            tag_owners,
            grants,
            has_access_rules,
            ssh,
            node_attrs,
            auto_approvers,
            tests,
            ssh_tests,
            randomize_client_port,
            localpart_domains,
            lines,
        })
    }

    /// The empty policy (no rules; compiles to allow-all, like no policy).
    pub fn empty() -> Policy {
        Policy {
            groups: BTreeMap::new(),
            hosts: BTreeMap::new(),
            tag_owners: BTreeMap::new(),
            grants: vec![],
            has_access_rules: false,
            ssh: vec![],
            node_attrs: vec![],
            auto_approvers: AutoApprovers::default(),
            tests: vec![],
            ssh_tests: vec![],
            randomize_client_port: false,
            localpart_domains: vec![],
            lines: LineIndex::new(""),
        }
    }

    /// Tags defined in `tagOwners`.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tag_owners.keys().map(String::as_str)
    }

    pub(crate) fn position(&self, offset: usize) -> Option<Position> {
        Some(self.lines.position(offset))
    }

    /// Checks the references that depend on the tailnet rather than the
    /// policy text: `localpart:*@<domain>` must name a domain of some user.
    /// [`CompiledPolicy::new`](crate::CompiledPolicy::new) calls it; call it directly to
    /// check a new policy against the users before compiling.
    pub fn check_tailnet_references(&self, users: &[crate::topology::PolicyUser]) -> Result<()> {
        for (domain, path, offset) in &self.localpart_domains {
            if !users
                .iter()
                .any(|u| u.email_domain() == Some(domain.as_str()))
            {
                return Err(PolicyError::new(
                    ErrorKind::Undefined,
                    format!("{domain} is not associated with this Tailnet and cannot be used in user:*@<domain> expressions"),
                )
                .at(path, self.position(*offset)));
            }
        }
        Ok(())
    }
}

/// The names a policy defines, for checking references while reading.
struct Names<'a> {
    groups: &'a BTreeMap<String, Vec<String>>,
    hosts: &'a BTreeMap<String, IpNet>,
    tag_owners: &'a BTreeMap<String, Vec<Owner>>,
}

impl Names<'_> {
    fn check_defined(&self, alias: &Alias) -> std::result::Result<(), String> {
        match alias {
            Alias::Group(g) if !self.groups.contains_key(g) => {
                Err(format!("group not found: {g:?}; define it in groups"))
            }
            Alias::Tag(t) if !self.tag_owners.contains_key(t) => {
                Err(format!("tag not found: {t:?}"))
            }
            _ => Ok(()),
        }
    }
}

fn read_hosts(r: &Reader, path: &str, j: &Json) -> Result<BTreeMap<String, IpNet>> {
    let mut out = BTreeMap::new();
    for m in r.object(path, j)? {
        let p = keyed(path, &m.key);
        let name = m.key.clone();
        if name.is_empty()
            || name.contains(':')
            || name.contains('@')
            || name == "*"
            || parse_prefix(&name).is_some()
        {
            return Err(r.err(
                ErrorKind::InvalidValue,
                &p,
                m.key_offset,
                format!("host name {name:?} is not valid (letters, digits, '-', '.')"),
            ));
        }
        let value = r.string(&p, &m.value)?;
        let net = parse_prefix(value.trim()).ok_or_else(|| {
            r.err(
                ErrorKind::InvalidValue,
                &p,
                m.value.offset,
                format!("host {name:?}: {value:?} is not an IP address or CIDR"),
            )
        })?;
        out.insert(name, net);
    }
    Ok(out)
}

fn read_groups(r: &Reader, path: &str, j: &Json) -> Result<BTreeMap<String, Vec<String>>> {
    let members = r.object(path, j)?;
    let mut out = BTreeMap::new();
    for m in members {
        let p = keyed(path, &m.key);
        if !m.key.starts_with("group:") || m.key.len() == "group:".len() {
            return Err(r.err(
                ErrorKind::InvalidValue,
                &p,
                m.key_offset,
                format!("group name {:?} must start with 'group:'", m.key),
            ));
        }
        let list = r.strings(&p, &m.value)?;
        out.insert(m.key.clone(), list);
    }
    // Groups may only contain users. Report the deepest parent first, as Tailscale does.
    for (name, list) in out.iter().rev() {
        for (i, member) in list.iter().enumerate() {
            let member_name = member.value.trim();
            let p = index(&keyed(path, name), i);
            if member_name.starts_with("group:") {
                return Err(r.err(
                    ErrorKind::InvalidValue,
                    &p,
                    member.offset,
                    format!("groups[{name:?}]: {member_name:?}: group members cannot be recursive"),
                ));
            }
            if !member_name.contains('@') {
                return Err(r.err(
                    ErrorKind::InvalidValue,
                    &p,
                    member.offset,
                    format!("groups[{name:?}]: {member_name:?}: group members must be users (user@domain or user@)"),
                ));
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.into_iter().map(|s| s.value.trim().to_owned()).collect(),
            )
        })
        .collect())
}

fn check_tag_name(tag: &str) -> std::result::Result<(), String> {
    let Some(rest) = tag.strip_prefix("tag:") else {
        return Err(format!("{tag:?}: tag names must start with 'tag:'"));
    };
    match rest.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => {
            return Err(format!(
                "tagOwners[{tag:?}]: tag names must start with a letter, after 'tag:'"
            ));
        }
    }
    if let Some(bad) = rest
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.'))
    {
        return Err(format!(
            "tagOwners[{tag:?}]: tag names may only contain letters, digits, '-', '_' and '.', found {bad:?}"
        ));
    }
    Ok(())
}

fn read_tag_owners(r: &Reader, path: &str, j: &Json) -> Result<BTreeMap<String, Vec<Owner>>> {
    let mut raw = Vec::new();
    for m in r.object(path, j)? {
        let p = keyed(path, &m.key);
        check_tag_name(&m.key).map_err(|e| r.err(ErrorKind::InvalidValue, &p, m.key_offset, e))?;
        raw.push((m, r.strings(&p, &m.value)?));
    }
    let defined: BTreeSet<&str> = raw.iter().map(|(m, _)| m.key.as_str()).collect();
    let mut out = BTreeMap::new();
    for (m, list) in &raw {
        let p = keyed(path, &m.key);
        let mut owners = Vec::new();
        for (i, o) in list.iter().enumerate() {
            let s = o.value.trim();
            let ip = index(&p, i);
            let owner = if s.starts_with("tag:") {
                if !defined.contains(s) {
                    return Err(r.err(
                        ErrorKind::Undefined,
                        &ip,
                        o.offset,
                        format!("tag not found: {s:?}"),
                    ));
                }
                Owner::Tag(s.to_owned())
            } else if s.starts_with("group:") {
                Owner::Group(s.to_owned())
            } else if let Some(a) = s.strip_prefix("autogroup:") {
                match AutoGroup::parse(a) {
                    Some(ag @ (AutoGroup::Member | AutoGroup::Role(_))) => Owner::Auto(ag),
                    _ => {
                        return Err(r.err(
                            ErrorKind::InvalidValue,
                            &ip,
                            o.offset,
                            format!("{s:?} cannot own tags"),
                        ));
                    }
                }
            } else if is_user(s) {
                Owner::User(s.to_owned())
            } else {
                return Err(r.err(
                    ErrorKind::InvalidValue,
                    &ip,
                    o.offset,
                    format!(
                        "tag owner {s:?} is not valid (a user, group:, tag: or autogroup:admin)"
                    ),
                ));
            };
            owners.push(owner);
        }
        out.insert(m.key.clone(), owners);
    }
    Ok(out)
}

/// Where a selector is used decides which selectors are allowed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
    SshSrc,
    SshDst,
    Target,
}

fn read_aliases(
    r: &Reader,
    path: &str,
    j: &Json,
    names: &Names,
    side: Side,
) -> Result<Vec<Spanned<Alias>>> {
    let mut out = Vec::new();
    for (i, s) in r.strings(path, j)?.into_iter().enumerate() {
        let p = index(path, i);
        let alias = parse_alias(&s.value, names.hosts)
            .map_err(|e| r.err(ErrorKind::InvalidValue, &p, s.offset, e))?;
        check_alias(&alias, side).map_err(|e| r.err(ErrorKind::InvalidValue, &p, s.offset, e))?;
        if let Err(e) = names.check_defined(&alias) {
            let e = match (&alias, side) {
                (Alias::Tag(_), Side::Src) => format!("src={e}"),
                _ => e,
            };
            return Err(r.err(ErrorKind::Undefined, &p, s.offset, e));
        }
        out.push(Spanned {
            value: alias,
            offset: s.offset,
        });
    }
    Ok(out)
}

fn check_alias(alias: &Alias, side: Side) -> std::result::Result<(), String> {
    let Alias::Auto(ag) = alias else {
        if side == Side::SshDst {
            return match alias {
                Alias::Wildcard => Err("invalid dst \"*\"; use autogroup:member, autogroup:tagged or specific tags/users".into()),
                Alias::Host { name, .. } => Err(format!("invalid dst {name:?}")),
                Alias::Prefix(_) | Alias::Group(_) => Err(format!("invalid dst {:?}", alias.to_string())),
                _ => Ok(()),
            };
        }
        if side == Side::SshSrc
            && let Alias::Host { .. } | Alias::Prefix(_) = alias
        {
            return Err(format!("invalid src {:?}", alias.to_string()));
        }
        return Ok(());
    };
    match (side, ag) {
        (Side::Src | Side::SshSrc, AutoGroup::SelfDevices) => {
            Err("\"autogroup:self\" not valid on the src side of a rule".into())
        }
        (Side::Src | Side::SshSrc | Side::Target, AutoGroup::Internet) => {
            Err("autogroup:internet can only be used in ACL destinations".into())
        }
        (Side::Dst | Side::SshDst, AutoGroup::DangerAll) => {
            Err("cannot use autogroup:danger-all as a dst".into())
        }
        (Side::SshSrc, AutoGroup::DangerAll) => {
            Err("autogroup:danger-all is not valid in ssh rules".into())
        }
        (Side::SshDst, AutoGroup::Internet) => Err("invalid dst \"autogroup:internet\"".into()),
        (_, AutoGroup::NonRoot) => Err("autogroup:nonroot is only valid in ssh users".into()),
        (Side::Target, AutoGroup::SelfDevices | AutoGroup::DangerAll) => {
            Err("internal server error".into())
        }
        _ => Ok(()),
    }
}

/// `autogroup:self` destinations only combine with sources that are users or groups of users.
fn check_self_sources(
    src: &[Spanned<Alias>],
    allow_wildcard: bool,
) -> std::result::Result<(), (usize, String)> {
    for s in src {
        let ok = match &s.value {
            Alias::User(_)
            | Alias::UserDomain(_)
            | Alias::Group(_)
            | Alias::Auto(AutoGroup::Member) => true,
            Alias::Wildcard => allow_wildcard,
            _ => false,
        };
        if !ok {
            return Err((
                s.offset,
                "autogroup:self can only be used with users, groups, or supported autogroups"
                    .into(),
            ));
        }
    }
    Ok(())
}

fn read_acl(r: &Reader, path: &str, j: &Json, names: &Names) -> Result<Vec<Grant>> {
    let f = r.fields(
        path,
        j,
        &["action", "src", "dst", "proto", "users", "ports"],
    )?;
    let action_path = child(path, "action");
    let action = match f.get("action") {
        Some(m) => r.string(&action_path, &m.value)?,
        None => String::new(),
    };
    if action != "accept" {
        let offset = f.get("action").map_or(j.offset, |m| m.value.offset);
        return Err(r.err(
            ErrorKind::InvalidValue,
            &action_path,
            offset,
            format!("action={action:?} is not supported (only \"accept\")"),
        ));
    }
    let (src_key, src) = match (f.get("src"), f.get("users")) {
        (Some(m), _) => ("src", Some(m)),
        (None, Some(m)) => ("users", Some(m)),
        _ => ("src", None),
    };
    let src = match src {
        Some(m) => read_aliases(r, &child(path, src_key), &m.value, names, Side::Src)?,
        None => vec![],
    };
    let protos = match f.get("proto") {
        Some(m) => {
            let p = r.string(&child(path, "proto"), &m.value)?;
            if p.is_empty() {
                vec![]
            } else {
                vec![protocol_number(&p).map_err(|e| {
                    r.err(
                        ErrorKind::InvalidValue,
                        &child(path, "proto"),
                        m.value.offset,
                        e,
                    )
                })?]
            }
        }
        None => vec![],
    };
    let (dst_key, dst_member) = match (f.get("dst"), f.get("ports")) {
        (Some(m), _) => ("dst", Some(m)),
        (None, Some(m)) => ("ports", Some(m)),
        _ => ("dst", None),
    };
    let mut out = Vec::new();
    let mut self_offsets = Vec::new();
    if let Some(m) = dst_member {
        let dpath = child(path, dst_key);
        for (i, d) in r.strings(&dpath, &m.value)?.into_iter().enumerate() {
            let p = index(&dpath, i);
            let (alias_text, ports_text) = split_alias_ports(&d.value)
                .map_err(|e| r.err(ErrorKind::InvalidValue, &p, d.offset, e))?;
            let ports = parse_ports(&ports_text).map_err(|e| {
                r.err(
                    ErrorKind::InvalidValue,
                    &p,
                    d.offset,
                    format!("dst={:?}: port range {ports_text:?}: {e}", d.value.trim()),
                )
            })?;
            let alias = parse_alias(&alias_text, names.hosts)
                .map_err(|e| r.err(ErrorKind::InvalidValue, &p, d.offset, e))?;
            check_alias(&alias, Side::Dst)
                .map_err(|e| r.err(ErrorKind::InvalidValue, &p, d.offset, e))?;
            names.check_defined(&alias).map_err(|e| {
                r.err(
                    ErrorKind::Undefined,
                    &p,
                    d.offset,
                    format!("dst={alias_text:?}: {e}"),
                )
            })?;
            if !supports_ports(&protos) && ports != [PortRange::ANY] {
                return Err(r.err(
                    ErrorKind::InvalidValue,
                    &p,
                    d.offset,
                    "protocol does not support specific ports; only \"*\" is allowed".to_owned(),
                ));
            }
            if alias == Alias::Auto(AutoGroup::SelfDevices) {
                self_offsets.push(d.offset);
            }
            out.push(Grant {
                src: src.clone(),
                dst: vec![Spanned {
                    value: alias,
                    offset: d.offset,
                }],
                ip: vec![ProtoPorts {
                    protos: protos.clone(),
                    ports,
                }],
                app: BTreeMap::new(),
                via: vec![],
                origin: path.to_owned(),
            });
        }
    }
    if !self_offsets.is_empty() {
        check_self_sources(&src, true)
            .map_err(|(o, e)| r.err(ErrorKind::InvalidCombination, &child(path, src_key), o, e))?;
    }
    Ok(out)
}

fn read_proto_ports(r: &Reader, path: &str, s: &Spanned<String>) -> Result<ProtoPorts> {
    let v = s.value.trim();
    let err = |m: String| r.err(ErrorKind::InvalidValue, path, s.offset, m);
    if v == "*" {
        return Ok(ProtoPorts {
            protos: vec![],
            ports: vec![PortRange::ANY],
        });
    }
    let (protos, ports_text) = match v.split_once(':') {
        None => (vec![], v),
        Some((proto, ports)) => {
            if ports.contains(':') {
                return Err(err(format!(
                    "{v:?}: expected only one colon in Internet protocol and port type"
                )));
            }
            (vec![protocol_number(proto).map_err(&err)?], ports)
        }
    };
    let ports =
        parse_ports(ports_text).map_err(|e| err(format!("port range {ports_text:?}: {e}")))?;
    if !supports_ports(&protos) && ports != [PortRange::ANY] {
        return Err(err(format!(
            "{v:?}: protocol does not support specific ports; only \"*\" is allowed"
        )));
    }
    Ok(ProtoPorts { protos, ports })
}

fn read_grant(r: &Reader, path: &str, j: &Json, names: &Names) -> Result<Grant> {
    let f = r.fields(path, j, &["src", "dst", "ip", "app", "via"])?;
    let src = match f.get("src") {
        Some(m) => read_aliases(r, &child(path, "src"), &m.value, names, Side::Src)?,
        None => vec![],
    };
    let dst = match f.get("dst") {
        Some(m) => read_aliases(r, &child(path, "dst"), &m.value, names, Side::Dst)?,
        None => vec![],
    };
    let mut ip = Vec::new();
    if let Some(m) = f.get("ip") {
        let p = child(path, "ip");
        for (i, s) in r.strings(&p, &m.value)?.iter().enumerate() {
            ip.push(read_proto_ports(r, &index(&p, i), s)?);
        }
    }
    let mut app = BTreeMap::new();
    if let Some(m) = f.get("app") {
        let p = child(path, "app");
        if m.value.value != JsonValue::Null {
            for cap in r.object(&p, &m.value)? {
                let cp = keyed(&p, &cap.key);
                check_cap_name(&cap.key)
                    .map_err(|e| r.err(ErrorKind::InvalidValue, &cp, cap.key_offset, e))?;
                let args = match &cap.value.value {
                    JsonValue::Array(items) => items.iter().map(Json::to_serde).collect(),
                    JsonValue::Null => vec![],
                    _ => {
                        return Err(r.type_err(
                            &cp,
                            &cap.value,
                            "an array of capability arguments",
                        ));
                    }
                };
                app.insert(cap.key.clone(), args);
            }
        }
    }
    if ip.is_empty() && app.is_empty() {
        return Err(r.err(
            ErrorKind::InvalidValue,
            path,
            j.offset,
            "ip and app can not both be empty",
        ));
    }
    let mut via = Vec::new();
    if let Some(m) = f.get("via") {
        let p = child(path, "via");
        for (i, s) in r.strings(&p, &m.value)?.iter().enumerate() {
            let t = s.value.trim();
            let vp = index(&p, i);
            if !t.starts_with("tag:") {
                return Err(r.err(
                    ErrorKind::InvalidValue,
                    &vp,
                    s.offset,
                    "via can only be a tag",
                ));
            }
            if !names.tag_owners.contains_key(t) {
                return Err(r.err(
                    ErrorKind::Undefined,
                    &vp,
                    s.offset,
                    format!("tag {t:?} not found"),
                ));
            }
            via.push(t.to_owned());
        }
    }
    for d in &dst {
        if let Alias::Prefix(p) = &d.value
            && p.prefix_len() == 0
        {
            return Err(r.err(
                ErrorKind::InvalidValue,
                &child(path, "dst"),
                d.offset,
                format!(
                    "dst {:?}: to allow all IP addresses, use \"*\" or \"autogroup:internet\"",
                    p.to_string()
                ),
            ));
        }
        if !app.is_empty() && d.value == Alias::Auto(AutoGroup::Internet) {
            return Err(r.err(
                ErrorKind::InvalidCombination,
                &child(path, "dst"),
                d.offset,
                "cannot use app grants with autogroup:internet",
            ));
        }
    }
    if dst
        .iter()
        .any(|d| d.value == Alias::Auto(AutoGroup::SelfDevices))
    {
        check_self_sources(&src, false)
            .map_err(|(o, e)| r.err(ErrorKind::InvalidCombination, &child(path, "src"), o, e))?;
    }
    Ok(Grant {
        src,
        dst,
        ip,
        app,
        via,
        origin: path.to_owned(),
    })
}

fn check_cap_name(name: &str) -> std::result::Result<(), String> {
    if name.contains("://") {
        return Err(format!(
            "capability name {name:?} must have the form {{domain}}/{{path}}"
        ));
    }
    if name.starts_with("tailscale.com/") && !GRANTABLE_TAILSCALE_CAPS.contains(&name) {
        return Err("capability name must not be in the tailscale.com domain".into());
    }
    if !name.contains('/') {
        return Err(format!(
            "capability name {name:?} must have the form {{domain}}/{{path}}"
        ));
    }
    Ok(())
}

fn read_ssh(
    r: &Reader,
    path: &str,
    j: &Json,
    names: &Names,
    localpart_domains: &mut Vec<(String, String, usize)>,
) -> Result<SshRuleSpec> {
    let f = r.fields(
        path,
        j,
        &["action", "src", "dst", "users", "checkPeriod", "acceptEnv"],
    )?;
    let action = match f.get("action") {
        Some(m) => r.string(&child(path, "action"), &m.value)?,
        None => String::new(),
    };
    let action_offset = f.get("action").map_or(j.offset, |m| m.value.offset);
    let action = match action.trim() {
        "accept" => SshActionKind::Accept,
        "check" => SshActionKind::Check,
        "" => {
            return Err(r.err(
                ErrorKind::InvalidValue,
                &child(path, "action"),
                action_offset,
                "action must be specified",
            ));
        }
        other => {
            return Err(r.err(
                ErrorKind::InvalidValue,
                &child(path, "action"),
                action_offset,
                format!("{other:?} is not a valid action (\"accept\" or \"check\")"),
            ));
        }
    };
    let src = match f.get("src") {
        Some(m) => read_aliases(r, &child(path, "src"), &m.value, names, Side::SshSrc)?,
        None => vec![],
    };
    let dst = match f.get("dst") {
        Some(m) => read_aliases(r, &child(path, "dst"), &m.value, names, Side::SshDst)?,
        None => vec![],
    };
    let upath = child(path, "users");
    let users = match f.get("users") {
        Some(m) => r.strings(&upath, &m.value)?,
        None => vec![],
    };
    if users.is_empty() {
        let offset = f.get("users").map_or(j.offset, |m| m.value.offset);
        return Err(r.err(
            ErrorKind::InvalidValue,
            &upath,
            offset,
            "users must be specified",
        ));
    }
    let mut out_users = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let name = u.value.trim();
        if name.is_empty() || name == "*" {
            return Err(r.err(
                ErrorKind::InvalidValue,
                &index(&upath, i),
                u.offset,
                format!("user {name:?} is not valid"),
            ));
        }
        if let Some(domain) = name.strip_prefix("localpart:*@")
            && !domain.is_empty()
        {
            localpart_domains.push((domain.to_owned(), index(&upath, i), u.offset));
        }
        out_users.push(name.to_owned());
    }
    let check_period_secs = match f.get("checkPeriod") {
        None => None,
        Some(m) if m.value.value == JsonValue::Null => None,
        Some(m) => {
            let p = child(path, "checkPeriod");
            let s = r.string(&p, &m.value)?;
            if action != SshActionKind::Check {
                return Err(r.err(
                    ErrorKind::InvalidValue,
                    &p,
                    m.value.offset,
                    "checkPeriod is only valid with action \"check\"",
                ));
            }
            if s == "always" {
                Some(0)
            } else {
                let secs = parse_go_duration(&s)
                    .map_err(|e| r.err(ErrorKind::InvalidValue, &p, m.value.offset, e))?;
                if secs > MAX_CHECK_PERIOD_SECS {
                    return Err(r.err(
                        ErrorKind::InvalidValue,
                        &p,
                        m.value.offset,
                        format!(
                            "checkPeriod {} is above the max (168h)",
                            format_go_duration(secs)
                        ),
                    ));
                }
                Some(secs)
            }
        }
    };
    let mut accept_env = Vec::new();
    if let Some(m) = f.get("acceptEnv") {
        let p = child(path, "acceptEnv");
        for (i, e) in r.strings(&p, &m.value)?.into_iter().enumerate() {
            if e.value.is_empty() {
                return Err(r.err(
                    ErrorKind::InvalidValue,
                    &index(&p, i),
                    e.offset,
                    "acceptEnv values cannot be empty",
                ));
            }
            accept_env.push(e.value);
        }
    }
    let spec = SshRuleSpec {
        action,
        src,
        dst,
        users: out_users,
        check_period_secs,
        accept_env,
    };
    crate::ssh::check_ssh_combination(&spec)
        .map_err(|e| r.err(ErrorKind::InvalidCombination, path, j.offset, e))?;
    Ok(spec)
}

fn read_node_attr(r: &Reader, path: &str, j: &Json, names: &Names) -> Result<NodeAttrSpec> {
    let f = r.fields(path, j, &["target", "attr", "ipPool"])?;
    let target = match f.get("target") {
        Some(m) => read_aliases(r, &child(path, "target"), &m.value, names, Side::Target)?,
        None => vec![],
    };
    let attr = match f.get("attr") {
        Some(m) => r
            .strings(&child(path, "attr"), &m.value)?
            .into_iter()
            .map(|s| s.value)
            .collect(),
        None => vec![],
    };
    let mut ip_pool = Vec::new();
    if let Some(m) = f.get("ipPool") {
        let p = child(path, "ipPool");
        for (i, s) in r.strings(&p, &m.value)?.into_iter().enumerate() {
            let net = s.value.parse::<IpNet>().map_err(|_| {
                r.err(
                    ErrorKind::InvalidValue,
                    &index(&p, i),
                    s.offset,
                    format!("ipPool {:?} is not a CIDR", s.value),
                )
            })?;
            ip_pool.push(net);
        }
    }
    Ok(NodeAttrSpec {
        target,
        attr,
        ip_pool,
    })
}

fn read_auto_approvers(r: &Reader, path: &str, j: &Json, names: &Names) -> Result<AutoApprovers> {
    let f = r.fields(path, j, &["routes", "exitNode"])?;
    let approver = |p: &str, s: &Spanned<String>| -> Result<Alias> {
        let v = s.value.trim();
        let alias = if v.starts_with("tag:") {
            Alias::Tag(v.to_owned())
        } else if v.starts_with("group:") {
            Alias::Group(v.to_owned())
        } else if let Some(a) = v.strip_prefix("autogroup:").and_then(AutoGroup::parse) {
            Alias::Auto(a)
        } else if is_user(v) {
            Alias::User(v.to_owned())
        } else {
            return Err(r.err(
                ErrorKind::InvalidValue,
                p,
                s.offset,
                format!("auto approver {v:?} is not valid (a user, group: or tag:)"),
            ));
        };
        names
            .check_defined(&alias)
            .map_err(|e| r.err(ErrorKind::Undefined, p, s.offset, e))?;
        Ok(alias)
    };
    let mut out = AutoApprovers::default();
    if let Some(m) = f.get("routes") {
        let p = child(path, "routes");
        for route in r.object(&p, &m.value)? {
            let rp = keyed(&p, &route.key);
            let net = route.key.parse::<IpNet>().map_err(|_| {
                r.err(
                    ErrorKind::InvalidValue,
                    &rp,
                    route.key_offset,
                    format!("route {:?} is not a CIDR", route.key),
                )
            })?;
            let mut list = Vec::new();
            for (i, s) in r.strings(&rp, &route.value)?.iter().enumerate() {
                list.push(approver(&index(&rp, i), s)?);
            }
            out.routes.push((net.trunc(), list));
        }
    }
    if let Some(m) = f.get("exitNode") {
        let p = child(path, "exitNode");
        for (i, s) in r.strings(&p, &m.value)?.iter().enumerate() {
            out.exit_node.push(approver(&index(&p, i), s)?);
        }
    }
    Ok(out)
}

fn read_tests(r: &Reader, path: &str, j: &Json) -> Result<Vec<PolicyTestSpec>> {
    let mut out = Vec::new();
    if j.value == JsonValue::Null {
        return Ok(out);
    }
    for (i, t) in r.array(path, j)?.iter().enumerate() {
        let p = index(path, i);
        let f = r.fields(
            &p,
            t,
            &["src", "proto", "accept", "deny", "srcPostureAttrs"],
        )?;
        let src = match f.get("src") {
            Some(m) => Some(r.string(&child(&p, "src"), &m.value)?),
            None => None,
        };
        let proto = match f.get("proto") {
            Some(m) => Some(r.string(&child(&p, "proto"), &m.value)?),
            None => None,
        };
        let list = |key: &str| -> Result<Vec<String>> {
            match f.get(key) {
                Some(m) => Ok(r
                    .strings(&child(&p, key), &m.value)?
                    .into_iter()
                    .map(|s| s.value)
                    .collect()),
                None => Ok(vec![]),
            }
        };
        out.push(PolicyTestSpec {
            src,
            proto,
            accept: list("accept")?,
            deny: list("deny")?,
            index: i,
        });
    }
    Ok(out)
}

fn read_ssh_tests(r: &Reader, path: &str, j: &Json, names: &Names) -> Result<Vec<SshTestSpec>> {
    let mut out = Vec::new();
    if j.value == JsonValue::Null {
        return Ok(out);
    }
    for (i, t) in r.array(path, j)?.iter().enumerate() {
        let p = index(path, i);
        let f = r.fields(&p, t, &["src", "dst", "accept", "check", "deny"])?;
        let src = match f.get("src") {
            Some(m) => Some(r.string(&child(&p, "src"), &m.value)?),
            None => None,
        };
        let mut dst = Vec::new();
        if let Some(m) = f.get("dst") {
            let dp = child(&p, "dst");
            for (k, d) in r.strings(&dp, &m.value)?.into_iter().enumerate() {
                let v = d.value.trim().to_owned();
                check_ssh_test_dst(&v, names)
                    .map_err(|e| r.err(ErrorKind::InvalidValue, &index(&dp, k), d.offset, e))?;
                dst.push(v);
            }
        }
        let list = |key: &str| -> Result<Vec<String>> {
            match f.get(key) {
                Some(m) => Ok(r
                    .strings(&child(&p, key), &m.value)?
                    .into_iter()
                    .map(|s| s.value)
                    .collect()),
                None => Ok(vec![]),
            }
        };
        let accept = list("accept")?;
        let check = list("check")?;
        let deny = list("deny")?;
        for (key, users) in [("accept", &accept), ("check", &check), ("deny", &deny)] {
            for (k, u) in users.iter().enumerate() {
                if u.trim() == "*" {
                    return Err(r.err(
                        ErrorKind::InvalidValue,
                        &index(&child(&p, key), k),
                        t.offset,
                        format!("user {u:?} is not valid"),
                    ));
                }
            }
        }
        out.push(SshTestSpec {
            src,
            dst,
            accept,
            check,
            deny,
            index: i,
        });
    }
    Ok(out)
}

fn check_ssh_test_dst(dst: &str, names: &Names) -> std::result::Result<(), String> {
    if dst == "autogroup:internet" {
        return Err(format!("SSH tests dst contains disallowed element {dst:?}"));
    }
    if dst.starts_with("tag:") {
        if !names.tag_owners.contains_key(dst) {
            return Err(format!("SSH tests dst contains unknown tag {dst:?}"));
        }
        return Ok(());
    }
    let multi_host = |net: &IpNet| net.prefix_len() < net.max_prefix_len();
    if let Some(net) = names.hosts.get(dst) {
        if multi_host(net) {
            return Err(format!("SSH tests dst contains disallowed element {dst:?}"));
        }
        return Ok(());
    }
    if dst.contains('/')
        && let Some(net) = parse_prefix(dst)
        && multi_host(&net)
    {
        return Err(format!("SSH tests dst contains disallowed element {dst:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_ports("*").unwrap(), vec![PortRange::ANY]);
        assert_eq!(
            parse_ports("22,80-443").unwrap(),
            vec![
                PortRange::single(22),
                PortRange {
                    first: 80,
                    last: 443
                }
            ]
        );
        assert_eq!(parse_ports("ssh").unwrap_err(), "invalid first integer");
        assert!(parse_ports("443-80").is_err());
        assert!(parse_ports("70000").is_err());
        assert!(parse_ports("-1").is_err());
    }

    #[test]
    fn alias_ports_split() {
        assert_eq!(
            split_alias_ports("tag:server:22").unwrap(),
            ("tag:server".into(), "22".into())
        );
        assert_eq!(
            split_alias_ports("[fd7a::1]:22").unwrap(),
            ("fd7a::1".into(), "22".into())
        );
        assert_eq!(
            split_alias_ports("autogroup:self").unwrap(),
            ("autogroup".into(), "self".into())
        );
        assert!(split_alias_ports("webserver").is_err());
        assert!(split_alias_ports("[1.2.3.4]:22").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("168h").unwrap(), 168 * 3600);
        assert_eq!(parse_go_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_go_duration("0s").unwrap(), 0);
        assert_eq!(
            parse_go_duration("abc").unwrap_err(),
            "time: invalid duration \"abc\""
        );
        assert_eq!(format_go_duration(168 * 3600 + 1), "168h0m1s");
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol_number("TCP").unwrap(), 6);
        assert_eq!(protocol_number("47").unwrap(), 47);
        assert!(protocol_number("06").is_err());
        assert!(protocol_number("256").is_err());
        assert!(protocol_number("*").is_err());
    }
}
