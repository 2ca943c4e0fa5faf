//! One client connection: its state machine and its read-echo-write cycle.
//!
//! An echo connection is in one of five states, named after what is true
//! of the socket; a connection of another service (discard, chargen)
//! starts in a sixth, `Serving`, and leaves it for `Stopping` or `Closed`
//! like `Open` does:
//!
//! ```text
//!          read 0 bytes (peer's FIN)
//!   Open ───────────────────────────► Draining ──── nothing owed: send our
//!     │ \                                              FIN ────────────┐
//!     │  \ the server is stopping                                      │
//!     │   └─────────────────────────► Stopping ──── nothing owed: send  │
//!     │                                             our FIN             │
//!     │ reset, broken pipe,                            │                │
//!     │ any other error                                ▼                │
//!     │                                            Lingering ── peer's  │
//!     │                                                │        FIN ──┐ │
//!     ▼                                                ▼              ▼ ▼
//!   Closed ◄────────────── idle or shutdown timeout, errors ───────  Closed
//! ```
//!
//! * `Open`: the peer may still send. We read, echo, and queue what the
//!   kernel would not take.
//! * `Serving`: the connection speaks another service (`src/service/`),
//!   whose pass drives it; at the peer's FIN it sends its own and closes.
//! * `Draining`: the peer sent FIN and will send no more, but we still owe
//!   bytes. We write them out, then send our own FIN and close.
//! * `Stopping`: the server is shutting down. We echo nothing new, write out
//!   what we owe, then send our FIN.
//! * `Lingering`: our FIN is sent but the peer may still be sending. We read
//!   and discard until its FIN, because closing a socket with unread bytes
//!   makes the kernel send a reset, and a reset destroys echoed bytes still
//!   on their way to the peer.
//! * `Closed`: nothing more will happen. The server removes the connection
//!   from its table at the end of the current turn of the loop.
//!
//! Every change of state goes through [`Connection::set_state`], which logs
//! `from => to` at trace level. What the connection wants from the kernel is
//! derived from the state and the buffer, never kept in flags of its own.
//!
//! Read next: [`crate::buffer`] for the bytes owed, then [`crate::server`]
//! for the loop that drives every connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use crate::buffer::{self, Budget, Pending};
use crate::service::{self, Service};
pub(crate) use crate::timers::Tick;

/// Where a connection is in its life. See the module docs for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// The peer may still send: read, echo, queue what the kernel refuses.
    Open,
    /// The peer sent FIN: write out what is owed, then send ours.
    Draining,
    /// The server is stopping: no new echoes; write out what is owed, then
    /// send FIN.
    Stopping,
    /// The connection speaks another service than echo (discard, chargen:
    /// `src/service/`), and the peer may still send: that service's pass
    /// drives it.
    Serving,
    /// Our FIN is sent: discard what the peer still sends until its FIN.
    Lingering,
    /// Done; waiting for the server to drop it at the end of the turn.
    Closed,
}

impl State {
    /// Whether the diagram in the module docs has an arrow `from => to`.
    /// Every state may close (errors, timeouts).
    fn may_become(from: State, to: State) -> bool {
        use State::*;
        matches!(
            (from, to),
            (Open, Draining | Stopping) | (Serving, Stopping) | (Stopping, Lingering) | (_, Closed)
        ) && from != Closed
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Open => "Open",
            State::Draining => "Draining",
            State::Stopping => "Stopping",
            State::Serving => "Serving",
            State::Lingering => "Lingering",
            State::Closed => "Closed",
        })
    }
}

/// What the loop should do with a connection after driving it.
#[derive(Debug)]
pub(crate) enum Next {
    /// Nothing more to do until the kernel reports new readiness.
    Wait,
    /// The connection used its share of this turn but still has bytes to
    /// read: drive it again before blocking in `poll` (the tour, section 2).
    /// Also what a pass returns when the connection would read but the
    /// server's memory budget has no room ([`Connection::starved`] says
    /// which): it stops reading (TCP pushes back on the peer) until memory
    /// is freed, and the loop keeps it on a list to drive again then (the
    /// tour, section 2). One variant for both keeps the verdict's match on
    /// the hot path as cheap as it was (BENCHMARKS.md).
    Again,
    /// The connection is finished; the reason says why.
    Close(Reason),
}

/// What one read of the socket found.
#[derive(Debug)]
pub(crate) enum Received {
    /// This many bytes, now at the front of the buffer.
    Bytes(usize),
    /// Nothing for now (`WouldBlock`): the pass is done.
    Nothing,
    /// The peer's FIN: it will send no more.
    Eof,
    /// Reset, or another failure: the connection is over.
    Failed(io::Error),
}

/// Why a connection closed.
#[derive(Debug)]
pub(crate) enum Reason {
    /// The peer half-closed and got every byte back, then our FIN.
    Finished,
    /// The server stopped: the peer got every byte owed, then our FIN, and
    /// then closed.
    Stopped,
    /// A socket call failed (reset, broken pipe, ...).
    Error(io::Error),
    /// No traffic either way for the idle timeout.
    Idle,
    /// The server stopped and the shutdown timeout ran out first.
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Finished => f.write_str("peer closed, all bytes echoed"),
            Reason::Stopped => f.write_str("server stopping, all owed bytes sent"),
            Reason::Error(e) => write!(f, "{}", crate::error::describe(e)),
            Reason::Idle => f.write_str("idle timeout"),
            Reason::Shutdown => f.write_str("shutdown timeout"),
        }
    }
}

/// What the loop knows when it drives a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wake {
    /// There may be bytes (or an EOF, or an error) to read.
    pub readable: bool,
    /// A read that returns fewer bytes than asked proves the receive queue
    /// is empty, so the pass may stop there instead of making one more read
    /// that would only return `WouldBlock`. True for a readable event that
    /// does not say the peer closed: any byte arriving later raises a new
    /// event. False when the peer's FIN may be waiting behind the data (the
    /// EOF must be read now: the tour, section 2) and for passes the loop
    /// makes on its own, from the ready list, which no event vouches for.
    pub short_read_is_empty: bool,
    /// The loop's clock for this turn (0 when nothing needs the time): a
    /// pass that moves bytes records it as the connection's last activity.
    pub now: Tick,
}

impl Wake {
    /// A pass the loop makes without an event: read until `WouldBlock`.
    pub(crate) fn again(now: Tick) -> Wake {
        Wake {
            readable: true,
            short_read_is_empty: false,
            now,
        }
    }

    /// A pass with no readiness to act on (for example at shutdown): it
    /// writes what is owed and, once the connection is `Lingering`, reads
    /// and discards what the peer still sends.
    pub(crate) fn flush(now: Tick) -> Wake {
        Wake {
            readable: false,
            short_read_is_empty: false,
            now,
        }
    }
}

/// Per-connection limits the server applies on every pass.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// The most bytes a connection may owe before we stop reading from it.
    pub max_buffer: usize,
    /// The most bytes one pass may read before yielding to other connections.
    pub budget: usize,
    /// The bytes every connection's buffer may hold together.
    pub memory: Arc<Budget>,
}

/// A socket a connection can drive: a byte stream whose write side can be
/// shut down on its own. Implemented by mio's `TcpStream`; tests use a
/// scripted fake.
pub(crate) trait Stream: Read + Write {
    /// Sends FIN: the peer reads EOF after every byte already written.
    fn shutdown_write(&self) -> io::Result<()>;

    /// Bytes written but not yet acknowledged by the peer (still in the
    /// kernel's send queue). Once zero, nothing of ours can be lost.
    fn unacknowledged(&self) -> io::Result<usize> {
        Ok(0)
    }

    /// Bytes written but not even sent yet: the peer's window is closed to
    /// them. Near zero for a peer that reads; large for one that does not.
    fn unsent(&self) -> io::Result<usize> {
        Ok(0)
    }
}

/// A client's socket as the server drives it: mio's `TcpStream` (already
/// registered with the poll), read and written with plain `read(2)` and
/// `write(2)`.
///
/// Why not mio's own `Read` and `Write`: they are std's, whose layers add
/// user-space work to every call, and on a loop that does little but read
/// and write that shows (BENCHMARKS.md). The behaviour is the same:
/// `WouldBlock` and `Interrupted` come back as errors to handle.
#[derive(Debug)]
pub(crate) struct Tcp(pub mio::net::TcpStream);

impl Read for Tcp {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes, and the
        // descriptor is the open socket this value owns.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Write for Tcp {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes, and the
        // descriptor is the open socket this value owns. SIGPIPE is ignored
        // (Rust's runtime does so at start), so a closed peer is EPIPE.
        let n = unsafe { libc::write(self.0.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for Tcp {
    fn shutdown_write(&self) -> io::Result<()> {
        self.0.shutdown(Shutdown::Write)
    }

    fn unacknowledged(&self) -> io::Result<usize> {
        self.send_queue()
    }

    #[cfg(target_os = "linux")]
    fn unsent(&self) -> io::Result<usize> {
        self.queue_ioctl(libc::SIOCOUTQNSD)
    }

    /// Elsewhere no call tells unsent bytes from unacknowledged ones: the
    /// whole send queue is an upper bound, so a tight budget reads less
    /// than on Linux, never more.
    #[cfg(not(target_os = "linux"))]
    fn unsent(&self) -> io::Result<usize> {
        self.send_queue()
    }
}

impl Tcp {
    /// Bytes in the kernel's send queue: written and not yet acknowledged.
    #[cfg(target_os = "linux")]
    fn send_queue(&self) -> io::Result<usize> {
        self.queue_ioctl(libc::TIOCOUTQ)
    }

    /// The same, from FreeBSD's `FIONWRITE`.
    #[cfg(target_os = "freebsd")]
    fn send_queue(&self) -> io::Result<usize> {
        self.queue_ioctl(libc::FIONWRITE)
    }

    /// The same, from the Apple systems' `SO_NWRITE` socket option.
    #[cfg(target_vendor = "apple")]
    fn send_queue(&self) -> io::Result<usize> {
        crate::net::int_option(self.0.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NWRITE)
            .map(|queued| queued.max(0) as usize)
    }

    /// No way to ask on this platform: callers then take the careful path
    /// (a stopping connection lingers until the peer's FIN or the
    /// shutdown deadline; a tight budget reads nothing).
    #[cfg(not(any(target_os = "linux", target_os = "freebsd", target_vendor = "apple")))]
    fn send_queue(&self) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the send queue's length is not known on this platform",
        ))
    }

    /// One of the ioctls that report a socket's send queue, in bytes.
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn queue_ioctl(&self, request: libc::c_ulong) -> io::Result<usize> {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ), SIOCOUTQNSD and FIONWRITE write one
        // int through a valid pointer.
        let ret = unsafe { libc::ioctl(self.0.as_raw_fd(), request as _, &mut queued) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(queued.max(0) as usize)
        }
    }
}

/// One client: its socket, its state and the bytes it is owed.
#[derive(Debug)]
pub(crate) struct Connection<S = Tcp> {
    stream: S,
    state: State,
    pending: Pending,
    peer: SocketAddr,
    /// Told apart from earlier connections that had the same slab key.
    id: u32,
    opened: Tick,
    last_active: Tick,
    /// Bytes written back to the peer. (Bytes read are these plus those
    /// still owed: no second counter to keep in step.)
    bytes_out: u64,
    /// On the loop's list of connections waiting for memory.
    awaiting_memory: bool,
    /// What it speaks, from the listener it came through.
    speaks: Service,
    /// The last pass stopped for want of memory, not for its budget.
    starved: bool,
}

impl<S: Stream> Connection<S> {
    /// A new connection to `peer` speaking `speaks`, the server's `id`th,
    /// at `now`.
    pub(crate) fn new(stream: S, peer: SocketAddr, id: u32, now: Tick, speaks: Service) -> Self {
        Connection {
            stream,
            state: match speaks {
                Service::Echo => State::Open,
                _ => State::Serving,
            },
            pending: Pending::new(),
            peer,
            id,
            opened: now,
            last_active: now,
            bytes_out: 0,
            awaiting_memory: false,
            speaks,
            starved: false,
        }
    }

    /// Whether the last pass stopped because the memory budget had no
    /// room, rather than because it used its share of the turn.
    pub(crate) fn starved(&self) -> bool {
        self.starved
    }

    /// What the connection speaks.
    pub(crate) fn speaks(&self) -> Service {
        self.speaks
    }

    /// Where the connection is in its life.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The server's serial number for this connection.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// When the connection was accepted.
    pub(crate) fn opened(&self) -> Tick {
        self.opened
    }

    /// When a pass last moved bytes either way (while the loop keeps time).
    pub(crate) fn last_active(&self) -> Tick {
        self.last_active
    }

    /// Bytes read from the peer so far.
    pub(crate) fn bytes_in(&self) -> u64 {
        self.bytes_out + self.pending.len() as u64
    }

    /// Bytes echoed back to the peer so far (for discard: dropped; for
    /// chargen: sent).
    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// Bytes read but not yet echoed.
    pub(crate) fn owed(&self) -> usize {
        self.pending.len()
    }

    /// We read while the peer may still send and the buffer has room.
    pub(crate) fn wants_read(&self, limits: &Limits) -> bool {
        self.state == State::Open && self.pending.len() < limits.max_buffer
    }

    /// We want to write while bytes are owed.
    pub(crate) fn wants_write(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The one place a connection changes state. A debug build rejects a
    /// change the diagram in the module docs does not have.
    fn set_state(&mut self, to: State) {
        if self.state != to {
            debug_assert!(
                State::may_become(self.state, to),
                "{}: no transition {} => {}",
                self.peer,
                self.state,
                to
            );
            log::trace!("{}: {} => {}", self.peer, self.state, to);
            self.state = to;
        }
    }

    /// Stops reading (the server is shutting down) and finishes what is owed:
    /// a connection that owes nothing closes at once.
    pub(crate) fn stop(&mut self, buf: &mut [u8], now: Tick, limits: &Limits) -> Next {
        if matches!(self.state, State::Open | State::Serving) {
            self.set_state(State::Stopping);
        }
        self.drive(buf, Wake::flush(now), limits)
    }

    /// Notes that the connection waits for memory; false if it was noted
    /// already (so the loop lists it once).
    pub(crate) fn mark_awaiting_memory(&mut self) -> bool {
        !std::mem::replace(&mut self.awaiting_memory, true)
    }

    /// The loop took the connection off its list of those waiting for memory.
    pub(crate) fn unmark_awaiting_memory(&mut self) {
        self.awaiting_memory = false;
    }

    /// Reads once into `buf`, for the services that do not echo: what the
    /// read found, with the activity recorded at `now`.
    pub(crate) fn receive(&mut self, buf: &mut [u8], now: Tick) -> Received {
        loop {
            return match self.stream.read(buf) {
                Ok(0) => Received::Eof,
                Ok(n) => {
                    self.last_active = now;
                    Received::Bytes(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Received::Nothing,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Received::Failed(e),
            };
        }
    }

    /// Writes what the kernel takes of `bytes`, counted as sent at `now`.
    pub(crate) fn send(&mut self, bytes: &[u8], now: Tick) -> io::Result<usize> {
        let n = self.stream.write(bytes)?;
        self.bytes_out += n as u64;
        self.last_active = now;
        Ok(n)
    }

    /// Counts `n` bytes moved that are not echoed (discard's).
    pub(crate) fn count_moved(&mut self, n: usize) {
        self.bytes_out += n as u64;
    }

    /// The peer is done and nothing is owed: send our FIN, and close.
    pub(crate) fn finish(&mut self) -> Next {
        if let Err(e) = self.stream.shutdown_write() {
            // The peer may already be gone; there is nothing left to say.
            log::trace!("{}: shutdown(Write) failed: {}", self.peer, e);
        }
        self.set_state(State::Closed);
        Next::Close(Reason::Finished)
    }

    /// Frees the buffer of a closed connection and gives its memory back.
    pub(crate) fn free_buffer(&mut self, memory: &Budget) {
        self.pending.release(memory);
    }

    /// Closes the connection now, whatever it still owes.
    pub(crate) fn abort(&mut self, reason: Reason) -> Next {
        self.set_state(State::Closed);
        Next::Close(reason)
    }

    /// What the loop calls on every event: the common case in a few lines,
    /// then the general pass for everything else.
    ///
    /// The common case is a client that sent a message and waits for it:
    /// nothing is owed, the peer is still sending, and the event says there
    /// is something to read. Then one `read` into the shared buffer and one
    /// `write` of the same bytes back are the whole job, and a short read
    /// proves the queue is empty. This path skips the general pass's
    /// bookkeeping (flush, budget, limits), which on a loop that does nothing
    /// else costs as much as the two system calls' own user-space work.
    /// Whenever the case is not that simple (a partial write, a full read
    /// with more behind it, EOF) the general pass takes over from the state
    /// the connection is in, so nothing is done twice or lost.
    #[inline]
    pub(crate) fn on_event(&mut self, buf: &mut [u8], wake: Wake, limits: &Limits) -> Next {
        // (The loop's buffer is never larger than `max_buffer`, so one read
        // into it cannot break the limit.)
        // (Nor is it taken while the memory budget could not queue a full
        // read, should the write be partial.)
        let simple = wake.readable
            && wake.short_read_is_empty
            && self.state == State::Open
            && self.pending.is_empty()
            && !buffer::any_budget_full();
        if simple {
            // The general pass's first step, through the same primitives. A
            // short read has emptied the receive queue; a partial write
            // left bytes owed and the writable event to come (which reports
            // the socket readable too if more is waiting). Either way the
            // pass is over after one read and one write; only a full read
            // that went straight back goes on to the general pass.
            match self.stream.read(buf) {
                Ok(0) => self.peer_closed(),
                Ok(n) => {
                    self.last_active = wake.now;
                    match self.write_back(&buf[..n], limits) {
                        Ok(true) if n == buf.len() => {}
                        Ok(_) => return Next::Wait,
                        Err(e) => return self.abort(Reason::Error(e)),
                    }
                }
                // A spurious event: nothing arrived after all.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.abort(Reason::Error(e)),
            }
        }
        self.drive(buf, wake, limits)
    }

    /// One pass of the echo cycle: write what is owed, then read and echo
    /// until the receive queue is empty, the buffer is full, or the pass has
    /// used its budget.
    ///
    /// `buf` is the loop's shared read buffer: bytes pass through it on their
    /// way back out and only what the kernel refuses to take is copied into
    /// this connection's own buffer.
    pub(crate) fn drive(&mut self, buf: &mut [u8], wake: Wake, limits: &Limits) -> Next {
        match self.state {
            // Closed earlier in this turn: the event is stale.
            State::Closed => return Next::Wait,
            // Another service than echo: its own pass (src/service/).
            State::Serving => return service::pass(self, buf, wake, limits),
            _ => {}
        }
        self.starved = false;
        let mut may_read = wake.readable;
        let mut short_read_is_empty = wake.short_read_is_empty;

        // 1. Write what we owe. If that made room in a buffer that was
        //    full, read again now: no event will come for the bytes left in
        //    the socket (the tour, section 2).
        if self.wants_write() {
            match self.write_owed(wake.now, limits) {
                Ok(true) => {
                    may_read = true;
                    short_read_is_empty = false;
                }
                Ok(false) => {}
                Err(e) => return self.abort(Reason::Error(e)),
            }
        }

        // 2. Read and echo.
        let mut moved = 0;
        while may_read && self.wants_read(limits) {
            if moved >= limits.budget {
                log::trace!("{}: used its budget of {} bytes, yields", self.peer, moved);
                return Next::Again;
            }
            // Never read more than the buffer could hold if none of it went
            // out: the per-connection bound and the server's budget are hard.
            let room = (limits.max_buffer - self.pending.len())
                .min(buf.len())
                .min(self.memory_room(&limits.memory));
            if room == 0 {
                log::trace!("{}: no room in the memory budget: stops reading", self.peer);
                self.starved = true;
                return Next::Again;
            }
            let n = match self.stream.read(&mut buf[..room]) {
                Ok(0) => {
                    self.peer_closed();
                    break;
                }
                Ok(n) => n,
                // The receive queue is empty: the pass is done.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A signal arrived mid-call; nothing was read. Try again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Reset, or any other failure: this connection is over.
                Err(e) => return self.abort(Reason::Error(e)),
            };
            self.last_active = wake.now;
            moved += n;
            if let Err(e) = self.echo(&buf[..n], limits) {
                return self.abort(Reason::Error(e));
            }
            if n < room && short_read_is_empty {
                break;
            }
        }

        if may_read && self.state == State::Open && !self.wants_read(limits) {
            log::trace!(
                "{}: owes {} bytes, the most allowed: stops reading",
                self.peer,
                self.owed()
            );
        }

        // 3. Once nothing more is owed, our FIN.
        self.end_of_pass(buf, limits)
    }

    /// Writes what is owed; `true` if that made room in a buffer that was
    /// full, so that reading may resume.
    #[inline]
    fn write_owed(&mut self, now: Tick, limits: &Limits) -> io::Result<bool> {
        let was_full = !self.wants_read(limits);
        let n = self.pending.write_to(&mut self.stream, &limits.memory)?;
        self.bytes_out += n as u64;
        self.last_active = now;
        log::trace!("{}: wrote {} owed, {} left", self.peer, n, self.owed());
        let resumes = was_full && self.wants_read(limits);
        if resumes {
            log::trace!("{}: room again, resumes reading", self.peer);
        }
        Ok(resumes)
    }

    /// The end of a pass: once nothing more is owed, send our FIN. A peer
    /// that sent its own FIN is done; one that may still be sending (the
    /// server is stopping) is read to its FIN first.
    fn end_of_pass(&mut self, buf: &mut [u8], limits: &Limits) -> Next {
        if !self.wants_write() {
            match self.state {
                State::Draining => return self.finish(),
                State::Stopping => {
                    if let Err(e) = self.stream.shutdown_write() {
                        // The peer may already be gone: nothing left to say.
                        log::trace!("{}: shutdown(Write) failed: {}", self.peer, e);
                    }
                    self.set_state(State::Lingering);
                }
                _ => {}
            }
        }
        if self.state == State::Lingering {
            return self.linger(buf, limits);
        }
        Next::Wait
    }

    /// How much the memory budget lets this connection read now: up to the
    /// soft limit, or, past it and only if nothing is owed, a little less
    /// than its kernel send queue can still take (see [`Budget`]).
    #[inline]
    fn memory_room(&self, memory: &Budget) -> usize {
        let room = memory.room();
        if room > 0 || self.wants_write() {
            return room;
        }
        let queued = self.stream.unsent().unwrap_or(usize::MAX);
        buffer::TIGHT_READ
            .saturating_sub(queued)
            .min(memory.reserve())
    }

    /// Reads and discards what the peer still sends after our FIN, until its
    /// own FIN, or until every byte we sent has been acknowledged.
    ///
    /// A socket closed with unread bytes, or one that receives bytes after
    /// it is closed, makes the kernel send a reset, and a reset throws away
    /// whatever of ours is still in the send queue: echoed bytes the peer
    /// would never see. Once the peer has acknowledged everything, a reset
    /// can cost it nothing, so an idle peer does not hold up the stop.
    #[cold]
    fn linger(&mut self, buf: &mut [u8], limits: &Limits) -> Next {
        let mut discarded = 0;
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.set_state(State::Closed);
                    return Next::Close(Reason::Stopped);
                }
                Ok(n) => {
                    if self.speaks == Service::Discard {
                        // Still discard's bytes: counted as its others were.
                        self.count_moved(n);
                    }
                    discarded += n;
                    if discarded >= limits.budget {
                        return Next::Again;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.abort(Reason::Error(e)),
            }
        }
        match self.stream.unacknowledged() {
            Ok(0) if discarded == 0 => {
                self.set_state(State::Closed);
                Next::Close(Reason::Stopped)
            }
            // Still in flight, or the peer is still sending: wait for its
            // FIN (or the shutdown deadline).
            _ => Next::Wait,
        }
    }

    /// Sends `bytes` straight back, queueing whatever the kernel does not take.
    #[inline]
    fn echo(&mut self, bytes: &[u8], limits: &Limits) -> io::Result<()> {
        if !self.wants_write() {
            return self.write_back(bytes, limits).map(|_| ());
        }
        // Earlier bytes are still queued, so the send buffer is full: these
        // go behind them, in order.
        self.pending
            .push(bytes, limits.max_buffer, &limits.memory)?;
        log::trace!(
            "{}: read {}, queued behind {}",
            self.peer,
            bytes.len(),
            self.owed()
        );
        Ok(())
    }

    /// Writes `bytes` back at once, nothing being owed, and keeps what the
    /// kernel refuses: `true` if it took them all. The one write of a fresh
    /// echo, for the fast path and the general pass alike.
    #[inline(always)]
    fn write_back(&mut self, bytes: &[u8], limits: &Limits) -> io::Result<bool> {
        let sent = self.stream.write(bytes);
        if let Ok(n) = sent {
            if n == bytes.len() {
                self.bytes_out += n as u64;
                log::trace!("{}: read {}, wrote {}", self.peer, n, n);
                return Ok(true);
            }
        }
        self.keep_unsent(bytes, sent, limits).map(|()| false)
    }

    /// The peer's FIN: zero bytes from `read`. It will send nothing more but
    /// still reads, and it is owed every byte it sent, so this is a
    /// half-close, not a reason to close.
    fn peer_closed(&mut self) {
        log::trace!("{}: read EOF", self.peer);
        self.set_state(State::Draining);
    }

    /// The rest of [`Connection::echo`] when the kernel did not take every
    /// byte at once: keep what it refused, in order.
    #[cold]
    fn keep_unsent(
        &mut self,
        bytes: &[u8],
        mut sent: io::Result<usize>,
        limits: &Limits,
    ) -> io::Result<()> {
        let (max, memory) = (limits.max_buffer, &*limits.memory);
        loop {
            match sent {
                Ok(n) => {
                    self.bytes_out += n as u64;
                    // The send buffer filled mid-write. The rest waits for the
                    // writable event that the kernel will now raise.
                    self.pending.push(&bytes[n..], max, memory)?;
                    log::trace!("{}: read {}, wrote {}", self.peer, bytes.len(), n);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending.push(bytes, max, memory)?;
                    log::trace!("{}: read {}, send buffer full", self.peer, bytes.len());
                    return Ok(());
                }
                // A signal arrived before anything was written: try again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => sent = self.stream.write(bytes),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A scripted socket: reads come from `input` (then `WouldBlock`, or EOF
    /// once `eof` is set); writes go to `output` while `room` lasts.
    #[derive(Default)]
    struct Fake {
        input: VecDeque<u8>,
        eof: bool,
        read_error: Option<io::ErrorKind>,
        output: Vec<u8>,
        room: usize,
        reads: usize,
        writes: usize,
        /// Bytes the "kernel" could not send the peer yet (SIOCOUTQNSD).
        queued: usize,
    }

    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if let Some(kind) = self.read_error.take() {
                return Err(kind.into());
            }
            if self.input.is_empty() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.input.len());
            for b in buf.iter_mut().take(n) {
                *b = self.input.pop_front().unwrap();
            }
            Ok(n)
        }
    }

    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.output.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Fake {
        fn shutdown_write(&self) -> io::Result<()> {
            Ok(())
        }

        fn unsent(&self) -> io::Result<usize> {
            Ok(self.queued)
        }
    }

    thread_local! {
        /// One budget per test (each runs on its own thread), so that what
        /// a connection takes and gives back balances.
        static LIMITS: Limits = limits_with(1 << 20);
    }

    /// 100 bytes owed at most, 1000 read per pass, a memory budget far
    /// larger than that.
    fn limits() -> Limits {
        LIMITS.with(Limits::clone)
    }

    fn limits_with(memory: usize) -> Limits {
        Limits {
            max_buffer: 100,
            budget: 1000,
            memory: Arc::new(Budget::new(memory, 16)),
        }
    }

    const READABLE: Wake = Wake {
        readable: true,
        short_read_is_empty: true,
        now: 7,
    };

    fn conn(input: &[u8], room: usize) -> Connection<Fake> {
        let fake = Fake {
            input: input.iter().copied().collect(),
            room,
            ..Fake::default()
        };
        Connection::new(fake, "127.0.0.1:1".parse().unwrap(), 1, 0, Service::Echo)
    }

    fn drive(c: &mut Connection<Fake>, wake: Wake) -> Next {
        let mut buf = [0u8; 16];
        c.drive(&mut buf, wake, &limits())
    }

    mod open {
        use super::*;

        /// Bytes that arrive are written straight back, none kept.
        #[test]
        fn echoes_what_it_reads() {
            let mut c = conn(b"hello", 1000);
            assert!(matches!(drive(&mut c, READABLE), Next::Wait));
            assert_eq!(c.stream.output, b"hello");
            assert_eq!(c.owed(), 0);
            assert_eq!(c.state(), State::Open);
        }

        /// A short read ends the pass without a read that would only block.
        #[test]
        fn short_read_skips_the_wouldblock_read() {
            let mut c = conn(b"hello", 1000);
            drive(&mut c, READABLE);
            assert_eq!(c.stream.reads, 1);
        }

        /// Without the event's word for it, the pass reads until WouldBlock.
        #[test]
        fn loop_pass_reads_until_wouldblock() {
            let mut c = conn(b"hello", 1000);
            drive(&mut c, Wake::again(0));
            assert_eq!(c.stream.reads, 2);
        }

        /// What the kernel refuses is kept, in order, and sent on writable.
        #[test]
        fn partial_write_keeps_the_rest_in_order() {
            let data: Vec<u8> = (0..40).collect();
            let mut c = conn(&data, 10);
            drive(&mut c, READABLE);
            assert_eq!(c.stream.output, &data[..10]);
            assert_eq!(c.owed(), 30);
            c.stream.room = 1000;
            drive(&mut c, Wake::flush(0));
            assert_eq!(c.stream.output, data);
            assert_eq!(c.owed(), 0);
        }

        /// At the buffer limit the connection stops reading from the peer.
        #[test]
        fn stops_reading_at_the_buffer_limit() {
            let data = vec![1u8; 500];
            let mut c = conn(&data, 0);
            drive(&mut c, READABLE);
            assert_eq!(c.owed(), limits().max_buffer);
            assert!(!c.wants_read(&limits()));
            assert_eq!(c.stream.input.len(), 400);
        }

        /// When the buffer drains, reading resumes in the same pass.
        #[test]
        fn resumes_reading_when_the_buffer_drains() {
            let data: Vec<u8> = (0..=255).cycle().take(500).collect();
            let mut c = conn(&data, 0);
            drive(&mut c, READABLE);
            c.stream.room = usize::MAX;
            // A writable-only wake: no event says there is more to read.
            drive(&mut c, Wake::flush(0));
            assert_eq!(c.stream.output, data);
            assert!(c.stream.input.is_empty());
        }

        /// A pass reads at most its budget, then asks to be driven again.
        #[test]
        fn yields_after_its_budget() {
            let data = vec![9u8; 64];
            let mut c = conn(&data, 1000);
            let mut buf = [0u8; 16];
            let limits = Limits {
                budget: 32,
                ..limits()
            };
            assert!(matches!(
                c.drive(&mut buf, Wake::again(0), &limits),
                Next::Again
            ));
            assert_eq!(c.stream.output.len(), 32);
            assert!(matches!(
                c.drive(&mut buf, Wake::again(0), &limits),
                Next::Again
            ));
            assert!(matches!(
                c.drive(&mut buf, Wake::again(0), &limits),
                Next::Wait
            ));
            assert_eq!(c.stream.output, data);
        }

        /// A reset closes the connection with the error.
        #[test]
        fn reset_closes() {
            let mut c = conn(b"", 1000);
            c.stream.read_error = Some(io::ErrorKind::ConnectionReset);
            match drive(&mut c, READABLE) {
                Next::Close(Reason::Error(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset)
                }
                other => panic!("expected close, got {other:?}"),
            }
            assert_eq!(c.state(), State::Closed);
        }

        /// A readable hint with nothing to read changes nothing.
        #[test]
        fn spurious_wake_is_harmless() {
            let mut c = conn(b"", 1000);
            assert!(matches!(drive(&mut c, Wake::again(0)), Next::Wait));
            assert_eq!(c.state(), State::Open);
        }
    }

    /// The server's memory budget, past its soft limit.
    /// The transitions a debug build allows are the diagram's.
    #[test]
    fn only_the_diagrams_transitions_are_legal() {
        use State::*;
        let all = [Open, Serving, Draining, Stopping, Lingering, Closed];
        let legal: Vec<(State, State)> = all
            .iter()
            .flat_map(|&a| all.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| State::may_become(a, b))
            .collect();
        assert_eq!(
            legal,
            [
                (Open, Draining),
                (Open, Stopping),
                (Open, Closed),
                (Serving, Stopping),
                (Serving, Closed),
                (Draining, Closed),
                (Stopping, Lingering),
                (Stopping, Closed),
                (Lingering, Closed),
            ]
        );
    }

    /// Discard's bytes read while a stop lingers for the peer's FIN are
    /// counted as discarded, like those before it.
    #[test]
    fn discard_counts_what_it_reads_while_lingering() {
        let fake = Fake {
            input: b"before".iter().copied().collect(),
            room: 1000,
            ..Fake::default()
        };
        let mut c = Connection::new(fake, "127.0.0.1:1".parse().unwrap(), 1, 0, Service::Discard);
        let mut buf = [0u8; 16];
        c.drive(&mut buf, Wake::again(0), &limits());
        assert_eq!(c.bytes_out(), 6);
        // The stop: FIN sent, Lingering, reading what the peer still
        // sends; then its FIN.
        c.stream.input.extend(b"during the stop");
        c.stop(&mut buf, 0, &limits());
        assert_eq!(c.state(), State::Lingering);
        c.stream.eof = true;
        assert!(matches!(
            c.drive(&mut buf, Wake::again(0), &limits()),
            Next::Close(Reason::Stopped)
        ));
        assert_eq!(c.bytes_out(), 6 + 15, "every byte read was counted");
    }

    mod memory {
        use super::*;

        /// A budget of 1000 bytes (soft limit 875) holding 900 already.
        fn tight() -> (Limits, Pending) {
            let limits = limits_with(1000);
            let mut other = Pending::new();
            other.push(&[0; 900], 1000, &limits.memory).unwrap();
            (limits, other)
        }

        /// A connection that owes bytes stops reading and asks to wait.
        #[test]
        fn one_that_owes_waits_for_memory() {
            let (limits, _other) = tight();
            let mut c = conn(b"more", 0);
            c.pending.push(b"owed", 100, &limits.memory).unwrap();
            let mut buf = [0u8; 16];
            let next = c.drive(&mut buf, Wake::again(0), &limits);
            assert!(matches!(next, Next::Again) && c.starved(), "{next:?}");
            assert_eq!(c.stream.reads, 0, "nothing was read");
        }

        /// One that owes nothing still echoes what its kernel queue takes.
        #[test]
        fn one_that_owes_nothing_still_echoes() {
            let (limits, _other) = tight();
            let mut c = conn(b"hello, still served", 1000);
            let mut buf = [0u8; 16];
            assert!(matches!(
                c.drive(&mut buf, Wake::again(0), &limits),
                Next::Wait
            ));
            assert_eq!(c.stream.output, b"hello, still served");
        }

        /// One whose kernel queue is full (its peer does not read) gets
        /// nothing, so it cannot use up the reserve.
        #[test]
        fn one_whose_kernel_queue_is_full_waits() {
            let (limits, _other) = tight();
            let mut c = conn(b"flood", 1000);
            c.stream.queued = buffer::TIGHT_READ;
            let mut buf = [0u8; 16];
            let next = c.drive(&mut buf, Wake::again(0), &limits);
            assert!(matches!(next, Next::Again) && c.starved(), "{next:?}");
            assert!(c.stream.output.is_empty());
        }
    }

    mod fast_path {
        use super::*;

        fn on_event(c: &mut Connection<Fake>, wake: Wake) -> Next {
            let mut buf = [0u8; 16];
            c.on_event(&mut buf, wake, &limits())
        }

        /// A short message is one read and one write, nothing kept.
        #[test]
        fn short_message_is_one_read_and_one_write() {
            let mut c = conn(b"ping", 1000);
            assert!(matches!(on_event(&mut c, READABLE), Next::Wait));
            assert_eq!(c.stream.output, b"ping");
            assert_eq!(c.stream.reads, 1);
            assert_eq!(c.bytes_out(), 4);
        }

        /// A full read may have more behind it: the general pass reads on.
        #[test]
        fn full_read_falls_through_to_the_general_pass() {
            let data: Vec<u8> = (0..40).collect();
            let mut c = conn(&data, 1000);
            assert!(matches!(on_event(&mut c, READABLE), Next::Wait));
            assert_eq!(c.stream.output, data);
        }

        /// A partial write keeps the rest, in order, for the writable event.
        #[test]
        fn partial_write_keeps_the_rest() {
            let mut c = conn(b"0123456789", 4);
            assert!(matches!(on_event(&mut c, READABLE), Next::Wait));
            assert_eq!(c.stream.output, b"0123");
            assert_eq!(c.owed(), 6);
            c.stream.room = 1000;
            on_event(&mut c, Wake::flush(0));
            assert_eq!(c.stream.output, b"0123456789");
        }

        /// A full read whose write is partial hands over to the writable
        /// event with no further system call: one read and one write, where
        /// falling into the general pass made a second of each.
        #[test]
        fn a_partial_write_hands_over_with_no_extra_call() {
            let data: Vec<u8> = (0..16).collect();
            let mut c = conn(&data, 5);
            assert!(matches!(on_event(&mut c, READABLE), Next::Wait));
            assert_eq!(c.stream.reads, 1, "no second read");
            assert_eq!(c.stream.writes, 1, "no second write");
            assert_eq!(c.owed(), 11);
            assert_eq!(c.stream.output, &data[..5]);
        }

        /// EOF on the fast path still drains and closes cleanly.
        #[test]
        fn eof_closes_through_the_general_pass() {
            let mut c = conn(b"", 1000);
            c.stream.eof = true;
            assert!(matches!(
                on_event(&mut c, READABLE),
                Next::Close(Reason::Finished)
            ));
        }

        /// An event for a connection closed earlier in the turn does nothing.
        #[test]
        fn closed_connection_ignores_events() {
            let mut c = conn(b"late", 1000);
            c.abort(Reason::Idle);
            assert!(matches!(on_event(&mut c, READABLE), Next::Wait));
            assert!(c.stream.output.is_empty());
            assert_eq!(c.stream.reads, 0);
        }
    }

    mod draining {
        use super::*;

        /// EOF with nothing owed: FIN at once, then closed.
        #[test]
        fn eof_with_nothing_owed_finishes() {
            let mut c = conn(b"bye", 1000);
            c.stream.eof = true;
            let wake = Wake {
                readable: true,
                short_read_is_empty: false,
                now: 0,
            };
            assert!(matches!(drive(&mut c, wake), Next::Close(Reason::Finished)));
            assert_eq!(c.stream.output, b"bye");
            assert_eq!(c.state(), State::Closed);
        }

        /// EOF while bytes are owed: stay until they are written, then close.
        #[test]
        fn eof_waits_for_owed_bytes() {
            let data = vec![5u8; 50];
            let mut c = conn(&data, 20);
            c.stream.eof = true;
            assert!(matches!(drive(&mut c, Wake::again(0)), Next::Wait));
            assert_eq!(c.state(), State::Draining);
            c.stream.room = 1000;
            assert!(matches!(
                drive(&mut c, Wake::flush(0)),
                Next::Close(Reason::Finished)
            ));
            assert_eq!(c.stream.output, data);
        }

        /// Stopping the server echoes nothing new but still flushes what is
        /// owed, then sends FIN and lingers.
        #[test]
        fn stop_flushes_then_lingers() {
            let mut c = conn(&[3u8; 30], 10);
            drive(&mut c, READABLE);
            let mut buf = [0u8; 16];
            assert!(matches!(c.stop(&mut buf, 0, &limits()), Next::Wait));
            assert_eq!(c.state(), State::Stopping);
            c.stream.input.extend([4u8; 10]);
            c.stream.room = 1000;
            assert!(matches!(drive(&mut c, READABLE), Next::Wait));
            assert_eq!(c.state(), State::Lingering);
            // The late bytes were read and dropped, not echoed.
            assert_eq!(c.stream.output, vec![3u8; 30]);
            assert!(c.stream.input.is_empty());
        }

        /// A lingering connection closes at the peer's FIN, not before: a
        /// close with unread bytes would reset the peer.
        #[test]
        fn lingering_closes_at_the_peers_fin() {
            let mut c = conn(b"", 1000);
            let mut buf = [0u8; 16];
            c.stream.input.extend([9u8; 40]);
            c.stop(&mut buf, 0, &limits());
            assert_eq!(c.state(), State::Lingering);
            assert!(c.stream.input.is_empty());
            c.stream.eof = true;
            assert!(matches!(
                drive(&mut c, READABLE),
                Next::Close(Reason::Stopped)
            ));
            assert!(c.stream.output.is_empty());
        }
    }
}
