//! The server's memory and its judgement of stalls: one budget for the
//! bytes all connections owe (`--max-memory`), a refused allocation that
//! closes one connection instead of aborting the process, memory that goes
//! back to the system after a burst, a clamp on the kernel's socket buffers
//! (`--socket-buffer`), a stopped process that does not mistake waiting
//! bytes for idleness, and TCP keepalive for peers that vanished.
//!
//! Every test runs the server binary, so that `/proc/PID` shows the server
//! alone, over loopback (or a network namespace of the test's own), with
//! bounded loops and deadlines. Figures (resident memory before and after,
//! kernel queue sizes, counts) are printed to standard error; see them with
//! `cargo test --test memory -- --nocapture`.
//!
//! To see the tests fail on an older server, run them with
//! `MIO_ECHO_SERVER_BIN=/path/to/echo-server`: flags that build does not
//! list in its `--help` are then left out (see [`flags_it_knows`]), so the
//! old behaviour, not a usage error, is what fails.
// Some tests here need Linux (/proc, network namespaces); elsewhere they
// are compiled out, and what only they use goes unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

mod common;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_same_bytes, check_cyclic, connect, connect_small_window, count, exchange,
    limit_resource, live_stats, random_bytes, random_chunks, reset, round_trip, server_command,
    stop_server, EchoServer, Guarded, SetOnDrop, KIB, MIB,
};
#[cfg(target_os = "linux")]
use common::{kernel_socket, rss, tcp_sockets, vm_peak, LISTEN};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The receive buffer a staller asks for before its handshake: the window
/// it announces stays a few KiB, so the server cannot hand it the echo.
const STALLER_RCVBUF: usize = 4 * KIB;

/// A staller's send buffer: little of what it writes waits in its own
/// kernel, so its writes stall as soon as the server stops reading.
const STALLER_SNDBUF: usize = 16 * KIB;

/// The segment size a staller announces (TCP_MAXSEG before the handshake).
/// The kernel sizes the server's send buffer from its peer's segment size:
/// on loopback (64 KiB segments) it starts at a few MiB per connection, in
/// which a slow reader's whole echo would wait without costing the server
/// a byte of its own memory. At 1400 bytes it starts near 46 KiB.
const STALLER_MSS: u32 = 1400;

/// Stallers whose writes have all made no progress for this long have been
/// pushed back: the server stopped reading from them.
const QUIET: Duration = Duration::from_millis(500);

/// The longest one phase of a test with many clients (filling, reading
/// back) may take before the test fails. A healthy run takes a fraction.
const PHASE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The server binary
// ---------------------------------------------------------------------------

/// `args`, minus the flags (and their values) the server binary does not
/// list in its `--help`, when that binary is another build than this
/// checkout's (`MIO_ECHO_SERVER_BIN`). An older server then runs the same
/// scenario without the new flags, and the test's assertion shows what it
/// does. The checkout's own build always gets every flag.
fn flags_it_knows<'a>(args: &[&'a str]) -> Vec<&'a str> {
    if std::env::var_os("MIO_ECHO_SERVER_BIN").is_none() {
        return args.to_vec();
    }
    static HELP: OnceLock<String> = OnceLock::new();
    let help = HELP.get_or_init(|| {
        let out = server_command()
            .arg("--help")
            .output()
            .expect("run the server with --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let mut kept = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i];
        let has_value = args.get(i + 1).is_some_and(|v| !v.starts_with('-'));
        if flag.starts_with("--") && !help.contains(&format!("{flag} ")) {
            eprintln!("note: the server under test has no {flag}: left out");
            i += if has_value { 2 } else { 1 };
        } else {
            kept.push(flag);
            i += 1;
        }
    }
    kept
}

/// Starts the server binary as `command` describes (with
/// [`flags_it_knows`] applied to `args`) and returns it with the first TCP
/// address it logged.
fn start_with(command: &mut Command, args: &[&str]) -> (EchoServer, SocketAddr) {
    let mut server = EchoServer::spawn(command.args(flags_it_knows(args)));
    let addr = server.listening(1)[0];
    (server, addr)
}

/// [`start_with`] a plain server command.
fn start(args: &[&str]) -> (EchoServer, SocketAddr) {
    start_with(&mut server_command(), args)
}

/// Asks for the counters until `active=` is `n`, within [`PHASE`]; returns
/// the last `stats:` line. Paced by the server's answer, not by a sleep.
fn wait_for_active(server: &mut EchoServer, n: u64) -> String {
    let started = Instant::now();
    loop {
        let line = live_stats(server);
        if count(&line, "active") == n {
            return line;
        }
        assert!(
            started.elapsed() < PHASE,
            "still not active={n} after {PHASE:?}: {line}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (within `within`) for a log line containing `text`; fails with
/// the server's exit status if its standard error closes first (it exited,
/// or died), and with its last lines if no such line comes in time.
fn line_or_exit(server: &mut EchoServer, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        // The kit's wait fails the test at the deadline, naming its own
        // longest wait: catch that to say what was waited for.
        let next = panic::catch_unwind(AssertUnwindSafe(|| server.next_line(deadline)));
        let tail = &server.seen[server.seen.len().saturating_sub(5)..];
        match next {
            Ok(Some(line)) if line.contains(text) => return line,
            Ok(Some(_)) => {}
            Ok(None) => {
                let status = common::wait(&mut server.child, Instant::now());
                panic!(
                    "the server ended ({status}) before logging {text:?}; its last lines: \
                     {tail:#?}"
                );
            }
            Err(_) => panic!("no line with {text:?} within {within:?}; the last lines: {tail:#?}"),
        }
    }
}

/// Whether the server process (ours) is still running.
fn alive(server: &mut EchoServer) -> Option<ExitStatus> {
    server.child.try_wait().expect("try_wait")
}

/// The kernel's TCP buffer memory in use, in bytes (the `mem` pages of
/// /proc/net/sockstat): what the clients and the server hold in their
/// sockets, for the figures printed.
///
/// Read by hand: procfs has no reader for /proc/net/sockstat.
#[cfg(target_os = "linux")]
fn kernel_tcp_memory() -> u64 {
    let stat = std::fs::read_to_string("/proc/net/sockstat").expect("read /proc/net/sockstat");
    let pages: u64 = stat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1))
        .and_then(|n| n.parse().ok())
        .expect("a TCP mem figure in /proc/net/sockstat");
    // SAFETY: sysconf reads a configuration value; no pointers.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page as u64
}

/// Bytes as MiB, for the figures printed.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

// ---------------------------------------------------------------------------
// Clients that send and do not read
// ---------------------------------------------------------------------------

/// One client that writes without reading (until told to read back).
struct Staller {
    stream: TcpStream,
    /// Where in the shared pattern this client's stream begins.
    shift: usize,
    /// Bytes written so far.
    sent: usize,
    /// Bytes of echo read and checked so far.
    echoed: usize,
    /// The server's FIN has been read.
    eof: bool,
}

/// Connects to `addr` with a small receive window, a small send buffer
/// and a small segment size, all set before the handshake.
fn connect_staller(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(STALLER_RCVBUF).unwrap();
    socket.set_send_buffer_size(STALLER_SNDBUF).unwrap();
    socket.set_tcp_mss(STALLER_MSS).unwrap();
    socket
        .connect(&addr.into())
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    TcpStream::from(socket)
}

/// Many [`Staller`]s on non-blocking sockets, driven from one thread. Each
/// sends the same random pattern from its own offset, so that bytes of one
/// client showing up at another are seen.
#[cfg(target_os = "linux")]
struct Stallers {
    pattern: Vec<u8>,
    /// The most each client tries to send.
    each: usize,
    clients: Vec<Staller>,
}

#[cfg(target_os = "linux")]
impl Stallers {
    /// Connects `n` clients with small socket buffers.
    fn connect(addr: SocketAddr, n: usize, each: usize, seed: u64) -> Stallers {
        let pattern = random_bytes(seed, 256 * KIB + 7);
        let clients = (0..n)
            .map(|i| {
                let stream = connect_staller(addr);
                stream.set_nonblocking(true).unwrap();
                Staller {
                    stream,
                    shift: (i * 7919) % pattern.len(),
                    sent: 0,
                    echoed: 0,
                    eof: false,
                }
            })
            .collect();
        Stallers {
            pattern,
            each,
            clients,
        }
    }

    /// Writes on every client until each has sent `each` bytes or none has
    /// made progress for [`QUIET`]: the server pushed them all back.
    /// Returns whether every byte went out, and how long it took.
    fn push(&mut self) -> (bool, Duration) {
        let started = Instant::now();
        let mut progress_at = Instant::now();
        loop {
            let (progress, done) = self.write_available(self.clients.len());
            if done {
                return (true, started.elapsed());
            }
            if progress {
                progress_at = Instant::now();
            } else if progress_at.elapsed() >= QUIET {
                return (false, started.elapsed());
            }
            assert!(
                started.elapsed() < PHASE,
                "stallers still making progress after {PHASE:?}"
            );
            // Pacing only: the quiet period, not this sleep, decides.
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// One pass over the first `n` clients, each writing what its socket
    /// takes. Returns whether any wrote, and whether all have sent `each`.
    fn write_available(&mut self, n: usize) -> (bool, bool) {
        let mut progress = false;
        let mut done = true;
        for c in self.clients.iter_mut().take(n) {
            while c.sent < self.each {
                let at = (c.shift + c.sent) % self.pattern.len();
                let end = self.pattern.len().min(at + self.each - c.sent);
                match (&c.stream).write(&self.pattern[at..end]) {
                    Ok(n) => {
                        c.sent += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("a staller's write after {} bytes: {e}", c.sent),
                }
            }
            done &= c.sent == self.each;
        }
        (progress, done)
    }

    /// Waits until the server side's kernel queues of every client are the
    /// same in two looks 50 ms apart: the server has read what it will.
    fn settle(&self, server: SocketAddr) -> Duration {
        let started = Instant::now();
        let mut last = self.queues(server);
        loop {
            thread::sleep(Duration::from_millis(50));
            let now = self.queues(server);
            if now == last {
                return started.elapsed();
            }
            last = now;
            assert!(
                started.elapsed() < PHASE,
                "the server still reads from the stallers after {PHASE:?}"
            );
        }
    }

    /// The server side's (rx, tx) kernel queues, client by client, from
    /// one reading of the kernel's table.
    fn queues(&self, server: SocketAddr) -> Vec<(usize, usize)> {
        let table = server_sockets(server);
        self.clients
            .iter()
            .map(|c| {
                let me = c.stream.local_addr().unwrap();
                table.get(&me).copied().unwrap_or((0, 0))
            })
            .collect()
    }

    /// Bytes written by all clients.
    fn sent(&self) -> usize {
        self.clients.iter().map(|c| c.sent).sum()
    }

    /// The server side's kernel queues, summed over every client: bytes
    /// received and not read by the server, and bytes it wrote that the
    /// client has not acknowledged (read from /proc/net/tcp).
    fn server_queues(&self, server: SocketAddr) -> (usize, usize) {
        self.queues(server)
            .into_iter()
            .fold((0, 0), |(rx, tx), q| (rx + q.0, tx + q.1))
    }

    /// Reads on every client until each has its `sent` bytes back, checking
    /// every byte against what it sent, in order.
    fn read_back(&mut self) -> Duration {
        let started = Instant::now();
        let all = self.clients.len();
        while !self.read_available(all) {
            let missing: usize = self.clients.iter().map(|c| c.sent - c.echoed).sum();
            let waiting = self.clients.iter().filter(|c| c.echoed < c.sent).count();
            assert!(
                started.elapsed() < PHASE,
                "after {PHASE:?}, {waiting} stallers still wait for {missing} bytes of echo: \
                 the server did not resume them"
            );
            thread::sleep(Duration::from_millis(1));
        }
        started.elapsed()
    }

    /// One pass over the first `n` clients, each reading (and checking)
    /// the echo its socket holds. Returns whether they have it all.
    fn read_available(&mut self, n: usize) -> bool {
        let mut buf = [0u8; 16 * KIB];
        let mut done = true;
        for (i, c) in self.clients.iter_mut().enumerate().take(n) {
            while c.echoed < c.sent {
                match (&c.stream).read(&mut buf) {
                    Ok(0) => panic!(
                        "staller {i}: EOF after {} of its {} bytes",
                        c.echoed, c.sent
                    ),
                    Ok(n) => {
                        assert!(
                            c.echoed + n <= c.sent,
                            "staller {i}: more echo than it sent"
                        );
                        let at = c.shift + c.echoed;
                        if let Err(e) = check_cyclic(&self.pattern, at, &buf[..n]) {
                            panic!("staller {i}, echo byte {}: {e}", c.echoed);
                        }
                        c.echoed += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("staller {i} after {} bytes of echo: {e}", c.echoed),
                }
            }
            done &= c.echoed == c.sent;
        }
        done
    }

    /// Half-closes every client and reads to the server's FIN: nothing more
    /// may come.
    fn leave(&mut self) {
        let started = Instant::now();
        for c in &self.clients {
            c.stream.shutdown(Shutdown::Write).unwrap();
        }
        let mut byte = [0u8; 1];
        loop {
            for (i, c) in self.clients.iter_mut().enumerate() {
                if c.eof {
                    continue;
                }
                match (&c.stream).read(&mut byte) {
                    Ok(0) => c.eof = true,
                    Ok(_) => panic!("staller {i}: a byte after all it sent came back"),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => panic!("staller {i}: waiting for the server's FIN: {e}"),
                }
            }
            if self.clients.iter().all(|c| c.eof) {
                return;
            }
            assert!(started.elapsed() < PHASE, "no FIN after {PHASE:?}");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The connected sockets whose local address is `server`, by their remote
/// address: (rx, tx) queue bytes, as /proc/net/tcp shows them. One reading
/// of the table for every connection: with a few hundred sockets, reading
/// it once per connection (as `common::kernel_socket` does) takes seconds.
#[cfg(target_os = "linux")]
fn server_sockets(server: SocketAddr) -> HashMap<SocketAddr, (usize, usize)> {
    tcp_sockets()
        .into_iter()
        .filter(|s| s.local == server && s.state != LISTEN)
        .map(|s| (s.remote, (s.rx, s.tx)))
        .collect()
}

/// How long a client that reads its echo waits for it while stallers hold
/// the server's memory: long on loopback, and it bounds a test that fails.
const INNOCENT_WAIT: Duration = Duration::from_secs(5);

/// Round trips of random messages of up to 4 KiB on a fresh connection:
/// the server still serves a client that reads its echo.
fn innocent_round_trips(addr: SocketAddr, seed: u64) -> TcpStream {
    let mut rng = StdRng::seed_from_u64(seed);
    let client = connect(addr);
    client.set_read_timeout(Some(INNOCENT_WAIT)).unwrap();
    for i in 0..20 {
        let message = random_bytes(rng.random(), 1 + rng.random_range(0..4 * KIB));
        round_trip(&client, &message).unwrap_or_else(|e| {
            panic!("innocent round trip {i} (seed {seed:#x}), waited {INNOCENT_WAIT:?}: {e}")
        });
    }
    client
}

/// [`innocent_round_trips`], then one exchange of 1 MiB on the same
/// connection.
fn innocent_client_is_served(addr: SocketAddr, seed: u64) {
    let client = innocent_round_trips(addr, seed);
    let mut rng = StdRng::seed_from_u64(!seed);
    let data = random_bytes(seed, MIB);
    let chunks = random_chunks(&mut rng, data.len(), 64 * KIB);
    let echo = exchange(&client, &data, &chunks)
        .unwrap_or_else(|e| panic!("innocent 1 MiB (seed {seed:#x}): {e}"));
    assert_same_bytes(&data, &echo, format!("innocent 1 MiB (seed {seed:#x})"));
}

// ---------------------------------------------------------------------------
// The memory budget
// ---------------------------------------------------------------------------

/// `--max-memory` bounds what peers that send and never read cost the
/// server, however many they are: its resident memory grows by at most the
/// budget and a little slack; a client that reads its echo is served
/// meanwhile, even after more stallers arrive once the budget is spent;
/// and once the stallers read, each gets back exactly what it sent, in
/// order, the server resuming by itself the connections it had stopped
/// reading (no edge comes for them), and no connection is lost.
///
/// Without the budget each of 300 connections owes its whole
/// `--max-buffer`: the old server (run without `--max-memory`) grew by
/// about 300 x 64 KiB and more.
#[cfg(target_os = "linux")]
#[test]
fn the_memory_budget_bounds_what_peers_that_never_read_can_cost() {
    const SEED: u64 = 0xB0D6E7;
    const STALLERS: usize = 300;
    /// Stallers that arrive once the budget is spent. Each may read into
    /// the budget's last eighth while it owes nothing yet, though its echo
    /// cannot go straight back.
    const LATE: usize = 32;
    const EACH: usize = 384 * KIB;
    const BUDGET: u64 = 4 * MIB as u64;
    const SLACK: u64 = 3 * MIB as u64;
    let (server, addr) = start(&[
        "-l",
        "127.0.0.1:0",
        "--max-memory",
        "4M",
        "--max-buffer",
        "64K",
    ]);
    let pid = server.pid();
    let warm = connect(addr);
    round_trip(&warm, b"warm-up").unwrap();
    let idle = rss(pid);

    let mut stallers = Stallers::connect(addr, STALLERS, EACH, SEED);
    let (complete, took) = stallers.push();
    let mut late = Stallers::connect(addr, LATE, EACH, SEED + 1);
    let (late_complete, late_took) = late.push();
    let stalled = rss(pid);
    let kernel = kernel_tcp_memory();
    let (rx, tx) = stallers.server_queues(addr);
    eprintln!(
        "budget: {STALLERS} stallers sent {:.1} MiB in {took:?}, {LATE} late ones {:.1} MiB in \
         {late_took:?}; server RSS {:.1} -> {:.1} MiB (+{:.1}); server-side kernel queues of \
         the first {STALLERS}: rx {:.1} MiB, tx {:.1} MiB; kernel TCP memory {:.1} MiB",
        mib(stallers.sent() as u64),
        mib(late.sent() as u64),
        mib(idle),
        mib(stalled),
        mib(stalled.saturating_sub(idle)),
        mib(rx as u64),
        mib(tx as u64),
        mib(kernel),
    );
    assert!(
        !complete && !late_complete,
        "no push-back: stallers sent all {EACH} bytes"
    );
    assert!(
        stalled.saturating_sub(idle) <= BUDGET + SLACK,
        "{} peers that never read grew the server by {:.1} MiB, past the 4 MiB budget \
         and {:.0} MiB of slack",
        STALLERS + LATE,
        mib(stalled - idle),
        mib(SLACK)
    );
    innocent_client_is_served(addr, SEED);

    let mut took = stallers.read_back();
    took += late.read_back();
    eprintln!(
        "budget: every staller got its bytes back ({:.1} MiB in all) in {took:?}",
        mib((stallers.sent() + late.sent()) as u64)
    );
    stallers.leave();
    late.leave();
    drop(warm);
    let (status, _, summary) = stop_server(server);
    eprintln!("budget: {summary}");
    assert!(status.success(), "{status}");
    assert_eq!(count(&summary, "out_of_memory"), 0, "{summary}");
    assert_eq!(count(&summary, "active"), 0, "{summary}");
    assert_eq!(
        count(&summary, "closed"),
        count(&summary, "connections"),
        "{summary}"
    );
    assert_eq!(
        count(&summary, "bytes_in"),
        count(&summary, "bytes"),
        "every byte read was echoed: {summary}"
    );
}

/// After a burst of slow readers leaves, the server's resident memory comes
/// back close to its idle level, even though a few connections that still
/// owe bytes hold buffers scattered among the freed ones; and once those
/// leave too, it is back at idle.
///
/// glibc's `free` keeps freed memory mapped unless it is at the top of the
/// heap: the buffers of the few that stay pin the heap's top, and the old
/// server (no `malloc_trim`) kept all of the burst's memory resident.
#[cfg(target_os = "linux")]
#[test]
fn resident_memory_returns_after_a_burst_of_slow_readers_leaves() {
    const SEED: u64 = 0x7E7A1;
    const STALLERS: usize = 400;
    /// Enough for the server to owe its whole 64 KiB (`--max-buffer`'s
    /// default) to each, after its own socket and the client's have filled.
    const EACH: usize = 192 * KIB;
    /// Every this many stallers, one stays (and keeps owing) while the rest
    /// leave.
    const KEEP_EVERY: usize = 25;
    /// With every slow reader gone: within this of the idle level.
    const CLOSE_TO_IDLE: u64 = 4 * MIB as u64;
    /// While a few still owe bytes: within this of the idle level plus what
    /// they owe. The server gives freed heap back in steps, whenever its
    /// buffers have shrunk by 8 MiB (`TRIM_STEP` in src/server.rs) since it
    /// last did, so up to that much may stay resident after the last step.
    const RETURNED_IN_STEPS: u64 = 8 * MIB as u64 + 2 * MIB as u64;
    let (mut server, addr) = start(&["-l", "127.0.0.1:0"]);
    let pid = server.pid();
    let warm = connect(addr);
    round_trip(&warm, b"warm-up").unwrap();
    let idle = rss(pid);

    let mut stallers = Stallers::connect(addr, STALLERS, EACH, SEED);
    let (_, took) = stallers.push();
    let settled = stallers.settle(addr);
    let peak = rss(pid);
    let kernel = kernel_tcp_memory();
    let sent = stallers.sent();
    let (rx, tx) = stallers.server_queues(addr);
    let mut kept = Vec::new();
    for (i, c) in stallers.clients.drain(..).enumerate() {
        if i % KEEP_EVERY == 0 {
            kept.push(c);
        } else {
            reset(c.stream);
        }
    }
    let keepers = kept.len();
    let owed = (keepers * 64 * KIB) as u64;
    wait_for_active(&mut server, keepers as u64 + 1);
    let after = rss_within(pid, idle + owed + RETURNED_IN_STEPS);
    for c in kept.drain(..) {
        reset(c.stream);
    }
    wait_for_active(&mut server, 1);
    let last = rss_within(pid, idle + CLOSE_TO_IDLE);
    eprintln!(
        "burst: {STALLERS} slow readers sent {:.1} MiB in {took:?}, settled in {settled:?}; \
         server-side kernel queues rx {:.1} MiB, tx {:.1} MiB; kernel TCP memory {:.1} MiB; \
         server RSS idle {:.1}, burst {:.1}, with {keepers} still owing {:.1}, all gone {:.1} MiB",
        mib(sent as u64),
        mib(rx as u64),
        mib(tx as u64),
        mib(kernel),
        mib(idle),
        mib(peak),
        mib(after),
        mib(last),
    );
    assert!(
        peak > idle + 16 * MIB as u64,
        "the burst did not cost the server memory ({:.1} -> {:.1} MiB): it measures nothing",
        mib(idle),
        mib(peak)
    );
    assert!(
        after <= idle + owed + RETURNED_IN_STEPS,
        "after the burst left, RSS stayed at {:.1} MiB (idle {:.1}, {keepers} connections \
         owing {:.1})",
        mib(after),
        mib(idle),
        mib(owed)
    );
    assert!(
        last <= idle + CLOSE_TO_IDLE,
        "with every slow reader gone, RSS stayed at {:.1} MiB (idle {:.1})",
        mib(last),
        mib(idle)
    );
    round_trip(&warm, b"still served").unwrap();
    drop(warm);
    let (status, _, summary) = stop_server(server);
    assert!(status.success(), "{status}: {summary}");
}

/// The server's RSS once it is at most `bound`, or as it is after
/// [`QUIET`] (500 ms) of looking. The stats line that says the
/// connections are gone is written in the turn that closed them, and the
/// heap is trimmed at that turn's end: a look between the two would see
/// memory that is about to be returned.
#[cfg(target_os = "linux")]
fn rss_within(pid: u32, bound: u64) -> u64 {
    let started = Instant::now();
    loop {
        let now = rss(pid);
        if now <= bound || started.elapsed() >= QUIET {
            return now;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// The allocator refuses
// ---------------------------------------------------------------------------

/// Writes `pattern` over and over on `stream` (blocking, with a short write
/// timeout) until `stop` is set, the server closes the connection, or
/// [`PHASE`] passes. Returns the bytes written.
fn write_until(stream: &TcpStream, pattern: &[u8], stop: &AtomicBool) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let mut written = 0;
    while !stop.load(SeqCst) && started.elapsed() < PHASE {
        match (&*stream).write(&pattern[written % pattern.len()..]) {
            Ok(n) => written += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // Closed by the server (as it is when its buffer was refused).
            Err(_) => return written,
        }
    }
    written
}

/// Under an address-space limit the allocator runs into, a buffer that
/// cannot grow closes its one connection with a log line ("the allocator
/// refused"); the process never aborts: it goes on serving a client that
/// reads its echo, exits 0 on SIGTERM, and counts the refusal in its
/// summary (out_of_memory).
///
/// The old server aborted ("memory allocation of N bytes failed", SIGABRT)
/// and every client got a reset.
#[cfg(target_os = "linux")]
#[test]
fn allocation_failure_closes_one_connection_and_never_aborts() {
    const SEED: u64 = 0xA110C;
    /// Each may make the server owe 4 MiB: together far past the headroom.
    const STALLERS: usize = 24;
    /// Address space allowed beyond what the server maps at idle.
    const HEADROOM: u64 = 48 * MIB as u64;
    let args = [
        "-l",
        "127.0.0.1:0",
        "--max-memory",
        "1G",
        "--max-buffer",
        "4M",
        "--max-connections",
        "200",
    ];
    // What the server maps at idle, with one connection served: a first
    // run, without a limit.
    let (probe, addr) = start(&args);
    let client = connect(addr);
    round_trip(&client, b"warm-up").unwrap();
    let idle_peak = vm_peak(probe.pid());
    drop(client);
    let (status, _, _) = stop_server(probe);
    assert!(status.success(), "the unlimited server: {status}");

    let limit = idle_peak + HEADROOM;
    eprintln!(
        "allocator: address space limit {:.1} MiB (VmPeak at idle {:.1} + {:.0})",
        mib(limit),
        mib(idle_peak),
        mib(HEADROOM)
    );
    let mut command = server_command();
    limit_resource(&mut command, libc::RLIMIT_AS as libc::c_int, limit);
    let (mut server, addr) = start_with(&mut command, &args);
    let warm = connect(addr);
    round_trip(&warm, b"warm-up").unwrap();
    let pattern = random_bytes(SEED, MIB);
    let stallers: Vec<TcpStream> = (0..STALLERS).map(|_| connect_staller(addr)).collect();
    let stop_writing = AtomicBool::new(false);
    let started = Instant::now();
    let (refused, ends) = thread::scope(|scope| {
        let _stop = SetOnDrop(&stop_writing);
        let writers: Vec<_> = stallers
            .iter()
            .map(|s| scope.spawn(|| write_until(s, &pattern, &stop_writing)))
            .collect();
        let refused = line_or_exit(&mut server, "the allocator refused", PHASE);
        stop_writing.store(true, SeqCst);
        let ends: Vec<_> = writers
            .into_iter()
            .map(|w| w.join().expect("a writer panicked"))
            .collect();
        (refused, ends)
    });
    let refused_after = started.elapsed();
    let vm_at_refusal = vm_peak(server.pid());
    let written: usize = ends.iter().sum();
    eprintln!(
        "allocator: {STALLERS} stallers wrote {:.1} MiB; refused after {refused_after:?}; \
         VmPeak {:.1} MiB; kernel TCP memory {:.1} MiB; {refused}",
        mib(written as u64),
        mib(vm_at_refusal),
        mib(kernel_tcp_memory()),
    );
    assert_eq!(alive(&mut server), None, "the server died");
    innocent_round_trips(addr, SEED);
    round_trip(&warm, b"and the one from before").unwrap();
    assert_eq!(alive(&mut server), None, "the server died");
    for s in stallers {
        reset(s);
    }
    drop(warm);
    let (status, lines, summary) = stop_server(server);
    eprintln!("allocator: {summary}");
    assert!(status.success(), "{status}: {summary}");
    let refusals = lines
        .iter()
        .filter(|l| l.contains("the allocator refused"))
        .count();
    assert!(count(&summary, "out_of_memory") > 0, "{summary}");
    assert_eq!(
        count(&summary, "out_of_memory") as usize,
        refusals,
        "one log line per connection closed for memory: {summary}"
    );
}

// ---------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------

/// Runs the server with `args` and returns its exit status and standard
/// error, or `None` if it is still running after a few seconds: it took
/// the arguments and is serving.
fn run_briefly(args: &[&str]) -> Option<(ExitStatus, String)> {
    const STARTS_WITHIN: Duration = Duration::from_secs(10);
    let mut child = Guarded::spawn(
        server_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = common::drain(child.stderr.take().unwrap());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > STARTS_WITHIN {
            drop(child);
            return None;
        }
        // Polling interval only: the bound is STARTS_WITHIN.
        thread::sleep(Duration::from_millis(10));
    };
    let text = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    Some((status, text))
}

/// A `--max-buffer` larger than `--max-memory`, and values no machine has,
/// are usage errors: exit status 2 and one `error:` line that names the
/// flag at fault. (The old server took `--max-buffer 18446744073709551615`
/// and ran.)
#[test]
fn impossible_memory_flags_are_usage_errors() {
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--max-buffer", "2M", "--max-memory", "1M"],
            &["--max-buffer", "--max-memory"],
        ),
        (&["--max-buffer", "18446744073709551615"], &["--max-buffer"]),
        (&["--max-memory", "18446744073709551615"], &["--max-memory"]),
        (&["--max-buffer", "0"], &["--max-buffer"]),
    ];
    for (flags, names) in cases {
        let mut args = vec!["-l", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let Some((status, stderr)) = run_briefly(&args) else {
            panic!("{flags:?} was accepted: the server started and served");
        };
        eprintln!("flags: {flags:?}: {status}: {}", stderr.trim_end());
        assert_eq!(status.code(), Some(2), "{flags:?}: {status}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{flags:?}: not one line: {stderr}");
        assert!(lines[0].starts_with("error: "), "{flags:?}: {}", lines[0]);
        assert!(
            !lines[0].contains("unexpected argument"),
            "{flags:?}: {}",
            lines[0]
        );
        for name in names {
            assert!(
                lines[0].contains(name),
                "{flags:?}: does not name {name}: {}",
                lines[0]
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The kernel's socket buffers
// ---------------------------------------------------------------------------

/// A client with a small receive window sends up to `SEND` bytes and never
/// reads; returns the most the server side's kernel queues (tx + rx) held
/// at once, and how much the client sent before it stalled.
#[cfg(target_os = "linux")]
fn slow_reader_kernel_queue(args: &[&str]) -> (usize, usize) {
    const SEND: usize = 8 * MIB;
    let (server, addr) = start(args);
    let client = connect_small_window(addr, 4 * KIB);
    client.set_nonblocking(true).unwrap();
    let me = client.local_addr().unwrap();
    let pattern = random_bytes(0x50CB, 256 * KIB);
    let started = Instant::now();
    let mut progress_at = Instant::now();
    let (mut sent, mut most) = (0, 0);
    while sent < SEND && progress_at.elapsed() < QUIET {
        assert!(started.elapsed() < PHASE, "still sending after {PHASE:?}");
        let at = sent % pattern.len();
        let end = pattern.len().min(at + SEND - sent);
        match (&client).write(&pattern[at..end]) {
            Ok(n) => {
                sent += n;
                progress_at = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Pacing only: the quiet period decides when it stalled.
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("the slow reader's write after {sent} bytes: {e}"),
        }
        if let Some(s) = kernel_socket(addr, me) {
            most = most.max(s.tx + s.rx);
        }
    }
    reset(client);
    let (status, _, summary) = stop_server(server);
    assert!(status.success(), "{status}: {summary}");
    (most, sent)
}

/// With `--socket-buffer 64K`, a client that sends 8 MiB and never reads
/// costs the server's side of the connection less than 512 KiB of kernel
/// queue; without it the kernel autotunes the buffers to MiBs (printed).
#[cfg(target_os = "linux")]
#[test]
fn socket_buffer_clamps_the_kernels_queue_for_a_slow_reader() {
    const CLAMPED: usize = 512 * KIB;
    let (clamped, clamped_sent) =
        slow_reader_kernel_queue(&["-l", "127.0.0.1:0", "--socket-buffer", "64K"]);
    let (autotuned, autotuned_sent) = slow_reader_kernel_queue(&["-l", "127.0.0.1:0"]);
    eprintln!(
        "socket buffer: server-side tx+rx at most {:.2} MiB with --socket-buffer 64K (client \
         sent {:.2} MiB before it stalled), {:.2} MiB autotuned (sent {:.2} MiB)",
        mib(clamped as u64),
        mib(clamped_sent as u64),
        mib(autotuned as u64),
        mib(autotuned_sent as u64),
    );
    assert!(
        clamped < CLAMPED,
        "--socket-buffer 64K: the server's socket queued {clamped} bytes for a slow reader"
    );
}

// ---------------------------------------------------------------------------
// Stalls and idleness
// ---------------------------------------------------------------------------

/// A server stopped (SIGSTOP) for longer than `--idle-timeout` wakes to
/// find every deadline past, with bytes waiting on every connection: it
/// closes none of them as idle, and every client gets its echo.
///
/// The old server closed most of them (it judged idleness by the clock
/// alone, before the events of the turn were served).
#[test]
fn a_stopped_server_does_not_close_connections_with_data_waiting_as_idle() {
    const SEED: u64 = 0x5106;
    const CONNECTIONS: usize = 1500;
    /// Twice the idle timeout.
    const STOPPED_FOR: Duration = Duration::from_secs(4);
    let (mut server, addr) = start(&["-l", "127.0.0.1:0", "--idle-timeout", "2"]);
    let mut rng = StdRng::seed_from_u64(SEED);
    let clients: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|i| {
            let c = connect(addr);
            round_trip(&c, format!("hello {i}").as_bytes()).unwrap();
            c
        })
        .collect();
    let messages: Vec<Vec<u8>> = (0..CONNECTIONS)
        .map(|_| random_bytes(rng.random(), 64))
        .collect();

    server.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    for (c, m) in clients.iter().zip(&messages) {
        (&*c).write_all(m).unwrap();
    }
    // The stop is the scenario: the server sleeps past every deadline.
    thread::sleep(STOPPED_FOR.saturating_sub(stopped.elapsed()));
    server.signal(libc::SIGCONT);

    let mut closed = 0;
    let mut failed = Vec::new();
    for (i, (c, m)) in clients.iter().zip(&messages).enumerate() {
        let mut echo = vec![0u8; m.len()];
        match (&*c).read_exact(&mut echo) {
            Ok(()) if echo == *m => {}
            Ok(()) => failed.push(format!("connection {i}: another echo")),
            Err(e) if matches!(e.kind(), io::ErrorKind::UnexpectedEof) => closed += 1,
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset) => closed += 1,
            Err(e) => failed.push(format!("connection {i}: {e}")),
        }
    }
    let echoed_in = stopped.elapsed() - STOPPED_FOR;
    let stats = live_stats(&mut server);
    eprintln!(
        "stopped: {CONNECTIONS} connections, {closed} closed after the stop, {} failed; \
         echoes read within {echoed_in:?} of SIGCONT; {stats}",
        failed.len()
    );
    assert_eq!(
        closed, 0,
        "{closed} of {CONNECTIONS} connections with bytes waiting were closed: {stats}"
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(count(&stats, "idle_closed"), 0, "{stats}");
    for c in &clients {
        c.shutdown(Shutdown::Write).unwrap();
    }
    drop(clients);
    let (status, _, summary) = stop_server(server);
    eprintln!("stopped: {summary}");
    assert!(status.success(), "{status}: {summary}");
    assert_eq!(count(&summary, "idle_closed"), 0, "{summary}");
}

// ---------------------------------------------------------------------------
// Peers that vanish
// ---------------------------------------------------------------------------

/// A network namespace of the test's own (with its loopback up), deleted
/// when dropped, failing test or not.
#[cfg(target_os = "linux")]
struct Netns(String);

#[cfg(target_os = "linux")]
impl Netns {
    /// A new namespace, or `None` (and why, on standard error) where the
    /// test cannot make one: not root, or no `ip`.
    fn create() -> Option<Netns> {
        // SAFETY: geteuid only reads this process's credentials.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: creating a network namespace needs root");
            return None;
        }
        let name = format!("mio-echo-memory-{}", std::process::id());
        match Command::new("ip").args(["netns", "add", &name]).status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("skipped: `ip netns add {name}` failed ({status})");
                return None;
            }
            Err(e) => {
                eprintln!("skipped: cannot run `ip` ({e})");
                return None;
            }
        }
        let netns = Netns(name);
        netns.run(&["ip", "link", "set", "lo", "up"]);
        Some(netns)
    }

    /// `program` run inside the namespace (`ip netns exec` execs it: the
    /// child's pid is the program's).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0]).arg(program);
        command
    }

    /// Runs `args` inside the namespace and fails unless it succeeds.
    fn run(&self, args: &[&str]) {
        let status = self
            .command(args[0])
            .args(&args[1..])
            .status()
            .unwrap_or_else(|e| panic!("run {args:?} in {}: {e}", self.0));
        assert!(status.success(), "{args:?} in {}: {status}", self.0);
    }

    /// Connects to `addr` inside the namespace, from a thread that joins it
    /// (setns moves only the calling thread) and ends once connected: the
    /// socket stays in the namespace.
    fn connect(&self, addr: SocketAddr) -> TcpStream {
        let path = format!("/var/run/netns/{}", self.0);
        thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns takes a descriptor we hold open and a flag; it
            // moves this thread alone, which ends after the connect.
            let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(joined, 0, "setns: {}", io::Error::last_os_error());
            connect(addr)
        })
        .join()
        .expect("the connecting thread panicked")
    }
}

#[cfg(target_os = "linux")]
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// With `--keepalive 1`, a peer that vanished without FIN or RST (the
/// namespace's loopback goes down: no packet passes) is closed, the log
/// saying "timed out", within seconds; with `--keepalive 0`, the same peer
/// is still held after the same time.
///
/// The old server had no keepalive and held such peers forever.
#[cfg(target_os = "linux")]
#[test]
fn keepalive_closes_a_peer_that_vanished() {
    /// Keepalive 1: probes after 1 s, then 3 more 1 s apart: about 4 s.
    const CLOSES_WITHIN: Duration = Duration::from_secs(15);
    let Some(netns) = Netns::create() else {
        return;
    };
    let bin = server_command().get_program().to_owned();
    let start_in_netns = |keepalive: &str| {
        let mut command = netns.command(&bin);
        command.env("RUST_LOG", "debug");
        start_with(
            &mut command,
            &["-l", "127.0.0.1:0", "--keepalive", keepalive],
        )
    };
    let (mut probing, probing_addr) = start_in_netns("1");
    let (mut trusting, trusting_addr) = start_in_netns("0");
    let probed = netns.connect(probing_addr);
    let trusted = netns.connect(trusting_addr);
    round_trip(&probed, b"here, then gone").unwrap();
    round_trip(&trusted, b"here, then gone").unwrap();
    let peer = probed.local_addr().unwrap().to_string();

    // From now on no packet gets through: no FIN, no RST, no ACK. (Not a
    // qdisc that drops everything, such as `pfifo limit 0`: the kernel
    // takes a probe its own qdisc drops for local congestion, retries it
    // every 500 ms and never counts it, so keepalive never gives up;
    // tried. With the loopback down, a probe fails for want of a route,
    // and that counts.)
    netns.run(&["ip", "link", "set", "lo", "down"]);
    let vanished = Instant::now();
    let closed = line_or_exit(&mut probing, "timed out", CLOSES_WITHIN);
    let took = vanished.elapsed();
    let stats = live_stats(&mut trusting);
    eprintln!("keepalive: closed after {took:?}: {closed}");
    eprintln!("keepalive 0, after as long: {stats}");
    assert!(closed.contains(&peer), "another connection: {closed}");
    assert!(took < CLOSES_WITHIN, "closed only after {took:?}");
    assert_eq!(
        count(&stats, "active"),
        1,
        "--keepalive 0 closed it: {stats}"
    );
    assert!(
        !trusting.seen.iter().any(|l| l.contains("timed out")),
        "--keepalive 0 timed out: {:#?}",
        trusting.seen
    );
    drop((probed, trusted));
    // Both servers are killed (by their guards) before the namespace goes.
}
