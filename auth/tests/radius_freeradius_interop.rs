//! Interop with a real FreeRADIUS 3.2 and `radclient`, in a throwaway network
//! namespace with 198.18.0.0/15 addresses only.
//!
//! `cargo test -p auth --test radius_freeradius_interop -- --ignored --nocapture`
//! (needs root, iproute2, `freeradius` and `freeradius-utils`; it prints why
//! it skips when something is missing).
//!
//! The parent test makes namespace `radtPID` with 198.18.1.20 (FreeRADIUS) and
//! 198.18.1.1 (the headend side) on its loopback, writes a temporary raddb,
//! starts `freeradius -X` there, then runs this same test binary inside the
//! namespace (`interop_child`) which drives our sans-IO client and CoA server
//! with plain UDP sockets. Checked:
//! - FreeRADIUS accepts our Access-Requests with `require_message_authenticator
//!   = yes` (our Message-Authenticator is right) and decodes every attribute by
//!   its dictionary name (Cisco-AVPair, ASA-TunnelGroupName, ASA-ClientType,
//!   Service-Type = Authorize-Only...), and no attribute falls back to `Attr-N`;
//! - PAP: FreeRADIUS recovers our hidden 17-byte and 100-byte passwords (Accept)
//!   and rejects a wrong one (Reject, with its Reply-Message);
//! - our client verifies FreeRADIUS's Response Authenticators and
//!   Message-Authenticators, and ignores an Access-Accept that lacks a
//!   Message-Authenticator (user `nomauth`), failing with AllServersDead;
//! - the Access-Accept decodes into the expected Authorization;
//! - FreeRADIUS verifies our Accounting Request Authenticators (it answers
//!   Start/Interim/Stop) and decodes Gigawords, Class, Terminate-Cause;
//! - `radclient` sends Disconnect/CoA-Request (with Message-Authenticator) to
//!   our DynAuthServer and verifies our ACK/NAK (it prints the reply only when
//!   the Response Authenticator checks out).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auth::radius::client::{ClientConfig, Event, HostConfig, RadiusClient, RadiusError};
use auth::radius::{
    AccountingRecord, AcctStatusType, Authorization, Code, Counters, DynAuthClient, DynAuthConfig,
    DynAuthKind, DynAuthServer, ErrorCause, OutgoingRequest, Packet, SessionContext,
    TerminateCause, accounting, authorize_only, pap_authentication,
};

const SERVER: &str = "198.18.1.20";
const NAS: &str = "198.18.1.1";
const SECRET: &str = "testing123";
const COA_SECRET: &str = "coa-secret";
const LONG_PASSWORD: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-long-password!!";

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Lab {
    ns: String,
    dir: PathBuf,
    radiusd: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.radiusd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run("ip", &["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const USERS: &str = r#"
alice	Service-Type == Authorize-Only, Auth-Type := Accept
	Class := "OU=Engineering;",
	Class += "CACS:c6120101000010006590a1b2:lab/1",
	Cisco-AVPair := "cts:security-group-tag=000a-00",
	Cisco-AVPair += "ip:inacl#2=permit tcp any any eq 443",
	Cisco-AVPair += "ip:inacl#1=permit udp any any eq 53",
	Filter-Id := "VPN-FILTER",
	Framed-IP-Address := 198.18.100.50,
	Session-Timeout := 28800,
	Idle-Timeout := 1800,
	ASA-Group-Policy := "Engineering",
	ASA-Simultaneous-Logins := 2,
	Reply-Message := "authorized"

nomauth	Service-Type == Authorize-Only, Auth-Type := Accept
	Filter-Id := "X"

bob	Cleartext-Password := "a-17-byte-passwd!"

carol	Cleartext-Password := "LONG_PASSWORD"

DEFAULT	Auth-Type := Reject
	Reply-Message := "go away"
"#;

const SITE: &str = r#"
server lab {
	listen {
		type = auth
		ipaddr = 198.18.1.20
		port = 1812
	}
	listen {
		type = acct
		ipaddr = 198.18.1.20
		port = 1813
	}
	authorize {
		files
		pap
	}
	authenticate {
		Auth-Type PAP {
			pap
		}
	}
	preacct {
	}
	accounting {
		ok
	}
	post-auth {
		# FreeRADIUS before 3.2.5 signs a reply only when asked; ISE and
		# FreeRADIUS >= 3.2.5 always do. 'nomauth' shows the client refusing
		# an unsigned Access-Accept.
		if (User-Name != "nomauth") {
			update reply {
				Message-Authenticator := 0x00
			}
		}
		Post-Auth-Type REJECT {
			update reply {
				Reply-Message := "go away"
				Message-Authenticator := 0x00
			}
		}
	}
}
"#;

fn write_raddb(dir: &Path) -> Result<PathBuf, String> {
    let raddb = dir.join("raddb");
    run(
        "cp",
        &[
            "-a",
            "/etc/freeradius/3.0",
            raddb.to_str().unwrap_or_default(),
        ],
    )?;
    let io = |e: std::io::Error| e.to_string();
    for entry in std::fs::read_dir(raddb.join("mods-enabled")).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if !["always", "files", "pap"].contains(&name.to_str().unwrap_or("")) {
            std::fs::remove_file(entry.path()).map_err(io)?;
        }
    }
    for entry in std::fs::read_dir(raddb.join("sites-enabled")).map_err(io)? {
        std::fs::remove_file(entry.map_err(io)?.path()).map_err(io)?;
    }
    std::fs::write(raddb.join("sites-enabled/lab"), SITE).map_err(io)?;
    std::fs::write(
        raddb.join("clients.conf"),
        format!(
            "client lab {{\n\tipaddr = 198.18.1.0/24\n\tsecret = {SECRET}\n\trequire_message_authenticator = yes\n}}\n"
        ),
    )
    .map_err(io)?;
    let users_path = raddb.join("mods-config/files/authorize");
    let _ = std::fs::remove_file(&users_path);
    std::fs::write(&users_path, USERS.replace("LONG_PASSWORD", LONG_PASSWORD)).map_err(io)?;
    let conf = std::fs::read_to_string(raddb.join("radiusd.conf")).map_err(io)?;
    let conf = conf
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("user =") || t.starts_with("group =") {
                format!("#{l}")
            } else if t.starts_with("run_dir =") {
                format!("run_dir = {}", dir.display())
            } else if t.starts_with("logdir =") {
                format!("logdir = {}", dir.display())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(raddb.join("radiusd.conf"), conf).map_err(io)?;
    Ok(raddb)
}

#[test]
#[ignore = "needs root, iproute2, freeradius and radclient; run with --ignored"]
fn freeradius_interop() {
    if std::env::var_os("RADIUS_INTEROP_CHILD").is_some() {
        return;
    }
    let uid = Command::new("id").arg("-u").output();
    if !uid.is_ok_and(|o| o.stdout.starts_with(b"0\n")) {
        eprintln!("skipped: not root (network namespaces need it)");
        return;
    }
    for tool in ["ip", "freeradius", "radclient"] {
        if !have(tool) {
            eprintln!("skipped: {tool} is not installed");
            return;
        }
    }
    let pid = std::process::id();
    let mut lab = Lab {
        ns: format!("radt{pid}"),
        dir: std::env::temp_dir().join(format!("radius-interop-{pid}")),
        radiusd: None,
    };
    std::fs::create_dir_all(&lab.dir).unwrap();
    run("ip", &["netns", "add", &lab.ns]).unwrap();
    run("ip", &["-n", &lab.ns, "link", "set", "lo", "up"]).unwrap();
    for addr in [SERVER, NAS] {
        run(
            "ip",
            &[
                "-n",
                &lab.ns,
                "addr",
                "add",
                &format!("{addr}/32"),
                "dev",
                "lo",
            ],
        )
        .unwrap();
    }
    let raddb = write_raddb(&lab.dir).unwrap();
    let log_path = lab.dir.join("radiusd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    lab.radiusd = Some(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns, "freeradius", "-X", "-d"])
            .arg(&raddb)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("Ready to process requests") {
            break;
        }
        if started.elapsed() > Duration::from_secs(20)
            || lab
                .radiusd
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some())
        {
            panic!("freeradius did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let exe = std::env::current_exe().unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.ns])
        .arg(&exe)
        .args(["--exact", "interop_child", "--ignored", "--nocapture"])
        .env("RADIUS_INTEROP_CHILD", "1")
        .output()
        .unwrap();
    let child_out = format!(
        "{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    if let Some(mut radiusd) = lab.radiusd.take() {
        let _ = radiusd.kill();
        let _ = radiusd.wait();
    }
    let text = std::fs::read_to_string(&log_path).unwrap();
    let excerpt = || {
        let start = text.find("Ready to process requests").unwrap_or(0);
        text[start..].to_owned()
    };
    assert!(
        child.status.success(),
        "child failed:\n{child_out}\n--- freeradius -X ---\n{}",
        excerpt()
    );
    println!("{child_out}");

    // FreeRADIUS decoded every attribute of ours by its dictionary name.
    for line in [
        "Received Access-Request",
        "Message-Authenticator = 0x",
        "User-Name = \"alice\"",
        "Service-Type = Authorize-Only",
        "NAS-IP-Address = 198.18.1.1",
        "NAS-Port-Type = Virtual",
        "Calling-Station-Id = \"198.18.0.2\"",
        "Cisco-AVPair = \"audit-session-id=c6120101000010006590a1b2\"",
        "Cisco-AVPair = \"ip:source-ip=198.18.0.2\"",
        "Cisco-AVPair = \"coa-push=true\"",
        "ASA-TunnelGroupName = \"SAML-TG\"",
        "ASA-ClientType = AnyConnect-Client-SSL-VPN",
        "Service-Type = Framed-User",
        "User-Password = \"a-17-byte-passwd!\"",
        &format!("User-Password = \"{LONG_PASSWORD}\""),
        "Received Accounting-Request",
        "Acct-Status-Type = Start",
        "Acct-Status-Type = Interim-Update",
        "Acct-Status-Type = Stop",
        "Acct-Session-Id = \"A1B2C3\"",
        "Framed-IP-Address = 198.18.100.50",
        // "OU=Engineering;" and the CACS Class, echoed in order.
        "Class = 0x4f553d456e67696e656572696e673b",
        "Class = 0x434143533a",
        "Acct-Input-Octets = 100",
        "Acct-Input-Gigawords = 3",
        "Acct-Output-Gigawords = 0",
        "Acct-Input-Packets = 5",
        "Acct-Session-Time = 3600",
        "Acct-Terminate-Cause = Idle-Timeout",
        "Event-Timestamp = ",
        "Sent Accounting-Response",
        "Sent Access-Accept",
        "Sent Access-Reject",
    ] {
        assert!(
            text.contains(line),
            "freeradius -X lacks {line:?}:\n{}",
            excerpt()
        );
    }
    let after_ready = excerpt();
    for bad in [
        "Attr-26",
        "invalid Request Authenticator",
        "Invalid Message-Authenticator",
        "Shared secret is incorrect",
        "Dropping packet without response",
    ] {
        assert!(
            !after_ready.contains(bad),
            "freeradius -X has {bad:?}:\n{after_ready}"
        );
    }
}

/// Sends one request through the sans-IO client over a real socket.
fn exchange(
    client: &mut RadiusClient,
    socket: &UdpSocket,
    request: OutgoingRequest,
) -> Result<Packet, RadiusError> {
    let (id, tx) = client.start(Instant::now(), request)?;
    socket.send_to(&tx.bytes, tx.dest).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        let Some(deadline) = client.poll_timeout() else {
            panic!("request {id} vanished");
        };
        if deadline <= now {
            for event in client.on_timeout(now) {
                match event {
                    Event::Retransmit { transmit, .. } | Event::Failover { transmit, .. } => {
                        socket.send_to(&transmit.bytes, transmit.dest).unwrap();
                    }
                    Event::HostDead { .. } => {}
                    Event::Failed { request, error } if request == id => return Err(error),
                    Event::Failed { .. } => {}
                }
            }
            continue;
        }
        socket.set_read_timeout(Some(deadline - now)).unwrap();
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some((got, result)) = client.on_datagram(Instant::now(), from, &buf[..n]) {
                    assert_eq!(got, id);
                    return result;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn ctx(user: &'static str) -> SessionContext<'static> {
    SessionContext {
        user_name: user,
        nas_ip: NAS.parse().unwrap(),
        nas_identifier: None,
        client_ip: "198.18.0.2".parse().unwrap(),
        audit_session_id: "c6120101000010006590a1b2",
        tunnel_group: "SAML-TG",
    }
}

/// Runs `radclient` against our CoA server and answers its one request.
fn radclient_dynauth(
    server: &mut DynAuthServer,
    socket: &UdpSocket,
    command: &str,
    attributes: &str,
    known_session: &str,
) -> (String, Option<auth::radius::DynAuthRequest>) {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "5"])
        .arg(format!("{NAS}:1700"))
        .arg(command)
        .arg(COA_SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attributes.as_bytes())
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = socket.recv_from(&mut buf).unwrap();
    let mut seen = None;
    let reply = server
        .handle(Instant::now(), from, &buf[..n], |r| {
            seen = Some(r.clone());
            let hit = r.selectors.acct_session_id.as_deref() == Some(known_session)
                || r.selectors.audit_session_id.as_deref() == Some(known_session);
            if hit {
                Ok(())
            } else {
                Err(ErrorCause::SessionContextNotFound)
            }
        })
        .expect("CoA server dropped radclient's request");
    socket.send_to(&reply, from).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::new();
    for line in BufReader::new(&out.stdout[..])
        .lines()
        .chain(BufReader::new(&out.stderr[..]).lines())
    {
        text.push_str(&line.unwrap_or_default());
        text.push('\n');
    }
    (text, seen)
}

#[test]
#[ignore = "runs inside the namespace made by freeradius_interop"]
fn interop_child() {
    if std::env::var_os("RADIUS_INTEROP_CHILD").is_none() {
        return;
    }
    let server: SocketAddr = format!("{SERVER}:1812").parse().unwrap();
    let socket = UdpSocket::bind(format!("{NAS}:0")).unwrap();
    let mut client = RadiusClient::new(ClientConfig {
        hosts: vec![HostConfig {
            auth_addr: server,
            acct_port: 1813,
            secret: SECRET.as_bytes().to_vec(),
            timeout: Duration::from_secs(2),
            retries: 1,
            accept_unsigned_replies: false,
        }],
        max_failed_attempts: 3,
        dead_time: Duration::from_secs(60),
    });

    // Authorize-only: Accept with the ISE-style attributes.
    let accept = exchange(&mut client, &socket, authorize_only(&ctx("alice"))).unwrap();
    assert_eq!(accept.code, Code::AccessAccept);
    let authz = Authorization::from_accept(&accept);
    println!("alice: {authz:?}");
    assert!(authz.warnings.is_empty(), "{:?}", authz.warnings);
    assert_eq!(authz.group_policy.as_deref(), Some("Engineering"));
    assert_eq!(authz.sgt, Some(10));
    assert_eq!(authz.filter_id.as_deref(), Some("VPN-FILTER"));
    assert_eq!(authz.framed_ip, Some("198.18.100.50".parse().unwrap()));
    assert_eq!(authz.session_timeout, Some(Duration::from_secs(28800)));
    assert_eq!(authz.idle_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(authz.simultaneous_logins, Some(2));
    assert_eq!(
        authz.inacl,
        vec!["permit udp any any eq 53", "permit tcp any any eq 443"]
    );
    assert_eq!(authz.classes.len(), 2);
    assert_eq!(authz.reply_messages, vec!["authorized"]);

    // PAP, right and wrong passwords.
    let ok = exchange(
        &mut client,
        &socket,
        pap_authentication(&ctx("bob"), b"a-17-byte-passwd!").unwrap(),
    )
    .unwrap();
    assert_eq!(ok.code, Code::AccessAccept);
    let ok = exchange(
        &mut client,
        &socket,
        pap_authentication(&ctx("carol"), LONG_PASSWORD.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(ok.code, Code::AccessAccept);
    let reject = exchange(
        &mut client,
        &socket,
        pap_authentication(&ctx("bob"), b"wrong").unwrap(),
    )
    .unwrap();
    assert_eq!(reject.code, Code::AccessReject);
    assert_eq!(
        auth::radius::authz::reply_messages(&reject),
        vec!["go away"]
    );

    // An Access-Accept without Message-Authenticator is never taken.
    let before = client.stats().bad_authenticator;
    let unsigned = exchange(&mut client, &socket, authorize_only(&ctx("nomauth")));
    assert_eq!(unsigned.map(|p| p.code), Err(RadiusError::AllServersDead));
    assert_eq!(client.stats().bad_authenticator, before + 2);
    // The host failed one transaction; it is not dead (max_failed_attempts 3).
    assert_eq!(client.host_status()[0].dead_until, None);

    // Accounting Start / Interim-Update / Stop.
    for (status, counters, cause) in [
        (AcctStatusType::Start, None, None),
        (
            AcctStatusType::InterimUpdate,
            Some(Counters {
                input_octets: 50,
                output_octets: 60,
                input_packets: 1,
                output_packets: 2,
            }),
            None,
        ),
        (
            AcctStatusType::Stop,
            Some(Counters {
                input_octets: (3 << 32) + 100,
                output_octets: 42,
                input_packets: 5,
                output_packets: 6,
            }),
            Some(TerminateCause::IdleTimeout),
        ),
    ] {
        let record = AccountingRecord {
            status,
            context: ctx("alice"),
            acct_session_id: "A1B2C3",
            framed_ip: authz.framed_ip,
            framed_ipv6: None,
            classes: &authz.classes,
            counters,
            session_time: counters.map(|_| 3600),
            terminate_cause: cause,
            event_timestamp: Some(1_700_000_000),
        };
        let response = exchange(&mut client, &socket, accounting(&record)).unwrap();
        assert_eq!(response.code, Code::AccountingResponse);
    }

    // Dynamic authorization from radclient.
    let coa_socket = UdpSocket::bind(format!("{NAS}:1700")).unwrap();
    let mut dynauth = DynAuthServer::new(DynAuthConfig::new(vec![DynAuthClient {
        addr: NAS.parse().unwrap(),
        secret: COA_SECRET.as_bytes().to_vec(),
    }]));
    let (out, seen) = radclient_dynauth(
        &mut dynauth,
        &coa_socket,
        "disconnect",
        "Acct-Session-Id = \"A1B2C3\"\nMessage-Authenticator = 0x00\n",
        "A1B2C3",
    );
    println!("radclient disconnect:\n{out}");
    assert!(out.contains("Received Disconnect-ACK"), "{out}");
    assert_eq!(seen.unwrap().kind, DynAuthKind::Disconnect);

    let (out, seen) = radclient_dynauth(
        &mut dynauth,
        &coa_socket,
        "coa",
        "Cisco-AVPair = \"audit-session-id=c6120101000010006590a1b2\"\n\
         Cisco-AVPair += \"cts:security-group-tag=0014-00\"\n\
         Filter-Id = \"QUARANTINE\"\nMessage-Authenticator = 0x00\n",
        "c6120101000010006590a1b2",
    );
    println!("radclient coa:\n{out}");
    assert!(out.contains("Received CoA-ACK"), "{out}");
    let seen = seen.unwrap();
    assert_eq!(seen.kind, DynAuthKind::Coa);
    assert_eq!(seen.changes.sgt, Some(20));
    assert_eq!(seen.changes.filter_id.as_deref(), Some("QUARANTINE"));

    let (out, _) = radclient_dynauth(
        &mut dynauth,
        &coa_socket,
        "disconnect",
        "Acct-Session-Id = \"nope\"\nMessage-Authenticator = 0x00\n",
        "A1B2C3",
    );
    println!("radclient disconnect unknown:\n{out}");
    assert!(out.contains("Received Disconnect-NAK"), "{out}");
    assert!(
        out.contains("Error-Cause = Session-Context-Not-Found"),
        "{out}"
    );
    assert_eq!(dynauth.stats().bad_authenticator, 0);
}
