//! Objects and object-groups (`asa-syntax.md` section 2) and the expansion of
//! access-list entries that name them.
//!
//! ASA expands an entry that names an object-group into one entry per member
//! combination (`show access-list` prints them indented under the entry). We do the
//! same once, when the config is read: [`Objects::expand`] turns an [`AceTemplate`]
//! into plain [`ExtendedAce`]s, which compile into the dataplane's tables like any
//! other entry, so a group costs nothing per packet.
//!
//! Names share one namespace (an `object network X` and an `object-group service X`
//! cannot coexist, as on ASA) and are case-sensitive.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::{AceLog, AclProtocol, AddrMatch, ExtendedAce, PortMatch, SecurityGroupMatch};

/// Most plain entries one configured entry may expand to. ASA warns about large
/// expansions too; this bound keeps a typo (two big groups crossed) from eating
/// memory at load.
pub const MAX_EXPANSION: usize = 100_000;

/// Every `object` and `object-group` of the config.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub network: BTreeMap<String, NetworkObject>,
    pub service: BTreeMap<String, ServiceObject>,
    pub groups: BTreeMap<String, ObjectGroup>,
}

/// `object network NAME` with one of `host`, `subnet`, `range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkObject {
    pub name: String,
    /// None until its `host`/`subnet`/`range` line (an empty object matches nothing).
    pub value: Option<NetworkValue>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkValue {
    /// `host A` and `subnet A MASK` / `subnet A/LEN`.
    Prefix(IpAddr, u8),
    /// `range FIRST LAST` (inclusive).
    Range(IpAddr, IpAddr),
}

/// `object service NAME` with its `service ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceObject {
    pub name: String,
    /// Empty until its `service` line; `tcp-udp` gives two.
    pub value: Vec<Service>,
    pub line: usize,
}

/// One service: a protocol, with ports (tcp, udp, sctp) or an ICMP type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub protocol: AclProtocol,
    pub src_port: Option<PortMatch>,
    pub dst_port: Option<PortMatch>,
    pub icmp_type: Option<u8>,
}

impl Service {
    pub fn protocol(protocol: AclProtocol) -> Self {
        Service {
            protocol,
            src_port: None,
            dst_port: None,
            icmp_type: None,
        }
    }

    fn has_details(&self) -> bool {
        self.src_port.is_some() || self.dst_port.is_some() || self.icmp_type.is_some()
    }
}

/// `object-group TYPE NAME` and its members, in config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectGroup {
    pub name: String,
    pub kind: GroupKind,
    pub members: Vec<GroupMember>,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    Network,
    /// `object-group service NAME [tcp|udp|tcp-udp]`: with a protocol it is a
    /// port group (`port-object`), without one a service group (`service-object`).
    Service(Option<PortProtocol>),
    Protocol,
    IcmpType,
    Security,
}

impl GroupKind {
    pub fn label(self) -> &'static str {
        match self {
            GroupKind::Network => "network",
            GroupKind::Service(None) => "service",
            GroupKind::Service(Some(PortProtocol::Tcp)) => "service tcp",
            GroupKind::Service(Some(PortProtocol::Udp)) => "service udp",
            GroupKind::Service(Some(PortProtocol::TcpUdp)) => "service tcp-udp",
            GroupKind::Protocol => "protocol",
            GroupKind::IcmpType => "icmp-type",
            GroupKind::Security => "security",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    Tcp,
    Udp,
    TcpUdp,
}

impl PortProtocol {
    fn allows(self, p: AclProtocol) -> bool {
        matches!(
            (self, p),
            (PortProtocol::Tcp | PortProtocol::TcpUdp, AclProtocol::Tcp)
                | (PortProtocol::Udp | PortProtocol::TcpUdp, AclProtocol::Udp)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMember {
    /// `network-object host A` / `A MASK` / `A/LEN`
    Network(AddrMatch),
    /// `network-object object NAME`
    NetworkObject(String),
    /// `port-object eq|range ...`
    Port(PortMatch),
    /// `service-object PROTO [source OP P] [destination OP P]` / `service-object icmp TYPE`
    Service(Service),
    /// `service-object object NAME`
    ServiceObject(String),
    /// `protocol-object PROTO`
    Protocol(AclProtocol),
    /// `icmp-object TYPE` (ICMPv4 type)
    Icmp(u8),
    /// `security-group name N | tag T`
    SecurityGroup(SecurityGroupMatch),
    /// `group-object NAME` (same kind of group)
    Group(String),
}

// ------------------------------------------------------------ entries with objects

/// Protocol position: a protocol, a `protocol` or service object-group, or a
/// service object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolSlot {
    Protocol(AclProtocol),
    ObjectGroup(String),
    Object(String),
}

/// Source or destination address position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrSlot {
    Addr(AddrMatch),
    Object(String),
    ObjectGroup(String),
}

/// `security-group name|tag X` or `object-group-security NAME` before an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SgSlot {
    One(SecurityGroupMatch),
    ObjectGroup(String),
}

/// Port after an address: an operator, or a port object-group (`tcp|udp|tcp-udp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSlot {
    Port(PortMatch),
    ObjectGroup(String),
}

/// ICMP type after the destination, or an `icmp-type` object-group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcmpSlot {
    Type(u8),
    ObjectGroup(String),
}

/// An extended entry as written, with object references in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AceTemplate {
    pub protocol: ProtocolSlot,
    pub src_sg: Option<SgSlot>,
    pub src: AddrSlot,
    pub src_port: Option<PortSlot>,
    pub dst_sg: Option<SgSlot>,
    pub dst: AddrSlot,
    pub dst_port: Option<PortSlot>,
    pub icmp: Option<IcmpSlot>,
    pub log: Option<AceLog>,
    pub inactive: bool,
}

/// An extended entry naming objects: as written, and expanded into plain entries
/// (in ASA's order: the first slot varies slowest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectAce {
    pub template: AceTemplate,
    pub expanded: Vec<ExtendedAce>,
}

impl Objects {
    /// Whether any object or group has this name (one namespace, as on ASA).
    pub fn kind_of(&self, name: &str) -> Option<String> {
        if self.network.contains_key(name) {
            Some("object network".into())
        } else if self.service.contains_key(name) {
            Some("object service".into())
        } else {
            self.groups
                .get(name)
                .map(|g| format!("object-group {}", g.kind.label()))
        }
    }

    /// The members of group `name`, nested groups flattened (depth first, in
    /// config order). `want` is what the caller's position needs; a group of
    /// another kind, an undefined name and a cycle are errors.
    pub(super) fn flatten(
        &self,
        name: &str,
        want: &[GroupKind],
    ) -> Result<Vec<&GroupMember>, String> {
        let mut out = Vec::new();
        let mut stack = Vec::new();
        self.flatten_into(name, want, &mut stack, &mut out)?;
        Ok(out)
    }

    fn flatten_into<'s>(
        &'s self,
        name: &str,
        want: &[GroupKind],
        stack: &mut Vec<String>,
        out: &mut Vec<&'s GroupMember>,
    ) -> Result<(), String> {
        let Some(g) = self.groups.get(name) else {
            return Err(match self.kind_of(name) {
                Some(k) => format!("`{name}` is an {k}, not an object-group"),
                None => format!("object-group `{name}` is not defined"),
            });
        };
        if !want.contains(&g.kind) {
            let wanted: Vec<&str> = want.iter().map(|k| k.label()).collect();
            return Err(format!(
                "object-group `{name}` is of type {}; this position needs {}",
                g.kind.label(),
                wanted.join(" or ")
            ));
        }
        if stack.iter().any(|s| s == name) {
            stack.push(name.to_string());
            return Err(format!(
                "object-group `{name}` contains itself: {}",
                stack.join(" -> ")
            ));
        }
        stack.push(name.to_string());
        for m in &g.members {
            match m {
                // Nested groups are of the parent's kind (checked when read).
                GroupMember::Group(n) => self.flatten_into(n, &[g.kind], stack, out)?,
                m => out.push(m),
            }
        }
        stack.pop();
        Ok(())
    }

    /// The prefixes `object network NAME` stands for (a range becomes the fewest
    /// prefixes covering exactly it).
    fn network_object(&self, name: &str) -> Result<Vec<AddrMatch>, String> {
        let Some(o) = self.network.get(name) else {
            return Err(match self.kind_of(name) {
                Some(k) => format!("`{name}` is an {k}, not an object network"),
                None => format!("object network `{name}` is not defined"),
            });
        };
        Ok(match &o.value {
            None => Vec::new(),
            Some(NetworkValue::Prefix(a, l)) => vec![AddrMatch::Prefix(*a, *l)],
            Some(NetworkValue::Range(a, b)) => range_prefixes(*a, *b)
                .into_iter()
                .map(|(a, l)| AddrMatch::Prefix(a, l))
                .collect(),
        })
    }

    fn service_object(&self, name: &str) -> Result<Vec<Service>, String> {
        match self.service.get(name) {
            Some(o) => Ok(o.value.clone()),
            None => Err(match self.kind_of(name) {
                Some(k) => format!("`{name}` is an {k}, not an object service"),
                None => format!("object service `{name}` is not defined"),
            }),
        }
    }

    fn addrs(&self, slot: &AddrSlot) -> Result<Vec<AddrMatch>, String> {
        Ok(match slot {
            AddrSlot::Addr(a) => vec![a.clone()],
            AddrSlot::Object(n) => self.network_object(n)?,
            AddrSlot::ObjectGroup(n) => {
                let mut out = Vec::new();
                for m in self.flatten(n, &[GroupKind::Network])? {
                    match m {
                        GroupMember::Network(a) => out.push(a.clone()),
                        GroupMember::NetworkObject(o) => out.extend(self.network_object(o)?),
                        _ => {}
                    }
                }
                dedup(out)
            }
        })
    }

    fn services(&self, slot: &ProtocolSlot) -> Result<Vec<Service>, String> {
        Ok(match slot {
            ProtocolSlot::Protocol(p) => vec![Service::protocol(*p)],
            ProtocolSlot::Object(n) => self.service_object(n)?,
            ProtocolSlot::ObjectGroup(n) => {
                let mut out = Vec::new();
                let kinds = [GroupKind::Protocol, GroupKind::Service(None)];
                for m in self.flatten(n, &kinds)? {
                    match m {
                        GroupMember::Protocol(p) => out.push(Service::protocol(*p)),
                        GroupMember::Service(s) => out.push(*s),
                        GroupMember::ServiceObject(o) => out.extend(self.service_object(o)?),
                        _ => {}
                    }
                }
                dedup(out)
            }
        })
    }

    fn sgs(&self, slot: Option<&SgSlot>) -> Result<Vec<Option<SecurityGroupMatch>>, String> {
        Ok(match slot {
            None => vec![None],
            Some(SgSlot::One(s)) => vec![Some(s.clone())],
            Some(SgSlot::ObjectGroup(n)) => dedup(
                self.flatten(n, &[GroupKind::Security])?
                    .into_iter()
                    .filter_map(|m| match m {
                        GroupMember::SecurityGroup(s) => Some(Some(s.clone())),
                        _ => None,
                    })
                    .collect(),
            ),
        })
    }

    /// Ports of a port slot for protocol `p`.
    fn ports(
        &self,
        slot: Option<&PortSlot>,
        p: AclProtocol,
    ) -> Result<Vec<Option<PortMatch>>, String> {
        let Some(slot) = slot else {
            return Ok(vec![None]);
        };
        if !matches!(
            p,
            AclProtocol::Tcp | AclProtocol::Udp | AclProtocol::Number(132)
        ) {
            return Err("a port match needs protocol tcp, udp or sctp".into());
        }
        Ok(match slot {
            PortSlot::Port(m) => vec![Some(*m)],
            PortSlot::ObjectGroup(n) => {
                let g = self.groups.get(n);
                if let Some(GroupKind::Service(Some(pp))) = g.map(|g| g.kind)
                    && !pp.allows(p)
                {
                    return Err(format!(
                        "object-group `{n}` holds {} ports; the entry's protocol is {}",
                        GroupKind::Service(Some(pp))
                            .label()
                            .trim_start_matches("service "),
                        protocol_label(p)
                    ));
                }
                let kinds = [
                    GroupKind::Service(Some(PortProtocol::Tcp)),
                    GroupKind::Service(Some(PortProtocol::Udp)),
                    GroupKind::Service(Some(PortProtocol::TcpUdp)),
                ];
                dedup(
                    self.flatten(n, &kinds)?
                        .into_iter()
                        .filter_map(|m| match m {
                            GroupMember::Port(pm) => Some(Some(*pm)),
                            _ => None,
                        })
                        .collect(),
                )
            }
        })
    }

    fn icmp_types(
        &self,
        slot: Option<&IcmpSlot>,
        p: AclProtocol,
    ) -> Result<Vec<Option<u8>>, String> {
        let Some(slot) = slot else {
            return Ok(vec![None]);
        };
        Ok(match slot {
            IcmpSlot::Type(t) => vec![Some(*t)],
            IcmpSlot::ObjectGroup(n) => {
                if p != AclProtocol::Icmp {
                    return Err(format!(
                        "icmp-type object-group `{n}` holds ICMP (IPv4) types; it needs protocol icmp"
                    ));
                }
                dedup(
                    self.flatten(n, &[GroupKind::IcmpType])?
                        .into_iter()
                        .filter_map(|m| match m {
                            GroupMember::Icmp(t) => Some(Some(*t)),
                            _ => None,
                        })
                        .collect(),
                )
            }
        })
    }

    /// Every plain entry `t` stands for: one per combination of the members of
    /// the groups it names, protocol slowest, ICMP type fastest (ASA's order).
    /// Errors name the group or object at fault; the caller adds `file:line`.
    pub fn expand(&self, t: &AceTemplate) -> Result<Vec<ExtendedAce>, String> {
        let services = self.services(&t.protocol)?;
        let given_ports = t.src_port.is_some() || t.dst_port.is_some() || t.icmp.is_some();
        let src_sgs = self.sgs(t.src_sg.as_ref())?;
        let dst_sgs = self.sgs(t.dst_sg.as_ref())?;
        let srcs = self.addrs(&t.src)?;
        let dsts = self.addrs(&t.dst)?;
        let mut out = Vec::new();
        for svc in &services {
            if svc.has_details() && given_ports {
                return Err(
                    "the service object (group) in the protocol position already gives ports or an ICMP type; the entry cannot add its own"
                        .into(),
                );
            }
            let (src_ports, dst_ports, icmps) = if svc.has_details() {
                (vec![svc.src_port], vec![svc.dst_port], vec![svc.icmp_type])
            } else {
                (
                    self.ports(t.src_port.as_ref(), svc.protocol)?,
                    self.ports(t.dst_port.as_ref(), svc.protocol)?,
                    self.icmp_types(t.icmp.as_ref(), svc.protocol)?,
                )
            };
            let product = [
                src_sgs.len(),
                srcs.len(),
                src_ports.len(),
                dst_sgs.len(),
                dsts.len(),
                dst_ports.len(),
                icmps.len(),
            ]
            .iter()
            .try_fold(out.len().max(1), |acc: usize, n| {
                acc.checked_mul((*n).max(1))
            });
            if product.is_none_or(|n| n > MAX_EXPANSION) {
                return Err(format!(
                    "the entry expands to more than {MAX_EXPANSION} entries; split it or use smaller groups"
                ));
            }
            for src_sg in &src_sgs {
                for src in &srcs {
                    for src_port in &src_ports {
                        for dst_sg in &dst_sgs {
                            for dst in &dsts {
                                for dst_port in &dst_ports {
                                    for icmp_type in &icmps {
                                        out.push(ExtendedAce {
                                            protocol: svc.protocol,
                                            src_sg: src_sg.clone(),
                                            src: src.clone(),
                                            src_port: *src_port,
                                            dst_sg: dst_sg.clone(),
                                            dst: dst.clone(),
                                            dst_port: *dst_port,
                                            icmp_type: *icmp_type,
                                            log: t.log,
                                            inactive: t.inactive,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn protocol_label(p: AclProtocol) -> String {
    match p {
        AclProtocol::Ip => "ip".into(),
        AclProtocol::Tcp => "tcp".into(),
        AclProtocol::Udp => "udp".into(),
        AclProtocol::Icmp => "icmp".into(),
        AclProtocol::Icmp6 => "icmp6".into(),
        AclProtocol::Number(n) => n.to_string(),
    }
}

/// Drops repeats, keeping the first (a host in two nested groups is one entry).
fn dedup<T: PartialEq>(v: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// The fewest prefixes covering exactly `first..=last` (same family, first <=
/// last; the parser checks both). The classic range-to-CIDR walk: at each step
/// take the largest aligned block that starts at the cursor and fits.
pub fn range_prefixes(first: IpAddr, last: IpAddr) -> Vec<(IpAddr, u8)> {
    let (a, b, bits, v4) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            u128::from(u32::from(a)),
            u128::from(u32::from(b)),
            32u32,
            true,
        ),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u32, false),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut cur = a;
    while cur <= b {
        // Largest block aligned at `cur`...
        let mut size_bits = if cur == 0 {
            bits
        } else {
            cur.trailing_zeros().min(bits)
        };
        // ...that does not run past `b`.
        while size_bits > 0 {
            let span = if size_bits >= 128 {
                u128::MAX
            } else {
                (1u128 << size_bits) - 1
            };
            if cur.checked_add(span).is_some_and(|end| end <= b) {
                break;
            }
            size_bits -= 1;
        }
        let len = (bits - size_bits) as u8;
        let addr = if v4 {
            IpAddr::V4(Ipv4Addr::from(cur as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(cur))
        };
        out.push((addr, len));
        if size_bits >= 128 {
            break; // the whole IPv6 space
        }
        match cur.checked_add(1u128 << size_bits) {
            Some(n) => cur = n,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, l: u8) -> (IpAddr, u8) {
        (s.parse().unwrap(), l)
    }

    #[test]
    fn objects_range_to_prefixes() {
        let r = |a: &str, b: &str| range_prefixes(a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(r("10.0.0.1", "10.0.0.1"), vec![p("10.0.0.1", 32)]);
        assert_eq!(r("10.0.0.0", "10.0.0.255"), vec![p("10.0.0.0", 24)]);
        assert_eq!(
            r("10.0.0.5", "10.0.0.10"),
            vec![
                p("10.0.0.5", 32),
                p("10.0.0.6", 31),
                p("10.0.0.8", 31),
                p("10.0.0.10", 32)
            ]
        );
        assert_eq!(r("0.0.0.0", "255.255.255.255"), vec![p("0.0.0.0", 0)]);
        assert_eq!(
            r("255.255.255.254", "255.255.255.255"),
            vec![p("255.255.255.254", 31)]
        );
        assert_eq!(
            r("fd00::1", "fd00::3"),
            vec![p("fd00::1", 128), p("fd00::2", 127)]
        );
        assert_eq!(
            r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            vec![p("::", 0)]
        );
        assert!(r("10.0.0.1", "fd00::1").is_empty());
    }
}
