//! UDP echo, RFC 862's second half: each datagram goes straight back to its
//! sender as one datagram with the same bytes.
//!
//! There is no connection and nothing to keep: a datagram is read whole
//! into the loop's datagram buffer and sent back at once. If the kernel
//! cannot take the reply right now it is dropped and counted. Queueing it
//! would let one flood hold unbounded memory, and UDP promises nothing.
//!
//! A UDP source address can be forged, so every reply may be aimed at
//! someone who never asked for it. These guards bound what that costs:
//!
//! * **Reflection** ([`refuse_reason`], counted as `refused`). A datagram
//!   from port 7 (echo) or 19 (chargen), or from any port below 1024, may
//!   come from another service that answers every datagram: two such
//!   services can bounce packets between themselves forever, and a forged
//!   source address turns us into a flood aimed at a third party (CERT
//!   CA-1996-01). Sources with port 0 or below 1024, and broadcast,
//!   multicast or unspecified addresses, get no reply. Nor does a source
//!   using the very port we serve: that is this socket itself (a forged
//!   datagram from our own address would loop here forever) or another
//!   echo server like us.
//! * **Loops with echo servers on other ports** ([`ReplyLimit`], counted as
//!   `limited`). A forged datagram can still start a ping-pong with an echo
//!   server on any high port. Each source has a token bucket: at most
//!   `rate_per_source` replies a second, with a burst of at most that many.
//!   A loop runs far faster than the bucket refills, so it costs at most
//!   one burst and ends at its first refused datagram. A *source* is an IP
//!   address (an IPv4-mapped IPv6 address counts as its IPv4 address, other
//!   IPv6 addresses by their /64 prefix), not an address and port: forging
//!   many ports of one victim buys nothing. The buckets sit in a fixed
//!   table indexed by a hash with keys drawn at random per process, and a
//!   slot holds only a bucket: sources that share a slot share one bucket,
//!   which only makes their limit tighter, and no datagram from another
//!   source can reset or raise a source's limit.
//! * **Floods from many forged sources** ([`ReplyLimit`] again). One more
//!   bucket, at `rate` replies a second, covers every source of the loop,
//!   so no number of sources makes the server send more than that.
//! * **Fairness.** A pass reads at most [`BUDGET`] datagrams, then the
//!   socket goes on the loop's ready list, so a flood shares the loop with
//!   the TCP clients instead of holding it.
//!
//! Datagrams the kernel dropped because the socket's receive queue was
//! full are invisible to a plain `recv_from`. On Linux each socket asks
//! for `SO_RXQ_OVFL` ([`count_overflow`]): every datagram then comes with
//! the socket's running drop count, and the increase is counted as
//! `overflow`. A drop is therefore counted when the next datagram after it
//! is read. Elsewhere the server says at start-up that kernel drops will
//! not be counted, and `overflow` stays 0.
//!
//! With `--threads N` a UDP socket that the loops would share (the default,
//! and every socket passed by socket activation) is served by the first
//! loop alone, with the whole total rate: each loop keeps its own buckets,
//! and sharing would multiply every source's limit by the loops. With
//! `--reuse-port` each loop has UDP sockets of its own, the kernel sends
//! one source address and port to one loop (a loop between two servers
//! still costs one burst; a source sending from many ports may reach every
//! loop), and the total rate is split between the loops.
//!
//! A reply goes out from the socket's address. On a host with several
//! addresses, a socket bound to a wildcard (`0.0.0.0:7`) may answer from a
//! different address than the client wrote to, and a client that
//! `connect`ed its UDP socket drops such replies: bind UDP to specific
//! addresses there.
//!
//! Read next: [`crate::server`], which calls [`echo_pass`] for UDP events.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use mio::net::UdpSocket;

/// The most datagrams one pass reads before the loop moves on.
pub const BUDGET: usize = 64;

/// Replies per second to one source, and its burst, unless configured
/// (`--udp-rate-per-source`).
pub const DEFAULT_RATE_PER_SOURCE: u32 = 100;

/// Replies per second to all sources together, and their burst, unless
/// configured (`--udp-rate`).
pub const DEFAULT_RATE: u32 = 10_000;

/// The highest rate either limit may be set to.
pub const MAX_RATE: u32 = 10_000_000;

/// Slots in [`ReplyLimit`]'s table of per-source buckets: a fixed size, so
/// no number of sources can grow it.
const SOURCE_SLOTS: usize = 4096;

/// A bucket's fixed-point unit: one token is this many units, and a bucket
/// of rate `r` refills `r` units per nanosecond (`r` tokens a second).
const TOKEN: u64 = 1_000_000_000;

/// A token bucket that holds at most `rate` tokens and refills at `rate`
/// tokens per second; the rate is passed in, not stored.
///
/// It records what has been *spent* rather than what is left, so the
/// all-zero bucket (a fresh table slot) is a full one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// Units spent and not yet refilled, at most `rate * TOKEN`.
    spent: u64,
    /// The loop's clock (nanoseconds) when `spent` was last brought up to date.
    at: u64,
}

impl Bucket {
    /// Refills for the time since the last call. A second refills a whole
    /// bucket, so longer gaps count as one second (and nothing overflows).
    fn refill(&mut self, rate: u32, now: u64) {
        let elapsed = now.saturating_sub(self.at).min(TOKEN);
        self.spent = self.spent.saturating_sub(elapsed * u64::from(rate));
        self.at = self.at.max(now);
    }

    /// Whether a whole token is left (after [`Bucket::refill`]).
    fn has_token(&self, rate: u32) -> bool {
        self.spent + TOKEN <= u64::from(rate) * TOKEN
    }

    /// Spends one token; call only after [`Bucket::has_token`] said yes.
    fn take(&mut self) {
        self.spent += TOKEN;
    }
}

/// Whether a datagram may be answered under the rate limits, and which
/// limit said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within both limits: answer it (a token of each was spent).
    Answer,
    /// Its source has used its `rate_per_source` (a loop, or a flood).
    SourceOverRate,
    /// All sources together have used the total `rate`.
    TotalOverRate,
}

/// The rate limits on UDP replies: a token bucket per source in a fixed
/// table, and one bucket for all sources together (see the module doc).
#[derive(Debug)]
pub(crate) struct ReplyLimit {
    rate_per_source: u32,
    rate: u32,
    /// Random per process, so nobody can choose sources that share a slot.
    keys: RandomState,
    /// Allocated with the first datagram, so a server without UDP pays
    /// nothing for it.
    sources: Vec<Bucket>,
    total: Bucket,
}

impl ReplyLimit {
    /// Limits of `rate_per_source` replies a second to one source and
    /// `rate` to all together, each with a burst of as many. A rate of 0
    /// answers nothing.
    pub(crate) fn new(rate_per_source: u32, rate: u32) -> ReplyLimit {
        ReplyLimit {
            rate_per_source,
            rate,
            keys: RandomState::new(),
            sources: Vec::new(),
            total: Bucket::default(),
        }
    }

    /// Whether `from` may have a reply at `now` (nanoseconds on the loop's
    /// clock, which never goes back). A token is spent from both buckets
    /// only when both have one, so a datagram refused by the total limit
    /// costs its source nothing, and one refused by its source's limit
    /// costs the others nothing.
    pub(crate) fn check(&mut self, from: IpAddr, now: u64) -> Verdict {
        if self.sources.is_empty() {
            self.sources = vec![Bucket::default(); SOURCE_SLOTS];
        }
        let slot = self.keys.hash_one(source_key(from)) as usize % SOURCE_SLOTS;
        let source = &mut self.sources[slot];
        source.refill(self.rate_per_source, now);
        if !source.has_token(self.rate_per_source) {
            return Verdict::SourceOverRate;
        }
        self.total.refill(self.rate, now);
        if !self.total.has_token(self.rate) {
            return Verdict::TotalOverRate;
        }
        source.take();
        self.total.take();
        Verdict::Answer
    }
}

/// The source a datagram counts against: its IP address, an IPv4-mapped
/// IPv6 address as the IPv4 address, and any other IPv6 address as its /64
/// prefix (one host usually holds a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        },
        v4 => v4,
    }
}

/// Large enough for any UDP payload (65,507 bytes over IPv4, 65,527 over
/// IPv6), so nothing is truncated.
pub(crate) const DATAGRAM_BUF: usize = 64 * 1024;

/// What UDP did, for the server's totals. Every datagram read is counted
/// once, in `echoed`, `dropped`, `refused` or `limited`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpCounts {
    /// Datagrams echoed.
    pub echoed: u64,
    /// Bytes echoed in them.
    pub bytes: u64,
    /// Replies dropped because the kernel could not take them.
    pub dropped: u64,
    /// Datagrams not answered because their source could start a
    /// reflection loop or flood a third party (`refuse_reason`, or the
    /// port we serve).
    pub refused: u64,
    /// Datagrams not answered because their source, or all sources
    /// together, were over their rate (`ReplyLimit`).
    pub limited: u64,
    /// Datagrams the kernel dropped, never read, because the socket's
    /// receive queue was full (`SO_RXQ_OVFL`, which also counts the rare
    /// datagram dropped for a bad checksum; Linux only, 0 elsewhere).
    /// Counted when the next datagram after them is read.
    pub overflow: u64,
}

/// Why a source gets no reply, or `None` when it may be answered.
pub(crate) fn refuse_reason(from: SocketAddr) -> Option<&'static str> {
    if from.port() < 1024 {
        return Some("source port below 1024 (another service could answer back)");
    }
    let ip = match from.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        ip => ip,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast source"),
        IpAddr::V4(v4) if v4.is_unspecified() => Some("unspecified source"),
        ip if ip.is_multicast() => Some("multicast source"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified source"),
        _ => None,
    }
}

/// Asks the kernel to attach its count of dropped datagrams to each one
/// received on `socket` (`SO_RXQ_OVFL`), for `overflow`.
#[cfg(target_os = "linux")]
pub(crate) fn count_overflow(socket: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int through a valid pointer of the
    // length given.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_RXQ_OVFL,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_RXQ_OVFL` is Linux-only: elsewhere an `Unsupported` error, which the
/// server logs at start-up ("kernel drops will not be counted").
#[cfg(not(target_os = "linux"))]
pub(crate) fn count_overflow(_socket: &UdpSocket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_RXQ_OVFL, the kernel's drop count, is Linux-only",
    ))
}

/// `SO_RXQ_OVFL` from `<asm/socket.h>`, which the libc crate leaves out on
/// Linux.
#[cfg(all(
    target_os = "linux",
    not(any(target_arch = "sparc", target_arch = "sparc64"))
))]
const SO_RXQ_OVFL: libc::c_int = 40;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "sparc", target_arch = "sparc64")
))]
const SO_RXQ_OVFL: libc::c_int = 0x24;

/// Receives one datagram into `buf`: its length, its source, and the
/// socket's running count of dropped datagrams when the kernel attached it
/// (it does once the count is above 0).
#[cfg(target_os = "linux")]
fn receive(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<u32>)> {
    use std::mem::{size_of, zeroed};
    use std::os::fd::AsRawFd;
    // SAFETY: all zeroes is a valid sockaddr_storage and msghdr.
    let (mut name, mut msg): (libc::sockaddr_storage, libc::msghdr) = unsafe { zeroed() };
    // Room for the one control message asked for, aligned as cmsghdr is.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: every pointer in `msg` points to a live buffer of the length
    // it is given, and nothing else uses them during the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let from = socket_addr(&name).ok_or_else(|| io::Error::other("unknown address family"))?;
    let mut drops = None;
    // SAFETY: the kernel wrote well-formed control messages up to
    // `msg_controllen`, and the CMSG macros stay within it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == SO_RXQ_OVFL {
                drops = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<u32>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, from, drops))
}

/// The address the kernel wrote into `name`, if it is IPv4 or IPv6.
#[cfg(target_os = "linux")]
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for one.
            let v4 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(v4.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            let port = u16::from_be(v6.sin6_port);
            Some(SocketAddrV6::new(ip, port, v6.sin6_flowinfo, v6.sin6_scope_id).into())
        }
        _ => None,
    }
}

/// Receives one datagram into `buf`: its length and source; there is no
/// drop count to be had here.
#[cfg(not(target_os = "linux"))]
fn receive(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<u32>)> {
    socket.recv_from(buf).map(|(n, from)| (n, from, None))
}

/// Reads and echoes up to [`BUDGET`] datagrams on `socket`, which serves
/// `local`, under `limit` at `now` (nanoseconds on the loop's clock, read
/// once for the pass). `drops_seen` is the socket's drop count as last
/// seen, shared by every loop that serves the socket (so that each drop is
/// counted once); it and `counts` are brought up to date. Returns `true` when the
/// budget ran out before `WouldBlock`: the socket may hold more, and no new
/// event will say so.
pub(crate) fn echo_pass(
    socket: &UdpSocket,
    local: SocketAddr,
    limit: &mut ReplyLimit,
    now: u64,
    drops_seen: &AtomicU32,
    buf: &mut [u8],
    counts: &mut UdpCounts,
) -> bool {
    for _ in 0..BUDGET {
        let (n, from, drops) = match receive(socket, buf) {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // An ICMP error for an earlier reply (port unreachable and the
            // like) surfaces on the next receive. It concerns a datagram
            // already gone; carry on with the next.
            Err(e) => {
                log::trace!("udp: receive: {}", crate::error::describe(&e));
                continue;
            }
        };
        // The socket's running total when this datagram was queued: it
        // never falls from one datagram to the next. Loops sharing the
        // socket may see totals out of order: the largest seen wins, and
        // each loop counts only what it raised the total by. (The kernel's
        // count wraps at 2^32 drops; past that, no more are counted.)
        if let Some(drops) = drops {
            let new = drops.saturating_sub(drops_seen.fetch_max(drops, Ordering::Relaxed));
            if new > 0 {
                counts.overflow += u64::from(new);
                log::trace!("udp: the kernel dropped {new} datagrams (receive queue full)");
            }
        }
        let why = refuse_reason(from).or_else(|| {
            (from.port() == local.port())
                .then_some("source uses the port we serve (ourselves, or another echo server)")
        });
        if let Some(why) = why {
            counts.refused += 1;
            log::trace!("udp {from}: {n} bytes not answered: {why}");
            continue;
        }
        let why = match limit.check(from.ip(), now) {
            Verdict::Answer => None,
            Verdict::SourceOverRate => Some("over the per-source rate (a loop?)"),
            Verdict::TotalOverRate => Some("over the total rate (a flood?)"),
        };
        if let Some(why) = why {
            counts.limited += 1;
            log::trace!("udp {from}: {n} bytes not answered: {why}");
            continue;
        }
        match socket.send_to(&buf[..n], from) {
            Ok(_) => {
                counts.echoed += 1;
                counts.bytes += n as u64;
                log::trace!("udp {from}: echoed {n} bytes");
            }
            Err(e) => {
                counts.dropped += 1;
                log::trace!("udp {from}: reply dropped: {}", crate::error::describe(&e));
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// How many of `n` datagrams from `from` at `now` are answered.
    fn answered(limit: &mut ReplyLimit, from: IpAddr, now: u64, n: u32) -> u32 {
        (0..n)
            .filter(|_| limit.check(from, now) == Verdict::Answer)
            .count() as u32
    }

    /// Ordinary client ports are answered.
    #[test]
    fn ephemeral_ports_are_answered() {
        assert_eq!(refuse_reason(addr("127.0.0.1:40000")), None);
        assert_eq!(refuse_reason(addr("[::1]:40000")), None);
    }

    /// Echo, chargen and every port below 1024 (and port 0) are not.
    #[test]
    fn low_ports_are_refused() {
        for port in [0, 7, 19, 1023] {
            assert!(refuse_reason(addr(&format!("127.0.0.1:{port}"))).is_some());
        }
    }

    /// Broadcast and multicast sources are not answered, mapped or not.
    #[test]
    fn broadcast_and_multicast_are_refused() {
        for a in [
            "255.255.255.255:5000",
            "224.0.0.1:5000",
            "[ff02::1]:5000",
            "[::ffff:255.255.255.255]:5000",
            "0.0.0.0:5000",
        ] {
            assert!(refuse_reason(addr(a)).is_some(), "{a}");
        }
    }

    /// A fresh source has a whole burst and not one reply more, however
    /// fast it asks.
    #[test]
    fn a_bucket_holds_at_most_its_rate() {
        let mut limit = ReplyLimit::new(100, 1_000_000);
        let a = ip("127.0.0.1");
        assert_eq!(answered(&mut limit, a, 5 * SECOND, 1000), 100);
        assert_eq!(limit.check(a, 5 * SECOND), Verdict::SourceOverRate);
        assert_eq!(answered(&mut limit, ip("127.0.0.2"), 5 * SECOND, 1), 1);
    }

    /// Right at the loop's start (clock 0) the buckets are full too.
    #[test]
    fn a_bucket_starts_full_at_clock_zero() {
        let mut limit = ReplyLimit::new(10, 1_000_000);
        assert_eq!(answered(&mut limit, ip("10.0.0.1"), 0, 20), 10);
    }

    /// An empty bucket refills at its rate: a tenth of a second gives back
    /// a tenth of the rate, and a long pause no more than a full bucket.
    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let mut limit = ReplyLimit::new(100, 1_000_000);
        let a = ip("192.0.2.1");
        assert_eq!(answered(&mut limit, a, SECOND, 200), 100);
        assert_eq!(answered(&mut limit, a, SECOND + SECOND / 10, 200), 10);
        assert_eq!(
            answered(&mut limit, a, SECOND + SECOND / 10 + 5_000_000, 200),
            0
        );
        assert_eq!(
            answered(&mut limit, a, SECOND + SECOND / 10 + 10_000_000, 200),
            1
        );
        assert_eq!(answered(&mut limit, a, 3600 * SECOND, 200), 100);
    }

    /// Sources that share a slot share one bucket: together they get one
    /// burst, never one each, and neither resets the other.
    #[test]
    fn sources_sharing_a_slot_only_tighten_each_other() {
        let mut limit = ReplyLimit::new(50, 1_000_000);
        let a = ip("198.51.100.1");
        let slot_of =
            |limit: &ReplyLimit, ip| limit.keys.hash_one(source_key(ip)) as usize % SOURCE_SLOTS;
        let a_slot = slot_of(&limit, a);
        let b = (0..u32::MAX)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .find(|&b| slot_of(&limit, b) == a_slot)
            .expect("a colliding source among 10.0.0.0/8");
        assert_eq!(answered(&mut limit, a, SECOND, 30), 30);
        assert_eq!(answered(&mut limit, b, SECOND, 30), 20);
        assert_eq!(answered(&mut limit, a, SECOND, 30), 0, "b did not reset a");
    }

    /// Each process draws its own keys, so slots cannot be precomputed.
    #[test]
    fn slots_differ_between_limits() {
        let (x, y) = (ReplyLimit::new(1, 1), ReplyLimit::new(1, 1));
        let slots = |l: &ReplyLimit| -> Vec<u64> {
            (0..16u32)
                .map(|i| {
                    l.keys
                        .hash_one(source_key(IpAddr::from(std::net::Ipv4Addr::from(i))))
                })
                .collect()
        };
        assert_ne!(slots(&x), slots(&y));
    }

    /// Ports do not make new sources; an IPv6 host's whole /64 is one
    /// source, and a mapped IPv4 address is that IPv4 address.
    #[test]
    fn a_source_is_an_address_or_a_slash_64() {
        assert_eq!(source_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(source_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_key(ip("192.0.2.7")), ip("192.0.2.7"));
        let mut limit = ReplyLimit::new(5, 1_000_000);
        assert_eq!(answered(&mut limit, ip("2001:db8::1"), 0, 5), 5);
        assert_eq!(answered(&mut limit, ip("2001:db8::2"), 0, 5), 0);
        assert_eq!(answered(&mut limit, ip("2001:db8:0:1::1"), 0, 5), 5);
    }

    /// The total bucket caps many sources that are each within their own
    /// rate, and a datagram it refuses costs its source no token.
    #[test]
    fn the_total_rate_caps_all_sources_together() {
        let mut limit = ReplyLimit::new(10, 100);
        let sources: Vec<IpAddr> = (1..=50u32)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .collect();
        let total: u32 = sources.iter().map(|&s| answered(&mut limit, s, 0, 5)).sum();
        assert_eq!(total, 100);
        assert_eq!(limit.check(sources[49], 0), Verdict::TotalOverRate);
        // A tenth of a second later the total has 10 tokens again; the last
        // source, refused by the total so far, still has its whole burst.
        assert_eq!(answered(&mut limit, sources[49], SECOND / 10, 20), 10);
    }
}
