//! RADIUS Access-Challenge (one-time codes, MFA behind RADIUS as Duo or RSA do it):
//! the password gets an Access-Challenge with a State and a Reply-Message; the headend
//! shows openconnect a `challenge` form with that message; the response goes back in
//! a second Access-Request carrying the State. The RADIUS server here is a small
//! scripted one in the inside namespace on 198.18.1.20 (built on the `auth` codec), so
//! the exchange is exact and observable; the client is stock openconnect, which fills
//! the challenge form from `-F challenge:password=CODE`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use auth::radius::crypto::reveal_password;
use auth::radius::{Attribute, Code, Packet};
use e2e::lab::{self, HANG_GUARD, INSIDE_HOST};
use e2e::radius::{RADIUS_PRIMARY, append_headend_config, asa_config, ensure_inside_addr};
use e2e::{Lab, netns};

const SECRET: &str = "mfa-lab-secret-1";
const PASSWORD: &str = "Mfa-pw-9";
const CODE: &str = "123456";
const STATE: &[u8] = b"otp-round-1";
const PROMPT: &str = "Enter the code from your token";

/// What the scripted server received: (User-Name, password, State).
type Seen = Arc<Mutex<Vec<(String, String, Option<Vec<u8>>)>>>;

/// The scripted RADIUS server: PASSWORD without State -> Access-Challenge (State,
/// Reply-Message PROMPT); CODE with that State -> Access-Accept; anything else ->
/// Access-Reject "Wrong code". Every reply carries a Message-Authenticator.
struct MfaServer {
    seen: Seen,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MfaServer {
    fn start(lab: &Lab) -> MfaServer {
        ensure_inside_addr(lab, RADIUS_PRIMARY);
        let addr = SocketAddr::new(IpAddr::V4(RADIUS_PRIMARY), 1812);
        let sock = netns::in_netns(lab.inside_ns(), move || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(req) = Packet::decode(&buf[..n]) else {
                        continue;
                    };
                    let mut user = String::new();
                    let mut password = String::new();
                    let mut state = None;
                    for a in &req.attributes {
                        match a {
                            Attribute::UserName(u) => user = u.clone(),
                            Attribute::UserPassword(h) => {
                                password =
                                    reveal_password(h, SECRET.as_bytes(), &req.authenticator)
                                        .map(|p| String::from_utf8_lossy(&p).into_owned())
                                        .unwrap_or_default();
                            }
                            Attribute::State(s) => state = Some(s.clone()),
                            _ => {}
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push((user, password.clone(), state.clone()));
                    let mut attributes = vec![Attribute::MessageAuthenticator([0; 16])];
                    let code = match (state.as_deref(), password.as_str()) {
                        (None, PASSWORD) => {
                            attributes.push(Attribute::State(STATE.to_vec()));
                            attributes.push(Attribute::ReplyMessage(PROMPT.into()));
                            Code::AccessChallenge
                        }
                        (Some(STATE), CODE) => Code::AccessAccept,
                        _ => {
                            attributes.push(Attribute::ReplyMessage("Wrong code".into()));
                            Code::AccessReject
                        }
                    };
                    let reply = Packet {
                        code,
                        identifier: req.identifier,
                        authenticator: [0; 16],
                        attributes,
                    };
                    if let Ok(bytes) = reply.encode_reply(&req.authenticator, SECRET.as_bytes()) {
                        let _ = sock.send_to(&bytes, from);
                    }
                }
            })
        };
        MfaServer {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<(String, String, Option<Vec<u8>>)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for MfaServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A lab whose tunnel group MFA authenticates with the scripted server. Fields drop in
/// order: the server stops before the lab goes.
struct MfaLab {
    server: MfaServer,
    lab: Lab,
}

fn start() -> Option<MfaLab> {
    let lab = Lab::new()?;
    let server = MfaServer::start(&lab);
    append_headend_config(
        &lab,
        &format!(
            "{}!\n\
             tunnel-group MFA type remote-access\n\
             tunnel-group MFA general-attributes\n \
             address-pool VPN-POOL\n \
             authentication-server-group ISE\n \
             default-group-policy GP-EMPLOYEES\n\
             tunnel-group MFA webvpn-attributes\n \
             authentication aaa\n \
             group-alias MFA enable\n",
            asa_config(SECRET)
        ),
    );
    lab.start_headend();
    Some(MfaLab { server, lab })
}

/// The right password and the right code: the login is challenged once, the
/// response goes back with the State, the tunnel comes up and pings.
#[test]
fn access_challenge_asks_for_the_code_and_the_login_completes() {
    let Some(m) = start() else { return };
    let lab = &m.lab;
    let mut client = lab.spawn_client(
        0,
        "dana",
        PASSWORD,
        &[
            "--authgroup",
            "MFA",
            "-F",
            &format!("challenge:password={CODE}"),
        ],
    );
    client
        .wait_connected(HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&lab.headend_log(), 40)));
    assert!(
        lab::wait_ping(client.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping through the tunnel"
    );
    let seen = m.server.seen();
    println!("the server saw: {seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], ("dana".into(), PASSWORD.into(), None));
    assert_eq!(seen[1], ("dana".into(), CODE.into(), Some(STATE.to_vec())));
    let out = client.output();
    assert!(
        out.contains(PROMPT),
        "openconnect did not show the prompt:\n{out}"
    );
    let sessions = lab.show_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(e2e::sessiondb::field(&sessions[0], "Username"), "dana");
    assert!(lab.headend_log().contains("challenges the login"));
}

/// A wrong code: the server rejects it, openconnect gives up, no session; the
/// handle of the challenge cannot be used again.
#[test]
fn wrong_code_fails_the_login() {
    let Some(m) = start() else { return };
    let lab = &m.lab;
    let mut client = lab.spawn_client(
        0,
        "dana",
        PASSWORD,
        &["--authgroup", "MFA", "-F", "challenge:password=000000"],
    );
    let status = client
        .wait_exit(HANG_GUARD)
        .unwrap_or_else(|| panic!("openconnect still running:\n{}", client.output()));
    assert!(!status.success(), "{}", client.output());
    assert_eq!(client.tun_addr(), None::<Ipv4Addr>);
    let seen = m.server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].2.as_deref(), Some(STATE));
    assert!(lab.show_sessions().is_empty());
    assert!(
        client.output().contains("Wrong code"),
        "the server's message is not shown:\n{}",
        client.output()
    );
}
