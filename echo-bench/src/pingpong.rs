//! `pingpong`: every connection sends a message, waits for its echo, and
//! sends the next; or, pipelined, keeps `depth` messages in flight.
//!
//! Each connection's messages are consecutive pieces of its pattern stream
//! ([`super::pattern`]): message `m` is bytes `m * size .. (m + 1) * size`.
//! So a connection needs only counters, never a copy of a message:
//!
//! * `sent`: bytes written. The connection may write up to
//!   `(messages echoed + depth) * size`, and writes as soon as it may.
//! * `received`: bytes echoed and checked. When `received` passes the end of
//!   a message, that message's round trip is over.
//! * `stamped`: messages whose first byte has gone out; message `m`'s send
//!   time sits in a ring of `depth` slots at `m % depth`.
//!
//! # The run
//!
//! 1. Open every connection ([`super::dial`]); if any fails, stop with one
//!    error line.
//! 2. Warm up for `--warmup` seconds: full load, nothing counted.
//! 3. Measure for `--duration` seconds: echoes completed in this window,
//!    and their round trips, are the result.
//! 4. Finish: send no new message, wait (at most `--timeout`) for every
//!    byte in flight to come back and be checked, then close.
//!
//! A connection with bytes in flight and no echo for `--timeout` counts as
//! failed; so does a reset, an early close, or a byte that differs. The run
//! goes on with the others.
//!
//! Read next: [`super::stream`] for bulk transfer in both directions.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;

use super::pattern::{read_echo, Pattern};
use super::report::{self, Failures, Fault, Latency, Outcome, ResultLine};
use super::{
    ensure_descriptors, open_share, positive, run_loops, wait, Gate, LoadError, LoopPart, Opened,
    DEFAULT_TIMEOUT, IO_CHUNK, TICK,
};

/// The largest `--size`: one message larger than this is a bulk transfer,
/// which `stream` measures better.
pub const MAX_SIZE: usize = 16 * 1024 * 1024;

/// The largest `--depth`.
pub const MAX_DEPTH: usize = 1024;

/// What a `pingpong` run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The echo server.
    pub addr: SocketAddr,
    /// How many connections, all busy at once.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection (1: strict ping-pong).
    pub depth: usize,
    /// How long to measure, after the warm-up.
    pub duration: Duration,
    /// How long to run at full load before measuring.
    pub warmup: Duration,
    /// How long a connection may take to open, and how long the server may
    /// leave it without an echo while bytes are in flight.
    pub timeout: Duration,
    /// Poll loops (threads) to spread the connections over.
    pub threads: usize,
}

impl Options {
    /// 100 connections, 64-byte messages, depth 1, 5 s after a 1 s warm-up,
    /// one thread.
    pub fn new(addr: SocketAddr) -> Options {
        Options {
            addr,
            connections: 100,
            size: 64,
            depth: 1,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            timeout: DEFAULT_TIMEOUT,
            threads: 1,
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |what: String| Err(LoadError::Config(what));
        if self.connections == 0 {
            return bad("--connections must be at least 1".into());
        }
        if !(1..=MAX_SIZE).contains(&self.size) {
            return bad(format!("--size must be between 1 and {MAX_SIZE} bytes"));
        }
        if !(1..=MAX_DEPTH).contains(&self.depth) {
            return bad(format!("--depth must be between 1 and {MAX_DEPTH}"));
        }
        if self.threads == 0 {
            return bad("--threads must be at least 1".into());
        }
        positive("--duration", self.duration)?;
        positive("--timeout", self.timeout)
    }
}

/// What a `pingpong` run measured.
///
/// Result-line keys, in order: `mode=pingpong addr connections size depth
/// threads warmup_secs duration_secs echoes echoes_per_sec mib_per_sec
/// p50_us p99_us p999_us max_us verified_bytes`, then `errors` and the
/// counts by kind (see [`super::report`]).
#[derive(Debug, Clone)]
pub struct Report {
    /// What was asked for (`threads` as used: never more than connections).
    pub options: Options,
    /// How long opening every connection took.
    pub connect_time: Duration,
    /// The measured window: `--duration`, or less if every connection
    /// failed before it ended.
    pub measured: Duration,
    /// Echoes (whole messages back and checked) completed in the window.
    pub echoes: u64,
    /// Their round trips: from a message's first byte sent to its last byte
    /// back.
    pub latency: Latency,
    /// Every byte that came back and was checked, warm-up and finish
    /// included.
    pub verified: u64,
    /// Connections that failed, by kind.
    pub failures: Failures,
}

impl Report {
    /// Echoes per second over the measured window.
    pub fn echoes_per_sec(&self) -> f64 {
        report::per_sec(self.echoes, self.measured)
    }

    /// Payload echoed per second, counted once (not once each way), in MiB.
    pub fn mib_per_sec(&self) -> f64 {
        report::mib_per_sec(self.echoes * self.options.size as u64, self.measured)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "pingpong to {}: {}, {}-byte messages, depth {}, {}",
            o.addr,
            report::count(o.connections as u64, "connection"),
            o.size,
            o.depth,
            report::count(o.threads as u64, "thread"),
        )?;
        writeln!(
            f,
            "  opened       {} in {:.3}s",
            report::count(o.connections as u64, "connection"),
            self.connect_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "  measured     {:.3}s after a {:.3}s warm-up",
            self.measured.as_secs_f64(),
            o.warmup.as_secs_f64()
        )?;
        writeln!(
            f,
            "  echoes       {} ({:.0}/s)",
            self.echoes,
            self.echoes_per_sec()
        )?;
        writeln!(
            f,
            "  throughput   {:.2} MiB/s of payload (each way)",
            self.mib_per_sec()
        )?;
        writeln!(
            f,
            "  round trip   p50 {:.1}us  p99 {:.1}us  p99.9 {:.1}us  max {:.1}us",
            self.latency.quantile_us(0.5),
            self.latency.quantile_us(0.99),
            self.latency.quantile_us(0.999),
            self.latency.max_us()
        )?;
        writeln!(f, "  verified     {} bytes", self.verified)?;
        self.failures.fmt(f)
    }
}

impl Outcome for Report {
    fn mode(&self) -> &'static str {
        "pingpong"
    }

    fn addr(&self) -> SocketAddr {
        self.options.addr
    }

    fn add_fields(&self, line: &mut ResultLine) {
        let o = &self.options;
        line.push("connections", o.connections);
        line.push("size", o.size);
        line.push("depth", o.depth);
        line.push("threads", o.threads);
        line.push("warmup_secs", format!("{:.3}", o.warmup.as_secs_f64()));
        line.push(
            "duration_secs",
            format!("{:.3}", self.measured.as_secs_f64()),
        );
        line.push("echoes", self.echoes);
        line.push("echoes_per_sec", format!("{:.0}", self.echoes_per_sec()));
        line.push("mib_per_sec", format!("{:.2}", self.mib_per_sec()));
        line.push("p50_us", format!("{:.1}", self.latency.quantile_us(0.5)));
        line.push("p99_us", format!("{:.1}", self.latency.quantile_us(0.99)));
        line.push("p999_us", format!("{:.1}", self.latency.quantile_us(0.999)));
        line.push("max_us", format!("{:.1}", self.latency.max_us()));
        line.push("verified_bytes", self.verified);
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn connections(&self) -> usize {
        self.options.connections
    }
}

/// Runs the load described by `options` and reports what it measured.
///
/// Raises the process's descriptor limit first (see
/// [`super::ensure_descriptors`]). Fails before any load if the options are
/// impossible or any connection cannot be opened; failures during the load
/// are counted in the report instead.
pub fn run(options: &Options) -> Result<Report, LoadError> {
    options.validate()?;
    ensure_descriptors(options.connections)?;
    let mut options = options.clone();
    options.threads = options.threads.min(options.connections);
    let (parts, connect_time) = run_loops(
        options.addr,
        options.connections,
        options.threads,
        |sources, range, gate| Part::run(&options, sources, range, gate),
    )?;
    let mut report = Report {
        options: options.clone(),
        connect_time,
        measured: Duration::ZERO,
        echoes: 0,
        latency: Latency::new(),
        verified: 0,
        failures: Failures::default(),
    };
    for part in &parts {
        report.measured = report.measured.max(part.measured);
        report.echoes += part.echoes;
        report.latency.merge(&part.latency);
        report.verified += part.verified;
        report.failures.merge(&part.failures);
    }
    Ok(report)
}

impl LoopPart for Part {
    fn take_opened(&mut self) -> Opened {
        std::mem::take(&mut self.opened)
    }
}

/// One loop's share of the run, and what it counted.
struct Part {
    opened: Opened,
    measured: Duration,
    echoes: u64,
    latency: Latency,
    verified: u64,
    failures: Failures,
}

/// One connection's progress through its stream.
struct Conn {
    stream: TcpStream,
    /// The connection's number in the run, for reports.
    number: usize,
    /// Where its stream starts in the pattern.
    phase: usize,
    /// Bytes written.
    sent: u64,
    /// Bytes echoed and checked.
    received: u64,
    /// Messages whose first byte has been written.
    stamped: u64,
    /// When each message in flight started out, at `message % depth`.
    sent_at: Box<[Instant]>,
    /// The kernel refused our last write; a writable event will say when
    /// it has room again. (Not derived: only the kernel knows.)
    write_blocked: bool,
    /// The last time the wait for an echo began or an echo arrived.
    last_progress: Instant,
}

/// What the loop counts, and the window it counts in.
struct Tally {
    from: Instant,
    until: Instant,
    echoes: u64,
    latency: Latency,
    verified: u64,
}

impl Tally {
    /// A message came back whole at `now` after `rtt`.
    fn echo(&mut self, now: Instant, rtt: Duration) {
        if now >= self.from && now < self.until {
            self.echoes += 1;
            self.latency.record(rtt);
        }
    }
}

impl Conn {
    /// How far the stream may have been written: every message echoed plus
    /// `depth` in flight, or, once the run is finishing, only the messages
    /// already begun.
    fn limit(&self, size: u64, finishing: bool) -> u64 {
        if finishing {
            self.stamped * size
        } else {
            (self.received / size + self.sent_at.len() as u64) * size
        }
    }

    /// Bytes written and not yet echoed.
    fn in_flight(&self) -> u64 {
        self.sent - self.received
    }

    /// Writes what the connection may, until the limit or until the kernel
    /// refuses more. Called straight after every read, so a message goes
    /// out in the same turn its predecessor's echo arrived.
    fn send(
        &mut self,
        pattern: &Pattern,
        limit: u64,
        size: u64,
        now: Instant,
    ) -> Result<(), Fault> {
        if self.in_flight() == 0 && self.sent < limit {
            // Nothing was owed to us until now: the wait starts here.
            self.last_progress = now;
        }
        let depth = self.sent_at.len() as u64;
        while self.sent < limit && !self.write_blocked {
            let want = (limit - self.sent).min(IO_CHUNK as u64) as usize;
            match self
                .stream
                .write(pattern.bytes(self.phase, self.sent, want))
            {
                Ok(0) => return Err(Fault::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.sent += n as u64;
                    while self.stamped * size < self.sent {
                        self.sent_at[(self.stamped % depth) as usize] = now;
                        self.stamped += 1;
                    }
                }
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

    /// Reads and checks echoes until the receive queue is empty, and times
    /// every message that came back whole.
    ///
    /// `short_read_is_empty`: a read that returns less than asked proves the
    /// queue is empty (any later byte raises a new event), so the pass ends
    /// there without a read that would only return `WouldBlock`. Not so when
    /// the event says the server closed: its EOF must be read now.
    fn receive(
        &mut self,
        buf: &mut [u8],
        pattern: &Pattern,
        size: u64,
        short_read_is_empty: bool,
        now: Instant,
        tally: &mut Tally,
    ) -> Result<(), Fault> {
        let depth = self.sent_at.len() as u64;
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
            let Some(n) = read else { return Ok(()) };
            // The server closed while it still owed us bytes, or closed a
            // connection we had not: either way, not an echo server's
            // behaviour.
            if n == 0 {
                return Err(Fault::EarlyClose {
                    received: self.received,
                    sent: self.sent,
                });
            }
            let whole_before = self.received / size;
            self.received += n as u64;
            self.last_progress = now;
            tally.verified += n as u64;
            for m in whole_before..self.received / size {
                let rtt = now.saturating_duration_since(self.sent_at[(m % depth) as usize]);
                tally.echo(now, rtt);
            }
            if n < buf.len() && short_read_is_empty {
                return Ok(());
            }
        }
    }
}

/// The loop's state: every connection, the pattern, and the counts.
struct Load<'a> {
    options: &'a Options,
    conns: Vec<Option<Conn>>,
    live: usize,
    pattern: Pattern,
    tally: Tally,
    failures: Failures,
    finishing: bool,
}

impl Part {
    /// Opens this loop's connections and, if the whole run may start, runs
    /// the load over them on this thread.
    fn run(
        options: &Options,
        sources: &[IpAddr],
        range: Range<usize>,
        gate: &Gate,
    ) -> Result<Part, LoadError> {
        let first = range.start;
        let mut share = open_share(options.addr, sources, range, options.timeout, gate)?;
        let mut part = Part {
            opened: Opened::of(&mut share.dialed),
            measured: Duration::ZERO,
            echoes: 0,
            latency: Latency::new(),
            verified: 0,
            failures: Failures::default(),
        };
        if !share.go {
            return Ok(part);
        }

        let started = Instant::now();
        let from = started + options.warmup;
        let conns: Vec<Option<Conn>> = std::mem::take(&mut share.dialed.streams)
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                stream.map(|stream| Conn {
                    stream,
                    number: first + i,
                    phase: Pattern::phase(first + i),
                    sent: 0,
                    received: 0,
                    stamped: 0,
                    sent_at: vec![started; options.depth].into_boxed_slice(),
                    write_blocked: false,
                    last_progress: started,
                })
            })
            .collect();
        let mut load = Load {
            options,
            live: conns.iter().flatten().count(),
            conns,
            pattern: Pattern::new(),
            tally: Tally {
                from,
                until: from + options.duration,
                echoes: 0,
                latency: Latency::new(),
                verified: 0,
            },
            failures: Failures::default(),
            finishing: false,
        };
        let ended = load.run(&mut share, started)?;

        part.measured = ended
            .min(load.tally.until)
            .saturating_duration_since(load.tally.from);
        part.echoes = load.tally.echoes;
        part.latency = load.tally.latency;
        part.verified = load.tally.verified;
        part.failures = load.failures;
        Ok(part)
    }
}

impl Load<'_> {
    /// The loop. Returns when every connection has finished or failed.
    fn run(&mut self, share: &mut super::Share, started: Instant) -> Result<Instant, LoadError> {
        let size = self.options.size as u64;
        // The one read buffer every echo passes through: a local of the
        // loop, allocated once.
        let mut buf = vec![0u8; IO_CHUNK];

        // Every connection starts with `depth` messages.
        for key in 0..self.conns.len() {
            self.pass(key, None, &mut buf, started);
        }

        let mut next_scan = started + TICK;
        let mut drain_deadline = None;
        loop {
            let now = Instant::now();
            if !self.finishing && now >= self.tally.until {
                self.finish();
                drain_deadline = Some(now + self.options.timeout);
            }
            if self.live == 0 {
                return Ok(now);
            }
            if let Some(deadline) = drain_deadline.filter(|d| now >= *d) {
                log::debug!("{} connections unfinished at {deadline:?}", self.live);
                self.abandon_all(size);
                return Ok(now);
            }
            if now >= next_scan {
                self.fail_silent(now);
                next_scan = now + TICK;
            }
            let wake = next_scan.min(drain_deadline.unwrap_or(self.tally.until));
            wait(
                &mut share.poll,
                &mut share.events,
                wake.saturating_duration_since(now),
            )?;
            // Every event is a hint: a readable event may find nothing to
            // read, a token may name a connection closed earlier in this
            // turn. `pass` acts on what the system calls return, so a stale
            // event ends in `WouldBlock`, or in nothing at all.
            for event in share.events.iter() {
                self.pass(event.token().0, Some(event), &mut buf, Instant::now());
            }
        }
    }

    /// Drives connection `key`: read what came back, then send what may go.
    /// `event` is `None` for the first pass, which only sends.
    fn pass(&mut self, key: usize, event: Option<&Event>, buf: &mut [u8], now: Instant) {
        let size = self.options.size as u64;
        let Some(conn) = self.conns.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let mut result = Ok(());
        if let Some(event) = event {
            if event.is_writable() {
                conn.write_blocked = false;
            }
            // An error or hang-up is a reason to read: the read reports it.
            let closed_hint = event.is_read_closed() || event.is_error();
            if event.is_readable() || closed_hint {
                result = conn.receive(buf, &self.pattern, size, !closed_hint, now, &mut self.tally);
            }
        }
        let result = result.and_then(|()| {
            let limit = conn.limit(size, self.finishing);
            conn.send(&self.pattern, limit, size, now)
        });
        match result {
            Err(fault) => self.close(key, Some(fault)),
            Ok(()) if self.finishing && conn.in_flight() == 0 => self.close(key, None),
            Ok(()) => {}
        }
    }

    /// The measured window has ended: no new messages. Connections with
    /// nothing in flight close now; the others once their echoes are back.
    fn finish(&mut self) {
        log::debug!("measurement over; waiting for the echoes in flight");
        self.finishing = true;
        let size = self.options.size as u64;
        for key in 0..self.conns.len() {
            let idle = matches!(&self.conns[key],
                Some(c) if c.in_flight() == 0 && c.sent == c.limit(size, true));
            if idle {
                self.close(key, None);
            }
        }
    }

    /// Fails every connection that has bytes in flight and has heard
    /// nothing for the timeout.
    fn fail_silent(&mut self, now: Instant) {
        let timeout = self.options.timeout;
        for key in 0..self.conns.len() {
            let fault = match &self.conns[key] {
                Some(c) if c.in_flight() > 0 && now - c.last_progress >= timeout => Fault::Silent {
                    waited: now - c.last_progress,
                    received: c.received,
                    sent: c.sent,
                },
                _ => continue,
            };
            self.close(key, Some(fault));
        }
    }

    /// The finish took longer than the timeout: every connection still
    /// open fails.
    fn abandon_all(&mut self, size: u64) {
        for key in 0..self.conns.len() {
            let fault = match &self.conns[key] {
                Some(c) => Fault::Unfinished {
                    received: c.received,
                    expected: c.limit(size, true),
                },
                None => continue,
            };
            self.close(key, Some(fault));
        }
    }

    /// Closes connection `key` (dropping the socket closes it), counting
    /// `fault` if it failed.
    fn close(&mut self, key: usize, fault: Option<Fault>) {
        if let Some(conn) = self.conns[key].take() {
            if let Some(fault) = fault {
                self.failures.record(conn.number, &fault);
            }
            self.live -= 1;
        }
    }
}
