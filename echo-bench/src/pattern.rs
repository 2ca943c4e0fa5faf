//! The bytes echo-bench sends, and how an echo is checked without keeping a
//! copy of what was sent.
//!
//! Each connection sends one endless byte stream, fixed in advance: byte `i`
//! of connection `c` is `TABLE[(phase(c) + i) % PERIOD]`, where `TABLE` is
//! [`PERIOD`] pseudo-random bytes made once per loop. To send, a connection
//! writes a slice of the table; to check an echo, it compares what it read
//! with the table at the offset the echo has reached. Both are one slice of
//! memory, so a check is one `memcmp` and nothing is stored per message.
//!
//! Why this catches what a broken server does:
//!
//! * **A changed byte** differs from the table at its offset.
//! * **Lost, repeated or reordered bytes** shift the rest of the stream; the
//!   bytes are pseudo-random, so a shifted stream differs within a few bytes.
//!   `PERIOD` is prime, so no message size lines up with it.
//! * **Bytes meant for another connection** start elsewhere in the table:
//!   each connection has its own phase.
//!
//! The table is [`MAX_RUN`] bytes longer than `PERIOD` (its start repeated),
//! so a slice of up to `MAX_RUN` bytes never wraps around.
//!
//! Read next: [`super::dial`], which opens the connections these bytes go
//! over.

use std::fmt;
use std::io::{self, Read};

use super::report::Fault;
use super::IO_CHUNK;

/// The length of the repeating pattern: the largest prime below 64 Ki.
pub const PERIOD: usize = 65_521;

/// The most bytes one [`Pattern::bytes`] slice or one compare covers: one
/// read or write.
pub const MAX_RUN: usize = IO_CHUNK;

/// Steps between the phases of consecutive connections. Coprime with the
/// prime `PERIOD`, so the first `PERIOD` connections all start apart.
const STRIDE: usize = 4_099;

/// The expected bytes of every connection's stream.
pub struct Pattern {
    table: Box<[u8]>,
}

impl Default for Pattern {
    fn default() -> Self {
        Pattern::new()
    }
}

impl Pattern {
    /// Builds the table: the same bytes in every run and every process, so
    /// runs compare and a failure reproduces.
    pub fn new() -> Pattern {
        let mut table = vec![0u8; PERIOD + MAX_RUN].into_boxed_slice();
        // splitmix64: fast, and every output byte looks random.
        let mut state: u64 = 0x0ec0_be9c_4a11_5eed;
        for byte in &mut table[..PERIOD] {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *byte = (z ^ (z >> 31)) as u8;
        }
        table.copy_within(..MAX_RUN, PERIOD);
        Pattern { table }
    }

    /// Where connection number `connection` starts in the table.
    pub fn phase(connection: usize) -> usize {
        (connection % PERIOD) * STRIDE % PERIOD
    }

    /// The bytes at `offset` of the stream that starts at `phase`: `len`
    /// of them, or [`MAX_RUN`] if `len` is larger.
    pub fn bytes(&self, phase: usize, offset: u64, len: usize) -> &[u8] {
        let at = ((phase as u64 + offset) % PERIOD as u64) as usize;
        &self.table[at..at + len.min(MAX_RUN)]
    }

    /// Checks that `got` is what the stream at `phase` holds from `offset`
    /// on. On a difference, says where the first one is.
    pub fn check(&self, phase: usize, offset: u64, got: &[u8]) -> Result<(), Mismatch> {
        let mut done = 0;
        while done < got.len() {
            let part = &got[done..(done + MAX_RUN).min(got.len())];
            let want = self.bytes(phase, offset + done as u64, part.len());
            // The common case is one compare of two slices; only a failure
            // pays for finding the byte.
            if part != want {
                let i = part.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                return Err(Mismatch {
                    offset: offset + (done + i) as u64,
                    expected: want[i],
                    got: part[i],
                });
            }
            done += part.len();
        }
        Ok(())
    }
}

/// An echoed byte that is not the one sent at its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// The byte's offset in the connection's stream (0 is the first byte
    /// the connection sent).
    pub offset: u64,
    /// What was sent at that offset.
    pub expected: u8,
    /// What came back.
    pub got: u8,
}

/// Reads once from `stream` into `buf` and checks what came against the
/// pattern at `phase`, for a connection that has `received` of the `sent`
/// bytes back. `Ok(None)`: the receive queue is empty (`WouldBlock`);
/// `Ok(Some(0))`: the server's EOF, for the caller to judge; `Ok(Some(n))`:
/// `n` more correct bytes. A byte that differs, or more bytes than were
/// sent, is the `Fault`. A signal interrupting the call is retried.
pub fn read_echo(
    stream: &mut impl Read,
    buf: &mut [u8],
    pattern: &Pattern,
    phase: usize,
    received: u64,
    sent: u64,
) -> Result<Option<usize>, Fault> {
    loop {
        let n = match stream.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fault::Io(e)),
        };
        if received + n as u64 > sent {
            return Err(Fault::Extra { received, sent });
        }
        pattern
            .check(phase, received, &buf[..n])
            .map_err(Fault::Mismatch)?;
        return Ok(Some(n));
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "echo differs at byte {} of the stream: sent 0x{:02x}, got 0x{:02x}",
            self.offset, self.expected, self.got
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream continues seamlessly across the table's end.
    #[test]
    fn stream_is_continuous_across_the_period() {
        let p = Pattern::new();
        let phase = Pattern::phase(3);
        let whole: Vec<u8> = (0..3 * PERIOD as u64)
            .step_by(1000)
            .flat_map(|at| p.bytes(phase, at, 1000).to_vec())
            .collect();
        for (i, &b) in whole.iter().enumerate() {
            assert_eq!(b, p.bytes(phase, i as u64, 1)[0], "offset {i}");
        }
    }

    /// What was sent passes the check, at any offset and length.
    #[test]
    fn sent_bytes_pass() {
        let p = Pattern::new();
        let sent = p.bytes(7, 123_456, MAX_RUN).to_vec();
        assert_eq!(p.check(7, 123_456, &sent), Ok(()));
        assert_eq!(p.check(7, 123_456 + 10, &sent[10..20]), Ok(()));
    }

    /// One changed byte is found and named by its stream offset.
    #[test]
    fn a_changed_byte_is_found() {
        let p = Pattern::new();
        let mut got = p.bytes(0, 1000, 64).to_vec();
        got[17] ^= 0x01;
        let m = p.check(0, 1000, &got).unwrap_err();
        assert_eq!(m.offset, 1017);
        assert_eq!(m.got, m.expected ^ 0x01);
    }

    /// A lost byte shifts the stream and fails the check.
    #[test]
    fn a_lost_byte_is_found() {
        let p = Pattern::new();
        let mut got = p.bytes(0, 0, 64).to_vec();
        got.remove(5);
        assert!(p.check(0, 0, &got).is_err());
    }

    /// Checks longer than one run are split and still exact.
    #[test]
    fn long_checks_are_split() {
        let p = Pattern::new();
        let mut got = Vec::new();
        for i in 0..3 {
            got.extend_from_slice(p.bytes(2, (i * MAX_RUN) as u64, MAX_RUN));
        }
        assert_eq!(p.check(2, 0, &got), Ok(()));
        got[2 * MAX_RUN + 1] ^= 0xff;
        assert_eq!(
            p.check(2, 0, &got).unwrap_err().offset,
            (2 * MAX_RUN + 1) as u64
        );
    }

    /// Neighbouring connections send different bytes.
    #[test]
    fn connections_have_their_own_bytes() {
        let p = Pattern::new();
        let a = p.bytes(Pattern::phase(0), 0, 64);
        let b = p.bytes(Pattern::phase(1), 0, 64);
        assert_ne!(a, b);
    }
}
