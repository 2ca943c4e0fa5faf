//! Opening many connections at once, without a thread or a blocking call
//! per connection.
//!
//! Every connection starts with a non-blocking `connect`, which returns at
//! once (on loopback often with the handshake already done, otherwise with
//! `EINPROGRESS`). The socket is registered with the loop's poll for reading
//! and writing, once, for its whole life: the modes reuse the registration,
//! so the hot path never calls `epoll_ctl`. The kernel reports a socket
//! writable when its handshake ends; then, as mio's documentation asks,
//! `take_error` says whether it failed and `peer_addr` whether it is really
//! connected (a writable event, like every event, is only a hint).
//!
//! # Source addresses
//!
//! A connection is named by (source IP, source port, destination IP,
//! destination port), and the kernel picks source ports from its ephemeral
//! range (here 32768..60999, about 28,000 ports). One source address can
//! therefore hold about 28,000 connections to one server. The whole of
//! 127.0.0.0/8 is loopback on Linux, so the tool can bind each socket to one
//! of 127.0.0.1, 127.0.0.2, ... in turn before connecting. With
//! `IP_BIND_ADDRESS_NO_PORT` the port is chosen at `connect`, for the whole
//! four-tuple, rather than at `bind` for the address alone.
//!
//! How many connections to put on one source address is a matter of speed
//! more than of room. Linux's `connect` tries even ports first and walks the
//! range, checking each candidate against the established connections; the
//! walk stays short while the even ports last (about 14,000 here) and grows
//! long past them. Measured here, 19,900 connections to one server took
//! 7.4 s to open from one source address and 0.28 s from two. Ports held in
//! `TIME_WAIT` by an earlier run (the tool closes first, so its side keeps
//! them for a minute) count against the same budget. So every mode spreads
//! its connections over [`PER_SOURCE`]-sized groups ([`sources_for`]).
//!
//! Read next: [`super::report`] for how failures are counted.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::report::{Failures, Fault};
use super::LoadError;

/// Connections per source address when the number of sources is not given.
///
/// Not the ~28,000 ports of the ephemeral range: past about half of it (the
/// even ports, which `connect` tries first) opening a connection gets slow,
/// and an earlier run's `TIME_WAIT` ports count too (see the module docs).
pub const PER_SOURCE: usize = 10_000;

/// The most source addresses: 127.0.0.1 to 127.0.0.254.
pub const MAX_SOURCES: usize = 254;

/// The source addresses for `count` connections to `target`, taken in turn.
///
/// `sources` asks for 127.0.0.1 ..= 127.0.0.`sources`; 0 chooses one per
/// [`PER_SOURCE`] connections, and none at all (the kernel picks, as for any
/// client) when one would do. Binding 127.0.0.x only reaches a loopback
/// server, so asking for more than one for any other target is an error.
pub fn sources_for(
    target: SocketAddr,
    count: usize,
    sources: usize,
) -> Result<Vec<IpAddr>, LoadError> {
    if sources > MAX_SOURCES {
        return Err(LoadError::Config(format!(
            "--sources must be between 1 and {MAX_SOURCES} (127.0.0.1 to 127.0.0.{MAX_SOURCES})"
        )));
    }
    let loopback_v4 = matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback());
    if !loopback_v4 {
        if sources > 1 {
            return Err(LoadError::Config(format!(
                "--sources binds 127.0.0.x addresses, so it needs an IPv4 loopback \
                 server (127.x.x.x), not {}",
                target.ip()
            )));
        }
        return Ok(Vec::new());
    }
    let k = match sources {
        0 => match count.div_ceil(PER_SOURCE) {
            0 | 1 => return Ok(Vec::new()),
            k => k.min(MAX_SOURCES),
        },
        k => k,
    };
    Ok((1..=k as u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect())
}

/// What to open.
#[derive(Debug, Clone, Copy)]
pub struct Dial<'a> {
    /// The server.
    pub target: SocketAddr,
    /// Source addresses to bind, taken in turn by connection number; empty
    /// to let the kernel choose.
    pub sources: &'a [IpAddr],
    /// How many connections to open.
    pub count: usize,
    /// The number of the first connection (for source choice and failure
    /// reports when several loops share a run). Connection `first + i` is
    /// registered with `Token(i)`.
    pub first: usize,
    /// How long a connection may take to open.
    pub timeout: Duration,
}

/// The connections that opened, and what happened to the others.
#[derive(Debug)]
pub struct Dialed {
    /// Connection `i`'s socket (registered as `Token(i)`), or `None` if it
    /// failed to open.
    pub streams: Vec<Option<TcpStream>>,
    /// How many opened.
    pub opened: usize,
    /// The ones that did not, by kind.
    pub failures: Failures,
    /// The kernel's error for the first that failed, for a one-line report.
    pub first_error: Option<io::Error>,
    /// From the first `connect` to the last connection that opened (or to
    /// the first `connect` if none did).
    pub elapsed: Duration,
}

/// One connection while it opens.
enum Opening {
    Pending(TcpStream),
    Open(TcpStream),
    Failed,
}

/// Opens `dial.count` connections and registers each with `poll` for
/// reading and writing, waiting at most `dial.timeout` for the slowest.
///
/// Individual failures are counted, never returned: the caller decides
/// whether a partial set is worth running on. Only a failure of `poll`
/// itself is an error.
pub fn dial(poll: &mut Poll, events: &mut Events, dial: &Dial) -> io::Result<Dialed> {
    let started = Instant::now();
    let mut conns = Vec::with_capacity(dial.count);
    let mut failures = Failures::default();
    let mut first_error = None;
    let mut pending = 0usize;

    for i in 0..dial.count {
        let source = source_for(dial.sources, dial.first + i);
        let started = start_connect(dial.target, source).and_then(|mut stream| {
            poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match started {
            Ok(stream) => {
                conns.push(Opening::Pending(stream));
                pending += 1;
            }
            Err(e) => {
                keep_first(&mut first_error, &e);
                failures.record(dial.first + i, &Fault::Connect(e));
                conns.push(Opening::Failed);
            }
        }
    }

    // The timeout runs from the last `connect` call, not the first: with
    // thousands of connections the calls themselves take a while (the
    // kernel searches for a free source port in each), and none of that is
    // the server's fault.
    let deadline = Instant::now() + dial.timeout;
    let mut last_open = started;
    while pending > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match poll.poll(events, Some(deadline - now)) {
            Ok(()) => {}
            // A signal interrupted the wait; nothing happened to the sockets.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let i = event.token().0;
            let Some(slot) = conns.get_mut(i) else {
                continue;
            };
            let Opening::Pending(stream) = slot else {
                // Already decided; later events are for the mode's loop,
                // which will see the socket's state for itself.
                continue;
            };
            match handshake(stream) {
                // Not yet: a spurious event. Wait for the next one.
                Ok(false) => continue,
                Ok(true) => {
                    let Opening::Pending(stream) = std::mem::replace(slot, Opening::Failed) else {
                        unreachable!("matched as pending above");
                    };
                    *slot = Opening::Open(stream);
                    last_open = Instant::now();
                }
                Err(e) => {
                    keep_first(&mut first_error, &e);
                    failures.record(dial.first + i, &Fault::Connect(e));
                    // Dropping the socket closes it (and deregisters it).
                    *slot = Opening::Failed;
                }
            }
            pending -= 1;
        }
    }

    let mut streams = Vec::with_capacity(conns.len());
    let mut opened = 0;
    for (i, conn) in conns.into_iter().enumerate() {
        streams.push(match conn {
            Opening::Open(stream) => {
                opened += 1;
                Some(stream)
            }
            Opening::Pending(_) => {
                failures.record(dial.first + i, &Fault::ConnectTimeout(dial.timeout));
                first_error.get_or_insert_with(|| io::Error::from(io::ErrorKind::TimedOut));
                None
            }
            Opening::Failed => None,
        });
    }
    Ok(Dialed {
        streams,
        opened,
        failures,
        first_error,
        elapsed: last_open - started,
    })
}

/// How to open one connection at a time while a run goes on (`churn`):
/// each gets a non-blocking `connect`, from the source addresses in turn,
/// and the driver waits for its handshake.
#[derive(Debug, Clone)]
pub struct Opener {
    /// The server.
    pub target: SocketAddr,
    /// Source addresses to bind, taken in turn by connection number; empty
    /// to let the kernel choose.
    pub sources: Vec<IpAddr>,
}

impl Opener {
    /// Starts connecting connection number `number`: a socket whose
    /// handshake is under way (or, on loopback, often already over).
    pub fn start(&self, number: usize) -> io::Result<TcpStream> {
        start_connect(self.target, source_for(&self.sources, number))
    }
}

/// The source address connection `number` binds: the next in turn, or
/// none (the kernel's choice).
fn source_for(sources: &[IpAddr], number: usize) -> Option<IpAddr> {
    (!sources.is_empty()).then(|| sources[number % sources.len()])
}

/// Keeps a copy of the first connect error, for the one-line report.
fn keep_first(first: &mut Option<io::Error>, e: &io::Error) {
    if first.is_none() {
        *first = Some(match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        });
    }
}

/// Whether a connection that was pending has opened (`Ok(true)`), is still
/// opening (`Ok(false)`), or failed.
pub(crate) fn handshake(stream: &TcpStream) -> io::Result<bool> {
    // A failed connect leaves its error on the socket, not on the event.
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        // The handshake is still under way: the event was a hint.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates a non-blocking socket, binds it to `source` if given, and starts
/// connecting it to `target`.
fn start_connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    // Small messages go out at once. With Nagle's algorithm on, a pipelined
    // message would wait for the previous one's ACK.
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        if ip.is_ipv4() {
            bind_address_no_port(&socket);
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        // The usual answer of a non-blocking connect: the handshake goes on
        // without us and its end is reported as writability.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Asks the kernel to choose the source port at `connect`, for the whole
/// four-tuple, instead of at `bind`, where a port is reserved for the
/// source address alone. Best effort: without it each source address still
/// holds a whole ephemeral range of connections.
#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &Socket) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int through a valid pointer, for a
    // descriptor this function's caller owns.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!(
            "IP_BIND_ADDRESS_NO_PORT: {}",
            mio_echo_net::describe(&io::Error::last_os_error())
        );
    }
}

/// Elsewhere (macOS, the BSDs) there is no such option: `bind` reserves a
/// port for the source address alone, so each source address holds at most
/// one ephemeral range of connections. Said once, at debug level, since the
/// run still works within that.
#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_socket: &Socket) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        log::debug!(
            "IP_BIND_ADDRESS_NO_PORT: not on this platform; each source address \
             holds at most one ephemeral port range"
        );
    });
}
