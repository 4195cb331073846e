//! The policy's own assertions: the `tests` block (network access) and the
//! `sshTests` block (SSH logins). A policy whose tests fail is refused, with
//! one line per failed assertion.

use std::net::IpAddr;

use headway_proto::tailcfg::{PortRange, SshRule};

use crate::compile::{Body, CompiledPolicy, Dst, Resolver};
use crate::error::{ErrorKind, PolicyError, Result};
use crate::syntax::{self, Alias, AutoGroup, Policy};

/// Runs the policy's `tests` and `sshTests` against a compiled tailnet.
/// `Ok` when every assertion holds; otherwise a [`ErrorKind::TestsFailed`]
/// error listing the failures.
pub fn run_tests(policy: &Policy, compiled: &CompiledPolicy) -> Result<()> {
    let res = Resolver {
        policy,
        nodes: &compiled.nodes,
        index: &compiled.index,
    };
    let mut failures = Vec::new();
    for t in &policy.tests {
        run_policy_test(policy, compiled, &res, t, &mut failures);
    }
    for t in &policy.ssh_tests {
        run_ssh_test(policy, compiled, &res, t, &mut failures);
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(PolicyError::new(
        ErrorKind::TestsFailed,
        format!("test(s) failed:\n{}", failures.join("\n")),
    ))
}

/// A test source: the addresses traffic comes from, and their owners (for autogroup:self).
fn test_source(
    policy: &Policy,
    res: &Resolver,
    src: &str,
) -> std::result::Result<Vec<usize>, String> {
    let alias = syntax::parse_alias(src, &policy.hosts)?;
    match &alias {
        Alias::Group(g) if !policy.groups.contains_key(g) => {
            return Err(format!("group {g:?} is not defined"));
        }
        Alias::Tag(t) if !policy.tag_owners.contains_key(t) => {
            return Err(format!("tag {t:?} is not defined"));
        }
        _ => {}
    }
    let nodes: Vec<usize> = match res.nodes_of(&alias) {
        Some(set) => set.ones().collect(),
        None => {
            let (set, _) = res.sources(std::slice::from_ref(&alias));
            (0..res.nodes.len())
                .filter(|&i| res.nodes[i].ips.iter().any(|ip| set.contains_ip(*ip)))
                .collect()
        }
    };
    if nodes.is_empty() {
        return Err(format!("source {src:?} matches no node"));
    }
    Ok(nodes)
}

struct TestDst {
    alias: Alias,
    port: u16,
}

fn parse_test_dst(policy: &Policy, dst: &str) -> std::result::Result<TestDst, String> {
    let (alias_text, ports) = syntax::split_alias_ports(dst)?;
    let ports = syntax::parse_ports(&ports).map_err(|e| format!("port range {ports:?}: {e}"))?;
    let [PortRange { first, last }] = ports[..] else {
        return Err("test destination port must be a single port".into());
    };
    if first != last || (first == 0 && last == 65535) {
        return Err("test destination port must be a single port".into());
    }
    let alias = syntax::parse_alias(&alias_text, &policy.hosts)?;
    match &alias {
        Alias::Auto(AutoGroup::Internet) => {
            return Err("autogroup:internet not valid as a test destination".into());
        }
        Alias::Prefix(_) if alias_text.contains('/') => {
            return Err("test destination must be a single host, not a CIDR range".into());
        }
        Alias::Host { net, .. } if net.prefix_len() < net.max_prefix_len() => {
            return Err("test destination must be a single host, not a CIDR range".into());
        }
        Alias::Tag(t) if !policy.tag_owners.contains_key(t) => {
            return Err(format!("tag {t:?} is not defined"));
        }
        Alias::Group(g) if !policy.groups.contains_key(g) => {
            return Err(format!("group {g:?} is not defined"));
        }
        _ => {}
    }
    Ok(TestDst { alias, port: first })
}

/// Destination addresses of a test (with their node, if one has them).
fn test_dst_addrs(
    res: &Resolver,
    dst: &TestDst,
    src_nodes: &[usize],
) -> Vec<(IpAddr, Option<usize>)> {
    let owned = |i: usize| res.nodes[i].ips.iter().map(move |ip| (*ip, Some(i)));
    match &dst.alias {
        Alias::Auto(AutoGroup::SelfDevices) => {
            let owners: Vec<_> = src_nodes
                .iter()
                .filter_map(|&i| res.nodes[i].owner)
                .collect();
            (0..res.nodes.len())
                .filter(|&i| res.nodes[i].owner.is_some_and(|o| owners.contains(&o)))
                .flat_map(owned)
                .collect()
        }
        Alias::Prefix(p) | Alias::Host { net: p, .. } => {
            let ip = p.addr();
            vec![(ip, res.nodes.iter().position(|n| n.ips.contains(&ip)))]
        }
        other => res
            .nodes_of(other)
            .map(|set| set.ones().flat_map(owned).collect())
            .unwrap_or_default(),
    }
}

/// Whether any rule lets `src_ip` (of node `src_node`) reach `dst_ip` (of node `dst_node`) on `port`/`proto`.
fn allowed(
    compiled: &CompiledPolicy,
    src_node: usize,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    dst_node: Option<usize>,
    port: u16,
    proto: i32,
) -> bool {
    compiled.rules.iter().any(|rule| {
        let Body::Ip { protos, ports } = &rule.body else {
            return false;
        };
        let proto_ok = if protos.is_empty() {
            matches!(proto, 6 | 17 | 1 | 58)
        } else {
            protos.contains(&proto)
        };
        if !proto_ok
            || !ports.iter().any(|p| p.first <= port && port <= p.last)
            || !rule.via.is_empty()
        {
            return false;
        }
        if !rule.src_set.contains_ip(src_ip) {
            return false;
        }
        let to_node = rule.dsts.iter().any(|d| match d {
            Dst::Nodes(set) => dst_node.is_some_and(|n| set.get(n)),
            Dst::Addrs(entries) => entries.iter().any(|(_, s)| s.contains_ip(dst_ip)),
        });
        let to_self = rule.self_dst
            && dst_node.is_some_and(|d| {
                let owner = compiled.nodes[d].owner;
                owner.is_some() && compiled.nodes[src_node].owner == owner
            });
        to_node || to_self
    })
}

fn run_policy_test(
    policy: &Policy,
    compiled: &CompiledPolicy,
    res: &Resolver,
    t: &syntax::PolicyTestSpec,
    failures: &mut Vec<String>,
) {
    let at = format!("tests[{}]", t.index);
    let Some(src) = t.src.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        failures.push(format!("{at}: test entry must have a src"));
        return;
    };
    if t.accept.is_empty() && t.deny.is_empty() {
        failures.push(format!(
            "{at}: test entry must have at least one of \"accept\" or \"deny\""
        ));
        return;
    }
    let proto = match t.proto.as_deref().map(str::trim).unwrap_or("") {
        "" => 6,
        p => match syntax::protocol_number(p) {
            Ok(n @ (6 | 17 | 132)) => n,
            _ => {
                failures.push(format!(
                    "{at}: test protocol must be tcp, udp, sctp, or empty, got {p:?}"
                ));
                return;
            }
        },
    };
    let src_nodes = match test_source(policy, res, src) {
        Ok(n) => n,
        Err(e) => {
            failures.push(format!("{at}: {e}"));
            return;
        }
    };
    let src_alias = syntax::parse_alias(src, &policy.hosts).ok();
    let src_ips: Vec<(usize, IpAddr)> = src_nodes
        .iter()
        .flat_map(|&i| res.nodes[i].ips.iter().map(move |ip| (i, *ip)))
        .filter(|(_, ip)| match &src_alias {
            // An address source is that address, not its node's others.
            Some(Alias::Prefix(p) | Alias::Host { net: p, .. }) => p.contains(ip),
            _ => true,
        })
        .collect();
    for (want_allowed, list) in [(true, &t.accept), (false, &t.deny)] {
        for dst_text in list {
            let dst = match parse_test_dst(policy, dst_text) {
                Ok(d) => d,
                Err(e) => {
                    failures.push(format!("{at}: {dst_text:?}: {e}"));
                    continue;
                }
            };
            let dsts = test_dst_addrs(res, &dst, &src_nodes);
            if dsts.is_empty() {
                failures.push(format!("{at}: {dst_text:?} matches no node"));
                continue;
            }
            let pairs: Vec<bool> = src_ips
                .iter()
                .flat_map(|&(sn, s)| {
                    dsts.iter()
                        .filter(move |(d, _)| d.is_ipv4() == s.is_ipv4())
                        .map(move |&(d, dn)| allowed(compiled, sn, s, d, dn, dst.port, proto))
                })
                .collect();
            let is_allowed = !pairs.is_empty() && pairs.iter().all(|a| *a);
            let any_allowed = pairs.iter().any(|a| *a);
            if want_allowed && !is_allowed {
                failures.push(format!(
                    "{at}: {src} -> {dst_text}: expected ALLOWED, got DENIED"
                ));
            }
            if !want_allowed && any_allowed {
                failures.push(format!(
                    "{at}: {src} -> {dst_text}: expected DENIED, got ALLOWED"
                ));
            }
        }
    }
}

/// What an SSH login as `user` from `src_ip` gets under `rules`: `Some(true)` accept,
/// `Some(false)` check, `None` refused.
fn ssh_outcome(rules: &[SshRule], src_ip: &str, user: &str) -> Option<bool> {
    for r in rules {
        if !r.principals.iter().any(|p| p.any || p.node_ip == src_ip) {
            continue;
        }
        let mapped = match r.ssh_users.get(user).or_else(|| {
            if user == "root" {
                None
            } else {
                r.ssh_users.get("*")
            }
        }) {
            Some(m) => m,
            None => continue,
        };
        if mapped.is_empty() {
            continue;
        }
        let action = r.action.as_ref()?;
        if action.accept {
            return Some(true);
        }
        if !action.hold_and_delegate.is_empty() {
            return Some(false);
        }
        return None;
    }
    None
}

fn run_ssh_test(
    policy: &Policy,
    compiled: &CompiledPolicy,
    res: &Resolver,
    t: &syntax::SshTestSpec,
    failures: &mut Vec<String>,
) {
    let at = format!("sshTests[{}]", t.index);
    let Some(src) = t.src.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        failures.push(format!("{at}: SSH tests entry must have a non-empty src"));
        return;
    };
    if t.dst.is_empty() {
        failures.push(format!("{at}: SSH tests entry must have at least one dst"));
        return;
    }
    if t.accept.is_empty() && t.check.is_empty() && t.deny.is_empty() {
        failures.push(format!(
            "{at}: SSH tests entry must have at least one of \"accept\", \"check\" or \"deny\""
        ));
        return;
    }
    let src_nodes = match test_source(policy, res, src) {
        Ok(n) => n,
        Err(e) => {
            failures.push(format!("{at}: {e}"));
            return;
        }
    };
    for dst_text in &t.dst {
        let dst_nodes: Vec<usize> = match syntax::parse_alias(dst_text, &policy.hosts) {
            Ok(Alias::Prefix(p) | Alias::Host { net: p, .. }) if p.addr().is_ipv4() => res
                .nodes
                .iter()
                .position(|n| n.ips.contains(&p.addr()))
                .into_iter()
                .collect(),
            // Nodes are named by their IPv4 address; IPv6 literals are not accepted.
            Ok(Alias::Prefix(_) | Alias::Host { .. }) => vec![],
            Ok(alias) => res
                .nodes_of(&alias)
                .map(|s| s.ones().collect())
                .unwrap_or_default(),
            Err(_) => vec![],
        };
        if dst_nodes.is_empty() {
            failures.push(format!("{at}: dst {dst_text:?} matches no node"));
            continue;
        }
        for &dn in &dst_nodes {
            let rules = compiled
                .ssh_policy_for(compiled.nodes[dn].node.id, "")
                .map(|p| p.rules)
                .unwrap_or_default();
            for &sn in &src_nodes {
                let Some(src_ip) = compiled.nodes[sn].ips.first().map(|ip| ip.to_string()) else {
                    continue;
                };
                let checks = [
                    (&t.accept, Some(true), "accepted"),
                    (&t.check, Some(false), "checked"),
                    (&t.deny, None, "denied"),
                ];
                for (users, want, word) in checks {
                    for user in users.iter() {
                        let user = user.trim();
                        if user.is_empty() {
                            failures.push(format!("{at}: user \"\" is not valid"));
                            continue;
                        }
                        let got = ssh_outcome(&rules, &src_ip, user);
                        if got != want {
                            failures
                                .push(format!("{at}: {src} -> {user}@{dst_text}: expected {word}"));
                        }
                    }
                }
            }
        }
    }
}
