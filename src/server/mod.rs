//! The poll loop: accept, dispatch, shut down.
//!
//! One thread, one [`mio::Poll`], one [`Slab`] of connections. Each turn of
//! the loop:
//!
//! 1. blocks in `poll` until the kernel reports readiness, or the earliest
//!    timer is due, or (not at all) while work is left from the last turn;
//! 2. handles every event: accepts on a listener, drives a connection,
//!    echoes datagrams, reads the signal pipe, or takes a request from a
//!    [`Handle`];
//! 3. serves the ready list: connections, UDP sockets and listeners that
//!    used their budget with work still waiting, for which no event will
//!    come (the tour, section 2);
//! 4. fires the timers that are due (idle connections, a paused accept,
//!    periodic stats). They, and the shutdown deadline that the loop checks
//!    after each turn, all come from `poll`'s timeout: no timer thread, no
//!    scan over every connection;
//! 5. removes the connections that closed during the turn.
//!
//! # Tokens
//!
//! A connection's token is its slab key. The other sources take tokens from
//! the top of the range (`usize::MAX`, `usize::MAX - 1`, ...), which no slab
//! key reaches. A closed connection stays in the slab, marked `Closed`,
//! until the end of the turn, so a key is never reused while events of the
//! turn that closed it may still name it. References that outlive a turn
//! (idle timers) carry the connection's serial number as well as its key,
//! and are dropped when the connection at that key is another one.
//!
//! # Limits
//!
//! Each connection may owe at most `max_buffer` bytes and read at most
//! [`BUDGET`] bytes per pass; all of them together may hold at most
//! `max_memory` bytes of buffers ([`crate::buffer::Budget`]); the server
//! holds at most `max_connections` (never more than its descriptors allow),
//! and at most `max_connections_per_ip` from one address. These counts are
//! the whole server's, shared by every loop ([`crate::limits`]). When
//! `accept` runs out of descriptors the server pauses accepting and retries
//! on a timer and whenever a connection closes: it neither spins nor stops
//! serving.
//!
//! A pass accepts at most [`ACCEPT_BATCH`] connections from one listener,
//! then puts the listener on the ready list: a storm of connections that
//! reset as soon as they open cannot hold the loop in `accept` while the
//! connections it already took pile up unserved, and one that was reset
//! before it was accepted is dropped without taking a slot.
//!
//! Read next: [`crate::connection`] for what one pass over a connection
//! does, [`crate::group`] for several loops on several threads.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGALRM, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::buffer::Budget;
use crate::config::Config;
use crate::connection::{Connection, Limits, Next, Reason, State, Tcp, Wake};
use crate::error::{describe, StartError};
use crate::limits::{Bound, Shared};
use crate::net::{self, SocketOptions};
use crate::service::Service;
use crate::stats::Summary;
use crate::systemd::{self, Inherited, Kind};
use crate::timers::{IdleTimers, RateLimit, Tick};
use crate::udp;

mod accept;
mod control;
mod listeners;
mod memory;

use accept::ACCEPT_BATCH;
use control::Requests;
pub use control::{Handle, Running};
pub(crate) use listeners::open_sockets;
pub(crate) use listeners::Listener;
use listeners::Socket;

/// The shared read buffer's largest size (`run` uses `max_buffer` when that
/// is smaller). Every TCP echo passes through it; BENCHMARKS.md has why not
/// 64 KiB.
pub(crate) const READ_BUF: usize = 32 * 1024;

/// How many bytes one pass may read from one connection before the loop
/// moves on to the others.
pub(crate) const BUDGET: usize = 256 * 1024;

/// Events taken from the kernel per `poll`.
const EVENTS: usize = 1024;

/// The shortest time between two warnings of the same kind.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What a connection is registered for. On Linux also urgent data
/// (EPOLLPRI): a read stops short at the urgent mark with more bytes behind
/// it, so a short read proves nothing then, and the event must say so.
#[cfg(any(target_os = "linux", target_os = "android"))]
const CONNECTION_INTEREST: Interest = Interest::READABLE
    .add(Interest::WRITABLE)
    .add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const CONNECTION_INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// Whether a short read may end a pass (the tour, "Edge-triggered"). Only
/// where urgent data raises an event of its own: the BSDs' reads, too, stop
/// at the urgent mark with bytes behind it, and mio's kqueue has no event
/// for it, so there every pass reads on to `WouldBlock` (one more call per
/// echo), or a client's urgent byte would leave its connection stuck.
const SHORT_READ_PROVES_EMPTY: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// A [`Handle`] has a request (stop, or log stats).
const WAKER: Token = Token(usize::MAX);
/// A signal arrived (through signal-hook's self-pipe); see `signal_event`.
const SIGNALS: Token = Token(usize::MAX - 1);
/// Listening socket `i` (TCP or UDP) has token `FIRST_SOCKET - i`.
const FIRST_SOCKET: usize = usize::MAX - 2;
/// At most this many listening sockets; tokens below their range are keys.
pub(crate) const MAX_SOCKETS: usize = 1024;
/// Slab keys, and so connection tokens, stay below this.
pub(crate) const FIRST_RESERVED: usize = FIRST_SOCKET - MAX_SOCKETS;

/// A bound, not yet running echo server: one poll loop.
pub struct Server {
    poll: Poll,
    sockets: Vec<Listener>,
    conns: Slab<Connection>,
    signals: Option<Signals>,
    waker: Arc<Waker>,
    requests: Arc<Requests>,
    /// Requests already acted on: (stops, stats).
    seen: (u32, u32),
    /// Other loops of the same group, stopped when this one stops.
    followers: Vec<Handle>,
    /// Names this loop in logs when there are several.
    label: String,
    /// This loop's place in its group (0: the leader, or the only loop).
    index: usize,
    /// Whether its sockets were bound with `SO_REUSEPORT`.
    reuse_port: bool,
    /// The whole server's limits and counts, shared by every loop.
    shared: Arc<Shared>,
    limits: Limits,
    shutdown_timeout: Duration,
    idle: Option<IdleTimers>,
    stats_interval: Option<Duration>,
    next_stats: Option<Instant>,
    /// The loop's clock starts here; [`Tick`]s count from it.
    started: Instant,
    /// The next connection's serial number.
    next_id: u32,
    /// The rate limits on UDP replies (see [`udp::ReplyLimit`]).
    udp_limit: udp::ReplyLimit,
    /// Set while `accept` is failing for want of resources.
    accept_paused_until: Option<Instant>,
    accept_warning: RateLimit,
    limit_warning: RateLimit,
    memory_warning: RateLimit,
    /// Sources to serve again before blocking: they used their budget.
    ready: Vec<Token>,
    /// Connections that stopped reading for want of memory, oldest first:
    /// they go back on the ready list as memory is freed.
    starved: VecDeque<Token>,
    /// The memory budget's release count when `starved` was last looked at.
    frees_seen: u64,
    /// While `starved` is not empty: when to give its oldest another pass
    /// even if no memory was freed (their kernel queues may have drained,
    /// or another loop freed memory; neither raises an event here).
    memory_retry: Option<Instant>,
    /// The most the buffers held since the heap was last trimmed.
    trim_peak: usize,
    /// Connections closed this turn, removed from the slab at its end.
    closed: Vec<usize>,
    /// Serving, or draining toward a deadline.
    phase: Phase,
    summary: Summary,
}

/// Where the loop is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepting and echoing.
    Serving,
    /// A stop was asked for: the listeners are closed and the connections
    /// finish what they owe until `deadline`, when the rest are closed.
    Draining {
        /// When the drain ends, whatever is left.
        deadline: Instant,
    },
}

impl Server {
    /// Opens every socket in `config` and prepares one loop that holds the
    /// whole server's limits. (`config.threads` is for
    /// [`crate::group::Group`], which runs several.)
    ///
    /// Each failure names the address and says what to do about it.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        let shared = Arc::new(shared_limits(&config, 1)?);
        let sockets = open_sockets(&config, config.reuse_port)?;
        Server::new(&config, sockets, shared, 0)
    }

    /// Prepares loop `index` of a server on already open `sockets`, under
    /// the server's `shared` limits.
    pub(crate) fn new(
        config: &Config,
        mut sockets: Vec<Listener>,
        shared: Arc<Shared>,
        index: usize,
    ) -> Result<Server, StartError> {
        let poll = Poll::new().map_err(|e| StartError::Setup("poll", e))?;
        let waker =
            Waker::new(poll.registry(), WAKER).map_err(|e| StartError::Setup("waker", e))?;
        for (i, l) in sockets.iter_mut().enumerate() {
            let token = Token(FIRST_SOCKET - i);
            let registered = match &mut l.socket {
                Socket::Tcp(s) => poll.registry().register(s, token, Interest::READABLE),
                Socket::Udp(s) => {
                    if let Err(e) = udp::count_overflow(s) {
                        let e = crate::error::describe(&e);
                        log::warn!("udp://{}: kernel drops will not be counted: {e}", l.addr);
                    }
                    poll.registry().register(s, token, Interest::READABLE)
                }
            };
            registered.map_err(|source| StartError::Listen {
                addr: l.addr,
                source,
            })?;
        }

        let signals = if config.handle_signals && index == 0 {
            // Every signal whose default action would end the process
            // without a drain or a summary, and that an operator may send.
            let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM])
                .map_err(|e| StartError::Setup("signal pipe", e))?;
            poll.registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)
                .map_err(|e| StartError::Setup("signal pipe", e))?;
            Some(signals)
        } else {
            None
        };

        // A loop may hold every connection of the server: the kernel hashes
        // or hands them out unevenly.
        let max_connections = shared.max_connections();
        // The total UDP rate is the server's: each loop takes its share.
        // With SO_REUSEPORT each loop has UDP sockets of its own and takes
        // a share of the total; otherwise the first loop alone serves UDP.
        let udp_rate = if config.reuse_port && shared.loops() > 1 {
            (config.udp_rate / shared.loops() as u32).max(1)
        } else {
            config.udp_rate
        };
        let udp_limit = udp::ReplyLimit::new(config.udp_rate_per_source, udp_rate);
        Ok(Server {
            poll,
            sockets,
            signals,
            waker: Arc::new(waker),
            requests: Arc::default(),
            seen: (0, 0),
            followers: Vec::new(),
            label: String::new(),
            index,
            reuse_port: config.reuse_port,
            limits: Limits {
                max_buffer: config.max_buffer,
                budget: BUDGET,
                memory: Arc::clone(&shared.memory),
            },
            shared,
            shutdown_timeout: config.shutdown_timeout,
            idle: config.idle_timeout.map(IdleTimers::new),
            stats_interval: config.stats_interval,
            next_stats: None,
            started: Instant::now(),
            next_id: 0,
            udp_limit,
            accept_paused_until: None,
            accept_warning: RateLimit::new(WARN_EVERY),
            limit_warning: RateLimit::new(WARN_EVERY),
            memory_warning: RateLimit::new(WARN_EVERY),
            // Room for every connection up front: the table never moves, and
            // pages no connection has touched cost no resident memory.
            conns: Slab::with_capacity(max_connections),
            ready: Vec::new(),
            starved: VecDeque::new(),
            frees_seen: 0,
            memory_retry: None,
            trim_peak: 0,
            closed: Vec::new(),
            phase: Phase::Serving,
            summary: Summary::default(),
        })
    }

    /// Whether the sockets were bound with `SO_REUSEPORT`.
    pub(crate) fn reuses_port(&self) -> bool {
        self.reuse_port
    }

    /// The most connections the server holds at once (in all its loops).
    pub fn max_connections(&self) -> usize {
        self.shared.max_connections()
    }

    /// Runs the loop on this thread until a stop request or signal, then
    /// drains and returns the totals.
    ///
    /// Only a failure of `poll` itself ends the loop with an error: anything
    /// that goes wrong with one connection closes that connection alone.
    pub fn run(mut self) -> io::Result<Summary> {
        self.started = Instant::now();
        self.next_stats = self.stats_interval.map(|every| self.started + every);
        let mut events = Events::with_capacity(EVENTS);
        // The one read buffer every TCP echo passes through. It lives here,
        // as a local of the loop, rather than as a field: the hot path then
        // reaches it without going through `self`.
        // Never larger than `max_buffer`, so that one read into it cannot
        // exceed what a connection may owe.
        let mut buf = vec![0u8; READ_BUF.min(self.limits.max_buffer)];
        // Datagrams need room for the largest; only allocated if served.
        let mut dgram = if self.udp_addrs().is_empty() {
            Vec::new()
        } else {
            vec![0u8; udp::DATAGRAM_BUF]
        };

        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                // A signal interrupted the wait; its handler has already
                // written to the signal pipe, which we will see as an event.
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Give back what this loop's connections hold of the whole
                // server's limits: the other loops of a group go on.
                self.abort_all();
                self.end_turn();
                return Err(e);
            }

            // Every event is a hint, never a promise: a readable event may
            // find nothing to read, a token may name a connection closed
            // earlier in this turn. Each handler acts only on what its system
            // calls return, so a stale or spurious event ends in `WouldBlock`
            // and nothing else.
            for event in events.iter() {
                match event.token() {
                    Token(key) if key < FIRST_RESERVED => {
                        self.connection_event(key, event, &mut buf)
                    }
                    WAKER => self.handle_requests(&mut buf),
                    SIGNALS => self.signal_event(&mut buf),
                    token => self.socket_event(token, &mut dgram),
                }
            }

            self.serve_ready(&mut buf, &mut dgram);
            self.fire_timers(&mut buf);
            self.end_turn();

            if let Phase::Draining { deadline } = self.phase {
                if self.conns.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    self.abort_all();
                    self.end_turn();
                    break;
                }
            }
        }

        self.summary.elapsed = self.started.elapsed();
        self.summary.log_dropped = crate::logging::dropped();
        Ok(self.summary)
    }

    /// How long `poll` may block: not at all while the ready list has work,
    /// else until the earliest timer, else forever. Timers need no thread
    /// of their own: the kernel's wait is the timer.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        if self.phase == Phase::Serving
            && self.accept_paused_until.is_none()
            && self.idle.is_none()
            && self.next_stats.is_none()
            && self.starved.is_empty()
        {
            return None;
        }
        let idle = self.idle.as_ref().and_then(IdleTimers::next_deadline);
        [
            match self.phase {
                Phase::Serving => None,
                Phase::Draining { deadline } => Some(deadline),
            },
            self.accept_paused_until,
            idle,
            self.next_stats,
            self.memory_retry,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// The loop's clock, for connections that record their last activity.
    /// Read only when something needs it: idle timers are on.
    fn now_tick(&self) -> Tick {
        if self.idle.is_some() {
            self.tick(Instant::now())
        } else {
            0
        }
    }

    fn tick(&self, at: Instant) -> Tick {
        at.duration_since(self.started).as_millis() as Tick
    }

    /// Runs the timers that are due: a paused accept, idle connections,
    /// periodic stats. (Connections waiting for memory are looked at in
    /// [`Server::end_turn`], which follows.)
    fn fire_timers(&mut self, buf: &mut [u8]) {
        if self.accept_paused_until.is_none() && self.idle.is_none() && self.next_stats.is_none() {
            return;
        }
        let now = Instant::now();
        if matches!(self.accept_paused_until, Some(at) if at <= now) {
            self.resume_accepting();
        }
        if let (Some(at), Some(every)) = (self.next_stats, self.stats_interval) {
            if at <= now {
                self.log_stats();
                self.next_stats = Some(now + every);
            }
        }
        self.expire_idle(now, buf);
    }

    /// Closes the connections whose idle deadline has come.
    ///
    /// "Idle" is judged by what the socket holds, not only by the clock: a
    /// process that was stopped (SIGSTOP, a paused VM) wakes to find every
    /// deadline past, with the events of the connections that kept sending
    /// still queued beyond this turn's batch. So a connection is given one
    /// pass first, and only one whose pass moves no byte is closed.
    fn expire_idle(&mut self, now: Instant, buf: &mut [u8]) {
        let tick = self.tick(now);
        let Some(idle) = self.idle.as_mut() else {
            return;
        };
        let conns = &self.conns;
        let expired = idle.expired(now, |key, id| {
            // The entry may outlive its connection, and the key may now hold
            // another: only the serial number tells them apart.
            let conn = conns.get(key).filter(|c| c.id() == id)?;
            (conn.state() != State::Closed)
                .then(|| Duration::from_millis(u64::from(tick.wrapping_sub(conn.last_active()))))
        });
        for key in expired {
            let conn = &mut self.conns[key];
            let next = conn.drive(buf, Wake::again(tick), &self.limits);
            let moved = conn.last_active() == tick;
            let (id, open) = (conn.id(), conn.state() != State::Closed);
            self.after_pass(key, next);
            if moved && open {
                log::trace!("token {key}: idle deadline passed, but it had bytes waiting");
                if let Some(idle) = self.idle.as_mut() {
                    idle.start(key, id, now);
                }
            } else if open {
                self.summary.idle_closed += 1;
                let next = self.conns[key].abort(Reason::Idle);
                self.after_pass(key, next);
            }
        }
    }

    /// Readiness on one connection: drive it through one pass.
    fn connection_event(&mut self, key: usize, event: &Event, buf: &mut [u8]) {
        let now = self.now_tick();
        // No connection: the event is stale (a connection closed in an
        // earlier turn). A closed one of this turn is still here, marked
        // `Closed`, and its pass does nothing.
        let Some(conn) = self.conns.get_mut(key) else {
            log::trace!("token {key}: no connection, event ignored");
            return;
        };
        log::trace!(
            "token {key}: event{}{}{}{}",
            if event.is_readable() { " readable" } else { "" },
            if event.is_writable() { " writable" } else { "" },
            if event.is_read_closed() {
                " read-closed"
            } else {
                ""
            },
            if event.is_error() { " error" } else { "" },
        );
        // An error or hang-up is a reason to read: the read reports it. With
        // either, or urgent data, a short read does not prove the queue empty.
        // (`|`, not `||`: the flags are bits of one word, tested without
        // branching.)
        let closed_hint = event.is_read_closed() | event.is_error() | event.is_priority();
        let wake = Wake {
            readable: event.is_readable() | closed_hint,
            short_read_is_empty: SHORT_READ_PROVES_EMPTY & !closed_hint,
            now,
        };
        let next = conn.on_event(buf, wake, &self.limits);
        self.after_pass(key, next);
    }

    /// Readiness on a listening socket: accept, or echo datagrams.
    fn socket_event(&mut self, token: Token, dgram: &mut [u8]) {
        let i = FIRST_SOCKET - token.0;
        match self.sockets.get_mut(i) {
            Some(Listener {
                socket: Socket::Tcp(_),
                ..
            }) => self.accept(i),
            Some(Listener {
                socket: Socket::Udp(socket),
                addr,
                drops_seen,
                ..
            }) => {
                // One clock reading for the pass's rate limits.
                let now = self.started.elapsed().as_nanos() as u64;
                let budget_spent = udp::echo_pass(
                    socket,
                    *addr,
                    &mut self.udp_limit,
                    now,
                    drops_seen,
                    dgram,
                    &mut self.summary.udp,
                );
                if budget_spent {
                    self.ready.push(token);
                }
            }
            // Closed by a stop earlier in this turn.
            None => {}
        }
    }

    /// Serves the sources that had work left when their pass ran out of
    /// budget (the tour, section 2).
    fn serve_ready(&mut self, buf: &mut [u8], dgram: &mut [u8]) {
        if self.ready.is_empty() {
            return;
        }
        let now = self.now_tick();
        let mut ready = std::mem::take(&mut self.ready);
        // A source can be queued twice (by the last turn and by an event of
        // this one); one pass is enough.
        ready.sort_unstable();
        ready.dedup();
        for &token in &ready {
            if token.0 >= FIRST_RESERVED {
                self.socket_event(token, dgram);
                continue;
            }
            let Some(conn) = self.conns.get_mut(token.0) else {
                continue;
            };
            if conn.state() == State::Closed {
                continue;
            }
            log::trace!("token {}: again, from the ready list", token.0);
            let next = conn.drive(buf, Wake::again(now), &self.limits);
            self.after_pass(token.0, next);
        }
    }

    /// Acts on what a pass over connection `key` decided.
    #[inline]
    fn after_pass(&mut self, key: usize, next: Next) {
        match next {
            Next::Wait => {}
            Next::Again if self.conns[key].starved() => self.await_memory(key),
            Next::Again => self.ready.push(Token(key)),
            Next::Close(reason) => self.closed(key, reason),
        }
    }

    /// Books a connection that just closed; the slab entry goes at the end
    /// of the turn.
    #[cold]
    fn closed(&mut self, key: usize, reason: Reason) {
        let conn = &self.conns[key];
        self.summary.closed += 1;
        self.summary
            .count_bytes(conn.speaks(), conn.bytes_in(), conn.bytes_out());
        self.shared.release(conn.peer().ip());
        if matches!(&reason, Reason::Error(e) if e.kind() == io::ErrorKind::OutOfMemory) {
            self.summary.out_of_memory += 1;
            log::warn!("{}: closed: {reason} (the allocator refused)", conn.peer());
        }
        if log::log_enabled!(log::Level::Debug) {
            let unsent = conn.owed();
            let lifetime = self.tick(Instant::now()).wrapping_sub(conn.opened());
            log::debug!(
                "{}: closed ({}): echoed {} bytes in {:.3}s{}",
                conn.peer(),
                reason,
                conn.bytes_out(),
                f64::from(lifetime) / 1000.0,
                if unsent > 0 {
                    format!(", {unsent} bytes unsent")
                } else {
                    String::new()
                },
            );
        }
        self.conns[key].free_buffer(&self.limits.memory);
        self.closed.push(key);
    }

    /// Removes the connections closed during this turn. Dropping one closes
    /// its socket, which also takes it out of the poll. Freed descriptors
    /// are a chance to resume a paused accept.
    fn end_turn(&mut self) {
        if !self.starved.is_empty() {
            self.resume_starved();
        }
        if self.closed.is_empty() {
            return;
        }
        self.trim_heap();
        let conns = &self.conns;
        self.ready
            .retain(|t| t.0 >= FIRST_RESERVED || conns[t.0].state() != State::Closed);
        for key in self.closed.drain(..) {
            self.conns.remove(key);
        }
        if let Some(idle) = self.idle.as_mut() {
            // Closed connections leave their idle entries behind; sweep them
            // once they outnumber the live ones, so churn cannot grow the
            // queue without bound.
            if idle.len() > 2 * self.conns.len() + 1024 {
                let conns = &self.conns;
                idle.retain(|key, id| conns.get(key).is_some_and(|c| c.id() == id));
            }
        }
        if self.accept_paused_until.is_some() {
            self.resume_accepting();
        }
    }
}

/// The whole server's limits for `loops` loops: `config`'s, checked, with
/// the connection limit lowered to what the descriptors allow.
pub(crate) fn shared_limits(config: &Config, loops: usize) -> Result<Shared, StartError> {
    config.validate()?;
    let fd_limit = net::fd_limit().map_err(|e| StartError::Setup("descriptor limit", e))?;
    let (max_connections, bound_by) = config.connection_budget(fd_limit, loops)?;
    let read_size = READ_BUF.min(config.max_buffer);
    Ok(Shared::new(
        max_connections,
        bound_by,
        config.max_connections_per_ip,
        config.ipv6_prefix,
        Budget::new(config.max_memory, read_size),
        loops,
    ))
}
