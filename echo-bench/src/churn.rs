//! `churn`: open, echo over and close connections at a steady rate, and
//! time each step (what tcpkali's `--connect-rate` and `--latency-connect`
//! measure).
//!
//! Every connection lives the whole life of a short client:
//!
//! 1. **Connect** (non-blocking) at its *intended* start: connection `k`
//!    is due `k / --rate` seconds into the run, whatever happened to the
//!    ones before (an open loop: a slow server does not slow the schedule,
//!    so it cannot hide its slowness; see "coordinated omission").
//! 2. **Echo**: send one `--size`-byte message, check the echo byte for
//!    byte.
//! 3. **Close**: half-close, and expect exactly the server's EOF. A byte
//!    more, a reset, or no EOF within `--timeout` fails the connection,
//!    counted by kind.
//!
//! Three times per connection, as percentiles: **connect**, from the
//! intended start to the end of the handshake (so time spent waiting for
//! the loop, or for room under `--concurrency`, counts against the
//! server); **first echo**, from the handshake to the whole echo back; and
//! **lifetime**, from the intended start to the server's EOF. Beside them,
//! the **start lag**, from the intended start to the `connect` call: the
//! part of the connect time that is ours (a busy machine's wake-ups) or
//! the cap's, not the handshake's.
//!
//! `--concurrency` caps the connections open at once (and so the
//! descriptors held). A start that finds the cap reached waits for a close;
//! each such start is counted, and the report says the server did not keep
//! up. Starts still waiting when `--duration` ends are not made (`missed`).
//!
//! # Source addresses and `TIME_WAIT`
//!
//! We half-close first, so the `TIME_WAIT` of every closed connection lands
//! on our side, holding its four-tuple for 60 s (Linux's fixed
//! `TCP_TIMEWAIT_LEN`). One source address has about 28,000 ephemeral
//! ports towards one server, and `connect` gets slow well before they run
//! out (see [`super::dial`]), so one address serves about
//! [`dial::PER_SOURCE`] connections held at once, open or in `TIME_WAIT`.
//!
//! How long a closed connection holds its port depends on the kernel.
//! Where Linux may reuse a `TIME_WAIT` port for a new connection once its
//! last timestamp is a second or so old (`net.ipv4.tcp_tw_reuse` 1, or 2,
//! the default, for loopback; with `tcp_timestamps` on), a port is held
//! about [`TW_REUSE_AFTER`], and one address sustains thousands of
//! connections a second. Without reuse it is held the whole 60 s: one
//! address sustains about 166 a second. So by default the run binds one
//! source address (127.0.0.1, 127.0.0.2, ...) per `PER_SOURCE` connections
//! it starts within that hold: `--rate` × min(`--duration`, hold), the
//! hold read from `/proc/sys/net/ipv4` ([`port_hold`]).
//!
//! One loop, on the calling thread, drives every connection: the driver
//! opens each when the mode says it is due (`Mode::open_due` in
//! `src/driver.rs`).
//!
//! Read next: [`super::udp`] for datagrams.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::dial::{self, Opener};
use super::driver::{self, Conn, Flow, Mode, Next};
use super::pattern::Pattern;
use super::report::{self, Failure, Failures, Fault, Latency, Outcome, Percentiles, ResultLine};
use super::{ensure_descriptors, positive, LoadError, DEFAULT_TIMEOUT};

/// The highest `--rate`: far beyond what one loop can open.
pub const MAX_RATE: f64 = 1_000_000.0;

/// How long a closed connection's port stays in `TIME_WAIT` on Linux
/// (`TCP_TIMEWAIT_LEN`, not configurable).
pub const TIME_WAIT: Duration = Duration::from_secs(60);

/// How long a closed connection holds its port where Linux reuses
/// `TIME_WAIT` ports: its last timestamp must be older than the current
/// second, so one to two seconds.
pub const TW_REUSE_AFTER: Duration = Duration::from_secs(2);

/// Events taken from the kernel per `poll`.
const EVENTS: usize = 1024;

/// What a `churn` run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The echo server.
    pub addr: SocketAddr,
    /// Connections to start per second.
    pub rate: f64,
    /// How long to start connections for.
    pub duration: Duration,
    /// The most connections open at once.
    pub concurrency: usize,
    /// Bytes in each connection's one message.
    pub size: usize,
    /// Source addresses 127.0.0.1 ..= 127.0.0.K, taken in turn; 0 chooses
    /// (see the module docs). Only for an IPv4 loopback server.
    pub sources: usize,
    /// How long a connection may take to open, to echo, and to close.
    pub timeout: Duration,
    /// The percentiles to report of each time.
    pub percentiles: Percentiles,
}

impl Options {
    /// 100 connections a second for 5 s, at most 1,000 open, a 32-byte
    /// message each; p50, p99 and p99.9.
    pub fn new(addr: SocketAddr) -> Options {
        Options {
            addr,
            rate: 100.0,
            duration: Duration::from_secs(5),
            concurrency: 1000,
            size: 32,
            sources: 0,
            timeout: DEFAULT_TIMEOUT,
            percentiles: Percentiles::default(),
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |what: String| Err(LoadError::Config(what));
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return bad(format!(
                "--rate must be more than 0 and at most {MAX_RATE} connections a second"
            ));
        }
        if self.concurrency == 0 {
            return bad("--concurrency must be at least 1".into());
        }
        if !(1..=super::IO_CHUNK).contains(&self.size) {
            return bad(format!(
                "--size must be between 1 and {} bytes",
                super::IO_CHUNK
            ));
        }
        positive("--duration", self.duration)?;
        positive("--timeout", self.timeout)?;
        self.source_addrs().map(|_| ())
    }

    /// Connections due within `--duration`: those whose intended start,
    /// `k / rate`, comes before its end.
    pub fn requested(&self) -> usize {
        super::due_within(self.duration, self.rate) as usize
    }

    /// The source addresses to bind, in turn; empty to let the kernel pick.
    /// By default enough for the connections started while a closed one
    /// still holds its port ([`port_hold`]; see the module docs).
    pub fn source_addrs(&self) -> Result<Vec<IpAddr>, LoadError> {
        let held = self.duration.min(port_hold(self.addr));
        let count = super::due_within(held, self.rate) as usize;
        dial::sources_for(self.addr, count, self.sources)
    }
}

/// How long a connection to `target`, closed by us first, keeps its source
/// port from new connections to the same server: [`TW_REUSE_AFTER`] where
/// the kernel reuses `TIME_WAIT` ports for it (`net.ipv4.tcp_tw_reuse` 1,
/// or 2 and a loopback server, with `net.ipv4.tcp_timestamps` on), else
/// the whole [`TIME_WAIT`] (also when the settings cannot be read).
pub fn port_hold(target: SocketAddr) -> Duration {
    let setting = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
    };
    let timestamps = setting("tcp_timestamps").is_some_and(|t| t != 0);
    let reuse = match setting("tcp_tw_reuse") {
        Some(1) => true,
        Some(2) => target.ip().is_loopback(),
        _ => false,
    };
    if timestamps && reuse {
        TW_REUSE_AFTER
    } else {
        TIME_WAIT
    }
}

/// What a `churn` run measured.
///
/// Result-line keys, in order: `mode=churn addr rate duration_secs
/// concurrency size sources requested started completed conns_per_sec
/// held_back missed max_open`, then for each of the times `connect`,
/// `echo` (first echo), `life` (lifetime) and `lag` (start lag) one
/// `{time}_pNN_us` per percentile (`connect_p50_us connect_p99_us
/// connect_p99_9_us` unless `--percentiles` says otherwise) and
/// `{time}_max_us`, then `errors` and the counts by kind (see
/// [`super::report`]).
#[derive(Debug, Clone)]
pub struct Report {
    /// What was asked for.
    pub options: Options,
    /// Source addresses used (0: the kernel chose).
    pub sources: usize,
    /// Connections due within `--duration`.
    pub requested: usize,
    /// Connections started (a `connect` tried).
    pub started: usize,
    /// Connections that echoed and closed cleanly.
    pub completed: usize,
    /// Starts that found `--concurrency` connections open and waited.
    pub held_back: usize,
    /// The most connections open at once.
    pub max_open: usize,
    /// From each intended start to the end of its handshake.
    pub connect: Latency,
    /// From the handshake to the whole echo back.
    pub first_echo: Latency,
    /// From the intended start to the server's EOF.
    pub lifetime: Latency,
    /// From each intended start to its `connect` call.
    pub start_lag: Latency,
    /// Connections that failed, by kind.
    pub failures: Failures,
}

impl Report {
    /// Completed connections per second of `--duration`.
    pub fn conns_per_sec(&self) -> f64 {
        report::per_sec(self.completed as u64, self.options.duration)
    }

    /// Connections due but never started: the cap held them back past the
    /// end of `--duration`.
    pub fn missed(&self) -> usize {
        self.requested.saturating_sub(self.started)
    }

    /// Each time the report shows, with its result-line prefix and its
    /// summary label, in the order both list them.
    fn times(&self) -> [(&'static str, &'static str, &Latency); 4] {
        [
            ("connect", "connect", &self.connect),
            ("echo", "first echo", &self.first_echo),
            ("life", "lifetime", &self.lifetime),
            ("lag", "start lag", &self.start_lag),
        ]
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "churn to {}: {} connections/s for {:.3}s, at most {} open, {}-byte message each, \
             from {}",
            o.addr,
            o.rate,
            o.duration.as_secs_f64(),
            o.concurrency,
            o.size,
            match self.sources {
                0 => "addresses the kernel chose".to_string(),
                1 => "127.0.0.1".to_string(),
                k => format!("127.0.0.1 to 127.0.0.{k}"),
            },
        )?;
        writeln!(f, "  started      {} of {}", self.started, self.requested)?;
        writeln!(
            f,
            "  completed    {} ({:.1}/s of {}/s asked)",
            self.completed,
            self.conns_per_sec(),
            o.rate
        )?;
        writeln!(f, "  open at once {} at most", self.max_open)?;
        for (_, label, latency) in self.times() {
            writeln!(f, "  {label:<12} {}", latency.summary(&o.percentiles))?;
        }
        if self.held_back > 0 || self.missed() > 0 {
            writeln!(
                f,
                "  held back    {} starts waited for room under --concurrency {}, {} never \
                 started: the server did not keep up",
                self.held_back,
                o.concurrency,
                self.missed()
            )?;
        }
        self.failures.fmt(f)
    }
}

impl Outcome for Report {
    fn mode(&self) -> &'static str {
        "churn"
    }

    fn addr(&self) -> SocketAddr {
        self.options.addr
    }

    fn add_fields(&self, line: &mut ResultLine) {
        let o = &self.options;
        line.push("rate", o.rate);
        line.push("duration_secs", format!("{:.3}", o.duration.as_secs_f64()));
        line.push("concurrency", o.concurrency);
        line.push("size", o.size);
        line.push("sources", self.sources);
        line.push("requested", self.requested);
        line.push("started", self.started);
        line.push("completed", self.completed);
        line.push("conns_per_sec", format!("{:.1}", self.conns_per_sec()));
        line.push("held_back", self.held_back);
        line.push("missed", self.missed());
        line.push("max_open", self.max_open);
        for (prefix, _, latency) in self.times() {
            latency.add_prefixed_to(line, prefix, &o.percentiles);
        }
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn connections(&self) -> usize {
        self.started
    }
}

/// Starts connections at `options.rate` for `options.duration`, each
/// echoing one message and closing, waits (at most `options.timeout`) for
/// the last to finish, and reports.
///
/// Fails before any load if the options are impossible or `--concurrency`
/// connections cannot fit under the descriptor limit, and after it if not
/// one connection opened because the server refused them all; any other
/// failure is counted in the report. Runs on the calling thread.
pub fn run(options: &Options) -> Result<Report, LoadError> {
    options.validate()?;
    ensure_descriptors(options.concurrency)?;
    let sources = options.source_addrs()?;
    let mut poll = Poll::new().map_err(|e| LoadError::Setup("poll", e))?;
    let mut events = Events::with_capacity(EVENTS);
    let opener = Opener {
        target: options.addr,
        sources: sources.clone(),
    };
    let ran = driver::drive_opening(Churn::new(options), &mut poll, &mut events, opener)?;
    let churn = ran.mode;
    let refused = ran.failures.count(Failure::Refused);
    if churn.started > 0 && churn.connected == 0 && refused == churn.started as u64 {
        return Err(LoadError::Connect {
            addr: options.addr,
            failed: refused,
            total: churn.started,
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        });
    }
    Ok(Report {
        options: options.clone(),
        sources: sources.len(),
        requested: options.requested(),
        started: churn.started,
        completed: churn.completed,
        held_back: churn.held_back,
        max_open: churn.max_open,
        connect: churn.connect,
        first_echo: churn.first_echo,
        lifetime: churn.lifetime,
        start_lag: churn.start_lag,
        failures: ran.failures,
    })
}

/// The mode: its schedule, and what it counted.
struct Churn<'a> {
    options: &'a Options,
    size: u64,
    requested: usize,
    /// When connection 0 was due; connection `k` is due `k / rate` later.
    start: Instant,
    phase: Phase,
    /// Connections started: the number of the next.
    started: usize,
    /// Connections open (connecting or connected).
    open: usize,
    max_open: usize,
    connected: usize,
    completed: usize,
    held_back: usize,
    connect: Latency,
    first_echo: Latency,
    lifetime: Latency,
    start_lag: Latency,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connections start on schedule, until the end of `--duration`.
    Starting {
        /// The end of `--duration`.
        until: Instant,
    },
    /// No more starts; the open connections finish, until `until`.
    Finishing {
        /// When those still open fail.
        until: Instant,
    },
    /// The wait is over.
    Over,
}

/// What one connection keeps.
struct Visit {
    /// Its intended start.
    due: Instant,
    /// The end of its handshake.
    connected: Instant,
}

impl Churn<'_> {
    fn new(options: &Options) -> Churn<'_> {
        // The schedule starts with the load.
        let now = Instant::now();
        Churn {
            options,
            size: options.size as u64,
            requested: options.requested(),
            start: now,
            phase: Phase::Starting { until: now },
            started: 0,
            open: 0,
            max_open: 0,
            connected: 0,
            completed: 0,
            held_back: 0,
            connect: Latency::new(),
            first_echo: Latency::new(),
            lifetime: Latency::new(),
            start_lag: Latency::new(),
        }
    }

    /// When connection `number` is due.
    fn due(&self, number: usize) -> Instant {
        self.start + Duration::from_secs_f64(number as f64 / self.options.rate)
    }

    /// Whether the next start is due but waits for room under the cap.
    fn held(&self, now: Instant) -> bool {
        self.open >= self.options.concurrency
            && self.started < self.requested
            && matches!(self.phase, Phase::Starting { .. })
            && self.due(self.started) <= now
    }
}

impl Mode for Churn<'_> {
    type State = Visit;

    /// The loop starts with no connection open, and runs to its timer.
    const ENDS_WHEN_ALL_CLOSED: bool = false;

    fn start(&mut self, now: Instant) {
        self.start = now;
        self.phase = Phase::Starting {
            until: now + self.options.duration,
        };
    }

    fn open_due(&self) -> Option<Instant> {
        let starting = matches!(self.phase, Phase::Starting { .. });
        (starting && self.started < self.requested && self.open < self.options.concurrency)
            .then(|| self.due(self.started))
    }

    fn next_open(&mut self, now: Instant) -> Option<usize> {
        let number = self.started;
        if self.open_due()? > now {
            return None;
        }
        self.started += 1;
        Some(number)
    }

    fn open(&mut self, number: usize, now: Instant) -> Visit {
        self.open += 1;
        self.max_open = self.max_open.max(self.open);
        let due = self.due(number);
        self.start_lag.record(now.saturating_duration_since(due));
        Visit {
            due,
            connected: now,
        }
    }

    fn connected(&mut self, conn: &mut Conn<Visit>, now: Instant) {
        self.connected += 1;
        self.connect
            .record(now.saturating_duration_since(conn.state.due));
        conn.state.connected = now;
    }

    /// Sends the message; once its echo is whole, our EOF.
    #[inline]
    fn send(
        &mut self,
        conn: &mut Conn<Visit>,
        pattern: &Pattern,
        now: Instant,
    ) -> Result<Next, Fault> {
        conn.write_until(pattern, self.size, now)?;
        if conn.received() == self.size {
            conn.shutdown_write()?;
        }
        Ok(Next::Continue)
    }

    /// Times the echo that came back whole. A byte more fails the
    /// connection before it gets here.
    #[inline]
    fn received(&mut self, conn: &mut Conn<Visit>, from: u64, now: Instant) {
        if from < self.size && conn.received() == self.size {
            self.first_echo
                .record(now.saturating_duration_since(conn.state.connected));
        }
    }

    fn eof_due(&self, conn: &Conn<Visit>) -> bool {
        conn.half_closed() && conn.received() == self.size
    }

    /// Every connection is owed something until the server's EOF: its
    /// handshake, its echo, or the EOF itself.
    fn silence_limit(&self) -> Option<Duration> {
        Some(self.options.timeout)
    }

    fn deadline(&self) -> Instant {
        match self.phase {
            Phase::Starting { until } => until,
            Phase::Finishing { .. } if self.open == 0 => self.start,
            Phase::Finishing { until } => until,
            // Not reached: the loop stops when the phase becomes `Over`.
            Phase::Over => self.start,
        }
    }

    fn on_timer(&mut self, now: Instant, _live: usize) -> Flow {
        match self.phase {
            Phase::Starting { .. } => {
                self.phase = Phase::Finishing {
                    until: now + self.options.timeout,
                };
                Flow::Continue
            }
            Phase::Finishing { .. } | Phase::Over => {
                self.phase = Phase::Over;
                Flow::Stop
            }
        }
    }

    /// Over: a connection still open fails.
    fn sweep(&mut self, conn: &Conn<Visit>, _now: Instant) -> Result<Next, Fault> {
        match self.phase {
            Phase::Over if conn.half_closed() && conn.received() == self.size => {
                Err(Fault::NoEof {
                    waited: self.options.timeout,
                })
            }
            Phase::Over => Err(Fault::Unfinished {
                received: conn.received(),
                expected: self.size,
            }),
            Phase::Starting { .. } | Phase::Finishing { .. } => Ok(Next::Continue),
        }
    }

    fn closed(&mut self, conn: &Conn<Visit>, failed: bool) {
        let now = Instant::now();
        // This close makes room under the cap: if the next start was due,
        // the cap held it back.
        if self.held(now) {
            self.held_back += 1;
        }
        self.open -= 1;
        if !failed {
            self.completed += 1;
            self.lifetime
                .record(now.saturating_duration_since(conn.state.due));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(rate: f64, duration: Duration) -> Options {
        Options {
            rate,
            duration,
            ..Options::new("127.0.0.1:7".parse().unwrap())
        }
    }

    /// A modest rate leaves the source to the kernel; a rate that would
    /// hold more ports than one address has room for spreads over several,
    /// however long a closed port is held here.
    #[test]
    fn sources_follow_the_ports_a_rate_holds() {
        let few = options(100.0, Duration::from_secs(5));
        assert_eq!(few.source_addrs().unwrap(), Vec::<IpAddr>::new());
        let many = options(100_000.0, Duration::from_secs(60));
        let sources = many.source_addrs().unwrap();
        let hold = port_hold(many.addr);
        assert!(hold == TW_REUSE_AFTER || hold == TIME_WAIT, "{hold:?}");
        let expected = (100_000 * hold.as_secs() as usize).div_ceil(dial::PER_SOURCE);
        assert_eq!(sources.len(), expected.min(dial::MAX_SOURCES));
        assert_eq!(sources[1], IpAddr::from([127, 0, 0, 2]));
    }

    /// Asked for, the sources are exactly those.
    #[test]
    fn sources_asked_for_are_used() {
        let mut o = options(10.0, Duration::from_secs(1));
        o.sources = 3;
        assert_eq!(o.source_addrs().unwrap().len(), 3);
    }
}
