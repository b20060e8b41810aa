//! Issue 19: two headends share their sessions in a real `redis-server`; a client
//! survives the loss of its headend with the same address (see
//! `tests/src/cluster_lab.rs` for the lab).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;

use e2e::cluster_lab::{B_INSIDE, ClusterLab};
use e2e::lab::{self, HANG_GUARD, INSIDE_HOST};
use e2e::radius::{self, RADIUS_PRIMARY, RadiusServer};
use e2e::sessiondb::{field, session_of};
use e2e::{Lab, wait_until};

const TUNNEL_GROUP: &str = "RADIUS-PW";

type Record = HashMap<String, String>;

/// A lab with FreeRADIUS (accounting, SGT and Filter-Id for alice) and both nodes'
/// config; FreeRADIUS also accepts node B (198.18.1.2) as a client.
fn radius_cluster() -> Option<(ClusterLab, RadiusServer)> {
    let lab = Lab::new()?;
    let secret = radius::lab_secret(&lab);
    let mut ise = RadiusServer::start(&lab, RADIUS_PRIMARY, &secret, &[])?;
    let clients = ise.raddb().join("clients.conf");
    let mut f = OpenOptions::new()
        .append(true)
        .open(&clients)
        .unwrap_or_else(|e| panic!("{}: {e}", clients.display()));
    writeln!(
        f,
        "client headend-b {{\n\tipaddr = {B_INSIDE}\n\tproto = udp\n\tsecret = \"{secret}\"\n\
         \trequire_message_authenticator = yes\n\tnas_type = cisco\n\tshortname = headend-b\n}}"
    )
    .expect("append clients.conf");
    ise.restart();
    radius::append_headend_config(
        &lab,
        &format!(
            "{}!\naccess-list VPN-FILTER extended permit ip any any\n!\n{}",
            radius::asa_config(&secret),
            radius::tunnel_group_config(None)
        ),
    );
    let cl = ClusterLab::build(lab, &[]);
    cl.start_a();
    cl.start_b();
    Some((cl, ise))
}

fn acct_for<'a>(records: &'a [Record], status: &str, id: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| {
            r.get("Acct-Status-Type").map(String::as_str) == Some(status)
                && r.get("Acct-Session-Id").map(String::as_str) == Some(id)
        })
        .collect()
}

/// (a) Node A is killed (`kill -9`), the VIP moves to node B; openconnect
/// reconnects with its cookie and gets the same address, SGT and filter from B;
/// the inside host reaches it again (B answers ARP for it and announced it); the
/// RADIUS server sees one Start (from A) and one Stop (from B) for the session.
#[test]
fn node_killed_client_reconnects_to_the_other_node_with_the_same_address() {
    let Some((cl, ise)) = radius_cluster() else {
        return;
    };
    let lab = &cl.lab;
    let mut alice = lab.spawn_client(
        0,
        "alice",
        lab.password("alice"),
        &["--authgroup", TUNNEL_GROUP],
    );
    let addr = alice
        .wait_connected(HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&lab.headend_log(), 60)));
    assert!(
        lab::wait_ping(alice.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping through node A"
    );
    let on_a = lab.wait_sessions("alice on A", |s| session_of(s, "alice").is_some());
    let a = session_of(&on_a, "alice").expect("alice");
    let (sgt, filter) = (
        field(a, "Security Grp").to_owned(),
        field(a, "Filter Name").to_owned(),
    );
    assert!(sgt.starts_with("10"), "SGT from RADIUS on A: {a:#?}");
    let start = ise.wait_accounting("alice's Start", |rs| {
        rs.iter()
            .any(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Start"))
    });
    let id = start
        .iter()
        .find(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Start"))
        .and_then(|r| r.get("Acct-Session-Id"))
        .cloned()
        .expect("Acct-Session-Id");

    cl.kill_a();
    cl.move_vip_to_b();

    // openconnect notices the dead connection and reconnects to the VIP, now B.
    let on_b = cl.wait_b_sessions("alice connected with her address", |s| {
        session_of(s, "alice").is_some_and(|x| {
            field(x, "Assigned IP").starts_with(&addr.to_string())
                && x.get("Status").is_none_or(|v| v.contains("Connected"))
        })
    });
    let b = session_of(&on_b, "alice").expect("alice on B");
    assert_eq!(field(b, "Security Grp"), sgt, "same SGT on B: {b:#?}");
    assert_eq!(field(b, "Filter Name"), filter, "same filter on B: {b:#?}");
    assert!(
        cl.b_log().contains("taken over from node A"),
        "B logs the takeover:\n{}",
        lab::tail(&cl.b_log(), 40)
    );
    assert_eq!(alice.tun_addr(), Some(addr), "the client kept its address");
    assert!(
        lab::wait_ping(alice.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping through node B after the takeover:\n{}",
        lab::tail(&cl.b_log(), 40)
    );
    // The inside host reaches the client's address through B (proxy ARP).
    assert!(
        lab::ping(lab.inside_ns(), addr),
        "inside host cannot reach {addr} after the takeover"
    );

    // A comes back: its crash journal holds alice's Start, but the session lives
    // on at B, so A sends no Stop for it, and A no longer answers ARP for it.
    cl.restart_a();
    assert!(
        wait_until(HANG_GUARD, || lab
            .headend_log()
            .contains("live on in the cluster")
            .then_some(()))
        .is_some(),
        "restarted A did not leave alice's Stop to B:\n{}",
        lab::tail(&lab.headend_log(), 30)
    );
    assert!(
        lab::ping(lab.inside_ns(), addr),
        "inside host cannot reach {addr} after A's restart"
    );
    alice.stop();
    cl.wait_b_sessions("empty after alice's logout", <[_]>::is_empty);
    let records = ise.wait_accounting("alice's Stop", |rs| !acct_for(rs, "Stop", &id).is_empty());
    let (starts, stops) = (
        acct_for(&records, "Start", &id),
        acct_for(&records, "Stop", &id),
    );
    assert_eq!(
        (starts.len(), stops.len()),
        (1, 1),
        "one Start and one Stop for {id}: {records:#?}"
    );
    let stop = stops[0];
    assert_eq!(stop["Framed-IP-Address"], addr.to_string(), "{stop:#?}");
    assert_eq!(
        stop["NAS-IP-Address"],
        B_INSIDE.to_string(),
        "B sent the Stop: {stop:#?}"
    );
    // Nothing left in Redis: the address is free again.
    let keys = cl.redis_cli(&["--scan", "--pattern", "headend:addr4:*"]);
    assert!(
        String::from_utf8_lossy(&keys.stdout).trim().is_empty(),
        "address leases left: {}",
        String::from_utf8_lossy(&keys.stdout)
    );
}

/// (e) Redis stopped mid-session (and restarted empty, no persistence), with AUTH
/// (`redis://:PASSWORD@…`): the session keeps forwarding, a new login is refused
/// with a clear message, and once Redis is back the node writes the session back
/// (record and address lease) and new logins get other addresses.
#[test]
fn redis_outage_keeps_sessions_and_refuses_new_logins_until_it_is_back() {
    let Some(lab) = Lab::with_clients(2) else {
        return;
    };
    let password = "lab-redis-secret";
    let cl = ClusterLab::build(lab, &["--requirepass", password]);
    cl.start_a();
    let lab = &cl.lab;
    let alice = lab.connect("alice", lab.password("alice"), &[]);
    let addr = alice.tun_addr().expect("alice's address");
    let lease_key = |a: std::net::Ipv4Addr| format!("headend:addr4:VPN-POOL:{}", u32::from(a));
    let holder = |a| {
        let o = cl.redis_cli(&["GET", &lease_key(a)]);
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    assert!(
        !holder(addr).is_empty(),
        "alice's address is leased in Redis"
    );

    cl.stop_redis();
    assert!(
        wait_until(HANG_GUARD, || lab
            .headend_log()
            .contains("session store unreachable")
            .then_some(()))
        .is_some(),
        "the node did not notice Redis going away:\n{}",
        lab::tail(&lab.headend_log(), 30)
    );
    assert!(
        lab::ping(alice.ns(), INSIDE_HOST),
        "alice's tunnel stopped forwarding without Redis"
    );
    let mut bob = lab.spawn_client(1, "bob", lab.password("bob"), &[]);
    bob.wait_exit(HANG_GUARD).expect("bob's openconnect exits");
    assert!(
        bob.output().contains("session store is unreachable"),
        "bob is told why: {}",
        bob.output()
    );
    assert!(
        lab.headend_log()
            .contains("login refused: the cluster's session store (Redis) is unreachable"),
        "the log says why"
    );

    // Back, empty: the node writes alice's session back.
    cl.start_redis();
    assert!(
        wait_until(HANG_GUARD, || (!holder(addr).is_empty()).then_some(())).is_some(),
        "alice's address lease is not back in Redis:\n{}",
        lab::tail(&lab.headend_log(), 30)
    );
    let records = cl.redis_cli(&["--scan", "--pattern", "headend:sess:*"]);
    assert_eq!(
        String::from_utf8_lossy(&records.stdout).lines().count(),
        1,
        "alice's record is back"
    );
    let bob = lab.connect_from(1, "bob", lab.password("bob"), &[]);
    let bob_addr = bob.tun_addr().expect("bob's address");
    assert_ne!(bob_addr, addr, "bob got alice's address");
    assert_ne!(holder(bob_addr), holder(addr), "two sessions, two leases");
    assert!(lab::ping(alice.ns(), INSIDE_HOST), "alice still forwards");
}

/// (c) A CoA sent to node B for a session node A holds reaches A (Redis pub/sub)
/// and changes the session there (the RADIUS server gets B's CoA-ACK); B's `show
/// vpn-sessiondb` lists A's sessions with their node; a Disconnect-Request and a
/// `vpn-sessiondb logoff` given to B end sessions on A.
#[test]
fn coa_disconnect_and_logoff_given_to_the_other_node_reach_the_session() {
    let Some((cl, _ise)) = radius_cluster() else {
        return;
    };
    let lab = &cl.lab;
    let mut clients = Vec::new();
    for user in ["alice", "bob"] {
        let mut c = lab.spawn_client(0, user, lab.password(user), &["--authgroup", TUNNEL_GROUP]);
        c.wait_connected(HANG_GUARD)
            .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&lab.headend_log(), 60)));
        clients.push(c);
    }
    let on_a = lab.wait_sessions("alice on A", |s| session_of(s, "alice").is_some());
    let audit = field(session_of(&on_a, "alice").expect("alice"), "Audt Sess ID").to_owned();
    let secret = radius::lab_secret(lab);
    let to_b = format!("{B_INSIDE}:{}", radius::DYNAUTH_PORT);
    let send = |cmd: &str, attrs: &[(&str, &str)]| {
        let mut all = vec![
            ("Packet-Src-IP-Address", "198.18.1.20"),
            ("Message-Authenticator", "0x00"),
        ];
        all.extend_from_slice(attrs);
        radius::radclient(
            lab.inside_ns(),
            &to_b,
            cmd,
            &secret,
            &all,
            radius::RADCLIENT_TIMEOUT,
        )
    };
    // B lists both with their node once A's write-back put them in Redis.
    cl.wait_b_sessions("alice and bob listed with node A", |s| {
        s.len() == 2 && s.iter().all(|x| field(x, "Cluster Node") == "A")
    });
    let av = format!("audit-session-id={audit}");
    let reply = send(
        "coa",
        &[
            ("Cisco-AVPair", &av),
            ("Cisco-AVPair", "cts:security-group-tag=000b-00"),
        ],
    );
    assert!(
        reply.is("CoA-ACK"),
        "CoA via B: {reply:?}\nB:\n{}",
        lab::tail(&cl.b_log(), 30)
    );
    lab.wait_sessions("alice's SGT changed on A", |s| {
        session_of(s, "alice").is_some_and(|x| field(x, "Security Grp").starts_with("11"))
    });
    cl.wait_b_sessions("alice's new SGT shown on B", |s| {
        session_of(s, "alice").is_some_and(|x| field(x, "Security Grp").starts_with("11"))
    });

    let reply = send("disconnect", &[("User-Name", "bob")]);
    assert!(reply.is("Disconnect-ACK"), "Disconnect via B: {reply:?}");
    lab.wait_sessions("bob gone from A", |s| {
        session_of(s, "bob").is_none() && session_of(s, "alice").is_some()
    });

    let out = cl.b_cli(&["vpn-sessiondb", "logoff", "name", "alice", "noconfirm"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("logged off on other cluster nodes : 1"),
        "logoff on B: {text}"
    );
    lab.wait_sessions("alice gone from A", <[_]>::is_empty);
    // A session nobody holds: B's own NAK.
    let reply = send("disconnect", &[("User-Name", "nobody")]);
    assert!(reply.is("Disconnect-NAK"), "{reply:?}");
}

/// (b) Concurrent first CONNECTs on two nodes never share an address: two nodes
/// (in-process, each with its own session table, as two headends have) allocate
/// from one 241-address pool through the lab's real redis-server, 150 sessions
/// each, all at once. Every address goes to exactly one session; the 59 over the
/// pool's size are refused as exhausted.
#[test]
fn concurrent_logins_on_both_nodes_never_share_an_address() {
    use headend::cluster::{Cluster, ClusterArgs, ConnectRefusal};
    use headend::sessions::{NewSession, SessionAuthz, SessionTable};
    use std::sync::Arc;

    let Some(lab) = Lab::new() else {
        return;
    };
    let cl = ClusterLab::build(lab, &[]);
    let url = cl.redis_url();
    const PER_NODE: usize = 150;
    let cfg = Arc::new(
        headend::config::parse_str(
            "ip local pool VPN-POOL 198.18.100.10-198.18.100.250 mask 255.255.255.0\n\
             group-policy GP internal\n",
            "cluster-b.cfg",
        )
        .expect("config"),
    );
    let results = e2e::netns::in_netns(cl.lab.inside_ns(), move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for node in ["A", "B"] {
                let cluster = Cluster::new(&ClusterArgs {
                    cluster: Some(url.clone()),
                    node_id: Some(node.into()),
                    cluster_lease: 2,
                    ..ClusterArgs::default()
                })
                .expect("cluster")
                .expect("enabled");
                let table = Arc::new(SessionTable::new(&cfg));
                for i in 0..PER_NODE {
                    let (cluster, table, cfg) = (cluster.clone(), table.clone(), cfg.clone());
                    tasks.push(tokio::spawn(async move {
                        let user = format!("{node}-user{i}");
                        let (index, cookie) = table
                            .login(
                                NewSession {
                                    username: &user,
                                    tunnel_group: "TG",
                                    group_policy: "GP",
                                    policy: cfg.effective_policy("GP"),
                                    pools: vec!["VPN-POOL".into()],
                                    public_ip: "198.18.0.2".parse().unwrap(),
                                    authz: SessionAuthz::default(),
                                    audit_session_id: table.new_audit_session_id(),
                                },
                                std::time::Instant::now(),
                            )
                            .expect("login");
                        let r = cluster.prepare_connect(&table, &cfg, &cookie, None).await;
                        let addr = table
                            .list(std::time::Instant::now())
                            .into_iter()
                            .find(|s| s.index == index)
                            .and_then(|s| s.assigned_v4);
                        (r, addr)
                    }));
                }
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("task"));
            }
            out
        })
    });
    let mut seen = std::collections::HashSet::new();
    let (mut ok, mut exhausted) = (0, 0);
    for (r, addr) in &results {
        match r {
            Ok(()) => {
                ok += 1;
                let a = addr.expect("an address for a session that connected");
                assert!(seen.insert(a), "{a} handed to two sessions");
            }
            Err(ConnectRefusal::PoolExhausted(_)) => exhausted += 1,
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert_eq!((ok, exhausted), (241, 2 * PER_NODE - 241), "{results:?}");
    let leases = cl.redis_cli(&["--scan", "--pattern", "headend:addr4:*"]);
    assert_eq!(
        String::from_utf8_lossy(&leases.stdout).lines().count(),
        241,
        "one lease per address"
    );
}

/// `rediss://`: the node talks to a TLS-only Redis whose certificate a private CA
/// signed (`--cluster-ca`), and the session lands in the store.
#[test]
fn sessions_are_shared_over_tls_to_redis() {
    let Some(lab) = Lab::new() else {
        return;
    };
    let args = e2e::cluster_lab::redis_tls_args(lab.dir());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cl = ClusterLab::build(lab, &args);
    assert!(cl.redis_url().starts_with("rediss://"));
    cl.start_a();
    let lab = &cl.lab;
    let alice = lab.connect("alice", lab.password("alice"), &[]);
    let addr = alice.tun_addr().expect("alice's address");
    let lease = cl.redis_cli(&[
        "GET",
        &format!("headend:addr4:VPN-POOL:{}", u32::from(addr)),
    ]);
    assert!(
        !lease.stdout.trim_ascii().is_empty(),
        "no lease for {addr} over TLS: {}\n{}",
        String::from_utf8_lossy(&lease.stderr),
        lab::tail(&lab.headend_log(), 30)
    );
}

/// Fencing: node A stops (SIGSTOP: hung, not dead) long enough for its lease to
/// lapse; the client moves to B with its address. When A runs again, its next
/// write-back finds the newer fencing token and A drops its copy at once (no
/// second forwarder), listing the session as node B's.
#[test]
fn a_hung_node_that_comes_back_drops_the_session_it_lost() {
    let Some(lab) = Lab::new() else {
        return;
    };
    let cl = ClusterLab::build(lab, &[]);
    cl.start_a();
    cl.start_b();
    let lab = &cl.lab;
    let alice = lab.connect("alice", lab.password("alice"), &[]);
    let addr = alice.tun_addr().expect("alice's address");

    lab.signal_headend(libc::SIGSTOP);
    cl.move_vip_to_b();
    cl.wait_b_sessions("alice taken over with her address", |s| {
        session_of(s, "alice").is_some_and(|x| {
            field(x, "Assigned IP").starts_with(&addr.to_string())
                && field(x, "Status").contains("Connected")
        })
    });
    assert!(
        lab::wait_ping(alice.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping through B"
    );
    lab.signal_headend(libc::SIGCONT);
    assert!(
        wait_until(HANG_GUARD, || lab
            .headend_log()
            .contains("session taken over by another node")
            .then_some(()))
        .is_some(),
        "A did not drop the session it lost:\n{}",
        lab::tail(&lab.headend_log(), 30)
    );
    let on_a = lab.wait_sessions("alice listed as B's on A", |s| {
        session_of(s, "alice").is_some_and(|x| field(x, "Cluster Node") == "B")
    });
    assert_eq!(on_a.len(), 1, "A holds no copy of its own: {on_a:#?}");
    assert!(lab::ping(alice.ns(), INSIDE_HOST), "B still forwards");
}
