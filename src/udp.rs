//! UDP echo, RFC 862's second half: each datagram goes straight back to its
//! sender as one datagram with the same bytes.
//!
//! There is no connection and nothing to keep: a datagram is read whole
//! into the loop's datagram buffer and sent back at once. If the kernel
//! cannot take the reply right now it is dropped and counted. Queueing it
//! would let one flood hold unbounded memory, and UDP promises nothing.
//!
//! Two guards make the echo safe to expose:
//!
//! * **Reflection.** A datagram from port 7 (echo) or 19 (chargen), or from
//!   any port below 1024, may come from another service that answers every
//!   datagram: two such services can bounce packets between themselves
//!   forever, and a forged source address turns us into a flood aimed at a
//!   third party (CERT CA-1996-01). Sources with port 0 or below 1024, and
//!   broadcast, multicast or unspecified addresses, get no reply.
//! * **Fairness.** A pass reads at most [`BUDGET`] datagrams, then the
//!   socket goes on the loop's ready list, so a flood shares the loop with
//!   the TCP clients instead of holding it.
//!
//! Read next: [`crate::server`], which calls [`echo_pass`] for UDP events.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::net::UdpSocket;

/// The most datagrams one pass reads before the loop moves on.
pub const BUDGET: usize = 64;

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

/// Reads and echoes up to [`BUDGET`] datagrams. Returns `true` when the
/// budget ran out before `WouldBlock`: the socket may hold more, and no
/// new event will say so.
pub fn echo_pass(socket: &UdpSocket, buf: &mut [u8], counts: &mut UdpCounts) -> bool {
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
        if let Some(why) = refuse_reason(from) {
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
