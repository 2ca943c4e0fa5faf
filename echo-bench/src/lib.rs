//! The load generator behind `echo-bench`: drive any echo server hard and
//! check every byte it sends back.
//!
//! A load tool is only useful if it is not the bottleneck: on a two-core
//! machine the server, not the tool, must run out of CPU first. So the tool
//! is built like the server it measures:
//!
//! * **One mio poll loop per thread** over many non-blocking connections
//!   (one thread by default, `--threads N` to spread the connections over
//!   N loops). With one thread the process holds exactly one thread, which
//!   keeps glibc's `read` and `write` off the slower cancellable path (see
//!   the performance notes on the server's side).
//! * **Nothing is allocated per message.** Each loop owns one 32 KiB read
//!   buffer; each connection owns a few counters and, when pipelining, a
//!   ring of send times.
//! * **Nothing sent is kept.** What each connection sends is a fixed
//!   function of its number and the offset in its stream ([`pattern`]), so
//!   an echoed byte is checked by comparing it with the pattern at the same
//!   offset: one `memcmp` per read, no copy per message.
//! * **Write at once, read until the queue is empty.** A connection writes
//!   as soon as it may, waits for a writable event only when the kernel
//!   refused bytes, and registers once (no `epoll_ctl` per message).
//!
//! Every mode ends by itself (a duration, a byte count, a hold time) and
//! runs under deadlines: a server that stops answering turns into a counted
//! failure within `--timeout`, never a hang. Failures of one connection
//! (a reset, an early close, a byte that differs, silence) close that
//! connection and are counted by kind ([`report::Failures`]); only trouble
//! before the load starts (bad options, too few descriptors, a server that
//! cannot be reached) is a [`LoadError`].
//!
//! ## Where to read
//!
//! | concept | file |
//! |---|---|
//! | the bytes sent and how an echo is checked | [`pattern`] |
//! | `--addr`: a name resolved, the address that answers | [`target`] |
//! | opening many connections at once, from several source addresses | [`dial`] |
//! | failures by kind, latency histogram, the `result` line | [`report`] |
//! | `--json`: the report as one JSON object | [`json`] |
//! | the live progress line on a terminal | [`progress`] |
//! | the driver: one poll loop, its connections, their reads and writes, deadlines, closing | `src/driver.rs` |
//! | a run: connections spread over loops, opened, started together | `src/run.rs` |
//! | waking a loop on time for a schedule (a `timerfd`, not the poll's milliseconds) | `src/alarm.rs` |
//! | `pingpong`: messages and their round trips | [`pingpong`] |
//! | `pingpong --rate`: the open-loop schedule, latency from each message's due time | [`paced`] |
//! | `stream`: full-duplex bulk transfer | [`stream`] |
//! | `connections`: many idle connections at once | [`connections`] |
//! | `churn`: connections opened, echoed over and closed at a rate | [`churn`] |
//! | `udp`: datagrams at a rate or in ping-pong, loss and latency (its own loop) | [`udp`] |
//!
//! Read [`pattern`] and [`dial`] first, then the driver: it owns the loop,
//! and each mode is only the logic it plugs in (its `Mode` hooks: what to
//! write, what to count, what a deadline means). The binary, `src/main.rs`,
//! only parses arguments and prints the report.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio_echo_net as net;
use mio_echo_net::describe;

mod alarm;
pub mod churn;
pub mod connections;
pub mod dial;
mod driver;
pub mod json;
pub mod paced;
pub mod pattern;
pub mod pingpong;
pub mod progress;
pub mod report;
mod run;
pub mod stream;
pub mod target;
pub mod udp;

pub use report::{Failure, Failures, Outcome, Percentiles, ResultLine};

/// The most bytes one `read` or `write` moves. 32 KiB: on this kernel 64 KiB
/// calls move bulk loopback streams about half as fast (the server's read
/// buffer is 32 KiB for the same reason).
pub const IO_CHUNK: usize = 32 * 1024;

/// Descriptors kept back beyond one per connection: the standard streams,
/// the polls, and slack for the process.
pub const RESERVED_FDS: u64 = 16;

/// The default for `--timeout`: how long the server may leave a connection
/// waiting, to open or for an echo, before that connection counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a load run could not start. Once the load is running, trouble with a
/// connection is a counted [`Failure`] in the report instead.
///
/// `Display` gives the one line a person reads, without the `error: `
/// prefix, which the binary adds.
#[derive(Debug)]
pub enum LoadError {
    /// The options ask for something impossible (a usage error).
    Config(String),
    /// The server's name did not resolve to any address.
    Resolve {
        /// The address as given.
        target: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// The process may not open enough descriptors for the connections.
    FdLimit {
        /// Connections asked for.
        connections: usize,
        /// The open-file limit in force, already raised to the hard limit.
        limit: u64,
    },
    /// The poll, or a thread, could not be created.
    Setup(&'static str, io::Error),
    /// Waiting in `poll` failed (not for one connection: for the loop).
    Poll(io::Error),
    /// Connections to the server could not be opened.
    Connect {
        /// The server's address.
        addr: SocketAddr,
        /// How many connections failed to open.
        failed: u64,
        /// How many were tried.
        total: usize,
        /// What the kernel said about the first that failed.
        source: io::Error,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(what) => f.write_str(what),
            LoadError::Resolve { target, source } => {
                write!(f, "cannot resolve {target}: {}", describe(source))
            }
            LoadError::FdLimit { connections, limit } => {
                let per_process = limit.saturating_sub(RESERVED_FDS).max(1);
                let processes = (*connections as u64).div_ceil(per_process);
                write!(
                    f,
                    "cannot hold {connections} connections in one process: its open-file \
                     limit is {limit} (already raised to the hard limit), enough for \
                     {per_process}; run {processes} echo-bench processes side by side with \
                     at most {per_process} connections each"
                )
            }
            LoadError::Setup(what, source) => {
                write!(f, "cannot create the {what}: {}", describe(source))
            }
            LoadError::Poll(source) => write!(f, "the poll loop failed: {}", describe(source)),
            LoadError::Connect {
                addr,
                failed,
                total,
                source,
            } => {
                write!(f, "cannot connect to {addr}: {}", describe(source))?;
                if *failed < *total as u64 {
                    write!(f, " ({failed} of {total} connections failed)")?;
                }
                if source.kind() == io::ErrorKind::ConnectionRefused {
                    f.write_str(" (is the echo server running?)")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Setup(_, source)
            | LoadError::Poll(source)
            | LoadError::Resolve { source, .. }
            | LoadError::Connect { source, .. } => Some(source),
            LoadError::Config(_) | LoadError::FdLimit { .. } => None,
        }
    }
}

/// Raises the process's soft descriptor limit to its hard limit and checks
/// that `connections` fit under it. Returns the limit in force.
///
/// Every connection holds a descriptor. Past the hard limit no process can
/// go (on these machines not even root), so the error says how many
/// processes the load needs instead of failing later with "too many open
/// files" half-way through.
pub fn ensure_descriptors(connections: usize) -> Result<u64, LoadError> {
    let limit = match net::raise_fd_limit() {
        Ok(limit) => limit,
        // Not allowed to raise it: work with what we have.
        Err(_) => net::fd_limit().map_err(|e| LoadError::Setup("descriptor limit", e))?,
    };
    if connections as u64 + RESERVED_FDS > limit {
        return Err(LoadError::FdLimit { connections, limit });
    }
    Ok(limit)
}

/// How many events of a schedule at `rate` a second, the first at 0, fall
/// within `window`: those at `k / rate` before its end. A product within
/// floating-point noise of a whole number counts as that number, so 0.3 s
/// at 10/s is 3, however 0.3 rounds.
pub(crate) fn due_within(window: Duration, rate: f64) -> u64 {
    let x = window.as_secs_f64() * rate;
    let whole = x.round();
    if (x - whole).abs() <= 1e-9 * whole.max(1.0) {
        whole as u64
    } else {
        x.ceil() as u64
    }
}

/// A positive duration for a `--timeout`-like option, or a usage error.
fn positive(what: &str, d: Duration) -> Result<(), LoadError> {
    if d.is_zero() {
        return Err(LoadError::Config(format!("{what} must be more than 0")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Too few descriptors names the limit and how many processes it takes.
    #[test]
    fn fd_limit_says_how_many_processes() {
        let e = LoadError::FdLimit {
            connections: 30_000,
            limit: 20_000,
        };
        let text = e.to_string();
        assert!(text.contains("open-file limit is 20000"), "{text}");
        assert!(text.contains("run 2 echo-bench processes"), "{text}");
        assert!(text.contains("at most 19984 connections each"), "{text}");
    }

    /// A schedule's count in a window: starts strictly before its end, and
    /// no off-by-one from a duration that does not round exactly.
    #[test]
    fn due_within_counts_starts_before_the_end() {
        assert_eq!(due_within(Duration::from_secs_f64(0.3), 10.0), 3);
        assert_eq!(due_within(Duration::from_millis(300), 10.0), 3);
        assert_eq!(due_within(Duration::from_secs(1), 200.0), 200);
        assert_eq!(due_within(Duration::from_millis(1050), 2.0), 3);
        assert_eq!(due_within(Duration::from_millis(1), 1.0), 1);
    }

    /// A refused connection says what to check.
    #[test]
    fn refused_asks_whether_the_server_runs() {
        let e = LoadError::Connect {
            addr: "127.0.0.1:9".parse().unwrap(),
            failed: 4,
            total: 4,
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            e.to_string(),
            "cannot connect to 127.0.0.1:9: connection refused (is the echo server running?)"
        );
    }
}
