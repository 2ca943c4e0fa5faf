//! The poll loop: accept, dispatch, shut down.
//!
//! One thread, one [`mio::Poll`], one [`Slab`] of connections. Each turn of
//! the loop:
//!
//! 1. blocks in `poll` until the kernel reports readiness (or a deadline
//!    passes, or there is work left over from the last turn);
//! 2. handles every event: accepts on a listener, drives a connection, reads
//!    the signal pipe, or notes a stop request from a [`Handle`];
//! 3. drives the connections on the ready list: those that used their
//!    budget last time and still have bytes waiting (no event will come for
//!    them: the poll is edge-triggered and their edge has passed);
//! 4. fires the timers that are due (idle connections, a paused accept,
//!    the shutdown deadline): they all come from `poll`'s timeout, with no
//!    thread and no scan over every connection;
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
//! Each connection may owe at most `max_buffer` bytes and move at most
//! [`BUDGET`] bytes per pass; the server holds at most `max_connections`
//! (never more than its descriptors allow), and at most
//! `max_connections_per_ip` from one address. When `accept` runs out of
//! descriptors the server pauses accepting and retries on a timer and
//! whenever a connection closes: it neither spins nor stops serving.
//!
//! Read next: [`crate::connection`] for what one pass over a connection does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::Config;
use crate::connection::{Connection, Limits, Next, Reason, State, Tick, Wake};
use crate::error::{describe, StartError};
use crate::net;
use crate::stats::Summary;

/// The shared read buffer's size. Every echo passes through it. 32 KiB moves
/// bulk streams faster than 64 KiB on Linux loopback and keeps a pass short.
pub const READ_BUF: usize = 32 * 1024;

/// How many bytes one pass may read from one connection before the loop
/// moves on to the others.
pub const BUDGET: usize = 256 * 1024;

/// Events taken from the kernel per `poll`.
const EVENTS: usize = 1024;

/// While `accept` fails for want of descriptors, how often to try again.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The shortest time between two warnings of the same kind.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Descriptors kept back from the connection budget: standard streams, the
/// poll, the waker, the signal pipe, and some slack for the process.
const RESERVED_FDS: u64 = 32;

/// A [`Handle`] asked the loop to stop.
const WAKER: Token = Token(usize::MAX);
/// SIGINT or SIGTERM arrived (through signal-hook's self-pipe).
const SIGNALS: Token = Token(usize::MAX - 1);
/// Listener `i` has token `FIRST_LISTENER - i`.
const FIRST_LISTENER: usize = usize::MAX - 2;
/// At most this many listeners; tokens below their range are slab keys.
const MAX_LISTENERS: usize = 1024;
/// Slab keys, and so connection tokens, stay below this.
const FIRST_RESERVED: usize = FIRST_LISTENER - MAX_LISTENERS;

/// A bound, not yet running echo server.
pub struct Server {
    poll: Poll,
    listeners: Vec<Listener>,
    conns: Slab<Connection>,
    signals: Option<Signals>,
    waker: Arc<Waker>,
    stop_requested: Arc<AtomicBool>,
    limits: Limits,
    shutdown_timeout: Duration,
    /// The most connections at once, after the descriptor budget.
    max_connections: usize,
    per_ip: Option<PerIp>,
    idle: Option<IdleTimers>,
    /// The loop's clock starts here; [`Tick`]s count from it.
    started: Instant,
    /// The next connection's serial number.
    next_id: u32,
    /// Set while `accept` is failing for want of resources.
    accept_paused_until: Option<Instant>,
    accept_warning: RateLimit,
    limit_warning: RateLimit,
    /// Connections to drive again before blocking: they used their budget.
    ready: Vec<usize>,
    /// Connections closed this turn, removed from the slab at its end.
    closed: Vec<usize>,
    /// Set once a stop is under way: when the drain must end.
    deadline: Option<Instant>,
    summary: Summary,
}

struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
}

/// Connections per client address, for `max_connections_per_ip`.
struct PerIp {
    limit: usize,
    open: HashMap<IpAddr, u32>,
}

/// Closes connections that have been quiet for `timeout`.
///
/// One entry per connection, ordered by when it would expire if nothing
/// happened: (deadline, slab key, serial number). When an entry comes due
/// the connection's real last activity decides: close it, or put the entry
/// back for the remainder. Traffic therefore never touches the queue.
struct IdleTimers {
    timeout: Duration,
    queue: BinaryHeap<Reverse<(Instant, usize, u32)>>,
}

/// Lets a warning through at most once per [`WARN_EVERY`].
#[derive(Default)]
struct RateLimit {
    last: Option<Instant>,
}

impl RateLimit {
    fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.duration_since(last) < WARN_EVERY => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// Stops a running [`Server`] from any thread.
#[derive(Clone)]
pub struct Handle {
    waker: Arc<Waker>,
    stop_requested: Arc<AtomicBool>,
}

impl Handle {
    /// Asks the server to stop: it stops accepting, lets owed bytes drain
    /// for at most the shutdown timeout, and returns from [`Server::run`].
    pub fn stop(&self) -> io::Result<()> {
        self.stop_requested.store(true, Ordering::SeqCst);
        self.waker.wake()
    }
}

impl Server {
    /// Opens every listener in `config` and prepares the loop.
    ///
    /// Each failure names the address and says what to do about it.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        if config.listen.is_empty() {
            return Err(StartError::Config("nothing to listen on".into()));
        }
        if config.listen.len() > MAX_LISTENERS {
            return Err(StartError::Config(format!(
                "at most {MAX_LISTENERS} listening addresses"
            )));
        }
        if config.max_buffer == 0 {
            return Err(StartError::Config("--max-buffer must be at least 1".into()));
        }
        if config.max_connections == 0 {
            return Err(StartError::Config(
                "--max-connections must be at least 1".into(),
            ));
        }
        if matches!(config.idle_timeout, Some(t) if t < Duration::from_millis(1) || t.as_secs() > 86_400 * 24)
        {
            return Err(StartError::Config(
                "--idle-timeout must be between 0.001 and 2073600 seconds (24 days)".into(),
            ));
        }
        // Every connection holds a descriptor: never promise more than the
        // process may open.
        let fd_limit = net::fd_limit().map_err(|e| StartError::Setup("descriptor limit", e))?;
        let fd_budget = fd_limit.saturating_sub(RESERVED_FDS + config.listen.len() as u64);
        let max_connections = (config.max_connections as u64)
            .min(fd_budget)
            .min(FIRST_RESERVED as u64) as usize;
        if max_connections == 0 {
            return Err(StartError::Config(format!(
                "the open-file limit ({fd_limit}) leaves no descriptors for connections; raise it with ulimit -n"
            )));
        }
        let poll = Poll::new().map_err(|e| StartError::Setup("poll", e))?;
        let waker =
            Waker::new(poll.registry(), WAKER).map_err(|e| StartError::Setup("waker", e))?;

        let mut listeners = Vec::with_capacity(config.listen.len());
        for (i, &addr) in config.listen.iter().enumerate() {
            let listen_error = |source| StartError::Listen { addr, source };
            let mut socket = net::bind_tcp(addr).map_err(listen_error)?;
            let bound = socket.local_addr().map_err(listen_error)?;
            poll.registry()
                .register(&mut socket, Token(FIRST_LISTENER - i), Interest::READABLE)
                .map_err(listen_error)?;
            listeners.push(Listener {
                socket,
                addr: bound,
            });
        }

        let signals = if config.handle_signals {
            let mut signals =
                Signals::new([SIGINT, SIGTERM]).map_err(|e| StartError::Setup("signal pipe", e))?;
            poll.registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)
                .map_err(|e| StartError::Setup("signal pipe", e))?;
            Some(signals)
        } else {
            None
        };

        Ok(Server {
            poll,
            listeners,
            signals,
            waker: Arc::new(waker),
            stop_requested: Arc::new(AtomicBool::new(false)),
            limits: Limits {
                max_buffer: config.max_buffer,
                budget: BUDGET,
            },
            shutdown_timeout: config.shutdown_timeout,
            max_connections,
            per_ip: (config.max_connections_per_ip > 0).then(|| PerIp {
                limit: config.max_connections_per_ip,
                open: HashMap::new(),
            }),
            idle: config.idle_timeout.map(|timeout| IdleTimers {
                timeout,
                queue: BinaryHeap::new(),
            }),
            started: Instant::now(),
            next_id: 0,
            accept_paused_until: None,
            accept_warning: RateLimit::default(),
            limit_warning: RateLimit::default(),
            // Room for every connection up front: the table never moves, and
            // pages no connection has touched cost no resident memory.
            conns: Slab::with_capacity(max_connections),
            ready: Vec::new(),
            closed: Vec::new(),
            deadline: None,
            summary: Summary::default(),
        })
    }

    /// The addresses actually bound, in the order given (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// A handle that stops this server from another thread.
    pub fn handle(&self) -> Handle {
        Handle {
            waker: Arc::clone(&self.waker),
            stop_requested: Arc::clone(&self.stop_requested),
        }
    }

    /// Runs the server on a new thread (for tests and benches). The returned
    /// [`Running`] stops it when asked, or when dropped.
    pub fn spawn(self) -> io::Result<Running> {
        let addrs = self.local_addrs();
        let handle = self.handle();
        let thread = thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || self.run())?;
        Ok(Running {
            addrs,
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
        for l in &self.listeners {
            log::info!("listening on tcp://{}", l.addr);
        }
        log::info!(
            "serving at most {} connections (open-file limit {})",
            self.max_connections,
            net::fd_limit().map_or("unknown".into(), |n| n.to_string()),
        );
        self.started = Instant::now();
        let mut events = Events::with_capacity(EVENTS);
        // The one read buffer every echo passes through. It lives here, as a
        // local of the loop, rather than as a field: the hot path then reaches
        // it without going through `self`.
        let mut buf = vec![0u8; READ_BUF];

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
                    WAKER => {
                        if self.stop_requested.load(Ordering::SeqCst) {
                            self.begin_stop("stop requested", &mut buf);
                        }
                    }
                    SIGNALS => self.signal_event(&mut buf),
                    Token(t) => self.accept(FIRST_LISTENER - t),
                }
            }

            self.serve_ready(&mut buf);
            self.fire_timers();
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
        log::info!("stopped: {}", self.summary);
        Ok(self.summary)
    }

    /// How long `poll` may block: not at all while connections wait on the
    /// ready list, else until the earliest timer, else forever. Timers need
    /// no thread of their own: the kernel's wait is the timer.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let idle = self
            .idle
            .as_ref()
            .and_then(|idle| idle.queue.peek())
            .map(|Reverse((deadline, _, _))| *deadline);
        [self.deadline, self.accept_paused_until, idle]
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

    /// Runs the timers that are due: a paused accept, idle connections.
    fn fire_timers(&mut self) {
        if self.accept_paused_until.is_none() && self.idle.is_none() {
            return;
        }
        let now = Instant::now();
        if matches!(self.accept_paused_until, Some(at) if at <= now) {
            self.resume_accepting();
        }
        self.expire_idle(now);
    }

    /// Closes the connections whose idle deadline has come.
    fn expire_idle(&mut self, now: Instant) {
        let tick = self.tick(now);
        let Some(idle) = self.idle.as_mut() else {
            return;
        };
        let mut expired = Vec::new();
        while let Some(&Reverse((deadline, key, id))) = idle.queue.peek() {
            if deadline > now {
                break;
            }
            idle.queue.pop();
            // The entry may outlive its connection, and the key may now hold
            // another: only the serial number tells them apart.
            let Some(conn) = self.conns.get(key).filter(|c| c.id() == id) else {
                continue;
            };
            if conn.state() == State::Closed {
                continue;
            }
            let quiet = Duration::from_millis(u64::from(tick.wrapping_sub(conn.last_active())));
            if quiet >= idle.timeout {
                expired.push(key);
            } else {
                idle.queue
                    .push(Reverse((now + (idle.timeout - quiet), key, id)));
            }
        }
        for key in expired {
            self.summary.idle_closed += 1;
            let next = self.conns[key].abort(Reason::Idle);
            self.after_pass(key, next);
        }
    }

    /// Readiness on one connection: drive it through one pass.
    fn connection_event(&mut self, key: usize, event: &Event, buf: &mut [u8]) {
        let now = self.now_tick();
        let Some(conn) = self.conns.get_mut(key) else {
            log::trace!("token {key}: no connection, event ignored");
            return;
        };
        if conn.state() == State::Closed {
            log::trace!("token {key}: closed this turn, event ignored");
            return;
        }
        log::trace!(
            "token {key}: event{}{}{}",
            if event.is_readable() { " readable" } else { "" },
            if event.is_writable() { " writable" } else { "" },
            if event.is_read_closed() {
                " read-closed"
            } else {
                ""
            },
        );
        // An error or hang-up is a reason to read: the read reports it.
        let closed_hint = event.is_read_closed() || event.is_error();
        let wake = Wake {
            readable: event.is_readable() || closed_hint,
            short_read_is_empty: !closed_hint,
            now,
        };
        let next = conn.drive(buf, wake, &self.limits);
        self.after_pass(key, next);
    }

    /// Drives the connections that had work left when their pass ran out of
    /// budget. No event will come for those bytes, so the loop must go back.
    fn serve_ready(&mut self, buf: &mut [u8]) {
        if self.ready.is_empty() {
            return;
        }
        let now = self.now_tick();
        let mut ready = std::mem::take(&mut self.ready);
        // A connection can be queued twice (by the last turn and by an event
        // of this one); one pass is enough.
        ready.sort_unstable();
        ready.dedup();
        for &key in &ready {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.state() == State::Closed {
                continue;
            }
            let next = conn.drive(buf, Wake::again(now), &self.limits);
            self.after_pass(key, next);
        }
    }

    /// Acts on what a pass over connection `key` decided.
    fn after_pass(&mut self, key: usize, next: Next) {
        match next {
            Next::Wait => {}
            Next::Again => self.ready.push(key),
            Next::Close(reason) => self.closed(key, reason),
        }
    }

    /// Books a connection that just closed; the slab entry goes at the end
    /// of the turn.
    fn closed(&mut self, key: usize, reason: Reason) {
        let conn = &self.conns[key];
        self.summary.closed += 1;
        self.summary.bytes += conn.bytes_out();
        self.summary.bytes_in += conn.bytes_in();
        if let Some(per_ip) = self.per_ip.as_mut() {
            let ip = conn.peer().ip();
            if let Some(open) = per_ip.open.get_mut(&ip) {
                *open -= 1;
                if *open == 0 {
                    per_ip.open.remove(&ip);
                }
            }
        }
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
        self.closed.push(key);
    }

    /// Removes the connections closed during this turn. Dropping one closes
    /// its socket, which also takes it out of the poll. Freed descriptors
    /// are a chance to resume a paused accept.
    fn end_turn(&mut self) {
        if self.closed.is_empty() {
            return;
        }
        let conns = &self.conns;
        self.ready
            .retain(|&key| conns[key].state() != State::Closed);
        for key in self.closed.drain(..) {
            self.conns.remove(key);
        }
        if self.accept_paused_until.is_some() {
            self.resume_accepting();
        }
    }

    /// Tries every listener again after `accept` ran out of resources. Edge-
    /// triggered: the connections waiting in the backlog raised their event
    /// already, so only we know to come back for them.
    fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        for i in 0..self.listeners.len() {
            self.accept(i);
            if self.accept_paused_until.is_some() {
                return;
            }
        }
    }

    /// Accepts every pending connection on listener `i`, until `WouldBlock`.
    fn accept(&mut self, i: usize) {
        if self.accept_paused_until.is_some() {
            // Out of descriptors a moment ago: the retry timer, or the next
            // connection to close, comes back for this backlog.
            return;
        }
        loop {
            // The listener may be gone: a stop earlier in this turn closed it.
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            let addr = listener.addr;
            match listener.socket.accept() {
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
                            "accept on {addr}: {}{hint}; pausing accepts, retrying every {:?} \
                             and when a connection closes",
                            describe(&e),
                            ACCEPT_RETRY
                        );
                    }
                    self.accept_paused_until = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// Registers a freshly accepted connection and gives it a slab slot, or
    /// closes it at once if a connection limit says no.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if let Some(refusal) = self.over_limit(peer.ip()) {
            self.summary.rejected += 1;
            if self.limit_warning.allow(Instant::now()) {
                log::warn!("{peer}: refused: {refusal} (further refusals are counted, not logged, for {WARN_EVERY:?})");
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
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let now = Instant::now();
        let opened = self.tick(now);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Registered once for both directions, never again: the hot path
        // makes no `epoll_ctl` call. Readiness we do not need right now is
        // just a hint we ignore.
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::debug!("{peer}: cannot register: {}", describe(&e));
            return;
        }
        entry.insert(Connection::new(stream, peer, id, opened));
        if let Some(per_ip) = self.per_ip.as_mut() {
            *per_ip.open.entry(peer.ip()).or_insert(0) += 1;
        }
        if let Some(idle) = self.idle.as_mut() {
            idle.queue.push(Reverse((now + idle.timeout, key, id)));
        }
        self.summary.connections += 1;
        log::debug!("{peer}: connected (token {key})");
    }

    /// Which limit, if any, a new connection from `ip` would break.
    fn over_limit(&self, ip: IpAddr) -> Option<String> {
        if self.conns.len() >= self.max_connections {
            return Some(format!(
                "{} connections open, the most allowed (--max-connections)",
                self.max_connections
            ));
        }
        let per_ip = self.per_ip.as_ref()?;
        let open = per_ip.open.get(&ip).copied().unwrap_or(0) as usize;
        (open >= per_ip.limit).then(|| {
            format!(
                "{ip} already holds {open} connections, the most allowed (--max-connections-per-ip)"
            )
        })
    }

    /// Reads the signal pipe and acts on every signal in it.
    fn signal_event(&mut self, buf: &mut [u8]) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let arrived: Vec<i32> = signals.pending().collect();
        for signal in arrived {
            let name = match signal {
                SIGINT => "SIGINT",
                _ => "SIGTERM",
            };
            if self.deadline.is_some() {
                log::warn!("{name} again: closing every connection now");
                self.abort_all();
                self.deadline = Some(Instant::now());
            } else {
                self.begin_stop(name, buf);
            }
        }
    }

    /// Stops accepting and lets every connection finish what it owes.
    fn begin_stop(&mut self, why: &str, buf: &mut [u8]) {
        if self.deadline.is_some() {
            return;
        }
        self.deadline = Some(Instant::now() + self.shutdown_timeout);
        self.accept_paused_until = None;
        // Dropping a listener closes it: new clients are refused from now on.
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l.socket);
        }
        let now = self.now_tick();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        let owing = self.conns.iter().filter(|(_, c)| c.owed() > 0).count();
        log::info!(
            "{why}: stopping; {} connections open, {owing} still owed bytes (draining for up to {:?})",
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
}

/// Accept errors that concern one would-be connection, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::PermissionDenied
    ) || matches!(e.raw_os_error(), Some(libc::EPROTO))
}

/// A server running on its own thread; see [`Server::spawn`].
pub struct Running {
    addrs: Vec<SocketAddr>,
    handle: Handle,
    thread: Option<thread::JoinHandle<io::Result<Summary>>>,
}

impl Running {
    /// The first address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address the server listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
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
