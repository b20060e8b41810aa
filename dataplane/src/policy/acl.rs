//! Compiled access lists: first match wins, implicit deny at the end, per-rule hit
//! counters (asa-aaa.md sections 1 and 4).
//!
//! # Direction
//! A session's vpn-filter ACL is written from the client's point of view: the
//! rule's *source* side (address, port, SGT) is the VPN client, its *destination*
//! side is the network. It applies to both directions, as on ASA:
//! - [`Direction::FromClient`] (uplink): the packet's source is the client. The
//!   rule's source is matched against the packet's source, the rule's destination
//!   against the packet's destination.
//! - [`Direction::ToClient`] (downlink): the packet's destination is the client.
//!   The rule is matched with source and destination swapped: rule source against
//!   the packet's *destination* address and port, rule destination against the
//!   packet's *source* address and port.
//!
//! In both directions the client side's SGT is the session's SGT (from RADIUS or
//! CoA, passed in) and the network side's SGT is looked up through the
//! [`SgtResolver`] (session addresses, then the [`SgtMap`](super::SgtMap)) of
//! the packet's destination for `FromClient`, its source for `ToClient`. No
//! binding means no SGT: a rule that names an SGT on that side does not match.
//! So `permit tcp security-group tag 10 any security-group tag 20 any eq https`
//! permits a tag-10 client's connection to a tag-20 server's port 443 *and* the
//! server's replies (source port 443) back to the client.
//!
//! # Speed
//! A linear scan of 1000 rules costs microseconds per packet. Above
//! [`LINEAR_MAX`] rules the ACL is indexed by (source SGT, destination SGT,
//! protocol, destination port `eq`): each rule goes into one bucket keyed by the
//! fields it names exactly, the others being wildcards. A packet looks up one
//! bucket per combination ("shape") that some rule uses, at most 16 and
//! typically 2-4, each a list of rule numbers in ACL order, scans each for its
//! first full match and takes the smallest-numbered one, so first-match order is
//! kept exactly. A bucket scan stops as soon as its rule numbers pass the best
//! match found so far; the rules that name none of the four fields (`deny ip any
//! any`, pure address rules) form one list every packet scans.
//!
//! # Hit counters
//! One relaxed `AtomicU64` per rule plus one for the implicit deny. A batch tallies
//! its hits in a small local table and adds each distinct rule's count once at
//! the end of the batch, so a counter's cache line moves between cores at most
//! once per batch, not once per packet.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use super::SgtResolver;
use super::meta::{F_ICMP, F_PORTS, F_V6, PacketMeta};
use super::sgt_map::{mask_v4, mask_v6};

/// Packets per batch; larger slices are processed in chunks of this size.
pub const BATCH: usize = 64;

/// Up to this many rules an ACL is scanned linearly (cheaper than the index).
pub const LINEAR_MAX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Permit,
    Deny,
}

/// An address match: `any` (both families), `any4`, `any6` or a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetMatch {
    Any,
    Any4,
    Any6,
    V4(Ipv4Addr, u8),
    V6(Ipv6Addr, u8),
}

impl NetMatch {
    pub fn prefix(addr: IpAddr, len: u8) -> Self {
        match addr {
            IpAddr::V4(a) => NetMatch::V4(a, len),
            IpAddr::V6(a) => NetMatch::V6(a, len),
        }
    }

    pub fn host(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => NetMatch::V4(a, 32),
            IpAddr::V6(a) => NetMatch::V6(a, 128),
        }
    }
}

/// A port match (`eq`, `neq`, `lt`, `gt`, `range` inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortMatch {
    Eq(u16),
    Neq(u16),
    Lt(u16),
    Gt(u16),
    Range(u16, u16),
}

impl PortMatch {
    pub fn matches(self, port: u16) -> bool {
        match self {
            PortMatch::Eq(p) => port == p,
            PortMatch::Neq(p) => port != p,
            PortMatch::Lt(p) => port < p,
            PortMatch::Gt(p) => port > p,
            PortMatch::Range(a, b) => a <= port && port <= b,
        }
    }
}

/// One ACL entry as the dataplane sees it (security-group names already
/// resolved to tags; remarks left out by the compiler).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub action: Action,
    /// IP protocol number; `None` = `ip` (any protocol).
    pub protocol: Option<u8>,
    pub src_sgt: Option<u16>,
    pub src: NetMatch,
    pub src_port: Option<PortMatch>,
    pub dst_sgt: Option<u16>,
    pub dst: NetMatch,
    pub dst_port: Option<PortMatch>,
    pub icmp_type: Option<u8>,
    pub log: bool,
    /// The `log` option's 106100 severity (0-7) and hit-count interval (s).
    pub log_level: u8,
    pub log_interval: u16,
    /// Kept (so rule numbers and counters line up with the ACL) but never matches.
    pub inactive: bool,
}

impl Rule {
    /// `ACTION ip any any`; refine with the builder methods.
    pub fn new(action: Action) -> Self {
        Rule {
            action,
            protocol: None,
            src_sgt: None,
            src: NetMatch::Any,
            src_port: None,
            dst_sgt: None,
            dst: NetMatch::Any,
            dst_port: None,
            icmp_type: None,
            log: false,
            log_level: 6,
            log_interval: 300,
            inactive: false,
        }
    }

    pub fn permit() -> Self {
        Self::new(Action::Permit)
    }

    pub fn deny() -> Self {
        Self::new(Action::Deny)
    }

    pub fn protocol(mut self, p: u8) -> Self {
        self.protocol = Some(p);
        self
    }

    pub fn src(mut self, n: NetMatch) -> Self {
        self.src = n;
        self
    }

    pub fn dst(mut self, n: NetMatch) -> Self {
        self.dst = n;
        self
    }

    pub fn src_sgt(mut self, t: u16) -> Self {
        self.src_sgt = Some(t);
        self
    }

    pub fn dst_sgt(mut self, t: u16) -> Self {
        self.dst_sgt = Some(t);
        self
    }

    pub fn src_port(mut self, p: PortMatch) -> Self {
        self.src_port = Some(p);
        self
    }

    pub fn dst_port(mut self, p: PortMatch) -> Self {
        self.dst_port = Some(p);
        self
    }

    pub fn icmp_type(mut self, t: u8) -> Self {
        self.icmp_type = Some(t);
        self
    }

    pub fn log(mut self) -> Self {
        self.log = true;
        self
    }

    /// `log LEVEL interval SECS`.
    pub fn log_at(mut self, level: u8, interval: u16) -> Self {
        self.log = true;
        self.log_level = level;
        self.log_interval = interval;
        self
    }

    pub fn inactive(mut self) -> Self {
        self.inactive = true;
        self
    }
}

/// Which way a packet travels relative to the session's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Uplink: source = the VPN client. Rules match as written.
    FromClient,
    /// Downlink: destination = the VPN client. Rules match with source and
    /// destination (addresses, ports and SGTs) swapped.
    ToClient,
}

/// The decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The matching rule asked for logging.
    pub log: bool,
    /// Index of the matching rule, or [`Verdict::IMPLICIT_DENY`].
    pub rule: u32,
}

impl Verdict {
    pub const IMPLICIT_DENY: u32 = u32::MAX;

    pub const fn implicit_deny() -> Self {
        Verdict {
            action: Action::Deny,
            log: false,
            rule: Self::IMPLICIT_DENY,
        }
    }

    pub fn is_permit(&self) -> bool {
        self.action == Action::Permit
    }
}

impl Default for Verdict {
    fn default() -> Self {
        Self::implicit_deny()
    }
}

/// A rule that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index}: {problem}")]
pub struct AclError {
    /// 0-based position in the rule list.
    pub index: usize,
    pub problem: String,
}

/// How to search the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Indexing {
    /// Linear up to [`LINEAR_MAX`] rules, indexed above.
    #[default]
    Auto,
    Linear,
    Indexed,
}

// Rule flags.
const M_PROTO: u16 = 1 << 0;
const M_SPORT: u16 = 1 << 1;
const M_SPORT_NEG: u16 = 1 << 2;
const M_DPORT: u16 = 1 << 3;
const M_DPORT_NEG: u16 = 1 << 4;
const M_ICMP: u16 = 1 << 5;
const M_SSGT: u16 = 1 << 6;
const M_DSGT: u16 = 1 << 7;
const M_PERMIT: u16 = 1 << 8;
const M_LOG: u16 = 1 << 9;
// Address family bits (rule: families it can match; packet: its family).
const FAM4: u8 = 1;
const FAM6: u8 = 2;

/// A rule flattened for matching: masks precomputed, IPv4 in the low 32 bits.
#[derive(Debug, Clone, Copy)]
struct Matcher {
    src_net: u128,
    src_mask: u128,
    dst_net: u128,
    dst_mask: u128,
    sport: (u16, u16),
    dport: (u16, u16),
    src_sgt: u16,
    dst_sgt: u16,
    flags: u16,
    proto: u8,
    icmp_type: u8,
    /// 0 for inactive rules (and impossible ones such as `any4` to `any6`).
    fam: u8,
}

/// A packet normalised to the client's point of view.
#[derive(Debug, Clone, Copy)]
struct View {
    client: u128,
    remote: u128,
    cport: u16,
    rport: u16,
    /// Session SGT / remote SGT; 0x1_0000 = none (never equals a rule's tag).
    csgt: u32,
    rsgt: u32,
    proto: u8,
    icmp_type: u8,
    fam: u8,
    /// `F_PORTS` / `F_ICMP` from the packet.
    l4: u8,
}

const NO_SGT: u32 = 0x1_0000;

impl View {
    #[inline(always)]
    fn new(p: &PacketMeta, dir: Direction, session_sgt: u32, remote_sgt: u32) -> View {
        let (client, remote, cport, rport) = match dir {
            Direction::FromClient => (p.src, p.dst, p.src_port, p.dst_port),
            Direction::ToClient => (p.dst, p.src, p.dst_port, p.src_port),
        };
        View {
            client,
            remote,
            cport,
            rport,
            csgt: session_sgt,
            rsgt: remote_sgt,
            proto: p.proto,
            icmp_type: p.icmp_type,
            fam: if p.flags & F_V6 != 0 { FAM6 } else { FAM4 },
            l4: p.flags & (F_PORTS | F_ICMP),
        }
    }
}

#[inline(always)]
fn port_ok(range: (u16, u16), neg: bool, port: u16) -> bool {
    (range.0 <= port && port <= range.1) != neg
}

impl Matcher {
    fn compile(index: usize, r: &Rule) -> Result<Matcher, AclError> {
        let err = |problem: String| AclError { index, problem };
        let net = |n: NetMatch| -> Result<(u128, u128, u8), AclError> {
            Ok(match n {
                NetMatch::Any => (0, 0, FAM4 | FAM6),
                NetMatch::Any4 => (0, 0, FAM4),
                NetMatch::Any6 => (0, 0, FAM6),
                NetMatch::V4(a, len) if len <= 32 => {
                    let m = mask_v4(len);
                    (u128::from(u32::from(a) & m), u128::from(m), FAM4)
                }
                NetMatch::V6(a, len) if len <= 128 => {
                    let m = mask_v6(len);
                    (u128::from(a) & m, m, FAM6)
                }
                NetMatch::V4(a, len) => return Err(err(format!("prefix {a}/{len} is too long"))),
                NetMatch::V6(a, len) => return Err(err(format!("prefix {a}/{len} is too long"))),
            })
        };
        let ports = |p: PortMatch| -> Result<((u16, u16), bool), AclError> {
            // An empty range (lo > hi) never matches: `lt 0`, `gt 65535`.
            Ok(match p {
                PortMatch::Eq(x) => ((x, x), false),
                PortMatch::Neq(x) => ((x, x), true),
                PortMatch::Lt(0) => ((1, 0), false),
                PortMatch::Lt(x) => ((0, x - 1), false),
                PortMatch::Gt(u16::MAX) => ((1, 0), false),
                PortMatch::Gt(x) => ((x + 1, u16::MAX), false),
                PortMatch::Range(a, b) if a <= b => ((a, b), false),
                PortMatch::Range(a, b) => {
                    return Err(err(format!("port range {a} {b} is reversed")));
                }
            })
        };
        let (src_net, src_mask, sfam) = net(r.src)?;
        let (dst_net, dst_mask, dfam) = net(r.dst)?;
        let mut flags = 0;
        let mut set = |cond: bool, f: u16| {
            if cond {
                flags |= f
            }
        };
        set(r.protocol.is_some(), M_PROTO);
        set(r.src_sgt.is_some(), M_SSGT);
        set(r.dst_sgt.is_some(), M_DSGT);
        set(r.icmp_type.is_some(), M_ICMP);
        set(r.action == Action::Permit, M_PERMIT);
        set(r.log, M_LOG);
        let (mut sport, mut dport) = ((0, u16::MAX), (0, u16::MAX));
        if let Some(p) = r.src_port {
            let (range, neg) = ports(p)?;
            sport = range;
            set(true, M_SPORT);
            set(neg, M_SPORT_NEG);
        }
        if let Some(p) = r.dst_port {
            let (range, neg) = ports(p)?;
            dport = range;
            set(true, M_DPORT);
            set(neg, M_DPORT_NEG);
        }
        Ok(Matcher {
            src_net,
            src_mask,
            dst_net,
            dst_mask,
            sport,
            dport,
            src_sgt: r.src_sgt.unwrap_or(0),
            dst_sgt: r.dst_sgt.unwrap_or(0),
            flags,
            proto: r.protocol.unwrap_or(0),
            icmp_type: r.icmp_type.unwrap_or(0),
            fam: if r.inactive { 0 } else { sfam & dfam },
        })
    }

    #[inline(always)]
    fn matches(&self, v: &View) -> bool {
        let f = self.flags;
        if self.fam & v.fam == 0 {
            return false;
        }
        if f & M_PROTO != 0 && self.proto != v.proto {
            return false;
        }
        if v.client & self.src_mask != self.src_net || v.remote & self.dst_mask != self.dst_net {
            return false;
        }
        if f & M_SSGT != 0 && u32::from(self.src_sgt) != v.csgt {
            return false;
        }
        if f & M_DSGT != 0 && u32::from(self.dst_sgt) != v.rsgt {
            return false;
        }
        if f & (M_SPORT | M_DPORT) != 0 {
            // No ports (other protocol, later fragment): port rules never match.
            if v.l4 & F_PORTS == 0 {
                return false;
            }
            if f & M_SPORT != 0 && !port_ok(self.sport, f & M_SPORT_NEG != 0, v.cport) {
                return false;
            }
            if f & M_DPORT != 0 && !port_ok(self.dport, f & M_DPORT_NEG != 0, v.rport) {
                return false;
            }
        }
        if f & M_ICMP != 0 && (v.l4 & F_ICMP == 0 || self.icmp_type != v.icmp_type) {
            return false;
        }
        true
    }
}

// Index shape bits: which of the indexed fields a rule names exactly.
const S_PROTO: u8 = 1;
const S_DSGT: u8 = 2;
const S_SSGT: u8 = 4;
const S_DPORT: u8 = 8;
/// Shapes (as bit positions in a `u16` set) that do not need a source SGT, a
/// destination SGT, or a destination port.
const SHAPES_WITHOUT_SSGT: u16 = 0x0f0f;
const SHAPES_WITHOUT_DSGT: u16 = 0x3333;
const SHAPES_WITHOUT_DPORT: u16 = 0x00ff;

#[inline(always)]
fn bucket_key(shape: u8, ssgt: u32, dsgt: u32, proto: u8, dport: u16) -> u64 {
    u64::from(shape) << 56
        | u64::from(ssgt) << 40
        | u64::from(dsgt) << 24
        | u64::from(proto) << 16
        | u64::from(dport)
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// `u64::MAX` = empty slot.
    key: u64,
    start: u32,
    len: u32,
}

/// Rules bucketed by (source SGT, destination SGT, protocol, destination port
/// `eq`), each field exact or wildcard.
#[derive(Debug)]
struct SgIndex {
    /// Bit `s` set when some rule has shape `s` (1..=15; shape 0 is `catch_all`).
    shapes: u16,
    /// Rules that name none of the indexed fields, in order.
    catch_all: Box<[u32]>,
    /// Open-addressing table of buckets (power of two, at most half full).
    table: Box<[Bucket]>,
    shift: u32,
    /// Rule numbers of all buckets, each bucket's slice ascending.
    lists: Box<[u32]>,
}

impl SgIndex {
    fn build(rules: &[Rule], matchers: &[Matcher]) -> SgIndex {
        let mut buckets: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut catch_all = Vec::new();
        let mut shapes = 0u16;
        for (i, (r, m)) in rules.iter().zip(matchers).enumerate() {
            if m.fam == 0 {
                continue; // inactive or impossible: never matches
            }
            let dport = match r.dst_port {
                Some(PortMatch::Eq(p)) => Some(p),
                _ => None,
            };
            let bit = |on: bool, b: u8| if on { b } else { 0 };
            let shape = bit(r.protocol.is_some(), S_PROTO)
                | bit(r.dst_sgt.is_some(), S_DSGT)
                | bit(r.src_sgt.is_some(), S_SSGT)
                | bit(dport.is_some(), S_DPORT);
            if shape == 0 {
                catch_all.push(i as u32);
                continue;
            }
            shapes |= 1 << shape;
            let key = bucket_key(
                shape,
                u32::from(r.src_sgt.unwrap_or(0)),
                u32::from(r.dst_sgt.unwrap_or(0)),
                r.protocol.unwrap_or(0),
                dport.unwrap_or(0),
            );
            buckets.entry(key).or_default().push(i as u32);
        }
        let cap = (buckets.len().max(2) * 2).next_power_of_two();
        let shift = 64 - cap.trailing_zeros();
        let mut table = vec![
            Bucket {
                key: u64::MAX,
                start: 0,
                len: 0
            };
            cap
        ];
        let mut lists = Vec::with_capacity(rules.len());
        let mut keys: Vec<_> = buckets.into_iter().collect();
        keys.sort_unstable_by_key(|(k, _)| *k);
        for (key, list) in keys {
            let mut s = Self::slot(key, shift);
            while table[s].key != u64::MAX {
                s = (s + 1) & (cap - 1);
            }
            table[s] = Bucket {
                key,
                start: lists.len() as u32,
                len: list.len() as u32,
            };
            lists.extend_from_slice(&list);
        }
        SgIndex {
            shapes,
            catch_all: catch_all.into_boxed_slice(),
            table: table.into_boxed_slice(),
            shift,
            lists: lists.into_boxed_slice(),
        }
    }

    #[inline(always)]
    fn slot(key: u64, shift: u32) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
    }

    #[inline(always)]
    fn bucket(&self, key: u64) -> &[u32] {
        let m = self.table.len() - 1;
        let mut s = Self::slot(key, self.shift);
        loop {
            let b = &self.table[s];
            if b.key == key {
                return &self.lists[b.start as usize..(b.start + b.len) as usize];
            }
            if b.key == u64::MAX {
                return &[];
            }
            s = (s + 1) & m;
        }
    }

    /// Smallest-numbered rule in `list` below `best` that matches.
    #[inline(always)]
    fn scan(list: &[u32], best: u32, matchers: &[Matcher], v: &View) -> u32 {
        for &i in list {
            if i >= best {
                break;
            }
            if matchers[i as usize].matches(v) {
                return i;
            }
        }
        best
    }

    #[inline]
    fn first_match(&self, matchers: &[Matcher], v: &View) -> u32 {
        let mut best = u32::MAX;
        let mut shapes = self.shapes;
        // A side without an SGT, or a packet without ports, can only match
        // rules that do not name one.
        if v.csgt == NO_SGT {
            shapes &= SHAPES_WITHOUT_SSGT;
        }
        if v.rsgt == NO_SGT {
            shapes &= SHAPES_WITHOUT_DSGT;
        }
        if v.l4 & F_PORTS == 0 {
            shapes &= SHAPES_WITHOUT_DPORT;
        }
        while shapes != 0 {
            let shape = shapes.trailing_zeros() as u8;
            shapes &= shapes - 1;
            let key = bucket_key(
                shape,
                if shape & S_SSGT != 0 { v.csgt } else { 0 },
                if shape & S_DSGT != 0 { v.rsgt } else { 0 },
                if shape & S_PROTO != 0 { v.proto } else { 0 },
                if shape & S_DPORT != 0 { v.rport } else { 0 },
            );
            best = Self::scan(self.bucket(key), best, matchers, v);
        }
        Self::scan(&self.catch_all, best, matchers, v)
    }
}

/// An ACL ready for the packet path. Immutable except for its hit counters.
#[derive(Debug)]
pub struct CompiledAcl {
    rules: Box<[Rule]>,
    matchers: Box<[Matcher]>,
    index: Option<SgIndex>,
    /// One per rule, then the implicit deny.
    hits: Box<[AtomicU64]>,
}

impl CompiledAcl {
    pub fn new(rules: Vec<Rule>) -> Result<CompiledAcl, AclError> {
        Self::with_indexing(rules, Indexing::Auto)
    }

    pub fn with_indexing(rules: Vec<Rule>, indexing: Indexing) -> Result<CompiledAcl, AclError> {
        if rules.len() >= u32::MAX as usize {
            return Err(AclError {
                index: rules.len(),
                problem: "too many rules".into(),
            });
        }
        let matchers = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Matcher::compile(i, r))
            .collect::<Result<Box<[_]>, _>>()?;
        let indexed = match indexing {
            Indexing::Auto => rules.len() > LINEAR_MAX,
            Indexing::Linear => false,
            Indexing::Indexed => true,
        };
        let index = indexed.then(|| SgIndex::build(&rules, &matchers));
        let hits = (0..=rules.len()).map(|_| AtomicU64::new(0)).collect();
        Ok(CompiledAcl {
            rules: rules.into_boxed_slice(),
            matchers,
            index,
            hits,
        })
    }

    /// The rules as given (inactive ones included).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn is_indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Classifies a batch of packets of one session and counts the hits.
    ///
    /// `session_sgt` is the SGT of the session's client (rule source side);
    /// the other side's SGT comes from `sgts` (see the module docs for the
    /// direction semantics). Writes `out[i]` for each `packets[i]`; if `out` is
    /// shorter, only that many packets are classified. No allocation, no lock.
    pub fn classify_batch(
        &self,
        packets: &[PacketMeta],
        direction: Direction,
        session_sgt: Option<u16>,
        sgts: SgtResolver<'_>,
        out: &mut [Verdict],
    ) {
        let n = packets.len().min(out.len());
        let csgt = session_sgt.map_or(NO_SGT, u32::from);
        for (pkts, outs) in packets[..n].chunks(BATCH).zip(out[..n].chunks_mut(BATCH)) {
            // Remote-side SGT lookups first: independent loads the CPU overlaps.
            let mut rsgt = [NO_SGT; BATCH];
            for (r, p) in rsgt.iter_mut().zip(pkts) {
                let remote = match direction {
                    Direction::FromClient => p.dst,
                    Direction::ToClient => p.src,
                };
                let found = if p.flags & F_V6 != 0 {
                    sgts.lookup_v6_bits(remote)
                } else {
                    sgts.lookup_v4_bits(remote as u32)
                };
                *r = found.map_or(NO_SGT, u32::from);
            }
            let mut tally = Tally::default();
            for ((p, o), &r) in pkts.iter().zip(outs.iter_mut()).zip(&rsgt) {
                let v = View::new(p, direction, csgt, r);
                let i = self.first_match(&v);
                *o = self.verdict(i);
                tally.add(
                    if i == u32::MAX {
                        self.rules.len() as u32
                    } else {
                        i
                    },
                    &self.hits,
                );
            }
            tally.flush(&self.hits);
        }
    }

    /// The verdict for one packet without counting it (packet-tracer style).
    pub fn evaluate(
        &self,
        packet: &PacketMeta,
        direction: Direction,
        session_sgt: Option<u16>,
        sgts: SgtResolver<'_>,
    ) -> Verdict {
        let remote = match direction {
            Direction::FromClient => packet.dst(),
            Direction::ToClient => packet.src(),
        };
        let v = View::new(
            packet,
            direction,
            session_sgt.map_or(NO_SGT, u32::from),
            sgts.lookup(remote).map_or(NO_SGT, u32::from),
        );
        self.verdict(self.first_match(&v))
    }

    #[inline]
    fn first_match(&self, v: &View) -> u32 {
        match &self.index {
            Some(ix) => ix.first_match(&self.matchers, v),
            None => self
                .matchers
                .iter()
                .position(|m| m.matches(v))
                .map_or(u32::MAX, |i| i as u32),
        }
    }

    #[inline(always)]
    fn verdict(&self, i: u32) -> Verdict {
        match self.matchers.get(i as usize) {
            Some(m) => Verdict {
                action: if m.flags & M_PERMIT != 0 {
                    Action::Permit
                } else {
                    Action::Deny
                },
                log: m.flags & M_LOG != 0,
                rule: i,
            },
            None => Verdict::implicit_deny(),
        }
    }

    /// Hits of rule `i` (as of the last finished batch).
    pub fn hits(&self, i: usize) -> u64 {
        self.hits.get(i).map_or(0, |h| h.load(Ordering::Relaxed))
    }

    pub fn implicit_deny_hits(&self) -> u64 {
        self.hits(self.rules.len())
    }

    /// All counters: one per rule, then the implicit deny.
    pub fn hit_counts(&self) -> Vec<u64> {
        self.hits
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .collect()
    }

    /// `clear access-list NAME counters`.
    pub fn clear_counters(&self) {
        for h in self.hits.iter() {
            h.store(0, Ordering::Relaxed);
        }
    }

    /// Starts this (new) ACL's counters from `old`'s: each rule takes the count
    /// of an identical rule in `old` (duplicates paired in order), the implicit
    /// deny takes the old implicit deny's. A snapshot: hits that batches still
    /// running on `old` add afterwards are not carried.
    pub fn inherit_counters(&self, old: &CompiledAcl) {
        let mut by_rule: HashMap<&Rule, Vec<usize>> = HashMap::new();
        for (i, r) in old.rules.iter().enumerate().rev() {
            by_rule.entry(r).or_default().push(i);
        }
        for (i, r) in self.rules.iter().enumerate() {
            let n = by_rule
                .get_mut(r)
                .and_then(Vec::pop)
                .map_or(0, |j| old.hits(j));
            self.hits[i].store(n, Ordering::Relaxed);
        }
        self.hits[self.rules.len()].store(old.implicit_deny_hits(), Ordering::Relaxed);
    }
}

/// Per-batch hit tally: up to `TALLY` distinct rules counted locally, then one
/// atomic add each. Rules beyond that (rare: a batch hitting many rules) are
/// added directly.
const TALLY: usize = 8;

#[derive(Default)]
struct Tally {
    rule: [u32; TALLY],
    count: [u64; TALLY],
    used: usize,
    last: usize,
}

impl Tally {
    #[inline(always)]
    fn add(&mut self, rule: u32, hits: &[AtomicU64]) {
        if self.used > 0 && self.rule[self.last] == rule {
            self.count[self.last] += 1;
            return;
        }
        if let Some(k) = self.rule[..self.used].iter().position(|&r| r == rule) {
            self.count[k] += 1;
            self.last = k;
        } else if self.used < TALLY {
            self.rule[self.used] = rule;
            self.count[self.used] = 1;
            self.last = self.used;
            self.used += 1;
        } else {
            hits[rule as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self, hits: &[AtomicU64]) {
        for k in 0..self.used {
            hits[self.rule[k] as usize].fetch_add(self.count[k], Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
