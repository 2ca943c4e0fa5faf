//! `stream`: full-duplex bulk transfer. Each connection writes its share of
//! the bytes as fast as the server takes them while reading the echo back
//! at the same time, then half-closes and reads to the server's EOF.
//!
//! `--bytes` is the total over all connections, split evenly (the first
//! `bytes % connections` connections carry one byte more), so runs with 1
//! and 10 connections move the same amount and their times compare.
//!
//! Writing and reading at once is what makes a bulk echo work at all: the
//! server stops reading while it owes us bytes, so a client that wrote
//! everything before reading would wait on a server that waits on it. Here
//! each connection writes until the kernel refuses (then waits for a
//! writable event) and reads whenever an event says there is something,
//! 32 KiB per call either way.
//!
//! A connection is done when every byte came back, checked, followed by the
//! server's EOF: the half-close tests that the server finishes what it owes
//! before closing. No progress for `--timeout`, or the `--max-time`
//! deadline, fails the connections still going.
//!
//! Read next: [`super::connections`] for many connections held at once.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;

use super::pattern::{read_echo, Pattern};
use super::report::{self, Failures, Fault, Outcome, ResultLine};
use super::{
    ensure_descriptors, open_share, positive, run_loops, wait, Gate, LoadError, LoopPart, Opened,
    Share, DEFAULT_TIMEOUT, IO_CHUNK, TICK,
};

/// The default for `--max-time`: the longest a transfer may take in all.
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(120);

/// What a `stream` run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The echo server.
    pub addr: SocketAddr,
    /// Bytes to send, over all connections together; each comes back once.
    pub bytes: u64,
    /// How many connections share the bytes.
    pub connections: usize,
    /// How long a connection may take to open, and how long the server may
    /// go without echoing anything on a connection that is still going.
    pub timeout: Duration,
    /// The longest the whole transfer may take, once connected.
    pub max_time: Duration,
    /// Poll loops (threads) to spread the connections over.
    pub threads: usize,
}

impl Options {
    /// 1 GiB over one connection, one thread.
    pub fn new(addr: SocketAddr) -> Options {
        Options {
            addr,
            bytes: 1 << 30,
            connections: 1,
            timeout: DEFAULT_TIMEOUT,
            max_time: DEFAULT_MAX_TIME,
            threads: 1,
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        if self.connections == 0 {
            return Err(LoadError::Config("--connections must be at least 1".into()));
        }
        if self.bytes < self.connections as u64 {
            return Err(LoadError::Config(format!(
                "--bytes ({}) must be at least one per connection ({})",
                self.bytes, self.connections
            )));
        }
        if self.threads == 0 {
            return Err(LoadError::Config("--threads must be at least 1".into()));
        }
        positive("--timeout", self.timeout)?;
        positive("--max-time", self.max_time)
    }

    /// The bytes connection `i` carries.
    fn quota(&self, i: usize) -> u64 {
        let n = self.connections as u64;
        self.bytes / n + u64::from((i as u64) < self.bytes % n)
    }
}

/// What a `stream` run measured.
///
/// Result-line keys, in order: `mode=stream addr connections threads bytes
/// echoed_bytes secs mib_per_sec`, then `errors` and the counts by kind.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was asked for (`threads` as used: never more than connections).
    pub options: Options,
    /// How long opening every connection took.
    pub connect_time: Duration,
    /// From the start of the transfer until the last connection finished
    /// (or failed).
    pub elapsed: Duration,
    /// Bytes that came back and were checked.
    pub echoed: u64,
    /// Connections that failed, by kind.
    pub failures: Failures,
}

impl Report {
    /// Echoed bytes per second, in MiB. Each byte also went out once, so
    /// the loopback carried twice this.
    pub fn mib_per_sec(&self) -> f64 {
        report::mib_per_sec(self.echoed, self.elapsed)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "stream to {}: {} bytes over {}, {}",
            o.addr,
            o.bytes,
            report::count(o.connections as u64, "connection"),
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
            "  echoed       {} bytes in {:.3}s",
            self.echoed,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  throughput   {:.2} MiB/s echoed (each byte crossed loopback twice)",
            self.mib_per_sec()
        )?;
        self.failures.fmt(f)
    }
}

impl Outcome for Report {
    fn mode(&self) -> &'static str {
        "stream"
    }

    fn addr(&self) -> SocketAddr {
        self.options.addr
    }

    fn add_fields(&self, line: &mut ResultLine) {
        let o = &self.options;
        line.push("connections", o.connections);
        line.push("threads", o.threads);
        line.push("bytes", o.bytes);
        line.push("echoed_bytes", self.echoed);
        line.push("secs", format!("{:.3}", self.elapsed.as_secs_f64()));
        line.push("mib_per_sec", format!("{:.2}", self.mib_per_sec()));
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn connections(&self) -> usize {
        self.options.connections
    }
}

/// Runs the transfer described by `options` and reports its throughput.
///
/// Raises the process's descriptor limit first. Fails before any transfer
/// if the options are impossible or any connection cannot be opened;
/// failures during the transfer are counted in the report instead.
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
        options,
        connect_time,
        elapsed: Duration::ZERO,
        echoed: 0,
        failures: Failures::default(),
    };
    for part in &parts {
        report.elapsed = report.elapsed.max(part.elapsed);
        report.echoed += part.echoed;
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
    elapsed: Duration,
    echoed: u64,
    failures: Failures,
}

/// One connection's transfer.
struct Conn {
    stream: TcpStream,
    /// The connection's number in the run, for reports.
    number: usize,
    /// Where its stream starts in the pattern.
    phase: usize,
    /// The bytes it sends, and must get back.
    quota: u64,
    /// Bytes written.
    sent: u64,
    /// Bytes echoed and checked.
    received: u64,
    /// The kernel refused our last write; a writable event will say when
    /// it has room again.
    write_blocked: bool,
    /// When the last echo arrived (or the transfer started).
    last_progress: Instant,
}

/// What a pass over a connection decided.
enum Next {
    /// More to move; wait for the next event.
    Wait,
    /// Everything came back, then the server's EOF.
    Done,
}

impl Conn {
    /// Writes until the quota is sent or the kernel refuses more; then
    /// half-closes, once, so the server's EOF will follow the last echo.
    fn send(&mut self, pattern: &Pattern) -> Result<(), Fault> {
        while self.sent < self.quota && !self.write_blocked {
            let want = (self.quota - self.sent).min(IO_CHUNK as u64) as usize;
            match self
                .stream
                .write(pattern.bytes(self.phase, self.sent, want))
            {
                Ok(0) => return Err(Fault::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.sent += n as u64;
                    if self.sent == self.quota {
                        self.stream.shutdown(Shutdown::Write).map_err(Fault::Io)?;
                    }
                }
                // The send buffer is full (the server is behind, or its
                // buffer is full because we are): wait for writable.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Io(e)),
            }
        }
        Ok(())
    }

    /// Reads and checks the echo until the receive queue is empty (see
    /// [`super::pingpong`] for `short_read_is_empty`).
    fn receive(
        &mut self,
        buf: &mut [u8],
        pattern: &Pattern,
        short_read_is_empty: bool,
        now: Instant,
    ) -> Result<Next, Fault> {
        loop {
            let read = read_echo(
                &mut self.stream,
                buf,
                pattern,
                self.phase,
                self.received,
                self.sent,
            )?;
            let Some(n) = read else { return Ok(Next::Wait) };
            // The server's EOF: the end if it echoed everything after our
            // half-close, an early close otherwise.
            if n == 0 {
                if self.received == self.quota {
                    return Ok(Next::Done);
                }
                return Err(Fault::EarlyClose {
                    received: self.received,
                    sent: self.sent,
                });
            }
            self.received += n as u64;
            self.last_progress = now;
            // The EOF may be queued behind the last bytes: only a read can
            // tell, so keep reading once everything is back.
            if n < buf.len() && short_read_is_empty && self.received < self.quota {
                return Ok(Next::Wait);
            }
        }
    }
}

impl Part {
    /// Opens this loop's connections and, if the whole run may start, runs
    /// the transfer over them on this thread.
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
            elapsed: Duration::ZERO,
            echoed: 0,
            failures: Failures::default(),
        };
        if !share.go {
            return Ok(part);
        }
        let started = Instant::now();
        let conns = std::mem::take(&mut share.dialed.streams)
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                stream.map(|stream| Conn {
                    stream,
                    number: first + i,
                    phase: Pattern::phase(first + i),
                    quota: options.quota(first + i),
                    sent: 0,
                    received: 0,
                    write_blocked: false,
                    last_progress: started,
                })
            })
            .collect();
        let mut load = Load {
            options,
            conns,
            pattern: Pattern::new(),
            echoed: 0,
            failures: Failures::default(),
        };
        let ended = load.run(&mut share, started)?;
        part.elapsed = ended - started;
        part.echoed = load.echoed;
        part.failures = load.failures;
        Ok(part)
    }
}

/// The loop's state.
struct Load<'a> {
    options: &'a Options,
    conns: Vec<Option<Conn>>,
    pattern: Pattern,
    /// Bytes echoed on connections that have closed (finished or failed).
    echoed: u64,
    failures: Failures,
}

impl Load<'_> {
    /// The loop. Returns when every connection has finished or failed.
    fn run(&mut self, share: &mut Share, started: Instant) -> Result<Instant, LoadError> {
        let deadline = started + self.options.max_time;
        let mut buf = vec![0u8; IO_CHUNK];
        let mut live = self.conns.iter().flatten().count();

        for key in 0..self.conns.len() {
            live -= usize::from(self.pass(key, None, &mut buf, started));
        }
        let mut next_scan = started + TICK;
        loop {
            let now = Instant::now();
            if live == 0 {
                return Ok(now);
            }
            if now >= deadline {
                for key in 0..self.conns.len() {
                    if let Some(c) = &self.conns[key] {
                        let fault = Fault::Unfinished {
                            received: c.received,
                            expected: c.quota,
                        };
                        self.close(key, Some(fault));
                    }
                }
                return Ok(now);
            }
            if now >= next_scan {
                live -= self.fail_silent(now);
                next_scan = now + TICK;
            }
            wait(
                &mut share.poll,
                &mut share.events,
                next_scan.min(deadline).saturating_duration_since(now),
            )?;
            // Every event is a hint; see `pingpong` for why that is safe.
            for event in share.events.iter() {
                live -=
                    usize::from(self.pass(event.token().0, Some(event), &mut buf, Instant::now()));
            }
        }
    }

    /// Drives connection `key`: read what came back, write what may go.
    /// True if the connection closed (finished or failed).
    fn pass(&mut self, key: usize, event: Option<&Event>, buf: &mut [u8], now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(key).and_then(Option::as_mut) else {
            return false;
        };
        let mut result = Ok(Next::Wait);
        if let Some(event) = event {
            if event.is_writable() {
                conn.write_blocked = false;
            }
            let closed_hint = event.is_read_closed() || event.is_error();
            if event.is_readable() || closed_hint {
                result = conn.receive(buf, &self.pattern, !closed_hint, now);
            }
        }
        let result = result.and_then(|next| conn.send(&self.pattern).map(|()| next));
        match result {
            Ok(Next::Wait) => false,
            Ok(Next::Done) => self.close(key, None),
            Err(fault) => self.close(key, Some(fault)),
        }
    }

    /// Fails every connection that has heard nothing for the timeout.
    /// Returns how many.
    fn fail_silent(&mut self, now: Instant) -> usize {
        let timeout = self.options.timeout;
        let mut failed = 0;
        for key in 0..self.conns.len() {
            let fault = match &self.conns[key] {
                Some(c) if now - c.last_progress >= timeout => Fault::Silent {
                    waited: now - c.last_progress,
                    received: c.received,
                    sent: c.sent,
                },
                _ => continue,
            };
            failed += usize::from(self.close(key, Some(fault)));
        }
        failed
    }

    /// Closes connection `key`, counting its echoed bytes and its fault, if
    /// any. True if it was open.
    fn close(&mut self, key: usize, fault: Option<Fault>) -> bool {
        let Some(conn) = self.conns[key].take() else {
            return false;
        };
        self.echoed += conn.received;
        if let Some(fault) = fault {
            self.failures.record(conn.number, &fault);
        }
        true
    }
}
