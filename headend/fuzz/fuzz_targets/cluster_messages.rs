#![no_main]
//! What a cluster node reads from Redis and from other nodes (issue 19): session
//! records, pub/sub messages and script replies. A corrupt or hostile store must
//! give clear errors, never a panic; what decodes must round-trip.
use headend::cluster::keys::{OwnOutcome, parse_owner};
use headend::cluster::record::SessionRecord;
use headend::cluster::routing::{NodeMessage, datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = SessionRecord::from_json(&text) {
        assert_eq!(SessionRecord::from_json(&r.to_json()), Ok(r));
    }
    if let Ok(m) = NodeMessage::from_json(&text) {
        assert_eq!(NodeMessage::from_json(&m.to_json()), Ok(m.clone()));
        if let NodeMessage::DynAuth { packet, .. } = &m {
            let _ = datagram(packet);
        }
    }
    let _ = parse_owner(&text);
    // A script reply: an integer code, then a bulk string.
    let code = data.first().map_or(0, |b| i64::from(*b as i8));
    let reply = [
        redis::Value::Int(code),
        redis::Value::BulkString(data.get(1..).unwrap_or_default().to_vec()),
    ];
    let _ = OwnOutcome::from_reply(&reply);
    let _ = OwnOutcome::from_reply(&reply[..1]);
});
