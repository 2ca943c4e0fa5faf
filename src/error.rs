//! Errors a person reads: what failed, on which address, and what to do.
//!
//! The library returns these; only the binaries' `main` turns one into an
//! `error: ...` line and an exit status.
//!
//! Read next: `src/net.rs`, where most start-up errors come from.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// The kernel's words for an I/O error; it lives in `mio-echo-net`, which
/// the client and the load generator share with the server.
pub(crate) use mio_echo_net::describe;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listening socket could not be opened on `addr`.
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
    /// The configuration asks for something impossible.
    Config(String),
    /// The poll, the waker or the signal pipe could not be created.
    Setup(&'static str, io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Listen { addr, source } => {
                write!(f, "cannot listen on {addr}: {}", describe(source))?;
                match source.kind() {
                    io::ErrorKind::AddrInUse => f.write_str(
                        " (is another echo-server running? choose another with --listen)",
                    ),
                    io::ErrorKind::PermissionDenied => f.write_str(
                        " (ports below 1024 need root or CAP_NET_BIND_SERVICE; \
                         choose a port above 1023 with --listen)",
                    ),
                    io::ErrorKind::AddrNotAvailable => f.write_str(
                        " (no local interface has this address; try 127.0.0.1, [::1] or 0.0.0.0)",
                    ),
                    _ => Ok(()),
                }
            }
            StartError::Config(what) => f.write_str(what),
            StartError::Setup(what, source) => {
                write!(f, "cannot create the {what}: {}", describe(source))
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Listen { source, .. } | StartError::Setup(_, source) => Some(source),
            StartError::Config(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Address in use" names the address and says what to do.
    #[test]
    fn address_in_use_says_what_to_do() {
        let e = StartError::Listen {
            addr: "127.0.0.1:7007".parse().unwrap(),
            source: io::Error::from_raw_os_error(libc::EADDRINUSE),
        };
        assert_eq!(
            e.to_string(),
            "cannot listen on 127.0.0.1:7007: address already in use \
             (is another echo-server running? choose another with --listen)"
        );
    }
}
