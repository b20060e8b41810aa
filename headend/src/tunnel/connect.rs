//! The CONNECT request (protocol.md section 2): who may open a tunnel, what is
//! refused and how, and the reply headers carrying the session's policy.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Instant;

use tokio::io::AsyncWriteExt;

use crate::config::{Config, SplitTunnelPolicy};
use crate::dtls::AppId;
use crate::proto::http::Request;
use crate::server::Tls;
use crate::sessions::Attached;

pub(super) async fn refuse(tls: &mut Tls, status: u16, reason: &str, why: &str) {
    let why: String = why.chars().filter(|c| !c.is_control()).collect();
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\nX-Reason: {why}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = tls.write_all(msg.as_bytes()).await;
    let _ = tls.shutdown().await;
}

/// The CONNECT reply, header names exactly as openconnect matches them.
pub fn connect_reply(
    cfg: &Config,
    att: &Attached,
    req: &Request,
    dtls: Option<&(AppId, u16)>,
) -> String {
    let p = &att.policy;
    let mtu = tunnel_mtu(p.anyconnect_mtu, req);
    let mut r = String::with_capacity(1024);
    r.push_str("HTTP/1.1 200 CONNECTED\r\n");
    r.push_str("X-CSTP-Version: 1\r\n");
    let host = cfg.hostname.as_deref().unwrap_or("headend");
    let _ = write!(r, "X-CSTP-Server-Name: {}\r\n", header_safe(host));
    let _ = write!(r, "X-CSTP-Address: {}\r\n", att.address);
    let _ = write!(r, "X-CSTP-Netmask: {}\r\n", att.netmask);
    // IPv6 only for a session that has an IPv6 address: without one, v6 DNS
    // servers and routes would point into a tunnel that cannot carry v6.
    let v6 = att.address6.is_some();
    if let Some((a, len)) = att.address6 {
        let _ = write!(r, "X-CSTP-Address-IP6: {a}/{len}\r\n");
    }
    for dns in p.dns_servers.iter().take(3) {
        match dns {
            IpAddr::V4(a) => {
                let _ = write!(r, "X-CSTP-DNS: {a}\r\n");
            }
            IpAddr::V6(a) if v6 => {
                let _ = write!(r, "X-CSTP-DNS-IP6: {a}\r\n");
            }
            IpAddr::V6(_) => {}
        }
    }
    if let Some(d) = &p.default_domain {
        let _ = write!(r, "X-CSTP-Default-Domain: {}\r\n", header_safe(d));
    }
    let (header, routes) = match p.split_tunnel_policy {
        SplitTunnelPolicy::TunnelAll => (None, Vec::new()),
        SplitTunnelPolicy::TunnelSpecified => {
            (Some("X-CSTP-Split-Include"), cfg.split_include_routes(p))
        }
        SplitTunnelPolicy::ExcludeSpecified => {
            (Some("X-CSTP-Split-Exclude"), cfg.split_exclude_routes(p))
        }
    };
    if let Some(hname) = header {
        for (net, mask) in routes {
            let _ = write!(r, "{hname}: {net}/{mask}\r\n");
        }
        if v6 {
            for (net, len) in cfg.split_networks_v6(p) {
                let _ = write!(r, "{hname}-IP6: {net}/{len}\r\n");
            }
        }
    }
    let _ = write!(r, "X-CSTP-MTU: {mtu}\r\n");
    if let Some(base) = req
        .header("X-CSTP-Base-MTU")
        .and_then(|v| v.trim().parse::<u16>().ok())
    {
        let _ = write!(r, "X-CSTP-Base-MTU: {base}\r\n");
    }
    if let Some(k) = p.anyconnect_keepalive_secs {
        let _ = write!(r, "X-CSTP-Keepalive: {k}\r\n");
    }
    if let Some(d) = p.anyconnect_dpd_client_secs {
        let _ = write!(r, "X-CSTP-DPD: {d}\r\n");
    }
    match p.vpn_idle_timeout {
        Some(t) => {
            let _ = write!(r, "X-CSTP-Idle-Timeout: {}\r\n", t.as_secs());
            let _ = write!(r, "X-CSTP-Disconnected-Timeout: {}\r\n", t.as_secs());
        }
        None => r.push_str("X-CSTP-Idle-Timeout: none\r\n"),
    }
    match att.session_deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            let _ = write!(r, "X-CSTP-Session-Timeout: {left}\r\n");
        }
        None => r.push_str("X-CSTP-Session-Timeout: none\r\n"),
    }
    if let Some(b) = &p.banner {
        let _ = write!(r, "X-CSTP-Banner: {}\r\n", url_encode(b));
    }
    // split-dns, tunnel-all-dns, client-bypass, rekey: config/client_settings.rs.
    for (k, v) in cfg.client_settings(&p.name).push_headers() {
        let _ = write!(r, "{k}: {}\r\n", header_safe(&v));
    }
    if let Some((app_id, port)) = dtls {
        let hex: String = app_id.iter().map(|b| format!("{b:02X}")).collect();
        let _ = write!(r, "X-DTLS-App-ID: {hex}\r\n");
        let _ = write!(r, "X-DTLS-Port: {port}\r\n");
        if let Some(k) = p.anyconnect_keepalive_secs {
            let _ = write!(r, "X-DTLS-Keepalive: {k}\r\n");
        }
        if let Some(d) = p.anyconnect_dpd_client_secs {
            let _ = write!(r, "X-DTLS-DPD: {d}\r\n");
        }
        r.push_str("X-DTLS-CipherSuite: PSK-NEGOTIATE\r\n");
    }
    r.push_str("\r\n");
    r
}

/// The addresses the session owns: its IPv4 address and, if it has one, its IPv6
/// address. Packets to them go to the session; packets from it must come from one.
pub(super) fn session_addresses(att: &Attached) -> Vec<IpAddr> {
    std::iter::once(IpAddr::V4(att.address))
        .chain(att.address6.map(|(a, _)| IpAddr::V6(a)))
        .collect()
}

/// Whether the client takes an IPv6 address: openconnect sends
/// `X-CSTP-Address-Type: IPv6,IPv4` (just `IPv4` with --disable-ipv6) and
/// `X-CSTP-Full-IPv6-Capability: true`; AnyConnect sends the same. A client that
/// says nothing gets IPv4 only.
pub(super) fn client_does_ipv6(req: &Request) -> bool {
    match req.header("X-CSTP-Address-Type") {
        Some(t) => t.split(',').any(|f| f.trim().eq_ignore_ascii_case("IPv6")),
        None => req
            .header("X-CSTP-Full-IPv6-Capability")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
    }
}

/// The policy MTU, capped by what the client asked for (it computed the most
/// its path can carry).
pub(super) fn tunnel_mtu(policy_mtu: u16, req: &Request) -> u16 {
    let asked = req
        .header("X-CSTP-MTU")
        .and_then(|v| v.trim().parse::<u16>().ok())
        .filter(|m| *m >= 576);
    asked.map_or(policy_mtu, |a| a.min(policy_mtu))
}

/// The datagram size the client's UDP path carries: its `X-CSTP-Base-MTU` (the
/// link MTU it measured; 1500 when absent or outside 576..=9000) minus the IPv4
/// and UDP headers.
pub(super) fn dtls_datagram_mtu(req: &Request) -> u32 {
    let base = req
        .header("X-CSTP-Base-MTU")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|m| (576..=9000).contains(m))
        .unwrap_or(1500);
    base - 28
}

fn header_safe(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::RequestParser;
    use crate::sessions::SessionStats;
    use std::sync::Arc;
    use tokio::sync::mpsc;

    const CFG: &str = "\
hostname vpn-gw
ip local pool P 198.18.100.10-198.18.100.250 mask 255.255.255.0
access-list SPLIT standard permit 198.18.1.0 255.255.255.0
access-list SPLIT standard permit 198.18.2.0 255.255.254.0
group-policy GP internal
group-policy GP attributes
 split-tunnel-policy tunnelspecified
 split-tunnel-network-list value SPLIT
 dns-server value 198.18.1.53 198.18.1.54
 default-domain value corp.example
 vpn-idle-timeout 30
 anyconnect dpd-interval client 30 gateway 30
group-policy FULL internal
group-policy FULL attributes
 split-tunnel-policy tunnelall
 split-tunnel-network-list value SPLIT
ipv6 local pool P6 fd00:100::10/64 200
access-list SPLIT-DUAL extended permit ip 198.18.1.0 255.255.255.0 any4
access-list SPLIT-DUAL extended permit ip fd00:1::/64 any6
access-list SPLIT-DUAL extended deny ip fd00:2::/64 any6
group-policy DUAL internal
group-policy DUAL attributes
 split-tunnel-policy tunnelspecified
 split-tunnel-network-list value SPLIT-DUAL
 dns-server value 198.18.1.53 fd00:1::53
 ipv6-address-pools value P6
group-policy DUAL-EXCLUDE internal
group-policy DUAL-EXCLUDE attributes
 split-tunnel-policy excludespecified
 split-tunnel-network-list value SPLIT-DUAL
";

    fn attached(cfg: &Config, gp: &str) -> Attached {
        let (_tx, control) = mpsc::unbounded_channel();
        Attached {
            index: 1,
            generation: 1,
            username: "alice".into(),
            tunnel_group: "TG".into(),
            group_policy: gp.into(),
            policy: cfg.effective_policy(gp),
            address: "198.18.100.10".parse().unwrap(),
            netmask: "255.255.255.0".parse().unwrap(),
            address6: None,
            stats: Arc::new(SessionStats::default()),
            filter: Arc::new(dataplane::enforce::SessionFilter::new(None, None)),
            control,
            session_deadline: None,
        }
    }

    fn connect_request(mtu: &str) -> Request {
        request_with(&format!("X-CSTP-MTU: {mtu}\r\n"))
    }

    fn request_with(extra: &str) -> Request {
        let raw = format!(
            "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 198.18.0.1\r\nCookie: webvpn=AB\r\n\
             X-CSTP-Version: 1\r\nX-CSTP-Base-MTU: 1500\r\n{extra}\r\n"
        );
        RequestParser::new()
            .parse(raw.as_bytes())
            .unwrap()
            .expect("complete request")
    }

    fn lines(reply: &str) -> Vec<&str> {
        reply.split("\r\n").collect()
    }

    #[test]
    fn connect_reply_carries_the_policy_with_exact_header_case() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(&cfg, &attached(&cfg, "GP"), &connect_request("1406"), None);
        assert!(reply.starts_with("HTTP/1.1 200 CONNECTED\r\n"));
        assert!(reply.ends_with("\r\n\r\n"));
        let l = lines(&reply);
        for want in [
            "X-CSTP-Version: 1",
            "X-CSTP-Address: 198.18.100.10",
            "X-CSTP-Netmask: 255.255.255.0",
            "X-CSTP-DNS: 198.18.1.53",
            "X-CSTP-DNS: 198.18.1.54",
            "X-CSTP-Default-Domain: corp.example",
            "X-CSTP-Split-Include: 198.18.1.0/255.255.255.0",
            "X-CSTP-Split-Include: 198.18.2.0/255.255.254.0",
            "X-CSTP-MTU: 1406",
            "X-CSTP-Base-MTU: 1500",
            "X-CSTP-DPD: 30",
            "X-CSTP-Idle-Timeout: 1800",
            "X-CSTP-Session-Timeout: none",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{reply}");
        }
        // No DTLS yet: without App-ID and Port the client does not try it.
        assert!(!reply.contains("X-DTLS-"));
        assert!(!reply.contains("Content-Length"));
    }

    #[test]
    fn tunnelall_sends_no_split_routes_and_mtu_is_capped_by_the_client() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(
            &cfg,
            &attached(&cfg, "FULL"),
            &connect_request("1300"),
            None,
        );
        assert!(!reply.contains("Split-Include"), "{reply}");
        assert!(lines(&reply).contains(&"X-CSTP-MTU: 1300"));
        // Nonsense MTU from the client is ignored.
        let reply = connect_reply(&cfg, &attached(&cfg, "FULL"), &connect_request("12"), None);
        assert!(lines(&reply).contains(&"X-CSTP-MTU: 1406"), "{reply}");
    }

    #[test]
    fn dtls_datagrams_fit_the_clients_base_mtu() {
        // request_with sends X-CSTP-Base-MTU: 1500.
        assert_eq!(dtls_datagram_mtu(&request_with("")), 1472);
        let no_base = RequestParser::new()
            .parse(b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .expect("complete request");
        assert_eq!(dtls_datagram_mtu(&no_base), 1472);
        for (base, want) in [
            ("9000", 8972),
            ("576", 548),
            ("575", 1472),
            ("9001", 1472),
            ("x", 1472),
        ] {
            let raw = format!(
                "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: h\r\nX-CSTP-Base-MTU: {base}\r\n\r\n"
            );
            let req = RequestParser::new().parse(raw.as_bytes()).unwrap().unwrap();
            assert_eq!(dtls_datagram_mtu(&req), want, "base {base}");
        }
    }

    #[test]
    fn banner_is_url_encoded() {
        assert_eq!(url_encode("Hi there\r\n<b>"), "Hi%20there%0D%0A%3Cb%3E");
    }

    fn dual(cfg: &Config, gp: &str) -> Attached {
        let mut a = attached(cfg, gp);
        a.address6 = Some(("fd00:100::10".parse().unwrap(), 64));
        a
    }

    #[test]
    fn dual_stack_reply_has_the_ipv6_address_routes_and_dns() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(&cfg, &dual(&cfg, "DUAL"), &connect_request("1406"), None);
        let l = lines(&reply);
        for want in [
            "X-CSTP-Address: 198.18.100.10",
            "X-CSTP-Netmask: 255.255.255.0",
            "X-CSTP-Address-IP6: fd00:100::10/64",
            "X-CSTP-DNS: 198.18.1.53",
            "X-CSTP-DNS-IP6: fd00:1::53",
            "X-CSTP-Split-Include: 198.18.1.0/255.255.255.0",
            "X-CSTP-Split-Include-IP6: fd00:1::/64",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{reply}");
        }
        // Deny entries are not routes; exactly one v6 route.
        assert_eq!(reply.matches("-IP6: fd00:").count(), 3, "{reply}");
        assert!(!reply.contains("fd00:2::"), "{reply}");
    }

    #[test]
    fn ipv4_only_session_gets_nothing_ipv6() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(
            &cfg,
            &attached(&cfg, "DUAL"),
            &connect_request("1406"),
            None,
        );
        assert!(!reply.contains("IP6"), "{reply}");
        assert!(!reply.contains("fd00:"), "{reply}");
        assert!(
            lines(&reply).contains(&"X-CSTP-Split-Include: 198.18.1.0/255.255.255.0"),
            "{reply}"
        );
    }

    #[test]
    fn excludespecified_sends_split_exclude_for_both_families() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(
            &cfg,
            &dual(&cfg, "DUAL-EXCLUDE"),
            &connect_request("1406"),
            None,
        );
        let l = lines(&reply);
        assert!(
            l.contains(&"X-CSTP-Split-Exclude: 198.18.1.0/255.255.255.0"),
            "{reply}"
        );
        assert!(
            l.contains(&"X-CSTP-Split-Exclude-IP6: fd00:1::/64"),
            "{reply}"
        );
        assert!(!reply.contains("Split-Include"), "{reply}");
    }

    #[test]
    fn ipv6_capability_comes_from_the_request_headers() {
        // openconnect 9: both headers.
        assert!(client_does_ipv6(&request_with(
            "X-CSTP-Address-Type: IPv6,IPv4\r\nX-CSTP-Full-IPv6-Capability: true\r\n"
        )));
        // openconnect --disable-ipv6.
        assert!(!client_does_ipv6(&request_with(
            "X-CSTP-Address-Type: IPv4\r\n"
        )));
        assert!(client_does_ipv6(&request_with(
            "X-CSTP-Full-IPv6-Capability: true\r\n"
        )));
        // Says nothing: IPv4 only.
        assert!(!client_does_ipv6(&request_with("")));
    }

    #[test]
    fn session_addresses_cover_both_families() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let v4: IpAddr = "198.18.100.10".parse().unwrap();
        let v6: IpAddr = "fd00:100::10".parse().unwrap();
        assert_eq!(session_addresses(&attached(&cfg, "DUAL")), vec![v4]);
        assert_eq!(session_addresses(&dual(&cfg, "DUAL")), vec![v4, v6]);
    }
}
