//! Compilation of a policy against a tailnet: who may reach whom.
//!
//! [`CompiledPolicy`] is built once per policy change (or topology change)
//! and answers, per node, the packet filter, the peers (with the routes each
//! peer carries for it) and the peer relation. The expensive part — deciding
//! for every node which rules it is a source or a destination of — is done
//! once per node; nodes with the same answers form an *identity class* and
//! share everything derived from it (filter template, peer relation). A
//! node's own filter is its class template instantiated with its addresses.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use headway_proto::tailcfg::{
    CapGrant, FilterRule, NetPortRange, NodeId, PeerCapMap, PortRange, UserId,
};
use ipnet::IpNet;

use crate::addr::{AddrSet, well_known};
use crate::bitset::BitSet;
use crate::error::Result;
use crate::syntax::{Alias, AutoGroup, Grant, Policy};
use crate::topology::{PolicyNode, PolicyUser};

/// Capabilities for which Tailscale also sends a reversed "companion" grant.
const COMPANION_CAPS: &[(&str, &str)] = &[
    ("tailscale.com/cap/drive", "tailscale.com/cap/drive-sharer"),
    ("tailscale.com/cap/relay", "tailscale.com/cap/relay-target"),
];

/// What a rule grants once its sources may reach its destinations.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Ip {
        protos: Vec<i32>,
        ports: Vec<PortRange>,
    },
    Cap(PeerCapMap),
}

/// One destination selector of a rule, resolved.
#[derive(Debug, Clone)]
pub(crate) enum Dst {
    /// Identity selectors (users, groups, tags, member/tagged): the matching nodes;
    /// each node is reached at its own addresses.
    Nodes(BitSet),
    /// Address selectors (`*`, IPs, CIDRs, hosts, internet): text form and set of each entry.
    Addrs(Vec<(String, AddrSet)>),
}

/// A rule of the policy resolved against the tailnet (ACL entries and grants alike).
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Every address a source may have (for "is this node/route a source").
    pub src_set: AddrSet,
    /// `SrcIPs` as Tailscale writes them.
    pub src_tokens: Arc<[String]>,
    /// Nodes that are sources: by address, or by a subnet they route.
    pub src_nodes: BitSet,
    pub dsts: Vec<Dst>,
    /// The rule (also) targets `autogroup:self`.
    pub self_dst: bool,
    pub body: Body,
    /// Via tags: only routers with one of these tags carry the rule, for their routes.
    pub via: Vec<String>,
}

/// Facts about one node that the engine needs again and again.
#[derive(Debug, Clone)]
pub(crate) struct NodeFacts {
    pub node: PolicyNode,
    pub ips: Vec<IpAddr>,
    pub owner: Option<UserId>,
    pub subnet_routes: Vec<IpNet>,
    pub exit_routes: Vec<IpNet>,
}

impl NodeFacts {
    fn new(node: &PolicyNode) -> Self {
        NodeFacts {
            ips: node.ips().collect(),
            owner: node.owner(),
            subnet_routes: node.subnet_routes(),
            exit_routes: node.exit_routes(),
            node: node.clone(),
        }
    }

    pub fn is_exit(&self) -> bool {
        !self.exit_routes.is_empty()
    }

    fn in_set(&self, set: &AddrSet) -> bool {
        self.ips.iter().any(|ip| set.contains_ip(*ip))
    }

    /// Whether traffic from/to `set` concerns this node: its addresses, or a subnet it routes.
    fn touches(&self, set: &AddrSet) -> bool {
        self.in_set(set) || self.subnet_routes.iter().any(|r| set.overlaps_prefix(*r))
    }
}

/// Membership of one node in the rules, which decides its identity class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Signature {
    /// Rules the node is a source of.
    src: BitSet,
    /// (rule, dst, entry) triples the node is a destination of, flattened.
    dst: BitSet,
    /// Owner, when the policy has `autogroup:self` rules (then classes are per user).
    self_owner: Option<UserId>,
}

/// An identity class: nodes that match exactly the same rules in the same way.
#[derive(Debug, Clone)]
pub(crate) struct Class {
    sig: Signature,
    /// Rules the class is a destination of (any dst).
    dst_rules: BitSet,
    pub members: Vec<usize>,
}

/// A policy compiled against a tailnet; cheap per-node queries.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub(crate) policy: Option<Arc<Policy>>,
    pub(crate) users: Vec<PolicyUser>,
    pub(crate) nodes: Vec<NodeFacts>,
    pub(crate) by_id: HashMap<NodeId, usize>,
    pub(crate) rules: Vec<Rule>,
    /// Offsets of each rule's (dst, entry) pairs in the flattened signature bit space.
    dst_slots: Vec<Vec<usize>>,
    pub(crate) classes: Vec<Class>,
    pub(crate) node_class: Vec<usize>,
    /// Base class (signature without owner) of each class.
    base_of_class: Vec<usize>,
    /// Symmetric relation between base classes: their nodes see each other.
    relation: Vec<BitSet>,
    /// Nodes of each base class.
    base_members: Vec<Vec<usize>>,
    /// Primary router (node index) of each subnet route.
    pub(crate) primaries: BTreeMap<IpNet, usize>,
    /// Capabilities of each node (nodeAttrs), in node order.
    pub(crate) caps: Vec<headway_proto::tailcfg::NodeCapMap>,
    /// `SrcIPs` of each autogroup:self rule per owner: the owner's devices that are sources.
    self_sources: HashMap<(usize, UserId), Arc<[String]>>,
    pub(crate) index: TailnetIndex,
    /// Per subnet route: the rules reaching into it and its routers.
    route_rules: HashMap<IpNet, RouteRules>,
    /// Rules reaching the internet (used by exit nodes).
    internet_rules: RouteRules,
    /// Rules with an autogroup:self destination.
    self_rules: BitSet,
    /// `autogroup:internet`, computed once.
    internet: AddrSet,
}

/// Which rules concern an address range (a subnet route, or the internet).
#[derive(Debug, Clone, Default)]
struct RouteRules {
    /// Rules without via whose destinations overlap the range.
    dst_direct: BitSet,
    /// Rules with via whose destinations overlap the range.
    dst_via: BitSet,
    /// Rules without via whose sources overlap the range.
    src_direct: BitSet,
    /// Nodes serving the route.
    routers: Vec<usize>,
}

impl RouteRules {
    fn new(rules: &[Rule], range: &AddrSet) -> Self {
        let mut rr = RouteRules {
            dst_direct: BitSet::with_len(rules.len()),
            dst_via: BitSet::with_len(rules.len()),
            src_direct: BitSet::with_len(rules.len()),
            routers: vec![],
        };
        for (ri, rule) in rules.iter().enumerate() {
            let dst = rule
                .dsts
                .iter()
                .any(|d| matches!(d, Dst::Addrs(e) if e.iter().any(|(_, s)| s.overlaps(range))));
            match (dst, rule.via.is_empty()) {
                (true, true) => rr.dst_direct.set(ri),
                (true, false) => rr.dst_via.set(ri),
                _ => {}
            }
            if rule.via.is_empty() && rule.src_set.overlaps(range) {
                rr.src_direct.set(ri);
            }
        }
        rr
    }
}

fn node_ip_tokens(n: &NodeFacts, out: &mut Vec<String>, seen: &mut BTreeSet<String>) {
    for ip in &n.ips {
        let s = ip.to_string();
        if seen.insert(s.clone()) {
            out.push(s);
        }
    }
}

/// Lookup tables over the tailnet, built once per compilation.
#[derive(Debug, Clone, Default)]
pub(crate) struct TailnetIndex {
    node_count: usize,
    /// Untagged nodes per owner.
    by_owner: HashMap<UserId, Vec<usize>>,
    by_tag: HashMap<String, Vec<usize>>,
    owned: Vec<usize>,
    tagged: Vec<usize>,
    /// Policy tokens naming users: e-mail, login name and `name@`.
    user_tokens: HashMap<String, Vec<UserId>>,
    /// Users per e-mail domain (for `user:*@domain`).
    by_domain: HashMap<String, Vec<UserId>>,
}

impl TailnetIndex {
    pub fn new(users: &[PolicyUser], nodes: &[NodeFacts]) -> Self {
        let mut ix = TailnetIndex {
            node_count: nodes.len(),
            ..Default::default()
        };
        for (i, n) in nodes.iter().enumerate() {
            match n.owner {
                Some(uid) => {
                    ix.by_owner.entry(uid).or_default().push(i);
                    ix.owned.push(i);
                }
                None if n.node.is_tagged() => ix.tagged.push(i),
                None => {}
            }
            for t in &n.node.tags {
                ix.by_tag.entry(t.clone()).or_default().push(i);
            }
        }
        for u in users {
            let mut tokens = vec![u.name.clone(), format!("{}@", u.name)];
            if !u.email.is_empty() {
                tokens.push(u.email.clone());
            }
            tokens.dedup();
            for t in tokens {
                ix.user_tokens.entry(t).or_default().push(u.id);
            }
            if let Some(d) = u.email_domain() {
                ix.by_domain.entry(d.to_owned()).or_default().push(u.id);
            }
        }
        ix
    }

    fn users_named(&self, token: &str) -> &[UserId] {
        self.user_tokens.get(token).map_or(&[], Vec::as_slice)
    }

    pub fn owned_by(&self, uid: UserId) -> &[usize] {
        self.by_owner.get(&uid).map_or(&[], Vec::as_slice)
    }

    fn add_owned_by(&self, set: &mut BitSet, uid: UserId) {
        for &i in self.by_owner.get(&uid).map_or(&[][..], Vec::as_slice) {
            set.set(i);
        }
    }
}

/// Resolves selectors against the tailnet.
pub(crate) struct Resolver<'a> {
    pub policy: &'a Policy,
    pub nodes: &'a [NodeFacts],
    pub index: &'a TailnetIndex,
}

impl Resolver<'_> {
    /// Nodes an identity selector stands for; `None` for address selectors.
    pub fn nodes_of(&self, alias: &Alias) -> Option<BitSet> {
        let ix = self.index;
        let mut set = BitSet::with_len(ix.node_count);
        match alias {
            Alias::User(u) => {
                for &uid in ix.users_named(u) {
                    ix.add_owned_by(&mut set, uid);
                }
            }
            Alias::UserDomain(d) => {
                for &uid in ix.by_domain.get(d).map_or(&[][..], Vec::as_slice) {
                    ix.add_owned_by(&mut set, uid);
                }
            }
            Alias::Group(g) => {
                for member in self.policy.groups.get(g).map_or(&[][..], Vec::as_slice) {
                    for &uid in ix.users_named(member) {
                        ix.add_owned_by(&mut set, uid);
                    }
                }
            }
            Alias::Tag(t) => {
                for &i in ix.by_tag.get(t).map_or(&[][..], Vec::as_slice) {
                    set.set(i);
                }
            }
            Alias::Auto(AutoGroup::Member) => ix.owned.iter().for_each(|&i| set.set(i)),
            Alias::Auto(AutoGroup::Tagged) => ix.tagged.iter().for_each(|&i| set.set(i)),
            Alias::Auto(AutoGroup::Role(_) | AutoGroup::SelfDevices) => {}
            _ => return None,
        }
        Some(set)
    }

    /// Approved subnet routes of the whole tailnet (part of what `*` means as a source).
    fn all_subnet_routes(&self) -> Vec<IpNet> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for n in self.nodes {
            for r in &n.subnet_routes {
                if seen.insert(*r) {
                    out.push(*r);
                }
            }
        }
        out
    }

    /// The addresses and `SrcIPs` text of a list of source selectors.
    pub fn sources(&self, aliases: &[Alias]) -> (AddrSet, Vec<String>) {
        let mut set = AddrSet::new();
        let mut tokens = Vec::new();
        let mut seen = BTreeSet::new();
        let mut push = |tokens: &mut Vec<String>, s: String| {
            if seen.insert(s.clone()) {
                tokens.push(s);
            }
        };
        for alias in aliases {
            match alias {
                Alias::Wildcard => {
                    set = AddrSet::everything();
                    for r in well_known::tailnet().ranges() {
                        push(&mut tokens, r.to_string());
                    }
                    for r in self.all_subnet_routes() {
                        push(&mut tokens, r.to_string());
                    }
                }
                Alias::Auto(AutoGroup::DangerAll) => {
                    set = AddrSet::everything();
                    push(&mut tokens, "*".to_owned());
                }
                Alias::Prefix(p) | Alias::Host { net: p, .. } => {
                    set.add_prefix(*p);
                    push(&mut tokens, prefix_text(p));
                }
                Alias::Auto(AutoGroup::Internet) => {
                    let inet = well_known::internet();
                    for r in inet.ranges() {
                        push(&mut tokens, r.range_string());
                    }
                    set.add_set(&inet);
                }
                other => {
                    if let Some(nodes) = self.nodes_of(other) {
                        for i in nodes.ones() {
                            let n = &self.nodes[i];
                            for ip in &n.ips {
                                set.add_ip(*ip);
                                push(&mut tokens, ip.to_string());
                            }
                        }
                    }
                }
            }
        }
        (set, tokens)
    }

    /// The nodes that are sources under `aliases` (whose addresses are `set`):
    /// the nodes named, nodes with an address in the set, and routers of a
    /// subnet overlapping it.
    pub fn source_nodes(&self, aliases: &[Alias], set: &AddrSet) -> BitSet {
        let mut members = BitSet::with_len(self.nodes.len());
        let mut by_address = false;
        for a in aliases {
            match self.nodes_of(a) {
                Some(named) => members.union_with(&named),
                None => by_address = true,
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let routes = !n.subnet_routes.is_empty()
                && n.subnet_routes.iter().any(|r| set.overlaps_prefix(*r));
            if routes || (by_address && n.ips.iter().any(|ip| set.contains_ip(*ip))) {
                members.set(i);
            }
        }
        members
    }

    /// A destination selector, resolved.
    pub fn destination(&self, alias: &Alias) -> Dst {
        match alias {
            Alias::Wildcard => Dst::Addrs(vec![("*".to_owned(), AddrSet::everything())]),
            Alias::Prefix(p) | Alias::Host { net: p, .. } => {
                Dst::Addrs(vec![(prefix_text(p), AddrSet::from_prefix(*p))])
            }
            Alias::Auto(AutoGroup::Internet) => Dst::Addrs(
                well_known::internet()
                    .ranges()
                    .map(|r| {
                        let mut s = AddrSet::new();
                        s.add_range(r);
                        (r.range_string(), s)
                    })
                    .collect(),
            ),
            Alias::Auto(AutoGroup::DangerAll) => {
                Dst::Addrs(vec![("*".to_owned(), AddrSet::everything())])
            }
            other => Dst::Nodes(self.nodes_of(other).unwrap_or_default()),
        }
    }
}

pub(crate) fn prefix_text(p: &IpNet) -> String {
    if p.prefix_len() == p.max_prefix_len() {
        p.addr().to_string()
    } else {
        p.to_string()
    }
}

/// Turns the policy's grants into resolved rules (ACLs are already grants).
/// Shares equal `SrcIPs` lists, so that equal lists are one allocation and
/// rules can be merged by comparing pointers.
#[derive(Debug, Default)]
pub(crate) struct TokenPool(HashSet<Arc<[String]>>);

impl TokenPool {
    pub fn intern(&mut self, tokens: Vec<String>) -> Arc<[String]> {
        if let Some(existing) = self.0.get(tokens.as_slice()) {
            return existing.clone();
        }
        let arc: Arc<[String]> = tokens.into();
        self.0.insert(arc.clone());
        arc
    }
}

/// A source list resolved: its addresses, its `SrcIPs` text and its member nodes.
type ResolvedSources = (AddrSet, Arc<[String]>, BitSet);

fn build_rules(res: &Resolver, grants: &[Grant], pool: &mut TokenPool) -> Vec<Rule> {
    let mut rules = Vec::new();
    // Many rules share their sources (a group, a tag, `*`): resolve each list once.
    let mut sources: HashMap<Vec<Alias>, ResolvedSources> = HashMap::new();
    let mut resolve = |aliases: Vec<Alias>, pool: &mut TokenPool| {
        sources
            .entry(aliases)
            .or_insert_with_key(|a| {
                let (set, tokens) = res.sources(a);
                let members = res.source_nodes(a, &set);
                (set, pool.intern(tokens), members)
            })
            .clone()
    };
    for g in grants {
        if g.src.is_empty() || g.dst.is_empty() {
            continue;
        }
        let src_aliases: Vec<Alias> = g.src.iter().map(|s| s.value.clone()).collect();
        let (src_set, src_tokens, src_nodes) = resolve(src_aliases.clone(), pool);
        let self_dst = g
            .dst
            .iter()
            .any(|d| d.value == Alias::Auto(AutoGroup::SelfDevices));
        let dst_aliases: Vec<&Alias> = g
            .dst
            .iter()
            .map(|d| &d.value)
            .filter(|a| **a != Alias::Auto(AutoGroup::SelfDevices))
            .collect();
        let dsts: Vec<Dst> = dst_aliases.iter().map(|a| res.destination(a)).collect();
        for ip in &g.ip {
            rules.push(Rule {
                src_set: src_set.clone(),
                src_tokens: src_tokens.clone(),
                src_nodes: src_nodes.clone(),
                dsts: dsts.clone(),
                self_dst,
                body: Body::Ip {
                    protos: ip.protos.clone(),
                    ports: ip.ports.clone(),
                },
                via: g.via.clone(),
            });
        }
        if !g.app.is_empty() {
            rules.push(Rule {
                src_set: src_set.clone(),
                src_tokens: src_tokens.clone(),
                src_nodes: src_nodes.clone(),
                dsts: dsts.clone(),
                self_dst,
                body: Body::Cap(g.app.clone()),
                via: g.via.clone(),
            });
            // Companion grants go the other way: from the destinations to the sources.
            for (cap, companion) in COMPANION_CAPS {
                if !g.app.contains_key(*cap) || dst_aliases.is_empty() {
                    continue;
                }
                let rev_src: Vec<Alias> = dst_aliases.iter().map(|a| (*a).clone()).collect();
                let (rs, rt, rn) = resolve(rev_src, pool);
                let rev_dsts: Vec<Dst> = src_aliases.iter().map(|a| res.destination(a)).collect();
                let mut caps = PeerCapMap::new();
                caps.insert((*companion).to_owned(), vec![]);
                rules.push(Rule {
                    src_set: rs,
                    src_tokens: rt,
                    src_nodes: rn,
                    dsts: rev_dsts,
                    self_dst: false,
                    body: Body::Cap(caps),
                    via: vec![],
                });
            }
        }
    }
    rules
}

/// Picks the primary router of every subnet route: among online nodes serving
/// it, the one with the lowest id (the earliest registered), as Tailscale does.
pub fn primary_routes(nodes: &[PolicyNode]) -> BTreeMap<IpNet, NodeId> {
    sticky_primary_routes(nodes, &BTreeMap::new())
}

/// [`primary_routes`], except that a route's `previous` primary keeps the
/// route while it is online and still serves it: a router coming back does
/// not take its routes back from the one that took over (no flapping).
pub fn sticky_primary_routes(
    nodes: &[PolicyNode],
    previous: &BTreeMap<IpNet, NodeId>,
) -> BTreeMap<IpNet, NodeId> {
    let mut out = lowest_id_primaries(nodes);
    for (route, id) in previous {
        let still_serves = nodes
            .iter()
            .any(|n| n.id == *id && n.online && n.subnet_routes().contains(route));
        if still_serves {
            out.insert(*route, *id);
        }
    }
    out
}

fn lowest_id_primaries(nodes: &[PolicyNode]) -> BTreeMap<IpNet, NodeId> {
    let mut out: BTreeMap<IpNet, NodeId> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.online) {
        for r in n.subnet_routes() {
            out.entry(r)
                .and_modify(|id| *id = (*id).min(n.id))
                .or_insert(n.id);
        }
    }
    out
}

impl CompiledPolicy {
    /// Compiles `policy` (or, with `None`, the no-policy default: everyone
    /// reaches everyone) for a tailnet.
    pub fn new(
        policy: Option<Arc<Policy>>,
        users: &[PolicyUser],
        nodes: &[PolicyNode],
    ) -> Result<CompiledPolicy> {
        Self::new_with_primaries(policy, users, nodes, &BTreeMap::new())
    }

    /// [`CompiledPolicy::new`] keeping the primary routers of `previous`
    /// where they still qualify (see [`sticky_primary_routes`]).
    pub fn new_with_primaries(
        policy: Option<Arc<Policy>>,
        users: &[PolicyUser],
        nodes: &[PolicyNode],
        previous: &BTreeMap<IpNet, NodeId>,
    ) -> Result<CompiledPolicy> {
        // Routes the policy auto-approves count as approved.
        let effective: Vec<PolicyNode> = match &policy {
            Some(p) => nodes
                .iter()
                .map(|n| p.with_auto_approved_routes(users, n))
                .collect(),
            None => nodes.to_vec(),
        };
        let nodes = &effective[..];
        let facts: Vec<NodeFacts> = nodes.iter().map(NodeFacts::new).collect();
        let by_id = facts
            .iter()
            .enumerate()
            .map(|(i, n)| (n.node.id, i))
            .collect();
        let primaries = {
            let ids: HashMap<NodeId, usize> = facts
                .iter()
                .enumerate()
                .map(|(i, n)| (n.node.id, i))
                .collect();
            sticky_primary_routes(nodes, previous)
                .into_iter()
                .filter_map(|(r, id)| ids.get(&id).map(|i| (r, *i)))
                .collect()
        };
        let index = TailnetIndex::new(users, &facts);
        let mut pool = TokenPool::default();
        let (rules, caps) = match &policy {
            Some(p) => {
                p.check_tailnet_references(users)?;
                let res = Resolver {
                    policy: p,
                    nodes: &facts,
                    index: &index,
                };
                let rules = if p.has_access_rules {
                    build_rules(&res, &p.grants, &mut pool)
                } else {
                    build_rules(&res, &[allow_all_grant()], &mut pool)
                };
                (rules, crate::caps::node_caps(p, &res, &facts))
            }
            None => {
                let empty = Policy::empty();
                let rules = build_rules(
                    &Resolver {
                        policy: &empty,
                        nodes: &facts,
                        index: &index,
                    },
                    &[allow_all_grant()],
                    &mut pool,
                );
                (rules, vec![Default::default(); facts.len()])
            }
        };
        let mut compiled = CompiledPolicy {
            policy,
            users: users.to_vec(),
            nodes: facts,
            by_id,
            rules,
            dst_slots: vec![],
            classes: vec![],
            node_class: vec![],
            base_of_class: vec![],
            relation: vec![],
            base_members: vec![],
            primaries,
            caps,
            self_sources: HashMap::new(),
            index,
            route_rules: HashMap::new(),
            internet_rules: RouteRules::default(),
            internet: well_known::internet(),
            self_rules: BitSet::default(),
        };
        compiled.classify();
        compiled.index_self_sources(&mut pool);
        compiled.index_routes();
        Ok(compiled)
    }

    fn classify(&mut self) {
        let mut slot = 0;
        self.dst_slots = self
            .rules
            .iter()
            .map(|r| {
                r.dsts
                    .iter()
                    .map(|d| {
                        let start = slot;
                        slot += match d {
                            Dst::Nodes(_) => 1,
                            Dst::Addrs(e) => e.len(),
                        };
                        start
                    })
                    .collect()
            })
            .collect();
        let has_self = self.rules.iter().any(|r| r.self_dst);
        let mut index: HashMap<Signature, usize> = HashMap::new();
        self.classes.clear();
        self.node_class = Vec::with_capacity(self.nodes.len());
        let sigs = self.signatures(slot, has_self);
        for (ni, sig) in sigs.into_iter().enumerate() {
            let ci = *index.entry(sig.clone()).or_insert_with(|| {
                let mut dst_rules = BitSet::with_len(self.rules.len());
                for (ri, slots) in self.dst_slots.iter().enumerate() {
                    for (di, &start) in slots.iter().enumerate() {
                        let width = match &self.rules[ri].dsts[di] {
                            Dst::Nodes(_) => 1,
                            Dst::Addrs(e) => e.len(),
                        };
                        if (start..start + width).any(|b| sig.dst.get(b)) {
                            dst_rules.set(ri);
                        }
                    }
                }
                self.classes.push(Class {
                    sig,
                    dst_rules,
                    members: vec![],
                });
                self.classes.len() - 1
            });
            self.classes[ci].members.push(ni);
            self.node_class.push(ci);
        }
        // Class relation: A sees B if A is a source of a rule B is a destination of, or vice versa,
        // or both belong to the same user and an autogroup:self rule lets one reach the other.
        let self_rules: BitSet = {
            let mut b = BitSet::with_len(self.rules.len());
            for (i, r) in self.rules.iter().enumerate() {
                if r.self_dst {
                    b.set(i);
                }
            }
            b
        };
        self.self_rules = self_rules;
        // The relation is computed between *base* classes (signatures without
        // the owner): autogroup:self splits classes per user, but only
        // same-owner pairs depend on the owner, and those are handled apart.
        let mut bases: HashMap<(&BitSet, &BitSet), usize> = HashMap::new();
        let mut base_of_class = Vec::with_capacity(self.classes.len());
        let mut base_classes: Vec<usize> = Vec::new();
        for (ci, c) in self.classes.iter().enumerate() {
            let next = bases.len();
            let b = *bases.entry((&c.sig.src, &c.sig.dst)).or_insert(next);
            if b == base_classes.len() {
                base_classes.push(ci);
            }
            base_of_class.push(b);
        }
        let n = base_classes.len();
        let mut relation = vec![BitSet::with_len(n); n];
        for a in 0..n {
            for b in a..n {
                let (ca, cb) = (
                    &self.classes[base_classes[a]],
                    &self.classes[base_classes[b]],
                );
                if ca.sig.src.intersects(&cb.dst_rules) || cb.sig.src.intersects(&ca.dst_rules) {
                    relation[a].set(b);
                    relation[b].set(a);
                }
            }
        }
        let mut base_members: Vec<Vec<usize>> = vec![vec![]; n];
        for (ci, c) in self.classes.iter().enumerate() {
            base_members[base_of_class[ci]].extend(c.members.iter().copied());
        }
        self.base_of_class = base_of_class;
        self.relation = relation;
        self.base_members = base_members;
    }

    /// Whether a class's nodes reach their owner's other devices through autogroup:self.
    fn self_related(&self, a: usize, b: usize) -> bool {
        let (ca, cb) = (&self.classes[a], &self.classes[b]);
        ca.sig.self_owner.is_some()
            && ca.sig.self_owner == cb.sig.self_owner
            && (ca.sig.src.intersects(&self.self_rules) || cb.sig.src.intersects(&self.self_rules))
    }

    fn index_routes(&mut self) {
        let mut routes: HashMap<IpNet, RouteRules> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for r in &n.subnet_routes {
                routes
                    .entry(*r)
                    .or_insert_with(|| RouteRules::new(&self.rules, &AddrSet::from_prefix(*r)))
                    .routers
                    .push(i);
            }
        }
        self.route_rules = routes;
        self.internet_rules = RouteRules::new(&self.rules, &self.internet);
    }

    fn index_self_sources(&mut self, pool: &mut TokenPool) {
        // Self rules often share their sources (autogroup:member); resolve each source set once.
        let mut by_sources: HashMap<&AddrSet, HashMap<UserId, Arc<[String]>>> = HashMap::new();
        let mut out = HashMap::new();
        for (ri, rule) in self.rules.iter().enumerate().filter(|(_, r)| r.self_dst) {
            let per_owner = by_sources.entry(&rule.src_set).or_insert_with(|| {
                let mut acc: HashMap<UserId, (Vec<String>, BTreeSet<String>)> = HashMap::new();
                for n in &self.nodes {
                    let Some(owner) = n.owner else { continue };
                    if n.ips.iter().any(|ip| rule.src_set.contains_ip(*ip)) {
                        let (list, seen) = acc.entry(owner).or_default();
                        node_ip_tokens(n, list, seen);
                    }
                }
                acc.into_iter()
                    .map(|(k, (list, _))| (k, pool.intern(list)))
                    .collect()
            });
            for (owner, tokens) in per_owner.iter() {
                out.insert((ri, *owner), tokens.clone());
            }
        }
        self.self_sources = out;
    }

    /// Every node's signature. Computed rule by rule from the set of nodes
    /// each rule matches (identity selectors already are node sets), which
    /// costs the total number of matches rather than nodes × rules.
    fn signatures(&self, dst_bits: usize, has_self: bool) -> Vec<Signature> {
        let mut sigs: Vec<Signature> = self
            .nodes
            .iter()
            .map(|n| Signature {
                src: BitSet::with_len(self.rules.len()),
                dst: BitSet::with_len(dst_bits),
                self_owner: if has_self { n.owner } else { None },
            })
            .collect();
        // Address destinations repeat across rules (`*`, a subnet): match each once.
        let mut entry_members: HashMap<&AddrSet, BitSet> = HashMap::new();
        let routers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].subnet_routes.is_empty() || self.nodes[i].is_exit())
            .collect();
        for (ri, rule) in self.rules.iter().enumerate() {
            for ni in rule.src_nodes.ones() {
                sigs[ni].src.set(ri);
            }
            for (di, d) in rule.dsts.iter().enumerate() {
                let start = self.dst_slots[ri][di];
                if !rule.via.is_empty() {
                    // Only routers carrying a via tag can be reached through a via rule.
                    for &ni in &routers {
                        self.mark_dst_entries(ni, rule, d, |e| sigs[ni].dst.set(start + e));
                    }
                    continue;
                }
                match d {
                    Dst::Nodes(set) => {
                        for ni in set.ones() {
                            sigs[ni].dst.set(start);
                        }
                    }
                    Dst::Addrs(entries) => {
                        for (e, (_, set)) in entries.iter().enumerate() {
                            let members = entry_members.entry(set).or_insert_with(|| {
                                let mut m = BitSet::with_len(self.nodes.len());
                                for (ni, n) in self.nodes.iter().enumerate() {
                                    if n.touches(set)
                                        || (n.is_exit() && set.is_subset_of(&self.internet))
                                    {
                                        m.set(ni);
                                    }
                                }
                                m
                            });
                            for ni in members.ones() {
                                sigs[ni].dst.set(start + e);
                            }
                        }
                    }
                }
            }
        }
        sigs
    }

    /// Calls `mark` with each entry of destination `d` of `rule` that concerns
    /// node `ni`: its own address, a subnet it routes, or (for an exit node)
    /// the internet. A via rule concerns only routers carrying a via tag.
    fn mark_dst_entries(&self, ni: usize, rule: &Rule, d: &Dst, mut mark: impl FnMut(usize)) {
        let n = &self.nodes[ni];
        let exit_covers = |set: &AddrSet| n.is_exit() && set.is_subset_of(&self.internet);
        if !rule.via.is_empty() {
            if !rule.via.iter().any(|t| n.node.has_tag(t)) {
                return;
            }
            if let Dst::Addrs(entries) = d {
                for (i, (_, set)) in entries.iter().enumerate() {
                    if n.subnet_routes.iter().any(|r| set.overlaps_prefix(*r)) || exit_covers(set) {
                        mark(i);
                    }
                }
            }
            return;
        }
        match d {
            Dst::Nodes(set) => {
                if set.get(ni) {
                    mark(0);
                }
            }
            Dst::Addrs(entries) => {
                for (i, (_, set)) in entries.iter().enumerate() {
                    if n.touches(set) || exit_covers(set) {
                        mark(i);
                    }
                }
            }
        }
    }

    /// The same policy compiled for a changed tailnet (a node joined, left,
    /// changed addresses, tags or routes). Pair it with
    /// [`CompiledPolicy::affected_by_node_change`] to rebuild only the views that changed.
    pub fn recompile(&self, users: &[PolicyUser], nodes: &[PolicyNode]) -> Result<CompiledPolicy> {
        CompiledPolicy::new(self.policy.clone(), users, nodes)
    }

    /// The policy this was compiled from (`None`: the no-policy default).
    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.policy.as_ref()
    }

    /// The nodes, with the routes the policy auto-approves added to their approved routes.
    pub fn nodes(&self) -> impl Iterator<Item = &PolicyNode> {
        self.nodes.iter().map(|n| &n.node)
    }

    /// The identity class of a node. Nodes of one class match the same rules
    /// the same way: they share their peer relation and filter structure.
    pub fn class_of(&self, id: NodeId) -> Option<usize> {
        self.index_of(id).map(|i| self.node_class[i])
    }

    /// How many identity classes the tailnet has under this policy.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// The nodes whose view (packet filter, peers and the routes they carry,
    /// SSH policy) may differ between `self` (before) and `next` (after) because
    /// node `id` joined, left or changed. Those are the nodes that see `id` in
    /// either version (a relation between two other nodes never depends on a
    /// third), the SSH servers `id` may log in to, and `id` itself (when present).
    /// Everyone else keeps their view: no message needs to go to them.
    pub fn affected_by_node_change(&self, next: &CompiledPolicy, id: NodeId) -> Vec<NodeId> {
        let mut out: BTreeSet<NodeId> = BTreeSet::new();
        for c in [self, next] {
            if c.index_of(id).is_none() {
                continue;
            }
            out.insert(id);
            out.extend(c.peers_of(id));
            out.extend(c.ssh_destinations_of(id));
        }
        out.into_iter().collect()
    }

    /// Nodes whose SSH policy names `id` as a source.
    fn ssh_destinations_of(&self, id: NodeId) -> Vec<NodeId> {
        let (Some(policy), Some(ni)) = (self.policy.as_ref(), self.index_of(id)) else {
            return vec![];
        };
        let res = Resolver {
            policy,
            nodes: &self.nodes,
            index: &self.index,
        };
        let mut out = BTreeSet::new();
        for spec in &policy.ssh {
            let is_src = spec
                .src
                .iter()
                .any(|s| res.nodes_of(&s.value).is_some_and(|set| set.get(ni)));
            if !is_src {
                continue;
            }
            for d in &spec.dst {
                if d.value == Alias::Auto(AutoGroup::SelfDevices) {
                    let owner = self.nodes[ni].owner;
                    out.extend(
                        self.nodes
                            .iter()
                            .filter(|n| owner.is_some() && n.owner == owner)
                            .map(|n| n.node.id),
                    );
                } else if let Some(set) = res.nodes_of(&d.value) {
                    out.extend(set.ones().map(|i| self.nodes[i].node.id));
                }
            }
            // With localpart users a source also receives rules for itself.
            out.insert(id);
        }
        out.into_iter().collect()
    }

    /// Index of a node, if it is part of the compiled tailnet.
    pub(crate) fn index_of(&self, id: NodeId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// The packet filter of a node: the rules that let others reach it
    /// (Tailscale's `PacketFilter`), in the wire type.
    pub fn filter_for(&self, id: NodeId) -> Vec<FilterRule> {
        self.shared_filter_for(id)
            .iter()
            .map(SharedFilterRule::to_wire)
            .collect()
    }

    /// [`CompiledPolicy::filter_for`] without copying address lists: every
    /// node that gets a rule shares its `SrcIPs` with the other nodes (and
    /// with the compiled policy). Serialises exactly like the wire type.
    pub fn shared_filter_for(&self, id: NodeId) -> Vec<SharedFilterRule> {
        let Some(ni) = self.index_of(id) else {
            return vec![];
        };
        let n = &self.nodes[ni];
        let class = &self.classes[self.node_class[ni]];
        let mut out: Vec<SharedFilterRule> = Vec::new();
        // Port rules with equal SrcIPs and protocols are merged, as Tailscale does.
        // Equal SrcIPs lists are one interned allocation, so the pointer identifies the list.
        let mut merge: HashMap<(usize, Vec<i32>), usize> = HashMap::new();
        let mut push_ip = |out: &mut Vec<SharedFilterRule>,
                           src: Arc<[String]>,
                           protos: &[i32],
                           dsts: Vec<NetPortRange>| {
            if dsts.is_empty() || src.is_empty() {
                return;
            }
            // Like Tailscale, repeated destinations are kept (not deduplicated).
            let key = (Arc::as_ptr(&src).cast::<String>() as usize, protos.to_vec());
            if let Some(&i) = merge.get(&key) {
                out[i].dst_ports.extend(dsts);
            } else {
                merge.insert(key, out.len());
                out.push(SharedFilterRule {
                    src_ips: src,
                    dst_ports: dsts,
                    ip_proto: protos.to_vec(),
                    cap_grant: vec![],
                });
            }
        };
        // Only the rules the node is a destination of, and autogroup:self rules for its owner.
        let mut relevant = class.dst_rules.clone();
        if n.owner.is_some() {
            relevant.union_with(&self.self_rules);
        }
        for ri in relevant.ones() {
            let rule = &self.rules[ri];
            // Destinations of this rule that concern the node.
            let mut texts: Vec<String> = Vec::new();
            let mut cap_dsts: Vec<IpNet> = Vec::new();
            if class.dst_rules.get(ri) {
                for (di, d) in rule.dsts.iter().enumerate() {
                    let start = self.dst_slots[ri][di];
                    match d {
                        Dst::Nodes(_) => {
                            if class.sig.dst.get(start) {
                                texts.extend(n.ips.iter().map(|ip| ip.to_string()));
                                cap_dsts.extend(n.ips.iter().map(|ip| IpNet::from(*ip)));
                            }
                        }
                        Dst::Addrs(entries) => {
                            for (ei, (text, set)) in entries.iter().enumerate() {
                                if !class.sig.dst.get(start + ei) {
                                    continue;
                                }
                                texts.push(text.clone());
                                // Capabilities name the node's own addresses, or the routed prefix.
                                for ip in &n.ips {
                                    if set.contains_ip(*ip) {
                                        cap_dsts.push(IpNet::from(*ip));
                                    }
                                }
                                if text != "*"
                                    && let Some(p) = entries_prefix(text)
                                    && n.subnet_routes.iter().any(|r| set.overlaps_prefix(*r))
                                {
                                    cap_dsts.push(p);
                                }
                            }
                        }
                    }
                }
            }
            match &rule.body {
                Body::Ip { protos, ports } => {
                    let dsts: Vec<NetPortRange> = texts
                        .iter()
                        .flat_map(|t| {
                            ports.iter().map(move |p| NetPortRange {
                                ip: t.clone(),
                                ports: *p,
                            })
                        })
                        .collect();
                    push_ip(&mut out, rule.src_tokens.clone(), protos, dsts);
                }
                Body::Cap(caps) => {
                    cap_dsts.sort_by_key(|p| (p.addr(), p.prefix_len()));
                    cap_dsts.dedup();
                    // Capabilities granted through a router (via) are not put in its filter.
                    if !cap_dsts.is_empty() && rule.via.is_empty() {
                        out.push(SharedFilterRule {
                            src_ips: rule.src_tokens.clone(),
                            dst_ports: vec![],
                            ip_proto: vec![],
                            cap_grant: vec![CapGrant {
                                dsts: cap_dsts,
                                cap_map: caps.clone(),
                            }],
                        });
                    }
                }
            }
            // autogroup:self: the owner's devices that are sources may reach this node.
            if rule.self_dst
                && let Some(owner) = n.owner
            {
                let src = self
                    .self_sources
                    .get(&(ri, owner))
                    .cloned()
                    .unwrap_or_else(|| Arc::from(vec![]));
                match &rule.body {
                    Body::Ip { protos, ports } => {
                        let dsts: Vec<NetPortRange> = n
                            .ips
                            .iter()
                            .flat_map(|ip| {
                                ports.iter().map(move |p| NetPortRange {
                                    ip: ip.to_string(),
                                    ports: *p,
                                })
                            })
                            .collect();
                        push_ip(&mut out, src, protos, dsts);
                    }
                    Body::Cap(caps) => {
                        if !src.is_empty() {
                            out.push(SharedFilterRule {
                                src_ips: src.clone(),
                                dst_ports: vec![],
                                ip_proto: vec![],
                                cap_grant: vec![CapGrant {
                                    dsts: n.ips.iter().map(|ip| IpNet::from(*ip)).collect(),
                                    cap_map: caps.clone(),
                                }],
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether two nodes see each other (symmetric).
    pub fn can_see(&self, a: NodeId, b: NodeId) -> bool {
        match (self.index_of(a), self.index_of(b)) {
            (Some(x), Some(y)) if x != y => {
                let (cx, cy) = (self.node_class[x], self.node_class[y]);
                self.relation[self.base_of_class[cx]].get(self.base_of_class[cy])
                    || self.self_related(cx, cy)
            }
            _ => false,
        }
    }

    /// The primary router of each subnet route (tailnet-wide; a viewer's
    /// `via` grants may steer it elsewhere, see [`CompiledPolicy::peer_view`]).
    pub fn primaries(&self) -> BTreeMap<IpNet, NodeId> {
        self.primaries
            .iter()
            .map(|(r, i)| (*r, self.nodes[*i].node.id))
            .collect()
    }

    /// The nodes a node is given as peers: those it may reach or that may reach it.
    pub fn peers_of(&self, id: NodeId) -> Vec<NodeId> {
        let Some(ni) = self.index_of(id) else {
            return vec![];
        };
        let class = self.node_class[ni];
        let rel = &self.relation[self.base_of_class[class]];
        let mut out: Vec<NodeId> = rel
            .ones()
            .flat_map(|b| self.base_members[b].iter().copied())
            .filter(|&m| m != ni)
            .map(|m| self.nodes[m].node.id)
            .collect();
        // The owner's other devices, through autogroup:self.
        if let Some(owner) = self.nodes[ni].owner {
            for &m in self.index.owned_by(owner) {
                if m != ni && self.self_related(class, self.node_class[m]) {
                    out.push(self.nodes[m].node.id);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether `viewer` may send to or receive from addresses in `route` (a
    /// subnet route of `router`): it is a source of a rule reaching into the
    /// route, or a destination of a rule whose sources include the route.
    fn route_visible(&self, viewer: usize, router: usize, route: &IpNet) -> bool {
        // Routers of the same route (high availability) know the primary's route.
        if self.nodes[viewer].subnet_routes.contains(route) {
            return true;
        }
        let Some(rr) = self.route_rules.get(route) else {
            return false;
        };
        let class = &self.classes[self.node_class[viewer]];
        class.sig.src.intersects(&rr.dst_direct)
            || class.dst_rules.intersects(&rr.src_direct)
            || self.via_applies(&class.sig.src, &rr.dst_via, router)
    }

    /// Whether one of `rules` (via rules) names a via tag `router` carries.
    fn via_applies(&self, viewer_src: &BitSet, via_rules: &BitSet, router: usize) -> bool {
        if via_rules.is_empty() {
            return false;
        }
        let mut candidates = viewer_src.clone();
        candidates.intersect_with(via_rules);
        candidates.ones().any(|ri| {
            self.rules[ri]
                .via
                .iter()
                .any(|t| self.nodes[router].node.has_tag(t))
        })
    }

    /// The router `viewer` uses for `route`. Grants with `via` steer a viewer
    /// to the routers carrying the via tags (the earliest registered online one
    /// among them); direct access to the route, or none, uses its global primary.
    fn primary_for(&self, viewer: usize, route: &IpNet) -> Option<usize> {
        let global = self.primaries.get(route).copied();
        let Some(rr) = self.route_rules.get(route) else {
            return global;
        };
        let class = &self.classes[self.node_class[viewer]];
        if rr.dst_via.is_empty() || class.sig.src.intersects(&rr.dst_direct) {
            return global;
        }
        let mut steering = class.sig.src.clone();
        steering.intersect_with(&rr.dst_via);
        let via_tags: BTreeSet<&str> = steering
            .ones()
            .flat_map(|ri| self.rules[ri].via.iter().map(String::as_str))
            .collect();
        if via_tags.is_empty() {
            return global;
        }
        self.routers_of(route)
            .iter()
            .copied()
            .filter(|&i| {
                let n = &self.nodes[i];
                n.node.online && n.node.tags.iter().any(|t| via_tags.contains(t.as_str()))
            })
            .min_by_key(|&i| self.nodes[i].node.id)
    }

    fn routers_of(&self, route: &IpNet) -> &[usize] {
        self.route_rules
            .get(route)
            .map_or(&[], |rr| rr.routers.as_slice())
    }

    /// Whether `viewer` may send traffic to the internet through exit node `router`.
    fn exit_visible(&self, viewer: usize, router: usize) -> bool {
        let class = &self.classes[self.node_class[viewer]];
        class.sig.src.intersects(&self.internet_rules.dst_direct)
            || self.via_applies(&class.sig.src, &self.internet_rules.dst_via, router)
    }

    /// A peer as `viewer` sees it: its AllowedIPs and the primary routes among them.
    pub fn peer_view(&self, viewer: NodeId, peer: NodeId) -> Option<PeerView> {
        let v = self.index_of(viewer)?;
        let p = self.index_of(peer)?;
        let pf = &self.nodes[p];
        // An IPv6-only node (disable-ipv4) has no IPv4 address, and is given none of its peers'.
        let no_v4 = self.ipv4_disabled(v) || self.ipv4_disabled(p);
        let mut allowed: Vec<IpNet> = pf
            .ips
            .iter()
            .filter(|ip| !(no_v4 && ip.is_ipv4()))
            .map(|ip| IpNet::from(*ip))
            .collect();
        let mut primary = Vec::new();
        for r in &pf.subnet_routes {
            if self.primary_for(v, r) == Some(p) && self.route_visible(v, p, r) {
                allowed.push(*r);
                primary.push(*r);
            }
        }
        if pf.is_exit() && self.exit_visible(v, p) {
            allowed.extend(pf.exit_routes.iter().copied());
        }
        Some(PeerView {
            id: peer,
            allowed_ips: allowed,
            primary_routes: primary,
        })
    }
}

/// The prefix an address entry stands for, if it is one (not a range or `*`).
fn entries_prefix(text: &str) -> Option<IpNet> {
    crate::syntax::parse_prefix(text)
}

/// What a policy without `acls` and `grants` means (and no policy at all):
/// everyone may reach everything, i.e. `{"src": ["*"], "dst": ["*"], "ip": ["*"]}`.
fn allow_all_grant() -> Grant {
    use crate::syntax::{ProtoPorts, Spanned};
    Grant {
        src: vec![Spanned {
            value: Alias::Wildcard,
            offset: 0,
        }],
        dst: vec![Spanned {
            value: Alias::Wildcard,
            offset: 0,
        }],
        ip: vec![ProtoPorts {
            protos: vec![],
            ports: vec![PortRange::ANY],
        }],
        app: Default::default(),
        via: vec![],
        origin: "default".to_owned(),
    }
}

/// A packet filter rule whose `SrcIPs` list is shared (reference-counted)
/// between all nodes that receive it. Serialises exactly like
/// [`FilterRule`]; [`SharedFilterRule::to_wire`] makes the owned wire type.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedFilterRule {
    pub src_ips: Arc<[String]>,
    pub dst_ports: Vec<NetPortRange>,
    pub ip_proto: Vec<i32>,
    pub cap_grant: Vec<CapGrant>,
}

impl SharedFilterRule {
    pub fn to_wire(&self) -> FilterRule {
        FilterRule {
            src_ips: self.src_ips.to_vec(),
            dst_ports: self.dst_ports.clone(),
            ip_proto: self.ip_proto.clone(),
            cap_grant: self.cap_grant.clone(),
        }
    }
}

impl serde::Serialize for SharedFilterRule {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = 1 + [
            !self.dst_ports.is_empty(),
            !self.ip_proto.is_empty(),
            !self.cap_grant.is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        let mut st = serializer.serialize_struct("FilterRule", fields)?;
        st.serialize_field("SrcIPs", &self.src_ips[..])?;
        if !self.dst_ports.is_empty() {
            st.serialize_field("DstPorts", &self.dst_ports)?;
        }
        if !self.ip_proto.is_empty() {
            st.serialize_field("IPProto", &self.ip_proto)?;
        }
        if !self.cap_grant.is_empty() {
            st.serialize_field("CapGrant", &self.cap_grant)?;
        }
        st.end()
    }
}

/// A peer of a node, as that node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub id: NodeId,
    /// The peer's addresses plus the routes it carries for the viewer.
    pub allowed_ips: Vec<IpNet>,
    /// Subnet routes for which the peer is the primary router (exit routes are never listed).
    pub primary_routes: Vec<IpNet>,
}
