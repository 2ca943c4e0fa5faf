//! Running under systemd (or anything that speaks its protocols): socket
//! activation and readiness notification.
//!
//! * **Socket activation.** The service manager binds the sockets (port 7
//!   needs no root in the service then) and starts us with them open from
//!   descriptor 3, saying how many in `LISTEN_FDS`, for which process in
//!   `LISTEN_PID`, and what each is called in `LISTEN_FDNAMES` (the socket
//!   unit's `FileDescriptorName=`). [`listen_fds`] checks each is a TCP
//!   listener or a UDP socket and hands them, with their names, to the
//!   server instead of binding.
//! * **Notification.** When `NOTIFY_SOCKET` names a datagram socket,
//!   [`notify`] sends it `READY=1` once every socket is served and
//!   `STOPPING=1` when a stop begins.
//!
//! The `sd-notify` crate reads the variables and sends the datagrams
//! (`sd_listen_fds(3)`, `sd_notify(3)`); socket2 tells what kind of socket
//! a descriptor is. What stays here is what the server adds: which kinds it
//! serves, errors that say what to fix, and names in Linux's abstract
//! namespace, which `sd-notify` does not read.
//!
//! Read next: [`crate::group`], which starts the loops with these sockets.

use std::env;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use socket2::{SockRef, Type};

use crate::error::{describe, StartError};

/// What kind of socket an inherited descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A listening TCP socket.
    Tcp,
    /// A UDP socket.
    Udp,
}

/// A socket the process inherited, open at `fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inherited {
    /// The descriptor number; it stays open for the life of the process.
    pub fd: RawFd,
    /// TCP listener or UDP socket.
    pub kind: Kind,
    /// Its name in `LISTEN_FDNAMES`: the socket unit's
    /// `FileDescriptorName=` (by default the unit's own name, such as
    /// `echo.socket`). `None` when the manager gave none: no
    /// `LISTEN_FDNAMES` (which `sd_listen_fds_with_names(3)` reports as
    /// `unknown`), or an empty name in it.
    ///
    /// `'static` because, like the descriptor, it belongs to the process
    /// for its whole life: [`listen_fds`] takes the names once and keeps
    /// them, which also keeps this type `Copy`.
    pub name: Option<&'static str>,
}

/// Every variable of socket activation, removed once read.
const VARIABLES: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// The sockets passed by socket activation, if it is for this process.
///
/// Empty when `LISTEN_PID` is unset or names another process (the
/// variables were meant for a parent). An error, saying which variable or
/// descriptor is wrong, when `LISTEN_PID` or `LISTEN_FDS` is not a number,
/// when `LISTEN_FDNAMES` has more or fewer names than `LISTEN_FDS` counts,
/// when a descriptor is not open, or when one is neither a listening TCP
/// socket nor a UDP socket over IPv4 or IPv6. The descriptors are made
/// close-on-exec, and the variables are removed (as `sd_listen_fds(3)`
/// does when asked to) so that children do not take the sockets for
/// theirs.
pub fn listen_fds() -> Result<Vec<Inherited>, StartError> {
    // The variables as given, for an error: sd-notify's says only which.
    let given: Vec<String> = VARIABLES
        .iter()
        .filter_map(|&var| Some(format!("{var}={:?}", env::var_os(var)?)))
        .collect();
    let passed = sd_notify::listen_fds_with_names();
    for var in VARIABLES {
        env::remove_var(var);
    }
    let passed = passed.map_err(|e| {
        let what = match e.raw_os_error() {
            Some(libc::EBADF) => "a descriptor LISTEN_FDS counts is not open".to_string(),
            _ => e.to_string(),
        };
        StartError::Config(format!(
            "socket activation: {what} ({}); expected LISTEN_FDS descriptors from 3 on, \
             and as many names in LISTEN_FDNAMES, separated by ':'",
            given.join(" ")
        ))
    })?;
    passed
        .map(|(fd, name)| {
            let kind = inspect(fd)?;
            Ok(Inherited {
                fd,
                kind,
                name: fd_name(name),
            })
        })
        .collect()
}

/// A name as `sd-notify` reads it from `LISTEN_FDNAMES`, kept for the life
/// of the process; `None` for no name (empty, or `unknown` when the
/// variable is not set).
fn fd_name(name: String) -> Option<&'static str> {
    if name.is_empty() || name == "unknown" {
        None
    } else {
        Some(name.leak())
    }
}

/// Checks what kind of socket `fd` is.
fn inspect(fd: RawFd) -> Result<Kind, StartError> {
    let wrong = |what: String| {
        StartError::Config(format!(
            "descriptor {fd} from socket activation {what}; expected a TCP listener \
             (ListenStream=) or a UDP socket (ListenDatagram=)"
        ))
    };
    // SAFETY: `sd-notify` checked the descriptor is open (it set
    // close-on-exec on it); we only borrow it for these queries.
    let fd_ref = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = SockRef::from(&fd_ref);
    // The family of the bound address: socket2's `domain()` (SO_DOMAIN)
    // exists on Linux only, this everywhere.
    let addr = socket
        .local_addr()
        .map_err(|e| wrong(format!("is not a socket ({})", describe(&e))))?;
    if addr.as_socket().is_none() {
        return Err(wrong("is not an IPv4 or IPv6 socket".into()));
    }
    match socket.r#type().map_err(|e| wrong(describe(&e)))? {
        Type::STREAM => {
            if !is_listener(&socket).map_err(|e| wrong(describe(&e)))? {
                return Err(wrong("is a stream socket that is not listening".into()));
            }
            Ok(Kind::Tcp)
        }
        Type::DGRAM => Ok(Kind::Udp),
        other => Err(wrong(format!("has socket type {other:?}"))),
    }
}

/// Whether `listen(2)` was called on `socket` (SO_ACCEPTCONN).
#[cfg(any(
    target_os = "aix",
    target_os = "android",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "linux",
    target_os = "cygwin",
))]
fn is_listener(socket: &SockRef<'_>) -> io::Result<bool> {
    socket.is_listener()
}

/// Whether `listen(2)` was called on `socket`: socket2 0.6 has no
/// `is_listener()` on macOS and the other BSDs, whose SO_ACCEPTCONN is
/// the same option.
#[cfg(not(any(
    target_os = "aix",
    target_os = "android",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "linux",
    target_os = "cygwin",
)))]
fn is_listener(socket: &SockRef<'_>) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    crate::net::int_option(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ACCEPTCONN)
        .map(|value| value != 0)
}

/// Sends `state` (such as `READY=1`) to the service manager, if
/// `NOTIFY_SOCKET` asks for it. Returns whether a message was sent; an
/// error if the socket cannot be reached.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let state = sd_notify::NotifyState::Custom(state);
    match path.as_encoded_bytes().strip_prefix(b"@") {
        // `sd-notify` would take `@name` for a file; sd_notify(3) says it
        // is a name in Linux's abstract namespace.
        Some(name) => notify_abstract(name, &format!("{state}\n"))?,
        None => sd_notify::notify(&[state])?,
    }
    Ok(true)
}

/// Sends `message` to the datagram socket called `name` in Linux's
/// abstract namespace (no file behind it).
#[cfg(target_os = "linux")]
fn notify_abstract(name: &[u8], message: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let addr = SocketAddr::from_abstract_name(name)?;
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

/// Abstract socket names exist on Linux only.
#[cfg(not(target_os = "linux"))]
fn notify_abstract(_name: &[u8], _message: &str) -> io::Result<()> {
    Err(io::Error::other("abstract NOTIFY_SOCKET needs Linux"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::{UnixDatagram, UnixListener};

    /// A name from `LISTEN_FDNAMES` is kept as it is.
    #[test]
    fn a_given_name_is_kept() {
        assert_eq!(fd_name("echo".into()), Some("echo"));
        assert_eq!(fd_name("echo.socket".into()), Some("echo.socket"));
    }

    /// An empty name (`LISTEN_FDNAMES=:echo`) and `unknown` (what
    /// `sd-notify` reports when `LISTEN_FDNAMES` is not set) are no name.
    #[test]
    fn an_empty_or_unknown_name_is_none() {
        assert_eq!(fd_name(String::new()), None);
        assert_eq!(fd_name("unknown".into()), None);
    }

    /// A listening TCP socket is `Tcp`, over IPv4 as over IPv6.
    #[test]
    fn a_tcp_listener_is_tcp() {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(inspect(v4.as_raw_fd()).unwrap(), Kind::Tcp);
        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            assert_eq!(inspect(v6.as_raw_fd()).unwrap(), Kind::Tcp);
        }
    }

    /// A UDP socket is `Udp`.
    #[test]
    fn a_udp_socket_is_udp() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(inspect(udp.as_raw_fd()).unwrap(), Kind::Udp);
    }

    /// A TCP socket that is not listening is refused, and the error names
    /// the descriptor and says what was expected.
    #[test]
    fn a_stream_socket_that_is_not_listening_is_refused() {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let fd = socket.as_raw_fd();
        let e = inspect(fd).unwrap_err().to_string();
        assert!(e.contains(&format!("descriptor {fd} ")), "{e}");
        assert!(e.contains("stream socket that is not listening"), "{e}");
        assert!(e.contains("ListenStream="), "{e}");
    }

    /// Unix sockets are sockets, but not IPv4 or IPv6 ones.
    #[test]
    fn a_unix_socket_is_refused() {
        let dir = std::env::temp_dir().join(format!(
            "mio-echo-systemd-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixListener::bind(&dir).unwrap();
        let datagram = UnixDatagram::unbound().unwrap();
        for fd in [listener.as_raw_fd(), datagram.as_raw_fd()] {
            let e = inspect(fd).unwrap_err().to_string();
            assert!(e.contains("is not an IPv4 or IPv6 socket"), "{e}");
        }
        let _ = std::fs::remove_file(&dir);
    }

    /// A descriptor that is open but no socket (a file) is refused.
    #[test]
    fn a_file_is_not_a_socket() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let e = inspect(file.as_raw_fd()).unwrap_err().to_string();
        assert!(e.contains("is not a socket"), "{e}");
    }
}
