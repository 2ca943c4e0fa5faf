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
//! | opening many connections at once, from several source addresses | [`dial`] |
//! | failures by kind, latency histogram, the `result` line | [`report`] |
//! | `pingpong`: messages and their round trips | [`pingpong`] |
//! | `stream`: full-duplex bulk transfer | [`stream`] |
//! | `connections`: many idle connections at once | [`connections`] |
//!
//! Read [`pattern`] and [`dial`] first; each mode builds on them. The binary,
//! `src/main.rs`, only parses arguments and prints the report.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use mio::{Events, Poll};

use mio_echo_net as net;
use mio_echo_net::describe;

pub mod connections;
pub mod dial;
pub mod pattern;
pub mod pingpong;
pub mod report;
pub mod stream;

use dial::{Dial, Dialed};
pub use report::{Failure, Failures, Outcome, ResultLine};

/// The most bytes one `read` or `write` moves. 32 KiB: on this kernel 64 KiB
/// calls move bulk loopback streams about half as fast (the server's read
/// buffer is 32 KiB for the same reason).
pub const IO_CHUNK: usize = 32 * 1024;

/// Events taken from the kernel per `poll`.
const EVENTS: usize = 1024;

/// How often a loop wakes, at the least, to look for silent connections and
/// passed deadlines. A scan over every connection ten times a second costs
/// next to nothing beside the traffic it watches.
const TICK: Duration = Duration::from_millis(100);

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

/// The connections thread `t` of `threads` drives: a contiguous share of
/// `0..total`, the first `total % threads` shares one larger.
fn share(total: usize, threads: usize, t: usize) -> Range<usize> {
    let base = total / threads;
    let extra = total % threads;
    let start = t * base + t.min(extra);
    start..start + base + usize::from(t < extra)
}

/// Where the threads of one run wait for each other between opening their
/// connections and starting the load, so the load starts together, and
/// starts not at all if any connection failed to open.
///
/// A barrier that can be called off: if a thread cannot even be created,
/// those already waiting are let go instead of waiting for it forever.
struct Gate {
    threads: usize,
    state: Mutex<GateState>,
    opened: Condvar,
}

#[derive(Default)]
struct GateState {
    arrived: usize,
    failed: u64,
    called_off: bool,
}

impl Gate {
    fn new(threads: usize) -> Gate {
        Gate {
            threads,
            state: Mutex::new(GateState::default()),
            opened: Condvar::new(),
        }
    }

    /// Reports this thread's failed connections (or 1 for a failed setup)
    /// and waits for the others. True if every thread of the run connected
    /// and the load may start.
    ///
    /// Every thread must call this exactly once, whatever went wrong before,
    /// or the others wait until the gate is called off.
    fn wait(&self, failed: u64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.arrived += 1;
        state.failed += failed;
        if state.arrived == self.threads {
            self.opened.notify_all();
        }
        while state.arrived < self.threads && !state.called_off {
            state = self.opened.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        !state.called_off && state.failed == 0
    }

    /// Lets every waiting thread go without starting the load.
    fn call_off(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.called_off = true;
        self.opened.notify_all();
    }
}

/// Runs `work(t, gate)` for each thread `t` in `0..threads` and collects the
/// results in thread order. With one thread it runs here, on the calling
/// thread, and the process stays single-threaded.
/// One loop's part of a run: it says how its connections opened.
trait LoopPart: Send {
    /// Takes the loop's dial counts out of it.
    fn take_opened(&mut self) -> Opened;
}

/// The start every connection-spreading mode shares: chooses the source
/// addresses (many connections to one server open slowly from one source,
/// see `dial`), runs `part` on `threads` loops, each over its share of
/// `connections`, and returns the parts with the time the slowest took to
/// open its connections. A connection that did not open fails the run.
fn run_loops<P: LoopPart>(
    addr: SocketAddr,
    connections: usize,
    threads: usize,
    part: impl Fn(&[IpAddr], Range<usize>, &Gate) -> Result<P, LoadError> + Sync,
) -> Result<(Vec<P>, Duration), LoadError> {
    let sources = dial::sources_for(addr, connections, 0)?;
    let parts = on_threads(threads, |t, gate| {
        part(&sources, share(connections, threads, t), gate)
    })?;
    let mut opened = Opened::default();
    let mut ok = Vec::with_capacity(parts.len());
    for part in parts {
        let mut part = part?;
        opened.add(part.take_opened());
        ok.push(part);
    }
    let opened = opened.check(addr, connections)?;
    Ok((ok, opened.elapsed))
}

fn on_threads<R: Send>(
    threads: usize,
    work: impl Fn(usize, &Gate) -> R + Sync,
) -> Result<Vec<R>, LoadError> {
    let gate = Gate::new(threads);
    if threads <= 1 {
        return Ok(vec![work(0, &gate)]);
    }
    thread::scope(|scope| {
        let mut handles = Vec::with_capacity(threads - 1);
        let mut spawn_error = None;
        for t in 1..threads {
            let (work, gate) = (&work, &gate);
            match thread::Builder::new()
                .name(format!("echo-bench-{t}"))
                .spawn_scoped(scope, move || work(t, gate))
            {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    spawn_error = Some(e);
                    gate.call_off();
                    break;
                }
            }
        }
        // This thread does its share too, unless the run is already off.
        let mine = spawn_error.is_none().then(|| work(0, &gate));
        let mut results = Vec::with_capacity(threads);
        results.extend(mine);
        for handle in handles {
            match handle.join() {
                Ok(r) => results.push(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match spawn_error {
            Some(e) => Err(LoadError::Setup("load threads", e)),
            None => Ok(results),
        }
    })
}

/// One loop's connections, opened, and whether the load may start.
struct Share {
    poll: Poll,
    events: Events,
    dialed: Dialed,
    /// Every loop of the run opened all its connections.
    go: bool,
}

/// Opens the connections numbered `range` for one loop, then waits at the
/// gate for the run's other loops.
fn open_share(
    target: SocketAddr,
    sources: &[IpAddr],
    range: Range<usize>,
    timeout: Duration,
    gate: &Gate,
) -> Result<Share, LoadError> {
    let prepared = (|| {
        let mut poll = Poll::new().map_err(|e| LoadError::Setup("poll", e))?;
        let mut events = Events::with_capacity(EVENTS);
        let plan = Dial {
            target,
            sources,
            count: range.len(),
            first: range.start,
            timeout,
        };
        let dialed = dial::dial(&mut poll, &mut events, &plan).map_err(LoadError::Poll)?;
        Ok((poll, events, dialed))
    })();
    // Whatever happened, pass the gate: the other loops wait for us there.
    let failed = match &prepared {
        Ok((_, _, dialed)) => dialed.failures.total(),
        Err(_) => 1,
    };
    let go = gate.wait(failed);
    let (poll, events, dialed) = prepared?;
    Ok(Share {
        poll,
        events,
        dialed,
        go,
    })
}

/// How a run's connections opened, in one loop or over all of them.
#[derive(Debug, Default)]
struct Opened {
    count: usize,
    failed: u64,
    first_error: Option<io::Error>,
    elapsed: Duration,
}

impl Opened {
    /// Takes the counts (and the first error) out of one loop's dial.
    fn of(dialed: &mut Dialed) -> Opened {
        Opened {
            count: dialed.opened,
            failed: dialed.failures.total(),
            first_error: dialed.first_error.take(),
            elapsed: dialed.elapsed,
        }
    }

    /// Adds another loop's counts; the slowest loop's time is the run's.
    fn add(&mut self, other: Opened) {
        self.count += other.count;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// For modes that need every connection: the one-line error when some
    /// did not open.
    fn check(self, addr: SocketAddr, total: usize) -> Result<Opened, LoadError> {
        if self.failed == 0 {
            return Ok(self);
        }
        Err(self.error(addr, total))
    }

    /// The one-line error for connections that did not open.
    fn error(self, addr: SocketAddr, total: usize) -> LoadError {
        LoadError::Connect {
            addr,
            failed: self.failed,
            total,
            source: self
                .first_error
                .unwrap_or_else(|| io::Error::other("connection failed")),
        }
    }
}

/// Waits in `poll` for at most `timeout`. A signal that interrupts the wait
/// is no failure: it counts as a wake-up with no events.
fn wait(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<(), LoadError> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(e) => Err(LoadError::Poll(e)),
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

    /// Shares cover every connection once, in order, sizes differing by one.
    #[test]
    fn shares_cover_every_connection_once() {
        for total in [1, 2, 7, 100, 101] {
            for threads in 1..=4.min(total) {
                let ranges: Vec<_> = (0..threads).map(|t| share(total, threads, t)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[threads - 1].end, total);
                for pair in ranges.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                    assert!(pair[0].len() - pair[1].len() <= 1);
                }
            }
        }
    }

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
