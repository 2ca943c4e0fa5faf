//! `connections`: open many connections at once, echo one message over
//! each, and hold them open for a while.
//!
//! This measures what a server does with a crowd rather than with traffic:
//! how fast it accepts a storm of connections, whether every one of them is
//! really served, and (measured from outside, while they are held) what an
//! idle connection costs it.
//!
//! 1. **Open**: every connection starts its `connect` at once, bound in turn
//!    to 127.0.0.1, 127.0.0.2, ... (see [`super::dial`] for why), and the
//!    time until the last one opened is reported.
//! 2. **Echo**: each sends one `--size`-byte message and checks the echo.
//! 3. **Hold**: the connections stay open for `--hold` seconds. A server
//!    that closes or resets one meanwhile is caught: the close raises an
//!    event, and nothing else does, so holding costs no CPU.
//! 4. **Close**: each connection still open half-closes and expects exactly
//!    the server's EOF back, within `--timeout`. A byte more, a reset, or no
//!    EOF in time fails it, by kind, as in every mode.
//!
//! Failures are counted by kind and the run goes on with the rest; only
//! when not a single connection opens is it an error. One process can hold
//! at most its descriptor limit (20,000 here); past it the error says how
//! many processes to run.
//!
//! Read next: [`super::report`] for the result line.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::dial;
use super::driver::{Conn, Flow, Mode, Next};
use super::pattern::Pattern;
use super::report::{Failures, Fault, Outcome, ResultLine};
use super::run::{self, Opening, Plan};
use super::{positive, LoadError, DEFAULT_TIMEOUT};

/// What a `connections` run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The echo server.
    pub addr: SocketAddr,
    /// How many connections to open and hold at once.
    pub count: usize,
    /// How long to hold them open after the echo.
    pub hold: Duration,
    /// Source addresses to spread the connections over (see
    /// [`dial::Sources`]). Only for an IPv4 loopback server.
    pub sources: dial::Sources,
    /// Bytes in each connection's one message.
    pub size: usize,
    /// How long connections may take to open, and then to echo.
    pub timeout: Duration,
}

impl Options {
    /// 1,000 connections, a 32-byte message each, not held.
    pub fn new(addr: SocketAddr) -> Options {
        Options {
            addr,
            count: 1000,
            hold: Duration::ZERO,
            sources: dial::Sources::Chosen,
            size: 32,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |what: String| Err(LoadError::Config(what));
        if self.count == 0 {
            return bad("--count must be at least 1".into());
        }
        if !(1..=super::IO_CHUNK).contains(&self.size) {
            return bad(format!(
                "--size must be between 1 and {} bytes",
                super::IO_CHUNK
            ));
        }
        positive("--timeout", self.timeout)?;
        self.source_addrs().map(|_| ())
    }

    /// The source addresses to bind, in turn; empty to let the kernel pick.
    pub fn source_addrs(&self) -> Result<Vec<IpAddr>, LoadError> {
        self.sources.addrs(self.addr, self.count)
    }
}

/// What a `connections` run found.
///
/// Result-line keys, in order: `mode=connections addr count sources size
/// opened open_secs echoed echo_secs held hold_secs eofs`, then `errors`
/// and the counts by kind.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was asked for.
    pub options: Options,
    /// Source addresses used (0: the kernel chose).
    pub sources: usize,
    /// Connections that opened.
    pub opened: usize,
    /// From the first `connect` to the last connection open.
    pub open_time: Duration,
    /// Connections whose message came back whole and correct.
    pub echoed: usize,
    /// From the first message sent to the last echo back.
    pub echo_time: Duration,
    /// Connections still open, and quiet, at the end of the hold.
    pub held: usize,
    /// Held connections that, after our half-close, got exactly the
    /// server's EOF back.
    pub eofs: usize,
    /// Connections that failed, by kind: to open, to echo, to stay open, or
    /// to close.
    pub failures: Failures,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "connections to {}: {} at once, from {}, {}-byte message each",
            o.addr,
            o.count,
            match (o.sources.range(), self.sources) {
                (Some(range), _) => range,
                (None, 0) => "addresses the kernel chose".to_string(),
                (None, 1) => "127.0.0.1".to_string(),
                (None, k) => format!("127.0.0.1 to 127.0.0.{k}"),
            },
            o.size
        )?;
        writeln!(
            f,
            "  opened       {} of {} in {:.3}s",
            self.opened,
            o.count,
            self.open_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "  echoed       {} in {:.3}s",
            self.echoed,
            self.echo_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "  held         {} for {:.3}s",
            self.held,
            o.hold.as_secs_f64()
        )?;
        writeln!(
            f,
            "  closed       {} with the server's EOF after ours",
            self.eofs
        )?;
        self.failures.fmt(f)
    }
}

impl Outcome for Report {
    fn mode(&self) -> &'static str {
        "connections"
    }

    fn addr(&self) -> SocketAddr {
        self.options.addr
    }

    fn add_fields(&self, line: &mut ResultLine) {
        let o = &self.options;
        line.push("count", o.count);
        line.push("sources", self.sources);
        line.push("size", o.size);
        line.push("opened", self.opened);
        line.push("open_secs", format!("{:.3}", self.open_time.as_secs_f64()));
        line.push("echoed", self.echoed);
        line.push("echo_secs", format!("{:.3}", self.echo_time.as_secs_f64()));
        line.push("held", self.held);
        line.push("hold_secs", format!("{:.3}", o.hold.as_secs_f64()));
        line.push("eofs", self.eofs);
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn connections(&self) -> usize {
        self.options.count
    }
}

/// Opens `options.count` connections, echoes one message over each, holds
/// them for `options.hold`, half-closes them and waits for the server's
/// EOF on each, and reports.
///
/// Raises the process's descriptor limit first and fails at once, saying
/// how many processes to use, if the count cannot fit under it. Fails if
/// no connection at all opens; any other failure is counted in the report.
/// Runs on the calling thread.
pub fn run(options: &Options) -> Result<Report, LoadError> {
    options.validate()?;
    let plan = Plan {
        addr: options.addr,
        connections: options.count,
        threads: 1,
        sources: options.sources,
        timeout: options.timeout,
        opening: Opening::Any,
        start_at: None,
    };
    let run = run::run(&plan, || Crowd::new(options))?;
    let mut report = Report {
        options: options.clone(),
        sources: run.sources,
        opened: run.opened,
        open_time: run.open_time,
        echoed: 0,
        echo_time: Duration::ZERO,
        held: 0,
        eofs: 0,
        failures: Failures::default(),
    };
    for ran in &run.loops {
        let crowd = &ran.mode;
        report.echoed += crowd.echoed;
        report.echo_time = report
            .echo_time
            .max(crowd.last_echo.saturating_duration_since(crowd.echo_start));
        report.held += crowd.held;
        report.eofs += crowd.eofs;
        report.failures.merge(&ran.failures);
    }
    Ok(report)
}

/// The mode: its phase and what it counted. Connections keep no state of
/// their own: one message of `size` bytes, checked as it comes back.
struct Crowd<'a> {
    options: &'a Options,
    size: u64,
    phase: Phase,
    /// When the messages went out.
    echo_start: Instant,
    /// When the last echo came back whole.
    last_echo: Instant,
    /// Connections open whose echo is not back yet.
    waiting: usize,
    /// Connections open, with their echo back, when the echo phase ended.
    echoed: usize,
    /// Connections still open, and quiet, at the end of the hold.
    held: usize,
    /// Held connections, half-closed, still waiting for the server's EOF.
    closing: usize,
    /// Held connections that got exactly the server's EOF after ours.
    eofs: usize,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// One message out on every connection, then every echo back.
    Echo,
    /// Nothing moves, so only a close or a stray byte raises an event.
    Hold {
        /// The end of the hold.
        until: Instant,
    },
    /// Every connection has sent its EOF and waits for the server's.
    Closing {
        /// When those still waiting fail.
        until: Instant,
    },
    /// The wait for the server's EOFs is over.
    Over,
}

impl Crowd<'_> {
    fn new(options: &Options) -> Crowd<'_> {
        let now = Instant::now();
        Crowd {
            options,
            size: options.size as u64,
            phase: Phase::Echo,
            echo_start: now,
            last_echo: now,
            waiting: 0,
            echoed: 0,
            held: 0,
            closing: 0,
            eofs: 0,
        }
    }
}

impl Mode for Crowd<'_> {
    type State = ();

    /// The hold lasts as long as asked, whatever the server does meanwhile.
    const ENDS_WHEN_ALL_CLOSED: bool = false;

    fn start(&mut self, now: Instant) {
        self.echo_start = now;
        self.last_echo = now;
    }

    fn open(&mut self, _number: usize, _now: Instant) {
        self.waiting += 1;
    }

    /// Sends what is left of the message; after it, nothing.
    fn send(
        &mut self,
        conn: &mut Conn<()>,
        pattern: &Pattern,
        now: Instant,
    ) -> Result<Next, Fault> {
        conn.write_until(pattern, self.size, now)?;
        Ok(Next::Continue)
    }

    /// Notes the echo that came back whole. Any byte after it is more than
    /// was sent, and fails the connection before it gets here.
    fn received(&mut self, conn: &mut Conn<()>, from: u64, now: Instant) {
        if from < self.size && conn.received() == self.size {
            self.waiting -= 1;
            self.last_echo = now;
        }
    }

    /// The server's EOF ends a connection once we have sent ours (the echo
    /// is all back by then).
    fn eof_due(&self, conn: &Conn<()>) -> bool {
        conn.half_closed() && conn.received() == self.size
    }

    /// Not scanned: the echo and closing phases each have one deadline for
    /// every connection, and a held connection owes nothing.
    fn silence_limit(&self) -> Option<Duration> {
        None
    }

    /// The echo phase ends when every echo is back (at once), or after the
    /// timeout; the hold at its end; the closing when every EOF is back, or
    /// after the timeout.
    fn deadline(&self) -> Instant {
        match self.phase {
            Phase::Echo if self.waiting == 0 => self.echo_start,
            Phase::Echo => self.echo_start + self.options.timeout,
            Phase::Hold { until } => until,
            Phase::Closing { .. } if self.closing == 0 => self.echo_start,
            Phase::Closing { until } => until,
            // Not reached: the loop stops when the phase becomes `Over`.
            Phase::Over => self.echo_start,
        }
    }

    fn on_timer(&mut self, now: Instant, live: usize) -> Flow {
        match self.phase {
            Phase::Echo => {
                // The sweep that follows fails the ones still waiting.
                self.echoed = live.saturating_sub(self.waiting);
                log::info!(
                    "holding {} connections for {:.3}s",
                    self.echoed,
                    self.options.hold.as_secs_f64()
                );
                self.phase = Phase::Hold {
                    until: now + self.options.hold,
                };
                Flow::Continue
            }
            Phase::Hold { .. } => {
                // The sweep that follows half-closes every one.
                self.held = live;
                self.closing = live;
                self.phase = Phase::Closing {
                    until: now + self.options.timeout,
                };
                Flow::Continue
            }
            Phase::Closing { .. } | Phase::Over => {
                self.phase = Phase::Over;
                Flow::Stop
            }
        }
    }

    /// When the echo phase ends, a connection still without its echo fails;
    /// when the hold ends, each sends its EOF; when the closing ends, one
    /// still without the server's EOF fails.
    fn sweep(&mut self, conn: &Conn<()>, _now: Instant) -> Result<Next, Fault> {
        match self.phase {
            Phase::Echo => Ok(Next::Continue),
            Phase::Hold { .. } if conn.received() < self.size => Err(Fault::Silent {
                waited: self.options.timeout,
                received: conn.received(),
                sent: conn.sent(),
            }),
            Phase::Hold { .. } => Ok(Next::Continue),
            Phase::Closing { .. } => Ok(Next::HalfClose),
            Phase::Over => Err(Fault::NoEof {
                waited: self.options.timeout,
            }),
        }
    }

    fn closed(&mut self, conn: &Conn<()>, failed: bool) {
        match self.phase {
            Phase::Echo if conn.received() < self.size => self.waiting -= 1,
            Phase::Closing { .. } => {
                self.closing -= 1;
                self.eofs += usize::from(!failed);
            }
            Phase::Echo | Phase::Hold { .. } | Phase::Over => {}
        }
    }
}
