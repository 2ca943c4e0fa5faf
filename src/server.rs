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
//! 3. serves the ready list: connections (and UDP sockets) that used their
//!    budget and still have bytes waiting. No event will come for those
//!    bytes: the poll is edge-triggered and their edge has passed;
//! 4. fires the timers that are due (idle connections, a paused accept,
//!    periodic stats, the shutdown deadline). They all come from `poll`'s
//!    timeout: no timer thread, no scan over every connection;
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
use crate::stats::Summary;
use crate::systemd::{self, Inherited, Kind};
use crate::timers::{IdleTimers, RateLimit, Tick};
use crate::udp;

/// The shared read buffer's size. Every TCP echo passes through it. 32 KiB
/// moves bulk streams faster than 64 KiB on Linux loopback and keeps a pass
/// short.
pub(crate) const READ_BUF: usize = 32 * 1024;

/// How many bytes one pass may read from one connection before the loop
/// moves on to the others.
pub(crate) const BUDGET: usize = 256 * 1024;

/// Events taken from the kernel per `poll`.
const EVENTS: usize = 1024;

/// The most connections one pass accepts from one listener before the loop
/// serves the others; the listener goes on the ready list for the rest.
pub(crate) const ACCEPT_BATCH: usize = 64;

/// While connections wait for memory that another loop may free, how often
/// to look.
const MEMORY_RETRY: Duration = Duration::from_millis(10);

/// Give freed heap back to the system once the buffers' memory has fallen
/// this far below its last peak (see [`Server::end_turn`]).
const TRIM_STEP: usize = 8 << 20;

/// While `accept` fails for want of descriptors, how often to try again.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The shortest time between two warnings of the same kind.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Descriptors kept back from the connection budget: standard streams, the
/// poll, the waker, the signal pipe, and some slack for the process.
const RESERVED_FDS: u64 = 32;

/// What a connection is registered for. On Linux also urgent data
/// (EPOLLPRI): a read stops short at the urgent mark with more bytes behind
/// it, so a short read proves nothing then, and the event must say so.
#[cfg(any(target_os = "linux", target_os = "android"))]
const CONNECTION_INTEREST: Interest = Interest::READABLE
    .add(Interest::WRITABLE)
    .add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const CONNECTION_INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// A [`Handle`] has a request (stop, or log stats).
const WAKER: Token = Token(usize::MAX);
/// A signal arrived (through signal-hook's self-pipe); see `signal_event`.
const SIGNALS: Token = Token(usize::MAX - 1);
/// Listening socket `i` (TCP or UDP) has token `FIRST_SOCKET - i`.
const FIRST_SOCKET: usize = usize::MAX - 2;
/// At most this many listening sockets; tokens below their range are keys.
const MAX_SOCKETS: usize = 1024;
/// Slab keys, and so connection tokens, stay below this.
const FIRST_RESERVED: usize = FIRST_SOCKET - MAX_SOCKETS;

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
    /// Set once a stop is under way: when the drain must end.
    deadline: Option<Instant>,
    summary: Summary,
}

/// A listening socket: TCP connections to accept or UDP datagrams to echo.
pub(crate) struct Listener {
    socket: Socket,
    addr: SocketAddr,
    inherited: bool,
    /// For UDP, the kernel's count of dropped datagrams as last seen, by
    /// any loop serving this socket.
    drops_seen: Arc<AtomicU32>,
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    fn describe(&self) -> String {
        let scheme = match self.socket {
            Socket::Tcp(_) => "tcp",
            Socket::Udp(_) => "udp",
        };
        let from = if self.inherited {
            " (socket activation)"
        } else {
            ""
        };
        format!("{scheme}://{}{from}", self.addr)
    }
}

/// What handles have asked of a loop, counted so none is lost or repeated.
#[derive(Default)]
struct Requests {
    stops: AtomicU32,
    stats: AtomicU32,
}

/// Asks a running [`Server`] to stop, or to log its stats, from any thread.
#[derive(Clone)]
pub struct Handle {
    waker: Arc<Waker>,
    requests: Arc<Requests>,
}

impl Handle {
    /// Asks the server to stop: it stops accepting, lets owed bytes drain
    /// for at most the shutdown timeout, and returns from [`Server::run`].
    /// A second request closes every connection at once.
    pub fn stop(&self) -> io::Result<()> {
        self.requests.stops.fetch_add(1, Ordering::SeqCst);
        self.waker.wake()
    }

    /// Asks the server to log its counters at `info`.
    pub fn log_stats(&self) -> io::Result<()> {
        self.requests.stats.fetch_add(1, Ordering::SeqCst);
        self.waker.wake()
    }
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
        let udp_limit = udp::ReplyLimit::new(
            config.udp_rate_per_source,
            (config.udp_rate as usize).div_ceil(shared.loops()) as u32,
        );
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
            deadline: None,
            summary: Summary::default(),
        })
    }

    /// Copies of this loop's sockets, for another loop of the same server
    /// to serve beside it (without `SO_REUSEPORT`).
    pub(crate) fn share_sockets(&self) -> Result<Vec<Listener>, StartError> {
        self.sockets.iter().map(Listener::try_clone).collect()
    }

    /// The TCP addresses actually bound, in order (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(|s| matches!(s, Socket::Tcp(_)))
    }

    /// The UDP addresses actually bound, in order (port 0 resolved).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(|s| matches!(s, Socket::Udp(_)))
    }

    fn addrs_of(&self, kind: impl Fn(&Socket) -> bool) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter(|l| kind(&l.socket))
            .map(|l| l.addr)
            .collect()
    }

    /// The TCP addresses this loop bound itself (not inherited ones).
    pub(crate) fn bound_tcp_addrs(&self) -> Vec<SocketAddr> {
        let own = |s: &Socket| matches!(s, Socket::Tcp(_));
        self.sockets
            .iter()
            .filter(|l| !l.inherited && own(&l.socket))
            .map(|l| l.addr)
            .collect()
    }

    /// The UDP addresses this loop bound itself (not inherited ones).
    pub(crate) fn bound_udp_addrs(&self) -> Vec<SocketAddr> {
        let own = |s: &Socket| matches!(s, Socket::Udp(_));
        self.sockets
            .iter()
            .filter(|l| !l.inherited && own(&l.socket))
            .map(|l| l.addr)
            .collect()
    }

    /// Whether the sockets were bound with `SO_REUSEPORT`.
    pub(crate) fn reuses_port(&self) -> bool {
        self.reuse_port
    }

    /// The most connections the server holds at once (in all its loops).
    pub fn max_connections(&self) -> usize {
        self.shared.max_connections()
    }

    /// Logs, at `info`, one `listening on` line per socket and the
    /// connection budget. The binaries call it once the sockets are bound.
    pub fn announce(&self) {
        for l in &self.sockets {
            log::info!("listening on {}", l.describe());
        }
        let bound = match self.shared.bound_by() {
            Bound::Flag => "--max-connections",
            Bound::Descriptors(_) => "the descriptor budget",
        };
        log::info!(
            "serving at most {} connections (set by {bound}; open-file limit {}) and {} \
             bytes of buffers (--max-memory)",
            self.shared.max_connections(),
            net::fd_limit().map_or("unknown".into(), |n| n.to_string()),
            self.limits.memory.max(),
        );
    }

    /// A handle that stops this server from another thread.
    pub fn handle(&self) -> Handle {
        Handle {
            waker: Arc::clone(&self.waker),
            requests: Arc::clone(&self.requests),
        }
    }

    /// Makes this loop one of a group: it is named `label` in logs, and when
    /// it stops it stops `followers` too.
    pub(crate) fn join_group(&mut self, label: String, followers: Vec<Handle>) {
        self.label = label;
        self.followers = followers;
    }

    /// Runs the server on a new thread (for tests and benches). The returned
    /// [`Running`] stops it when asked, or when dropped.
    pub fn spawn(self) -> io::Result<Running> {
        let addrs = self.local_addrs();
        let udp_addrs = self.udp_addrs();
        let handle = self.handle();
        let thread = thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || self.run())?;
        Ok(Running {
            addrs,
            udp_addrs,
            handle,
            thread: Some(thread),
        })
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

            if let Some(deadline) = self.deadline {
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
        if self.deadline.is_none()
            && self.accept_paused_until.is_none()
            && self.idle.is_none()
            && self.next_stats.is_none()
            && self.starved.is_empty()
        {
            return None;
        }
        let idle = self.idle.as_ref().and_then(IdleTimers::next_deadline);
        [
            self.deadline,
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
            short_read_is_empty: !closed_hint,
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
    /// budget. No event will come for that work, so the loop must go back.
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
            Next::Again => self.ready.push(Token(key)),
            Next::AwaitMemory => self.await_memory(key),
            Next::Close(reason) => self.closed(key, reason),
        }
    }

    /// Puts a connection that has no memory to read into on the list that
    /// [`Server::resume_starved`] serves as memory is freed.
    #[cold]
    fn await_memory(&mut self, key: usize) {
        if self.conns[key].mark_awaiting_memory() {
            self.starved.push_back(Token(key));
        }
        if self.memory_retry.is_none() {
            self.memory_retry = Some(Instant::now() + MEMORY_RETRY);
        }
        if self.memory_warning.allow(Instant::now()) {
            log::warn!(
                "{}buffers hold {} bytes, the most allowed (--max-memory): connections \
                 that owe bytes stop reading until memory is freed",
                self.label,
                self.limits.memory.held()
            );
        }
    }

    /// Gives connections waiting for memory another pass, oldest first: as
    /// many as the memory freed may serve, or, every [`MEMORY_RETRY`], up
    /// to [`ACCEPT_BATCH`] of them whatever was freed. No event would wake
    /// them: the bytes they left in their sockets raised theirs long ago.
    fn resume_starved(&mut self) {
        let memory = &self.limits.memory;
        let frees = memory.frees();
        let mut room = if frees != self.frees_seen {
            self.frees_seen = frees;
            memory.reserve()
        } else {
            0
        };
        let now = Instant::now();
        if matches!(self.memory_retry, Some(at) if at <= now) {
            room = room.max(ACCEPT_BATCH * memory.read_size());
            self.memory_retry = Some(now + MEMORY_RETRY);
        }
        while room > 0 {
            let Some(token) = self.starved.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.get_mut(token.0) else {
                continue;
            };
            conn.unmark_awaiting_memory();
            if conn.state() != State::Closed {
                self.ready.push(token);
                room = room.saturating_sub(memory.read_size());
            }
        }
        if self.starved.is_empty() {
            self.memory_retry = None;
        }
    }

    /// Books a connection that just closed; the slab entry goes at the end
    /// of the turn.
    #[cold]
    fn closed(&mut self, key: usize, reason: Reason) {
        let conn = &self.conns[key];
        self.summary.closed += 1;
        self.summary.bytes += conn.bytes_out();
        self.summary.bytes_in += conn.bytes_in();
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

    /// Gives freed heap memory back to the system after a burst.
    ///
    /// glibc's `free` keeps what it frees for later allocations and returns
    /// memory to the system only from the top of its heap, so after
    /// thousands of slow readers leave, their buffers would stay resident
    /// for the life of the process. When the buffers' memory has fallen
    /// [`TRIM_STEP`] below its peak, `malloc_trim` returns the free pages.
    fn trim_heap(&mut self) {
        let held = self.limits.memory.held();
        if held > self.trim_peak {
            self.trim_peak = held;
        } else if self.trim_peak - held >= TRIM_STEP {
            self.trim_peak = held;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only releases free memory of the heap.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }

    /// Tries every listener again after `accept` ran out of resources. Edge-
    /// triggered: the connections waiting in the backlog raised their event
    /// already, so only we know to come back for them.
    fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        for i in 0..self.sockets.len() {
            self.accept(i);
            if self.accept_paused_until.is_some() {
                return;
            }
        }
    }

    /// Accepts pending connections on listener `i` until `WouldBlock`, or
    /// [`ACCEPT_BATCH`] of them: then the listener goes on the ready list,
    /// so that the loop serves (and reaps) what it accepted before it
    /// takes more.
    fn accept(&mut self, i: usize) {
        if self.accept_paused_until.is_some() {
            // Out of descriptors a moment ago: the retry timer, or the next
            // connection to close, comes back for this backlog.
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            // The listener may be gone: a stop earlier in this turn closed it.
            let Some(Listener {
                socket: Socket::Tcp(listener),
                addr,
                ..
            }) = self.sockets.get(i)
            else {
                return;
            };
            let addr = *addr;
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                // The backlog is empty: wait for the next event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up between its SYN and our accept: that
                // connection is gone, the others in the backlog are not.
                Err(e) if is_per_connection(&e) => {
                    log::debug!("accept on {addr}: {}", describe(&e));
                }
                // Out of descriptors or memory (or anything unforeseen): pause
                // rather than spin on an error that will not go away by
                // itself, and keep serving the connections we have.
                Err(e) => {
                    self.summary.accept_errors += 1;
                    let now = Instant::now();
                    if self.accept_warning.allow(now) {
                        let hint = if net::is_resource_exhaustion(&e) {
                            " (raise ulimit -n or lower --max-connections)"
                        } else {
                            ""
                        };
                        log::warn!(
                            "{}accept on {addr}: {}{hint}; pausing accepts, retrying every \
                             {ACCEPT_RETRY:?} and when a connection closes",
                            self.label,
                            describe(&e),
                        );
                    }
                    self.accept_paused_until = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
        // The batch is spent and the backlog may hold more: no new event
        // will say so (edge-triggered).
        self.ready.push(Token(FIRST_SOCKET - i));
    }

    /// Registers a freshly accepted connection and gives it a slab slot, or
    /// closes it at once if a connection limit says no.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        // A client that connected and reset before we got to it (a connect-
        // and-reset storm is made of these) is gone already: the reset is
        // waiting as the socket's error. Drop it before it takes a slot.
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.summary.reset_early += 1;
                log::debug!("{peer}: gone before it was served: {}", describe(&e));
                return;
            }
        }
        if let Err(refusal) = self.shared.admit(peer.ip()) {
            self.summary.rejected += 1;
            if self.limit_warning.allow(Instant::now()) {
                log::warn!(
                    "{}{peer}: refused: {refusal} (further refusals are counted, \
                     not logged, for {WARN_EVERY:?})",
                    self.label
                );
            } else {
                log::debug!("{peer}: refused: {refusal}");
            }
            // Dropping the stream closes it: the client reads EOF at once.
            return;
        }
        // Echoes are small and latency-bound: do not let Nagle hold them back.
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{peer}: TCP_NODELAY: {}", describe(&e));
        }
        // TCP urgent data stays in the stream (SO_OOBINLINE), so it is echoed
        // like any other byte instead of being set aside where no read sees it.
        if let Err(e) = socket2::SockRef::from(&stream).set_out_of_band_inline(true) {
            log::debug!("{peer}: SO_OOBINLINE: {}", describe(&e));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let now = Instant::now();
        let opened = self.tick(now);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Registered once for both directions, never again: the hot path
        // makes no `epoll_ctl` call. Readiness we do not need right now is
        // just a hint we ignore.
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), CONNECTION_INTEREST)
        {
            self.shared.release(peer.ip());
            log::debug!("{peer}: cannot register: {}", describe(&e));
            return;
        }
        entry.insert(Connection::new(Tcp(stream), peer, id, opened));
        if let Some(idle) = self.idle.as_mut() {
            idle.start(key, id, now);
        }
        self.summary.connections += 1;
        log::debug!("{peer}: connected (token {key})");
    }

    /// Acts on new requests from handles: log stats, stop, stop now.
    fn handle_requests(&mut self, buf: &mut [u8]) {
        let stats = self.requests.stats.load(Ordering::SeqCst);
        if stats != self.seen.1 {
            self.seen.1 = stats;
            self.log_stats();
        }
        // Two requests can arrive before the loop wakes once: act on each.
        let stops = self.requests.stops.load(Ordering::SeqCst);
        let new = stops.wrapping_sub(self.seen.0).min(2);
        self.seen.0 = stops;
        for _ in 0..new {
            self.stop_requested("stop requested", buf);
        }
    }

    /// Reads the signal pipe and acts on every signal in it.
    ///
    /// SIGINT and SIGTERM stop (a second one closes everything). SIGHUP and
    /// SIGUSR1 log the counters: `kill -HUP` is how daemons are asked to
    /// reload, and there is nothing else to reload. SIGUSR2 and SIGALRM mean
    /// nothing here; caught, they cannot end the process by their default
    /// action.
    fn signal_event(&mut self, buf: &mut [u8]) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let arrived: Vec<i32> = signals.pending().collect();
        for signal in arrived {
            match signal {
                SIGHUP | SIGUSR1 => {
                    self.shared.begin_stats_round();
                    self.log_stats();
                    for f in &self.followers {
                        let _ = f.log_stats();
                    }
                }
                SIGINT => self.stop_requested("SIGINT", buf),
                SIGTERM => self.stop_requested("SIGTERM", buf),
                SIGUSR2 | SIGALRM => {
                    let name = if signal == SIGUSR2 {
                        "SIGUSR2"
                    } else {
                        "SIGALRM"
                    };
                    log::info!(
                        "{}{name}: has no meaning for this server; ignored",
                        self.label
                    );
                }
                other => log::debug!("signal {other}: not handled; ignored"),
            }
        }
    }

    /// A stop was asked for: the first one drains, a second one closes all.
    fn stop_requested(&mut self, why: &str, buf: &mut [u8]) {
        if self.deadline.is_none() {
            self.begin_stop(why, buf);
        } else {
            log::warn!("{}{why} again: closing every connection now", self.label);
            self.abort_all();
            self.deadline = Some(Instant::now());
        }
        for f in &self.followers {
            let _ = f.stop();
        }
    }

    /// Stops accepting and lets every connection finish what it owes.
    fn begin_stop(&mut self, why: &str, buf: &mut [u8]) {
        if self.signals.is_some() {
            // Tell a service manager we are on our way out (no-op otherwise).
            if let Err(e) = systemd::notify("STOPPING=1") {
                log::warn!("cannot notify the service manager: {}", describe(&e));
            }
        }
        self.deadline = Some(Instant::now() + self.shutdown_timeout);
        self.accept_paused_until = None;
        // Dropping a listener closes it: new clients are refused from now on.
        // (A socket-activated listener is our copy of the service manager's
        // socket, which stays open: clients may still complete a handshake
        // there, and are refused when the process exits.)
        for mut l in self.sockets.drain(..) {
            let _ = match &mut l.socket {
                Socket::Tcp(s) => self.poll.registry().deregister(s),
                Socket::Udp(s) => self.poll.registry().deregister(s),
            };
        }
        self.ready.retain(|t| t.0 < FIRST_RESERVED);
        let now = self.now_tick();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        let owing = self.conns.iter().filter(|(_, c)| c.owed() > 0).count();
        log::info!(
            "{}{why}: stopping; {} connections open, {owing} still owed bytes \
             (draining for up to {:?})",
            self.label,
            keys.len(),
            self.shutdown_timeout
        );
        for key in keys {
            if self.conns[key].state() == State::Closed {
                continue;
            }
            let next = self.conns[key].stop(buf, now, &self.limits);
            self.after_pass(key, next);
        }
    }

    /// Closes every connection that is not closed yet.
    fn abort_all(&mut self) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state() != State::Closed)
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            let next = self.conns[key].abort(Reason::Shutdown);
            self.after_pass(key, next);
        }
    }

    /// The totals so far, live connections included.
    pub fn snapshot(&self) -> Summary {
        let mut now = self.summary.clone();
        // Connections closed this turn are in the totals already.
        let live = self
            .conns
            .iter()
            .filter(|(_, c)| c.state() != State::Closed);
        now.active = live.clone().count() as u64;
        for (_, c) in live {
            now.bytes += c.bytes_out();
            now.bytes_in += c.bytes_in();
        }
        now.elapsed = self.started.elapsed();
        now.log_dropped = crate::logging::dropped();
        now
    }

    /// Logs this loop's counters; the last loop of a group to do so for
    /// one request also logs the total of all of them.
    fn log_stats(&self) {
        let figures = self.snapshot();
        log::info!("{}stats: {figures}", self.label);
        if let Some(total) = self.shared.report_stats(self.index, figures) {
            log::info!("stats of all loops: {total}");
        }
    }
}

/// The whole server's limits for `loops` loops: `config`'s, checked, with
/// the connection limit lowered to what the descriptors allow.
pub(crate) fn shared_limits(config: &Config, loops: usize) -> Result<Shared, StartError> {
    config.validate()?;
    let socket_count = config.listen.len() + config.udp.len() + config.inherited.len();
    // Every connection holds a descriptor: never promise more than the
    // process may open.
    let fd_limit = net::fd_limit().map_err(|e| StartError::Setup("descriptor limit", e))?;
    // Each loop holds its own copy of every socket, a poll and a waker.
    let per_loop_fds = socket_count as u64 + 2;
    let fd_budget = fd_limit.saturating_sub(RESERVED_FDS + loops as u64 * per_loop_fds);
    let wanted = (config.max_connections as u64).min(FIRST_RESERVED as u64);
    let (max_connections, bound_by) = if fd_budget < wanted {
        (fd_budget, Bound::Descriptors(fd_limit))
    } else {
        (wanted, Bound::Flag)
    };
    if max_connections == 0 {
        return Err(StartError::Config(format!(
            "the open-file limit ({fd_limit}) leaves no descriptors for connections; \
             raise it with ulimit -n, or lower --max-connections"
        )));
    }
    let read_size = READ_BUF.min(config.max_buffer);
    Ok(Shared::new(
        max_connections as usize,
        bound_by,
        config.max_connections_per_ip,
        config.ipv6_prefix,
        Budget::new(config.max_memory, read_size),
        loops,
    ))
}

/// Opens every socket `config` names: the inherited ones first, then the
/// TCP and UDP addresses, with `SO_REUSEPORT` if `reuse_port`.
pub(crate) fn open_sockets(config: &Config, reuse_port: bool) -> Result<Vec<Listener>, StartError> {
    let socket_count = config.listen.len() + config.udp.len() + config.inherited.len();
    if socket_count == 0 {
        return Err(StartError::Config("nothing to listen on".into()));
    }
    if socket_count > MAX_SOCKETS {
        return Err(StartError::Config(format!(
            "at most {MAX_SOCKETS} listening sockets"
        )));
    }
    let options = SocketOptions {
        reuse_port,
        v6_only: config.v6_only,
        buffer: config.socket_buffer,
        keepalive: config.keepalive,
    };
    let mut sockets = Vec::with_capacity(socket_count);
    for &inherited in &config.inherited {
        sockets.push(adopt(inherited, options)?);
    }
    for &addr in &config.listen {
        let socket =
            net::bind_tcp(addr, options).map_err(|source| StartError::Listen { addr, source })?;
        sockets.push(listener(Socket::Tcp(socket), addr, false)?);
    }
    for &addr in &config.udp {
        let socket =
            net::bind_udp(addr, options).map_err(|source| StartError::Listen { addr, source })?;
        sockets.push(listener(Socket::Udp(socket), addr, false)?);
    }
    Ok(sockets)
}

impl Listener {
    /// A second descriptor for the same socket, for another loop to serve.
    fn try_clone(&self) -> Result<Listener, StartError> {
        let wrap = |source| StartError::Listen {
            addr: self.addr,
            source,
        };
        let socket = match &self.socket {
            Socket::Tcp(s) => {
                let copy = socket2::SockRef::from(s).try_clone().map_err(wrap)?;
                Socket::Tcp(TcpListener::from_std(copy.into()))
            }
            Socket::Udp(s) => {
                let copy = socket2::SockRef::from(s).try_clone().map_err(wrap)?;
                Socket::Udp(UdpSocket::from_std(copy.into()))
            }
        };
        Ok(Listener {
            socket,
            addr: self.addr,
            inherited: self.inherited,
            drops_seen: Arc::clone(&self.drops_seen),
        })
    }
}

/// Turns an inherited descriptor into a listening socket of ours, with
/// the buffer and keepalive options `options` asks for.
fn adopt(inherited: Inherited, options: SocketOptions) -> Result<Listener, StartError> {
    let wrap = |source| StartError::Setup("inherited socket", source);
    // SAFETY: `listen_fds` checked the descriptor is an open socket, and it
    // stays open for the life of the process; we take a duplicate of it.
    let fd: OwnedFd = unsafe { BorrowedFd::borrow_raw(inherited.fd) }
        .try_clone_to_owned()
        .map_err(wrap)?;
    net::tune(
        &socket2::SockRef::from(&fd),
        inherited.kind == Kind::Tcp,
        options,
    )
    .map_err(wrap)?;
    let socket = match inherited.kind {
        Kind::Tcp => {
            let std = std::net::TcpListener::from(fd);
            std.set_nonblocking(true).map_err(wrap)?;
            Socket::Tcp(TcpListener::from_std(std))
        }
        Kind::Udp => {
            let std = std::net::UdpSocket::from(fd);
            std.set_nonblocking(true).map_err(wrap)?;
            Socket::Udp(UdpSocket::from_std(std))
        }
    };
    let addr = match &socket {
        Socket::Tcp(s) => s.local_addr(),
        Socket::Udp(s) => s.local_addr(),
    }
    .map_err(wrap)?;
    Ok(Listener {
        socket,
        addr,
        inherited: true,
        drops_seen: Arc::default(),
    })
}

/// Wraps a freshly bound socket, reading back its real address.
fn listener(socket: Socket, asked: SocketAddr, inherited: bool) -> Result<Listener, StartError> {
    let addr = match &socket {
        Socket::Tcp(s) => s.local_addr(),
        Socket::Udp(s) => s.local_addr(),
    }
    .map_err(|source| StartError::Listen {
        addr: asked,
        source,
    })?;
    Ok(Listener {
        socket,
        addr,
        inherited,
        drops_seen: Arc::default(),
    })
}

/// Accept errors that concern one would-be connection, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    // accept(2) on Linux: these network errors of the new socket "should be
    // treated like EAGAIN by retrying".
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::PermissionDenied
    ) || matches!(
        e.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENETDOWN
                | libc::ENONET
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP
        )
    )
}

/// A server running on its own thread; see [`Server::spawn`].
pub struct Running {
    addrs: Vec<SocketAddr>,
    udp_addrs: Vec<SocketAddr>,
    handle: Handle,
    thread: Option<thread::JoinHandle<io::Result<Summary>>>,
}

impl Running {
    /// The first TCP address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every TCP address the server listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every UDP address the server serves.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// A handle that stops the server.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the server and waits for its totals.
    pub fn stop(mut self) -> io::Result<Summary> {
        self.handle.stop()?;
        let thread = self.thread.take().expect("stop runs once");
        thread
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.handle.stop();
            let _ = thread.join();
        }
    }
}
