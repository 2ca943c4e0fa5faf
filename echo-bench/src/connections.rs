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
//!
//! Failures are counted by kind and the run goes on with the rest; only
//! when not a single connection opens is it an error. One process can hold
//! at most its descriptor limit (20,000 here); past it the error says how
//! many processes to run.
//!
//! Read next: [`super::report`] for the result line.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Poll};

use super::dial::{self, Dial};
use super::pattern::{read_echo, Pattern};
use super::report::{Failures, Fault, Outcome, ResultLine};
use super::{ensure_descriptors, positive, wait, LoadError, Opened, DEFAULT_TIMEOUT, EVENTS};

/// What a `connections` run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The echo server.
    pub addr: SocketAddr,
    /// How many connections to open and hold at once.
    pub count: usize,
    /// How long to hold them open after the echo.
    pub hold: Duration,
    /// Source addresses 127.0.0.1 ..= 127.0.0.K to spread the connections
    /// over; 0 chooses (see [`dial::sources_for`]). Only for an IPv4
    /// loopback server.
    pub sources: usize,
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
            sources: 0,
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
        dial::sources_for(self.addr, self.count, self.sources)
    }
}

/// What a `connections` run found.
///
/// Result-line keys, in order: `mode=connections addr count sources size
/// opened open_secs echoed echo_secs held hold_secs`, then `errors` and the
/// counts by kind.
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
    /// Connections that failed, by kind: to open, to echo, or to stay open.
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
            match self.sources {
                0 => "addresses the kernel chose".to_string(),
                1 => "127.0.0.1".to_string(),
                k => format!("127.0.0.1 to 127.0.0.{k}"),
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
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn connections(&self) -> usize {
        self.options.count
    }
}

/// One connection: its message out and back, then quiet.
struct Conn {
    stream: TcpStream,
    number: usize,
    phase: usize,
    sent: u64,
    received: u64,
}

/// Opens `options.count` connections, echoes one message over each, holds
/// them for `options.hold`, closes them, and reports.
///
/// Raises the process's descriptor limit first and fails at once, saying
/// how many processes to use, if the count cannot fit under it. Fails if
/// no connection at all opens; any other failure is counted in the report.
/// Runs on the calling thread.
pub fn run(options: &Options) -> Result<Report, LoadError> {
    options.validate()?;
    ensure_descriptors(options.count)?;
    let sources = options.source_addrs()?;
    let mut poll = Poll::new().map_err(|e| LoadError::Setup("poll", e))?;
    let mut events = Events::with_capacity(EVENTS);

    let plan = Dial {
        target: options.addr,
        sources: &sources,
        count: options.count,
        first: 0,
        timeout: options.timeout,
    };
    let mut dialed = dial::dial(&mut poll, &mut events, &plan).map_err(LoadError::Poll)?;
    let opened = Opened::of(&mut dialed);
    let mut failures = std::mem::take(&mut dialed.failures);
    if opened.count == 0 {
        // Not one: the server is not there. Say so in one line.
        return Err(opened.error(options.addr, options.count));
    }
    log::info!(
        "opened {} connections in {:.3}s",
        opened.count,
        opened.elapsed.as_secs_f64()
    );

    let pattern = Pattern::new();
    let mut conns: Vec<Option<Conn>> = dialed
        .streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            stream.map(|stream| Conn {
                stream,
                number: i,
                phase: Pattern::phase(i),
                sent: 0,
                received: 0,
            })
        })
        .collect();
    let size = options.size as u64;
    let mut buf = vec![0u8; super::IO_CHUNK];

    // Echo: one message out on every connection, then every echo back.
    let echo_start = Instant::now();
    let echo_deadline = echo_start + options.timeout;
    let mut waiting = 0;
    for slot in conns.iter_mut() {
        let Some(conn) = slot else { continue };
        match conn.exchange(None, &pattern, size, &mut buf) {
            Ok(true) => {}
            Ok(false) => waiting += 1,
            Err(fault) => fail(slot, fault, &mut failures),
        }
    }
    let mut last_echo = echo_start;
    while waiting > 0 {
        let now = Instant::now();
        if now >= echo_deadline {
            break;
        }
        wait(&mut poll, &mut events, echo_deadline - now)?;
        // Every event is a hint: `exchange` acts on what the calls return.
        for event in events.iter() {
            let Some(slot) = conns.get_mut(event.token().0) else {
                continue;
            };
            let Some(conn) = slot else { continue };
            let done_before = conn.received == size;
            match conn.exchange(Some(event), &pattern, size, &mut buf) {
                Ok(true) if !done_before => {
                    waiting -= 1;
                    last_echo = Instant::now();
                }
                Ok(_) => {}
                Err(fault) => {
                    if !done_before {
                        waiting -= 1;
                    }
                    fail(slot, fault, &mut failures);
                }
            }
        }
    }
    let mut echoed = 0;
    for slot in conns.iter_mut() {
        match slot {
            Some(c) if c.received == size => echoed += 1,
            Some(c) => {
                let fault = Fault::Silent {
                    waited: options.timeout,
                    received: c.received,
                    sent: c.sent,
                };
                fail(slot, fault, &mut failures);
            }
            None => {}
        }
    }

    // Hold: nothing moves, so only a close or a stray byte raises an event.
    log::info!(
        "holding {echoed} connections for {:.3}s",
        options.hold.as_secs_f64()
    );
    let hold_end = Instant::now() + options.hold;
    loop {
        let now = Instant::now();
        if now >= hold_end {
            break;
        }
        wait(&mut poll, &mut events, hold_end - now)?;
        for event in events.iter() {
            let Some(slot) = conns.get_mut(event.token().0) else {
                continue;
            };
            let Some(conn) = slot else { continue };
            if let Err(fault) = conn.exchange(Some(event), &pattern, size, &mut buf) {
                fail(slot, fault, &mut failures);
            }
        }
    }
    let held = conns.iter().flatten().count();
    // Dropping the sockets closes them, each with a FIN.
    drop(conns);

    Ok(Report {
        options: options.clone(),
        sources: sources.len(),
        opened: opened.count,
        open_time: opened.elapsed,
        echoed,
        echo_time: last_echo - echo_start,
        held,
        failures,
    })
}

/// Closes the connection in `slot` and counts its fault.
fn fail(slot: &mut Option<Conn>, fault: Fault, failures: &mut Failures) {
    if let Some(conn) = slot.take() {
        failures.record(conn.number, &fault);
    }
}

impl Conn {
    /// Sends what is left of the message, reads what came back and checks
    /// it. True once the whole message is back. After that, any byte or
    /// EOF from the server is a failure: the connection should stay quiet.
    fn exchange(
        &mut self,
        event: Option<&Event>,
        pattern: &Pattern,
        size: u64,
        buf: &mut [u8],
    ) -> Result<bool, Fault> {
        while self.sent < size {
            match self.stream.write(pattern.bytes(
                self.phase,
                self.sent,
                (size - self.sent) as usize,
            )) {
                Ok(0) => return Err(Fault::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n as u64,
                // Not even one small message fits: the next writable event
                // (or readable one: we try again on every event) resumes.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Io(e)),
            }
        }
        let readable = event.is_some_and(|e| e.is_readable() || e.is_read_closed() || e.is_error());
        if readable {
            self.receive(pattern, buf)?;
        }
        Ok(self.received == size)
    }

    /// Reads and checks until the receive queue is empty. An EOF or a byte
    /// beyond what was sent is a failure, whenever it comes.
    fn receive(&mut self, pattern: &Pattern, buf: &mut [u8]) -> Result<(), Fault> {
        loop {
            let read = read_echo(
                &mut self.stream,
                buf,
                pattern,
                self.phase,
                self.received,
                self.sent,
            )?;
            // The queue is empty. A message this small arrives in one
            // piece, so one read usually ends here at the second call;
            // connections are many and messages one each, so the extra call
            // is not worth saving.
            let Some(n) = read else { return Ok(()) };
            if n == 0 {
                return Err(Fault::EarlyClose {
                    received: self.received,
                    sent: self.sent,
                });
            }
            self.received += n as u64;
        }
    }
}
