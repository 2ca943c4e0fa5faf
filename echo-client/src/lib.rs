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
//! # UDP
//!
//! RFC 862's datagram service gets the same lock step ([`connect_udp`],
//! [`echo_lines`], [`echo_messages`]): one line of input, newline included,
//! goes out as one datagram, and the next waits until the reply has come
//! back and matched. A datagram carries at most [`MAX_DATAGRAM`] bytes, so a
//! longer line is an error rather than being cut in pieces that would no
//! longer be one message each. UDP may lose a datagram or its reply, and
//! nothing would ever say so: the timeout, applied to each reply, ends the
//! session with the number of the datagram that got none.
//!
//! Read next: `src/main.rs` (arguments and exit codes only), then the
//! server's poll loop (`src/server.rs` in `mio-echo`) for the other side of
//! the connection.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use mio_echo_net::describe;

/// How many bytes go out before the client waits for them to come back.
///
/// Small enough that one chunk always fits in the kernel's socket buffers
/// plus what the server may owe (so a chunk is never stuck half sent), large
/// enough that piping hundreds of MiB takes few round trips.
pub const CHUNK: usize = 64 * 1024;

/// The most bytes one UDP datagram carries over IPv4: 65,535 less the
/// 20-byte IP header and the 8-byte UDP header. (IPv6 allows 65,527; one
/// limit for both means a line that goes over one goes over the other.)
pub const MAX_DATAGRAM: usize = 65_507;

/// Room for any reply, even one longer than what was sent (up to IPv6's
/// 65,527 bytes), so a wrong length is seen as such.
const REPLY_BUF: usize = 64 * 1024;

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
    /// A line (or message) is too long for one UDP datagram.
    DatagramTooLong {
        /// Which datagram it would have been, counting from 1.
        datagram: u64,
    },
    /// No reply to a datagram arrived within the timeout.
    NoReply {
        /// The server's address.
        peer: SocketAddr,
        /// The datagram that got no reply, counting from 1.
        datagram: u64,
        /// How long we waited.
        timeout: Duration,
    },
    /// The server's host reported that no socket listens on the port (an
    /// ICMP port unreachable, which UDP reports on the next receive).
    PortUnreachable {
        /// The server's address.
        peer: SocketAddr,
        /// The datagram being exchanged when the report arrived.
        datagram: u64,
    },
    /// A reply differs from the datagram it answers.
    ReplyDiffers {
        /// The server's address.
        peer: SocketAddr,
        /// The datagram answered, counting from 1.
        datagram: u64,
        /// The first differing byte, counted from the start of the datagram
        /// (the shorter one's length when one is a prefix of the other).
        offset: usize,
        /// The bytes at `offset`, sent and received, when both have one.
        bytes: Option<(u8, u8)>,
        /// The datagram's length.
        sent_len: usize,
        /// The reply's length.
        got_len: usize,
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
            ClientError::DatagramTooLong { datagram } => write!(
                f,
                "datagram {datagram} would be longer than {MAX_DATAGRAM} bytes, the most one \
                 UDP datagram carries (each line, newline included, is one datagram; \
                 TCP has no such limit)"
            ),
            ClientError::NoReply {
                peer,
                datagram,
                timeout,
            } => write!(
                f,
                "no reply from udp {peer} to datagram {datagram} within {} \
                 (lost, or no UDP echo server there)",
                Secs(*timeout)
            ),
            ClientError::PortUnreachable { peer, datagram } => write!(
                f,
                "udp {peer} is unreachable at datagram {datagram}: nothing listens on that \
                 port (is echo-server running with --udp?)"
            ),
            ClientError::ReplyDiffers {
                peer,
                datagram,
                offset,
                bytes,
                sent_len,
                got_len,
            } => {
                write!(
                    f,
                    "reply from udp {peer} to datagram {datagram} differs from what was sent \
                     at offset {offset} "
                )?;
                match bytes {
                    Some((sent, got)) => write!(f, "(sent 0x{sent:02x}, got 0x{got:02x})"),
                    None => write!(f, "(sent {sent_len} bytes, got {got_len})"),
                }
            }
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

/// Resolves `addr` (`IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`) and opens a
/// UDP socket connected to its first address, with `timeout` as its read
/// and write timeout.
///
/// UDP has no handshake that would tell which of a name's addresses
/// answers, so the first is used: give an IP to choose. Connecting the
/// socket makes the kernel deliver only datagrams from that address, and
/// report an ICMP port unreachable as an error on the next receive.
pub fn connect_udp(addr: &str, timeout: Duration) -> Result<(UdpSocket, SocketAddr), ClientError> {
    let resolve_error = |source| ClientError::Resolve {
        addr: addr.to_string(),
        source,
    };
    let peer = addr
        .to_socket_addrs()
        .map_err(resolve_error)?
        .next()
        .ok_or_else(|| {
            resolve_error(io::Error::new(
                io::ErrorKind::NotFound,
                "the name has no addresses",
            ))
        })?;
    let connect_error = |source| ClientError::Connect {
        target: addr.to_string(),
        addr: peer,
        tried: 1,
        timeout,
        source,
    };
    let local: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(connect_error)?;
    socket.connect(peer).map_err(connect_error)?;
    let socket_error = |what| move |source| ClientError::Socket { peer, what, source };
    socket
        .set_read_timeout(Some(timeout))
        .map_err(socket_error("the read timeout"))?;
    socket
        .set_write_timeout(Some(timeout))
        .map_err(socket_error("the write timeout"))?;
    log::debug!("sending datagrams to {peer}");
    Ok((socket, peer))
}

/// Sends each line of `input`, newline included, as one datagram on
/// `socket` (from [`connect_udp`]), waits at most `opts.timeout` for its
/// reply, checks it, and copies it to `output`, flushing after each.
///
/// A last line without a newline goes out as it is. Returns the number of
/// datagrams echoed. A line longer than [`MAX_DATAGRAM`] is an error, found
/// before anything of it is sent, and at most that many bytes of it are
/// ever held in memory.
pub fn echo_lines(
    socket: &UdpSocket,
    peer: SocketAddr,
    input: &mut impl BufRead,
    output: &mut impl Write,
    opts: &Options,
) -> Result<u64, ClientError> {
    datagram_per_line(&mut { socket }, peer, input, output, opts)
}

/// [`echo_lines`] over any [`Datagrams`].
fn datagram_per_line<S: Datagrams>(
    socket: &mut S,
    peer: SocketAddr,
    input: &mut impl BufRead,
    output: &mut impl Write,
    opts: &Options,
) -> Result<u64, ClientError> {
    let mut line = Vec::new();
    let mut back = vec![0u8; REPLY_BUF];
    let mut number: u64 = 0;
    loop {
        line.clear();
        // One byte past the limit is enough to know the line is too long.
        // (`read_until` retries `Interrupted` by itself.)
        let limit = MAX_DATAGRAM as u64 + 1;
        let n = (&mut *input)
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(ClientError::Input)?;
        if n == 0 {
            return Ok(number);
        }
        number += 1;
        echo_datagram(socket, peer, number, &line, &mut back, output, opts)?;
    }
}

/// Like [`echo_lines`], with one datagram per message: for `--message`,
/// where a message may hold newlines of its own.
pub fn echo_messages<M: AsRef<[u8]>>(
    socket: &UdpSocket,
    peer: SocketAddr,
    messages: &[M],
    output: &mut impl Write,
    opts: &Options,
) -> Result<u64, ClientError> {
    let mut socket = socket;
    let mut back = vec![0u8; REPLY_BUF];
    let mut number: u64 = 0;
    for message in messages {
        number += 1;
        echo_datagram(
            &mut socket,
            peer,
            number,
            message.as_ref(),
            &mut back,
            output,
            opts,
        )?;
    }
    Ok(number)
}

/// What the datagram exchange needs of its socket. A trait so the unit
/// tests can stand a scripted server in for a UDP socket.
trait Datagrams {
    /// Sends one datagram to the connected peer.
    fn send(&mut self, datagram: &[u8]) -> io::Result<usize>;
    /// Receives one datagram from the connected peer.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Datagrams for &UdpSocket {
    fn send(&mut self, datagram: &[u8]) -> io::Result<usize> {
        UdpSocket::send(self, datagram)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        UdpSocket::recv(self, buf)
    }
}

/// One lock step over UDP: send datagram `number`, read one reply, check
/// it, print it.
fn echo_datagram<S: Datagrams>(
    socket: &mut S,
    peer: SocketAddr,
    number: u64,
    sent: &[u8],
    back: &mut [u8],
    output: &mut impl Write,
    opts: &Options,
) -> Result<(), ClientError> {
    if sent.len() > MAX_DATAGRAM {
        return Err(ClientError::DatagramTooLong { datagram: number });
    }
    let unreachable = ClientError::PortUnreachable {
        peer,
        datagram: number,
    };
    loop {
        match socket.send(sent) {
            // A datagram goes whole or not at all: no partial sends.
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // An ICMP error from an earlier datagram is reported here.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(unreachable),
            Err(e) if is_timeout(&e) => {
                return Err(ClientError::SendStalled {
                    peer,
                    timeout: opts.timeout,
                })
            }
            Err(source) => return Err(ClientError::Send { peer, source }),
        }
    }
    let got = loop {
        match socket.recv(back) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The read timeout passed: the datagram or its reply was lost,
            // or nothing answers there. UDP cannot tell which.
            Err(e) if is_timeout(&e) => {
                return Err(ClientError::NoReply {
                    peer,
                    datagram: number,
                    timeout: opts.timeout,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(unreachable),
            Err(source) => return Err(ClientError::Receive { peer, source }),
        }
    };
    let reply = &back[..got];
    if reply != sent {
        let offset = sent
            .iter()
            .zip(reply)
            .position(|(a, b)| a != b)
            .unwrap_or(sent.len().min(reply.len()));
        return Err(ClientError::ReplyDiffers {
            peer,
            datagram: number,
            offset,
            bytes: sent.get(offset).copied().zip(reply.get(offset).copied()),
            sent_len: sent.len(),
            got_len: reply.len(),
        });
    }
    output
        .write_all(reply)
        .and_then(|()| output.flush())
        .map_err(ClientError::Output)
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

    /// A scripted UDP server: answers each datagram with `answer(n, bytes)`
    /// (n counting from 1), or with silence when that returns `None`.
    struct Udp<F: FnMut(u64, &[u8]) -> Option<Vec<u8>>> {
        answer: F,
        sent: Vec<Vec<u8>>,
        replies: VecDeque<Vec<u8>>,
    }

    impl<F: FnMut(u64, &[u8]) -> Option<Vec<u8>>> Datagrams for Udp<F> {
        fn send(&mut self, datagram: &[u8]) -> io::Result<usize> {
            self.sent.push(datagram.to_vec());
            let n = self.sent.len() as u64;
            if let Some(reply) = (self.answer)(n, datagram) {
                self.replies.push_back(reply);
            }
            Ok(datagram.len())
        }

        fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let reply = self
                .replies
                .pop_front()
                .ok_or(io::Error::from(io::ErrorKind::WouldBlock))?;
            let n = reply.len().min(buf.len());
            buf[..n].copy_from_slice(&reply[..n]);
            Ok(n)
        }
    }

    fn udp<F: FnMut(u64, &[u8]) -> Option<Vec<u8>>>(answer: F) -> Udp<F> {
        Udp {
            answer,
            sent: Vec::new(),
            replies: VecDeque::new(),
        }
    }

    fn run_lines<F: FnMut(u64, &[u8]) -> Option<Vec<u8>>>(
        server: &mut Udp<F>,
        input: &[u8],
    ) -> (Result<u64, ClientError>, Vec<u8>) {
        let mut output = Vec::new();
        let result = datagram_per_line(server, peer(), &mut &input[..], &mut output, &opts());
        (result, output)
    }

    /// Each line, newline included, is one datagram; a last line without a
    /// newline goes as it is; an empty line is a one-byte datagram.
    #[test]
    fn each_line_is_one_datagram() {
        let mut server = udp(|_, d| Some(d.to_vec()));
        let (result, output) = run_lines(&mut server, b"one\ntwo two\n\nlast");
        assert_eq!(result.unwrap(), 4);
        assert_eq!(output, b"one\ntwo two\n\nlast");
        let sent: Vec<&[u8]> = server.sent.iter().map(Vec::as_slice).collect();
        assert_eq!(sent, [&b"one\n"[..], b"two two\n", b"\n", b"last"]);
    }

    /// A line of exactly the limit goes; one byte more is an error naming
    /// the datagram, and nothing of it is sent.
    #[test]
    fn a_line_past_the_datagram_limit_is_an_error() {
        let mut fits = vec![b'x'; MAX_DATAGRAM - 1];
        fits.push(b'\n');
        let mut server = udp(|_, d| Some(d.to_vec()));
        assert_eq!(run_lines(&mut server, &fits).0.unwrap(), 1);

        let mut input = b"short\n".to_vec();
        input.extend(vec![b'y'; MAX_DATAGRAM]);
        input.push(b'\n');
        let mut server = udp(|_, d| Some(d.to_vec()));
        let (result, output) = run_lines(&mut server, &input);
        let e = result.unwrap_err();
        assert!(
            matches!(e, ClientError::DatagramTooLong { datagram: 2 }),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .starts_with("datagram 2 would be longer than 65507 bytes"));
        assert_eq!(server.sent.len(), 1);
        assert_eq!(output, b"short\n");
    }

    /// A datagram that gets no reply ends the session, naming its number.
    #[test]
    fn a_missing_reply_names_the_datagram() {
        let mut server = udp(|n, d| (n != 3).then(|| d.to_vec()));
        let (result, output) = run_lines(&mut server, b"a\nb\nc\nd\n");
        let e = result.unwrap_err();
        assert!(
            matches!(e, ClientError::NoReply { datagram: 3, .. }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "no reply from udp 127.0.0.1:7007 to datagram 3 within 0.5s \
             (lost, or no UDP echo server there)"
        );
        assert_eq!(output, b"a\nb\n");
    }

    /// A changed byte is reported at its offset in the datagram.
    #[test]
    fn a_changed_reply_names_the_datagram_and_offset() {
        let mut server = udp(|n, d| {
            let mut reply = d.to_vec();
            if n == 2 {
                reply[4] ^= 0x20;
            }
            Some(reply)
        });
        let (result, _) = run_lines(&mut server, b"first\nsecond\n");
        assert_eq!(
            result.unwrap_err().to_string(),
            "reply from udp 127.0.0.1:7007 to datagram 2 differs from what was sent \
             at offset 4 (sent 0x6e, got 0x4e)"
        );
    }

    /// A reply of another length is reported with both lengths.
    #[test]
    fn a_short_reply_names_both_lengths() {
        let mut server = udp(|_, d| Some(d[..d.len() - 1].to_vec()));
        let (result, output) = run_lines(&mut server, b"hello\n");
        assert_eq!(
            result.unwrap_err().to_string(),
            "reply from udp 127.0.0.1:7007 to datagram 1 differs from what was sent \
             at offset 5 (sent 6 bytes, got 5)"
        );
        assert!(output.is_empty());
    }
}
