//! End-to-end tests of the foundation: stock Debian openconnect against the headend in
//! the network-namespace lab (see `e2e::lab`). Each test builds its own lab and tears
//! it down, also when it fails. Deadlines are hang guards, never speed assertions.

use std::io::Write;
use std::time::Duration;

use e2e::lab::{self, HANG_GUARD, INSIDE_HOST, OUTSIDE_IP, SPLIT_INCLUDE};
use e2e::sessiondb::expect_session;
use e2e::{Client, Lab, Session, cmd, probe, wait_until};

/// A lab with `clients` client namespaces and a running headend; `None` = skipped.
fn lab_with_headend(clients: usize) -> Option<Lab> {
    let lab = Lab::with_clients(clients)?;
    lab.start_headend();
    Some(lab)
}

fn assert_pings(lab: &Lab, host: usize, what: &str) {
    assert!(
        lab::wait_ping(&lab.client_host(host).ns, INSIDE_HOST, HANG_GUARD).is_some(),
        "{what}: no ping reply from {INSIDE_HOST} through the tunnel from {} after {HANG_GUARD:?}",
        lab.client_host(host).ns
    );
}

/// (a) alice logs in with her password, gets a pool address and the split route, pings
/// the inside host through the tunnel, and `show vpn-sessiondb` lists her.
#[test]
fn connect_ping_and_show() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    // Baseline: without the tunnel the client has no route to the inside network.
    assert!(
        !lab.ping_from_client(INSIDE_HOST),
        "{INSIDE_HOST} reachable from the client without a tunnel: the lab leaks"
    );

    let client = lab.connect("alice", lab.password("alice"), &[]);
    let tunnel_up = client.started().elapsed();
    let addr = client.tun_addr().expect("tunnel address");
    assert!(
        lab::in_pool(addr),
        "assigned {addr} is outside 198.18.100.10-250"
    );
    assert!(
        client.has_route(SPLIT_INCLUDE),
        "no route {SPLIT_INCLUDE} via {}: {:?}",
        client.ifname(),
        client.routes()
    );
    let route = lab.exec_client(&["ip", "-4", "route", "get", &INSIDE_HOST.to_string()]);
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    assert!(
        route.contains(&format!("dev {} ", client.ifname())),
        "{INSIDE_HOST} is not routed through {}: {route}",
        client.ifname()
    );

    let first_ping = lab::wait_ping(client.ns(), INSIDE_HOST, HANG_GUARD);
    assert!(
        first_ping.is_some(),
        "no ping through the tunnel after {HANG_GUARD:?}"
    );
    // Measured, not asserted.
    println!(
        "openconnect start to tunnel address and routes: {tunnel_up:?}, \
         to first successful ping: {:?}",
        client.started().elapsed()
    );
    assert!(lab.ping_from_client(INSIDE_HOST));

    let raw = lab.show_sessions_raw();
    println!("headend show vpn-sessiondb:\n{raw}");
    let sessions = e2e::sessiondb::parse(&raw);
    assert_eq!(sessions.len(), 1, "one session expected:\n{raw}");
    let s = expect_session(&sessions, "alice");
    assert_eq!(s.get("Assigned IP"), Some(&addr.to_string()), "{s:?}");
    assert_eq!(
        s.get("Public IP"),
        Some(&lab.client_host(0).ip.to_string()),
        "{s:?}"
    );
    assert_eq!(
        s.get("Tunnel Group").map(String::as_str),
        Some("LOCAL-PW"),
        "{s:?}"
    );
    lab.assert_headend_running();
}

/// (b) A wrong password: openconnect gives up with the server's message, no tunnel,
/// no session.
#[test]
fn wrong_password_is_refused() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let mut client = lab.spawn_client(0, "alice", "not-the-password", &[]);
    let status = client.wait_exit(HANG_GUARD).unwrap_or_else(|| {
        panic!(
            "openconnect still running after {HANG_GUARD:?} with a wrong password:\n{}",
            client.output()
        )
    });
    let output = client.output();
    assert!(
        !status.success(),
        "openconnect succeeded with a wrong password:\n{output}"
    );
    assert!(
        output.contains("Login failed"),
        "openconnect output lacks the server's \"Login failed.\":\n{output}"
    );
    assert_eq!(
        client.tun_addr(),
        None,
        "a tunnel address after a failed login"
    );
    let sessions = lab.show_sessions();
    assert!(
        sessions.is_empty(),
        "sessions after a failed login: {sessions:?}"
    );
    lab.assert_headend_running();
}

/// Kills the client's TCP connection(s) to the TLS port in the server's kernel and
/// waits until openconnect has made a new one with the same tunnel address, and pings
/// through the tunnel again.
///
/// How: `ss -K` in the headend namespace (kernel CONFIG_INET_DIAG_DESTROY, checked on
/// this machine: `zcat /proc/config.gz`). SOCK_DESTROY aborts the server's socket: the
/// server's next read fails with ECONNABORTED and the kernel sends the client a RST, so
/// openconnect sees "Read error on SSL session" and reconnects with its cookie. Only TCP
/// sockets whose peer is the client are touched (`-t dst CLIENT`): the listener and the
/// UDP (DTLS) socket stay.
fn kill_tcp_and_expect_reconnect(lab: &Lab, client: &mut Client) {
    let addr = client.tun_addr().expect("tunnel address");
    let before = lab.client_tls_ports();
    assert!(
        !before.is_empty(),
        "no TLS connection from the client to the server"
    );
    let client_ip = lab.client_host(0).ip.to_string();
    let kill = lab.exec_gw(&["ss", "-K", "-t", "-n", "dst", &client_ip]);
    assert!(kill.status.success(), "ss -K: {}", cmd::combined(&kill));
    // ss prints the sockets it destroyed.
    let killed = String::from_utf8_lossy(&kill.stdout)
        .lines()
        .filter(|l| l.contains(&client_ip))
        .count();
    assert!(
        killed >= 1,
        "ss -K destroyed no socket (kernel without CONFIG_INET_DIAG_DESTROY?):\n{}",
        cmd::combined(&kill)
    );

    let reconnected = wait_until(Duration::from_secs(60), || {
        lab.client_tls_ports()
            .into_iter()
            .find(|p| !before.contains(p))
    });
    assert!(
        reconnected.is_some(),
        "openconnect made no new TLS connection after the kill (ports before {before:?}):\n{}",
        client.output()
    );
    assert!(
        client.is_running(),
        "openconnect exited:\n{}",
        client.output()
    );
    assert_pings(lab, 0, "after the reconnect");
    assert!(
        client.is_running(),
        "openconnect exited:\n{}",
        client.output()
    );
    assert_eq!(
        client.tun_addr(),
        Some(addr),
        "address changed across the reconnect"
    );
}

/// (c) The TCP connection of the tunnel dies: openconnect reconnects with its cookie and
/// keeps its address; the headend keeps one session. `--no-dtls` so the pings after the
/// reconnect prove the new CSTP connection carries traffic.
#[test]
fn reconnect_after_tcp_kill_keeps_address() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let mut client = lab.connect("alice", lab.password("alice"), &["--no-dtls"]);
    let addr = client.tun_addr().expect("tunnel address");
    assert_pings(&lab, 0, "before the kill");
    kill_tcp_and_expect_reconnect(&lab, &mut client);

    let sessions = lab.show_sessions();
    assert_eq!(
        sessions.len(),
        1,
        "one session expected:\n{}",
        lab.show_sessions_raw()
    );
    let s = expect_session(&sessions, "alice");
    assert_eq!(s.get("Assigned IP"), Some(&addr.to_string()), "{s:?}");
    lab.assert_headend_running();
}

/// (d) `vpn-sessiondb logoff index N`: the client is told to go and exits, the session
/// is gone, and a new login gets an address again.
#[test]
fn logoff_index_ends_session() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let mut client = lab.connect("alice", lab.password("alice"), &[]);
    let addr = client.tun_addr().expect("tunnel address");
    assert_pings(&lab, 0, "before logoff");
    let sessions = lab.show_sessions();
    let index: u32 = expect_session(&sessions, "alice")
        .get("Index")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Index in {sessions:?}"));

    lab.logoff_index(index);
    let status = client.wait_exit(HANG_GUARD);
    assert!(
        status.is_some(),
        "openconnect still running {HANG_GUARD:?} after logoff:\n{}",
        client.output()
    );
    println!("openconnect after logoff: {status:?}");
    lab.wait_sessions("empty after logoff", <[Session]>::is_empty);

    let again = lab.connect("alice", lab.password("alice"), &[]);
    let addr2 = again.tun_addr().expect("tunnel address");
    assert!(lab::in_pool(addr2), "assigned {addr2} is outside the pool");
    println!("address before logoff {addr}, after {addr2}");
    assert_pings(&lab, 0, "after logging in again");
    let sessions = lab.show_sessions();
    assert_eq!(sessions.len(), 1, "{}", lab.show_sessions_raw());
    lab.assert_headend_running();
}

/// (e) alice and bob at once, from two client machines: different addresses, both ping,
/// both listed with their own public address.
#[test]
fn two_clients_at_once() {
    let Some(lab) = lab_with_headend(2) else {
        return;
    };
    let alice = lab.connect_from(0, "alice", lab.password("alice"), &[]);
    let bob = lab.connect_from(1, "bob", lab.password("bob"), &[]);
    let (a, b) = (alice.tun_addr().unwrap(), bob.tun_addr().unwrap());
    assert!(lab::in_pool(a) && lab::in_pool(b), "{a} {b}");
    assert_ne!(a, b, "alice and bob got the same address");
    assert_pings(&lab, 0, "alice");
    assert_pings(&lab, 1, "bob");
    assert_pings(&lab, 0, "alice again");

    let sessions = lab.show_sessions();
    assert_eq!(sessions.len(), 2, "{}", lab.show_sessions_raw());
    for (user, addr, host) in [("alice", a, 0), ("bob", b, 1)] {
        let s = expect_session(&sessions, user);
        assert_eq!(s.get("Assigned IP"), Some(&addr.to_string()), "{s:?}");
        assert_eq!(
            s.get("Public IP"),
            Some(&lab.client_host(host).ip.to_string()),
            "{s:?}"
        );
    }
    lab.assert_headend_running();
}

/// (f) Garbage and oddities on the TLS port from the client machine while a connected
/// client keeps working: random bytes, a TLS handshake with a half request left hanging,
/// `GET /` (200), malformed auth XML, CONNECT without or with a bogus cookie (401).
#[test]
fn garbage_on_tls_port_does_not_hurt_sessions() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let mut client = lab.connect("alice", lab.password("alice"), &[]);
    let addr = client.tun_addr().expect("tunnel address");
    assert_pings(&lab, 0, "before the garbage");
    let ns = lab.client_ns().to_owned();
    let tls_addr = lab.tls_addr();
    let io_timeout = Duration::from_secs(5);

    // 1. Random bytes over raw TCP: the server must drop the connection.
    let mut raw = probe::tcp_connect(&ns, tls_addr, io_timeout).expect("TCP connect");
    let _ = raw.write_all(&probe::random_bytes(4096));
    assert!(
        probe::peer_closes(&mut raw, HANG_GUARD),
        "the headend kept a connection open after 4 KiB of random bytes"
    );

    // 2. A TLS handshake, then half a request, left hanging (slowloris-style).
    let mut half = probe::tls_connect(&ns, tls_addr, io_timeout).expect("TLS handshake");
    half.write_all(b"POST / HTTP/1.1\r\nHost: 198.18.0.1\r\nContent-Length: 100\r\nX-Aggr")
        .expect("write half request");
    half.flush().expect("flush");

    // 3. GET / as a browser would: a small page.
    let body = lab.dir().join("get-root.html");
    let get = lab.exec_client(&[
        "curl",
        "-sk",
        "--max-time",
        "20",
        "-o",
        body.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &lab.url(),
    ]);
    let code = String::from_utf8_lossy(&get.stdout).into_owned();
    assert_eq!(
        code,
        "200",
        "GET / answered {code:?}: {}",
        cmd::combined(&get)
    );
    let size = std::fs::metadata(&body).map(|m| m.len()).unwrap_or(0);
    println!("GET / page: {size} bytes");

    // 4. An aggregate-auth POST with malformed XML: any HTTP answer, no harm.
    let post = lab.exec_client(&[
        "curl",
        "-sk",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "X-Aggregate-Auth: 1",
        "-H",
        "X-Transcend-Version: 1",
        "-H",
        "Content-Type: application/xml; charset=utf-8",
        "--data-binary",
        "<config-auth client=\"vpn\" type=\"init\"><version who=\"vpn\">v9.01",
        &lab.url(),
    ]);
    println!("malformed auth XML answered {}", cmd::combined(&post));

    // 5. CONNECT without a cookie and with a bogus one: 401.
    for cookie in ["", "Cookie: webvpn=bogus\r\n"] {
        let request = format!(
            "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: {OUTSIDE_IP}\r\n\
             User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n{cookie}\
             X-CSTP-Version: 1\r\nX-CSTP-Hostname: probe\r\nX-CSTP-MTU: 1399\r\n\
             X-CSTP-Address-Type: IPv6,IPv4\r\n\r\n"
        );
        let head = probe::https_exchange(&ns, tls_addr, request.as_bytes(), io_timeout)
            .expect("CONNECT probe");
        assert!(
            head.starts_with("HTTP/1.1 401"),
            "CONNECT with {cookie:?} answered {head:?} (want HTTP/1.1 401)"
        );
    }

    // 6. An HTTP/1.0 probe: some HTTP answer.
    let head = probe::https_exchange(&ns, tls_addr, b"GET / HTTP/1.0\r\n\r\n", io_timeout)
        .expect("HTTP/1.0 probe");
    assert!(
        head.starts_with("HTTP/1."),
        "HTTP/1.0 probe answered {head:?}"
    );

    // The tunnel still works while the half request hangs, and after it is dropped.
    assert_pings(&lab, 0, "with a half request hanging");
    drop(half);
    assert_pings(&lab, 0, "after the garbage");
    assert!(
        client.is_running(),
        "openconnect exited:\n{}",
        client.output()
    );
    assert_eq!(client.tun_addr(), Some(addr));
    let sessions = lab.show_sessions();
    assert_eq!(sessions.len(), 1, "{}", lab.show_sessions_raw());
    assert_eq!(
        expect_session(&sessions, "alice").get("Assigned IP"),
        Some(&addr.to_string())
    );
    lab.assert_headend_running();
}

/// The lab itself, without the headend: namespaces, addresses and routes are as
/// `netns/lab.sh` makes them, and nothing is left behind.
#[test]
fn lab_topology() {
    let Some(lab) = Lab::with_clients(2) else {
        return;
    };
    let names = [
        lab.client_host(0).ns.clone(),
        lab.client_host(1).ns.clone(),
        lab.gw_ns().to_owned(),
        lab.inside_ns().to_owned(),
    ];
    for host in 0..2 {
        assert!(
            lab.ping_from(host, OUTSIDE_IP),
            "client {host} cannot reach {OUTSIDE_IP}"
        );
    }
    let inside = lab.exec_inside(&["ping", "-n", "-q", "-c", "1", "-W", "2", "198.18.1.1"]);
    assert!(inside.status.success(), "{}", cmd::combined(&inside));
    let fwd = lab.exec_gw(&["sysctl", "-n", "net.ipv4.ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");
    // Before the headend runs, the inside network is unreachable from clients.
    assert!(!lab.ping_from_client(INSIDE_HOST));
    let pin = lab.pin().to_owned();
    assert_eq!(pin.len(), 44, "pin {pin}");
    let cfg = std::fs::read_to_string(lab.config_path()).unwrap();
    assert!(cfg.contains(&format!(
        "username alice password {}",
        lab.password("alice")
    )));
    assert!(!cfg.contains('@'), "unrendered placeholder in:\n{cfg}");
    let dir = lab.dir().to_owned();
    drop(lab);
    assert!(!dir.exists(), "{} left behind", dir.display());
    for ns in names {
        assert!(!e2e::netns::exists(&ns), "namespace {ns} left behind");
    }
}

/// Control: the same client steps against ocserv, the reference server, in the same
/// lab. It checks the harness and the lab (login, address, split route, ping through
/// the tunnel, reconnect after `ss -K`, wrong password) independently of the headend:
/// when this passes and a headend test fails, look at the headend.
#[test]
fn control_ocserv_connect_ping_reconnect() {
    let Some(lab) = Lab::new() else {
        return;
    };
    let Some(_ocserv) = e2e::ocserv::Ocserv::start(&lab) else {
        return;
    };
    let mut client = lab.connect("alice", lab.password("alice"), &["--no-dtls"]);
    let addr = client.tun_addr().expect("tunnel address");
    assert!(lab::in_pool(addr), "{addr}");
    assert!(client.has_route(SPLIT_INCLUDE), "{:?}", client.routes());
    assert_pings(&lab, 0, "ocserv");
    kill_tcp_and_expect_reconnect(&lab, &mut client);

    let mut bad = lab.spawn_client(0, "bob", "not-the-password", &[]);
    let status = bad.wait_exit(HANG_GUARD).expect("openconnect gives up");
    assert!(!status.success());
    assert!(bad.output().contains("Login failed"), "{}", bad.output());
    assert_eq!(bad.tun_addr(), None);
}
