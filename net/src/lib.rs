//! What the echo server, its client and its load generator share: the
//! address the server serves by default, addresses with an IPv6 interface
//! by name, the process's budget of descriptors, and I/O errors in words a
//! person reads.
//!
//! Its own crate so that the client and the load generator need not depend
//! on the server (`mio-echo`) for these few lines, and the server need not
//! depend on them. Only `libc` below it.

use std::ffi::CString;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

/// Where the server listens by default, and where `echo-client` and
/// `echo-bench` look for it.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7007";

/// What an address on the command line may look like.
const EXPECTED: &str =
    "expected IP:PORT, such as 127.0.0.1:7007, 0.0.0.0:7007, [::1]:7007 or [fe80::1%eth0]:7007";

/// Parses `IP:PORT`, `[IPv6]:PORT` or `[IPv6%SCOPE]:PORT`, where the scope
/// is an interface's number or its name (`[fe80::1%eth0]:7007`).
///
/// std's parser takes a numeric scope only; a name is looked up with
/// `if_nametoindex`. The error is one line a person can act on.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let scoped = || -> Option<(Ipv6Addr, &str, u16)> {
        let (inside, port) = s.strip_prefix('[')?.split_once("]:")?;
        let (ip, scope) = inside.split_once('%')?;
        Some((ip.parse().ok()?, scope, port.parse().ok()?))
    };
    match scoped() {
        Some((ip, scope, port)) if !scope.is_empty() => {
            let index = interface_index(scope).ok_or_else(|| {
                format!("no network interface is named {scope:?} (`ip link` lists them)")
            })?;
            Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index)))
        }
        _ => Err(EXPECTED.into()),
    }
}

/// The index of the network interface called `name`, if there is one.
fn interface_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads one NUL-terminated string, which lives
    // across the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Raises this process's soft limit on open descriptors to its hard limit.
///
/// Every connection costs one descriptor, and the soft limit is often 1024
/// while the hard limit allows far more. Returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = nofile()?;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    fd_limit()
}

/// The current soft limit on open descriptors (`u64::MAX` when unlimited).
pub fn fd_limit() -> io::Result<u64> {
    let limit = nofile()?;
    Ok(if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur as u64
    })
}

fn nofile() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

/// The kernel's words for an I/O error, in lower case and without the
/// `(os error N)` suffix, so they read well inside a sentence.
pub fn describe(e: &io::Error) -> String {
    let text = match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
        io::ErrorKind::BrokenPipe => "broken pipe".to_string(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_string(),
        _ => {
            let full = e.to_string();
            let bare = match full.find(" (os error") {
                Some(i) => &full[..i],
                None => &full,
            };
            let mut chars = bare.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => full,
            }
        }
    };
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What std's parser takes, this one takes, to the same address.
    #[test]
    fn plain_addresses_parse_as_std_parses_them() {
        for s in ["127.0.0.1:7007", "0.0.0.0:0", "[::1]:7007", "[fe80::1%2]:7"] {
            assert_eq!(parse_socket_addr(s), Ok(s.parse().unwrap()), "{s}");
        }
    }

    /// A scope may name an interface: `lo` is the loopback's index.
    #[test]
    fn a_scope_may_be_an_interface_name() {
        let lo = interface_index("lo").expect("a loopback interface named lo");
        let addr = parse_socket_addr("[fe80::1%lo]:7007").unwrap();
        let SocketAddr::V6(v6) = addr else {
            panic!("{addr}")
        };
        assert_eq!(v6.scope_id(), lo);
        assert_eq!(v6.port(), 7007);
        assert_eq!(*v6.ip(), "fe80::1".parse::<Ipv6Addr>().unwrap());
    }

    /// An unknown interface is named in the error; a malformed address
    /// says what is expected. Neither panics.
    #[test]
    fn bad_scopes_and_addresses_are_one_line_errors() {
        let e = parse_socket_addr("[fe80::1%nosuch0]:7").unwrap_err();
        assert!(e.contains("\"nosuch0\""), "{e}");
        for bad in [
            "[fe80::1%]:7",
            "[fe80::1%lo]",
            "[fe80::1%lo]:70000",
            "[fe80::1%lo\0]:7",
            "[nonsense%lo]:7",
            "127.0.0.1%lo:7",
            "",
        ] {
            let e = parse_socket_addr(bad).unwrap_err();
            assert!(!e.contains('\n'), "{bad:?}: {e}");
            assert!(
                e.starts_with("expected IP:PORT") || e.contains("interface"),
                "{e}"
            );
        }
    }

    /// Other errors lose the "(os error N)" tail and the capital letter.
    #[test]
    fn describe_reads_inside_a_sentence() {
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(describe(&e), "too many open files");
    }
}
