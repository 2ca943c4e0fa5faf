//! A run: its connections spread over one poll loop per thread, opened
//! ([`super::dial`]), started together, driven ([`super::driver`]), and
//! their results collected in thread order.
//!
//! Loop `t` of `threads` takes a contiguous share of the connections (see
//! [`share`]). Every loop opens its share, then waits at a [`Gate`] for the
//! others, so the load starts together; and, in modes that need every
//! connection ([`Opening::Every`]), not at all if one failed to open. With
//! one thread the loop runs on the calling thread and the process stays
//! single-threaded (see the crate docs for why that matters).
//!
//! Read next: [`super::pingpong`], the first mode built on the driver.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Poll};

use super::dial::{self, Dial, Dialed};
use super::driver::{self, Mode, Ran};
use super::{ensure_descriptors, LoadError};

/// Events taken from the kernel per `poll`.
const EVENTS: usize = 1024;

/// Which connections a run needs before its load starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// Every one: if any fails to open, the run stops with one error line.
    Every,
    /// Any: those that fail to open are counted, the rest are loaded; only
    /// when none opens is it an error.
    Any,
}

/// What a run opens, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// The server.
    pub(crate) addr: SocketAddr,
    /// Connections in all.
    pub(crate) connections: usize,
    /// Poll loops (threads) to spread them over; at most one per
    /// connection.
    pub(crate) threads: usize,
    /// Source addresses to bind (see [`dial::Sources`]).
    pub(crate) sources: dial::Sources,
    /// How long a connection may take to open.
    pub(crate) timeout: Duration,
    /// Which connections the load needs.
    pub(crate) opening: Opening,
    /// When the load starts, on the wall clock, once every connection is
    /// open: so that several processes load a server over the same
    /// window. `None`: as soon as they are open.
    pub(crate) start_at: Option<SystemTime>,
}

impl Plan {
    /// A run that needs every one of `connections` to the server at `addr`,
    /// spread over `threads` loops, from source addresses chosen for the
    /// count, each allowed `timeout` to open.
    pub(crate) fn every(
        addr: SocketAddr,
        connections: usize,
        threads: usize,
        timeout: Duration,
    ) -> Plan {
        Plan {
            addr,
            connections,
            threads,
            sources: dial::Sources::Chosen,
            timeout,
            opening: Opening::Every,
            start_at: None,
        }
    }
}

/// What a run did: every loop's result, in thread order, and how the
/// connections opened.
pub(crate) struct Run<M> {
    /// Each loop's mode and failures.
    pub(crate) loops: Vec<Ran<M>>,
    /// Connections that opened.
    pub(crate) opened: usize,
    /// From the first `connect` to the last connection open, in the slowest
    /// loop.
    pub(crate) open_time: Duration,
    /// Source addresses used (0: the kernel chose).
    pub(crate) sources: usize,
    /// How late the load started after [`Plan::start_at`]: the connections
    /// were still opening then. Zero without a start time.
    pub(crate) late: Duration,
}

/// Raises the descriptor limit, opens `plan`'s connections on
/// `plan.threads` loops, each running a mode made by `mode`, and collects
/// what each loop did.
///
/// Fails before any load if the connections cannot fit under the
/// descriptor limit, or if too few of them open for `plan.opening`.
pub(crate) fn run<M: Mode + Send>(
    plan: &Plan,
    mode: impl Fn() -> M + Sync,
) -> Result<Run<M>, LoadError> {
    ensure_descriptors(plan.connections)?;
    // Many connections to one server open slowly from one source address
    // (see `dial`), so big runs spread over several.
    let sources = plan.sources.addrs(plan.addr, plan.connections)?;
    let threads = plan.threads.clamp(1, plan.connections.max(1));
    let results = on_threads(threads, |t, gate| {
        one_loop(
            plan,
            &sources,
            share(plan.connections, threads, t),
            gate,
            mode(),
        )
    })?;
    let mut opened = Opened::default();
    let mut late = Duration::ZERO;
    let mut loops = Vec::with_capacity(results.len());
    for result in results {
        let (loop_opened, loop_late, ran) = result?;
        opened.add(loop_opened);
        late = late.max(loop_late);
        loops.extend(ran);
    }
    let enough = match plan.opening {
        Opening::Every => opened.failed == 0,
        Opening::Any => opened.count > 0,
    };
    if !enough {
        return Err(opened.error(plan.addr, plan.connections));
    }
    Ok(Run {
        loops,
        opened: opened.count,
        open_time: opened.elapsed,
        sources: sources.len(),
        late,
    })
}

/// One loop: opens the connections numbered `range`, waits at the gate for
/// the run's other loops, then, if the load may start, drives `mode` over
/// them on this thread. Returns how the connections opened and, unless the
/// run is called off, what the loop did; and how late it started after
/// [`Plan::start_at`].
fn one_loop<M: Mode>(
    plan: &Plan,
    sources: &[IpAddr],
    range: Range<usize>,
    gate: &Gate,
    mode: M,
) -> Result<(Opened, Duration, Option<Ran<M>>), LoadError> {
    let first = range.start;
    let prepared = (|| {
        let mut poll = Poll::new().map_err(|e| LoadError::Setup("poll", e))?;
        let mut events = Events::with_capacity(EVENTS);
        let dial = Dial {
            target: plan.addr,
            sources,
            count: range.len(),
            first,
            timeout: plan.timeout,
        };
        let dialed = dial::dial(&mut poll, &mut events, &dial).map_err(LoadError::Poll)?;
        Ok((poll, events, dialed))
    })();
    // Whatever happened, pass the gate: the other loops wait for us there.
    let blocking = match &prepared {
        Ok((_, _, dialed)) if plan.opening == Opening::Every => dialed.failures.total(),
        Ok(_) => 0,
        Err(_) => 1,
    };
    let go = gate.wait(blocking);
    let (mut poll, mut events, mut dialed) = prepared?;
    let opened = Opened::of(&mut dialed);
    if !go {
        // The run will stop with one error line: nothing to report.
        return Ok((opened, Duration::ZERO, None));
    }
    if opened.count == 0 {
        // Nothing to load, but its failures count: the mode, never
        // started, reports nothing else.
        let ran = Ran {
            mode,
            failures: std::mem::take(&mut dialed.failures),
            elapsed: Duration::ZERO,
            ended: Instant::now(),
        };
        return Ok((opened, Duration::ZERO, Some(ran)));
    }
    log::info!(
        "opened {} connections in {:.3}s",
        opened.count,
        opened.elapsed.as_secs_f64()
    );
    let late = plan.start_at.map_or(Duration::ZERO, wait_until);
    let ran = driver::drive(mode, &mut poll, &mut events, &mut dialed, first)?;
    Ok((opened, late, Some(ran)))
}

/// Sleeps until `at` on the wall clock (the connections are open and
/// idle meanwhile); returns how late it already was, if it was.
fn wait_until(at: SystemTime) -> Duration {
    match at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            thread::sleep(wait);
            Duration::ZERO
        }
        Err(past) => past.duration(),
    }
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

/// How a run's connections opened, in one loop or over all of them.
#[derive(Debug, Default)]
struct Opened {
    count: usize,
    failed: u64,
    first_error: Option<io::Error>,
    elapsed: Duration,
}

impl Opened {
    /// Takes the counts (and the first error) out of one loop's dial; the
    /// failures stay for the driver, which reports them first.
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
}
