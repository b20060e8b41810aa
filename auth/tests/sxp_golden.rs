//! Golden fixtures: the bytes sxpd sent in the lab (shared/lab/sxp-reference.md)
//! decode to exactly the recorded bindings, re-encode to the same bytes, and
//! the test speaker reproduces them. Test names start with `sxp_` so
//! `cargo test -p auth sxp` runs them.

use std::time::{Duration, Instant};

use auth::sxp::test_speaker::{
    self, LAB_NODE_ID, RECORDINGS, TestSpeaker, batch_bindings, decode_hex, lab_bindings,
    lab_deleted,
};
use auth::sxp::{
    Attribute, AttributeFlags, AttributeValue, Binding, BindingEvent, CloseReason, ErrorCode,
    ErrorMessage, ErrorSubCode, HoldTime, HoldTimeRange, LegacyBinding, LegacyTlv, ListenerConfig,
    Message, Mode, NodeId, Output, Prefix, PurgeReason, Role, Sgt, SxpListener, VersionRange,
};

const OWN_NODE: NodeId = NodeId(0xC612_0101);

fn hex(s: &str) -> Vec<u8> {
    decode_hex(s).expect("valid hex")
}

fn p(s: &str) -> Prefix {
    s.parse().expect("prefix")
}

fn rec(name: &str) -> Vec<Vec<u8>> {
    test_speaker::recording(name)
        .expect("recording exists")
        .messages()
}

fn config(min: u16, max: u16, versions: (u32, u32)) -> ListenerConfig {
    ListenerConfig {
        hold_time: Some(HoldTimeRange::new(min, max).expect("range")),
        versions: VersionRange::new(versions.0, versions.1).expect("versions"),
        ..ListenerConfig::new(OWN_NODE)
    }
}

fn add(prefix: &str, sgt: u16) -> Output {
    Output::Binding(BindingEvent::Add {
        prefix: p(prefix),
        sgt: Sgt(sgt),
    })
}

fn del(prefix: &str) -> Output {
    Output::Binding(BindingEvent::Delete { prefix: p(prefix) })
}

fn binding(prefix: &str, sgt: u16) -> Binding {
    Binding {
        prefix: p(prefix),
        sgt: Sgt(sgt),
    }
}

/// Feeds each message separately; returns the outputs per message.
fn run(listener: &mut SxpListener, now: Instant, messages: &[Vec<u8>]) -> Vec<Vec<Output>> {
    messages.iter().map(|m| listener.on_bytes(now, m)).collect()
}

#[test]
fn sxp_every_recorded_message_decodes_and_reencodes_exactly() {
    let mut count = 0;
    for recording in RECORDINGS {
        for ((kind, _), bytes) in recording.messages.iter().zip(recording.messages()) {
            let msg = Message::decode(&bytes)
                .unwrap_or_else(|e| panic!("{} {kind}: {e}", recording.name));
            let expected_kind = match &msg {
                Message::Open(_) => "OPEN",
                Message::OpenResp(_) => "OPEN_RESP",
                Message::Update(_) => "UPDATE",
                Message::Error(_) => "ERROR",
                Message::PurgeAll => "PURGE_ALL",
                Message::Keepalive => "KEEPALIVE",
                Message::Unknown { .. } => "unknown",
            };
            assert_eq!(*kind, expected_kind, "{}", recording.name);
            assert_eq!(
                msg.encode().expect("encodes"),
                bytes,
                "{} {kind}",
                recording.name
            );
            count += 1;
        }
    }
    assert_eq!(count, 37);
    // The KEEPALIVE the notes give for every run.
    let keepalive = hex("0000000800000006");
    assert_eq!(Message::decode(&keepalive), Ok(Message::Keepalive));
    assert_eq!(TestSpeaker::keepalive(), keepalive);
}

#[test]
fn sxp_recorded_open_fields() {
    let Message::Open(open) = Message::decode(&rec("lifecycle-v4")[0]).expect("decodes") else {
        panic!("not OPEN");
    };
    assert_eq!(open.version, 4);
    assert_eq!(open.mode, Mode::Speaker);
    assert_eq!(open.node_id(), Some(LAB_NODE_ID));
    assert_eq!(open.node_id().expect("id").to_string(), "10.0.0.1");
    assert_eq!(open.hold_time(), Some(HoldTime { min: 9, max: None }));
    assert_eq!(open.attributes[0].flags, AttributeFlags(0x50));
    assert!(open.attributes[0].flags.non_transitive() && open.attributes[0].flags.compact());
}

#[test]
fn sxp_recorded_v4_update_attributes() {
    let Message::Update(update) = Message::decode(&rec("lifecycle-v4")[1]).expect("decodes") else {
        panic!("not UPDATE");
    };
    let compact = AttributeFlags::WELL_KNOWN_COMPACT;
    assert_eq!(
        update.attributes,
        vec![
            Attribute::new(compact, AttributeValue::PeerSequence(vec![LAB_NODE_ID])),
            Attribute::new(compact, AttributeValue::Sgt(Sgt(20))),
            Attribute::new(
                compact,
                AttributeValue::Ipv4AddPrefix(vec![p("198.18.1.10/32")])
            ),
            Attribute::new(compact, AttributeValue::PeerSequence(vec![LAB_NODE_ID])),
            Attribute::new(compact, AttributeValue::Sgt(Sgt(30))),
            Attribute::new(
                compact,
                AttributeValue::Ipv4AddPrefix(vec![p("198.18.2.0/29")])
            ),
        ]
    );
    // The v4 delete: type 13, no PEER-SEQUENCE or SGT.
    let delete = Message::decode(&hex("0000001000000003100d051dc6120200")).expect("decodes");
    assert_eq!(
        delete,
        Message::Update(auth::sxp::Update {
            attributes: vec![Attribute::new(
                compact,
                AttributeValue::Ipv4DelPrefix(vec![p("198.18.2.0/29")])
            )]
        })
    );
}

#[test]
fn sxp_recorded_legacy_update_attributes() {
    let Message::Update(update) = Message::decode(&rec("lifecycle-v3")[1]).expect("decodes") else {
        panic!("not UPDATE");
    };
    assert_eq!(
        update.attributes,
        vec![
            Attribute::new(
                AttributeFlags::LEGACY,
                AttributeValue::AddIpv4(LegacyBinding {
                    addr: "198.18.1.10".parse().expect("ip"),
                    tlvs: vec![LegacyTlv::Sgt(Sgt(20))],
                })
            ),
            Attribute::new(
                AttributeFlags::LEGACY,
                AttributeValue::AddIpv4(LegacyBinding {
                    addr: "198.18.2.0".parse().expect("ip"),
                    tlvs: vec![LegacyTlv::PrefixLength(29), LegacyTlv::Sgt(Sgt(30))],
                })
            ),
        ]
    );
}

#[test]
fn sxp_recorded_error_holdtime() {
    let bytes = hex("0000000a00000004820a");
    let msg = Message::decode(&bytes).expect("decodes");
    assert_eq!(
        msg,
        Message::Error(ErrorMessage::extended(
            ErrorCode::OpenMessage,
            ErrorSubCode::UnacceptableHoldTime
        ))
    );
    assert_eq!(msg.encode().expect("encodes"), bytes);
    assert_eq!(rec("error-holdtime")[1], bytes);
}

/// A listener range of [3,5] against the speaker's minimum 9: sxpd answered
/// with this ERROR; our listener sends the same bytes and closes.
#[test]
fn sxp_listener_refuses_hold_time_like_sxpd() {
    let now = Instant::now();
    let mut listener = SxpListener::new(config(3, 5, (1, 4)), now);
    let out = listener.on_bytes(now, &rec("error-holdtime")[0]);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0], Output::Transmit(hex("0000000a00000004820a")));
    assert!(matches!(
        &out[1],
        Output::Close(CloseReason::Protocol(
            auth::sxp::ProtocolError::UnacceptableHoldTime { speaker_min: 9, .. }
        ))
    ));
    assert!(listener.is_closed());
    // The speaker's ERROR, received by a listener that connected.
    let (mut active, _) = SxpListener::connect(config(3, 5, (1, 4)), now);
    let out = active.on_bytes(now, &rec("error-holdtime")[1]);
    assert_eq!(
        out,
        vec![Output::Close(CloseReason::PeerError(
            ErrorMessage::extended(ErrorCode::OpenMessage, ErrorSubCode::UnacceptableHoldTime)
        ))]
    );
}

#[test]
fn sxp_lifecycle_v4_bindings() {
    let now = Instant::now();
    let mut listener = SxpListener::new(config(9, 30, (1, 4)), now);
    let out = run(&mut listener, now, &rec("lifecycle-v4"));
    // OPEN -> OPEN_RESP v4, mode listener, CAPABILITIES (1, 2, 3), HOLD-TIME 9..30.
    assert_eq!(
        out[0][0],
        Output::Transmit(hex(
            "00000020000000020000000400000002500606010002000300500704 0009001e"
        ))
    );
    let Output::Established(session) = &out[0][1] else {
        panic!("{:?}", out[0]);
    };
    assert_eq!(session.version, 4);
    assert_eq!(session.role, Role::Accepted);
    assert_eq!(session.peer_node_id, Some(LAB_NODE_ID));
    // [9,30] against the speaker's minimum 9 gives 9 (reference notes).
    assert_eq!(session.hold_time, Some(Duration::from_secs(9)));
    assert_eq!(listener.poll_timeout(), Some(now + Duration::from_secs(9)));

    assert_eq!(
        out[1],
        vec![add("198.18.1.10/32", 20), add("198.18.2.0/29", 30)]
    );
    assert_eq!(out[2], vec![add("2001:db8::10/128", 40)]);
    assert_eq!(out[3], vec![del("198.18.2.0/29")]);
    assert_eq!(
        out[4],
        vec![Output::Binding(BindingEvent::PurgeAll {
            reason: PurgeReason::PurgeAllMessage,
            deleted: vec![
                binding("198.18.1.10/32", 20),
                binding("2001:db8::10/128", 40)
            ],
        })]
    );
    assert_eq!(listener.binding_count(), 0);
    assert!(!listener.is_closed());
}

#[test]
fn sxp_lifecycle_v3_bindings() {
    let now = Instant::now();
    let mut listener = SxpListener::new(config(9, 30, (1, 3)), now);
    let out = run(&mut listener, now, &rec("lifecycle-v3"));
    // sxpd opens with v4; a v3 listener answers v3, mode listener, no attributes.
    assert_eq!(
        out[0][0],
        Output::Transmit(hex("00000010000000020000000300000002"))
    );
    let Output::Established(session) = &out[0][1] else {
        panic!("{:?}", out[0]);
    };
    assert_eq!(session.version, 3);
    assert_eq!(session.hold_time, None);
    assert_eq!(listener.poll_timeout(), None);
    assert_eq!(
        out[1],
        vec![add("198.18.1.10/32", 20), add("198.18.2.0/29", 30)]
    );
    assert_eq!(out[2], vec![add("2001:db8::10/128", 40)]);
    assert_eq!(out[3], vec![del("198.18.2.0/29")]);
    assert_eq!(
        out[4],
        vec![Output::Binding(BindingEvent::PurgeAll {
            reason: PurgeReason::PurgeAllMessage,
            deleted: vec![
                binding("198.18.1.10/32", 20),
                binding("2001:db8::10/128", 40)
            ],
        })]
    );
}

#[test]
fn sxp_lifecycle_v2_bindings() {
    let now = Instant::now();
    let mut listener = SxpListener::new(config(9, 30, (1, 2)), now);
    let out = run(&mut listener, now, &rec("lifecycle-v2"));
    assert_eq!(
        out[0][0],
        Output::Transmit(hex("00000010000000020000000200000002"))
    );
    assert_eq!(out[1], vec![add("2001:db8::10/128", 40)]);
    let mut expected = vec![add("198.18.1.10/32", 20)];
    expected.extend((1..=6).map(|i| add(&format!("198.18.2.{i}/32"), 30)));
    assert_eq!(out[2], expected);
    assert_eq!(
        out[3],
        (1..=6)
            .map(|i| del(&format!("198.18.2.{i}/32")))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        out[4],
        vec![Output::Binding(BindingEvent::PurgeAll {
            reason: PurgeReason::PurgeAllMessage,
            deleted: vec![
                binding("198.18.1.10/32", 20),
                binding("2001:db8::10/128", 40)
            ],
        })]
    );
}

#[test]
fn sxp_out_v1_bindings() {
    let now = Instant::now();
    let mut listener = SxpListener::new(config(9, 30, (1, 1)), now);
    let out = run(&mut listener, now, &rec("out-v1"));
    assert_eq!(
        out[0][0],
        Output::Transmit(hex("00000010000000020000000100000002"))
    );
    let mut expected = vec![add("198.18.1.10/32", 20)];
    expected.extend((1..=6).map(|i| add(&format!("198.18.2.{i}/32"), 30)));
    assert_eq!(out[1], expected);
    assert_eq!(listener.binding_count(), 7);
}

#[test]
fn sxp_out_runs_end_with_the_lab_bindings() {
    let now = Instant::now();
    for (name, versions) in [("out-v3", (1, 3)), ("out-v4", (1, 4)), ("out-v2", (1, 2))] {
        let mut listener = SxpListener::new(config(9, 30, versions), now);
        run(&mut listener, now, &rec(name));
        let got: Vec<Binding> = listener.bindings().collect();
        if name == "out-v2" {
            assert_eq!(got.len(), 8, "{name}");
        } else {
            assert_eq!(
                got,
                vec![
                    binding("198.18.1.10/32", 20),
                    binding("198.18.2.0/29", 30),
                    binding("2001:db8::10/128", 40)
                ],
                "{name}"
            );
        }
    }
}

#[test]
fn sxp_batch_v4_five_bindings() {
    let now = Instant::now();
    let mut listener = SxpListener::new(config(9, 30, (1, 4)), now);
    let out = run(&mut listener, now, &rec("batch-v4"));
    assert_eq!(
        out[1],
        vec![
            add("10.1.0.0/16", 20),
            add("198.18.1.10/32", 20),
            add("198.18.1.11/32", 20),
            add("198.18.3.0/24", 30)
        ]
    );
    assert_eq!(out[2], vec![add("2001:db8:1::/48", 30)]);
    assert_eq!(listener.binding_count(), 5);
}

#[test]
fn sxp_md5_ok_binding() {
    let now = Instant::now();
    let mut listener = SxpListener::new(config(9, 30, (1, 4)), now);
    let out = run(&mut listener, now, &rec("md5-ok"));
    assert_eq!(out[1], vec![add("198.18.1.10/32", 20)]);
}

/// The passive runs: the listener connected and sent OPEN, sxpd answered.
#[test]
fn sxp_passive_v4_and_v2() {
    let now = Instant::now();
    let (mut listener, open) = SxpListener::connect(config(9, 30, (1, 4)), now);
    assert_eq!(
        open,
        hex("00000020000000010000000400000002500606010002000300500704 0009001e")
    );
    let out = run(&mut listener, now, &rec("passive-v4"));
    let Output::Established(session) = &out[0][0] else {
        panic!("{:?}", out[0]);
    };
    assert_eq!(session.role, Role::Connected);
    assert_eq!(session.version, 4);
    assert_eq!(session.peer_node_id, Some(LAB_NODE_ID));
    assert_eq!(session.hold_time, Some(Duration::from_secs(9)));
    assert_eq!(out[1], vec![add("198.18.1.10/32", 20)]);

    let (mut listener, open) = SxpListener::connect(config(9, 30, (1, 2)), now);
    assert_eq!(open, hex("00000010000000010000000200000002"));
    let out = run(&mut listener, now, &rec("passive-v2"));
    let Output::Established(session) = &out[0][0] else {
        panic!("{:?}", out[0]);
    };
    assert_eq!(session.version, 2);
    assert_eq!(session.hold_time, None);
    assert_eq!(out[1], vec![add("198.18.1.10/32", 20)]);
}

#[test]
fn sxp_test_speaker_reproduces_recordings() {
    let speaker = TestSpeaker::default();
    assert_eq!(
        speaker,
        TestSpeaker::new(NodeId::from(std::net::Ipv4Addr::new(10, 0, 0, 1)))
    );
    for version in [2, 3, 4] {
        assert_eq!(
            speaker.lifecycle(version, &lab_bindings(), &[lab_deleted()]),
            rec(&format!("lifecycle-v{version}")),
            "lifecycle-v{version}"
        );
    }
    for version in 1..=4 {
        let mut out = vec![speaker.open()];
        out.extend(speaker.updates(version, &lab_bindings(), &[]));
        assert_eq!(out, rec(&format!("out-v{version}")), "out-v{version}");
    }
    let mut batch = vec![speaker.open()];
    batch.extend(speaker.updates(4, &batch_bindings(), &[]));
    assert_eq!(batch, rec("batch-v4"));

    let one = [(p("198.18.1.10/32"), Sgt(20))];
    let mut md5 = vec![speaker.open()];
    md5.extend(speaker.updates(4, &one, &[]));
    assert_eq!(md5, rec("md5-ok"));
    for version in [2, 4] {
        let mut passive = vec![speaker.open_resp(version)];
        passive.extend(speaker.updates(version, &one, &[]));
        assert_eq!(passive, rec(&format!("passive-v{version}")));
    }
}

#[test]
fn sxp_test_speaker_other_node_and_hold_time() {
    let speaker = TestSpeaker::new(NodeId(0xC0A8_0001)).with_hold_time_min(Some(120));
    assert_eq!(
        speaker.open(),
        hex("0000001c0000000100000004000000015005 04c0a800015007020078")
    );
    let speaker = speaker.with_hold_time_min(None);
    assert_eq!(
        speaker.open(),
        hex("00000017000000010000000400000001500504c0a80001")
    );
    assert_eq!(
        speaker.open_version(2),
        hex("00000010000000010000000200000001")
    );
    // Every update it writes decodes to the same bindings through a listener.
    let now = Instant::now();
    let mut listener = SxpListener::new(ListenerConfig::new(OWN_NODE), now);
    listener.on_bytes(now, &speaker.open());
    for m in speaker.updates(4, &batch_bindings(), &[]) {
        listener.on_bytes(now, &m);
    }
    let got: Vec<(Prefix, Sgt)> = listener.bindings().map(|b| (b.prefix, b.sgt)).collect();
    let mut want = batch_bindings();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        listener.session().map(|s| s.hold_time),
        Some(None),
        "no HOLD-TIME offered: no hold timer"
    );
}
