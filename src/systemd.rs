//! Running under systemd (or anything that speaks its protocols): socket
//! activation and readiness notification.
//!
//! * **Socket activation.** The service manager binds the sockets (port 7
//!   needs no root in the service then) and starts us with them open from
//!   descriptor 3, saying how many in `LISTEN_FDS` and for which process in
//!   `LISTEN_PID`. [`listen_fds`] checks each is a TCP listener or a UDP
//!   socket and hands them to the server instead of binding.
//! * **Notification.** When `NOTIFY_SOCKET` names a datagram socket,
//!   [`notify`] sends it `READY=1` once every socket is served and
//!   `STOPPING=1` when a stop begins.
//!
//! Both are a few lines of the documented protocol (`sd_listen_fds(3)`,
//! `sd_notify(3)`), so no crate is needed.
//!
//! Read next: [`crate::group`], which starts the loops with these sockets.

use std::env;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::net::UnixDatagram;

use crate::error::StartError;

/// The first descriptor systemd passes.
const FIRST_FD: RawFd = 3;

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
}

/// The sockets passed by socket activation, if it is for this process.
///
/// Empty when `LISTEN_PID` is unset or names another process (the
/// variables were meant for a parent). A descriptor that is neither a
/// listening TCP socket nor a UDP socket over IPv4 or IPv6 is a
/// configuration error. The variables are removed so that children do not
/// take the sockets for theirs.
pub fn listen_fds() -> Result<Vec<Inherited>, StartError> {
    let (Ok(pid), Ok(count)) = (env::var("LISTEN_PID"), env::var("LISTEN_FDS")) else {
        return Ok(Vec::new());
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        env::remove_var(var);
    }
    let count: RawFd = count.trim().parse().map_err(|_| {
        StartError::Config(format!(
            "LISTEN_FDS={count:?} is not a number of descriptors"
        ))
    })?;
    (FIRST_FD..FIRST_FD.saturating_add(count))
        .map(inspect)
        .collect()
}

/// Checks what kind of socket `fd` is, and marks it close-on-exec.
fn inspect(fd: RawFd) -> Result<Inherited, StartError> {
    let wrong = |what: String| {
        StartError::Config(format!(
            "descriptor {fd} from socket activation {what}; expected a TCP listener \
             (ListenStream=) or a UDP socket (ListenDatagram=)"
        ))
    };
    let domain = sockopt(fd, libc::SO_DOMAIN)
        .map_err(|e| wrong(format!("is not a socket ({})", crate::error::describe(&e))))?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(wrong("is not an IPv4 or IPv6 socket".into()));
    }
    let kind = match sockopt(fd, libc::SO_TYPE).map_err(|e| wrong(e.to_string()))? {
        libc::SOCK_STREAM => {
            if sockopt(fd, libc::SO_ACCEPTCONN).map_err(|e| wrong(e.to_string()))? == 0 {
                return Err(wrong("is a stream socket that is not listening".into()));
            }
            Kind::Tcp
        }
        libc::SOCK_DGRAM => Kind::Udp,
        other => return Err(wrong(format!("has socket type {other}"))),
    };
    // SAFETY: fcntl on a descriptor we just checked is an open socket.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Inherited { fd, kind })
}

fn sockopt(fd: RawFd, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Sends `state` (such as `READY=1`) to the service manager, if
/// `NOTIFY_SOCKET` asks for it. Returns whether a message was sent.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // A name in Linux's abstract namespace: no file behind it.
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(io::Error::other("abstract NOTIFY_SOCKET needs Linux"));
        }
    } else {
        socket.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}
