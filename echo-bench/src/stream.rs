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
//! # Latency under a bulk load
//!
//! Each connection times the round trip of one byte in every
//! [`SAMPLE_EVERY`] of its stream: when a write carries the byte at the
//! next sample mark, it notes the time; when the echo passes that mark,
//! the time since is one sample. One sample is in flight per connection at
//! a time (the next mark is the first not yet written when the last came
//! back), so the cost is a comparison per write and per read, nothing per
//! byte. A sample includes the wait behind every byte queued before it:
//! the latency a small message would see sharing the connection with the
//! stream.
//!
//! Read next: [`super::connections`] for many connections held at once.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::driver::{Conn, Flow, Mode, Next};
use super::pattern::Pattern;
use super::report::{self, Failures, Fault, Latency, Outcome, Percentiles, ResultLine};
use super::run::{self, Plan};
use super::{positive, LoadError, DEFAULT_TIMEOUT};

/// The default for `--max-time`: the longest a transfer may take in all.
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(120);

/// How far apart, in the stream, the bytes whose round trips are timed are
/// at the least.
pub const SAMPLE_EVERY: u64 = 64 * 1024;

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
    /// The latency percentiles to report.
    pub percentiles: Percentiles,
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
            percentiles: Percentiles::default(),
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
/// Result-line keys, in order: `mode=stream addr connections threads
/// connect_secs bytes echoed_bytes secs mib_per_sec latency_samples`, one
/// `pNN_us` per percentile, `max_us`, then `errors` and the counts by kind.
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
    /// Round trips of sampled bytes (one per [`SAMPLE_EVERY`] at most).
    pub latency: Latency,
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
        writeln!(
            f,
            "  round trip   {} ({} sampled bytes, each behind the stream's queue)",
            self.latency.summary(&o.percentiles),
            self.latency.count()
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
        line.push(
            "connect_secs",
            format!("{:.3}", self.connect_time.as_secs_f64()),
        );
        line.push("bytes", o.bytes);
        line.push("echoed_bytes", self.echoed);
        line.push("secs", format!("{:.3}", self.elapsed.as_secs_f64()));
        line.push("mib_per_sec", format!("{:.2}", self.mib_per_sec()));
        line.push("latency_samples", self.latency.count());
        self.latency.add_to(line, &o.percentiles);
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
    let mut options = options.clone();
    options.threads = options.threads.min(options.connections);
    let plan = Plan::every(
        options.addr,
        options.connections,
        options.threads,
        options.timeout,
    );
    let run = run::run(&plan, || Transfer {
        options: &options,
        deadline: Instant::now(),
        echoed: 0,
        latency: Latency::new(),
    })?;
    let mut report = Report {
        options: options.clone(),
        connect_time: run.open_time,
        elapsed: Duration::ZERO,
        echoed: 0,
        latency: Latency::new(),
        failures: Failures::default(),
    };
    for ran in &run.loops {
        report.elapsed = report.elapsed.max(ran.elapsed);
        report.echoed += ran.mode.echoed;
        report.latency.merge(&ran.mode.latency);
        report.failures.merge(&ran.failures);
    }
    Ok(report)
}

/// The mode, in one loop.
struct Transfer<'a> {
    options: &'a Options,
    /// The `--max-time` deadline (set when the load starts).
    deadline: Instant,
    /// Bytes echoed and checked.
    echoed: u64,
    /// Round trips of the sampled bytes.
    latency: Latency,
}

/// One connection's transfer: its quota (the bytes it sends, and must get
/// back) and the byte whose round trip it is timing.
struct Share {
    quota: u64,
    /// The offset of the next byte to time.
    mark: u64,
    /// When the byte at `mark` went out, if it has and is not back yet.
    sent_at: Option<Instant>,
}

impl Mode for Transfer<'_> {
    type State = Share;

    fn start(&mut self, now: Instant) {
        self.deadline = now + self.options.max_time;
    }

    fn open(&mut self, number: usize, _now: Instant) -> Share {
        Share {
            quota: self.options.quota(number),
            mark: 0,
            sent_at: None,
        }
    }

    /// Writes until the quota is sent or the kernel refuses more (the
    /// server is behind, or its buffer is full because we are); then
    /// half-closes, once, so the server's EOF will follow the last echo.
    #[inline]
    fn send(
        &mut self,
        conn: &mut Conn<Share>,
        pattern: &Pattern,
        now: Instant,
    ) -> Result<Next, Fault> {
        let quota = conn.state.quota;
        let before = conn.sent();
        conn.write_until(pattern, quota, now)?;
        // This write carried the byte at the mark: time it.
        if conn.state.sent_at.is_none() && conn.sent() > conn.state.mark {
            conn.state.sent_at = Some(now);
        }
        if before < quota && conn.sent() == quota {
            conn.shutdown_write()?;
        }
        Ok(Next::Continue)
    }

    /// Counts the bytes; if the timed byte came back, records its round
    /// trip and sets the next mark at the first byte not yet written.
    #[inline]
    fn received(&mut self, conn: &mut Conn<Share>, from: u64, now: Instant) {
        self.echoed += conn.received() - from;
        if let Some(sent_at) = conn.state.sent_at {
            if conn.received() > conn.state.mark {
                self.latency.record(now.saturating_duration_since(sent_at));
                conn.state.sent_at = None;
                conn.state.mark = conn.sent().next_multiple_of(SAMPLE_EVERY);
            }
        }
    }

    /// The server's EOF ends the transfer once everything came back; it may
    /// be queued behind the last bytes, so the read goes on until it comes.
    fn eof_due(&self, conn: &Conn<Share>) -> bool {
        conn.received() == conn.state.quota
    }

    /// Until the EOF, a connection is always owed something: echoes, or
    /// the EOF itself.
    fn silence_limit(&self) -> Option<Duration> {
        Some(self.options.timeout)
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn on_timer(&mut self, _now: Instant, _live: usize) -> Flow {
        Flow::Stop
    }

    /// `--max-time` passed: every connection still going fails.
    fn sweep(&mut self, conn: &Conn<Share>, _now: Instant) -> Result<Next, Fault> {
        Err(Fault::Unfinished {
            received: conn.received(),
            expected: conn.state.quota,
        })
    }
}
