//! SXP decoding must never panic, and what decodes must re-encode to
//! something that decodes to the same message. The framer and the listener
//! state machine run on the same input: fed in chunks whose sizes come from
//! the input, before and after an established OPEN, with timers firing.
#![no_main]

use std::time::{Duration, Instant};

use auth::sxp::test_speaker::TestSpeaker;
use auth::sxp::{Framer, ListenerConfig, Message, NodeId, SxpListener, update_changes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        if let Ok(bytes) = message.encode() {
            assert_eq!(Message::decode(&bytes).as_ref(), Ok(&message));
        }
        if let Message::Update(update) = &message {
            for version in 1..=4 {
                let ctx = auth::sxp::UpdateContext {
                    version,
                    own_node_id: NodeId(0xC612_0101),
                    peer_node_id: Some(NodeId(0x0A00_0001)),
                };
                let _ = update_changes(&update.attributes, &ctx);
            }
        }
    }

    // The framer alone: every frame it returns has the length it claims.
    let mut framer = Framer::new();
    framer.push(data);
    while let Ok(Some(frame)) = framer.next_message() {
        let _ = Message::decode(frame);
    }

    // Chunk sizes from the first byte, so splits land everywhere.
    let step = usize::from(data.first().copied().unwrap_or(0) % 16) + 1;
    let t0 = Instant::now();
    let config = ListenerConfig::new(NodeId(0xC612_0101));

    // Accepted connection, from scratch.
    let mut passive = SxpListener::new(config.clone(), t0);
    // Accepted connection already established with the lab speaker (hold 90).
    let mut established = SxpListener::new(config.clone(), t0);
    let _ = established.on_bytes(t0, &TestSpeaker::default().open());
    // Connected: the fuzz input answers our OPEN.
    let (mut active, _) = SxpListener::connect(config, t0);

    let mut now = t0;
    for chunk in data.chunks(step) {
        now += Duration::from_secs(u64::from(chunk[0] % 8));
        for listener in [&mut passive, &mut established, &mut active] {
            let _ = listener.on_bytes(now, chunk);
            if let Some(deadline) = listener.poll_timeout() {
                if deadline <= now {
                    let _ = listener.on_timeout(now);
                }
            }
        }
    }
    for listener in [&mut passive, &mut established, &mut active] {
        let _ = listener.on_timeout(now + Duration::from_secs(1000));
        let _ = listener.on_transport_closed();
        assert_eq!(listener.binding_count(), 0);
        assert!(listener.is_closed());
    }
});
