//! Paced DTLS downlink (issue 13 item 4): a per-session token bucket that
//! spreads the datagrams of a TUN burst over time, and the sub-millisecond
//! timer that wakes the session when its bucket has refilled.
//!
//! Why: with TUN offload the kernel hands us 64 KiB TCP super-packets; one
//! becomes ~45 DTLS datagrams, and a session that drains several of them
//! at once sent them to the client in one GSO burst of up to 64 datagrams,
//! several bursts back to back. A stock client reads one datagram at a time
//! from a 208 KiB socket buffer (`net.core.rmem_default`, ~90 datagrams), so
//! those bursts overflowed it (15 % of the datagrams in BENCHMARKS.md's
//! quiet-machine run; ocserv, which sends one datagram per TUN read, 2.7 %).
//! UDP has no acknowledgements to clock on and this kernel offers no `fq`
//! qdisc for `SO_TXTIME`, so the session paces itself: at most `burst` bytes
//! at once, then `rate`. What waits is still unencrypted in the session's
//! downlink queue or the TUN queue, where a drop costs no crypto and is
//! counted (`queue_full_drops`, the device's TX dropped), and TCP inside the
//! tunnel sees a queue instead of a burst of losses.
//!
//! Tokio's timer has 1 ms resolution, in which ~200 KiB leave at 1.7 Gbit/s:
//! a whole client buffer. The timer here is a `timerfd` (hrtimer, no slack)
//! registered with tokio's reactor, created when a session first has to wait
//! and dropped when it goes idle.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

/// Per-session pacing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingConfig {
    /// Bytes per second on the wire (UDP payload).
    pub rate: u64,
    /// The most sent at once after a pause, and what a wake-up waits for.
    pub burst: u64,
    /// Extra credit a late wake-up may still use while data waits: the rate
    /// the timer's lateness would otherwise lose (measured: the wake-ups of
    /// a busy 2-core box come ~76 us late on average against ~44 us asked
    /// for, so a 16 KiB bucket kept only ~40 % of its rate). Bounded, so a
    /// long stall never turns into a burst a client buffer cannot hold.
    pub catch_up: u64,
    /// Bytes a session may send unpaced per [`SLOW_WINDOW`] while it sent
    /// less than that in the previous window too (0: always paced). Pacing
    /// protects the client buffer of one fast flow; a slow session whose
    /// task ran late has a few dozen KiB queued for a client that is
    /// idle, and holding them for timer wake-ups that come late on a busy
    /// runtime starved 100 loadgen sessions of 20 Mbit/s each (11 ms late per
    /// wake, 16 KiB per wake: 23 % loss; BENCHMARKS.md 15:32).
    pub slow_free: u64,
    /// Cap the rate per session by what the client takes, learnt from the
    /// inner TCP's ACKs (`dtls_pace_rate.rs`); the rate above is the ceiling.
    /// On by default (`HEADEND_DTLS_PACE_LEARN=0` turns it off): client drops
    /// in DTLS download 0.27-0.77 % vs 3.8-7.3 % at the same throughput in 4
    /// of 5 back-to-back pairs (BENCHMARKS.md issue 13 pace).
    pub learn: bool,
}

/// The window of [`PacingConfig::slow_free`].
pub const SLOW_WINDOW: Duration = Duration::from_millis(10);

/// Windows of [`PacingConfig::slow_free`] a slow session may use at once
/// after a gap (its task was not run for that long): 4 x 128 KiB by default.
/// Why: with traffic both ways on a busy runtime a session's task ran every
/// ~150 ms and found ~290 KB queued for its 20 Mbit/s; one window's 128 KiB
/// left at once and the rest waited for a `timerfd` that came as late as the
/// task (84-270 ms), while the downlink queue behind it overflowed
/// (BENCHMARKS.md, issue 13 both ways). The credit is what the session was
/// owed at the slow rate (at most `slow_free` per window), so the average
/// stays below the slow rate; the cap bounds the burst a client buffer sees.
/// Only a session slow over [`LONG_WINDOW`] too gets it: one fast download
/// whose task was late by a few windows would otherwise burst 512 KiB into
/// a stock client's 208 KiB buffer (compare.sh DTLS down: 9.5 % client drops).
pub const SLOW_CREDIT_WINDOWS: u32 = 4;

/// The horizon over which a session counts as slow for the gap credit.
pub const LONG_WINDOW: Duration = Duration::from_millis(100);

impl PacingConfig {
    /// Default rate: above what one stock openconnect decrypts on this class
    /// of machine (BENCHMARKS.md), so pacing shapes bursts rather than
    /// capping a session; `HEADEND_DTLS_PACE_MBIT` overrides (0 turns pacing off).
    pub const DEFAULT_MBIT: u64 = 3000;
    /// Default burst: ~11 full-size datagrams, an eighth of a stock client's
    /// socket buffer, one GSO send (16 KiB measured fewer client drops than
    /// 32 KiB at the same rate: BENCHMARKS.md).
    pub const DEFAULT_BURST: u64 = 16 * 1024;
    /// Default catch-up credit (`HEADEND_DTLS_PACE_CATCHUP`, bytes).
    pub const DEFAULT_CATCH_UP: u64 = 0;
    /// Default unpaced allowance of a slow session (`HEADEND_DTLS_PACE_FREE`,
    /// bytes per 10 ms): 128 KiB, ~105 Mbit/s, well inside a stock client's
    /// 208 KiB socket buffer.
    pub const DEFAULT_SLOW_FREE: u64 = 128 * 1024;

    pub fn from_mbit(mbit: u64, burst: u64) -> Option<Self> {
        (mbit > 0).then(|| Self {
            rate: mbit.saturating_mul(1_000_000 / 8),
            burst: burst.max(2048),
            catch_up: 0,
            slow_free: 0,
            learn: false,
        })
    }

    pub fn with_learn(self, learn: bool) -> Self {
        Self { learn, ..self }
    }

    pub fn with_catch_up(self, catch_up: u64) -> Self {
        Self { catch_up, ..self }
    }

    pub fn with_slow_free(self, slow_free: u64) -> Self {
        Self { slow_free, ..self }
    }

    /// The process-wide setting (read once).
    pub fn process_default() -> Option<Self> {
        static CFG: std::sync::OnceLock<Option<PacingConfig>> = std::sync::OnceLock::new();
        *CFG.get_or_init(|| {
            let env = |k: &str| {
                std::env::var(k)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let mbit = env("HEADEND_DTLS_PACE_MBIT").unwrap_or(Self::DEFAULT_MBIT);
            let burst = env("HEADEND_DTLS_PACE_BURST").unwrap_or(Self::DEFAULT_BURST);
            let catch_up = env("HEADEND_DTLS_PACE_CATCHUP").unwrap_or(Self::DEFAULT_CATCH_UP);
            let free = env("HEADEND_DTLS_PACE_FREE").unwrap_or(Self::DEFAULT_SLOW_FREE);
            let learn = env("HEADEND_DTLS_PACE_LEARN").unwrap_or(1) != 0;
            Self::from_mbit(mbit, burst).map(|c| {
                c.with_catch_up(catch_up)
                    .with_slow_free(free)
                    .with_learn(learn)
            })
        })
    }
}

/// What a pacer did, for the session's end-of-tunnel log line: how often
/// it made the downlink wait, how late the timer woke it, and how much
/// sending time a late wake-up lost (the bucket was full while data waited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Times the downlink had to wait (a timer was asked for).
    pub waits: u64,
    /// Wake-ups after such a wait.
    pub wakes: u64,
    /// Sum and maximum of how late those wake-ups were.
    pub late_total: Duration,
    pub late_max: Duration,
    /// Bytes the bucket could not hold while data waited: rate lost to late wake-ups.
    pub lost_bytes: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Most bytes seen waiting for the pacer (encrypted, in the session).
    pub max_queued: u64,
    /// Wake-ups more than 1 ms late.
    pub late_over_1ms: u64,
    /// Sends (one `spend` each), and the largest: the biggest burst a
    /// client buffer saw from this session.
    pub sends: u64,
    pub max_send: u64,
    /// Sends, and their bytes, beyond what the bucket held: the slow
    /// session's unpaced allowance at work.
    pub free_sends: u64,
    pub free_bytes: u64,
}

/// A token bucket in bytes, driven by `now` (sans-IO: no clock read here).
#[derive(Debug, Clone)]
pub struct Pacer {
    cfg: PacingConfig,
    tokens: u64,
    /// When `tokens` was last brought up to date.
    last: Instant,
    /// When the caller was told to come back (data waits until then).
    wake_at: Option<Instant>,
    /// The current [`SLOW_WINDOW`]: when it began and what was sent in it.
    win_start: Instant,
    win_bytes: u64,
    /// What was sent in the window before (0 at first: a new session starts
    /// as a slow one, its first burst leaves at once).
    prev_win_bytes: u64,
    /// What a slow session may send unpaced in this window: `slow_free`, or
    /// up to [`SLOW_CREDIT_WINDOWS`] of it when the window began after a gap.
    win_free: u64,
    /// The current [`LONG_WINDOW`]: when it began and what was sent in it.
    long_start: Instant,
    long_bytes: u64,
    /// The last long window ended below the slow rate (true at first).
    long_slow: bool,
    stats: PacerStats,
}

impl Pacer {
    /// Starts full: the first burst after a quiet period leaves at once.
    pub fn new(cfg: PacingConfig, now: Instant) -> Self {
        Self {
            cfg,
            tokens: cfg.burst,
            last: now,
            wake_at: None,
            win_start: now,
            win_bytes: 0,
            prev_win_bytes: 0,
            win_free: cfg.slow_free,
            long_start: now,
            long_bytes: 0,
            long_slow: true,
            stats: PacerStats::default(),
        }
    }

    /// What the bucket holds at most: one burst, plus the catch-up credit
    /// while data waits for a wake-up.
    fn cap(&self) -> u64 {
        if self.wake_at.is_some() {
            self.cfg.burst.saturating_add(self.cfg.catch_up)
        } else {
            self.cfg.burst
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last);
        let add = (dt.as_nanos().saturating_mul(u128::from(self.cfg.rate)) / 1_000_000_000)
            .min(u128::from(u64::MAX)) as u64;
        if add == 0 {
            // Keep `last`: the fraction accrues until it is worth a byte.
            return;
        }
        let cap = self.cap();
        let full = self.tokens.saturating_add(add) >= cap;
        if full && self.wake_at.is_some() {
            self.stats.lost_bytes += self.tokens.saturating_add(add) - cap;
        }
        self.tokens = self.tokens.saturating_add(add).min(cap);
        self.last = if full {
            now
        } else {
            // Advance by the time the added bytes took (rounded down: the
            // fraction of a byte left over is kept, so no rate is lost).
            self.last + nanos_for(add, self.cfg.rate, false)
        };
    }

    fn roll_window(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.win_start);
        if age >= SLOW_WINDOW {
            // A window with nothing after it (idle for two windows) counts
            // as an empty one.
            self.prev_win_bytes = if age < 2 * SLOW_WINDOW {
                self.win_bytes
            } else {
                0
            };
            let long_age = now.saturating_duration_since(self.long_start);
            if long_age >= LONG_WINDOW {
                // Below `slow_free` per window on average over the long window.
                self.long_slow = u128::from(self.long_bytes) * SLOW_WINDOW.as_nanos()
                    < u128::from(self.cfg.slow_free) * long_age.as_nanos();
                self.long_start = now;
                self.long_bytes = 0;
            }
            // The windows that passed since this one began, each worth
            // `slow_free` to a session slow over the long window, up to the cap.
            let windows = if self.long_slow {
                (age.as_nanos() / SLOW_WINDOW.as_nanos().max(1))
                    .clamp(1, u128::from(SLOW_CREDIT_WINDOWS)) as u64
            } else {
                1
            };
            self.win_free = self.cfg.slow_free.saturating_mul(windows);
            self.win_start = now;
            self.win_bytes = 0;
        }
    }

    /// What a slow session may still send unpaced in this window.
    fn slow_allowance(&self) -> u64 {
        if self.prev_win_bytes >= self.cfg.slow_free {
            return 0;
        }
        self.win_free.saturating_sub(self.win_bytes)
    }

    /// Bytes that may leave now.
    pub fn budget(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.roll_window(now);
        if let Some(at) = self.wake_at.take() {
            let late = now.saturating_duration_since(at);
            self.stats.wakes += 1;
            self.stats.late_total += late;
            self.stats.late_max = self.stats.late_max.max(late);
            if late > Duration::from_millis(1) {
                self.stats.late_over_1ms += 1;
            }
        }
        self.tokens.max(self.slow_allowance())
    }

    /// Counts bytes sent (at most the budget; more is clamped, never debt).
    pub fn spend(&mut self, bytes: u64) {
        let free = bytes.saturating_sub(self.tokens);
        if free > 0 {
            self.stats.free_sends += 1;
            self.stats.free_bytes += free;
        }
        self.stats.sends += 1;
        self.stats.max_send = self.stats.max_send.max(bytes);
        self.long_bytes = self.long_bytes.saturating_add(bytes);
        self.tokens = self.tokens.saturating_sub(bytes);
        self.win_bytes = self.win_bytes.saturating_add(bytes);
        self.stats.bytes += bytes;
    }

    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// When `want` bytes (capped at the burst) will be available.
    pub fn ready_at(&mut self, now: Instant, want: u64) -> Instant {
        self.refill(now);
        self.stats.max_queued = self.stats.max_queued.max(want);
        let want = want.min(self.cfg.burst);
        if self.tokens >= want {
            return now;
        }
        let at = self.last + nanos_for(want - self.tokens, self.cfg.rate, true);
        self.wake_at = Some(at);
        self.stats.waits += 1;
        at
    }

    pub fn config(&self) -> PacingConfig {
        self.cfg
    }

    /// Changes the rate (a learnt cap, `dtls_pace_rate.rs`); what accrued
    /// until `now` accrued at the old one.
    pub fn set_rate(&mut self, now: Instant, rate: u64) {
        let rate = rate.max(1);
        if rate != self.cfg.rate {
            self.refill(now);
            self.cfg.rate = rate;
        }
    }

    /// Changes the catch-up credit (while a learnt cap binds).
    pub fn set_catch_up(&mut self, catch_up: u64) {
        self.cfg.catch_up = catch_up;
    }
}

/// A paced session says at its end what pacing cost it (inside the session's
/// span, where the tunnel's "tunnel down" line also goes).
impl Drop for Pacer {
    fn drop(&mut self) {
        let s = self.stats;
        if s.waits == 0 {
            return;
        }
        tracing::info!(
            "DTLS pacing: {} bytes, {} waits, {} wake-ups, late mean {} us max {} us, {} over 1 ms, {} bytes of rate lost to late wake-ups, at most {} bytes waiting, {} sends, largest {} bytes, {} sends with {} bytes beyond the bucket",
            s.bytes,
            s.waits,
            s.wakes,
            s.late_total.as_micros() / u128::from(s.wakes.max(1)),
            s.late_max.as_micros(),
            s.late_over_1ms,
            s.lost_bytes,
            s.max_queued,
            s.sends,
            s.max_send,
            s.free_sends,
            s.free_bytes,
        );
    }
}

/// The time `bytes` take at `rate`, rounded up or down to the nanosecond.
fn nanos_for(bytes: u64, rate: u64, round_up: bool) -> Duration {
    let num = u128::from(bytes).saturating_mul(1_000_000_000);
    let den = u128::from(rate.max(1));
    let ns = if round_up {
        num.div_ceil(den)
    } else {
        num / den
    };
    Duration::from_nanos(ns.min(u128::from(u64::MAX)) as u64)
}

/// A one-shot high-resolution timer (`timerfd`, CLOCK_MONOTONIC like `Instant`).
pub struct HrTimer {
    fd: AsyncFd<OwnedFd>,
}

impl HrTimer {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant flags; the result is checked.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an `OwnedFd` stays open and names the same timer for as
        // long as the `AsyncFd` that owns it lives.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Arms the timer to fire once after `after` (at least 1 ns: zero disarms).
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: libc::c_long::from(after.subsec_nanos() as i32),
            },
        };
        // SAFETY: valid fd owned by self, pointer to a local itimerspec; the
        // old value is not wanted (null).
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the armed timer fires (cancel-safe: dropping the future
    /// loses nothing, the expiry stays readable).
    pub async fn fired(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                let mut buf = [0u8; 8];
                // SAFETY: reads 8 bytes into a local buffer from our own fd.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match r {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mbit: u64, burst: u64) -> PacingConfig {
        PacingConfig::from_mbit(mbit, burst).unwrap()
    }

    #[test]
    fn starts_full_then_refills_at_the_rate() {
        let t0 = Instant::now();
        // 800 Mbit/s = 100 MB/s = 100 bytes per microsecond.
        let mut p = Pacer::new(cfg(800, 10_000), t0);
        assert_eq!(p.budget(t0), 10_000);
        p.spend(10_000);
        assert_eq!(p.budget(t0), 0);
        assert_eq!(p.budget(t0 + Duration::from_micros(30)), 3_000);
        p.spend(3_000);
        assert_eq!(p.budget(t0 + Duration::from_micros(50)), 2_000);
        // Never above the burst, however long the pause.
        assert_eq!(p.budget(t0 + Duration::from_secs(5)), 10_000);
    }

    #[test]
    fn sending_at_every_wake_up_keeps_the_rate_over_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(cfg(800, 4_000), t0);
        let mut now = t0;
        let mut sent = 0u64;
        let b = p.budget(now);
        p.spend(b);
        // Bounded: 1,000 wake-ups, each when 1,400 bytes are ready.
        for _ in 0..1_000 {
            now = p.ready_at(now, 1_400);
            let b = p.budget(now);
            assert!(b >= 1_400, "woken with {b} bytes");
            p.spend(1_400);
            sent += 1_400;
        }
        let elapsed = now - t0;
        // 1.4 MB at 100 MB/s is 14 ms; rounding may only make it slower, by little.
        assert!(elapsed >= Duration::from_micros(13_960), "{elapsed:?}");
        assert!(elapsed <= Duration::from_micros(14_100), "{elapsed:?}");
        assert_eq!(sent, 1_400_000);
    }

    #[test]
    fn a_slow_session_sends_its_queue_at_once() {
        let t0 = Instant::now();
        // 100 bytes per microsecond, 4,000-byte bursts, 40,000 free per window.
        let mut p = Pacer::new(cfg(800, 4_000).with_slow_free(40_000), t0);
        // 30,000 bytes every 10 ms (24 Mbit/s), each batch arriving at once
        // as when the session's task ran late: never held back.
        for i in 0..20u32 {
            let now = t0 + SLOW_WINDOW * i;
            let budget = p.budget(now);
            assert!(budget >= 30_000, "window {i}: budget {budget}");
            p.spend(30_000);
        }
        assert_eq!(p.stats().waits, 0);
    }

    #[test]
    fn a_slow_session_served_late_sends_what_it_was_owed_at_once() {
        let t0 = Instant::now();
        // 100 bytes per microsecond, 4,000-byte bursts, 40,000 free per window.
        let mut p = Pacer::new(cfg(800, 4_000).with_slow_free(40_000), t0);
        // Its task runs every 150 ms (a busy runtime) and finds 100,000
        // bytes queued each time (5.3 Mbit/s): 2.5 windows' worth, under
        // the cap of 4, leaves at once, every time.
        for i in 1..=20u32 {
            let now = t0 + Duration::from_millis(150) * i;
            let budget = p.budget(now);
            assert!(budget >= 100_000, "turn {i}: budget {budget}");
            p.spend(100_000);
        }
        assert_eq!(p.stats().waits, 0);
        // After any gap, at most SLOW_CREDIT_WINDOWS windows at once.
        let late = t0 + Duration::from_secs(10);
        assert_eq!(p.budget(late), 40_000 * u64::from(SLOW_CREDIT_WINDOWS));
        p.spend(40_000 * u64::from(SLOW_CREDIT_WINDOWS));
        // Right after, in the same window: only the bucket.
        assert_eq!(p.budget(late), 0);
    }

    #[test]
    fn a_gap_gives_no_credit_to_a_session_that_was_fast() {
        let t0 = Instant::now();
        let mut p = Pacer::new(cfg(800, 4_000).with_slow_free(40_000), t0);
        // Fast: sends its allowance and then the bucket every 50 us, for
        // more than two windows.
        let mut now = t0;
        for _ in 0..500 {
            now += Duration::from_micros(50);
            let b = p.budget(now);
            p.spend(b);
        }
        // The next window begins within 10-20 ms of the last one: it
        // follows a fast window and gets no allowance, only the bucket.
        now += Duration::from_millis(12);
        assert!(p.budget(now) <= 4_000);
        // Its task then runs 50 ms late: one window's allowance (as for any
        // session after a pause), not the credit of a slow one.
        for _ in 0..3000 {
            now += Duration::from_micros(50);
            let b = p.budget(now);
            p.spend(b);
        }
        now += Duration::from_millis(50);
        let b = p.budget(now);
        assert!(b <= 40_000 + 4_000, "budget {b}");
    }

    #[test]
    fn a_fast_session_is_paced_after_its_first_free_window() {
        let t0 = Instant::now();
        let mut p = Pacer::new(cfg(800, 4_000).with_slow_free(40_000), t0);
        // First window: the free allowance, then the bucket.
        assert_eq!(p.budget(t0), 40_000);
        p.spend(40_000);
        assert_eq!(p.budget(t0), 0);
        // It keeps sending more than the allowance per window: from the
        // next window on, only the bucket (at most one burst at a time).
        let mut now = t0;
        for _ in 0..400 {
            now += Duration::from_micros(50);
            let b = p.budget(now);
            assert!(
                now < t0 + SLOW_WINDOW || b <= 4_000,
                "budget {b} at {:?}",
                now - t0
            );
            p.spend(b);
        }
        // And with the allowance off, a new session gets one burst only.
        let mut q = Pacer::new(cfg(800, 4_000), t0);
        assert_eq!(q.budget(t0), 4_000);
    }

    #[test]
    fn ready_at_is_now_when_enough_and_caps_at_the_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(cfg(800, 4_000), t0);
        assert_eq!(p.ready_at(t0, 1_000), t0);
        p.spend(4_000);
        // Asking for more than a burst waits for a burst only.
        let at = p.ready_at(t0, 1_000_000);
        assert!(at > t0 + Duration::from_micros(39) && at <= t0 + Duration::from_micros(41));
    }

    #[test]
    fn stats_count_late_wake_ups_and_the_rate_they_lost() {
        let t0 = Instant::now();
        // 100 bytes per microsecond, 4,000-byte bursts.
        let mut p = Pacer::new(cfg(800, 4_000), t0);
        let b = p.budget(t0);
        p.spend(b);
        let at = p.ready_at(t0, 10_000);
        assert_eq!(at, t0 + Duration::from_micros(40));
        // Woken 100 us late: the bucket holds one burst; 10,000 bytes of rate
        // (100 us) could not be kept.
        assert_eq!(p.budget(at + Duration::from_micros(100)), 4_000);
        p.spend(4_000);
        let s = p.stats();
        assert_eq!((s.waits, s.wakes), (1, 1));
        assert_eq!(s.late_total, Duration::from_micros(100));
        assert_eq!(s.late_max, Duration::from_micros(100));
        assert_eq!(s.lost_bytes, 10_000);
        assert_eq!(s.bytes, 8_000);
        assert_eq!(s.max_queued, 10_000);
        // A pause with nothing waiting loses nothing.
        let _ = p.budget(at + Duration::from_secs(1));
        assert_eq!(p.stats().lost_bytes, 10_000);
    }

    #[test]
    fn a_late_wake_up_may_catch_up_to_the_credit_but_no_more() {
        let t0 = Instant::now();
        let mut p = Pacer::new(cfg(800, 4_000).with_catch_up(6_000), t0);
        p.spend(4_000);
        let at = p.ready_at(t0, 50_000);
        assert_eq!(at, t0 + Duration::from_micros(40));
        // 30 us late: 7,000 bytes of rate accrued, all usable.
        assert_eq!(p.budget(at + Duration::from_micros(30)), 7_000);
        p.spend(7_000);
        assert_eq!(p.stats().lost_bytes, 0);
        // Next wake-up 200 us late: 24,000 accrued, burst + catch-up kept.
        let at = p.ready_at(at + Duration::from_micros(30), 43_000);
        assert_eq!(at, t0 + Duration::from_micros(110));
        assert_eq!(p.budget(at + Duration::from_micros(200)), 10_000);
        p.spend(10_000);
        assert_eq!(p.stats().lost_bytes, 14_000);
        // Once nothing waits, a pause refills one burst only (the first
        // datagrams after a pause leave as before).
        assert_eq!(p.budget(at + Duration::from_secs(1)), 4_000);
    }

    #[test]
    fn catching_up_keeps_the_rate_when_every_wake_up_is_late() {
        let t0 = Instant::now();
        // 100 bytes/us; each wake-up comes 60 us after the time asked for.
        for (catch_up, min_mbyte_s, max_mbyte_s) in [(0, 35, 45), (16_000, 99, 101)] {
            let mut p = Pacer::new(cfg(800, 4_000).with_catch_up(catch_up), t0);
            let mut now = t0;
            let mut sent = 0u64;
            // Bounded: 1,000 wake-ups with an endless backlog.
            for _ in 0..1_000 {
                let b = p.budget(now);
                p.spend(b);
                sent += b;
                now = p.ready_at(now, u64::MAX) + Duration::from_micros(60);
            }
            let rate = sent / u64::try_from((now - t0).as_micros()).unwrap();
            assert!(
                (min_mbyte_s..=max_mbyte_s).contains(&rate),
                "catch-up {catch_up}: {rate} bytes/us"
            );
        }
    }

    #[test]
    fn a_new_rate_applies_from_now_on() {
        let t0 = Instant::now();
        // 100 bytes per microsecond, then 10.
        let mut p = Pacer::new(cfg(800, 10_000), t0);
        p.spend(10_000);
        p.set_rate(t0 + Duration::from_micros(20), 10_000_000);
        assert_eq!(p.budget(t0 + Duration::from_micros(20)), 2_000);
        assert_eq!(p.budget(t0 + Duration::from_micros(120)), 3_000);
        p.spend(3_000);
        assert_eq!(
            p.ready_at(t0 + Duration::from_micros(120), 1_000),
            t0 + Duration::from_micros(220)
        );
    }

    #[test]
    fn zero_rate_means_no_pacing() {
        assert_eq!(PacingConfig::from_mbit(0, 1), None);
        assert_eq!(cfg(1, 1).burst, 2048);
    }

    #[tokio::test]
    async fn the_timer_fires_once_armed() {
        let t = HrTimer::new().unwrap();
        t.arm(Duration::from_micros(200)).unwrap();
        t.fired().await.unwrap();
        // Re-armable.
        t.arm(Duration::from_micros(50)).unwrap();
        t.fired().await.unwrap();
    }
}
