//! RFC 864, character generator: send lines of a rotating pattern as fast
//! as the client reads them, and read and ignore whatever it sends.
//!
//! The pattern is RFC 864's: the 95 printable ASCII characters in a ring;
//! line `i` is 72 of them starting at the `i`-th, then CR LF. After 95
//! lines it repeats, so the whole stream is one period of
//! [`PERIOD`] bytes over and over. It lives once, in a static table, twice
//! over so that a slice of a whole period starts at any offset; where a
//! connection is in it is its byte count modulo the period. So a client
//! that never reads costs no memory that grows: its kernel send queue
//! fills, `write` says `WouldBlock`, and nothing is queued here.
//!
//! What the client sends is read (and dropped) before each round of
//! writing: to see its FIN, and because closing a socket with unread bytes
//! sends a reset that would destroy lines still in flight.

use std::io;

use crate::connection::{Connection, Limits, Next, Reason, Received, Stream, Wake};

/// Characters per line, before CR LF.
const LINE: usize = 72;

/// Printable ASCII, `' '` to `'~'`.
const CHARS: usize = 95;

/// One period of the stream: 95 lines of 72 characters and CR LF.
pub(crate) const PERIOD: usize = CHARS * (LINE + 2);

/// Two periods of the stream, so that `PATTERN[at..at + PERIOD]` is the
/// stream from any offset `at` below [`PERIOD`].
static PATTERN: [u8; 2 * PERIOD] = pattern();

const fn pattern() -> [u8; 2 * PERIOD] {
    let mut out = [0u8; 2 * PERIOD];
    let mut i = 0;
    while i < 2 * PERIOD {
        let line = (i / (LINE + 2)) % CHARS;
        let col = i % (LINE + 2);
        out[i] = if col == LINE {
            b'\r'
        } else if col == LINE + 1 {
            b'\n'
        } else {
            b' ' + ((line + col) % CHARS) as u8
        };
        i += 1;
    }
    out
}

/// The stream from byte `offset` on: at least one whole period.
pub(crate) fn from(offset: u64) -> &'static [u8] {
    let at = (offset % PERIOD as u64) as usize;
    &PATTERN[at..at + PERIOD]
}

/// One chargen pass: drop what the client sent (its FIN ends the
/// connection), then write the pattern until the kernel's send queue is
/// full or the pass has used its budget.
pub(crate) fn pass<S: Stream>(
    c: &mut Connection<S>,
    buf: &mut [u8],
    wake: Wake,
    limits: &Limits,
) -> Next {
    let mut more_to_read = false;
    let mut read = 0;
    loop {
        match c.receive(buf, wake.now) {
            Received::Bytes(n) => {
                read += n;
                if read >= limits.budget {
                    // Enough for this pass; no event will say the rest is there.
                    more_to_read = true;
                    break;
                }
            }
            Received::Nothing => break,
            Received::Eof => return c.finish(),
            Received::Failed(e) => return c.abort(Reason::Error(e)),
        }
    }
    let mut sent = 0;
    while sent < limits.budget {
        match c.send(from(c.bytes_out()), wake.now) {
            Ok(n) => sent += n,
            // The send queue is full: the writable event will come when the
            // client has read some.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return if more_to_read {
                    Next::Again
                } else {
                    Next::Wait
                };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return c.abort(Reason::Error(e)),
        }
    }
    Next::Again
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first lines are RFC 864's example, and every line is 72
    /// printable characters and CR LF.
    #[test]
    fn the_pattern_is_rfc_864s() {
        let text = std::str::from_utf8(&PATTERN[..PERIOD]).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), CHARS);
        // Like inetd's, the ring starts at the space; RFC 864's example
        // shows the lines from the second on.
        assert_eq!(lines[0].as_bytes()[..2], *b" !");
        assert_eq!(
            lines[1],
            "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh"
        );
        assert!(lines.iter().all(|l| l.len() == LINE));
        assert_eq!(&PATTERN[PERIOD..2 * PERIOD], &PATTERN[..PERIOD]);
    }

    /// The stream continues where it stopped, across the period.
    #[test]
    fn the_stream_resumes_at_any_offset() {
        let whole: Vec<u8> = PATTERN[..PERIOD].repeat(3);
        for offset in [0u64, 1, 73, 74, PERIOD as u64 - 1, PERIOD as u64 + 5] {
            let at = offset as usize;
            assert_eq!(from(offset), &whole[at..at + PERIOD], "offset {offset}");
        }
    }
}
