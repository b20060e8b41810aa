//! End-to-end: a vpn-filter written with objects and object-groups, as real ASA
//! running-configs write them, enforced on a stock openconnect client's traffic.
//!
//! alice logs in to LOCAL-PW; its group policy GP-EMPLOYEES gets `vpn-filter value
//! OG-FILTER`:
//!
//! ```text
//! object network OBJ-INSIDE-HOST          host 198.18.1.10
//! object-group network NG-NESTED          network-object object OBJ-INSIDE-HOST
//! object-group network NG-SERVERS         group-object NG-NESTED, 198.18.2.0/24
//! object-group service SG-WEB tcp         port-object eq https, eq 8443
//! object-group icmp-type IG-PING          icmp-object echo, echo-reply
//! access-list OG-FILTER extended permit tcp any object-group NG-SERVERS object-group SG-WEB
//! access-list OG-FILTER extended permit icmp any object-group NG-SERVERS object-group IG-PING
//! access-list OG-FILTER extended deny ip any any
//! ```
//!
//! The filter applies to both directions with the client side as the source (the
//! reply to a ping is matched as `client <- host echo-reply`), hence echo-reply in
//! the group. So from the client: https and ping to the inside host pass; another port on the
//! same host and a ping to the inside gateway (not in the group) are dropped. A
//! drop is asserted as "the service never saw this client" and by the counters of
//! `show access-list` (the expanded lines, indented under their entry, each with its
//! own hit count), not as a timing. Deadlines are hang guards.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use e2e::lab::{self, HANG_GUARD, INSIDE_GW, INSIDE_HOST};
use e2e::service::{self, TcpService};
use e2e::{Lab, wait_until};

const PERMITTED_PORT: u16 = 443;
const OTHER_PORT: u16 = 8080;
/// How long a connection the filter should drop is given (not a speed assertion).
const DROPPED_SYN_WAIT: Duration = Duration::from_secs(3);

const FILTER: &str = "\
!
! Objects and object-groups (appended by tests/tests/object_groups.rs)
object network OBJ-INSIDE-HOST
 host 198.18.1.10
object-group network NG-NESTED
 network-object object OBJ-INSIDE-HOST
object-group network NG-SERVERS
 description inside servers
 group-object NG-NESTED
 network-object 198.18.2.0 255.255.255.0
object-group service SG-WEB tcp
 port-object eq https
 port-object eq 8443
object-group icmp-type IG-PING
 icmp-object echo
 icmp-object echo-reply
access-list OG-FILTER extended permit tcp any object-group NG-SERVERS object-group SG-WEB
access-list OG-FILTER extended permit icmp any object-group NG-SERVERS object-group IG-PING
access-list OG-FILTER extended deny ip any any
group-policy GP-EMPLOYEES attributes
 vpn-filter value OG-FILTER
";

/// `(hitcnt=N)` of the first row of `show` that starts with `prefix`.
fn hitcnt(show: &str, prefix: &str) -> u64 {
    let row = show
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{show}"));
    row.split("(hitcnt=")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hitcnt in {row:?}"))
}

#[test]
fn vpn_filter_with_object_groups_permits_and_denies() {
    let Some(lab) = Lab::new() else { return };
    let mut config = std::fs::read_to_string(lab.config_path()).expect("read lab config");
    config.push_str(FILTER);
    std::fs::write(lab.config_path(), config).expect("write lab config");
    lab.start_headend();

    let at = |port| SocketAddr::new(IpAddr::V4(INSIDE_HOST), port);
    let permitted = TcpService::start(lab.inside_ns(), at(PERMITTED_PORT));
    let other = TcpService::start(lab.inside_ns(), at(OTHER_PORT));
    let client = lab.connect("alice", lab.password("alice"), &[]);
    let me = IpAddr::V4(client.tun_addr().expect("tunnel address"));

    // Permitted through the nested network group and the port group.
    let got = service::fetch_banner(client.ns(), permitted.addr(), HANG_GUARD)
        .unwrap_or_else(|e| panic!("https to the inside host: {e}"));
    assert_eq!(got, service::banner(permitted.addr()));
    assert!(permitted.accepted().iter().any(|p| p.ip() == me));
    // Permitted through the icmp-type group.
    assert!(
        lab::wait_ping(client.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping reply from {INSIDE_HOST} after {HANG_GUARD:?}"
    );

    // Same host, port not in SG-WEB: dropped.
    let r = service::fetch_banner(client.ns(), other.addr(), DROPPED_SYN_WAIT);
    assert!(r.is_err(), "port {OTHER_PORT} reached: {r:?}");
    assert!(
        !other.accepted().iter().any(|p| p.ip() == me),
        "{} accepted {me}",
        other.addr()
    );
    // Ping to an address outside NG-SERVERS: dropped.
    assert!(
        !lab::ping(client.ns(), INSIDE_GW),
        "ping to {INSIDE_GW} got a reply"
    );

    // The counters say which expanded entry matched.
    let parent = "access-list OG-FILTER line 1 extended permit tcp any object-group NG-SERVERS object-group SG-WEB ";
    let https_row =
        "  access-list OG-FILTER line 1 extended permit tcp any host 198.18.1.10 eq https ";
    let alt_row =
        "  access-list OG-FILTER line 1 extended permit tcp any host 198.18.1.10 eq 8443 ";
    let ping_row = "  access-list OG-FILTER line 2 extended permit icmp any host 198.18.1.10 echo ";
    let deny = "access-list OG-FILTER line 3 extended deny ip any any ";
    let mut last = String::new();
    let shown = wait_until(HANG_GUARD, || {
        last = lab.show(&["access-list", "OG-FILTER"]);
        (last.contains(https_row)
            && hitcnt(&last, https_row) >= 1
            && hitcnt(&last, ping_row) >= 1
            && hitcnt(&last, deny) >= 2)
            .then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("counters not updated after {HANG_GUARD:?}:\n{last}"));
    assert!(
        shown.starts_with("access-list OG-FILTER; 9 elements;"),
        "{shown}"
    );
    assert_eq!(hitcnt(&shown, alt_row), 0, "{shown}");
    assert_eq!(
        hitcnt(&shown, parent),
        hitcnt(&shown, https_row)
            + hitcnt(&shown, alt_row)
            + hitcnt(
                &shown,
                "  access-list OG-FILTER line 1 extended permit tcp any 198.18.2.0 255.255.255.0 eq https "
            )
            + hitcnt(
                &shown,
                "  access-list OG-FILTER line 1 extended permit tcp any 198.18.2.0 255.255.255.0 eq 8443 "
            ),
        "the entry's count is the sum of its expanded lines:\n{shown}"
    );
}
