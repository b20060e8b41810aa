//! Peeking at a DTLS ClientHello to find its session (protocol.md section 3).
//!
//! openconnect puts the App-ID from the CONNECT reply in the ClientHello's
//! `session_id`. We read it from the first record, without a DTLS library, to
//! know which session's DTLS state gets the datagram.

/// DTLS record header: type(1) version(2) epoch(2) sequence(6) length(2).
const RECORD_HEADER: usize = 13;
/// Handshake header: type(1) length(3) message_seq(2) frag_offset(3) frag_length(3).
const HANDSHAKE_HEADER: usize = 12;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// Whether the datagram starts with an epoch-0 handshake record (a ClientHello or
/// another unencrypted handshake message).
pub fn is_client_hello(dgram: &[u8]) -> bool {
    dgram.first() == Some(&CONTENT_HANDSHAKE)
        && dgram.get(3..5) == Some(&[0, 0])
        && dgram.get(RECORD_HEADER) == Some(&HANDSHAKE_CLIENT_HELLO)
}

/// The `session_id` of a ClientHello in the first record of `dgram`, if the
/// datagram is one and the id is non-empty (1..=32 bytes).
pub fn client_hello_session_id(dgram: &[u8]) -> Option<&[u8]> {
    if !is_client_hello(dgram) {
        return None;
    }
    let rec_len = usize::from(u16::from_be_bytes([*dgram.get(11)?, *dgram.get(12)?]));
    let record = dgram.get(RECORD_HEADER..RECORD_HEADER.checked_add(rec_len)?)?;
    // The ClientHello must not be fragmented where the session_id lives.
    let frag_offset = record.get(6..9)?;
    if frag_offset != [0, 0, 0] {
        return None;
    }
    // client_version(2) + random(32), then session_id length.
    let sid_len_at = HANDSHAKE_HEADER + 2 + 32;
    let sid_len = usize::from(*record.get(sid_len_at)?);
    if sid_len == 0 || sid_len > 32 {
        return None;
    }
    record.get(sid_len_at + 1..sid_len_at + 1 + sid_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as GnuTLS sends it for openconnect (shape only).
    fn hello(sid: &[u8]) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[7u8; 32]);
        body.push(sid.len() as u8);
        body.extend_from_slice(sid);
        body.push(0); // cookie length
        body.extend_from_slice(&[0, 2, 0x00, 0xa9, 1, 0]);
        let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&[0, 0, 0, 0, 0]);
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![CONTENT_HANDSHAKE, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn session_id_is_found_at_byte_60() {
        let sid = [0xAB; 32];
        let d = hello(&sid);
        assert_eq!(d[59], 32);
        assert_eq!(client_hello_session_id(&d), Some(&sid[..]));
        assert_eq!(client_hello_session_id(&hello(b"x")), Some(&b"x"[..]));
    }

    #[test]
    fn non_hellos_and_truncations_are_ignored() {
        assert_eq!(client_hello_session_id(&hello(&[])), None);
        let d = hello(&[1; 32]);
        for cut in 0..d.len() - 10 {
            assert_eq!(client_hello_session_id(&d[..cut]), None, "cut at {cut}");
        }
        let mut app = d.clone();
        app[0] = 23; // application data
        assert_eq!(client_hello_session_id(&app), None);
        let mut epoch1 = d.clone();
        epoch1[4] = 1;
        assert_eq!(client_hello_session_id(&epoch1), None);
        let mut frag = d.clone();
        frag[13 + 8] = 1;
        assert_eq!(client_hello_session_id(&frag), None);
        assert_eq!(client_hello_session_id(&[]), None);
    }
}
