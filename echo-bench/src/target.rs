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
//! used without a trial. The report names the address used (`addr=`).
//!
//! Resolving blocks the calling thread for as long as the resolver takes
//! (an unreachable DNS server: its timeout, 5 s by default, per attempt);
//! it happens once, before the load, and on the calling thread, so a
//! one-thread run stays single-threaded.
//!
//! Read next: [`super::dial`], which opens the run's connections.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
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
        _ => first_answering(target, &candidates, timeout)?,
    };
    log::info!("{target} is {addr}");
    Ok(addr)
}

/// The first of `candidates`, the addresses `target` resolved to, that
/// accepts a connection within `timeout`; the trial connection is closed
/// at once.
fn first_answering(
    target: &str,
    candidates: &[SocketAddr],
    timeout: Duration,
) -> Result<SocketAddr, LoadError> {
    let mut last = None;
    for &candidate in candidates {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(_) => return Ok(candidate),
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
        let chosen = first_answering("x", &[refused, open], Duration::from_secs(1)).unwrap();
        assert_eq!(chosen, open);
    }

    /// When none accepts, the error names the last address tried.
    #[test]
    fn none_accepting_is_a_connect_error() {
        let (a, b) = (closed_port(), closed_port());
        match first_answering("x", &[a, b], Duration::from_secs(1)) {
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
        let e = first_answering("x:7", &[], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, LoadError::Resolve { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "cannot resolve x:7: the name has no addresses"
        );
    }
}
