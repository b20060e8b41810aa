//! Typed configuration: the ASA CLI subset of `asa-aaa.md` section 1, after parsing.
//!
//! Names are case-sensitive, as on ASA. Maps are keyed by the configured name.
//! Every item keeps the line it was defined on so later checks can say `file:line`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The whole parsed running-config.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// File name as given (for messages).
    pub source: String,
    pub hostname: Option<String>,
    /// `domain-name NAME` (with `hostname`, the name SAML URLs derive from when
    /// `saml idp` has no `base-url`, as on ASA).
    pub domain_name: Option<String>,
    pub interfaces: Vec<Interface>,
    pub ip_local_pools: BTreeMap<String, Ipv4Pool>,
    pub ipv6_local_pools: BTreeMap<String, Ipv6Pool>,
    pub trustpoints: BTreeMap<String, Trustpoint>,
    /// `ssl trust-point NAME [IFACE]`
    pub ssl_trust_points: Vec<SslTrustPoint>,
    pub aaa_server_groups: BTreeMap<String, AaaServerGroup>,
    pub webvpn: Webvpn,
    pub group_policies: BTreeMap<String, GroupPolicy>,
    pub usernames: BTreeMap<String, LocalUser>,
    pub tunnel_groups: BTreeMap<String, TunnelGroup>,
    pub access_lists: BTreeMap<String, AccessList>,
    /// `object network|service` and `object-group` (see `objects.rs`).
    pub objects: super::objects::Objects,
    pub cts: Cts,
    /// `threat-detection service ...` (config/threat.rs); all off by default.
    pub threat_detection: super::ThreatDetection,
    /// `aaa local authentication attempts max-fail N`; None: no lockout.
    pub aaa_local_max_fail: Option<u32>,
    /// SSH CLI access and logging (`config/mgmt.rs`).
    pub management: super::mgmt::Management,
    /// `vpn-sessiondb max-*-limit N` (`sessiondb.rs`).
    pub vpn_sessiondb: super::VpnSessionDb,
    /// `vpn load-balancing` (config/parse/load_balancing.rs, cluster/lb.rs).
    pub vpn_load_balancing: Option<VpnLoadBalancing>,
    /// Unknown commands: reported and ignored.
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct Interface {
    pub name: String,
    pub nameif: Option<String>,
    pub ip_address: Option<(Ipv4Addr, Ipv4Addr)>,
    pub line: usize,
}

/// `ip local pool NAME FIRST-LAST mask MASK`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Pool {
    pub name: String,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub line: usize,
}

/// `ipv6 local pool NAME ADDR/PREFIX COUNT`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Pool {
    pub name: String,
    pub first: Ipv6Addr,
    pub prefix_len: u8,
    pub count: u32,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Trustpoint {
    pub name: String,
    pub enrollment_terminal: bool,
    pub revocation_check_none: bool,
    pub no_ca_check: bool,
    pub no_id_usage: bool,
    /// DER certificates from `crypto ca authenticate NAME` PEM blocks.
    pub ca_certs_der: Vec<Vec<u8>>,
    /// From `crypto ca import NAME pkcs12 PASS` (base64 decoded DER of the PKCS#12).
    pub pkcs12: Option<Pkcs12Blob>,
    pub line: usize,
}

#[derive(Clone)]
pub struct Pkcs12Blob {
    pub der: Vec<u8>,
    pub password: String,
}

impl std::fmt::Debug for Pkcs12Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs12Blob({} bytes, password hidden)", self.der.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslTrustPoint {
    pub trustpoint: String,
    pub interface: Option<String>,
    pub line: usize,
}

/// `aaa-server NAME protocol radius` and its sub-modes, plus hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AaaServerGroup {
    pub name: String,
    pub protocol: AaaProtocol,
    pub authorize_only: bool,
    /// `dynamic-authorization [port N]` (default 1700).
    pub dynamic_authorization: Option<u16>,
    /// `interim-accounting-update [periodic HOURS]`; Some(hours). Some(0) = without
    /// `periodic` (ASA then updates only when an address is assigned); bare
    /// `periodic` = 24.
    pub interim_accounting_update_hours: Option<u32>,
    /// `max-failed-attempts N` (default 3)
    pub max_failed_attempts: u32,
    /// `reactivation-mode timed` / `deadtime MINUTES`
    pub deadtime_minutes: u32,
    pub hosts: Vec<AaaServerHost>,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AaaProtocol {
    #[default]
    Radius,
}

#[derive(Clone, PartialEq, Eq)]
pub struct AaaServerHost {
    pub interface: Option<String>,
    pub address: IpAddr,
    pub key: Option<String>,
    pub authentication_port: u16,
    pub accounting_port: u16,
    /// `timeout SECONDS` (default 10)
    pub timeout_secs: u32,
    /// `retry-interval SECONDS` (default 10)
    pub retry_interval_secs: u32,
    /// `accept-unsigned-replies` (headend-only; ASA has no such command): accept
    /// Access-Accept/Reject/Challenge without Message-Authenticator from this server.
    /// Weakens the BlastRADIUS (CVE-2024-3596) protection; warned about at start.
    pub accept_unsigned_replies: bool,
    pub line: usize,
}

impl std::fmt::Debug for AaaServerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AaaServerHost")
            .field("interface", &self.interface)
            .field("address", &self.address)
            .field("key", &self.key.as_ref().map(|_| "<hidden>"))
            .field("authentication_port", &self.authentication_port)
            .field("accounting_port", &self.accounting_port)
            .field("timeout_secs", &self.timeout_secs)
            .field("retry_interval_secs", &self.retry_interval_secs)
            .field("accept_unsigned_replies", &self.accept_unsigned_replies)
            .field("line", &self.line)
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Webvpn {
    pub enable_interfaces: Vec<String>,
    pub anyconnect_enable: bool,
    pub tunnel_group_list_enable: bool,
    pub saml_idps: BTreeMap<String, SamlIdp>,
}

/// `saml idp ENTITY-ID` under `webvpn`.
#[derive(Debug, Clone, Default)]
pub struct SamlIdp {
    pub entity_id: String,
    pub sign_in_url: Option<String>,
    pub sign_out_url: Option<String>,
    pub base_url: Option<String>,
    pub trustpoint_idp: Option<String>,
    pub trustpoint_sp: Option<String>,
    /// None = `no signature`; Some(alg) = `signature [rsa-sha1|rsa-sha256|rsa-sha384|rsa-sha512]`.
    /// A bare `signature` is stored as "rsa-sha256" (never an implicit SHA-1).
    pub signature: Option<String>,
    pub force_reauthentication: bool,
    /// `timeout assertion SECONDS`
    pub timeout_assertion_secs: Option<u32>,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitTunnelPolicy {
    #[default]
    TunnelAll,
    TunnelSpecified,
    ExcludeSpecified,
}

/// `group-policy NAME internal` + `attributes`. Every attribute is optional here;
/// `None` means "inherit" (from DfltGrpPolicy, as on ASA). An explicit `none`
/// (e.g. `vpn-filter none`) stops inheritance and is stored as `Some("")` for
/// names/text, `Some(vec![])` for lists and `Some(0)` for timers. Use
/// `Config::effective_policy` to resolve.
#[derive(Debug, Clone, Default)]
pub struct GroupPolicy {
    pub name: String,
    pub vpn_tunnel_protocols: Option<Vec<String>>,
    pub split_tunnel_policy: Option<SplitTunnelPolicy>,
    pub split_tunnel_network_list: Option<String>,
    pub dns_servers: Option<Vec<IpAddr>>,
    pub default_domain: Option<String>,
    pub vpn_filter: Option<String>,
    /// minutes; Some(0)/`none` = no limit
    pub vpn_idle_timeout_min: Option<u32>,
    /// minutes; Some(0)/`none` = no limit
    pub vpn_session_timeout_min: Option<u32>,
    pub vpn_simultaneous_logins: Option<u32>,
    pub address_pools: Option<Vec<String>>,
    pub ipv6_address_pools: Option<Vec<String>>,
    pub anyconnect_dpd_client_secs: Option<u32>,
    pub anyconnect_dpd_gateway_secs: Option<u32>,
    pub anyconnect_keepalive_secs: Option<u32>,
    pub anyconnect_mtu: Option<u16>,
    /// `anyconnect ssl dtls enable|disable`
    pub anyconnect_dtls: Option<bool>,
    pub banner: Option<String>,
    /// Pushed client settings (split-dns, rekey, ...): `client_settings.rs`.
    pub client: super::client_settings::ClientSettings,
    pub line: usize,
}

/// `username NAME password SECRET [privilege N]`. The secret is kept only as
/// given in the file; the auth crate turns it into a salted hash at load.
#[derive(Clone)]
pub struct LocalUser {
    pub name: String,
    pub password: String,
    /// `password X pbkdf2` / `encrypted` / none
    pub password_form: PasswordForm,
    pub privilege: u8,
    pub line: usize,
}

impl std::fmt::Debug for LocalUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUser")
            .field("name", &self.name)
            .field("password_form", &self.password_form)
            .field("privilege", &self.privilege)
            .field("line", &self.line)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordForm {
    Plain,
    Pbkdf2,
    Encrypted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunnelAuthentication {
    /// `authentication aaa` (default)
    #[default]
    Aaa,
    Saml,
    Certificate,
}

#[derive(Debug, Clone, Default)]
pub struct TunnelGroup {
    pub name: String,
    /// `type remote-access`
    pub remote_access: bool,
    // general-attributes
    pub address_pools: Vec<String>,
    pub ipv6_address_pools: Vec<String>,
    /// None = LOCAL
    pub authentication_server_group: Option<String>,
    pub authorization_server_group: Option<String>,
    pub accounting_server_group: Option<String>,
    pub default_group_policy: Option<String>,
    // webvpn-attributes
    pub authentication: TunnelAuthentication,
    /// (alias, enabled)
    pub group_aliases: Vec<(String, bool)>,
    /// (url, enabled)
    pub group_urls: Vec<(String, bool)>,
    pub saml_identity_provider: Option<String>,
    /// ASA 9.17+ external browser for SAML (`saml external-browser enable`);
    /// false = the client's embedded browser, ASA's default.
    pub saml_external_browser: bool,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct AccessList {
    pub name: String,
    pub entries: Vec<AccessListEntry>,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    Permit,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclEntryKind {
    /// `access-list NAME standard permit|deny ADDR MASK | host ADDR | any4`
    Standard {
        network: AddrMatch,
    },
    Extended(ExtendedAce),
    /// An extended entry that names objects or object-groups, with its expansion.
    ExtendedObjects(Box<super::objects::ObjectAce>),
    /// `access-list NAME remark TEXT`
    Remark(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessListEntry {
    pub action: AclAction,
    pub kind: AclEntryKind,
    /// The config line as written (for `show access-list`).
    pub text: String,
    pub line: usize,
}

impl AccessListEntry {
    /// The plain extended entries this entry stands for: itself, or the expansion
    /// of the object-groups it names; none for standard entries and remarks.
    pub fn extended_aces(&self) -> &[ExtendedAce] {
        match &self.kind {
            AclEntryKind::Extended(a) => std::slice::from_ref(a),
            AclEntryKind::ExtendedObjects(o) => &o.expanded,
            _ => &[],
        }
    }

    /// Whether this is an extended entry (plain or naming objects).
    pub fn is_extended(&self) -> bool {
        matches!(
            self.kind,
            AclEntryKind::Extended(_) | AclEntryKind::ExtendedObjects(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedAce {
    /// `ip`, `tcp`, `udp`, `icmp`, `icmp6`, or a protocol number.
    pub protocol: AclProtocol,
    pub src_sg: Option<SecurityGroupMatch>,
    pub src: AddrMatch,
    pub src_port: Option<PortMatch>,
    pub dst_sg: Option<SecurityGroupMatch>,
    pub dst: AddrMatch,
    pub dst_port: Option<PortMatch>,
    /// `icmp` type after the destination (e.g. `echo`, `echo-reply`, or a number).
    pub icmp_type: Option<u8>,
    /// `log [LEVEL] [interval SECS]`; `None` without `log` or with `log disable`.
    pub log: Option<AceLog>,
    pub inactive: bool,
}

/// An ACE's `log` option: 106100's severity and its hit-count interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AceLog {
    /// 0-7; ASA's default is 6 (informational).
    pub level: u8,
    /// Seconds between a flow's 106100 hit-count reports; ASA's default is 300.
    pub interval: u16,
}

impl Default for AceLog {
    fn default() -> Self {
        AceLog {
            level: 6,
            interval: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclProtocol {
    Ip,
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Number(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityGroupMatch {
    Tag(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrMatch {
    /// `any` (v4 and v6), `any4`, `any6`
    Any,
    Any4,
    Any6,
    /// `host A` or `A MASK` or `A/len` (v6)
    Prefix(IpAddr, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMatch {
    Eq(u16),
    Neq(u16),
    Lt(u16),
    Gt(u16),
    Range(u16, u16),
}

#[derive(Debug, Clone, Default)]
pub struct Cts {
    /// `cts role-based sgt-map PREFIX sgt N` (v4 and v6; `host A` form too).
    pub sgt_map: Vec<SgtMapEntry>,
    /// `cts role-based sgt N name NAME` / `object-group security` names.
    pub sgt_names: BTreeMap<String, u16>,
    pub sxp_enable: bool,
    pub sxp_default_password: Option<String>,
    pub sxp_default_source_ip: Option<IpAddr>,
    pub sxp_connections: Vec<SxpConnection>,
    /// `cts sxp retry period`, `reconcile period`, `listener hold-time MIN MAX`
    pub sxp_listener_hold_time: Option<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgtMapEntry {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub sgt: u16,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SxpPassword {
    Default,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SxpMode {
    /// `mode local listener` (we listen) / `mode peer speaker` means the same.
    Listener,
    Speaker,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SxpConnection {
    pub peer: IpAddr,
    pub source: Option<IpAddr>,
    pub password: SxpPassword,
    pub mode: SxpMode,
    pub line: usize,
}

/// `vpn load-balancing` (asa-syntax.md §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnLoadBalancing {
    /// `participate`: this member takes part (directs or takes redirected logins).
    pub participate: bool,
    /// `priority 1-10` (ASA default 5).
    pub priority: u8,
    /// `cluster ip address`: the address the director holds (the VIP).
    pub cluster_ip: Option<Ipv4Addr>,
    pub cluster_ip_line: usize,
    /// `cluster port` (ASA default 9023): parsed; members talk through Redis.
    pub cluster_port: u16,
    /// `cluster key` / `cluster encryption`: parsed and checked as ASA does; the
    /// members' messages go through Redis (its AUTH and TLS protect them).
    pub key: Option<String>,
    pub encryption: bool,
    pub encryption_line: usize,
    /// `redirect-fqdn enable`: parsed; members are named by the address they listen on.
    pub redirect_fqdn: bool,
    pub lbpublic: Option<String>,
    pub lbprivate: Option<String>,
    /// Line of `vpn load-balancing`.
    pub line: usize,
}

impl Default for VpnLoadBalancing {
    fn default() -> Self {
        VpnLoadBalancing {
            participate: false,
            priority: 5,
            cluster_ip: None,
            cluster_ip_line: 0,
            cluster_port: 9023,
            key: None,
            encryption: false,
            encryption_line: 0,
            redirect_fqdn: false,
            lbpublic: None,
            lbprivate: None,
            line: 0,
        }
    }
}
