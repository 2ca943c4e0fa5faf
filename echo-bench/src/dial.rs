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

/// The most addresses a [`Sources::Range`] may name.
pub const MAX_RANGE: usize = 65_536;

/// Which source addresses to bind (`--sources`).
///
/// Several processes loading one server must not share source addresses:
/// each (source address, server) pair has only one ephemeral port range,
/// and processes sharing a pair compete for it. A range gives each process
/// addresses of its own (`--sources 127.0.1.1-127.0.1.4` for one,
/// `127.0.2.1-127.0.2.4` for the next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sources {
    /// One address per [`PER_SOURCE`] connections from 127.0.0.1, or none
    /// at all (the kernel's choice) when one would do.
    #[default]
    Chosen,
    /// 127.0.0.1 ..= 127.0.0.K.
    First(usize),
    /// Every address from the first to the last, both included, all in
    /// 127.0.0.0/8.
    Range(Ipv4Addr, Ipv4Addr),
}

impl Sources {
    /// `K` (127.0.0.1 to 127.0.0.K, 0 to choose, as [`sources_for`] takes
    /// it), or `FIRST-LAST` (two IPv4 loopback addresses, FIRST no later
    /// than LAST), or one address alone. Checks only the form and the
    /// range itself; whether the server is on loopback is checked against
    /// the target, by [`Sources::addrs`].
    pub fn parse(text: &str) -> Result<Sources, String> {
        let text = text.trim();
        let Some((first, last)) = text.split_once('-').or_else(|| {
            // One address: a range of one.
            text.contains('.').then_some((text, text))
        }) else {
            return match text.parse::<usize>() {
                Ok(k) if (1..=MAX_SOURCES).contains(&k) => Ok(Sources::First(k)),
                _ => Err(format!(
                    "expected K (1 to {MAX_SOURCES}, for 127.0.0.1 to 127.0.0.K) or a range \
                     FIRST-LAST such as 127.0.1.1-127.0.1.20, got {text:?}"
                )),
            };
        };
        let address = |a: &str| {
            a.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("expected an IPv4 address such as 127.0.1.1, got {a:?}"))
        };
        let (first, last) = (address(first)?, address(last)?);
        check_range(first, last)?;
        Ok(Sources::Range(first, last))
    }

    /// The source addresses for `count` connections to `target`, taken in
    /// turn; empty to let the kernel choose.
    ///
    /// Binding 127.x.x.x only reaches a loopback server, so asking for
    /// more than one address (or for any range) for another target is an
    /// error.
    pub fn addrs(&self, target: SocketAddr, count: usize) -> Result<Vec<IpAddr>, LoadError> {
        let loopback_v4 = matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback());
        match *self {
            Sources::First(k) if k > MAX_SOURCES || k == 0 => Err(LoadError::Config(format!(
                "--sources must be between 1 and {MAX_SOURCES} (127.0.0.1 to 127.0.0.{MAX_SOURCES})"
            ))),
            Sources::First(k) if !loopback_v4 && k > 1 => Err(not_loopback(target)),
            Sources::Range(..) if !loopback_v4 => Err(not_loopback(target)),
            Sources::Chosen | Sources::First(_) if !loopback_v4 => Ok(Vec::new()),
            // Only Linux answers on all of 127.0.0.0/8 by itself; elsewhere
            // 127.0.0.2 and up exist only as aliases someone added, so the
            // default leaves the choice to the kernel (asked for, they are
            // bound, and fail to bind where they do not exist).
            Sources::Chosen if !cfg!(target_os = "linux") => Ok(Vec::new()),
            Sources::Chosen => match count.div_ceil(PER_SOURCE) {
                0 | 1 => Ok(Vec::new()),
                k => Ok(first_k(k.min(MAX_SOURCES))),
            },
            Sources::First(k) => Ok(first_k(k)),
            Sources::Range(first, last) => {
                check_range(first, last).map_err(LoadError::Config)?;
                Ok((u32::from(first)..=u32::from(last))
                    .map(|ip| IpAddr::V4(Ipv4Addr::from(ip)))
                    .collect())
            }
        }
    }

    /// How the addresses read in a report: `127.0.1.1 to 127.0.1.4`, or
    /// `None` when only their count, from 127.0.0.1, says it.
    pub fn range(&self) -> Option<String> {
        match *self {
            Sources::Range(first, last) if first == last => Some(first.to_string()),
            Sources::Range(first, last) => Some(format!("{first} to {last}")),
            _ => None,
        }
    }
}

/// Whether `first..=last` is a range of source addresses a loopback client
/// can bind: all in 127.0.0.0/8 but its network and broadcast addresses,
/// in order, and at most [`MAX_RANGE`] of them.
fn check_range(first: Ipv4Addr, last: Ipv4Addr) -> Result<(), String> {
    for ip in [first, last] {
        if !ip.is_loopback() {
            return Err(format!(
                "source addresses must be IPv4 loopback (127.x.x.x), not {ip}"
            ));
        }
        if ip == Ipv4Addr::new(127, 0, 0, 0) || ip == Ipv4Addr::new(127, 255, 255, 255) {
            return Err(format!(
                "{ip} is the network or broadcast address of 127.0.0.0/8, not one a \
                 socket can bind"
            ));
        }
    }
    let (low, high) = (u32::from(first), u32::from(last));
    if low > high {
        return Err(format!("the range {first}-{last} runs backwards"));
    }
    if (high - low) as usize >= MAX_RANGE {
        return Err(format!(
            "the range {first}-{last} names more than {MAX_RANGE} addresses"
        ));
    }
    Ok(())
}

/// 127.0.0.1 ..= 127.0.0.`k`, for `k` at most [`MAX_SOURCES`].
fn first_k(k: usize) -> Vec<IpAddr> {
    (1..=k as u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect()
}

/// The error for source addresses asked for with a server they cannot
/// reach.
fn not_loopback(target: SocketAddr) -> LoadError {
    LoadError::Config(format!(
        "--sources binds 127.x.x.x addresses, so it needs an IPv4 loopback \
         server (127.x.x.x), not {}",
        target.ip()
    ))
}

/// The source addresses for `count` connections to `target`, taken in turn.
///
/// `sources` asks for 127.0.0.1 ..= 127.0.0.`sources`; 0 chooses one per
/// [`PER_SOURCE`] connections, and none at all (the kernel picks, as for any
/// client) when one would do (see [`Sources::addrs`]).
pub fn sources_for(
    target: SocketAddr,
    count: usize,
    sources: usize,
) -> Result<Vec<IpAddr>, LoadError> {
    let sources = match sources {
        0 => Sources::Chosen,
        k => Sources::First(k),
    };
    sources.addrs(target, count)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7007))
    }

    /// A count keeps its meaning: 127.0.0.1 to 127.0.0.K.
    #[test]
    fn a_count_names_the_first_addresses() {
        let sources = Sources::parse("3").unwrap();
        assert_eq!(sources, Sources::First(3));
        let addrs = sources.addrs(loopback(), 10).unwrap();
        assert_eq!(
            addrs,
            [1, 2, 3].map(|i| IpAddr::from([127, 0, 0, i])).to_vec()
        );
    }

    /// A range names every address in it, across an octet boundary too.
    #[test]
    fn a_range_names_every_address_in_it() {
        let sources = Sources::parse("127.0.1.254-127.0.2.1").unwrap();
        let addrs = sources.addrs(loopback(), 10).unwrap();
        let expected: Vec<IpAddr> = ["127.0.1.254", "127.0.1.255", "127.0.2.0", "127.0.2.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(addrs, expected);
        assert_eq!(sources.range().unwrap(), "127.0.1.254 to 127.0.2.1");
    }

    /// One address alone is a range of one.
    #[test]
    fn one_address_is_a_range_of_one() {
        let sources = Sources::parse("127.0.9.9").unwrap();
        assert_eq!(
            sources.addrs(loopback(), 5).unwrap(),
            vec![IpAddr::from([127, 0, 9, 9])]
        );
    }

    /// Malformed, backwards, non-loopback, unbindable and huge ranges are
    /// refused, and so are counts out of bounds.
    #[test]
    fn bad_sources_are_refused() {
        for text in [
            "0",
            "255",
            "lots",
            "127.0.1.5-127.0.1.2",
            "10.0.0.1-10.0.0.2",
            "127.0.0.1-128.0.0.1",
            "127.0.0.0-127.0.0.5",
            "127.255.255.250-127.255.255.255",
            "127.0.0.1-127.1.0.1",
            "127.0.0.1-",
            "::1",
        ] {
            assert!(Sources::parse(text).is_err(), "{text:?} was accepted");
        }
    }

    /// A range cannot reach a server off loopback.
    #[test]
    fn a_range_needs_a_loopback_server() {
        let sources = Sources::parse("127.0.1.1-127.0.1.2").unwrap();
        let remote = SocketAddr::from(([192, 0, 2, 1], 7));
        assert!(matches!(
            sources.addrs(remote, 2),
            Err(LoadError::Config(_))
        ));
        assert!(sources.addrs("[::1]:7".parse().unwrap(), 2).is_err());
    }

    /// Without `--sources`, a small run lets the kernel choose and a big
    /// one takes one address per [`PER_SOURCE`].
    #[test]
    fn chosen_sources_follow_the_count() {
        assert!(Sources::Chosen
            .addrs(loopback(), PER_SOURCE)
            .unwrap()
            .is_empty());
        assert_eq!(
            Sources::Chosen
                .addrs(loopback(), 2 * PER_SOURCE + 1)
                .unwrap()
                .len(),
            3
        );
    }
}
