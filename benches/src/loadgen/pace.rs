//! Pacing at a constant offered rate, sans-IO: given the time since the
//! first send, how many packets are due now. The senders (loadgen sessions,
//! `tput send`) wake on a coarse timer (1 ms or more: tokio's timer has 1 ms
//! resolution, so one packet per tick would cap a session at 1,000 packets/s)
//! and send what is due in one burst.
//!
//! A sender that falls behind (its CPU is saturated) does not catch up with
//! a burst the rate never asked for: owed packets beyond `max_burst` are
//! written off and counted in [`Pacer::lagged`], so a client-side cap shows
//! in the report instead of hiding behind a lower delivered rate.

/// Rounding slack: a timer that fires exactly on the k-th period must see
/// k packets due even when `k * period * rate` lands a hair below k in f64.
const EPS: f64 = 1e-6;

#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    max_burst: u64,
    sent: u64,
    lagged: u64,
}

impl Pacer {
    /// `rate` packets per second; at most `max_burst` (>= 1) packets per call.
    pub fn new(rate: f64, max_burst: u64) -> Self {
        Self {
            rate: if rate.is_finite() { rate.max(0.0) } else { 0.0 },
            max_burst: max_burst.max(1),
            sent: 0,
            lagged: 0,
        }
    }

    /// The burst cap that lets a sender waking every `tick_s` seconds keep
    /// `rate` with `slack_ticks` ticks of delay absorbed.
    pub fn burst_for(rate: f64, tick_s: f64, slack_ticks: f64) -> u64 {
        ((rate * tick_s * slack_ticks).ceil() as u64).max(1)
    }

    /// Packets to send now, `elapsed_s` seconds after the first call (the
    /// first packet goes at 0, as `tokio::time::interval` ticks at once).
    /// Counts them as sent.
    pub fn due(&mut self, elapsed_s: f64) -> u64 {
        if self.rate <= 0.0 || !elapsed_s.is_finite() || elapsed_s < 0.0 {
            return 0;
        }
        let target = (elapsed_s * self.rate + EPS).floor() as u64 + 1;
        let owed = target.saturating_sub(self.sent);
        let n = if owed > self.max_burst {
            self.lagged += owed - self.max_burst;
            self.max_burst
        } else {
            owed
        };
        // Written-off packets count as "sent" for the schedule: the next call
        // owes only what accrues from now on.
        self.sent = self.sent.max(target);
        n
    }

    /// Packets the schedule wanted that were written off (sender behind).
    pub fn lagged(&self) -> u64 {
        self.lagged
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_rate_over_coarse_ticks() {
        // 3,500 packets/s with a 1 ms tick: 3 or 4 per tick, 3,501 in one
        // second including the one at t = 0, nothing written off.
        let mut p = Pacer::new(3500.0, Pacer::burst_for(3500.0, 0.001, 10.0));
        let mut total = 0;
        for ms in 0..=1000 {
            let n = p.due(f64::from(ms) / 1000.0);
            assert!(n <= 4, "tick {ms}: {n}");
            total += n;
        }
        assert_eq!(total, 3501);
        assert_eq!(p.lagged(), 0);
    }

    #[test]
    fn one_per_period_at_low_rates() {
        let mut p = Pacer::new(5.0, 1);
        let got: Vec<u64> = [0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8]
            .iter()
            .map(|&t| p.due(t))
            .collect();
        assert_eq!(got, vec![1, 0, 1, 0, 1, 1, 1]);
        assert_eq!(p.lagged(), 0);
    }

    #[test]
    fn a_late_sender_writes_off_the_backlog_instead_of_bursting() {
        let mut p = Pacer::new(1000.0, 10);
        assert_eq!(p.due(0.0), 1);
        // 100 ms late: 100 owed, 10 sent, 90 written off.
        assert_eq!(p.due(0.1), 10);
        assert_eq!(p.lagged(), 90);
        // From then on only the new packets are owed.
        assert_eq!(p.due(0.101), 1);
        assert_eq!(p.due(0.105), 4);
        assert_eq!(p.lagged(), 90);
    }

    #[test]
    fn zero_or_bad_rates_send_nothing() {
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut p = Pacer::new(r, 4);
            assert_eq!(p.due(1.0), 0);
        }
        let mut p = Pacer::new(10.0, 4);
        assert_eq!(p.due(-1.0), 0);
        assert_eq!(p.due(f64::NAN), 0);
    }
}
