//! The blocking client behind `echo-client`: connect, send, check the echo.
//!
//! This file owns the client's side of the protocol: finding and connecting
//! to the server ([`connect`]), the send-then-read-back cycle that checks
//! every byte ([`echo`]), and the errors a person reads when it goes wrong
//! ([`ClientError`]).
//!
//! # Why blocking
//!
//! The server needs an event loop because it serves many peers at once and
//! must never wait on any one of them. The client has one peer and one job,
//! and it does that job in lock step:
//!
//! 1. read a chunk of input (at most [`CHUNK`] bytes);
//! 2. send all of it;
//! 3. read back exactly that many bytes, checking each against what was sent;
//! 4. write them to the output and flush; go to 1.
//!
//! At no point are both directions busy, so plain blocking calls with a
//! timeout say everything there is to say; a poll loop would add readiness
//! bookkeeping and nothing else. Lock step also makes large inputs safe: we
//! never have more than one chunk in flight, so the server's back-pressure
//! (it stops reading while it owes us bytes) cannot leave both sides
//! blocked in `write`. And because a read from a terminal returns one line,
//! the same loop echoes line by line when typed and in big chunks when piped.
//!
//! Every blocking call is bounded by [`Options::timeout`]: a silent server
//! ends in an error that says so, never in a hang.
//!
//! Read next: `src/bin/echo-client.rs` (arguments and exit codes only), then
//! [`crate::server`] for the other side of the connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::describe;

/// How many bytes go out before the client waits for them to come back.
///
/// Small enough that one chunk always fits in the kernel's socket buffers
/// plus what the server may owe (so a chunk is never stuck half sent), large
/// enough that piping hundreds of MiB takes few round trips.
pub const CHUNK: usize = 64 * 1024;

/// How long connecting, and each read of the echo, may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the client paces and bounds a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The longest any one connect, read or write may block. Must be more
    /// than zero: the operating system has no "zero timeout" for these calls.
    pub timeout: Duration,
    /// The most bytes sent before reading their echo back. Values far above
    /// [`CHUNK`] risk a send that the server's back-pressure never lets
    /// finish (which then ends in a timeout, not a hang). Zero counts as one.
    pub chunk: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: DEFAULT_TIMEOUT,
            chunk: CHUNK,
        }
    }
}

/// Why a session failed. `Display` gives the one line a person reads,
/// without the `error: ` prefix, which the binary adds.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The address did not parse, or the name did not resolve.
    Resolve {
        /// The address as given.
        addr: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// No address the name resolved to accepted a connection.
    Connect {
        /// The address as given.
        target: String,
        /// The last address tried; its error is `source`.
        addr: SocketAddr,
        /// How many addresses the name resolved to (all were tried).
        tried: usize,
        /// The timeout each attempt had.
        timeout: Duration,
        /// What the kernel said about the last attempt.
        source: io::Error,
    },
    /// A socket option the session relies on could not be set.
    Socket {
        /// The server's address.
        peer: SocketAddr,
        /// Which option.
        what: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
    /// The input could not be read.
    Input(io::Error),
    /// The echo could not be written to the output.
    Output(io::Error),
    /// Sending to the server (or half-closing) failed.
    Send {
        /// The server's address.
        peer: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
    /// The server took none of our bytes for a whole timeout.
    SendStalled {
        /// The server's address.
        peer: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// Reading the echo failed (a reset, for instance).
    Receive {
        /// The server's address.
        peer: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
    /// No echo arrived for a whole timeout while bytes were owed.
    NoEcho {
        /// The server's address.
        peer: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// Everything was echoed and we half-closed, but the server neither
    /// closed nor sent anything for a whole timeout.
    NoClose {
        /// The server's address.
        peer: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// The server closed before echoing everything it was sent.
    Closed {
        /// The server's address.
        peer: SocketAddr,
        /// Bytes echoed (and checked) before the close.
        echoed: u64,
        /// Bytes sent.
        sent: u64,
    },
    /// An echoed byte differs from the byte sent.
    Mismatch {
        /// The server's address.
        peer: SocketAddr,
        /// The first differing byte, counted from the start of the session.
        offset: u64,
        /// The byte sent at that offset.
        sent: u8,
        /// The byte that came back instead.
        got: u8,
    },
    /// The server sent bytes after echoing everything: it invented them.
    Extra {
        /// The server's address.
        peer: SocketAddr,
        /// Bytes sent (and echoed) in the whole session.
        sent: u64,
    },
}

impl ClientError {
    /// Whether the output's reader went away (`echo-client | head -c1`).
    ///
    /// That is how a pipeline says "enough", not a failure of the echo, so
    /// the binary ends quietly, as a tool killed by `SIGPIPE` would.
    pub fn is_output_closed(&self) -> bool {
        matches!(self, ClientError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// A duration as a person writes it: `5s`, `0.5s`.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.as_secs_f64())
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve { addr, source } => {
                write!(f, "cannot resolve {addr}: {}", describe(source))?;
                if source.kind() == io::ErrorKind::InvalidInput {
                    f.write_str(" (expected IP:PORT, [IPv6]:PORT or HOST:PORT)")?;
                }
                Ok(())
            }
            ClientError::Connect {
                target,
                addr,
                tried,
                timeout,
                source,
            } => {
                if *tried == 1 {
                    write!(f, "cannot connect to {addr}: ")?;
                } else {
                    write!(
                        f,
                        "cannot connect to {target} (tried {tried} addresses, the last {addr}): "
                    )?;
                }
                match source.kind() {
                    io::ErrorKind::ConnectionRefused => {
                        f.write_str("connection refused (is echo-server running?)")
                    }
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                        write!(f, "no answer within {}", Secs(*timeout))
                    }
                    _ => f.write_str(&describe(source)),
                }
            }
            ClientError::Socket { peer, what, source } => write!(
                f,
                "cannot set {what} on the connection to {peer}: {}",
                describe(source)
            ),
            ClientError::Input(source) => {
                write!(f, "cannot read the input: {}", describe(source))
            }
            ClientError::Output(source) => {
                write!(f, "cannot write the echo: {}", describe(source))
            }
            ClientError::Send { peer, source } => {
                write!(f, "cannot send to {peer}: {}", describe(source))
            }
            ClientError::SendStalled { peer, timeout } => write!(
                f,
                "{peer} took no bytes within {} (is the server stalled?)",
                Secs(*timeout)
            ),
            ClientError::Receive { peer, source } => {
                write!(f, "cannot read the echo from {peer}: {}", describe(source))
            }
            ClientError::NoEcho { peer, timeout } => write!(
                f,
                "no echo from {peer} within {} (is the server stalled?)",
                Secs(*timeout)
            ),
            ClientError::NoClose { peer, timeout } => write!(
                f,
                "{peer} echoed everything but did not close within {} of our end of input",
                Secs(*timeout)
            ),
            ClientError::Closed { peer, echoed, sent } => write!(
                f,
                "server {peer} closed the connection after {echoed} of {sent} bytes"
            ),
            ClientError::Mismatch {
                peer,
                offset,
                sent,
                got,
            } => write!(
                f,
                "echo from {peer} differs from what was sent at offset {offset} \
                 (sent 0x{sent:02x}, got 0x{got:02x})"
            ),
            ClientError::Extra { peer, sent } => write!(
                f,
                "{peer} sent bytes beyond the {sent} it was sent (the server invented them)"
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Resolve { source, .. }
            | ClientError::Connect { source, .. }
            | ClientError::Socket { source, .. }
            | ClientError::Send { source, .. }
            | ClientError::Receive { source, .. }
            | ClientError::Input(source)
            | ClientError::Output(source) => Some(source),
            _ => None,
        }
    }
}

/// Resolves `addr` (`IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`) and connects to
/// the first of its addresses that accepts, each attempt bounded by
/// `timeout`.
///
/// The returned stream has `timeout` as its read and write timeout and
/// `TCP_NODELAY` set; the address is the one that answered.
pub fn connect(addr: &str, timeout: Duration) -> Result<(TcpStream, SocketAddr), ClientError> {
    let resolve_error = |source| ClientError::Resolve {
        addr: addr.to_string(),
        source,
    };
    let candidates: Vec<SocketAddr> = addr.to_socket_addrs().map_err(resolve_error)?.collect();
    let mut last = None;
    // A name may resolve to several addresses (`localhost` is often both
    // ::1 and 127.0.0.1) and the server may listen on only one of them.
    for &candidate in &candidates {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(stream) => {
                configure(&stream, candidate, timeout)?;
                log::debug!("connected to {candidate}");
                return Ok((stream, candidate));
            }
            Err(e) => {
                log::debug!("cannot connect to {candidate}: {}", describe(&e));
                last = Some((candidate, e));
            }
        }
    }
    match last {
        Some((last_addr, source)) => Err(ClientError::Connect {
            target: addr.to_string(),
            addr: last_addr,
            tried: candidates.len(),
            timeout,
            source,
        }),
        None => Err(resolve_error(io::Error::new(
            io::ErrorKind::NotFound,
            "the name has no addresses",
        ))),
    }
}

/// Bounds every later read and write by `timeout`, and turns off Nagle.
fn configure(stream: &TcpStream, peer: SocketAddr, timeout: Duration) -> Result<(), ClientError> {
    let socket_error = |what| move |source| ClientError::Socket { peer, what, source };
    stream
        .set_read_timeout(Some(timeout))
        .map_err(socket_error("the read timeout"))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(socket_error("the write timeout"))?;
    // Each chunk waits for its echo before the next goes out: Nagle would
    // hold back a short last segment for nothing.
    stream
        .set_nodelay(true)
        .map_err(socket_error("TCP_NODELAY"))?;
    Ok(())
}

/// Sends everything `input` holds to the server in chunks, checks each
/// echoed byte, and copies the echo to `output`, flushing after each chunk.
///
/// At the end of the input it half-closes the connection and expects the
/// server to close in turn, with nothing more to say. Returns the number of
/// bytes echoed. Only bytes that came back correct reach `output`.
pub fn echo(
    stream: &mut TcpStream,
    peer: SocketAddr,
    input: &mut impl Read,
    output: &mut impl Write,
    opts: &Options,
) -> Result<u64, ClientError> {
    exchange(stream, peer, input, output, opts)
}

/// What [`echo`] needs of its connection: bytes both ways and a half-close.
/// A trait so the unit tests can stand a scripted server in for a socket.
trait Conn: Read + Write {
    /// Sends FIN: we will write no more, but still read.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Conn for TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// The lock-step cycle described in the module docs.
fn exchange<S: Conn>(
    stream: &mut S,
    peer: SocketAddr,
    input: &mut impl Read,
    output: &mut impl Write,
    opts: &Options,
) -> Result<u64, ClientError> {
    // An empty buffer would read 0 bytes, which means "end of input".
    let chunk = opts.chunk.max(1);
    let mut sent = vec![0u8; chunk];
    let mut back = vec![0u8; chunk];
    let mut total: u64 = 0;

    loop {
        let n = read_input(input, &mut sent)?;
        if n == 0 {
            break;
        }
        send(stream, peer, &sent[..n], opts)?;
        receive(stream, peer, &sent[..n], &mut back[..n], total, opts)?;
        output
            .write_all(&back[..n])
            .and_then(|()| output.flush())
            .map_err(ClientError::Output)?;
        total += n as u64;
    }

    // Our FIN tells the server we are done; it echoes what it still owes
    // (nothing, we have it all) and closes.
    stream
        .shutdown_write()
        .map_err(|source| ClientError::Send { peer, source })?;
    expect_close(stream, peer, &mut back, total, opts)?;
    Ok(total)
}

/// One read of the input: a line at a terminal, up to `buf.len()` from a
/// pipe or file. Returns 0 at the end of the input.
fn read_input(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, ClientError> {
    loop {
        match input.read(buf) {
            Ok(n) => return Ok(n),
            // A signal arrived mid-read; nothing was read, so just ask again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ClientError::Input(e)),
        }
    }
}

/// Sends all of `bytes`. `write_all` retries `Interrupted` by itself.
fn send<S: Conn>(
    stream: &mut S,
    peer: SocketAddr,
    bytes: &[u8],
    opts: &Options,
) -> Result<(), ClientError> {
    stream.write_all(bytes).map_err(|source| {
        if is_timeout(&source) {
            ClientError::SendStalled {
                peer,
                timeout: opts.timeout,
            }
        } else {
            ClientError::Send { peer, source }
        }
    })
}

/// Reads back exactly `sent.len()` bytes into `back`, checking each piece as
/// it arrives so the first wrong byte is reported even if the server then
/// stalls or closes. `base` is the session offset of `sent[0]`.
fn receive<S: Conn>(
    stream: &mut S,
    peer: SocketAddr,
    sent: &[u8],
    back: &mut [u8],
    base: u64,
    opts: &Options,
) -> Result<(), ClientError> {
    let mut got = 0;
    while got < sent.len() {
        match stream.read(&mut back[got..]) {
            // The server closed (or reset quietly) while it still owed us.
            Ok(0) => {
                return Err(ClientError::Closed {
                    peer,
                    echoed: base + got as u64,
                    sent: base + sent.len() as u64,
                })
            }
            Ok(n) => {
                let piece = got..got + n;
                check(&sent[piece.clone()], &back[piece], base + got as u64, peer)?;
                got += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The read timeout passed with nothing to read (Unix reports
            // this as `WouldBlock`, Windows as `TimedOut`).
            Err(e) if is_timeout(&e) => {
                return Err(ClientError::NoEcho {
                    peer,
                    timeout: opts.timeout,
                })
            }
            Err(source) => return Err(ClientError::Receive { peer, source }),
        }
    }
    Ok(())
}

/// After our FIN and a complete echo, the only right answer is the server's
/// FIN: a zero-byte read. Any byte is one we never sent.
fn expect_close<S: Conn>(
    stream: &mut S,
    peer: SocketAddr,
    buf: &mut [u8],
    total: u64,
    opts: &Options,
) -> Result<(), ClientError> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(ClientError::Extra { peer, sent: total }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => {
                return Err(ClientError::NoClose {
                    peer,
                    timeout: opts.timeout,
                })
            }
            Err(source) => return Err(ClientError::Receive { peer, source }),
        }
    }
}

/// Compares an echoed piece with what was sent; `base` is the session
/// offset of the piece's first byte.
fn check(sent: &[u8], back: &[u8], base: u64, peer: SocketAddr) -> Result<(), ClientError> {
    // The slice comparison is the fast path; only a mismatch pays for the
    // byte-by-byte search.
    if sent == back {
        return Ok(());
    }
    let i = sent
        .iter()
        .zip(back)
        .position(|(a, b)| a != b)
        .expect("slices of equal length that differ differ somewhere");
    Err(ClientError::Mismatch {
        peer,
        offset: base + i as u64,
        sent: sent[i],
        got: back[i],
    })
}

/// Whether an error is a socket timeout running out.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A scripted server: it echoes what it is sent, possibly altered, and
    /// answers reads from what it has queued.
    #[derive(Default)]
    struct Script {
        /// Bytes queued for the client to read.
        queued: VecDeque<u8>,
        /// Bytes sent to the server so far.
        received: u64,
        /// Flip the echo of the byte at this session offset.
        flip_at: Option<u64>,
        /// Echo only this many bytes, then close.
        close_after: Option<u64>,
        /// Echo nothing at all: reads time out.
        silent: bool,
        /// Bytes to send after the client's FIN.
        extra: Vec<u8>,
        /// Whether the client has sent FIN.
        fin: bool,
        /// The largest single read the client may get (as a socket might).
        max_read: usize,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.queued.is_empty() && !self.silent && self.fin {
                self.queued.extend(self.extra.drain(..));
            }
            if self.queued.is_empty() {
                if self.silent || (!self.fin && self.close_after.is_none()) {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                return Ok(0);
            }
            let n = buf.len().min(self.queued.len()).min(self.max_read.max(1));
            for (slot, byte) in buf.iter_mut().zip(self.queued.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            for &byte in buf {
                let at = self.received;
                self.received += 1;
                if self.silent || self.close_after.is_some_and(|limit| at >= limit) {
                    continue;
                }
                let flip = if self.flip_at == Some(at) { 0xff } else { 0 };
                self.queued.push_back(byte ^ flip);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Conn for Script {
        fn shutdown_write(&mut self) -> io::Result<()> {
            self.fin = true;
            Ok(())
        }
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:7007".parse().unwrap()
    }

    /// Small chunks, so a short input spans several of them.
    fn opts() -> Options {
        Options {
            timeout: Duration::from_millis(500),
            chunk: 4,
        }
    }

    fn run(script: &mut Script, input: &[u8]) -> (Result<u64, ClientError>, Vec<u8>) {
        let mut output = Vec::new();
        let result = exchange(script, peer(), &mut &input[..], &mut output, &opts());
        (result, output)
    }

    fn honest() -> Script {
        Script {
            max_read: 3,
            ..Script::default()
        }
    }

    /// A faithful echo over several chunks and short reads comes out whole.
    #[test]
    fn faithful_echo_is_copied_to_the_output() {
        let mut script = honest();
        let (result, output) = run(&mut script, b"hello, echo\n");
        assert_eq!(result.unwrap(), 12);
        assert_eq!(output, b"hello, echo\n");
        assert!(script.fin, "the client half-closes at the end of input");
    }

    /// Empty input: nothing is sent, the client half-closes, 0 bytes echoed.
    #[test]
    fn empty_input_echoes_nothing() {
        let mut script = honest();
        let (result, output) = run(&mut script, b"");
        assert_eq!(result.unwrap(), 0);
        assert!(output.is_empty());
        assert!(script.fin);
    }

    /// A wrong byte is reported at its offset in the session, not in its
    /// chunk, and nothing from its chunk reaches the output.
    #[test]
    fn a_wrong_byte_is_reported_at_its_session_offset() {
        let mut script = Script {
            flip_at: Some(9),
            ..honest()
        };
        let (result, output) = run(&mut script, b"0123456789ab");
        match result {
            Err(ClientError::Mismatch {
                offset, sent, got, ..
            }) => {
                assert_eq!(offset, 9);
                assert_eq!(sent, b'9');
                assert_eq!(got, b'9' ^ 0xff);
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert_eq!(output, b"01234567", "only the chunks before it");
    }

    /// The mismatch message names the offset and both bytes.
    #[test]
    fn mismatch_message_names_the_offset() {
        let e = ClientError::Mismatch {
            peer: peer(),
            offset: 70_000,
            sent: 0x41,
            got: 0x42,
        };
        assert_eq!(
            e.to_string(),
            "echo from 127.0.0.1:7007 differs from what was sent at offset 70000 \
             (sent 0x41, got 0x42)"
        );
    }

    /// A server that closes early is reported with how far it got.
    #[test]
    fn an_early_close_says_how_many_bytes_came_back() {
        let mut script = Script {
            close_after: Some(6),
            ..honest()
        };
        let (result, _) = run(&mut script, b"0123456789");
        let e = result.unwrap_err();
        assert!(matches!(
            e,
            ClientError::Closed {
                echoed: 6,
                sent: 8,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "server 127.0.0.1:7007 closed the connection after 6 of 8 bytes"
        );
    }

    /// A server that never answers ends in a timeout error, not a hang.
    #[test]
    fn a_silent_server_is_a_timeout() {
        let mut script = Script {
            silent: true,
            ..honest()
        };
        let (result, _) = run(&mut script, b"anyone?\n");
        let e = result.unwrap_err();
        assert!(matches!(e, ClientError::NoEcho { .. }));
        assert_eq!(
            e.to_string(),
            "no echo from 127.0.0.1:7007 within 0.5s (is the server stalled?)"
        );
    }

    /// Bytes after a complete echo are bytes the server made up.
    #[test]
    fn bytes_beyond_the_echo_are_an_error() {
        let mut script = Script {
            extra: b"surprise".to_vec(),
            ..honest()
        };
        let (result, output) = run(&mut script, b"hi\n");
        assert!(matches!(result, Err(ClientError::Extra { sent: 3, .. })));
        assert_eq!(output, b"hi\n", "the correct echo was still written");
    }

    /// A refused connection names the address and suggests starting the server.
    #[test]
    fn refused_connection_suggests_starting_the_server() {
        let e = ClientError::Connect {
            target: "127.0.0.1:7007".into(),
            addr: peer(),
            tried: 1,
            timeout: DEFAULT_TIMEOUT,
            source: io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot connect to 127.0.0.1:7007: connection refused (is echo-server running?)"
        );
    }

    /// An address without a port says what shapes are accepted.
    #[test]
    fn an_unparsable_address_says_what_is_expected() {
        let e = connect("no-port-here", DEFAULT_TIMEOUT).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot resolve no-port-here: invalid socket address"),
            "{e}"
        );
        assert!(e
            .to_string()
            .ends_with("(expected IP:PORT, [IPv6]:PORT or HOST:PORT)"));
    }

    /// Only a broken pipe on the output counts as the reader going away.
    #[test]
    fn only_a_broken_output_pipe_is_the_reader_leaving() {
        assert!(ClientError::Output(io::ErrorKind::BrokenPipe.into()).is_output_closed());
        assert!(!ClientError::Output(io::ErrorKind::Other.into()).is_output_closed());
        assert!(!ClientError::Input(io::ErrorKind::BrokenPipe.into()).is_output_closed());
    }
}
