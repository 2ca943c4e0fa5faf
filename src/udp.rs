//! UDP echo, RFC 862's second half: each datagram goes straight back to its
//! sender as one datagram with the same bytes.
//!
//! There is no connection and nothing to keep: a datagram is read whole
//! into the loop's datagram buffer and sent back at once. If the kernel
//! cannot take the reply right now it is dropped and counted. Queueing it
//! would let one flood hold unbounded memory, and UDP promises nothing.
//!
//! Three guards make the echo safe to expose:
//!
//! * **Reflection.** A datagram from port 7 (echo) or 19 (chargen), or from
//!   any port below 1024, may come from another service that answers every
//!   datagram: two such services can bounce packets between themselves
//!   forever, and a forged source address turns us into a flood aimed at a
//!   third party (CERT CA-1996-01). Sources with port 0 or below 1024, and
//!   broadcast, multicast or unspecified addresses, get no reply. Nor does a
//!   source using the very port we serve: that is this socket itself (a
//!   forged datagram from our own address would loop here forever) or
//!   another echo server like us.
//! * **Loops between echo servers on other ports.** A forged datagram can
//!   still start a ping-pong with an echo server on any high port. Each
//!   source may have at most [`PER_SOURCE_PER_SEC`] datagrams answered per
//!   second ([`SourceLimit`]); a loop runs far faster than any person, so
//!   its first refused datagram ends it.
//! * **Fairness.** A pass reads at most [`BUDGET`] datagrams, then the
//!   socket goes on the loop's ready list, so a flood shares the loop with
//!   the TCP clients instead of holding it.
//!
//! A reply goes out from the socket's address. On a host with several
//! addresses, a socket bound to a wildcard (`0.0.0.0:7`) may answer from a
//! different address than the client wrote to, and a client that
//! `connect`ed its UDP socket drops such replies: bind UDP to specific
//! addresses there.
//!
//! Read next: [`crate::server`], which calls [`echo_pass`] for UDP events.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::net::UdpSocket;

/// The most datagrams one pass reads before the loop moves on.
pub const BUDGET: usize = 64;

/// The most datagrams answered per second to one source address and port.
pub const PER_SOURCE_PER_SEC: u32 = 1000;

/// Slots in [`SourceLimit`]'s table: a fixed size, so no source can grow it.
const SOURCE_SLOTS: usize = 1024;

/// Counts datagrams answered per source over one-second windows, in a
/// fixed table indexed by a hash of the source. Two sources sharing a slot
/// only make the limit more lenient (each resets the other's count).
#[derive(Debug)]
pub struct SourceLimit {
    slots: Vec<(Option<SocketAddr>, u64, u32)>,
}

impl Default for SourceLimit {
    /// An empty limit; its table is allocated with the first datagram, so a
    /// server without UDP pays nothing for it.
    fn default() -> Self {
        SourceLimit { slots: Vec::new() }
    }
}

impl SourceLimit {
    /// Whether `from` may have another reply in second `now_secs`.
    pub fn allow(&mut self, from: SocketAddr, now_secs: u64) -> bool {
        use std::hash::{Hash, Hasher};
        if self.slots.is_empty() {
            self.slots = vec![(None, 0, 0); SOURCE_SLOTS];
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        from.hash(&mut hasher);
        let slot = &mut self.slots[hasher.finish() as usize % SOURCE_SLOTS];
        if slot.0 != Some(from) || slot.1 != now_secs {
            *slot = (Some(from), now_secs, 0);
        }
        slot.2 += 1;
        slot.2 <= PER_SOURCE_PER_SEC
    }
}

/// Large enough for any UDP payload (65,507 bytes over IPv4, 65,527 over
/// IPv6), so nothing is truncated.
pub const DATAGRAM_BUF: usize = 64 * 1024;

/// What UDP did, for the server's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpCounts {
    /// Datagrams echoed.
    pub echoed: u64,
    /// Bytes echoed in them.
    pub bytes: u64,
    /// Replies dropped because the kernel could not take them.
    pub dropped: u64,
    /// Datagrams not answered because their source could start a
    /// reflection loop or flood a third party.
    pub refused: u64,
}

/// Why a source gets no reply, or `None` when it may be answered.
pub fn refuse_reason(from: SocketAddr) -> Option<&'static str> {
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

/// Reads and echoes up to [`BUDGET`] datagrams on `socket`, which serves
/// `local`. Returns `true` when the budget ran out before `WouldBlock`: the
/// socket may hold more, and no new event will say so.
pub fn echo_pass(
    socket: &UdpSocket,
    local: SocketAddr,
    limit: &mut SourceLimit,
    now_secs: u64,
    buf: &mut [u8],
    counts: &mut UdpCounts,
) -> bool {
    for _ in 0..BUDGET {
        let (n, from) = match socket.recv_from(buf) {
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
        let why = refuse_reason(from)
            .or_else(|| {
                (from.port() == local.port())
                    .then_some("source uses the port we serve (ourselves, or another echo server)")
            })
            .or_else(|| {
                (!limit.allow(from, now_secs)).then_some("over the per-source rate (a loop?)")
            });
        if let Some(why) = why {
            counts.refused += 1;
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

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
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

    /// A source past its rate is refused until the next second.
    #[test]
    fn a_source_over_its_rate_is_refused_until_the_next_second() {
        let mut limit = SourceLimit::default();
        let a = addr("127.0.0.1:40000");
        let b = addr("127.0.0.1:40001");
        for _ in 0..PER_SOURCE_PER_SEC {
            assert!(limit.allow(a, 5));
        }
        assert!(!limit.allow(a, 5));
        assert!(limit.allow(b, 5), "another source is not affected");
        assert!(limit.allow(a, 6), "a new second starts afresh");
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
}
