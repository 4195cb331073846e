//! The `ssh` block compiled for one node: who may open SSH sessions to it, as whom.
//!
//! Tailscale SSH runs on the destination node; its policy lists principals
//! (source node addresses), the local users they may log in as, and the
//! action (accept, or check: hold and ask the control server). Rules are
//! ordered with check rules first, as Tailscale evaluates first match wins.

use std::collections::{BTreeMap, BTreeSet};

use headway_proto::tailcfg::{NodeId, SshAction, SshPolicy, SshPrincipal, SshRule, UserId};

use crate::bitset::BitSet;
use crate::compile::{CompiledPolicy, Resolver};
use crate::syntax::{Alias, AutoGroup, SshActionKind, SshRuleSpec};

/// Where `check` actions send the client; Tailscale fills in the placeholders.
const CHECK_PATH: &str = "/machine/ssh/action/$SRC_NODE_ID/to/$DST_NODE_ID?local_user=$LOCAL_USER";

/// Local users of a rule, split as Tailscale maps them.
struct UserMap {
    /// `root`, `autogroup:nonroot` and literal users.
    common: BTreeMap<String, String>,
    /// Domains of `localpart:*@<domain>` entries.
    localpart_domains: Vec<String>,
}

fn user_map(users: &[String]) -> UserMap {
    let mut common = BTreeMap::new();
    let mut localpart_domains = Vec::new();
    if users.iter().any(|u| u == "autogroup:nonroot") {
        common.insert("*".to_owned(), "=".to_owned());
    }
    // `root` must be named to be allowed; otherwise it is explicitly mapped to nobody.
    let root = if users.iter().any(|u| u == "root") {
        "root"
    } else {
        ""
    };
    common.insert("root".to_owned(), root.to_owned());
    for u in users {
        if u == "root" || u == "autogroup:nonroot" {
            continue;
        }
        match u.strip_prefix("localpart:*@") {
            Some(domain) if !domain.is_empty() => localpart_domains.push(domain.to_owned()),
            _ => {
                common.insert(u.clone(), u.clone());
            }
        }
    }
    UserMap {
        common,
        localpart_domains,
    }
}

fn principals(ips: &[String]) -> Vec<SshPrincipal> {
    let mut sorted = ips.to_vec();
    // IPv4 before IPv6, each in text order (as Tailscale lists them).
    sorted.sort_by(|a, b| (a.contains(':'), a).cmp(&(b.contains(':'), b)));
    sorted
        .into_iter()
        .map(|ip| SshPrincipal {
            node_ip: ip,
            ..Default::default()
        })
        .collect()
}

impl CompiledPolicy {
    /// The SSH policy a node enforces as an SSH server; `None` when the policy
    /// has no `ssh` block. `control_url` is the server's URL, used by `check` rules.
    pub fn ssh_policy_for(&self, id: NodeId, control_url: &str) -> Option<SshPolicy> {
        let policy = self.policy.as_ref()?;
        let ni = self.index_of(id)?;
        let res = Resolver {
            policy,
            nodes: &self.nodes,
            index: &self.index,
        };
        let mut rules = Vec::new();
        for spec in &policy.ssh {
            self.ssh_rules_for(&res, spec, ni, control_url, &mut rules);
        }
        // Check rules first: the most restrictive match wins.
        rules.sort_by_key(|r: &SshRule| {
            r.action
                .as_ref()
                .is_none_or(|a| a.hold_and_delegate.is_empty())
        });
        Some(SshPolicy { rules })
    }

    fn ssh_rules_for(
        &self,
        res: &Resolver,
        spec: &SshRuleSpec,
        ni: usize,
        control_url: &str,
        out: &mut Vec<SshRule>,
    ) {
        let n = &self.nodes[ni];
        let mut src_nodes = BitSet::with_len(self.nodes.len());
        for s in &spec.src {
            if let Some(set) = res.nodes_of(&s.value) {
                src_nodes.union_with(&set);
            }
        }
        if src_nodes.is_empty() {
            return;
        }
        let action = match spec.action {
            SshActionKind::Accept => SshAction {
                accept: true,
                allow_agent_forwarding: true,
                allow_local_port_forwarding: true,
                allow_remote_port_forwarding: true,
                ..Default::default()
            },
            SshActionKind::Check => SshAction {
                hold_and_delegate: format!("{}{CHECK_PATH}", control_url.trim_end_matches('/')),
                ..Default::default()
            },
        };
        let users = user_map(&spec.users);
        // The local user each source user maps to through `localpart:*@<domain>`.
        let localparts: BTreeMap<UserId, String> = self
            .users
            .iter()
            .filter(|u| {
                u.email_domain().is_some_and(|d| {
                    users
                        .localpart_domains
                        .iter()
                        .any(|l| l.eq_ignore_ascii_case(d))
                })
            })
            .filter_map(|u| u.email_local_part().map(|l| (u.id, l.to_owned())))
            .collect();
        let has_localpart = !users.localpart_domains.is_empty();

        // Source addresses, per owning user; tagged nodes once per tag (as Tailscale lists them).
        let mut by_user: BTreeMap<UserId, Vec<String>> = BTreeMap::new();
        let mut tagged: Vec<String> = Vec::new();
        for si in src_nodes.ones() {
            let s = &self.nodes[si];
            let ips = s.ips.iter().map(|ip| ip.to_string());
            match s.owner {
                Some(uid) => by_user.entry(uid).or_default().extend(ips),
                None if s.node.is_tagged() => {
                    for _ in &s.node.tags {
                        tagged.extend(s.ips.iter().map(|ip| ip.to_string()));
                    }
                }
                None => {}
            }
        }

        let emit = |out: &mut Vec<SshRule>, ips: &[String], uid: Option<UserId>| {
            if ips.is_empty() {
                return;
            }
            let p = principals(ips);
            out.push(SshRule {
                principals: p.clone(),
                ssh_users: users.common.clone(),
                action: Some(action.clone()),
                accept_env: spec.accept_env.clone(),
                ..Default::default()
            });
            if let Some(local) = uid.and_then(|u| localparts.get(&u)) {
                out.push(SshRule {
                    principals: p,
                    ssh_users: BTreeMap::from([(local.clone(), local.clone())]),
                    action: Some(action.clone()),
                    accept_env: spec.accept_env.clone(),
                    ..Default::default()
                });
            }
        };

        let self_dst = spec
            .dst
            .iter()
            .any(|d| d.value == Alias::Auto(AutoGroup::SelfDevices));
        if self_dst
            && let Some(uid) = n.owner
            && let Some(ips) = by_user.get(&uid)
        {
            emit(out, ips, Some(uid));
        }
        let mut dst_nodes = BitSet::with_len(self.nodes.len());
        let mut has_other = false;
        for d in spec
            .dst
            .iter()
            .filter(|d| d.value != Alias::Auto(AutoGroup::SelfDevices))
        {
            has_other = true;
            if let Some(set) = res.nodes_of(&d.value) {
                dst_nodes.union_with(&set);
            }
        }
        if !has_other {
            return;
        }
        if dst_nodes.get(ni) {
            if has_localpart {
                for (uid, ips) in &by_user {
                    emit(out, ips, Some(*uid));
                }
                emit(out, &tagged, None);
            } else {
                let all: Vec<String> = by_user
                    .values()
                    .flatten()
                    .cloned()
                    .chain(tagged.iter().cloned())
                    .collect();
                emit(out, &all, None);
            }
        } else if has_localpart && src_nodes.get(ni) {
            // With localpart users, Tailscale also gives each source node the
            // rules for its own user's devices.
            match n.owner {
                Some(uid) => {
                    if let Some(ips) = by_user.get(&uid) {
                        emit(out, ips, Some(uid));
                    }
                }
                None => {
                    let own: Vec<String> = n.ips.iter().map(|ip| ip.to_string()).collect();
                    emit(out, &own, None);
                }
            }
        }
    }
}

impl CompiledPolicy {
    /// Whether an SSH connection from node `src` to node `dst` falls under a
    /// `check` rule, and for how long a passed check counts (Tailscale's
    /// default `checkPeriod` is 12 hours; zero means "check every time").
    /// When several check rules match, the shortest period wins.
    pub fn ssh_check_period(&self, src: NodeId, dst: NodeId) -> Option<std::time::Duration> {
        const DEFAULT: u64 = 12 * 3600;
        let policy = self.policy.as_ref()?;
        let (si, di) = (self.index_of(src)?, self.index_of(dst)?);
        let res = Resolver {
            policy,
            nodes: &self.nodes,
            index: &self.index,
        };
        let mut period: Option<u64> = None;
        for spec in policy
            .ssh
            .iter()
            .filter(|s| s.action == SshActionKind::Check)
        {
            let src_ok = spec
                .src
                .iter()
                .any(|a| res.nodes_of(&a.value).is_some_and(|set| set.get(si)));
            if !src_ok {
                continue;
            }
            let dst_ok = spec.dst.iter().any(|d| {
                if d.value == Alias::Auto(AutoGroup::SelfDevices) {
                    self.nodes[di].owner.is_some() && self.nodes[di].owner == self.nodes[si].owner
                } else {
                    res.nodes_of(&d.value).is_some_and(|set| set.get(di))
                }
            });
            if dst_ok {
                let p = spec.check_period_secs.unwrap_or(DEFAULT);
                period = Some(period.map_or(p, |q| q.min(p)));
            }
        }
        period.map(std::time::Duration::from_secs)
    }
}

/// Checks SSH source/destination combinations Tailscale forbids: tagged
/// sources to user-owned devices, and user destinations reached by anyone
/// but that same user.
pub(crate) fn check_ssh_combination(spec: &SshRuleSpec) -> Result<(), String> {
    let tagged_src = spec
        .src
        .iter()
        .any(|s| matches!(s.value, Alias::Tag(_) | Alias::Auto(AutoGroup::Tagged)));
    let src_users: BTreeSet<&str> = spec
        .src
        .iter()
        .filter_map(|s| match &s.value {
            Alias::User(u) => Some(u.as_str()),
            _ => None,
        })
        .collect();
    let src_only_users = spec.src.iter().all(|s| matches!(s.value, Alias::User(_)));
    for d in &spec.dst {
        match &d.value {
            Alias::User(u) => {
                if tagged_src {
                    return Err(format!(
                        "tags in SSH source cannot access user-owned devices ({u}); use autogroup:tagged or tags as destinations"
                    ));
                }
                if !src_only_users || src_users.len() != 1 || !src_users.contains(u.as_str()) {
                    return Err(format!(
                        "user destination {u:?} requires the source to be that same user only; use autogroup:self for same-user SSH access"
                    ));
                }
            }
            Alias::Auto(AutoGroup::SelfDevices | AutoGroup::Member) if tagged_src => {
                return Err(format!(
                    "tags in SSH source cannot access user-owned devices ({})",
                    d.value
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
