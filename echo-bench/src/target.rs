//! The server's address: `--addr` as given (an IP or a host name, and a
//! port), turned into the one socket address every connection of the run
//! goes to.
//!
//! An IP is taken as it is, without asking any resolver. A name goes to the
//! system's resolver (`getaddrinfo`, through std's `ToSocketAddrs`), and
//! may come back as several addresses: `localhost` is often both `::1` and
//! `127.0.0.1`, and a server may listen on only one of them. So, as
//! `echo-client` does, each is tried in order with one blocking connect,
//! and the first that accepts is the run's; a name with one address is
//! used without a trial. For UDP ([`resolve_datagram`]) the trial is one
//! datagram that must come back. The report names the address used
//! (`addr=`).
//!
//! Resolving blocks the calling thread for as long as the resolver takes
//! (an unreachable DNS server: its timeout, 5 s by default, per attempt);
//! it happens once, before the load, and on the calling thread, so a
//! one-thread run stays single-threaded.
//!
//! Read next: [`super::dial`], which opens the run's connections.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use mio_echo_net::{describe, parse_socket_addr};

use super::LoadError;

/// The address the run loads: `target` itself if it is an IP and port
/// (`[IPv6%INTERFACE]:PORT` included), else the first of the addresses its
/// name resolves to that accepts a connection within `timeout`.
///
/// A name that does not resolve is a [`LoadError::Resolve`]; a name none
/// of whose addresses accept, a [`LoadError::Connect`] for the last tried.
pub fn resolve(target: &str, timeout: Duration) -> Result<SocketAddr, LoadError> {
    resolve_by(target, |addr| {
        TcpStream::connect_timeout(&addr, timeout).map(drop)
    })
}

/// [`resolve`] for a UDP server: the trial for a name with several
/// addresses is one datagram, which must come back within `timeout`.
pub fn resolve_datagram(target: &str, timeout: Duration) -> Result<SocketAddr, LoadError> {
    resolve_by(target, |addr| {
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(addr)?;
        socket.set_read_timeout(Some(timeout))?;
        socket.send(b"echo-bench probe")?;
        socket.recv(&mut [0u8; 64]).map(drop)
    })
}

/// `target` itself if it is an IP and port, else the first address its
/// name resolves to for which `trial` succeeds (no trial for one address).
fn resolve_by(
    target: &str,
    trial: impl Fn(SocketAddr) -> io::Result<()>,
) -> Result<SocketAddr, LoadError> {
    if let Ok(addr) = parse_socket_addr(target) {
        return Ok(addr);
    }
    let candidates: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|source| resolve_error(target, source))?
        .collect();
    let addr = match candidates[..] {
        // Nothing to choose between: the run's own connects say whether
        // it answers.
        [only] => only,
        _ => first_answering(target, &candidates, trial)?,
    };
    log::info!("{target} is {addr}");
    Ok(addr)
}

/// The first of `candidates`, the addresses `target` resolved to, that
/// passes `trial` (a connection, closed at once; or a datagram echoed).
fn first_answering(
    target: &str,
    candidates: &[SocketAddr],
    trial: impl Fn(SocketAddr) -> io::Result<()>,
) -> Result<SocketAddr, LoadError> {
    let mut last = None;
    for &candidate in candidates {
        match trial(candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) => {
                log::debug!("cannot connect to {candidate}: {}", describe(&e));
                last = Some((candidate, e));
            }
        }
    }
    match last {
        Some((addr, source)) => Err(LoadError::Connect {
            addr,
            failed: 1,
            total: 1,
            source,
        }),
        None => Err(resolve_error(
            target,
            io::Error::new(io::ErrorKind::NotFound, "the name has no addresses"),
        )),
    }
}

fn resolve_error(target: &str, source: io::Error) -> LoadError {
    LoadError::Resolve {
        target: target.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn connect_within_a_second(addr: SocketAddr) -> io::Result<()> {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map(drop)
    }

    /// A port on 127.0.0.1 where nothing listens.
    fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    /// An IP is taken as it is: no resolver, no trial connection (nothing
    /// listens there, and it is still the answer).
    #[test]
    fn an_ip_is_taken_as_it_is() {
        let addr = closed_port();
        assert_eq!(
            resolve(&addr.to_string(), Duration::from_secs(1)).unwrap(),
            addr
        );
    }

    /// Of several addresses, one refusing, the one that accepts is chosen.
    #[test]
    fn the_first_address_that_accepts_is_chosen() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let refused = closed_port();
        let chosen = first_answering("x", &[refused, open], connect_within_a_second).unwrap();
        assert_eq!(chosen, open);
    }

    /// When none accepts, the error names the last address tried.
    #[test]
    fn none_accepting_is_a_connect_error() {
        let (a, b) = (closed_port(), closed_port());
        match first_answering("x", &[a, b], connect_within_a_second) {
            Err(LoadError::Connect { addr, source, .. }) => {
                assert_eq!(addr, b);
                assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A name resolves: `localhost` to the loopback address a server
    /// listens on, port kept.
    #[test]
    fn a_name_resolves() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let addr = resolve(
            &format!("localhost:{}", open.port()),
            Duration::from_secs(1),
        );
        assert_eq!(addr.unwrap(), open);
    }

    /// A name with no addresses is a resolve error, not a panic.
    #[test]
    fn no_candidates_is_a_resolve_error() {
        let e = first_answering("x:7", &[], connect_within_a_second).unwrap_err();
        assert!(matches!(e, LoadError::Resolve { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "cannot resolve x:7: the name has no addresses"
        );
    }
}
