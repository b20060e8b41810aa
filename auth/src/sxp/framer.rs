//! Cuts a TCP byte stream into SXP messages by the header length field
//! (draft-smith-kandula-sxp section 4.2). Several messages often share one
//! segment and a message may span segments (sxpd does both).

use super::message::{DecodeError, Header};

/// Stream framer. Feed bytes with [`Framer::push`], take complete messages
/// with [`Framer::next_message`]. A bad length field poisons the framer: the
/// stream cannot be resynchronised, so every later call returns the error.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`.
    start: usize,
    failed: Option<DecodeError>,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. Consumed bytes are dropped here, once per
    /// push, so taking many small messages from one large segment stays
    /// linear.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start.min(self.buf.len()));
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message (header included), `Ok(None)` when more
    /// bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let pending = self.buf.get(self.start..).unwrap_or(&[]);
        let header = match Header::peek(pending) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(None),
            Err(err) => {
                self.failed = Some(err.clone());
                self.buf = Vec::new();
                self.start = 0;
                return Err(err);
            }
        };
        let len = header.length as usize;
        if pending.len() < len {
            return Ok(None);
        }
        let begin = self.start;
        self.start = begin.saturating_add(len);
        Ok(self.buf.get(begin..self.start))
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// Whether a bad length field has stopped the stream.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEPALIVE: [u8; 8] = [0, 0, 0, 8, 0, 0, 0, 6];

    #[test]
    fn several_per_push_and_split_across_pushes() {
        let mut f = Framer::new();
        let mut stream = KEEPALIVE.to_vec();
        stream.extend_from_slice(&KEEPALIVE);
        stream.extend_from_slice(&KEEPALIVE[..5]);
        f.push(&stream);
        assert_eq!(f.next_message(), Ok(Some(&KEEPALIVE[..])));
        assert_eq!(f.next_message(), Ok(Some(&KEEPALIVE[..])));
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.buffered(), 5);
        f.push(&KEEPALIVE[5..]);
        assert_eq!(f.next_message(), Ok(Some(&KEEPALIVE[..])));
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn bad_length_poisons() {
        let mut f = Framer::new();
        f.push(&[0, 0, 0, 4, 0, 0, 0, 6]);
        assert_eq!(f.next_message(), Err(DecodeError::BadLength(4)));
        f.push(&KEEPALIVE);
        assert_eq!(f.next_message(), Err(DecodeError::BadLength(4)));
        assert!(f.is_failed());
        assert_eq!(f.buffered(), 0);
    }
}
