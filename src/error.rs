//! Errors a person reads: what failed, on which address, and what to do.
//!
//! The library returns these; only the binaries' `main` turns one into an
//! `error: ...` line and an exit status.
//!
//! Read next: [`crate::net`], where most start-up errors come from.

use std::fmt;
use std::io;
use std::net::SocketAddr;

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

/// What the binaries do with a command line clap rejects: `--help` and
/// `--version` print and exit 0 (and a missing subcommand prints the help),
/// anything else becomes one `error: ... (see --help)` line on standard
/// error and exit status 2, instead of clap's several lines of usage.
pub fn usage_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    use std::io::Write;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("error: invalid arguments");
    // A closed standard error leaves nothing better to do than exit.
    let _ = writeln!(std::io::stderr().lock(), "{first} (see --help)");
    std::process::ExitCode::from(2)
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

    /// Other errors lose the "(os error N)" tail and the capital letter.
    #[test]
    fn describe_reads_inside_a_sentence() {
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(describe(&e), "too many open files");
    }
}
