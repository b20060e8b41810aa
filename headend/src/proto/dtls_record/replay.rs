//! The anti-replay window of RFC 6347 §4.1.2.6 (the IPsec scheme of
//! RFC 4303 §3.4.3): a bitmap of the last [`WINDOW`] sequence numbers below
//! the highest one that authenticated. A record is checked before it is
//! decrypted (duplicates cost no AEAD work) and marked only after it
//! authenticated, so forged records cannot move the window.

/// Window size: RFC 6347 asks for at least 32 and suggests 64.
pub const WINDOW: u64 = 64;

/// Why [`ReplayWindow::check`] refused a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// Already received (a duplicate inside the window).
    Replayed,
    /// Left of the window: too old to tell, dropped (RFC 6347 §4.1.2.6).
    TooOld,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest sequence number that authenticated (0 before any).
    top: u64,
    /// Bit `i` set: `top - i` authenticated.
    seen: u64,
}

impl ReplayWindow {
    /// Whether `seq` may be new; does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), ReplayVerdict> {
        if seq > self.top {
            return Ok(());
        }
        let back = self.top - seq;
        if back >= WINDOW {
            Err(ReplayVerdict::TooOld)
        } else if self.seen & (1 << back) != 0 {
            Err(ReplayVerdict::Replayed)
        } else {
            Ok(())
        }
    }

    /// Marks `seq` received; call only once its record authenticated.
    pub fn mark(&mut self, seq: u64) {
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = seq;
        } else {
            let back = self.top - seq;
            if back < WINDOW {
                self.seen |= 1 << back;
            }
        }
    }

    /// The highest sequence number marked, if any.
    pub fn highest(&self) -> Option<u64> {
        (self.seen != 0).then_some(self.top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_record_may_be_zero() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.highest(), None);
        assert_eq!(w.check(0), Ok(()));
        w.mark(0);
        assert_eq!(w.check(0), Err(ReplayVerdict::Replayed));
        assert_eq!(w.highest(), Some(0));
    }

    #[test]
    fn reorder_inside_the_window_is_accepted_once() {
        let mut w = ReplayWindow::default();
        for s in [10, 12, 11, 5] {
            assert_eq!(w.check(s), Ok(()), "{s}");
            w.mark(s);
        }
        for s in [5, 10, 11, 12] {
            assert_eq!(w.check(s), Err(ReplayVerdict::Replayed), "{s}");
        }
        assert_eq!(w.check(6), Ok(()));
        assert_eq!(w.check(13), Ok(()));
    }

    #[test]
    fn window_edge_is_exact() {
        let mut w = ReplayWindow::default();
        w.mark(1000);
        // 1000 - 63 is the oldest number still inside a 64-wide window.
        assert_eq!(w.check(1000 - 63), Ok(()));
        assert_eq!(w.check(1000 - 64), Err(ReplayVerdict::TooOld));
        w.mark(1000 - 63);
        assert_eq!(w.check(1000 - 63), Err(ReplayVerdict::Replayed));
        // Moving by 1 pushes it out.
        w.mark(1001);
        assert_eq!(w.check(1000 - 63), Err(ReplayVerdict::TooOld));
        assert_eq!(w.check(1000), Err(ReplayVerdict::Replayed));
        // A jump larger than the window clears the bitmap.
        w.mark(5000);
        assert_eq!(w.check(4999), Ok(()));
        assert_eq!(w.check(1001), Err(ReplayVerdict::TooOld));
    }

    #[test]
    fn checking_does_not_mark() {
        let mut w = ReplayWindow::default();
        w.mark(3);
        for _ in 0..3 {
            assert_eq!(w.check(7), Ok(()));
        }
        assert_eq!(w.highest(), Some(3));
        // Marking an old, out-of-window number is a no-op, not a panic.
        w.mark(200);
        w.mark(3);
        assert_eq!(w.check(3), Err(ReplayVerdict::TooOld));
        // The 48-bit maximum.
        w.mark((1 << 48) - 1);
        assert_eq!(w.check((1 << 48) - 1), Err(ReplayVerdict::Replayed));
    }
}
