//! The driver: one poll loop over one thread's connections, the part every
//! mode shares. A mode ([`Mode`]) says only what its connections do; the
//! driver owns how they live.
//!
//! # What the driver owns
//!
//! * **The connections**: a [`Slab`] of [`Conn`]s, keyed by poll token.
//!   Connection `first + i` of a loop's share is registered by
//!   [`super::dial`] as `Token(i)` and kept at key `i`, so an event's token
//!   is its connection's key. The slab's length is the number of live
//!   connections: there is no second count to keep in step.
//! * **The bytes on the wire**: [`Conn::write_until`] is the one write path
//!   (write the pattern at once, wait for a writable event only when the
//!   kernel refused bytes), and one read path reads and checks echoes until
//!   the receive queue is empty. Modes never call `read` or `write`.
//! * **Time**: the mode's deadline ([`Mode::deadline`]) and, for modes that
//!   want it, the scan for silent connections every [`TICK`].
//! * **Closing**: every connection leaves through one place, which counts
//!   its fault by kind and tells the mode ([`Mode::closed`]). A mode that
//!   ends a connection with our half-close asks for it ([`Next::HalfClose`])
//!   and says when the server's EOF is due ([`Mode::eof_due`]).
//! * **Progress**: when the progress line is shown ([`super::progress`]),
//!   the loop's counts, published at most every `TICK` of that module.
//!
//! # The readiness contract
//!
//! Every event is a hint: a readable event may find nothing to read, a
//! token may name a connection closed earlier in the same turn. The driver
//! acts on what the system calls return, so a stale event ends in
//! `WouldBlock`, or, for a key no longer in the slab, in nothing at all.
//! Sockets are registered once, for reading and writing, when they are
//! dialed; the loop never calls `epoll_ctl`.
//!
//! # Adding a mode
//!
//! A mode is a [`Mode`] and its options and report, in a file of its own.
//! What it needs from time goes through [`Mode::deadline`]: a phase's end,
//! or the next moment a connection is due to send (a paced mode keeps its
//! own schedule, answers with the earliest, and its timer hands the
//! connections due their turn with [`Flow::Send`]; [`Mode::PRECISE_TIMER`]
//! keeps that moment to the microsecond). What it counts lives in the
//! mode and is merged by its `run` from each loop's [`Ran`].
//!
//! # Connections opened during the run
//!
//! Most modes dial every connection up front ([`drive`]). A mode that opens
//! them as it goes ([`drive_opening`], for `churn`) names when the next is
//! due ([`Mode::open_due`]) and its number ([`Mode::next_open`]); the driver
//! starts the `connect`, registers the socket under the slab's vacant key
//! (so a token is still its connection's key), and lets it write only once
//! a writable event shows the handshake over ([`Mode::connected`]). A key
//! freed by a close may be taken by the next connection: a stale event for
//! the old one finds a socket still connecting, and does nothing.
//!
//! Read next: [`super::run`], which spreads a run over several loops.

use std::io::{self, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use super::alarm::Alarm;
use super::dial::{self, Dialed, Opener};
use super::pattern::{read_echo, Pattern};
use super::progress::{Meter, Sample};
use super::report::{Failures, Fault};
use super::{LoadError, IO_CHUNK};

/// How often a loop wakes, at the least, to look for silent connections
/// (only for modes with a [`Mode::silence_limit`]). A scan over every
/// connection ten times a second costs next to nothing beside the traffic
/// it watches.
const TICK: Duration = Duration::from_millis(100);

/// The most connections one turn of the loop opens ([`Mode::next_open`]),
/// so that a schedule far behind cannot keep the loop from its events.
const OPENS_PER_TURN: usize = 256;

/// The token of the loop's [`Alarm`]: beyond any slab key.
const ALARM: Token = Token(usize::MAX);

/// What a mode decided about one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep it open; its next event (or timer) drives it on.
    Continue,
    /// It finished, every byte checked: close it, no failure.
    Done,
    /// Send our EOF now (once; again is a no-op) and keep it open: it
    /// finishes at the server's EOF, which [`Mode::eof_due`] must then say
    /// is due.
    HalfClose,
}

/// What a mode's timer decided about the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on: the mode has moved its deadline on.
    Continue,
    /// The loop is over; connections still open close without failing.
    Stop,
    /// Go on, after letting connections `from .. from + count` (by number;
    /// those of other loops are skipped) send: a paced mode's schedule
    /// reached them, so [`Mode::send`] is called for each, as after an
    /// event. No [`Mode::sweep`] follows.
    Send {
        /// The first connection's number.
        from: usize,
        /// How many, in number order (`usize::MAX`: all from `from` on).
        count: usize,
    },
}

/// One load mode: what its connections do, and what it counts.
///
/// The driver calls the hooks in this order: [`start`](Mode::start) once,
/// [`open`](Mode::open) for every connection, then [`send`](Mode::send) for
/// every connection (each starts by writing). After that, for each event on
/// a connection: [`received`](Mode::received) if bytes came back, then
/// `send` again, unless the connection finished or failed. When the clock
/// passes [`deadline`](Mode::deadline): [`on_timer`](Mode::on_timer), then
/// [`sweep`](Mode::sweep) for every open connection. Every close, however
/// it came about, ends in [`closed`](Mode::closed). A mode that opens
/// connections during the run ([`drive_opening`]) gets `open` when one
/// starts connecting and [`connected`](Mode::connected) when its handshake
/// is over; its first `send` follows.
///
/// A failure of one connection is a [`Fault`] returned from a hook: the
/// driver closes that connection and counts the fault; the run goes on.
pub(crate) trait Mode {
    /// What one connection keeps beyond what every mode keeps ([`Conn`]).
    type State;

    /// Whether the loop ends as soon as no connection is open (true), or
    /// only when the timer says [`Flow::Stop`].
    const ENDS_WHEN_ALL_CLOSED: bool = true;

    /// Whether [`Mode::deadline`] must be kept to the microsecond, not to
    /// epoll's millisecond (see `src/alarm.rs`): for a paced mode, whose
    /// latencies run from when a message was due, so a late wake would be
    /// counted against the server.
    const PRECISE_TIMER: bool = false;

    /// The load starts at `now`, every connection of the loop open.
    fn start(&mut self, now: Instant);

    /// Connection number `number` of the run is established (or, opened
    /// during the run, has started connecting): its state.
    fn open(&mut self, number: usize, now: Instant) -> Self::State;

    /// When the mode next wants a connection opened during the run; `None`
    /// (the default): not until something changes. Only for
    /// [`drive_opening`].
    fn open_due(&self) -> Option<Instant> {
        None
    }

    /// The number of a connection to open at `now`, if one is due; the mode
    /// moves its schedule on whether or not the `connect` then succeeds (a
    /// failure is counted, and `open` is not called).
    fn next_open(&mut self, _now: Instant) -> Option<usize> {
        None
    }

    /// A connection opened during the run has finished its handshake at
    /// `now`; its first [`send`](Mode::send) follows at once.
    fn connected(&mut self, _conn: &mut Conn<Self::State>, _now: Instant) {}

    /// The connection may write: write what it may, with
    /// [`Conn::write_until`] (which stops, without failing, when the kernel
    /// refuses more). Called after every event and once at the start: the
    /// hot path, so it should cost a few comparisons beside the write (and
    /// carry `#[inline]`, as `received` should, or the compiler may leave
    /// it a call away from the driver's [`step`]).
    fn send(
        &mut self,
        conn: &mut Conn<Self::State>,
        pattern: &Pattern,
        now: Instant,
    ) -> Result<Next, Fault>;

    /// Bytes `from..conn.received()` came back, all checked against the
    /// pattern: count them. Called once per readable event, for all the
    /// bytes that event brought, before any fault it also brought.
    fn received(&mut self, conn: &mut Conn<Self::State>, from: u64, now: Instant);

    /// Whether the server's EOF is due now. If so, a short read does not
    /// end the read pass (the EOF may be queued behind the last bytes) and
    /// the EOF finishes the connection ([`Next::Done`]); otherwise an EOF
    /// is an early close.
    fn eof_due(&self, _conn: &Conn<Self::State>) -> bool {
        false
    }

    /// How long a connection the server owes bytes ([`Mode::owed`]) may
    /// hear nothing before it fails as silent. `None`: no scan, and the
    /// loop sleeps until an event or the deadline.
    fn silence_limit(&self) -> Option<Duration>;

    /// Whether the server owes this connection bytes, so that silence
    /// counts against it.
    fn owed(&self, _conn: &Conn<Self::State>) -> bool {
        true
    }

    /// Whole messages echoed so far, for the progress line's echoes/s
    /// ([`super::progress`]); 0, the default, for a mode without messages.
    /// Called at most once per [`super::progress::TICK`], and only when
    /// the line is shown.
    fn echoes(&self) -> u64 {
        0
    }

    /// When the timer next fires. Every mode has one, so every loop ends.
    fn deadline(&self) -> Instant;

    /// The deadline passed, with `live` connections open. The mode moves
    /// to its next phase (and its deadline on) or stops the loop. A phase
    /// due at once fires on the next turn, before any wait; each phase
    /// fires once, so a mode with a finite run of phases ends the loop.
    fn on_timer(&mut self, now: Instant, live: usize) -> Flow;

    /// Just after [`Mode::on_timer`]: what becomes of each open connection
    /// in the phase that begins (close the idle, fail the unfinished).
    fn sweep(&mut self, _conn: &Conn<Self::State>, _now: Instant) -> Result<Next, Fault> {
        Ok(Next::Continue)
    }

    /// The connection is closing: finished, or `failed` (its fault is
    /// already counted).
    fn closed(&mut self, _conn: &Conn<Self::State>, _failed: bool) {}
}

/// One connection: its socket and its progress through its pattern stream,
/// as every mode sees it, plus the mode's own [`Mode::State`].
pub(crate) struct Conn<S> {
    stream: TcpStream,
    /// Where the connection is in its life, as the driver sees it.
    stage: Stage,
    /// The connection's number in the run, for reports.
    number: usize,
    /// Where its stream starts in the pattern.
    phase: usize,
    /// Bytes written.
    sent: u64,
    /// Bytes echoed and checked.
    received: u64,
    /// The kernel refused our last write; a writable event will say when
    /// it has room again. (Not derived: only the kernel knows.)
    write_blocked: bool,
    /// The last time the wait for an echo began or an echo arrived.
    last_progress: Instant,
    /// What the mode keeps for this connection.
    pub(crate) state: S,
}

/// What is true of a connection's socket, as far as the driver knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Opened during the run, its handshake not yet known to be over: it
    /// may not write.
    Connecting,
    /// Connected; both directions open on our side.
    Open,
    /// We have sent our EOF ([`Conn::shutdown_write`]); we still read.
    HalfClosed,
}

/// How a read pass ended.
enum Read {
    /// The receive queue is empty; wait for the next event.
    Empty,
    /// The server's EOF.
    Eof,
}

impl<S> Conn<S> {
    /// A connection of the run, numbered `number`, starting in `stage`.
    fn new(stream: TcpStream, number: usize, stage: Stage, now: Instant, state: S) -> Conn<S> {
        Conn {
            stream,
            stage,
            number,
            phase: Pattern::phase(number),
            sent: 0,
            received: 0,
            write_blocked: false,
            last_progress: now,
            state,
        }
    }

    /// Bytes written so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes echoed and checked so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Bytes written and not yet echoed.
    pub(crate) fn in_flight(&self) -> u64 {
        self.sent - self.received
    }

    /// Writes the stream up to byte `limit`, until the kernel refuses more.
    /// The one write path of every mode: write at once, and wait for a
    /// writable event only when the kernel refused bytes.
    #[inline]
    pub(crate) fn write_until(
        &mut self,
        pattern: &Pattern,
        limit: u64,
        now: Instant,
    ) -> Result<(), Fault> {
        if self.in_flight() == 0 && self.sent < limit {
            // Nothing was owed to us until now: the wait starts here.
            self.last_progress = now;
        }
        while self.sent < limit && !self.write_blocked {
            let want = (limit - self.sent).min(IO_CHUNK as u64) as usize;
            match self
                .stream
                .write(pattern.bytes(self.phase, self.sent, want))
            {
                Ok(0) => return Err(Fault::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n as u64,
                // The send buffer is full: the rest waits for a writable
                // event (registered once, at connect; no epoll_ctl here).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
                // A signal arrived mid-call; nothing was written. Again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Io(e)),
            }
        }
        Ok(())
    }

    /// Half-closes: the server reads our EOF after the last byte sent, and
    /// an echo server answers with its own after the last echo. Once: a
    /// second call does nothing.
    pub(crate) fn shutdown_write(&mut self) -> Result<(), Fault> {
        if self.stage != Stage::HalfClosed {
            self.stream.shutdown(Shutdown::Write).map_err(Fault::Io)?;
            self.stage = Stage::HalfClosed;
        }
        Ok(())
    }

    /// Whether we have sent our EOF.
    pub(crate) fn half_closed(&self) -> bool {
        self.stage == Stage::HalfClosed
    }

    /// Reads and checks echoes until the receive queue is empty.
    ///
    /// `short_read_is_empty`: a read that returns less than asked proves the
    /// queue is empty (any later byte raises a new event), so the pass ends
    /// there without a read that would only return `WouldBlock`. Not so when
    /// the event says the server closed, or when `eof_due` says its EOF is
    /// next: that EOF must be read now.
    fn receive(
        &mut self,
        buf: &mut [u8],
        pattern: &Pattern,
        short_read_is_empty: bool,
        eof_due: impl Fn(&Self) -> bool,
        now: Instant,
    ) -> Result<Read, Fault> {
        loop {
            let read = read_echo(
                &mut self.stream,
                buf,
                pattern,
                self.phase,
                self.received,
                self.sent,
            )?;
            // The receive queue is empty: this pass is done.
            let Some(n) = read else {
                return Ok(Read::Empty);
            };
            if n == 0 {
                return Ok(Read::Eof);
            }
            self.received += n as u64;
            self.last_progress = now;
            if n < buf.len() && short_read_is_empty && !eof_due(self) {
                return Ok(Read::Empty);
            }
        }
    }
}

/// What one loop did: the mode, with everything it counted, and the
/// failures by kind (those of opening its connections first).
pub(crate) struct Ran<M> {
    /// The mode as the loop left it.
    pub(crate) mode: M,
    /// Every connection of the loop that failed, to open or later.
    pub(crate) failures: Failures,
    /// From the start of the load to the end of the loop.
    pub(crate) elapsed: Duration,
    /// When the loop ended.
    pub(crate) ended: Instant,
}

/// One loop's state: the mode, its connections, and what every mode needs
/// to move bytes.
struct Driver<M: Mode> {
    mode: M,
    conns: Slab<Conn<M::State>>,
    /// How to open connections during the run; `None` when all were dialed
    /// up front.
    opener: Option<Opener>,
    /// The fine timer, for a mode that opens connections on a schedule or
    /// asks for one ([`Mode::PRECISE_TIMER`]).
    alarm: Option<Alarm>,
    /// The number of the connection at key 0.
    first: usize,
    failures: Failures,
    pattern: Pattern,
    /// The one read buffer every echo passes through, allocated once.
    buf: Box<[u8]>,
    /// Bytes echoed and checked on every connection of the loop, for the
    /// progress line.
    echoed: u64,
    /// The loop's part in the progress line, if it is shown.
    meter: Option<Meter<'static>>,
}

/// Runs `mode` over the connections `dialed` opened, on this thread, until
/// the mode stops or (if it ends so) no connection is left. `first` is the
/// number of the share's first connection. Only a failure of the poll
/// itself is an error.
pub(crate) fn drive<M: Mode>(
    mut mode: M,
    poll: &mut Poll,
    events: &mut Events,
    dialed: &mut Dialed,
    first: usize,
) -> Result<Ran<M>, LoadError> {
    let alarm = match M::PRECISE_TIMER {
        true => Some(Alarm::new(poll.registry(), ALARM).map_err(|e| LoadError::Setup("timer", e))?),
        false => None,
    };
    let started = Instant::now();
    mode.start(started);
    // Key `i` for connection `first + i`, as dial registered it; the keys
    // of connections that did not open stay vacant.
    let conns = std::mem::take(&mut dialed.streams)
        .into_iter()
        .enumerate()
        .filter_map(|(i, stream)| {
            let stream = stream?;
            let number = first + i;
            let state = mode.open(number, started);
            Some((i, Conn::new(stream, number, Stage::Open, started, state)))
        })
        .collect();
    let driver = Driver {
        mode,
        conns,
        opener: None,
        alarm,
        first,
        failures: std::mem::take(&mut dialed.failures),
        pattern: Pattern::new(),
        buf: vec![0u8; IO_CHUNK].into_boxed_slice(),
        echoed: 0,
        meter: Meter::for_loop(first, started),
    };
    driver.drive(poll, events, started)
}

/// Runs `mode` on this thread with no connection open at the start: the
/// mode opens them as it goes ([`Mode::next_open`]), through `opener`,
/// until its timer stops the loop. Only a failure of the poll itself is an
/// error; a connection that fails to open is counted.
pub(crate) fn drive_opening<M: Mode>(
    mut mode: M,
    poll: &mut Poll,
    events: &mut Events,
    opener: Opener,
) -> Result<Ran<M>, LoadError> {
    let alarm = Alarm::new(poll.registry(), ALARM).map_err(|e| LoadError::Setup("timer", e))?;
    let started = Instant::now();
    mode.start(started);
    let driver = Driver {
        mode,
        conns: Slab::new(),
        opener: Some(opener),
        alarm: Some(alarm),
        first: 0,
        failures: Failures::default(),
        pattern: Pattern::new(),
        buf: vec![0u8; IO_CHUNK].into_boxed_slice(),
        echoed: 0,
        // One loop opens every connection: it prints.
        meter: Meter::for_loop(0, started),
    };
    driver.drive(poll, events, started)
}

impl<M: Mode> Driver<M> {
    /// Runs the loop and hands back what it did.
    fn drive(
        mut self,
        poll: &mut Poll,
        events: &mut Events,
        started: Instant,
    ) -> Result<Ran<M>, LoadError> {
        let ended = self.run(poll, events, started)?;
        let sample = self.sample();
        if let Some(meter) = &mut self.meter {
            meter.finish(ended, sample);
        }
        Ok(Ran {
            mode: self.mode,
            failures: self.failures,
            elapsed: ended - started,
            ended,
        })
    }

    /// The loop. Returns when it ended.
    fn run(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        started: Instant,
    ) -> Result<Instant, LoadError> {
        // Every connection starts by writing.
        for key in 0..self.conns.capacity() {
            self.turn(key, None, started);
        }
        let silence = self.mode.silence_limit();
        let mut next_scan = started + TICK;
        loop {
            let now = Instant::now();
            // Connections due to open before a deadline open before its
            // timer moves the mode on.
            self.open_due(poll.registry(), now);
            if now >= self.mode.deadline() {
                let flow = self.mode.on_timer(now, self.conns.len());
                if let Flow::Send { from, count } = flow {
                    // Then through the poll, at once if more is due: a
                    // schedule that runs ahead of the loop must not keep
                    // it from reading the echoes (or from its deadlines).
                    self.send_due(from, count, now);
                } else {
                    self.sweep(now);
                    if flow == Flow::Stop {
                        return Ok(now);
                    }
                    // The next phase may be due at once: look again before
                    // waiting.
                    continue;
                }
            }
            if M::ENDS_WHEN_ALL_CLOSED && self.conns.is_empty() {
                return Ok(now);
            }
            let mut wake = self.mode.deadline();
            if let Some(at) = self.mode.open_due() {
                // More were due than one turn opens: go on at once.
                wake = wake.min(at.max(now));
            }
            if let Some(limit) = silence {
                if now >= next_scan {
                    self.fail_silent(now, limit);
                    next_scan = now + TICK;
                }
                wake = wake.min(next_scan);
            }
            if let Some(at) = self.progress(now) {
                wake = wake.min(at);
            }
            // To the microsecond, not the poll's millisecond (which still
            // wakes the loop, a little later, if the alarm cannot).
            if let Some(alarm) = &mut self.alarm {
                if wake > now {
                    alarm
                        .set(wake, now)
                        .map_err(|e| LoadError::Setup("timer", e))?;
                }
            }
            wait(poll, events, wake.saturating_duration_since(now))?;
            // Every event is a hint (see the module docs): `turn` acts on
            // what the system calls return.
            for event in events.iter() {
                if event.token() == ALARM {
                    if let Some(alarm) = &mut self.alarm {
                        alarm.fired();
                    }
                    continue;
                }
                self.turn(event.token().0, Some(event), Instant::now());
            }
        }
    }

    /// What the loop has counted, for the progress line.
    fn sample(&self) -> Sample {
        Sample {
            live: self.conns.len() as u64,
            echoed: self.echoed,
            echoes: self.mode.echoes(),
            failures: self.failures.total(),
        }
    }

    /// If the progress line is shown: publishes the loop's counts when a
    /// publish is due, and returns the latest the loop may sleep until.
    fn progress(&mut self, now: Instant) -> Option<Instant> {
        if self.meter.as_ref()?.due(now) {
            let sample = self.sample();
            if let Some(meter) = &mut self.meter {
                meter.publish(now, sample);
            }
        }
        self.meter.as_ref().map(Meter::wake)
    }

    /// Drives connection `key` one step ([`step`]) and closes it if it
    /// finished or failed. `event` is `None` for the first turn, which
    /// only sends.
    fn turn(&mut self, key: usize, event: Option<&Event>, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let before = conn.received;
        let verdict = step(
            &mut self.mode,
            conn,
            &self.pattern,
            &mut self.buf,
            event,
            now,
        );
        self.echoed += conn.received - before;
        self.settle(key, verdict);
    }

    /// The schedule reached connections `from .. from + count`: each of
    /// this loop's sends what it may. Only those named are visited, so a
    /// paced mode's wake costs what it sends, not one call per connection.
    fn send_due(&mut self, from: usize, count: usize, now: Instant) {
        let start = from.saturating_sub(self.first);
        let end = from.saturating_add(count).saturating_sub(self.first);
        for key in start..end.min(self.conns.capacity()) {
            self.turn(key, None, now);
        }
    }

    /// The timer fired: the mode decides about every open connection.
    fn sweep(&mut self, now: Instant) {
        for key in 0..self.conns.capacity() {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            let verdict = self.mode.sweep(conn, now);
            self.settle(key, verdict);
        }
    }

    /// Carries out what a mode decided about connection `key`.
    fn settle(&mut self, key: usize, verdict: Result<Next, Fault>) {
        match verdict {
            Ok(Next::Continue) => {}
            Ok(Next::HalfClose) => {
                let shut = match self.conns.get_mut(key) {
                    Some(conn) => conn.shutdown_write(),
                    None => Ok(()),
                };
                if let Err(fault) = shut {
                    self.close(key, Some(fault));
                }
            }
            Ok(Next::Done) => self.close(key, None),
            Err(fault) => self.close(key, Some(fault)),
        }
    }

    /// Opens the connections the mode wants opened by `now` (at most
    /// [`OPENS_PER_TURN`]), each registered under a vacant key.
    fn open_due(&mut self, registry: &Registry, now: Instant) {
        let Some(opener) = &self.opener else {
            return;
        };
        for _ in 0..OPENS_PER_TURN {
            let Some(number) = self.mode.next_open(now) else {
                return;
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let started = opener.start(number).and_then(|mut stream| {
                registry.register(
                    &mut stream,
                    Token(key),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(stream)
            });
            match started {
                Ok(stream) => {
                    let state = self.mode.open(number, now);
                    entry.insert(Conn::new(stream, number, Stage::Connecting, now, state));
                }
                Err(e) => self.failures.record(number, &Fault::Connect(e)),
            }
        }
    }

    /// Fails every connection that is owed bytes and has heard nothing for
    /// `limit`.
    fn fail_silent(&mut self, now: Instant, limit: Duration) {
        for key in 0..self.conns.capacity() {
            let fault = match self.conns.get(key) {
                Some(c) if self.mode.owed(c) => {
                    let waited = now.saturating_duration_since(c.last_progress);
                    if waited < limit {
                        continue;
                    }
                    match c.stage {
                        Stage::Connecting => Fault::ConnectTimeout(waited),
                        // Everything came back after our EOF: only the
                        // server's is missing.
                        Stage::HalfClosed if c.in_flight() == 0 => Fault::NoEof { waited },
                        Stage::Open | Stage::HalfClosed => Fault::Silent {
                            waited,
                            received: c.received,
                            sent: c.sent,
                        },
                    }
                }
                _ => continue,
            };
            self.close(key, Some(fault));
        }
    }

    /// Closes connection `key` (dropping the socket closes it and takes it
    /// out of the poll), counting `fault` if it failed. The one way out.
    fn close(&mut self, key: usize, fault: Option<Fault>) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        if let Some(fault) = &fault {
            self.failures.record(conn.number, fault);
        }
        self.mode.closed(&conn, fault.is_some());
    }
}

/// One connection's step on `event`: read and check what came back, then
/// let the mode send what may go. The hot path, on one screen.
#[inline]
fn step<M: Mode>(
    mode: &mut M,
    conn: &mut Conn<M::State>,
    pattern: &Pattern,
    buf: &mut [u8],
    event: Option<&Event>,
    now: Instant,
) -> Result<Next, Fault> {
    if conn.stage == Stage::Connecting {
        // Opened during the run: it may write only once the handshake is
        // over. Any event may be a hint (or meant for the key's previous
        // connection), so the socket itself says.
        match dial::handshake(&conn.stream) {
            Ok(false) => return Ok(Next::Continue),
            Ok(true) => {
                conn.stage = Stage::Open;
                conn.last_progress = now;
                mode.connected(conn, now);
            }
            Err(e) => return Err(Fault::Connect(e)),
        }
    }
    if let Some(event) = event {
        if event.is_writable() {
            conn.write_blocked = false;
        }
        // An error or hang-up is a reason to read: the read reports it.
        let closed_hint = event.is_read_closed() || event.is_error();
        if event.is_readable() || closed_hint {
            let from = conn.received;
            let read = conn.receive(buf, pattern, !closed_hint, |c| mode.eof_due(c), now);
            // Count what came before any fault the same pass found.
            if conn.received > from {
                mode.received(conn, from, now);
            }
            if let Read::Eof = read? {
                if mode.eof_due(conn) {
                    return Ok(Next::Done);
                }
                // The server closed while it still owed us bytes, or
                // closed a connection we had not: either way, not an echo
                // server's behaviour.
                return Err(Fault::EarlyClose {
                    received: conn.received,
                    sent: conn.sent,
                });
            }
        }
    }
    mode.send(conn, pattern, now)
}

/// Waits in `poll` for at most `timeout`. A signal that interrupts the wait
/// is no failure: it counts as a wake-up with no events.
pub(crate) fn wait(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Duration,
) -> Result<(), LoadError> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(e) => Err(LoadError::Poll(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dial::{self, Dial};
    use crate::report::Failure;
    use std::net::{SocketAddr, TcpListener};

    /// A mode for the tests: each connection sends `len` bytes, then, if
    /// `half_close`, its EOF, and expects the server's after the echo (if
    /// `expect_eof`). The timer stops the loop at `lasts` and fails what
    /// is left.
    struct Probe {
        len: u64,
        half_close: bool,
        expect_eof: bool,
        lasts: Duration,
        silence: Option<Duration>,
        deadline: Instant,
        received: u64,
        closed: Vec<(usize, bool)>,
    }

    impl Probe {
        fn new(len: u64, half_close: bool, lasts: Duration) -> Probe {
            Probe {
                len,
                half_close,
                expect_eof: half_close,
                lasts,
                silence: None,
                deadline: Instant::now(),
                received: 0,
                closed: Vec::new(),
            }
        }
    }

    impl Mode for Probe {
        type State = usize;

        fn start(&mut self, now: Instant) {
            self.deadline = now + self.lasts;
        }

        fn open(&mut self, number: usize, _now: Instant) -> usize {
            number
        }

        fn send(
            &mut self,
            conn: &mut Conn<usize>,
            pattern: &Pattern,
            now: Instant,
        ) -> Result<Next, Fault> {
            let before = conn.sent();
            conn.write_until(pattern, self.len, now)?;
            if self.half_close && before < self.len && conn.sent() == self.len {
                conn.shutdown_write()?;
            }
            Ok(Next::Continue)
        }

        fn received(&mut self, conn: &mut Conn<usize>, from: u64, _now: Instant) {
            self.received += conn.received() - from;
        }

        fn eof_due(&self, conn: &Conn<usize>) -> bool {
            self.expect_eof && conn.received() == self.len
        }

        fn silence_limit(&self) -> Option<Duration> {
            self.silence
        }

        fn deadline(&self) -> Instant {
            self.deadline
        }

        fn on_timer(&mut self, _now: Instant, _live: usize) -> Flow {
            Flow::Stop
        }

        fn sweep(&mut self, conn: &Conn<usize>, _now: Instant) -> Result<Next, Fault> {
            Err(Fault::Unfinished {
                received: conn.received(),
                expected: self.len,
            })
        }

        fn closed(&mut self, conn: &Conn<usize>, failed: bool) {
            self.closed.push((conn.state, failed));
        }
    }

    /// Opens `count` connections to `addr` (numbered from 10) and drives
    /// `probe` over them.
    fn drive_probe(addr: SocketAddr, count: usize, probe: Probe) -> Ran<Probe> {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(64);
        let plan = Dial {
            target: addr,
            sources: &[],
            count,
            first: 10,
            timeout: Duration::from_secs(5),
        };
        let mut dialed = dial::dial(&mut poll, &mut events, &plan).unwrap();
        assert_eq!(dialed.opened, count);
        drive(probe, &mut poll, &mut events, &mut dialed, 10).unwrap()
    }

    /// Connections that finish (echo back, then the server's EOF) close
    /// once each, through `closed`, and the loop ends with the last.
    #[test]
    fn finished_connections_close_once_and_end_the_loop() {
        let server = echo_test_kit::server();
        let probe = Probe::new(100_000, true, Duration::from_secs(20));
        let ran = drive_probe(server.addr(), 3, probe);
        assert_eq!(ran.failures.total(), 0, "{:?}", ran.failures.details());
        assert_eq!(ran.mode.received, 300_000);
        let mut closed = ran.mode.closed.clone();
        closed.sort_unstable();
        assert_eq!(closed, [(10, false), (11, false), (12, false)]);
        assert!(ran.elapsed < Duration::from_secs(20), "{:?}", ran.elapsed);
    }

    /// When the mode does not expect it, the server's EOF is an early
    /// close, counted as one.
    #[test]
    fn an_eof_not_due_is_an_early_close() {
        let server = echo_test_kit::server();
        let mut probe = Probe::new(1000, true, Duration::from_secs(20));
        // The half-close makes the server close too; the mode never
        // expects it.
        probe.expect_eof = false;
        let ran = drive_probe(server.addr(), 1, probe);
        assert_eq!(ran.failures.count(Failure::EarlyClose), 1);
        assert_eq!(ran.mode.closed, [(10, true)]);
    }

    /// At the deadline the sweep fails every connection still open, and
    /// the loop stops.
    #[test]
    fn the_deadline_sweeps_and_stops() {
        let server = echo_test_kit::server();
        let probe = Probe::new(10, false, Duration::from_millis(200));
        let ran = drive_probe(server.addr(), 2, probe);
        assert_eq!(ran.failures.count(Failure::Timeout), 2);
        assert!(ran.failures.details()[0].contains("unfinished at the deadline"));
        assert_eq!(ran.mode.received, 20);
        assert_eq!(ran.mode.closed.len(), 2);
        assert!(ran.mode.closed.iter().all(|&(_, failed)| failed));
    }

    /// A server that never answers: the silence scan fails each connection
    /// owed bytes within the limit (plus a tick), long before the deadline.
    #[test]
    fn the_silence_scan_fails_connections_owed_bytes() {
        // Handshakes complete in the backlog; nothing is ever accepted.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut probe = Probe::new(10, false, Duration::from_secs(20));
        probe.silence = Some(Duration::from_millis(200));
        let ran = drive_probe(listener.local_addr().unwrap(), 2, probe);
        assert_eq!(ran.failures.count(Failure::Timeout), 2);
        assert!(ran.failures.details()[0].contains("no echo for"));
        assert!(ran.elapsed < Duration::from_secs(2), "{:?}", ran.elapsed);
    }
}
