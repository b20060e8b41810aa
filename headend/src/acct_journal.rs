//! Accounting that survives a crash (issue 17): an append-only journal of the
//! sessions that have an accounting Start and no Stop yet.
//!
//! - Every Start is appended and fsync'd (`fdatasync`) before the tunnel is up
//!   and before the Start is sent. The session table appends it while
//!   attaching the first connection (so the journal's order is the table's)
//!   and syncs it after releasing its lock: an fsync takes milliseconds on a
//!   disk, and under the lock it held every login and lookup behind it. Syncs
//!   are group commits ([`AcctJournal::sync_to`]): one `fdatasync` covers
//!   every record written before it, so logins that wait together share it.
//! - Counters are checkpointed now and then (every Interim-Update, and a
//!   periodic snapshot of all sessions).
//! - A session's end is appended and fsync'd *before* its Stop is sent: after a
//!   crash the headend would rather lose one Stop in flight than send two
//!   (RFC 2866 servers count each Stop; ISE would see two session ends).
//! - At start, the sessions left open by a crash (`kill -9`, OOM, power loss)
//!   get their Stop: Acct-Terminate-Cause NAS-Reboot (RFC 2866 section 5.10),
//!   the session time and counters of the last checkpoint. The journal is
//!   truncated whenever no session is open, and compacted into a new file
//!   (open sessions only, renamed over the old one) when it outgrows its bound.
//!
//! Format: one line per record, fields separated by spaces, strings in hex so
//! no value can break a line, a CRC-32 at the end. A torn or corrupt line
//! (crash mid-write) is skipped. The codec and the replay are sans-IO.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use auth::radius::{AcctStatusType, Counters, TerminateCause};

use crate::sessions::AcctEvent;

/// Compact when the file is bigger than this (or than twice the open sessions).
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;
pub const DEFAULT_PATH: &str = "/var/lib/headend/accounting.journal";

/// What a Start record keeps: enough to build the Stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRecord {
    pub acct_session_id: String,
    /// Unix seconds of the Start.
    pub started: u64,
    pub group: String,
    pub username: String,
    pub tunnel_group: String,
    pub public_ip: IpAddr,
    pub audit_session_id: String,
    pub framed_ip: Option<Ipv4Addr>,
    pub framed_ipv6: Option<Ipv6Addr>,
    pub classes: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub session_time: u32,
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Start(StartRecord),
    Checkpoint {
        id: String,
        at: Checkpoint,
    },
    /// The Stop is about to be sent (or cannot be): the session is closed.
    End {
        id: String,
    },
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s == "-" {
        return Some(Vec::new());
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn unhex_str(s: &str) -> Option<String> {
    String::from_utf8(unhex(s)?).ok()
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

fn parse_opt<T: std::str::FromStr>(s: &str) -> Option<Option<T>> {
    if s == "-" {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

/// CRC-32 (IEEE), bitwise: records are short and written once per session event.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

impl Record {
    /// One line, with its newline.
    pub fn encode(&self) -> String {
        let body = match self {
            Record::Start(s) => format!(
                "S {} {} {} {} {} {} {} {} {} {}",
                hex(s.acct_session_id.as_bytes()),
                s.started,
                hex(s.group.as_bytes()),
                hex(s.username.as_bytes()),
                hex(s.tunnel_group.as_bytes()),
                s.public_ip,
                hex(s.audit_session_id.as_bytes()),
                opt(&s.framed_ip),
                opt(&s.framed_ipv6),
                if s.classes.is_empty() {
                    "-".to_string()
                } else {
                    s.classes
                        .iter()
                        .map(|c| hex(c))
                        .collect::<Vec<_>>()
                        .join(",")
                }
            ),
            Record::Checkpoint { id, at } => format!(
                "C {} {} {} {} {} {}",
                hex(id.as_bytes()),
                at.session_time,
                at.counters.input_octets,
                at.counters.output_octets,
                at.counters.input_packets,
                at.counters.output_packets
            ),
            Record::End { id } => format!("E {}", hex(id.as_bytes())),
        };
        format!("{body} {:08x}\n", crc32(body.as_bytes()))
    }

    /// A line without its newline; None if torn, corrupt or unknown.
    pub fn decode(line: &str) -> Option<Record> {
        let (body, crc) = line.rsplit_once(' ')?;
        if u32::from_str_radix(crc, 16).ok()? != crc32(body.as_bytes()) {
            return None;
        }
        let f: Vec<&str> = body.split(' ').collect();
        match f.as_slice() {
            [
                "S",
                id,
                started,
                group,
                user,
                tg,
                ip,
                audit,
                v4,
                v6,
                classes,
            ] => Some(Record::Start(StartRecord {
                acct_session_id: unhex_str(id)?,
                started: started.parse().ok()?,
                group: unhex_str(group)?,
                username: unhex_str(user)?,
                tunnel_group: unhex_str(tg)?,
                public_ip: ip.parse().ok()?,
                audit_session_id: unhex_str(audit)?,
                framed_ip: parse_opt(v4)?,
                framed_ipv6: parse_opt(v6)?,
                classes: if *classes == "-" {
                    Vec::new()
                } else {
                    classes.split(',').map(unhex).collect::<Option<_>>()?
                },
            })),
            ["C", id, time, io, oo, ip, op] => Some(Record::Checkpoint {
                id: unhex_str(id)?,
                at: Checkpoint {
                    session_time: time.parse().ok()?,
                    counters: Counters {
                        input_octets: io.parse().ok()?,
                        output_octets: oo.parse().ok()?,
                        input_packets: ip.parse().ok()?,
                        output_packets: op.parse().ok()?,
                    },
                },
            }),
            ["E", id] => Some(Record::End { id: unhex_str(id)? }),
            _ => None,
        }
    }
}

/// A session with a Start and no end, as replayed from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub start: StartRecord,
    pub last: Option<Checkpoint>,
}

/// The open sessions, by Acct-Session-Id: the journal's meaning.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenSessions(pub BTreeMap<String, OpenSession>);

impl OpenSessions {
    pub fn apply(&mut self, r: Record) {
        match r {
            Record::Start(s) => {
                self.0.insert(
                    s.acct_session_id.clone(),
                    OpenSession {
                        start: s,
                        last: None,
                    },
                );
            }
            Record::Checkpoint { id, at } => {
                if let Some(s) = self.0.get_mut(&id) {
                    s.last = Some(at);
                }
            }
            Record::End { id } => {
                self.0.remove(&id);
            }
        }
    }

    /// Replays journal text; returns the open sessions and the lines skipped.
    pub fn replay(text: &str) -> (OpenSessions, usize) {
        let mut open = OpenSessions::default();
        let mut bad = 0;
        for line in text.lines().filter(|l| !l.is_empty()) {
            match Record::decode(line) {
                Some(r) => open.apply(r),
                None => bad += 1,
            }
        }
        (open, bad)
    }

    /// The records that rebuild this state (for compaction).
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        self.0.values().flat_map(|s| {
            std::iter::once(Record::Start(s.start.clone())).chain(s.last.map(|at| {
                Record::Checkpoint {
                    id: s.start.acct_session_id.clone(),
                    at,
                }
            }))
        })
    }
}

impl OpenSession {
    /// The Stop a crash left unsent: NAS-Reboot, last checkpointed time and counters.
    pub fn crash_stop(&self) -> AcctEvent {
        let s = &self.start;
        let last = self.last.unwrap_or(Checkpoint {
            session_time: 0,
            counters: Counters::default(),
        });
        AcctEvent {
            status: AcctStatusType::Stop,
            terminate_cause: Some(TerminateCause::NasReboot),
            group: s.group.clone(),
            username: s.username.clone(),
            tunnel_group: s.tunnel_group.clone(),
            public_ip: s.public_ip,
            audit_session_id: s.audit_session_id.clone(),
            acct_session_id: s.acct_session_id.clone(),
            framed_ip: s.framed_ip,
            framed_ipv6: s.framed_ipv6,
            classes: s.classes.clone(),
            counters: last.counters,
            session_time: last.session_time,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn start_record(ev: &AcctEvent) -> StartRecord {
    StartRecord {
        acct_session_id: ev.acct_session_id.clone(),
        started: unix_now(),
        group: ev.group.clone(),
        username: ev.username.clone(),
        tunnel_group: ev.tunnel_group.clone(),
        public_ip: ev.public_ip,
        audit_session_id: ev.audit_session_id.clone(),
        framed_ip: ev.framed_ip,
        framed_ipv6: ev.framed_ipv6,
        classes: ev.classes.clone(),
    }
}

struct JournalFile {
    /// Shared so a sync can run without holding the journal's lock.
    file: Arc<File>,
    size: u64,
    /// Compact beyond this size.
    limit: u64,
    open: OpenSessions,
    /// Sequence number of the last write ([`JournalSeq`]).
    written: u64,
}

/// A write's place in the journal: durable once [`AcctJournal::sync_to`] it
/// returned Ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct JournalSeq(u64);

/// The journal file. Writes are serialized; each is a single `write` of whole
/// lines. `fdatasync` runs outside the write lock, one for all that waits.
pub struct AcctJournal {
    path: PathBuf,
    max_bytes: u64,
    inner: Mutex<JournalFile>,
    /// The highest [`JournalSeq`] known to be on disk.
    durable: AtomicU64,
    /// One sync at a time: who waits here is covered by the next one.
    sync_lock: Mutex<()>,
    /// `fdatasync` calls made by [`AcctJournal::sync_to`] (tests).
    syncs: AtomicU64,
}

impl std::fmt::Debug for AcctJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcctJournal")
            .field("path", &self.path)
            .finish()
    }
}

impl AcctJournal {
    /// Opens (or creates) the journal at `path` and returns it with the Stops
    /// that a crash left unsent. The sessions stay open in the journal until
    /// their Stops go out ([`AcctJournal::ended`]).
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<(AcctJournal, Vec<AcctEvent>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = match std::fs::read(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let (open, bad) = OpenSessions::replay(&text);
        if bad > 0 {
            tracing::warn!(
                "accounting journal {}: {bad} torn or corrupt line(s) skipped",
                path.display()
            );
        }
        let stops: Vec<AcctEvent> = open.0.values().map(OpenSession::crash_stop).collect();
        let file = write_compacted(path, &open)?;
        let size = file.metadata()?.len();
        let j = AcctJournal {
            path: path.to_path_buf(),
            max_bytes,
            inner: Mutex::new(JournalFile {
                file: Arc::new(file),
                size,
                limit: max_bytes.max(2 * size),
                open,
                written: 0,
            }),
            durable: AtomicU64::new(0),
            sync_lock: Mutex::new(()),
            syncs: AtomicU64::new(0),
        };
        Ok((j, stops))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalFile> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `records` (not yet durable: see [`AcctJournal::sync_to`]).
    fn append(&self, records: Vec<Record>) -> io::Result<JournalSeq> {
        let mut j = self.lock();
        let mut buf = String::new();
        for r in records {
            buf.push_str(&r.encode());
            j.open.apply(r);
        }
        j.written += 1;
        let seq = JournalSeq(j.written);
        if j.open.0.is_empty() {
            // Nothing open: clear the journal instead of growing it.
            j.file.set_len(0)?;
            j.size = 0;
            return Ok(seq);
        }
        (&*j.file).write_all(buf.as_bytes())?;
        j.size += buf.len() as u64;
        if j.size > j.limit {
            // The compacted file is synced (and renamed over the old one)
            // before it replaces it: everything written so far is durable.
            let file = write_compacted(&self.path, &j.open)?;
            j.size = file.metadata()?.len();
            j.limit = self.max_bytes.max(2 * j.size);
            j.file = Arc::new(file);
            self.durable.fetch_max(j.written, Ordering::AcqRel);
        }
        Ok(seq)
    }

    /// Makes every write up to `seq` durable: returns at once if an earlier
    /// sync covered it, else waits for the sync in progress and, if that did
    /// not cover it, runs one `fdatasync` for all written so far. Holds
    /// neither the journal's write lock nor the caller's.
    pub fn sync_to(&self, seq: JournalSeq) -> io::Result<()> {
        if self.durable.load(Ordering::Acquire) >= seq.0 {
            return Ok(());
        }
        let _one_at_a_time = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.durable.load(Ordering::Acquire) >= seq.0 {
            return Ok(());
        }
        let (file, upto) = {
            let j = self.lock();
            (j.file.clone(), j.written)
        };
        // A compaction meanwhile synced the new file itself (`append`); this
        // one syncs the file the records up to `upto` were written to.
        file.sync_data()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.durable.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// Everything written so far, made durable (before a Start is sent).
    pub fn sync_written(&self) -> io::Result<()> {
        let upto = JournalSeq(self.lock().written);
        self.sync_to(upto)
    }

    /// Journals a Start, durably; call before the tunnel is up.
    pub fn started(&self, ev: &AcctEvent) -> io::Result<()> {
        let seq = self.started_unsynced(ev)?;
        self.sync_to(seq)
    }

    /// Journals a Start without waiting for the disk: the session table
    /// calls this under its lock (so the journal keeps the table's order)
    /// and [`AcctJournal::sync_to`] the returned place after releasing it,
    /// before the tunnel is up.
    pub fn started_unsynced(&self, ev: &AcctEvent) -> io::Result<JournalSeq> {
        self.append(vec![Record::Start(start_record(ev))])
    }

    /// `fdatasync` calls made so far for [`AcctJournal::sync_to`].
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Journals the counters of Interim-Updates or a periodic snapshot.
    pub fn checkpoint(&self, evs: &[AcctEvent]) -> io::Result<()> {
        let open: Vec<Record> = {
            let j = self.lock();
            evs.iter()
                .filter(|e| j.open.0.contains_key(&e.acct_session_id))
                .map(|e| Record::Checkpoint {
                    id: e.acct_session_id.clone(),
                    at: Checkpoint {
                        session_time: e.session_time,
                        counters: e.counters,
                    },
                })
                .collect()
        };
        if open.is_empty() {
            return Ok(());
        }
        let seq = self.append(open)?;
        self.sync_to(seq)
    }

    /// Journals the end of a session, durably; call before its Stop is sent.
    pub fn ended(&self, acct_session_id: &str) -> io::Result<()> {
        if !self.lock().open.0.contains_key(acct_session_id) {
            return Ok(());
        }
        let seq = self.append(vec![Record::End {
            id: acct_session_id.to_string(),
        }])?;
        self.sync_to(seq)
    }

    pub fn open_sessions(&self) -> usize {
        self.lock().open.0.len()
    }
}

/// Writes `open` to a new file next to `path`, fsyncs it, renames it over
/// `path` (and fsyncs the directory), and returns it opened for appending.
fn write_compacted(path: &Path, open: &OpenSessions) -> io::Result<File> {
    let tmp = path.with_extension("journal.tmp");
    {
        let mut f = File::create(&tmp)?;
        let mut buf = String::new();
        for r in open.records() {
            buf.push_str(&r.encode());
        }
        f.write_all(buf.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().append(true).open(path)
}

/// Reads a journal's open sessions without changing it (tests, tools).
pub fn read_open_sessions(path: &Path) -> io::Result<OpenSessions> {
    let mut text = String::new();
    for line in BufReader::new(File::open(path)?).lines() {
        text.push_str(&line?);
        text.push('\n');
    }
    Ok(OpenSessions::replay(&text).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, status: AcctStatusType) -> AcctEvent {
        AcctEvent {
            status,
            terminate_cause: None,
            group: "ISE".into(),
            username: "al ice\n".into(),
            tunnel_group: "RADIUS-PW".into(),
            public_ip: "198.18.0.2".parse().unwrap(),
            audit_session_id: "c6120101000010006752a1b0".into(),
            acct_session_id: id.into(),
            framed_ip: Some("198.18.100.10".parse().unwrap()),
            framed_ipv6: None,
            classes: vec![b"OU=GP;".to_vec(), vec![0, 255]],
            counters: Counters {
                input_octets: 1 << 40,
                output_octets: 2,
                input_packets: 3,
                output_packets: 4,
            },
            session_time: 77,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("acct-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("accounting.journal")
    }

    #[test]
    fn records_round_trip_and_corruption_is_detected() {
        let start = Record::Start(start_record(&ev("A1", AcctStatusType::Start)));
        let ck = Record::Checkpoint {
            id: "A1".into(),
            at: Checkpoint {
                session_time: 5,
                counters: ev("A1", AcctStatusType::Start).counters,
            },
        };
        let end = Record::End { id: "A1".into() };
        for r in [&start, &ck, &end] {
            let line = r.encode();
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert_eq!(Record::decode(line.trim_end()).as_ref(), Some(r));
            // A torn line (crash mid-write) and a flipped byte are refused.
            let body = line.trim_end();
            assert_eq!(Record::decode(&body[..body.len() - 3]), None);
            let mut flipped = body.as_bytes().to_vec();
            flipped[2] ^= 1;
            assert_eq!(Record::decode(&String::from_utf8_lossy(&flipped)), None);
        }
    }

    #[test]
    fn replay_keeps_only_sessions_without_end() {
        let text = [
            Record::Start(start_record(&ev("A", AcctStatusType::Start))).encode(),
            Record::Start(start_record(&ev("B", AcctStatusType::Start))).encode(),
            Record::Checkpoint {
                id: "A".into(),
                at: Checkpoint {
                    session_time: 9,
                    counters: Counters {
                        input_octets: 10,
                        output_octets: 20,
                        input_packets: 1,
                        output_packets: 2,
                    },
                },
            }
            .encode(),
            Record::End { id: "B".into() }.encode(),
            "S 41 torn".into(),
        ]
        .concat();
        let (open, bad) = OpenSessions::replay(&text);
        assert_eq!(bad, 1);
        assert_eq!(open.0.keys().collect::<Vec<_>>(), vec!["A"]);
        let stop = open.0["A"].crash_stop();
        assert_eq!(stop.status, AcctStatusType::Stop);
        assert_eq!(stop.terminate_cause, Some(TerminateCause::NasReboot));
        assert_eq!((stop.session_time, stop.counters.output_octets), (9, 20));
        assert_eq!(stop.username, "al ice\n");
        assert_eq!(stop.classes, vec![b"OU=GP;".to_vec(), vec![0, 255]]);
    }

    #[test]
    fn crash_recovery_sends_each_missing_stop_once_and_clears() {
        let path = tmp("recovery");
        {
            let (j, stops) = AcctJournal::open(&path, DEFAULT_MAX_BYTES).unwrap();
            assert!(stops.is_empty());
            j.started(&ev("A", AcctStatusType::Start)).unwrap();
            j.started(&ev("B", AcctStatusType::Start)).unwrap();
            j.checkpoint(&[ev("A", AcctStatusType::InterimUpdate)])
                .unwrap();
            j.ended("B").unwrap();
            // The process dies here: no more writes.
        }
        let (j, stops) = AcctJournal::open(&path, DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].acct_session_id, "A");
        assert_eq!(stops[0].session_time, 77);
        // A second crash before the Stop went out: still owed, still once.
        drop(j);
        let (j, stops) = AcctJournal::open(&path, DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(stops.len(), 1);
        j.ended("A").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "cleared");
        drop(j);
        let (_j, stops) = AcctJournal::open(&path, DEFAULT_MAX_BYTES).unwrap();
        assert!(stops.is_empty(), "a Stop sent twice: {stops:?}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn one_sync_covers_every_write_before_it() {
        let path = tmp("group-commit");
        let (j, _) = AcctJournal::open(&path, DEFAULT_MAX_BYTES).unwrap();
        let a = j.started_unsynced(&ev("A", AcctStatusType::Start)).unwrap();
        let b = j.started_unsynced(&ev("B", AcctStatusType::Start)).unwrap();
        let c = j.started_unsynced(&ev("C", AcctStatusType::Start)).unwrap();
        assert!(a < b && b < c);
        assert_eq!(j.syncs(), 0, "nothing synced under the writer's lock");
        // The first waiter syncs all three; the others find theirs on disk.
        j.sync_to(b).unwrap();
        j.sync_to(a).unwrap();
        j.sync_to(c).unwrap();
        assert_eq!(j.syncs(), 1);
        // A write after that sync needs one of its own.
        let d = j.started_unsynced(&ev("D", AcctStatusType::Start)).unwrap();
        j.sync_to(d).unwrap();
        j.sync_written().unwrap();
        assert_eq!(j.syncs(), 2);
        // The durable calls sync too.
        j.ended("A").unwrap();
        assert_eq!(j.syncs(), 3);
        let open = read_open_sessions(&path).unwrap();
        assert_eq!(open.0.keys().collect::<Vec<_>>(), vec!["B", "C", "D"]);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_compaction_is_a_sync() {
        let path = tmp("compaction-sync");
        let (j, _) = AcctJournal::open(&path, 1024).unwrap();
        j.started_unsynced(&ev("A", AcctStatusType::Start)).unwrap();
        let checkpoint = || Record::Checkpoint {
            id: "A".into(),
            at: Checkpoint {
                session_time: 1,
                counters: Counters::default(),
            },
        };
        // Checkpoints pile up until the file is compacted to the open set
        // (it shrinks); nothing was synced by a caller meanwhile.
        let mut last = None;
        for _ in 0..100 {
            let before = std::fs::metadata(&path).unwrap().len();
            last = Some(j.append(vec![checkpoint()]).unwrap());
            if std::fs::metadata(&path).unwrap().len() < before {
                break;
            }
            last = None;
        }
        let last = last.expect("never compacted");
        // The compacted file was synced before it replaced the old one.
        j.sync_to(last).unwrap();
        assert_eq!(j.syncs(), 0);
        // The next write is not covered by it.
        let next = j.append(vec![checkpoint()]).unwrap();
        j.sync_to(next).unwrap();
        assert_eq!(j.syncs(), 1);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn journal_stays_bounded_by_compaction() {
        let path = tmp("bounded");
        let (j, _) = AcctJournal::open(&path, 2048).unwrap();
        j.started(&ev("LONG", AcctStatusType::Start)).unwrap();
        for i in 0..300 {
            j.started(&ev(&format!("S{i}"), AcctStatusType::Start))
                .unwrap();
            j.checkpoint(&[ev("LONG", AcctStatusType::InterimUpdate)])
                .unwrap();
            j.ended(&format!("S{i}")).unwrap();
            assert!(std::fs::metadata(&path).unwrap().len() <= 2048 + 1024);
        }
        assert_eq!(j.open_sessions(), 1);
        let open = read_open_sessions(&path).unwrap();
        assert_eq!(open.0.keys().collect::<Vec<_>>(), vec!["LONG"]);
        assert!(open.0["LONG"].last.is_some());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
