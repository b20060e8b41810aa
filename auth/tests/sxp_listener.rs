//! The listener state machine with simulated time: hold-time and version
//! negotiation, hold timer and OPEN timeout, feeds split anywhere and several
//! messages per feed, protocol errors and the ERROR each one sends, binding
//! table semantics. Test names start with `sxp_` so
//! `cargo test -p auth sxp` runs them.

use std::time::{Duration, Instant};

use auth::sxp::test_speaker::{self, LAB_NODE_ID, TestSpeaker, decode_hex, lab_bindings};
use auth::sxp::{
    Attribute, AttributeFlags, AttributeValue, Binding, BindingEvent, CloseReason, ConfigError,
    ErrorCode, ErrorMessage, ErrorSubCode, HoldTimeRange, ListenerConfig, Message, NodeId, Output,
    Prefix, ProtocolError, PurgeReason, Sgt, SxpListener, Update, UpdateError, VersionRange,
};

const OWN_NODE: NodeId = NodeId(0xC612_0101);

fn hex(s: &str) -> Vec<u8> {
    decode_hex(s).expect("valid hex")
}

fn p(s: &str) -> Prefix {
    s.parse().expect("prefix")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config(min: u16, max: u16) -> ListenerConfig {
    ListenerConfig {
        hold_time: Some(HoldTimeRange::new(min, max).expect("range")),
        ..ListenerConfig::new(OWN_NODE)
    }
}

fn with_versions(mut config: ListenerConfig, min: u32, max: u32) -> ListenerConfig {
    config.versions = VersionRange::new(min, max).expect("versions");
    config
}

/// A passive listener that has taken the lab speaker's OPEN at `now`.
fn established(config: ListenerConfig, now: Instant) -> SxpListener {
    let mut l = SxpListener::new(config, now);
    let out = l.on_bytes(now, &TestSpeaker::default().open());
    assert!(
        matches!(out.last(), Some(Output::Established(_))),
        "{out:?}"
    );
    l
}

fn v4_update(speaker: &TestSpeaker, adds: &[(&str, u16)], deletes: &[&str]) -> Vec<u8> {
    let adds: Vec<(Prefix, Sgt)> = adds.iter().map(|(s, t)| (p(s), Sgt(*t))).collect();
    let deletes: Vec<Prefix> = deletes.iter().map(|s| p(s)).collect();
    let mut msgs = speaker.updates(4, &adds, &deletes);
    assert_eq!(msgs.len(), 1, "one family per helper call");
    msgs.remove(0)
}

fn update(attributes: Vec<Attribute>) -> Vec<u8> {
    Message::Update(Update { attributes })
        .encode()
        .expect("encodes")
}

fn compact(value: AttributeValue) -> Attribute {
    Attribute::new(AttributeFlags::WELL_KNOWN_COMPACT, value)
}

fn error_bytes(code: ErrorCode, sub: ErrorSubCode) -> Vec<u8> {
    Message::Error(ErrorMessage::extended(code, sub))
        .encode()
        .expect("encodes")
}

/// Asserts the listener answered with exactly this ERROR, dropped its
/// bindings (if established) and closed.
fn assert_failed(out: &[Output], error: Option<Vec<u8>>, established: bool) -> ProtocolError {
    let mut it = out.iter();
    if let Some(error) = error {
        assert_eq!(it.next(), Some(&Output::Transmit(error)), "{out:?}");
    }
    if established {
        assert!(
            matches!(
                it.next(),
                Some(Output::Binding(BindingEvent::PurgeAll {
                    reason: PurgeReason::PeerLost,
                    ..
                }))
            ),
            "{out:?}"
        );
    }
    match it.next() {
        Some(Output::Close(CloseReason::Protocol(e))) => {
            assert_eq!(it.next(), None, "{out:?}");
            e.clone()
        }
        other => panic!("expected Close(Protocol), got {other:?} in {out:?}"),
    }
}

/// Listener range, speaker minimum, negotiated hold time or refusal.
type HoldCase = (Option<(u16, u16)>, Option<u16>, Result<Option<u64>, ()>);

#[test]
fn sxp_hold_time_negotiation() {
    let now = Instant::now();
    let cases: &[HoldCase] = &[
        (Some((9, 30)), Some(9), Ok(Some(9))),
        (Some((90, 180)), Some(120), Ok(Some(120))),
        (Some((90, 180)), Some(9), Ok(Some(90))),
        (Some((90, 180)), Some(180), Ok(Some(180))),
        (Some((90, 180)), Some(181), Err(())),
        (Some((3, 5)), Some(9), Err(())),
        (Some((90, 180)), Some(2), Err(())),
        (Some((90, 180)), Some(1), Err(())),
        // 0: no preference, the listener minimum applies (as in sxpd).
        (Some((90, 180)), Some(0), Ok(Some(90))),
        (Some((90, 180)), Some(0xFFFF), Ok(None)),
        (Some((90, 180)), None, Ok(None)),
        (None, Some(9), Ok(None)),
    ];
    for &(range, speaker_min, expected) in cases {
        let config = ListenerConfig {
            hold_time: range.map(|(a, b)| HoldTimeRange::new(a, b).expect("range")),
            ..ListenerConfig::new(OWN_NODE)
        };
        let mut l = SxpListener::new(config, now);
        let open = TestSpeaker::default()
            .with_hold_time_min(speaker_min)
            .open();
        let out = l.on_bytes(now, &open);
        let case = format!("{range:?} vs {speaker_min:?}");
        match expected {
            Ok(hold) => {
                let Some(Output::Established(session)) = out.get(1) else {
                    panic!("{case}: {out:?}");
                };
                assert_eq!(session.hold_time, hold.map(secs), "{case}");
                assert_eq!(l.poll_timeout(), hold.map(|h| now + secs(h)), "{case}");
                let Some(Output::Transmit(resp)) = out.first() else {
                    panic!("{case}: {out:?}")
                };
                // The OPEN_RESP carries the listener's range, or 0xFFFF.
                let tail = match range {
                    Some((a, b)) => {
                        [&[0x50, 0x07, 0x04][..], &a.to_be_bytes(), &b.to_be_bytes()].concat()
                    }
                    None => vec![0x50, 0x07, 0x02, 0xff, 0xff],
                };
                assert!(resp.ends_with(&tail), "{case}: {resp:02x?}");
            }
            Err(()) => {
                let err = assert_failed(&out, Some(hex("0000000a00000004820a")), false);
                assert!(
                    matches!(err, ProtocolError::UnacceptableHoldTime { .. }),
                    "{case}"
                );
            }
        }
    }
}

#[test]
fn sxp_hold_timer_expiry_drops_bindings() {
    let t0 = Instant::now();
    let speaker = TestSpeaker::default();
    let mut l = established(config(9, 30), t0);
    assert_eq!(l.poll_timeout(), Some(t0 + secs(9)));
    let out = l.on_bytes(
        t0 + secs(1),
        &v4_update(
            &speaker,
            &[("198.18.1.10/32", 20), ("10.1.0.0/16", 20)],
            &[],
        ),
    );
    assert_eq!(out.len(), 2);
    // UPDATE and KEEPALIVE restart the timer.
    assert_eq!(l.poll_timeout(), Some(t0 + secs(10)));
    assert!(
        l.on_bytes(t0 + secs(8), &TestSpeaker::keepalive())
            .is_empty()
    );
    assert_eq!(l.poll_timeout(), Some(t0 + secs(17)));
    assert_eq!(l.stats().keepalives, 1);
    assert!(l.on_timeout(t0 + secs(10)).is_empty());
    assert!(
        l.on_timeout(t0 + secs(17) - Duration::from_millis(1))
            .is_empty()
    );
    // sxpd killed with SIGTERM sends no PURGE_ALL: the bindings age out here.
    let out = l.on_timeout(t0 + secs(17));
    assert_eq!(
        out,
        vec![
            Output::Binding(BindingEvent::PurgeAll {
                reason: PurgeReason::PeerLost,
                deleted: vec![
                    Binding {
                        prefix: p("10.1.0.0/16"),
                        sgt: Sgt(20)
                    },
                    Binding {
                        prefix: p("198.18.1.10/32"),
                        sgt: Sgt(20)
                    },
                ],
            }),
            Output::Close(CloseReason::HoldTimerExpired),
        ]
    );
    assert!(l.is_closed());
    assert_eq!(l.poll_timeout(), None);
    assert_eq!(l.binding_count(), 0);
    assert!(
        l.on_bytes(t0 + secs(18), &TestSpeaker::keepalive())
            .is_empty()
    );
    assert!(l.on_timeout(t0 + secs(100)).is_empty());
    assert!(l.on_transport_closed().is_empty());
}

#[test]
fn sxp_purge_all_restarts_hold_timer_and_keeps_connection() {
    let t0 = Instant::now();
    let mut l = established(config(9, 30), t0);
    let out = l.on_bytes(t0 + secs(5), &TestSpeaker::purge_all());
    assert_eq!(
        out,
        vec![Output::Binding(BindingEvent::PurgeAll {
            reason: PurgeReason::PurgeAllMessage,
            deleted: vec![]
        })]
    );
    assert_eq!(l.poll_timeout(), Some(t0 + secs(14)));
    assert!(!l.is_closed());
}

#[test]
fn sxp_no_hold_timer_without_negotiation() {
    let t0 = Instant::now();
    // v3: no hold time even though sxpd's OPEN offers one.
    let mut l = SxpListener::new(with_versions(config(9, 30), 1, 3), t0);
    l.on_bytes(t0, &TestSpeaker::default().open());
    assert_eq!(l.session().map(|s| s.version), Some(3));
    assert_eq!(l.poll_timeout(), None);
    // KEEPALIVEs are accepted anyway (sxpd sends them on v1-v3 too).
    assert!(
        l.on_bytes(t0 + secs(500), &TestSpeaker::keepalive())
            .is_empty()
    );
    assert!(l.on_timeout(t0 + secs(10_000)).is_empty());
}

#[test]
fn sxp_open_timeout() {
    let t0 = Instant::now();
    let mut l = SxpListener::new(ListenerConfig::new(OWN_NODE), t0);
    assert_eq!(l.poll_timeout(), Some(t0 + secs(120)));
    assert!(l.on_timeout(t0 + secs(119)).is_empty());
    assert_eq!(
        l.on_timeout(t0 + secs(120)),
        vec![Output::Close(CloseReason::OpenTimeout)]
    );
    let (mut l, _) = SxpListener::connect(ListenerConfig::new(OWN_NODE), t0);
    assert_eq!(l.poll_timeout(), Some(t0 + secs(120)));
    assert_eq!(
        l.on_timeout(t0 + secs(121)),
        vec![Output::Close(CloseReason::OpenTimeout)]
    );
    // A huge timeout does not overflow: no deadline.
    let cfg = ListenerConfig {
        open_timeout: Duration::MAX,
        ..ListenerConfig::new(OWN_NODE)
    };
    assert_eq!(SxpListener::new(cfg, t0).poll_timeout(), None);
}

#[test]
fn sxp_transport_close_and_shutdown_drop_bindings() {
    let t0 = Instant::now();
    let speaker = TestSpeaker::default();
    for shutdown in [false, true] {
        let mut l = established(config(9, 30), t0);
        l.on_bytes(t0, &v4_update(&speaker, &[("198.18.1.10/32", 20)], &[]));
        let out = if shutdown {
            l.shutdown()
        } else {
            l.on_transport_closed()
        };
        assert_eq!(
            out,
            vec![
                Output::Binding(BindingEvent::PurgeAll {
                    reason: PurgeReason::PeerLost,
                    deleted: vec![Binding {
                        prefix: p("198.18.1.10/32"),
                        sgt: Sgt(20)
                    }],
                }),
                Output::Close(if shutdown {
                    CloseReason::Shutdown
                } else {
                    CloseReason::TransportClosed
                }),
            ]
        );
        assert!(l.on_transport_closed().is_empty());
    }
    // Before OPEN there is nothing to purge.
    let mut l = SxpListener::new(config(9, 30), t0);
    assert_eq!(
        l.on_transport_closed(),
        vec![Output::Close(CloseReason::TransportClosed)]
    );
}

/// The whole lifecycle-v4 stream, fed whole, byte by byte and in uneven
/// chunks, gives the same outputs.
#[test]
fn sxp_feeds_split_anywhere() {
    let t0 = Instant::now();
    let mut stream = Vec::new();
    for (i, m) in test_speaker::recording("lifecycle-v4")
        .expect("recording")
        .messages()
        .into_iter()
        .enumerate()
    {
        stream.extend(m);
        if i > 0 {
            stream.extend(TestSpeaker::keepalive());
        }
    }
    let feed = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut l = SxpListener::new(config(9, 30), t0);
        let out: Vec<Output> = chunks.flat_map(|c| l.on_bytes(t0, c)).collect();
        (out, l.stats().messages_received)
    };
    let (whole, count) = feed(&mut std::iter::once(&stream[..]));
    assert_eq!(count, 9);
    assert_eq!(whole.len(), 2 + 2 + 1 + 1 + 1, "{whole:?}");
    let (bytewise, _) = feed(&mut stream.chunks(1));
    assert_eq!(bytewise, whole);
    for size in [2, 3, 5, 7, 8, 13, 29, 64] {
        let (chunked, _) = feed(&mut stream.chunks(size));
        assert_eq!(chunked, whole, "chunks of {size}");
    }
    // Uneven chunks from a fixed pseudo-random sequence.
    let mut seed = 0x2545_F491_u32;
    let mut pieces = Vec::new();
    let mut rest = &stream[..];
    while !rest.is_empty() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (seed >> 16) as usize % 40 + 1;
        let (a, b) = rest.split_at(n.min(rest.len()));
        pieces.push(a);
        rest = b;
    }
    let (random, _) = feed(&mut pieces.into_iter());
    assert_eq!(random, whole);
}

#[test]
fn sxp_several_messages_per_feed() {
    let t0 = Instant::now();
    let speaker = TestSpeaker::default();
    let mut stream = speaker.open();
    stream.extend(TestSpeaker::keepalive());
    stream.extend(v4_update(&speaker, &[("198.18.1.10/32", 20)], &[]));
    stream.extend(TestSpeaker::keepalive());
    stream.extend(v4_update(&speaker, &[], &["198.18.1.10/32"]));
    stream.extend(&TestSpeaker::keepalive()[..3]);
    let mut l = SxpListener::new(config(9, 30), t0);
    let out = l.on_bytes(t0, &stream);
    assert_eq!(out.len(), 4, "{out:?}");
    assert!(matches!(out[1], Output::Established(_)));
    assert_eq!(
        out[2],
        Output::Binding(BindingEvent::Add {
            prefix: p("198.18.1.10/32"),
            sgt: Sgt(20)
        })
    );
    assert_eq!(
        out[3],
        Output::Binding(BindingEvent::Delete {
            prefix: p("198.18.1.10/32")
        })
    );
    assert_eq!(l.stats().keepalives, 2);
    assert!(
        l.on_bytes(t0 + secs(3), &TestSpeaker::keepalive()[3..])
            .is_empty()
    );
    assert_eq!(l.stats().keepalives, 3);
    assert_eq!(l.poll_timeout(), Some(t0 + secs(12)));
}

#[test]
fn sxp_version_negotiation() {
    let t0 = Instant::now();
    let speaker = TestSpeaker::default();
    let resp_version = |out: &[Output]| match out.first() {
        Some(Output::Transmit(b)) => u32::from_be_bytes(b[8..12].try_into().expect("4")),
        other => panic!("{other:?}"),
    };
    // min(ours, theirs).
    for (offered, expected) in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 4), (0xFFFF_FFFF, 4)] {
        let mut l = SxpListener::new(config(9, 30), t0);
        let out = l.on_bytes(t0, &speaker.open_version(offered));
        assert_eq!(resp_version(&out), expected, "offered {offered}");
        assert_eq!(l.session().map(|s| s.version), Some(expected));
    }
    // Version 0: extended Unsupported Version Number.
    let mut l = SxpListener::new(config(9, 30), t0);
    let out = l.on_bytes(t0, &speaker.open_version(0));
    assert_failed(&out, Some(hex("0000000a00000004 8208")), false);
    // A v4-only listener and a v2 speaker: legacy Version Mismatch.
    let mut l = SxpListener::new(with_versions(config(9, 30), 4, 4), t0);
    let out = l.on_bytes(t0, &speaker.open_version(2));
    let err = assert_failed(&out, Some(hex("0000000c00000004 00000001")), false);
    assert_eq!(
        err,
        ProtocolError::UnsupportedVersion {
            offered: 2,
            min: 4,
            max: 4
        }
    );
    // We connected offering v3; an OPEN_RESP claiming v4 is refused.
    let (mut l, open) = SxpListener::connect(with_versions(config(9, 30), 1, 3), t0);
    assert_eq!(open, hex("00000010000000010000000300000002"));
    let out = l.on_bytes(t0, &speaker.open_resp(4));
    assert_failed(&out, Some(hex("0000000c00000004 00000001")), false);
    // And a v3 OPEN_RESP is taken.
    let (mut l, _) = SxpListener::connect(with_versions(config(9, 30), 1, 3), t0);
    let out = l.on_bytes(t0, &speaker.open_resp(3));
    assert!(
        matches!(&out[..], [Output::Established(s)] if s.version == 3),
        "{out:?}"
    );
}

#[test]
fn sxp_connected_listener_negotiates_hold_time_from_open_resp() {
    let t0 = Instant::now();
    let (mut l, _) = SxpListener::connect(ListenerConfig::new(OWN_NODE), t0);
    let out = l.on_bytes(
        t0,
        &test_speaker::recording("passive-v4").expect("rec").stream(),
    );
    let Output::Established(session) = &out[0] else {
        panic!("{out:?}")
    };
    // ASA default 90..180 against sxpd's minimum 9.
    assert_eq!(session.hold_time, Some(secs(90)));
    assert_eq!(l.poll_timeout(), Some(t0 + secs(90)));
    assert_eq!(l.binding_count(), 1);
}

#[test]
fn sxp_unexpected_messages() {
    let t0 = Instant::now();
    let speaker = TestSpeaker::default();
    let header_err = error_bytes(ErrorCode::MessageHeader, ErrorSubCode::Unspecified);
    let open_err = error_bytes(ErrorCode::OpenMessage, ErrorSubCode::Unspecified);
    // UPDATE, KEEPALIVE, PURGE_ALL before OPEN.
    for msg in [
        v4_update(&speaker, &[("10.0.0.1/32", 1)], &[]),
        TestSpeaker::keepalive(),
        TestSpeaker::purge_all(),
    ] {
        let mut l = SxpListener::new(config(9, 30), t0);
        let err = assert_failed(&l.on_bytes(t0, &msg), Some(header_err.clone()), false);
        assert!(matches!(
            err,
            ProtocolError::UnexpectedMessage {
                state: "awaiting OPEN",
                ..
            }
        ));
    }
    // OPEN_RESP to an accepted connection, OPEN to a connected one.
    let mut l = SxpListener::new(config(9, 30), t0);
    assert_failed(
        &l.on_bytes(t0, &speaker.open_resp(4)),
        Some(open_err.clone()),
        false,
    );
    let (mut l, _) = SxpListener::connect(config(9, 30), t0);
    assert_failed(
        &l.on_bytes(t0, &speaker.open()),
        Some(open_err.clone()),
        false,
    );
    // A second OPEN once established.
    let mut l = established(config(9, 30), t0);
    assert_failed(
        &l.on_bytes(t0, &speaker.open()),
        Some(open_err.clone()),
        true,
    );
    // An unknown message type once established.
    let mut l = established(config(9, 30), t0);
    let err = assert_failed(
        &l.on_bytes(t0, &hex("0000000800000063")),
        Some(header_err),
        true,
    );
    assert!(matches!(err, ProtocolError::UnexpectedMessage { .. }));
    // The peer says it is a listener too.
    let mut l = SxpListener::new(config(9, 30), t0);
    let mut open = speaker.open();
    open[15] = 2;
    assert_failed(&l.on_bytes(t0, &open), Some(open_err), false);
    // v4 OPEN without NODE-ID.
    let mut l = SxpListener::new(config(9, 30), t0);
    let open = hex("000000150000000100000004000000015007020009");
    assert_failed(
        &l.on_bytes(t0, &open),
        Some(error_bytes(
            ErrorCode::OpenMessage,
            ErrorSubCode::MissingWellKnownAttribute,
        )),
        false,
    );
}

#[test]
fn sxp_malformed_update_v4() {
    let t0 = Instant::now();
    let speaker = TestSpeaker::default();
    // ADD-PREFIX without SGT, after a good UPDATE: ERROR, bindings dropped.
    let mut l = established(config(9, 30), t0);
    l.on_bytes(t0, &v4_update(&speaker, &[("198.18.1.10/32", 20)], &[]));
    let bad = update(vec![
        compact(AttributeValue::PeerSequence(vec![LAB_NODE_ID])),
        compact(AttributeValue::Ipv4AddPrefix(vec![p("10.0.0.0/8")])),
    ]);
    let out = l.on_bytes(t0, &bad);
    let err = assert_failed(
        &out,
        Some(error_bytes(
            ErrorCode::UpdateMessage,
            ErrorSubCode::MissingWellKnownAttribute,
        )),
        true,
    );
    assert!(matches!(
        err,
        ProtocolError::Update(UpdateError::MissingSgt(_))
    ));
    let Output::Binding(BindingEvent::PurgeAll { deleted, .. }) = &out[1] else {
        panic!()
    };
    assert_eq!(deleted.len(), 1);
    // An attribute running past the message: Malformed Attribute List.
    let mut l = established(config(9, 30), t0);
    let out = l.on_bytes(t0, &hex("0000000c00000003 10110400"));
    assert_failed(
        &out,
        Some(error_bytes(
            ErrorCode::UpdateMessage,
            ErrorSubCode::MalformedAttributeList,
        )),
        true,
    );
    // The invalid UPDATE is not applied in part.
    let mut l = established(config(9, 30), t0);
    let half_bad = update(vec![
        compact(AttributeValue::PeerSequence(vec![LAB_NODE_ID])),
        compact(AttributeValue::Sgt(Sgt(5))),
        compact(AttributeValue::Ipv4AddPrefix(vec![p("10.0.0.0/8")])),
        compact(AttributeValue::HoldTime(auth::sxp::HoldTime {
            min: 9,
            max: None,
        })),
    ]);
    let out = l.on_bytes(t0, &half_bad);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Binding(BindingEvent::Add { .. })))
    );
    assert_failed(
        &out,
        Some(error_bytes(
            ErrorCode::UpdateMessage,
            ErrorSubCode::UnexpectedAttribute,
        )),
        true,
    );
}

#[test]
fn sxp_malformed_update_legacy_gets_legacy_error() {
    let t0 = Instant::now();
    let mut l = SxpListener::new(with_versions(config(9, 30), 1, 3), t0);
    l.on_bytes(t0, &TestSpeaker::default().open());
    // ADD-IPv4 without an SGT TLV.
    let out = l.on_bytes(t0, &hex("0000001400000003 00000001 00000004 0a000001"));
    let err = assert_failed(&out, Some(hex("0000000c00000004 00000002")), true);
    assert!(matches!(
        err,
        ProtocolError::Update(UpdateError::LegacySgtCount { count: 0, .. })
    ));
}

#[test]
fn sxp_unknown_attributes_optional_vs_mandatory() {
    let t0 = Instant::now();
    let unknown = |flags: u8| {
        Attribute::new(
            AttributeFlags(flags),
            AttributeValue::Unknown {
                typ: 99,
                value: vec![7],
            },
        )
    };
    // UPDATE: optional skipped, the rest applied.
    let mut l = established(config(9, 30), t0);
    let msg = update(vec![
        unknown(0x90),
        compact(AttributeValue::PeerSequence(vec![LAB_NODE_ID])),
        compact(AttributeValue::Sgt(Sgt(7))),
        compact(AttributeValue::Ipv4AddPrefix(vec![p("10.7.0.0/16")])),
    ]);
    let out = l.on_bytes(t0, &msg);
    assert_eq!(
        out,
        vec![Output::Binding(BindingEvent::Add {
            prefix: p("10.7.0.0/16"),
            sgt: Sgt(7)
        })]
    );
    assert_eq!(l.stats().ignored_optional_attributes, 1);
    // UPDATE: mandatory refused.
    let out = l.on_bytes(t0, &update(vec![unknown(0x10)]));
    assert_failed(
        &out,
        Some(error_bytes(
            ErrorCode::UpdateMessage,
            ErrorSubCode::UnexpectedAttribute,
        )),
        true,
    );
    // OPEN: optional unknown and a misplaced UPDATE attribute are skipped.
    let mut open = auth::sxp::Open {
        version: 4,
        mode: auth::sxp::Mode::Speaker,
        attributes: vec![
            Attribute::new(
                AttributeFlags::NON_TRANSITIVE_COMPACT,
                AttributeValue::NodeId(LAB_NODE_ID),
            ),
            unknown(0xD0),
            compact(AttributeValue::Sgt(Sgt(1))),
        ],
    };
    let mut l = SxpListener::new(config(9, 30), t0);
    let out = l.on_bytes(t0, &Message::Open(open.clone()).encode().expect("encodes"));
    assert!(
        matches!(out.get(1), Some(Output::Established(_))),
        "{out:?}"
    );
    assert_eq!(l.stats().ignored_optional_attributes, 1);
    assert_eq!(l.stats().ignored_misplaced_attributes, 1);
    // OPEN: mandatory unknown refused.
    open.attributes.push(unknown(0x50));
    let mut l = SxpListener::new(config(9, 30), t0);
    let out = l.on_bytes(t0, &Message::Open(open).encode().expect("encodes"));
    assert_failed(
        &out,
        Some(error_bytes(
            ErrorCode::OpenMessage,
            ErrorSubCode::UnexpectedAttribute,
        )),
        false,
    );
}

#[test]
fn sxp_peer_sequence_loop_and_origin() {
    let t0 = Instant::now();
    let mut l = established(config(9, 30), t0);
    let looped = update(vec![
        compact(AttributeValue::PeerSequence(vec![LAB_NODE_ID, OWN_NODE])),
        compact(AttributeValue::Sgt(Sgt(5))),
        compact(AttributeValue::Ipv4AddPrefix(vec![
            p("10.0.0.0/8"),
            p("10.1.0.0/16"),
        ])),
    ]);
    assert!(l.on_bytes(t0, &looped).is_empty());
    assert_eq!(l.stats().looped_prefixes, 2);
    assert_eq!(l.binding_count(), 0);
    let wrong_origin = update(vec![
        compact(AttributeValue::PeerSequence(vec![NodeId(99)])),
        compact(AttributeValue::Sgt(Sgt(5))),
        compact(AttributeValue::Ipv4AddPrefix(vec![p("10.0.0.0/8")])),
    ]);
    let err = assert_failed(
        &l.on_bytes(t0, &wrong_origin),
        Some(error_bytes(
            ErrorCode::UpdateMessage,
            ErrorSubCode::MalformedAttribute,
        )),
        true,
    );
    assert!(matches!(
        err,
        ProtocolError::Update(UpdateError::PeerSequenceOrigin { .. })
    ));
}

#[test]
fn sxp_binding_table_semantics() {
    let t0 = Instant::now();
    let speaker = TestSpeaker::default();
    let mut l = established(config(9, 30), t0);
    let add = |l: &mut SxpListener, prefix: &str, sgt: u16| {
        l.on_bytes(t0, &v4_update(&speaker, &[(prefix, sgt)], &[]))
    };
    assert_eq!(add(&mut l, "10.0.0.0/8", 5).len(), 1);
    // Same binding again: no event. New SGT: an Add that replaces.
    assert!(add(&mut l, "10.0.0.0/8", 5).is_empty());
    assert_eq!(
        add(&mut l, "10.0.0.0/8", 6),
        vec![Output::Binding(BindingEvent::Add {
            prefix: p("10.0.0.0/8"),
            sgt: Sgt(6)
        })]
    );
    // Deleting what is not there: no event.
    assert!(
        l.on_bytes(t0, &v4_update(&speaker, &[], &["10.9.0.0/16"]))
            .is_empty()
    );
    assert_eq!(
        l.bindings().collect::<Vec<_>>(),
        vec![Binding {
            prefix: p("10.0.0.0/8"),
            sgt: Sgt(6)
        }]
    );
    assert_eq!(l.stats().bindings_added, 2);
    assert_eq!(l.stats().updates, 4);
}

#[test]
fn sxp_binding_limit() {
    let t0 = Instant::now();
    let cfg = ListenerConfig {
        max_bindings: 2,
        ..config(9, 30)
    };
    let mut l = established(cfg, t0);
    let adds: Vec<(Prefix, Sgt)> = lab_bindings();
    let mut out = Vec::new();
    for m in TestSpeaker::default().updates(4, &adds, &[]) {
        out.extend(l.on_bytes(t0, &m));
    }
    assert_eq!(out.len(), 4, "{out:?}");
    assert!(
        matches!(&out[2], Output::Binding(BindingEvent::PurgeAll { deleted, .. }) if deleted.len() == 2)
    );
    assert_eq!(out[3], Output::Close(CloseReason::BindingLimit(2)));
}

#[test]
fn sxp_peer_error_and_bad_error() {
    let t0 = Instant::now();
    let mut l = established(config(9, 30), t0);
    let out = l.on_bytes(t0, &hex("0000000a000000048306"));
    assert_eq!(
        out,
        vec![
            Output::Binding(BindingEvent::PurgeAll {
                reason: PurgeReason::PeerLost,
                deleted: vec![]
            }),
            Output::Close(CloseReason::PeerError(ErrorMessage::extended(
                ErrorCode::UpdateMessage,
                ErrorSubCode::MalformedAttribute
            ))),
        ]
    );
    // A malformed ERROR is not answered with an ERROR.
    let mut l = established(config(9, 30), t0);
    let out = l.on_bytes(t0, &hex("0000000900000004 83"));
    assert_failed(&out, None, true);
}

#[test]
fn sxp_framing_error_mid_stream() {
    let t0 = Instant::now();
    let mut l = established(config(9, 30), t0);
    let mut stream = TestSpeaker::keepalive();
    stream.extend(hex("0000000400000006"));
    let out = l.on_bytes(t0, &stream);
    let err = assert_failed(
        &out,
        Some(error_bytes(
            ErrorCode::MessageHeader,
            ErrorSubCode::Unspecified,
        )),
        true,
    );
    assert!(matches!(err, ProtocolError::Frame(_)));
    assert_eq!(l.stats().keepalives, 1);
}

#[test]
fn sxp_config_validation() {
    assert!(HoldTimeRange::new(90, 180).is_ok());
    assert!(HoldTimeRange::new(1, 1).is_ok());
    assert_eq!(
        HoldTimeRange::new(0, 5),
        Err(ConfigError::HoldTime { min: 0, max: 5 })
    );
    assert_eq!(
        HoldTimeRange::new(6, 5),
        Err(ConfigError::HoldTime { min: 6, max: 5 })
    );
    assert!(HoldTimeRange::new(1, 65535).is_err());
    assert_eq!(HoldTimeRange::default(), HoldTimeRange::ASA_DEFAULT);
    assert_eq!(
        (
            HoldTimeRange::ASA_DEFAULT.min(),
            HoldTimeRange::ASA_DEFAULT.max()
        ),
        (90, 180)
    );
    assert!(VersionRange::new(1, 4).is_ok());
    assert!(VersionRange::new(0, 4).is_err());
    assert!(VersionRange::new(3, 2).is_err());
    assert!(VersionRange::new(1, 5).is_err());
    assert_eq!(VersionRange::default(), VersionRange::ALL);
    let cfg = ListenerConfig::new(OWN_NODE);
    assert_eq!(cfg.hold_time, Some(HoldTimeRange::ASA_DEFAULT));
    assert_eq!(cfg.versions, VersionRange::ALL);
}
