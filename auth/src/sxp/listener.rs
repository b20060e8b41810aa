//! The listener side of one SXP connection, sans-IO: bytes and `Instant`s in,
//! bytes, binding events and a timer out. One [`SxpListener`] per TCP
//! connection; the I/O layer owns the socket (and TCP-MD5, see the module
//! docs of [`super`]).
//!
//! Connection setup (draft-smith-kandula-sxp section 3.1.4): the side that
//! opened TCP sends OPEN, the other answers OPEN_RESP.
//! - [`SxpListener::new`]: an accepted connection. Waits for the speaker's
//!   OPEN and answers OPEN_RESP with version min(ours, theirs).
//! - [`SxpListener::connect`]: a connection we opened. Sends OPEN and waits
//!   for the speaker's OPEN_RESP.
//!
//! Hold time (section 4.4.2), the listener's rules as sxpd applies them:
//! the speaker offers a minimum, the listener has a range [min, max]
//! (`cts sxp listener hold-time MIN MAX`, ASA default 90 180). The hold time
//! is max(speaker minimum, listener minimum); a speaker minimum above the
//! listener maximum, or of 1 or 2 seconds, is answered with ERROR
//! OPEN / Unacceptable Hold Time (`0000000a 00000004 820a`) and the
//! connection ends. No HOLD-TIME attribute, 0xFFFF on either side, or a
//! version below 4: no keepalives, no hold timer. The listener's OPEN /
//! OPEN_RESP carries its whole range; the speaker computes the same value.
//! KEEPALIVE, UPDATE and PURGE_ALL restart the hold timer; when it runs out
//! the speaker is gone: its bindings are dropped (sxpd killed with SIGTERM
//! sends no PURGE_ALL, so this is how they age out). No ERROR is sent then:
//! the draft names a Hold Timer Expired error but defines no code for it.
//!
//! Bindings: the listener keeps this connection's table, so an UPDATE turns
//! into [`BindingEvent::Add`] / [`BindingEvent::Delete`] for actual changes
//! only, and PURGE_ALL or the end of the connection (hold timer, TCP close,
//! ERROR either way) into one [`BindingEvent::PurgeAll`] that lists what was
//! removed. Merging several peers' tables (priority, longest prefix) is the
//! caller's job.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::attribute::{
    Attribute, AttributeValue, Capability, HOLD_TIME_MINIMUM, HOLD_TIME_UNUSED, HoldTime, NodeId,
    Prefix, Sgt,
};
use super::framer::Framer;
use super::message::{
    DecodeError, ErrorCode, ErrorMessage, ErrorSubCode, Header, LegacyErrorCode, MAX_VERSION,
    Message, MessageType, Mode, Open,
};
use super::update::{BindingChange, UpdateContext, UpdateError, update_changes};

/// Why a configuration value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("hold-time {min} {max}: need 1 <= minimum <= maximum <= 65534")]
    HoldTime { min: u16, max: u16 },
    #[error("versions {min}..={max}: need 1 <= min <= max <= 4")]
    Versions { min: u32, max: u32 },
}

/// The listener's acceptable hold-time range in seconds
/// (`cts sxp listener hold-time MIN MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTimeRange {
    min: u16,
    max: u16,
}

impl HoldTimeRange {
    /// ASA's default for a listener: 90 to 180 seconds.
    pub const ASA_DEFAULT: Self = Self { min: 90, max: 180 };

    /// The ASA command accepts 1..=65534 with minimum <= maximum (65535 is
    /// the "unused" marker). Peers such as sxpd refuse a minimum below 3.
    pub fn new(min: u16, max: u16) -> Result<Self, ConfigError> {
        if min == 0 || min > max || max == HOLD_TIME_UNUSED {
            return Err(ConfigError::HoldTime { min, max });
        }
        Ok(Self { min, max })
    }

    pub fn min(&self) -> u16 {
        self.min
    }

    pub fn max(&self) -> u16 {
        self.max
    }
}

impl Default for HoldTimeRange {
    fn default() -> Self {
        Self::ASA_DEFAULT
    }
}

/// The protocol versions this listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    min: u32,
    max: u32,
}

impl VersionRange {
    /// Versions 1 to 4.
    pub const ALL: Self = Self {
        min: 1,
        max: MAX_VERSION,
    };

    pub fn new(min: u32, max: u32) -> Result<Self, ConfigError> {
        if min == 0 || min > max || max > MAX_VERSION {
            return Err(ConfigError::Versions { min, max });
        }
        Ok(Self { min, max })
    }

    pub fn min(&self) -> u32 {
        self.min
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    pub fn contains(&self, version: u32) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

impl Default for VersionRange {
    fn default() -> Self {
        Self::ALL
    }
}

/// Per-listener settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Our NODE-ID. Not sent (the draft asks NODE-ID of speakers only) but
    /// used for loop detection in PEER-SEQUENCE.
    pub node_id: NodeId,
    /// Acceptable hold times; `None` turns keepalives off (sends 0xFFFF).
    pub hold_time: Option<HoldTimeRange>,
    pub versions: VersionRange,
    /// How long to wait for OPEN (accepted) or OPEN_RESP (connected).
    pub open_timeout: Duration,
    /// Most bindings one connection may hold; more ends the connection.
    pub max_bindings: usize,
}

impl ListenerConfig {
    /// ASA defaults: hold time 90..=180, versions 1..=4, OPEN within 120 s,
    /// at most 1 Mi bindings per peer.
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            hold_time: Some(HoldTimeRange::ASA_DEFAULT),
            versions: VersionRange::ALL,
            open_timeout: Duration::from_secs(120),
            max_bindings: 1 << 20,
        }
    }
}

/// Which side opened the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The speaker connected to us; it sends OPEN.
    Accepted,
    /// We connected to the speaker; we sent OPEN.
    Connected,
}

/// What OPEN / OPEN_RESP settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub role: Role,
    pub version: u32,
    /// The speaker's NODE-ID (v4).
    pub peer_node_id: Option<NodeId>,
    /// Negotiated hold time; `None`: no keepalives, no hold timer.
    pub hold_time: Option<Duration>,
    /// What the speaker offered (informational).
    pub peer_hold_time: Option<HoldTime>,
    pub peer_capabilities: Vec<Capability>,
}

/// One IP-to-SGT binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binding {
    pub prefix: Prefix,
    pub sgt: Sgt,
}

/// Why every binding of the peer went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeReason {
    /// The speaker sent PURGE_ALL; the connection stays.
    PurgeAllMessage,
    /// The connection is ending; a [`Output::Close`] follows.
    PeerLost,
}

/// A change to this connection's bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingEvent {
    /// New binding, or a new SGT for a known prefix (replaces it).
    Add { prefix: Prefix, sgt: Sgt },
    /// A binding that existed is gone.
    Delete { prefix: Prefix },
    /// Every binding of this peer is gone; `deleted` lists them (sorted), so
    /// a consumer may apply it as deletions.
    PurgeAll {
        reason: PurgeReason,
        deleted: Vec<Binding>,
    },
}

/// A protocol violation we detected. Most are answered with an ERROR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed {typ:?}: {source}")]
    Decode {
        typ: MessageType,
        source: DecodeError,
    },
    #[error("cannot frame the stream: {0}")]
    Frame(DecodeError),
    #[error("{typ:?} not expected while {state}")]
    UnexpectedMessage {
        typ: MessageType,
        state: &'static str,
    },
    #[error("version {offered} is not acceptable (accepting {min}..={max})")]
    UnsupportedVersion { offered: u32, min: u32, max: u32 },
    #[error("peer mode {0:?}, expected speaker")]
    UnexpectedMode(Mode),
    #[error(
        "speaker minimum hold time {speaker_min} s is not acceptable (listener range {range:?})"
    )]
    UnacceptableHoldTime {
        speaker_min: u16,
        range: Option<HoldTimeRange>,
    },
    #[error("version 4 {0:?} without NODE-ID")]
    MissingNodeId(MessageType),
    #[error("unknown mandatory attribute {typ} in {msg:?}")]
    UnknownMandatoryAttribute { msg: MessageType, typ: u32 },
    #[error("UPDATE refused: {0}")]
    Update(#[from] UpdateError),
}

impl ProtocolError {
    /// The ERROR that answers this violation, in the form of `version`
    /// (section 4.6: extended for v4, legacy codes for v1-v3); `None` when
    /// nothing is sent (an ERROR is never answered with an ERROR).
    pub fn error_message(&self, version: u32) -> Option<ErrorMessage> {
        let (code, sub_code) = match self {
            Self::Decode {
                typ: MessageType::Error,
                ..
            } => return None,
            Self::Decode { typ, source } => source.error_code(*typ),
            Self::Frame(_) => (ErrorCode::MessageHeader, ErrorSubCode::Unspecified),
            Self::UnexpectedMessage { typ, .. } => match typ {
                MessageType::Open | MessageType::OpenResp => {
                    (ErrorCode::OpenMessage, ErrorSubCode::Unspecified)
                }
                _ => (ErrorCode::MessageHeader, ErrorSubCode::Unspecified),
            },
            Self::UnsupportedVersion { .. } => {
                if version < 4 {
                    return Some(ErrorMessage::Legacy {
                        code: LegacyErrorCode::VersionMismatch,
                    });
                }
                (
                    ErrorCode::OpenMessage,
                    ErrorSubCode::UnsupportedVersionNumber,
                )
            }
            Self::UnexpectedMode(_) => (ErrorCode::OpenMessage, ErrorSubCode::Unspecified),
            // Only v4 negotiates hold time, so this one is always extended.
            Self::UnacceptableHoldTime { .. } => {
                return Some(ErrorMessage::extended(
                    ErrorCode::OpenMessage,
                    ErrorSubCode::UnacceptableHoldTime,
                ));
            }
            Self::MissingNodeId(_) => (
                ErrorCode::OpenMessage,
                ErrorSubCode::MissingWellKnownAttribute,
            ),
            Self::UnknownMandatoryAttribute { msg, .. } => (
                if *msg == MessageType::Update {
                    ErrorCode::UpdateMessage
                } else {
                    ErrorCode::OpenMessage
                },
                ErrorSubCode::UnexpectedAttribute,
            ),
            Self::Update(e) => (ErrorCode::UpdateMessage, e.sub_code()),
        };
        if version < 4 {
            return Some(ErrorMessage::Legacy {
                code: LegacyErrorCode::MessageParseError,
            });
        }
        Some(ErrorMessage::extended(code, sub_code))
    }
}

/// Why the connection ended. The I/O layer closes TCP after writing any
/// [`Output::Transmit`] that came before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    HoldTimerExpired,
    OpenTimeout,
    /// TCP closed or failed ([`SxpListener::on_transport_closed`]).
    TransportClosed,
    /// [`SxpListener::shutdown`].
    Shutdown,
    /// The speaker sent ERROR.
    PeerError(ErrorMessage),
    /// We found a violation (and sent the ERROR before, if any).
    Protocol(ProtocolError),
    /// The speaker sent more than `max_bindings`.
    BindingLimit(usize),
}

/// What the state machine asks of the caller, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes to write to the connection.
    Transmit(Vec<u8>),
    /// OPEN / OPEN_RESP exchange done.
    Established(Session),
    Binding(BindingEvent),
    /// The connection is over; further input is ignored.
    Close(CloseReason),
}

/// Counters for metrics and `show cts sxp connections`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    pub bytes_received: u64,
    pub messages_received: u64,
    pub updates: u64,
    pub keepalives: u64,
    pub purge_alls: u64,
    pub bindings_added: u64,
    pub bindings_deleted: u64,
    /// Prefixes skipped because their PEER-SEQUENCE contains our NODE-ID.
    pub looped_prefixes: u64,
    /// Unknown optional attributes skipped.
    pub ignored_optional_attributes: u64,
    /// Known attributes in a message where they mean nothing (e.g. an
    /// UPDATE attribute in OPEN), skipped as sxpd does.
    pub ignored_misplaced_attributes: u64,
}

#[derive(Debug)]
enum State {
    AwaitingOpen {
        deadline: Option<Instant>,
    },
    AwaitingOpenResp {
        deadline: Option<Instant>,
        offered: u32,
    },
    Established {
        session: Session,
        hold_deadline: Option<Instant>,
    },
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AwaitingOpen { .. } => "awaiting OPEN",
            State::AwaitingOpenResp { .. } => "awaiting OPEN_RESP",
            State::Established { .. } => "established",
            State::Closed => "closed",
        }
    }
}

/// One SXP connection, listener side. See the module docs.
#[derive(Debug)]
pub struct SxpListener {
    config: ListenerConfig,
    framer: Framer,
    state: State,
    bindings: BTreeMap<Prefix, Sgt>,
    stats: ListenerStats,
}

impl SxpListener {
    /// A connection the speaker opened: waits for its OPEN.
    pub fn new(config: ListenerConfig, now: Instant) -> Self {
        let deadline = now.checked_add(config.open_timeout);
        Self {
            config,
            framer: Framer::new(),
            state: State::AwaitingOpen { deadline },
            bindings: BTreeMap::new(),
            stats: ListenerStats::default(),
        }
    }

    /// A connection we opened: returns the listener and the OPEN to send
    /// (our highest accepted version; v4 with CAPABILITIES and HOLD-TIME).
    pub fn connect(config: ListenerConfig, now: Instant) -> (Self, Vec<u8>) {
        let offered = config.versions.max();
        let open = Open::listener(offered, hold_range(&config));
        // A listener OPEN is a few dozen bytes; it always encodes.
        let bytes = Message::Open(open).encode().unwrap_or_default();
        let deadline = now.checked_add(config.open_timeout);
        let listener = Self {
            config,
            framer: Framer::new(),
            state: State::AwaitingOpenResp { deadline, offered },
            bindings: BTreeMap::new(),
            stats: ListenerStats::default(),
        };
        (listener, bytes)
    }

    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    pub fn stats(&self) -> &ListenerStats {
        &self.stats
    }

    /// The negotiated session, once established and until closed.
    pub fn session(&self) -> Option<&Session> {
        match &self.state {
            State::Established { session, .. } => Some(session),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The current bindings of this connection, sorted by prefix.
    pub fn bindings(&self) -> impl Iterator<Item = Binding> + '_ {
        self.bindings
            .iter()
            .map(|(&prefix, &sgt)| Binding { prefix, sgt })
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.len()
    }

    /// Bytes received from the connection.
    pub fn on_bytes(&mut self, now: Instant, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        if self.is_closed() {
            return out;
        }
        self.stats.bytes_received = self.stats.bytes_received.saturating_add(bytes.len() as u64);
        self.framer.push(bytes);
        while !self.is_closed() {
            let decoded = match self.framer.next_message() {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    let typ = Header::peek(frame)
                        .ok()
                        .flatten()
                        .map_or(MessageType::Unknown(0), |h| h.typ);
                    Message::decode(frame).map_err(|source| ProtocolError::Decode { typ, source })
                }
                Err(e) => Err(ProtocolError::Frame(e)),
            };
            match decoded {
                Ok(message) => {
                    self.stats.messages_received += 1;
                    self.handle(now, message, &mut out);
                }
                Err(err) => {
                    let version = self.reply_version();
                    self.fail(err, version, &mut out);
                }
            }
        }
        out
    }

    /// When [`Self::on_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::AwaitingOpen { deadline } | State::AwaitingOpenResp { deadline, .. } => {
                *deadline
            }
            State::Established { hold_deadline, .. } => *hold_deadline,
            State::Closed => None,
        }
    }

    /// Fires due timers: the OPEN wait or the hold timer.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        let reason = match &self.state {
            State::AwaitingOpen {
                deadline: Some(deadline),
            }
            | State::AwaitingOpenResp {
                deadline: Some(deadline),
                ..
            } if now >= *deadline => CloseReason::OpenTimeout,
            State::Established {
                hold_deadline: Some(deadline),
                ..
            } if now >= *deadline => CloseReason::HoldTimerExpired,
            _ => return out,
        };
        self.close(reason, &mut out);
        out
    }

    /// TCP closed or failed: the peer's bindings go.
    pub fn on_transport_closed(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        self.close(CloseReason::TransportClosed, &mut out);
        out
    }

    /// We end the connection (configuration removed, shutdown).
    pub fn shutdown(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        self.close(CloseReason::Shutdown, &mut out);
        out
    }

    fn handle(&mut self, now: Instant, message: Message, out: &mut Vec<Output>) {
        match (&self.state, message) {
            (State::Closed, _) => {}
            (_, Message::Error(err)) => self.close(CloseReason::PeerError(err), out),
            (State::AwaitingOpen { .. }, Message::Open(open)) => {
                self.on_open(now, open, Role::Accepted, out)
            }
            (State::AwaitingOpenResp { .. }, Message::OpenResp(open)) => {
                self.on_open(now, open, Role::Connected, out)
            }
            (State::Established { .. }, Message::Keepalive) => {
                self.stats.keepalives += 1;
                self.restart_hold_timer(now);
            }
            (State::Established { .. }, Message::PurgeAll) => {
                self.stats.purge_alls += 1;
                self.restart_hold_timer(now);
                let deleted = self.take_bindings();
                out.push(Output::Binding(BindingEvent::PurgeAll {
                    reason: PurgeReason::PurgeAllMessage,
                    deleted,
                }));
            }
            (State::Established { .. }, Message::Update(update)) => {
                self.stats.updates += 1;
                self.restart_hold_timer(now);
                self.on_update(&update.attributes, out);
            }
            (state, message) => {
                let err = ProtocolError::UnexpectedMessage {
                    typ: message.typ(),
                    state: state.name(),
                };
                let version = self.reply_version();
                self.fail(err, version, out);
            }
        }
    }

    /// OPEN (accepted) or OPEN_RESP (connected) from the speaker.
    fn on_open(&mut self, now: Instant, open: Open, role: Role, out: &mut Vec<Output>) {
        let msg_type = match role {
            Role::Accepted => MessageType::Open,
            Role::Connected => MessageType::OpenResp,
        };
        let version = match self.negotiate_version(open.version, role) {
            Ok(v) => v,
            Err(err) => {
                // Answer in the version the peer offered if we know it,
                // else in our highest (version 0 is nobody's).
                let ceiling = self.config.versions.max();
                let reply = match open.version {
                    0 => ceiling,
                    v => v.min(ceiling),
                };
                return self.fail(err, reply, out);
            }
        };
        match self.check_open(&open, msg_type, version) {
            Ok(hold_time) => {
                if role == Role::Accepted {
                    let resp = Open::listener(version, hold_range(&self.config));
                    if let Ok(bytes) = Message::OpenResp(resp).encode() {
                        out.push(Output::Transmit(bytes));
                    }
                }
                let session = Session {
                    role,
                    version,
                    peer_node_id: open.node_id(),
                    hold_time,
                    peer_hold_time: open.hold_time(),
                    peer_capabilities: open.capabilities().map(<[_]>::to_vec).unwrap_or_default(),
                };
                let hold_deadline = hold_time.and_then(|d| now.checked_add(d));
                out.push(Output::Established(session.clone()));
                self.state = State::Established {
                    session,
                    hold_deadline,
                };
            }
            Err(err) => self.fail(err, version, out),
        }
    }

    /// The version both sides speak (section 4.4: the lower of the two).
    fn negotiate_version(&self, offered: u32, role: Role) -> Result<u32, ProtocolError> {
        let range = self.config.versions;
        let err = ProtocolError::UnsupportedVersion {
            offered,
            min: range.min(),
            max: range.max(),
        };
        let version = match (role, &self.state) {
            (Role::Accepted, _) => offered.min(range.max()),
            // The speaker answers with the version it will use, at most ours.
            (Role::Connected, State::AwaitingOpenResp { offered: ours, .. }) => {
                if offered > *ours {
                    return Err(err);
                }
                offered
            }
            (Role::Connected, _) => offered,
        };
        if version == 0 || !range.contains(version) {
            return Err(err);
        }
        Ok(version)
    }

    /// Mode, attributes and hold time of the speaker's OPEN / OPEN_RESP;
    /// returns the negotiated hold time.
    fn check_open(
        &mut self,
        open: &Open,
        msg_type: MessageType,
        version: u32,
    ) -> Result<Option<Duration>, ProtocolError> {
        if open.mode != Mode::Speaker {
            return Err(ProtocolError::UnexpectedMode(open.mode));
        }
        for attr in &open.attributes {
            match &attr.value {
                AttributeValue::NodeId(_)
                | AttributeValue::Capabilities(_)
                | AttributeValue::HoldTime(_) => {}
                AttributeValue::Unknown { typ, .. } => {
                    if !attr.flags.optional() {
                        return Err(ProtocolError::UnknownMandatoryAttribute {
                            msg: msg_type,
                            typ: *typ,
                        });
                    }
                    self.stats.ignored_optional_attributes += 1;
                }
                _ => self.stats.ignored_misplaced_attributes += 1,
            }
        }
        if version < 4 {
            // Hold time and NODE-ID are v4 (section 4.4.2).
            return Ok(None);
        }
        if open.node_id().is_none() {
            return Err(ProtocolError::MissingNodeId(msg_type));
        }
        self.negotiate_hold_time(open.hold_time())
    }

    /// Section 4.4.2, listener side; see the module docs.
    fn negotiate_hold_time(
        &self,
        speaker: Option<HoldTime>,
    ) -> Result<Option<Duration>, ProtocolError> {
        let Some(range) = self.config.hold_time else {
            return Ok(None);
        };
        let Some(speaker) = speaker else {
            return Ok(None);
        };
        // A speaker's maximum, if any, means nothing to a listener.
        let min = speaker.min;
        if min == HOLD_TIME_UNUSED {
            return Ok(None);
        }
        if (min > 0 && min < HOLD_TIME_MINIMUM) || min > range.max() {
            return Err(ProtocolError::UnacceptableHoldTime {
                speaker_min: min,
                range: Some(range),
            });
        }
        // 0 is no preference: sxpd then takes the listener minimum.
        Ok(Some(Duration::from_secs(u64::from(min.max(range.min())))))
    }

    fn on_update(&mut self, attributes: &[Attribute], out: &mut Vec<Output>) {
        let State::Established { session, .. } = &self.state else {
            return;
        };
        let version = session.version;
        let ctx = UpdateContext {
            version,
            own_node_id: self.config.node_id,
            peer_node_id: session.peer_node_id,
        };
        let summary = match update_changes(attributes, &ctx) {
            Ok(summary) => summary,
            Err(err) => return self.fail(err.into(), version, out),
        };
        self.stats.looped_prefixes += summary.looped_prefixes as u64;
        self.stats.ignored_optional_attributes += summary.ignored_optional as u64;
        for change in summary.changes {
            match change {
                BindingChange::Add { prefix, sgt } => {
                    if !self.bindings.contains_key(&prefix)
                        && self.bindings.len() >= self.config.max_bindings
                    {
                        let limit = self.config.max_bindings;
                        return self.close(CloseReason::BindingLimit(limit), out);
                    }
                    if self.bindings.insert(prefix, sgt) != Some(sgt) {
                        self.stats.bindings_added += 1;
                        out.push(Output::Binding(BindingEvent::Add { prefix, sgt }));
                    }
                }
                BindingChange::Delete { prefix } => {
                    if self.bindings.remove(&prefix).is_some() {
                        self.stats.bindings_deleted += 1;
                        out.push(Output::Binding(BindingEvent::Delete { prefix }));
                    }
                }
            }
        }
    }

    fn restart_hold_timer(&mut self, now: Instant) {
        if let State::Established {
            session,
            hold_deadline,
        } = &mut self.state
        {
            *hold_deadline = session.hold_time.and_then(|d| now.checked_add(d));
        }
    }

    /// The version an ERROR is written in before and after negotiation.
    fn reply_version(&self) -> u32 {
        match &self.state {
            State::Established { session, .. } => session.version,
            State::AwaitingOpenResp { offered, .. } => *offered,
            State::AwaitingOpen { .. } | State::Closed => MAX_VERSION,
        }
    }

    /// Sends the ERROR for `err` (if any) and ends the connection (section
    /// 4.6: the sender of an ERROR closes the connection).
    fn fail(&mut self, err: ProtocolError, version: u32, out: &mut Vec<Output>) {
        if let Some(bytes) = err
            .error_message(version)
            .and_then(|m| Message::Error(m).encode().ok())
        {
            out.push(Output::Transmit(bytes));
        }
        self.close(CloseReason::Protocol(err), out);
    }

    fn close(&mut self, reason: CloseReason, out: &mut Vec<Output>) {
        match self.state {
            State::Closed => return,
            State::Established { .. } => {
                let deleted = self.take_bindings();
                out.push(Output::Binding(BindingEvent::PurgeAll {
                    reason: PurgeReason::PeerLost,
                    deleted,
                }));
            }
            State::AwaitingOpen { .. } | State::AwaitingOpenResp { .. } => {}
        }
        self.state = State::Closed;
        self.framer = Framer::new();
        out.push(Output::Close(reason));
    }

    fn take_bindings(&mut self) -> Vec<Binding> {
        let deleted: Vec<Binding> = std::mem::take(&mut self.bindings)
            .into_iter()
            .map(|(prefix, sgt)| Binding { prefix, sgt })
            .collect();
        self.stats.bindings_deleted += deleted.len() as u64;
        deleted
    }
}

fn hold_range(config: &ListenerConfig) -> Option<(u16, u16)> {
    config.hold_time.map(|r| (r.min(), r.max()))
}
