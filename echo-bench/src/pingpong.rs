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
//! 4. Finish: send no new message (but the rest of one begun), half-close,
//!    and wait (at most `--timeout`) for every byte in flight to come back
//!    and be checked, followed by exactly the server's EOF: a byte more, a
//!    reset, or no EOF in time counts as a failure, as in every mode.
//!
//! A connection with bytes in flight and no echo for `--timeout` counts as
//! failed; so does a reset, an early close, or a byte that differs. The run
//! goes on with the others.
//!
//! # Closed loop, and its blind spot
//!
//! Without `--rate`, a connection sends its next message only when an echo
//! frees a slot: the load waits for the server. So a server that stalls for
//! 500 ms delays one message per slot, which shows as one slow sample,
//! while the hundreds of messages a real client would have sent during the
//! stall are never sent, so never measured ("coordinated omission"). The
//! percentiles of this mode describe a polite client, not the server's
//! latency under a load; the report says so. `--rate` runs the open-loop
//! schedule of [`super::paced`] instead, which measures each message from
//! the moment it was due.
//!
//! Read next: [`super::paced`] for `--rate`, then [`super::stream`] for
//! bulk transfer in both directions.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::dial;
use super::driver::{Conn, Flow, Mode, Next};
use super::paced::Paced;
use super::pattern::Pattern;
use super::report::{self, Failures, Fault, Latency, Outcome, Percentiles, ResultLine};
use super::run::{self, Plan};
use super::{positive, LoadError, DEFAULT_TIMEOUT};

/// The largest `--size`: one message larger than this is a bulk transfer,
/// which `stream` measures better.
pub const MAX_SIZE: usize = 16 * 1024 * 1024;

/// The largest `--depth`.
pub const MAX_DEPTH: usize = 1024;

/// The `--depth` of a run with a `--rate` unless told otherwise: how many
/// messages a connection may have in flight before it counts as behind.
/// The schedule keeps no per-message memory (a message's due time is
/// computed from its number), so a deep pipeline costs only socket buffer.
pub const RATE_DEPTH: usize = MAX_DEPTH;

/// The largest `--rate`, in messages per second: far beyond what one
/// process can send, small enough that the schedule's picosecond step
/// stays exact.
pub const MAX_RATE: f64 = 1e9;

/// What a `pingpong` run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The echo server.
    pub addr: SocketAddr,
    /// How many connections, all busy at once.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection (1: strict ping-pong); with a
    /// `rate`, the most in flight before a connection is behind.
    pub depth: usize,
    /// Open loop: messages per second over all connections, each sent when
    /// the schedule says and timed from then ([`super::paced`]). `None`:
    /// closed loop, each message sent when an echo frees its slot.
    pub rate: Option<f64>,
    /// The latency percentiles to report.
    pub percentiles: Percentiles,
    /// How long to measure, after the warm-up.
    pub duration: Duration,
    /// How long to run at full load before measuring.
    pub warmup: Duration,
    /// How long a connection may take to open, and how long the server may
    /// leave it without an echo while bytes are in flight.
    pub timeout: Duration,
    /// Poll loops (threads) to spread the connections over.
    pub threads: usize,
    /// Source addresses to spread the connections over (see
    /// [`dial::Sources`]). Only for an IPv4 loopback server.
    pub sources: dial::Sources,
    /// When the load (its warm-up) starts, on the wall clock, once every
    /// connection is open; `None`: at once. Several processes given one
    /// time measure the same window.
    pub start_at: Option<std::time::SystemTime>,
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
            rate: None,
            percentiles: Percentiles::default(),
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            timeout: DEFAULT_TIMEOUT,
            threads: 1,
            sources: dial::Sources::Chosen,
            start_at: None,
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
        if let Some(rate) = self.rate {
            // Also refuses NaN.
            if !(rate > 0.0 && rate <= MAX_RATE) {
                return bad(format!(
                    "--rate must be more than 0 and at most {MAX_RATE:e} messages per second"
                ));
            }
        }
        positive("--duration", self.duration)?;
        positive("--timeout", self.timeout)?;
        self.sources.addrs(self.addr, self.connections).map(|_| ())
    }
}

/// What a `pingpong` run measured.
///
/// Result-line keys, in order: `mode=pingpong addr connections size depth
/// threads connect_secs warmup_secs duration_secs`, with a rate `rate
/// achieved_rate kept_up behind unsent`, then `latency` (`closed_loop` or
/// `from_intended`), `echoes echoes_per_sec mib_per_sec`, one `pNN_us` per
/// percentile (`p50_us p99_us p99_9_us` unless `--percentiles` says
/// otherwise), `max_us verified_bytes`, then `errors` and the counts by
/// kind (see [`super::report`]).
#[derive(Debug, Clone)]
pub struct Report {
    /// What was asked for (`threads` as used: never more than connections).
    pub options: Options,
    /// How long opening every connection took.
    pub connect_time: Duration,
    /// How late the load started after `--start-at` (connections were
    /// still opening then).
    pub start_late: Duration,
    /// The measured window: `--duration`, or less if every connection
    /// failed before it ended.
    pub measured: Duration,
    /// Echoes (whole messages back and checked) completed in the window.
    pub echoes: u64,
    /// Their round trips: from a message's first byte sent (with a rate:
    /// from when it was due) to its last byte back.
    pub latency: Latency,
    /// With a rate: how the schedule went.
    pub pacing: Option<Pacing>,
    /// Every byte that came back and was checked, warm-up and finish
    /// included.
    pub verified: u64,
    /// Connections that failed, by kind.
    pub failures: Failures,
}

/// How an open-loop run's schedule went (see [`super::paced`]).
#[derive(Debug, Clone, Default)]
pub struct Pacing {
    /// Messages per second asked for, over all connections.
    pub requested: f64,
    /// Messages due and not yet echoed when the measured window began.
    pub lag_start: u64,
    /// Messages due and not yet echoed when it ended.
    pub lag_end: u64,
    /// Messages due in the window that were never sent: the server was so
    /// far behind that every connection had `--depth` in flight. Each is
    /// in the latency with the time it had waited when the run ended, a
    /// lower bound.
    pub unsent: u64,
}

impl Pacing {
    /// How much the backlog grew over the window, in messages.
    pub fn behind(&self) -> u64 {
        self.lag_end.saturating_sub(self.lag_start)
    }
}

/// The share of the requested rate a run must achieve to have kept up.
const KEPT_UP: f64 = 0.99;

/// How much of the schedule a backlog may grow by between the window's
/// start and end and still count as steady.
const BACKLOG_NOISE: Duration = Duration::from_millis(50);

impl Report {
    /// Echoes per second over the measured window.
    pub fn echoes_per_sec(&self) -> f64 {
        report::per_sec(self.echoes, self.measured)
    }

    /// With a rate: whether the server kept up, that is, echoed at least
    /// 99% of the rate asked for, and its backlog grew by no more than 1%
    /// of the messages due in the window or 50 ms of the
    /// schedule, whichever is more (a backlog is never quite steady: at any
    /// moment it holds the messages of one round trip). A server that did
    /// not keep up has latencies that grow with the length of the run, so
    /// they describe the run, not the server.
    pub fn kept_up(&self) -> Option<bool> {
        let pacing = self.pacing.as_ref()?;
        let due = pacing.requested * self.measured.as_secs_f64();
        let noise = pacing.requested * BACKLOG_NOISE.as_secs_f64();
        let allowed = (due * (1.0 - KEPT_UP)).max(noise).max(1.0);
        // One message of slack: at a low rate a window holds only a few,
        // and one short is already more than 1%.
        Some(self.echoes as f64 + 1.0 >= KEPT_UP * due && pacing.behind() as f64 <= allowed)
    }

    /// Payload echoed per second, counted once (not once each way), in MiB.
    pub fn mib_per_sec(&self) -> f64 {
        report::mib_per_sec(self.echoes * self.options.size as u64, self.measured)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let shape = match &self.pacing {
            None => format!("depth {}", o.depth),
            Some(p) => format!(
                "{}/s open loop (at most {} in flight each)",
                p.requested, o.depth
            ),
        };
        writeln!(
            f,
            "pingpong to {}: {}, {}-byte messages, {shape}, {}",
            o.addr,
            report::count(o.connections as u64, "connection"),
            o.size,
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
        if let Some(p) = &self.pacing {
            writeln!(
                f,
                "  rate         {}/s requested, {}/s achieved",
                p.requested,
                report::rate(self.echoes_per_sec())
            )?;
        }
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
        let percentiles = self.latency.summary(&o.percentiles);
        match &self.pacing {
            None => {
                writeln!(f, "  round trip   {percentiles}")?;
                writeln!(
                    f,
                    "               (closed loop: each message waits for an echo, so a stall \
                     counts once; use --rate for latency under a steady load)"
                )?;
            }
            Some(_) => {
                writeln!(f, "  latency      {percentiles}")?;
                writeln!(
                    f,
                    "               (open loop: from each message's due time, whenever it was sent)"
                )?;
            }
        }
        writeln!(f, "  verified     {} bytes", self.verified)?;
        self.failures.fmt(f)?;
        if let (Some(p), Some(false)) = (&self.pacing, self.kept_up()) {
            writeln!(
                f,
                "  the server did not keep up: achieved {}/s of {}/s requested \
                 (latency grows with the run)",
                report::rate(self.echoes_per_sec()),
                p.requested
            )?;
            if p.behind() > 0 || p.unsent > 0 {
                writeln!(
                    f,
                    "               the backlog grew by {} messages over the window; {} due were \
                     never sent",
                    p.behind(),
                    p.unsent
                )?;
            }
        }
        Ok(())
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
        if o.start_at.is_some() {
            line.push(
                "start_late_secs",
                format!("{:.3}", self.start_late.as_secs_f64()),
            );
        }
        line.push("warmup_secs", format!("{:.3}", o.warmup.as_secs_f64()));
        line.push(
            "duration_secs",
            format!("{:.3}", self.measured.as_secs_f64()),
        );
        if let Some(p) = &self.pacing {
            line.push("rate", p.requested);
            line.push("achieved_rate", report::rate(self.echoes_per_sec()));
            line.push("kept_up", self.kept_up().unwrap_or(false));
            line.push("behind", p.behind());
            line.push("unsent", p.unsent);
        }
        let latency = match self.pacing {
            None => "closed_loop",
            Some(_) => "from_intended",
        };
        line.push("latency", latency);
        line.push("echoes", self.echoes);
        line.push("echoes_per_sec", format!("{:.0}", self.echoes_per_sec()));
        line.push("mib_per_sec", format!("{:.2}", self.mib_per_sec()));
        self.latency.add_to(line, &o.percentiles);
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
    let plan = Plan {
        sources: options.sources,
        start_at: options.start_at,
        ..Plan::every(
            options.addr,
            options.connections,
            options.threads,
            options.timeout,
        )
    };
    let mut report = Report {
        options: options.clone(),
        connect_time: Duration::ZERO,
        start_late: Duration::ZERO,
        measured: Duration::ZERO,
        echoes: 0,
        latency: Latency::new(),
        pacing: None,
        verified: 0,
        failures: Failures::default(),
    };
    match options.rate {
        None => {
            let run = run::run(&plan, || PingPong::new(&options))?;
            report.connect_time = run.open_time;
            report.start_late = run.late;
            for ran in &run.loops {
                report.add(&ran.mode.tally, ran.ended, &ran.failures);
            }
        }
        Some(rate) => {
            let run = run::run(&plan, || Paced::new(&options, rate))?;
            report.connect_time = run.open_time;
            report.start_late = run.late;
            let mut pacing = Pacing {
                requested: rate,
                ..Pacing::default()
            };
            for ran in &run.loops {
                report.add(ran.mode.tally(), ran.ended, &ran.failures);
                ran.mode.add_pacing(&mut pacing);
            }
            report.pacing = Some(pacing);
        }
    }
    Ok(report)
}

/// What a connection still open at the end of the finish lacks: echoes of
/// the `expected` bytes, or, with every one back, the server's EOF (for
/// the whole `timeout`).
pub(crate) fn end_missing<S>(conn: &Conn<S>, expected: u64, timeout: Duration) -> Fault {
    if conn.in_flight() == 0 {
        return Fault::Silent {
            waited: timeout,
            received: conn.received(),
            sent: conn.sent(),
        };
    }
    Fault::Unfinished {
        received: conn.received(),
        expected,
    }
}

impl Report {
    /// Adds what one loop counted, until it `ended`.
    fn add(&mut self, tally: &Tally, ended: Instant, failures: &Failures) {
        let measured = ended.min(tally.until).saturating_duration_since(tally.from);
        self.measured = self.measured.max(measured);
        self.echoes += tally.echoes;
        self.latency.merge(&tally.latency);
        self.verified += tally.verified;
        self.failures.merge(failures);
    }
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
    /// Half-closed: every message begun is written, and the server's EOF
    /// is due after the last echo.
    shut: bool,
}

/// What a loop counts, and the window it counts in.
pub(crate) struct Tally {
    /// The measured window.
    pub(crate) from: Instant,
    pub(crate) until: Instant,
    /// Echoes that came back whole in the window.
    pub(crate) echoes: u64,
    /// Their round trips (closed loop), or the latencies of the messages
    /// due in the window (open loop).
    pub(crate) latency: Latency,
    /// Every byte checked.
    pub(crate) verified: u64,
}

impl Tally {
    /// A window that begins and ends at `now`, for `start` to move.
    pub(crate) fn new(now: Instant) -> Tally {
        Tally {
            from: now,
            until: now,
            echoes: 0,
            latency: Latency::new(),
            verified: 0,
        }
    }

    /// Whether `at` falls in the window.
    pub(crate) fn within(&self, at: Instant) -> bool {
        at >= self.from && at < self.until
    }

    /// A message came back whole at `now` after `rtt`.
    fn echo(&mut self, now: Instant, rtt: Duration) {
        if self.within(now) {
            self.echoes += 1;
            self.latency.record(rtt);
        }
    }
}

impl PingPong<'_> {
    fn new(options: &Options) -> PingPong<'_> {
        // The window is set when the load starts.
        PingPong {
            options,
            size: options.size as u64,
            phase: Phase::Loading,
            tally: Tally::new(Instant::now()),
        }
    }

    /// Past the measured window.
    fn finishing(&self) -> bool {
        !matches!(self.phase, Phase::Loading)
    }

    /// Finishing: half-closes `conn` once its last message begun is
    /// written. Out of line: the hot path pays one comparison for it.
    #[cold]
    fn half_close(&self, conn: &mut Conn<Ring>) -> Result<Next, Fault> {
        if !conn.state.shut && conn.sent() == conn.state.stamped * self.size {
            conn.shutdown_write()?;
            conn.state.shut = true;
        }
        Ok(Next::Continue)
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
            shut: false,
        }
    }

    /// Writes what the connection may and stamps every message begun.
    /// Called straight after every read, so a message goes out in the same
    /// turn its predecessor's echo arrived. Finishing, it writes the rest
    /// of the last message begun, then half-closes.
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
        if self.finishing() {
            return self.half_close(conn);
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

    /// Half-closed with every echo back: the EOF is next.
    #[inline]
    fn eof_due(&self, conn: &Conn<Ring>) -> bool {
        conn.state.shut && conn.in_flight() == 0
    }

    fn silence_limit(&self) -> Option<Duration> {
        Some(self.options.timeout)
    }

    /// Bytes in flight are owed, and after the half-close the EOF: a
    /// connection that has every echo back while loading waits for nothing.
    fn owed(&self, conn: &Conn<Ring>) -> bool {
        conn.in_flight() > 0 || conn.state.shut
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
                log::debug!("measurement over; half-closing, waiting for the echoes in flight");
                self.phase = Phase::Finishing {
                    until: now + self.options.timeout,
                };
                // Every connection finishes its last message and
                // half-closes.
                Flow::Send {
                    from: 0,
                    count: usize::MAX,
                }
            }
            Phase::Finishing { until } => {
                log::debug!("{live} connections unfinished at {until:?}");
                self.phase = Phase::Over;
                Flow::Stop
            }
            Phase::Over => Flow::Stop,
        }
    }

    /// Over: every connection still open (an echo or the EOF missing)
    /// fails. Until then connections close by their EOF.
    fn sweep(&mut self, conn: &Conn<Ring>, _now: Instant) -> Result<Next, Fault> {
        match self.phase {
            Phase::Loading | Phase::Finishing { .. } => Ok(Next::Continue),
            Phase::Over => Err(end_missing(
                conn,
                conn.state.stamped * self.size,
                self.options.timeout,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A paced report of `echoes` in `secs` at `rate`, its backlog steady.
    fn paced(rate: f64, secs: u64, echoes: u64) -> Report {
        Report {
            options: Options::new("127.0.0.1:7".parse().unwrap()),
            connect_time: Duration::ZERO,
            start_late: Duration::ZERO,
            measured: Duration::from_secs(secs),
            echoes,
            latency: Latency::new(),
            pacing: Some(Pacing {
                requested: rate,
                ..Pacing::default()
            }),
            verified: 0,
            failures: Failures::default(),
        }
    }

    /// At a low rate a window holds a few messages, and one short is more
    /// than 1%: a server that echoed all but the one at the window's edge
    /// kept up; one that missed two of three did not.
    #[test]
    fn kept_up_allows_one_message_at_a_low_rate() {
        assert_eq!(paced(0.5, 5, 2).kept_up(), Some(true));
        assert_eq!(paced(0.5, 5, 1).kept_up(), Some(false));
        assert_eq!(paced(10_000.0, 5, 49_600).kept_up(), Some(true));
        assert_eq!(paced(10_000.0, 5, 49_000).kept_up(), Some(false));
        assert_eq!(report::rate(0.4), "0.400");
        assert_eq!(report::rate(12.5), "12.5");
        assert_eq!(report::rate(19_998.4), "19998");
    }
}
