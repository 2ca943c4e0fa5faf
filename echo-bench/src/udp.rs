//! `udp`: datagrams out and back over RFC 862's datagram echo, each one
//! checked, with datagrams/s, loss and latency.
//!
//! UDP does not fit the TCP driver (no connection to open or close, no
//! stream offset, datagrams that may be lost), so this mode has a small
//! loop of its own, built the same way: one poll, `--sockets` non-blocking
//! sockets registered once, a [`Pattern`] instead of a copy of anything
//! sent, and an alarm (`src/alarm.rs`) to send on time.
//!
//! Each socket is *connected* to the server, so the kernel delivers it only
//! the server's datagrams (and reports an ICMP "port unreachable" as
//! `ECONNREFUSED`). Every datagram carries an 8-byte big-endian sequence
//! number, counting per socket from 0, and then pattern bytes that depend
//! on the socket and the sequence number. So each echo is checked on its
//! own: a datagram whose header names a number never sent is *unknown*,
//! one that comes back again a *duplicate*, one whose length or bytes
//! differ *corrupt* (all three fail the run, as a changed byte does over
//! TCP); one that comes back after a later one is *reordered* (counted
//! only: UDP may reorder). A datagram never back after the final drain
//! (`--timeout`) is *lost*: loss is the measurement, not a failure.
//!
//! Two ways to send:
//!
//! * `--rate R`: an open loop. Datagram `g` of the run is due `g / R`
//!   seconds in and goes out on socket `g % N`, whatever came back; its
//!   latency runs from that intended time.
//! * no rate: ping-pong. Each socket keeps one datagram in flight and sends
//!   the next when its echo is back, or after `--timeout` without one (that
//!   one then counts as lost, unless it turns up late).
//!
//! # The server's UDP rate limits
//!
//! mio-echo's `echo-server` bounds what a forged source can make it send:
//! by default at most 100 replies a second to one source address and
//! 10,000 in all, each with a burst as large (`--udp-rate-per-source`,
//! `--udp-rate`). Every socket here sends from the same address, so
//! against a server left at its defaults most of a fast run is lost to the
//! limit, not to the server's speed; the report says so when anything is
//! lost. To benchmark, start the server with both raised, e.g.
//! `echo-server -u 127.0.0.1:7007 --udp-rate-per-source 10000000 --udp-rate
//! 10000000`.
//!
//! Read next: [`super::report`] for the result line.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::alarm::Alarm;
use super::driver::wait;
use super::pattern::{Pattern, MAX_RUN};
use super::report::{self, Failures, Fault, Latency, Outcome, Percentiles, ResultLine};
use super::{ensure_descriptors, positive, LoadError, DEFAULT_TIMEOUT};

/// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers).
pub const MAX_SIZE: usize = 65_507;

/// Bytes of each datagram's header: its sequence number.
pub const HEADER: usize = 8;

/// The highest `--rate`.
pub const MAX_RATE: f64 = 10_000_000.0;

/// Datagrams one turn of the loop sends at most before it looks at its
/// events again, so that a schedule far behind cannot starve the reads.
const SENDS_PER_TURN: usize = 1024;

/// How often ping-pong looks for datagrams in flight longer than
/// `--timeout`.
const TICK: Duration = Duration::from_millis(100);

/// Events taken from the kernel per `poll`.
const EVENTS: usize = 1024;

/// The token of the loop's alarm: beyond any socket's index.
const ALARM: Token = Token(usize::MAX);

/// The receive buffer asked for each socket (the kernel caps it at
/// `net.core.rmem_max`), so a burst of echoes is not dropped on our side.
const RECV_BUFFER: usize = 4 * 1024 * 1024;

/// What a `udp` run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's UDP address.
    pub addr: SocketAddr,
    /// Datagrams per second over all sockets; `None` for ping-pong.
    pub rate: Option<f64>,
    /// Sockets to send from.
    pub sockets: usize,
    /// Bytes per datagram, header included.
    pub size: usize,
    /// How long to send for.
    pub duration: Duration,
    /// How long to wait for the last echoes after sending ends (and, in
    /// ping-pong, for each echo before sending the next).
    pub timeout: Duration,
    /// The latency percentiles to report.
    pub percentiles: Percentiles,
}

impl Options {
    /// Ping-pong over one socket, 64-byte datagrams, for 5 s; p50, p99 and
    /// p99.9.
    pub fn new(addr: SocketAddr) -> Options {
        Options {
            addr,
            rate: None,
            sockets: 1,
            size: 64,
            duration: Duration::from_secs(5),
            timeout: DEFAULT_TIMEOUT,
            percentiles: Percentiles::default(),
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |what: String| Err(LoadError::Config(what));
        if self.sockets == 0 {
            return bad("--sockets must be at least 1".into());
        }
        if !(HEADER..=MAX_SIZE).contains(&self.size) {
            return bad(format!(
                "--size must be between {HEADER} (the sequence number) and {MAX_SIZE} bytes \
                 (the most one UDP datagram over IPv4 carries)"
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
                return bad(format!(
                    "--rate must be more than 0 and at most {MAX_RATE} datagrams a second"
                ));
            }
        }
        positive("--duration", self.duration)?;
        positive("--timeout", self.timeout)
    }

    /// Datagrams due within `--duration` at `--rate` (none asked for in
    /// ping-pong).
    pub fn requested(&self) -> Option<u64> {
        self.rate.map(|rate| super::due_within(self.duration, rate))
    }
}

/// What a `udp` run measured.
///
/// Result-line keys, in order: `mode=udp addr rate sockets size
/// duration_secs sent echoed lost loss_pct sent_per_sec echoed_per_sec
/// corrupt duplicates unknown reordered` (`rate=pingpong` without a
/// rate), one `pNN_us` per percentile (`p50_us p99_us p99_9_us` unless
/// `--percentiles` says otherwise), `max_us`, then `errors` (corrupt,
/// duplicate and unknown datagrams count as `mismatches`; a refused socket
/// as `refused`) and the counts by kind.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was asked for.
    pub options: Options,
    /// The sending window: `--duration`, or less if every socket failed.
    pub measured: Duration,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams whose sequence number came back (once), intact or not.
    pub echoed: u64,
    /// Echoes whose length or bytes differ from what was sent.
    pub corrupt: u64,
    /// Echoes of a datagram already back.
    pub duplicates: u64,
    /// Echoes too short for a header, or naming a number never sent.
    pub unknown: u64,
    /// Echoes that came back after one sent later on the same socket.
    pub reordered: u64,
    /// Intact echoes' latency: from the intended send time (with `--rate`)
    /// or the send (ping-pong) to the echo.
    pub latency: Latency,
    /// The failures: wrong datagrams, and sockets that failed.
    pub failures: Failures,
}

impl Report {
    /// Datagrams sent and never back.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.echoed)
    }

    /// Lost datagrams, as a percentage of those sent.
    pub fn loss_pct(&self) -> f64 {
        match self.sent {
            0 => 0.0,
            sent => self.lost() as f64 * 100.0 / sent as f64,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let how = match o.rate {
            Some(rate) => format!("{rate} datagrams/s"),
            None => "ping-pong".to_string(),
        };
        writeln!(
            f,
            "udp to {}: {how} over {}, {}-byte datagrams, for {:.3}s",
            o.addr,
            report::count(o.sockets as u64, "socket"),
            o.size,
            o.duration.as_secs_f64()
        )?;
        writeln!(
            f,
            "  sent         {} ({:.0}/s)",
            self.sent,
            report::per_sec(self.sent, self.measured)
        )?;
        writeln!(
            f,
            "  echoed       {} ({:.0}/s)",
            self.echoed,
            report::per_sec(self.echoed, self.measured)
        )?;
        writeln!(
            f,
            "  lost         {} ({:.2}%)",
            self.lost(),
            self.loss_pct()
        )?;
        writeln!(f, "  latency      {}", self.latency.summary(&o.percentiles))?;
        writeln!(
            f,
            "  wrong        {} corrupt, {} duplicates, {} unknown; {} reordered",
            self.corrupt, self.duplicates, self.unknown, self.reordered
        )?;
        if self.lost() > 0 {
            writeln!(
                f,
                "  note         loss may be the server's UDP rate limit, not its speed: \
                 mio-echo's echo-server replies at most 100/s to one source address and \
                 10000/s in all by default, and every socket here shares one address; \
                 for a benchmark raise its --udp-rate-per-source and --udp-rate. Its \
                 counters tell the causes apart: udp_limited (the limit), udp_overflow \
                 (its receive queue was full), udp_dropped (its send buffer was)"
            )?;
        }
        self.failures.fmt(f)
    }
}

impl Outcome for Report {
    fn mode(&self) -> &'static str {
        "udp"
    }

    fn addr(&self) -> SocketAddr {
        self.options.addr
    }

    fn add_fields(&self, line: &mut ResultLine) {
        let o = &self.options;
        match o.rate {
            Some(rate) => line.push("rate", rate),
            None => line.push("rate", "pingpong"),
        }
        line.push("sockets", o.sockets);
        line.push("size", o.size);
        line.push(
            "duration_secs",
            format!("{:.3}", self.measured.as_secs_f64()),
        );
        line.push("sent", self.sent);
        line.push("echoed", self.echoed);
        line.push("lost", self.lost());
        line.push("loss_pct", format!("{:.2}", self.loss_pct()));
        line.push(
            "sent_per_sec",
            format!("{:.0}", report::per_sec(self.sent, self.measured)),
        );
        line.push(
            "echoed_per_sec",
            format!("{:.0}", report::per_sec(self.echoed, self.measured)),
        );
        line.push("corrupt", self.corrupt);
        line.push("duplicates", self.duplicates);
        line.push("unknown", self.unknown);
        line.push("reordered", self.reordered);
        self.latency.add_to(line, &o.percentiles);
    }

    fn failures(&self) -> &Failures {
        &self.failures
    }

    fn connections(&self) -> usize {
        self.options.sockets
    }

    /// Failures out of the datagrams sent: most are one datagram each.
    fn failure_summary(&self) -> String {
        self.failures
            .summary_of(&report::count(self.sent, "datagram"))
    }
}

/// Sends datagrams as `options` says for `options.duration`, waits at most
/// `options.timeout` for the last echoes, and reports.
///
/// Fails before any load if the options are impossible or the sockets
/// cannot be made, and after it if every socket was refused (nothing
/// serves UDP there) before a single echo; any other trouble is counted.
/// Runs on the calling thread.
pub fn run(options: &Options) -> Result<Report, LoadError> {
    options.validate()?;
    ensure_descriptors(options.sockets)?;
    let mut poll = Poll::new().map_err(|e| LoadError::Setup("poll", e))?;
    let mut events = Events::with_capacity(EVENTS);
    let mut sockets = Vec::with_capacity(options.sockets);
    for i in 0..options.sockets {
        let mut socket = connected(options.addr).map_err(|e| LoadError::Setup("UDP sockets", e))?;
        poll.registry()
            .register(
                &mut socket,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| LoadError::Setup("UDP sockets", e))?;
        sockets.push(Sock::new(socket, i));
    }
    let alarm = Alarm::new(poll.registry(), ALARM).map_err(|e| LoadError::Setup("timer", e))?;
    let mut flood = Flood::new(options, sockets, alarm);
    flood.run(&mut poll, &mut events)?;
    let refused = flood.sockets.iter().filter(|s| s.refused).count();
    if refused == options.sockets && flood.echoed == 0 {
        return Err(LoadError::Connect {
            addr: options.addr,
            failed: refused as u64,
            total: options.sockets,
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        });
    }
    Ok(Report {
        options: options.clone(),
        measured: flood.measured,
        sent: flood.sockets.iter().map(|s| s.sent).sum(),
        echoed: flood.echoed,
        corrupt: flood.corrupt,
        duplicates: flood.duplicates,
        unknown: flood.unknown,
        reordered: flood.reordered,
        latency: flood.latency,
        failures: flood.failures,
    })
}

/// A non-blocking UDP socket connected to `target`, from an address the
/// kernel picks, with a roomy receive buffer.
fn connected(target: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    // Best effort: the kernel caps it, and a smaller one only risks drops
    // on our side in a burst.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    let any = match target.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    socket.bind(&SocketAddr::new(any, 0).into())?;
    socket.connect(&target.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// One socket and what it sent and got back.
struct Sock {
    socket: UdpSocket,
    /// Its number, for the pattern and for reports.
    index: usize,
    /// Datagrams sent: the next one's sequence number.
    sent: u64,
    /// Which sequence numbers came back, one bit each.
    back: Vec<u64>,
    /// The highest sequence number back so far, plus one (0: none yet).
    highest: u64,
    /// Ping-pong: the datagram in flight and when it went.
    waiting: Option<(u64, Instant)>,
    /// The kernel refused our last send; a writable event will say when
    /// it has room.
    write_blocked: bool,
    /// The socket failed (refused, or another error): no more sends.
    failed: bool,
    /// It failed because nothing serves UDP at the address.
    refused: bool,
}

impl Sock {
    fn new(socket: UdpSocket, index: usize) -> Sock {
        Sock {
            socket,
            index,
            sent: 0,
            back: Vec::new(),
            highest: 0,
            waiting: None,
            write_blocked: false,
            failed: false,
            refused: false,
        }
    }

    /// Marks `seq` back; false if it already was.
    fn mark_back(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.back.len() {
            self.back.resize(word + 1, 0);
        }
        let was = self.back[word] & (1 << bit) != 0;
        self.back[word] |= 1 << bit;
        !was
    }
}

/// What a received datagram turned out to be.
enum Echo {
    /// Back whole and unchanged: its sequence number.
    Intact(u64),
    /// Its sequence number came back, but not its bytes.
    Corrupt(u64, String),
    /// Back once more.
    Duplicate(u64),
    /// Not a datagram we sent: too short for a header (`None`), or a
    /// number never sent.
    Unknown(Option<u64>, String),
}

/// The loop's state.
struct Flood<'a> {
    options: &'a Options,
    sockets: Vec<Sock>,
    alarm: Alarm,
    pattern: Pattern,
    /// The datagram being built, and the one being read, each allocated
    /// once.
    out: Box<[u8]>,
    buf: Box<[u8]>,
    start: Instant,
    /// The end of the sending window.
    end: Instant,
    /// Open loop: the number of the next datagram of the run.
    next: u64,
    measured: Duration,
    echoed: u64,
    corrupt: u64,
    duplicates: u64,
    unknown: u64,
    reordered: u64,
    latency: Latency,
    failures: Failures,
}

impl<'a> Flood<'a> {
    fn new(options: &'a Options, sockets: Vec<Sock>, alarm: Alarm) -> Flood<'a> {
        let now = Instant::now();
        Flood {
            options,
            sockets,
            alarm,
            pattern: Pattern::new(),
            out: vec![0u8; options.size].into_boxed_slice(),
            buf: vec![0u8; MAX_SIZE + 1].into_boxed_slice(),
            start: now,
            end: now,
            next: 0,
            measured: Duration::ZERO,
            echoed: 0,
            corrupt: 0,
            duplicates: 0,
            unknown: 0,
            reordered: 0,
            latency: Latency::new(),
            failures: Failures::default(),
        }
    }

    /// Payload bytes per datagram.
    fn payload(&self) -> u64 {
        (self.options.size - HEADER) as u64
    }

    /// Open loop: when datagram `g` of the run is due.
    fn due(&self, g: u64, rate: f64) -> Instant {
        self.start + Duration::from_secs_f64(g as f64 / rate)
    }

    /// Sends, reads and drains until every echo is back or the drain's
    /// timeout passes. Only a failure of the poll is an error.
    fn run(&mut self, poll: &mut Poll, events: &mut Events) -> Result<(), LoadError> {
        self.start = Instant::now();
        self.end = self.start + self.options.duration;
        let mut next_scan = self.start + TICK;
        // Once sending is over: until when the last echoes may come.
        let mut drain_until = None;
        loop {
            let now = Instant::now();
            self.send_due(now);
            let alive = self.sockets.iter().any(|s| !s.failed);
            let sending = alive
                && match self.options.requested() {
                    Some(requested) => self.next < requested,
                    None => now < self.end,
                };
            if !sending {
                let until = *drain_until.get_or_insert_with(|| {
                    self.measured = if alive {
                        self.options.duration
                    } else {
                        now.min(self.end) - self.start
                    };
                    now + self.options.timeout
                });
                if self.outstanding() == 0 || !alive || now >= until {
                    return Ok(());
                }
            }
            let mut wake = match drain_until {
                Some(until) => until,
                None if now < self.end => self.end,
                // Late sends after the window (they were due in it): the
                // alarm or a writable event wakes us; look again by then.
                None => now + TICK,
            };
            match self.options.rate {
                Some(rate) if sending => {
                    let at = self.due(self.next, rate);
                    let blocked = self.sockets[self.next_socket()].write_blocked;
                    if at <= now {
                        // More were due than one turn sends: go on at once;
                        // unless the next socket waits for room, which its
                        // writable event will say.
                        if !blocked {
                            wake = now;
                        }
                    } else {
                        // To the microsecond, not the poll's millisecond
                        // (which still wakes the loop where no alarm can).
                        wake = wake.min(at);
                        self.alarm
                            .set(at, now)
                            .map_err(|e| LoadError::Setup("timer", e))?;
                    }
                }
                Some(_) => {}
                None => {
                    if now >= next_scan {
                        self.give_up_on_silent(now);
                        next_scan = now + TICK;
                    }
                    wake = wake.min(next_scan);
                }
            }
            wait(poll, events, wake.saturating_duration_since(now))?;
            // Every event is a hint: the calls below act on what the
            // socket says, and a stale one ends in WouldBlock.
            for event in events.iter() {
                if event.token() == ALARM {
                    self.alarm.fired();
                    continue;
                }
                let i = event.token().0;
                if i >= self.sockets.len() {
                    continue;
                }
                if event.is_writable() {
                    self.sockets[i].write_blocked = false;
                }
                if event.is_readable() || event.is_error() {
                    self.receive(i, Instant::now());
                }
            }
        }
    }

    /// Open loop: the socket the next datagram goes out on.
    fn next_socket(&self) -> usize {
        (self.next % self.sockets.len() as u64) as usize
    }

    /// Datagrams sent and not back (yet).
    fn outstanding(&self) -> u64 {
        self.sockets.iter().map(|s| s.sent).sum::<u64>() - self.echoed
    }

    /// Sends what is due at `now`: with a rate, the datagrams of the
    /// schedule whose time has come (and whose time came before the end of
    /// the window); in ping-pong, the next datagram of each socket with
    /// nothing in flight.
    fn send_due(&mut self, now: Instant) {
        match self.options.rate {
            Some(rate) => {
                let requested = self.options.requested().unwrap_or(0);
                for _ in 0..SENDS_PER_TURN {
                    if self.next >= requested || self.due(self.next, rate) > now {
                        return;
                    }
                    let i = self.next_socket();
                    if self.sockets[i].failed {
                        // Its share goes unsent: it is not counted as sent.
                        self.next += 1;
                        continue;
                    }
                    if !self.send(i) {
                        // Wait for room (a writable event); the schedule
                        // waits with it, so the late ones count as late.
                        return;
                    }
                    self.next += 1;
                }
            }
            None => {
                if now >= self.end {
                    return;
                }
                for i in 0..self.sockets.len() {
                    self.ping(i, now);
                }
            }
        }
    }

    /// Sends socket `i`'s next datagram. False if the kernel had no room
    /// (or the socket failed): nothing went.
    fn send(&mut self, i: usize) -> bool {
        let payload = self.payload();
        let s = &mut self.sockets[i];
        if s.write_blocked || s.failed {
            return false;
        }
        let seq = s.sent;
        fill(&mut self.out, &self.pattern, s.index, seq, payload);
        loop {
            match s.socket.send(&self.out) {
                Ok(_) => {
                    s.sent += 1;
                    return true;
                }
                // The send buffer is full: wait for a writable event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.write_blocked = true;
                    return false;
                }
                // A signal arrived mid-call; nothing was sent. Again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    fail(&mut self.failures, s, e);
                    return false;
                }
            }
        }
    }

    /// Reads every datagram queued on socket `i` and checks each.
    fn receive(&mut self, i: usize, now: Instant) {
        loop {
            let s = &mut self.sockets[i];
            if s.failed {
                return;
            }
            let n = match s.socket.recv(&mut self.buf) {
                Ok(n) => n,
                // The queue is empty: wait for the next event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    fail(&mut self.failures, s, e);
                    return;
                }
            };
            let echo = self.check(i, n);
            self.count(i, echo, now);
        }
    }

    /// What the `n` bytes just read on socket `i` are.
    fn check(&mut self, i: usize, n: usize) -> Echo {
        let size = self.options.size;
        let payload = self.payload();
        let s = &mut self.sockets[i];
        let got = &self.buf[..n];
        let Some(header) = got.first_chunk::<HEADER>() else {
            return Echo::Unknown(None, format!("{n} bytes, too short for a sequence number"));
        };
        let seq = u64::from_be_bytes(*header);
        if seq >= s.sent {
            return Echo::Unknown(
                Some(seq),
                format!("never sent (this socket has sent {})", s.sent),
            );
        }
        if !s.mark_back(seq) {
            return Echo::Duplicate(seq);
        }
        if n != size {
            return Echo::Corrupt(seq, format!("came back with {n} bytes; sent {size}"));
        }
        let base = seq * payload;
        match self
            .pattern
            .check(Pattern::phase(s.index), base, &got[HEADER..])
        {
            Ok(()) => Echo::Intact(seq),
            Err(m) => Echo::Corrupt(
                seq,
                format!(
                    "byte {} of the datagram differs: sent 0x{:02x}, got 0x{:02x}",
                    m.offset - base + HEADER as u64,
                    m.expected,
                    m.got
                ),
            ),
        }
    }

    /// Counts one echo on socket `i`, arrived at `now`; in ping-pong, the
    /// socket's next datagram goes at once.
    fn count(&mut self, i: usize, echo: Echo, now: Instant) {
        let fault = match echo {
            Echo::Intact(seq) => {
                let pinged = self.back(i, seq);
                let sent_at = match self.options.rate {
                    Some(rate) => Some(self.due(seq * self.sockets.len() as u64 + i as u64, rate)),
                    // A late echo of one given up on: its time is gone.
                    None => pinged,
                };
                if let Some(at) = sent_at {
                    self.latency.record(now.saturating_duration_since(at));
                }
                None
            }
            Echo::Corrupt(seq, what) => {
                self.back(i, seq);
                self.corrupt += 1;
                Some(Fault::Datagram {
                    seq: Some(seq),
                    what,
                })
            }
            Echo::Duplicate(seq) => {
                self.duplicates += 1;
                Some(Fault::Datagram {
                    seq: Some(seq),
                    what: "came back again".into(),
                })
            }
            Echo::Unknown(seq, what) => {
                self.unknown += 1;
                Some(Fault::Datagram { seq, what })
            }
        };
        if let Some(fault) = fault {
            self.failures.record_for("socket", i, &fault);
        }
        self.ping(i, now);
    }

    /// Datagram `seq` of socket `i` came back, intact or not: it is not
    /// lost. Notes whether it overtook an earlier one, and returns when it
    /// went if it is the one ping-pong has in flight.
    fn back(&mut self, i: usize, seq: u64) -> Option<Instant> {
        let s = &mut self.sockets[i];
        self.echoed += 1;
        if seq + 1 < s.highest {
            self.reordered += 1;
        }
        s.highest = s.highest.max(seq + 1);
        let (waiting, at) = s.waiting?;
        if waiting != seq {
            return None;
        }
        s.waiting = None;
        Some(at)
    }

    /// Ping-pong: socket `i`, with nothing in flight, sends its next
    /// datagram, if the window is still open.
    fn ping(&mut self, i: usize, now: Instant) {
        let idle = self.sockets[i].waiting.is_none();
        if self.options.rate.is_none() && idle && now < self.end && self.send(i) {
            let s = &mut self.sockets[i];
            s.waiting = Some((s.sent - 1, now));
        }
    }

    /// Ping-pong: a datagram in flight for `--timeout` is given up on (it
    /// counts as lost unless it turns up), and its socket sends the next.
    fn give_up_on_silent(&mut self, now: Instant) {
        for i in 0..self.sockets.len() {
            let s = &mut self.sockets[i];
            if let Some((_, at)) = s.waiting {
                if now.saturating_duration_since(at) >= self.options.timeout {
                    s.waiting = None;
                    self.ping(i, now);
                }
            }
        }
    }
}

/// Socket `s` failed with `e`: counted once, and it sends no more.
fn fail(failures: &mut Failures, s: &mut Sock, e: io::Error) {
    s.failed = true;
    let fault = if e.kind() == io::ErrorKind::ConnectionRefused {
        // An ICMP port unreachable: nothing serves UDP there.
        s.refused = true;
        Fault::Connect(e)
    } else {
        Fault::Io(e)
    };
    failures.record_for("socket", s.index, &fault);
}

/// Writes datagram `seq` of socket `index` into `out`: the sequence
/// number, then the pattern at the datagram's place in the socket's
/// stream (`payload` bytes per datagram).
fn fill(out: &mut [u8], pattern: &Pattern, index: usize, seq: u64, payload: u64) {
    out[..HEADER].copy_from_slice(&seq.to_be_bytes());
    let phase = Pattern::phase(index);
    let base = seq * payload;
    let mut done = 0;
    for chunk in out[HEADER..].chunks_mut(MAX_RUN) {
        chunk.copy_from_slice(pattern.bytes(phase, base + done, chunk.len()));
        done += chunk.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram built by `fill` carries its number and checks out whole,
    /// also when it is longer than one pattern run.
    #[test]
    fn a_filled_datagram_checks_out() {
        let pattern = Pattern::new();
        for size in [HEADER, 64, MAX_RUN + 100, MAX_SIZE] {
            let payload = (size - HEADER) as u64;
            let mut out = vec![0u8; size];
            fill(&mut out, &pattern, 3, 7, payload);
            assert_eq!(out[..HEADER], 7u64.to_be_bytes());
            assert_eq!(
                pattern.check(Pattern::phase(3), 7 * payload, &out[HEADER..]),
                Ok(())
            );
        }
    }

    /// Neighbouring datagrams of one socket differ, so an echo with the
    /// wrong header is caught.
    #[test]
    fn datagrams_have_their_own_bytes() {
        let pattern = Pattern::new();
        let (mut a, mut b) = (vec![0u8; 64], vec![0u8; 64]);
        fill(&mut a, &pattern, 0, 1, 56);
        fill(&mut b, &pattern, 0, 2, 56);
        assert_ne!(a[HEADER..], b[HEADER..]);
    }
}
