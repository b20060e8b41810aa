#![no_main]
//! CoA and Disconnect requests (RFC 5176) as the headend applies them: the
//! fuzz input is decoded as a RADIUS packet, re-signed as a genuine CoA- or
//! Disconnect-Request of a configured client, and its attributes (session
//! selectors, Cisco AV pairs for SGT and filter) reach the session table with
//! one live session. Nothing may panic; a session is only ever ended or changed.
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use auth::radius::{Code, DynAuthClient, DynAuthConfig, DynAuthServer, Packet};
use headend::config::Config;
use headend::sessions::{NewSession, SessionAuthz, SessionTable};
use libfuzzer_sys::fuzz_target;

const CFG: &str = "\
ip local pool P 198.18.100.10-198.18.100.11 mask 255.255.255.0
access-list ACL1 extended permit ip any any
group-policy GP internal
";

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| headend::config::parse_str(CFG, "fuzz.cfg").unwrap_or_default())
}

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    let table = SessionTable::new(cfg);
    let now = Instant::now();
    let audit = table.new_audit_session_id();
    let _ = table.login(
        NewSession {
            username: "alice",
            tunnel_group: "TG",
            group_policy: "GP",
            policy: cfg.effective_policy("GP"),
            pools: vec!["P".into()],
            public_ip: "198.18.0.2".parse().unwrap_or_else(|_| unreachable!()),
            authz: SessionAuthz::default(),
            audit_session_id: audit,
        },
        now,
    );
    let secret = b"fuzz-secret";
    let from: SocketAddr = "198.18.1.20:1700"
        .parse()
        .unwrap_or_else(|_| unreachable!());
    let mut server = DynAuthServer::new(DynAuthConfig::new(vec![DynAuthClient {
        addr: from.ip(),
        secret: secret.to_vec(),
    }]));
    let Ok(mut packet) = Packet::decode(data) else {
        return;
    };
    packet.code = if data.get(1).is_some_and(|b| b & 1 == 1) {
        Code::DisconnectRequest
    } else {
        Code::CoaRequest
    };
    if let Ok(bytes) = packet.encode_request(secret) {
        let _ = server.handle(now, from, &bytes, |req| {
            table.dynamic_authorization(req, |acl| acl == "ACL1")
        });
    }
    assert!(table.len() <= 1);
});
