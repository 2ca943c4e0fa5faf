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
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::driver::{Conn, Flow, Mode, Next};
use super::pattern::Pattern;
use super::report::{self, Failures, Fault, Latency, Outcome, ResultLine};
use super::run::{self, Plan};
use super::{positive, LoadError, DEFAULT_TIMEOUT};

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
/// threads connect_secs warmup_secs duration_secs echoes echoes_per_sec
/// mib_per_sec p50_us p99_us p999_us max_us verified_bytes`, then `errors`
/// and the counts by kind (see [`super::report`]).
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
        line.push(
            "connect_secs",
            format!("{:.3}", self.connect_time.as_secs_f64()),
        );
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
    let mut options = options.clone();
    options.threads = options.threads.min(options.connections);
    let plan = Plan::every(
        options.addr,
        options.connections,
        options.threads,
        options.timeout,
    );
    let run = run::run(&plan, || PingPong::new(&options))?;
    let mut report = Report {
        options: options.clone(),
        connect_time: run.open_time,
        measured: Duration::ZERO,
        echoes: 0,
        latency: Latency::new(),
        verified: 0,
        failures: Failures::default(),
    };
    for ran in &run.loops {
        let tally = &ran.mode.tally;
        let measured = ran
            .ended
            .min(tally.until)
            .saturating_duration_since(tally.from);
        report.measured = report.measured.max(measured);
        report.echoes += tally.echoes;
        report.latency.merge(&tally.latency);
        report.verified += tally.verified;
        report.failures.merge(&ran.failures);
    }
    Ok(report)
}

/// The mode, in one loop: its phase and what it counted.
struct PingPong<'a> {
    options: &'a Options,
    size: u64,
    phase: Phase,
    tally: Tally,
}

/// Where a loop's run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Warm-up, then the measured window: every connection keeps `depth`
    /// messages in flight.
    Loading,
    /// The window is over: no new message; connections close as their last
    /// echoes come back, until `until`.
    Finishing {
        /// When the connections still waiting fail as unfinished.
        until: Instant,
    },
    /// The finish took longer than the timeout.
    Over,
}

/// One connection's messages in flight: message `m`'s send time at
/// `m % depth`.
struct Ring {
    /// Messages whose first byte has been written.
    stamped: u64,
    /// When each message in flight started out.
    sent_at: Box<[Instant]>,
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

impl PingPong<'_> {
    fn new(options: &Options) -> PingPong<'_> {
        // The window is set when the load starts.
        let now = Instant::now();
        PingPong {
            options,
            size: options.size as u64,
            phase: Phase::Loading,
            tally: Tally {
                from: now,
                until: now,
                echoes: 0,
                latency: Latency::new(),
                verified: 0,
            },
        }
    }

    /// Past the measured window.
    fn finishing(&self) -> bool {
        !matches!(self.phase, Phase::Loading)
    }

    /// How far `conn`'s stream may have been written: every message echoed
    /// plus `depth` in flight, or, once the run is finishing, only the
    /// messages already begun.
    fn limit(&self, conn: &Conn<Ring>) -> u64 {
        if self.finishing() {
            conn.state.stamped * self.size
        } else {
            (conn.received() / self.size + conn.state.sent_at.len() as u64) * self.size
        }
    }
}

impl Mode for PingPong<'_> {
    type State = Ring;

    fn start(&mut self, now: Instant) {
        self.tally.from = now + self.options.warmup;
        self.tally.until = self.tally.from + self.options.duration;
    }

    fn open(&mut self, _number: usize, now: Instant) -> Ring {
        Ring {
            stamped: 0,
            sent_at: vec![now; self.options.depth].into_boxed_slice(),
        }
    }

    /// Writes what the connection may and stamps every message begun.
    /// Called straight after every read, so a message goes out in the same
    /// turn its predecessor's echo arrived.
    #[inline]
    fn send(
        &mut self,
        conn: &mut Conn<Ring>,
        pattern: &Pattern,
        now: Instant,
    ) -> Result<Next, Fault> {
        conn.write_until(pattern, self.limit(conn), now)?;
        let depth = conn.state.sent_at.len() as u64;
        while conn.state.stamped * self.size < conn.sent() {
            let ring = &mut conn.state;
            ring.sent_at[(ring.stamped % depth) as usize] = now;
            ring.stamped += 1;
        }
        if self.finishing() && conn.in_flight() == 0 {
            return Ok(Next::Done);
        }
        Ok(Next::Continue)
    }

    /// Times every message that came back whole.
    #[inline]
    fn received(&mut self, conn: &mut Conn<Ring>, from: u64, now: Instant) {
        let depth = conn.state.sent_at.len() as u64;
        self.tally.verified += conn.received() - from;
        for m in from / self.size..conn.received() / self.size {
            let rtt = now.saturating_duration_since(conn.state.sent_at[(m % depth) as usize]);
            self.tally.echo(now, rtt);
        }
    }

    /// The checked bytes in whole messages: off by less than one message
    /// per connection (those partly echoed), close enough for a rate.
    fn echoes(&self) -> u64 {
        self.tally.verified / self.size
    }

    fn silence_limit(&self) -> Option<Duration> {
        Some(self.options.timeout)
    }

    /// Only bytes in flight are owed: a connection that has every echo
    /// back is waiting for nothing.
    fn owed(&self, conn: &Conn<Ring>) -> bool {
        conn.in_flight() > 0
    }

    fn deadline(&self) -> Instant {
        match self.phase {
            Phase::Loading => self.tally.until,
            Phase::Finishing { until } => until,
            // Not reached: the loop stops when the phase becomes `Over`.
            Phase::Over => self.tally.until,
        }
    }

    fn on_timer(&mut self, now: Instant, live: usize) -> Flow {
        match self.phase {
            Phase::Loading => {
                log::debug!("measurement over; waiting for the echoes in flight");
                self.phase = Phase::Finishing {
                    until: now + self.options.timeout,
                };
                Flow::Continue
            }
            Phase::Finishing { until } => {
                log::debug!("{live} connections unfinished at {until:?}");
                self.phase = Phase::Over;
                Flow::Stop
            }
            Phase::Over => Flow::Stop,
        }
    }

    /// Finishing: connections with nothing in flight close now, the others
    /// once their echoes are back. Over: every connection still open fails.
    fn sweep(&mut self, conn: &Conn<Ring>, _now: Instant) -> Result<Next, Fault> {
        let expected = conn.state.stamped * self.size;
        match self.phase {
            Phase::Loading => Ok(Next::Continue),
            Phase::Finishing { .. } if conn.in_flight() == 0 && conn.sent() == expected => {
                Ok(Next::Done)
            }
            Phase::Finishing { .. } => Ok(Next::Continue),
            Phase::Over => Err(Fault::Unfinished {
                received: conn.received(),
                expected,
            }),
        }
    }
}
