//! RADIUS decoding must never panic, and what decodes must re-encode to
//! something that decodes to the same packet. The authenticator checks, the
//! authorization reader and the CoA server run on the same input too.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use auth::radius::crypto::{self, MessageAuthenticatorPolicy};
use auth::radius::{Authorization, DynAuthClient, DynAuthConfig, DynAuthServer, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secret = b"fuzz-secret";
    let _ = crypto::verify_reply(data, &[0; 16], secret, MessageAuthenticatorPolicy::Required);
    let _ = crypto::verify_request(data, secret, MessageAuthenticatorPolicy::IfPresent);
    let _ = crypto::verify_access_request(data, secret, MessageAuthenticatorPolicy::IfPresent);

    if let Ok(packet) = Packet::decode(data) {
        let _ = Authorization::from_accept(&packet);
        if let Ok(bytes) = packet.encode() {
            assert_eq!(Packet::decode(&bytes).as_ref(), Ok(&packet));
        }
        for attribute in &packet.attributes {
            if let auth::radius::Attribute::UserPassword(hidden) = attribute {
                let _ = crypto::reveal_password(hidden, secret, &packet.authenticator);
            }
        }
    }

    // The CoA server with the fuzz input signed as a genuine request, so the
    // parser behind the authenticator check is reached.
    let from: SocketAddr = "198.18.1.20:1700"
        .parse()
        .unwrap_or_else(|_| unreachable!());
    let mut server = DynAuthServer::new(DynAuthConfig::new(vec![DynAuthClient {
        addr: from.ip(),
        secret: secret.to_vec(),
    }]));
    let _ = server.handle(Instant::now(), from, data, |_| Ok(()));
    if let Ok(mut packet) = Packet::decode(data) {
        packet.code = auth::radius::Code::CoaRequest;
        if let Ok(bytes) = packet.encode_request(secret) {
            let _ = server.handle(Instant::now(), from, &bytes, |_| Ok(()));
        }
    }
});
