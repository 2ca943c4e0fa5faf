//! The server under load, faults and hostile peers (issue 3): a peer that
//! never reads, a peer that streams flat out, a process out of descriptors,
//! the connection and idle limits, storms of short connections beside
//! long-lived ones, ten thousand connections at once, and a mixed soak.
//!
//! Tests that measure the server's memory or CPU time run the built binary,
//! so that `/proc/PID` shows the server alone; the others run it in this
//! process. Every echoed byte is compared with what was sent, every random
//! choice comes from a fixed seed, everything runs over loopback, and every
//! wait has a deadline. Each test says what it would observe if the
//! behaviour it pins were gone.
//!
//! Figures (memory per connection, CPU at the descriptor limit, memory
//! under a flood, soak totals) are printed to standard error; see them with
//! `cargo test --test resilience -- --nocapture`.

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_same_bytes, closed_by_peer, connect, connect_from, connect_small_window, count,
    cpu_time, difference, exchange, exchange_reading, fds_below, kernel_socket, live_stats,
    open_fds, random_bytes, random_chunks, read_to_eof, reset, round_trip, rss, server,
    server_command, server_with, start_server, stop_server, wait_until, EchoServer, DEADLINE,
};
use mio_echo::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// How long a client refused by a limit may wait for the server to close
/// it. Generous: "at once" is a few milliseconds; a server that serves the
/// client instead never closes it, and this bounds the wait for that.
const REFUSAL_WAIT: Duration = Duration::from_secs(10);

/// Sets a flag when dropped, so that threads polling it stop even when the
/// test fails (panics) before it would have set it.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Fails (with the offset) unless `got`, read at stream offset `at`, is
/// what a stream of `pattern` repeated end to end holds there.
fn check_cyclic(pattern: &[u8], at: usize, got: &[u8]) -> Result<(), String> {
    let mut done = 0;
    while done < got.len() {
        let p = (at + done) % pattern.len();
        let n = (got.len() - done).min(pattern.len() - p);
        if got[done..done + n] != pattern[p..p + n] {
            let i = got[done..done + n]
                .iter()
                .zip(&pattern[p..p + n])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "the echo differs from what was sent at stream offset {}",
                at + done + i
            ));
        }
        done += n;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Back-pressure
// ---------------------------------------------------------------------------

/// A peer that writes without ever reading is pushed back within a few MiB
/// (the server stops reading at `--max-buffer`), costs the server less than
/// 8 MiB of memory, and gets every byte back once it reads; another
/// client's round trips go on meanwhile.
///
/// Without back-pressure the server would read on and queue the echo it
/// cannot send: the writer would never stall, all 256 MiB would go out and
/// the server's memory would grow by about as much (tried: the whole 256
/// MiB went out in half a second). The read-back at the end needs the
/// server to read again as its buffer drains; on Linux the writable event
/// that drains it also reports the bytes waiting, so that part holds even
/// without the server's explicit resume (tried).
#[test]
fn a_peer_that_never_reads_is_pushed_back_and_costs_the_server_little_memory() {
    const SEED: u64 = 0xF100D;
    // What the flooder attempts to send. It stops as soon as its writes
    // stall, which is the push-back: once the kernel's socket buffers both
    // ways and the server's 64 KiB are full, about 10 MiB on this machine.
    const ATTEMPT: usize = 256 * MIB;
    // A write that makes no progress for this long has stalled.
    const STALL: Duration = Duration::from_secs(1);
    const PING: usize = 64;
    const PINGS_HELD_BACK: usize = 50;
    let (mut server, addr) =
        start_server(server_command().args(["-l", "127.0.0.1:0", "--max-buffer", "64K"]));
    let pid = server.pid();

    // One round trip before the baseline, so the server's one-time costs
    // (its read buffer, the first page of its connection table) are in it.
    let pinger = connect(addr);
    round_trip(&pinger, b"warm-up").unwrap();
    let rss_before = rss(pid);

    let pattern = random_bytes(SEED, MIB);
    let flood = connect(addr);
    flood.set_write_timeout(Some(STALL)).unwrap();
    let me = flood.local_addr().unwrap();
    let stopped = AtomicBool::new(false);
    let pings = AtomicUsize::new(0);
    let flooding = Instant::now();
    let (written, stalled, pinged) = thread::scope(|scope| {
        let _stop = SetOnDrop(&stopped);
        let pinging = scope.spawn(|| -> Result<(), String> {
            let mut rng = StdRng::seed_from_u64(SEED);
            let started = Instant::now();
            while !stopped.load(SeqCst) && started.elapsed() < DEADLINE {
                let message = random_bytes(rng.random(), PING);
                round_trip(&pinger, &message).map_err(|e| {
                    format!(
                        "round trip {} during the flood (seed {SEED:#x}): {e}",
                        pings.load(SeqCst)
                    )
                })?;
                pings.fetch_add(1, SeqCst);
            }
            Ok(())
        });
        let mut written = 0;
        let mut stalled = false;
        while written < ATTEMPT {
            match (&flood).write(&pattern[written % pattern.len()..]) {
                Ok(n) => written += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    stalled = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("flood write after {written} bytes: {e}"),
            }
        }
        stopped.store(true, SeqCst);
        pinging.join().expect("pinger panicked").unwrap();
        (written, stalled, pings.load(SeqCst))
    });
    let flood_time = flooding.elapsed();
    assert!(
        stalled,
        "no back-pressure: all {written} bytes went out without a stall; server RSS \
         {rss_before} -> {} bytes",
        rss(pid)
    );
    assert!(
        pinged > 0,
        "no round trip completed during the {flood_time:?} of the flood"
    );

    // Held back, not merely slow: while 50 more round trips go through the
    // loop, the server reads no byte of the flood (its counter of bytes read
    // moves by exactly the pings) and leaves it waiting in its socket.
    let theirs = kernel_socket(addr, me).expect("the server's side of the flood");
    assert!(theirs.rx > 0, "the server left nothing unread: {theirs:?}");
    let before = count(&live_stats(&mut server), "bytes_in");
    let mut rng = StdRng::seed_from_u64(SEED + 1);
    for i in 0..PINGS_HELD_BACK {
        let message = random_bytes(rng.random(), PING);
        round_trip(&pinger, &message)
            .unwrap_or_else(|e| panic!("round trip {i} with the flooder held back: {e}"));
    }
    let after = count(&live_stats(&mut server), "bytes_in");
    assert_eq!(
        after - before,
        (PINGS_HELD_BACK * PING) as u64,
        "the server read from the flooder after pushing back"
    );
    let rss_held = rss(pid);
    let growth = rss_held.saturating_sub(rss_before);
    eprintln!(
        "back-pressure: the flooder stalled after {:.1} MiB of the {} MiB attempted ({:?}); \
         server RSS {} KiB -> {} KiB (+{} KiB); {} round trips during the flood; \
         {} bytes unread in the server's socket",
        written as f64 / MIB as f64,
        ATTEMPT / MIB,
        flood_time,
        rss_before / 1024,
        rss_held / 1024,
        growth / 1024,
        pinged,
        theirs.rx,
    );
    assert!(written < 64 * MIB, "pushed back only after {written} bytes");
    assert!(
        growth < 8 * MIB as u64,
        "the server's RSS grew by {growth} bytes under the flood"
    );

    // The flooder now reads: every byte it wrote comes back in order (the
    // server resumes reading as its buffer drains), then EOF after its FIN.
    let mut buf = vec![0u8; MIB];
    let mut got = 0;
    while got < written {
        let want = (written - got).min(buf.len());
        (&flood)
            .read_exact(&mut buf[..want])
            .unwrap_or_else(|e| panic!("reading back after {got} of {written} bytes: {e}"));
        check_cyclic(&pattern, got, &buf[..want]).unwrap();
        got += want;
    }
    flood.shutdown(Shutdown::Write).unwrap();
    assert!(closed_by_peer(&flood), "no EOF after the read-back");
    drop(pinger);

    let (status, _, last) = stop_server(server);
    assert_eq!(status.code(), Some(0), "{last}");
    let total = (7 + (pinged + PINGS_HELD_BACK) * PING + written) as u64;
    assert_eq!(count(&last, "bytes_in"), total, "{last}");
    assert_eq!(count(&last, "bytes"), total, "{last}");
}

// ---------------------------------------------------------------------------
// Fairness
// ---------------------------------------------------------------------------

/// While one connection streams MiB-sized writes flat out (and reads its
/// echo), another connection's 4-byte round trips keep completing: all 500
/// of them finish while the stream is still running, every byte of both
/// checked.
///
/// This asserts progress, not latency (the 5 ms p99 target is measured with
/// the load tool on a release build); the p99 seen here is only printed. A
/// loop that served a busy connection until its socket ran dry for good, or
/// until it closed, would fail: the round trips would finish only after the
/// stream (which stops after 10 s at most). Removing only the 256 KiB budget
/// does not fail it on this machine (tried): the stream's socket still runs
/// dry now and then, and the round trips get through, but late (p99 about
/// 280 ms, worst 1.7 s, against about 10 ms with the budget). That is a
/// latency figure, for the load tool. The stream also keeps the budget's
/// yield and the ready list busy (hundreds of yields a second), and any
/// byte they lost or reordered would fail the stream's check.
#[test]
fn a_full_speed_stream_does_not_starve_small_round_trips() {
    const SEED: u64 = 0xFA1;
    const ROUND_TRIPS: usize = 500;
    const CHUNK: usize = MIB;
    // The stream's own bound: long past the round trips of a fair server.
    const STREAM_AT_MOST: Duration = Duration::from_secs(10);
    // Small reads (the server reads at most `max_buffer` per call) make a
    // stream the server cannot keep up with: the client refills the socket
    // faster than the server empties it, so the socket seldom runs dry and
    // the budget ends almost every pass. With the default 32 KiB reads this
    // machine drains a loopback stream faster than a client fills it, and
    // every pass would end on its own.
    let server = server_with(Config {
        max_buffer: KIB,
        ..Config::loopback()
    });
    let addr = server.addr();
    // Not a multiple of the chunk, so chunks start anywhere in it.
    let pattern = random_bytes(SEED, 4 * MIB + 17);
    let stream = connect(addr);
    let writer = stream.try_clone().unwrap();
    let done = AtomicBool::new(false);
    let echoed = AtomicUsize::new(0);
    let (latencies, during, still_streaming, sent, got) = thread::scope(|scope| {
        let _stop = SetOnDrop(&done);
        let sending = scope.spawn(|| -> io::Result<usize> {
            let mut writer = writer;
            let (mut sent, started) = (0, Instant::now());
            while !done.load(SeqCst) && started.elapsed() < STREAM_AT_MOST {
                let at = sent % pattern.len();
                let end = (at + CHUNK).min(pattern.len());
                writer.write_all(&pattern[at..end])?;
                sent += end - at;
            }
            writer.shutdown(Shutdown::Write)?;
            Ok(sent)
        });
        let receiving = scope.spawn(|| -> Result<usize, String> {
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0;
            loop {
                let n = match (&stream).read(&mut buf) {
                    Ok(0) => return Ok(got),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("stream read after {got} bytes: {e}")),
                };
                check_cyclic(&pattern, got, &buf[..n])?;
                got += n;
                echoed.store(got, SeqCst);
            }
        });
        wait_until("the stream is under way", || {
            echoed.load(SeqCst) >= 8 * MIB || receiving.is_finished()
        });

        let pinger = connect(addr);
        let mut rng = StdRng::seed_from_u64(SEED);
        let before = echoed.load(SeqCst);
        let mut latencies = Vec::with_capacity(ROUND_TRIPS);
        for i in 0..ROUND_TRIPS {
            let message: [u8; 4] = rng.random();
            let started = Instant::now();
            round_trip(&pinger, &message)
                .unwrap_or_else(|e| panic!("round trip {i} (seed {SEED:#x}): {e}"));
            latencies.push(started.elapsed());
        }
        let during = echoed.load(SeqCst) - before;
        let still_streaming = !sending.is_finished();
        done.store(true, SeqCst);
        let sent = sending.join().expect("sender panicked").expect("sending");
        let got = receiving.join().expect("receiver panicked").unwrap();
        (latencies, during, still_streaming, sent, got)
    });
    let mut sorted = latencies.clone();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    eprintln!(
        "fairness (debug build, in-process server): {} round trips of 4 bytes beside a stream \
         that echoed {:.0} MiB meanwhile ({:.0} MiB in all); p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        during as f64 / MIB as f64,
        got as f64 / MIB as f64,
        at(0.5),
        at(0.99),
        at(1.0),
    );
    assert!(
        still_streaming,
        "the stream ended before the round trips did: they waited for it"
    );
    assert!(
        during > 0,
        "the stream made no progress during the round trips"
    );
    assert_eq!(got, sent, "the stream's echo ended early");
    let summary = server.stop().unwrap();
    assert_eq!(summary.bytes_in, (sent + 4 * ROUND_TRIPS) as u64);
    assert_eq!(summary.bytes, summary.bytes_in);
}

// ---------------------------------------------------------------------------
// Out of file descriptors
// ---------------------------------------------------------------------------

/// Makes `command`'s process start with `limit` descriptors at most, soft
/// and hard alike, so that it cannot raise the limit. With `filler`, the
/// descriptors in `filler.1` are taken up front (copies of `filler.0`, left
/// open across `exec`), as if a careless parent had passed them on.
fn limit_descriptors(command: &mut Command, limit: u64, filler: Option<(RawFd, Range<RawFd>)>) {
    let hook = move || -> io::Result<()> {
        if let Some((source, ref numbers)) = filler {
            for fd in numbers.clone() {
                // SAFETY: dup2 on plain descriptor numbers, in the child only.
                // Every descriptor it replaces was close-on-exec anyway; if
                // one is std's pipe for reporting a failed exec, a failed
                // exec goes unreported and the test fails on the missing
                // `listening` line instead.
                if unsafe { libc::dup2(source, fd) } < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if numbers.contains(&source) {
                // The source itself is close-on-exec: keep it too.
                // SAFETY: fcntl on a descriptor number.
                unsafe { libc::fcntl(source, libc::F_SETFD, 0) };
            }
        }
        let limit = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: limit as libc::rlim_t,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and only makes system
    // calls (dup2, fcntl, setrlimit): it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(hook);
    }
}

/// The connection budget the server logged at start: the N of `serving at
/// most N connections (open-file limit L)`.
fn logged_budget(server: &mut EchoServer, limit: u64) -> usize {
    let line = server.line_containing("serving at most");
    assert!(
        line.contains(&format!("open-file limit {limit})")),
        "the server does not report the limit it runs under: {line}"
    );
    let n = line.split("serving at most ").nth(1).unwrap();
    n.split_whitespace().next().unwrap().parse().unwrap()
}

/// Out of descriptors, the server pauses accepting rather than spinning or
/// stopping: the connections it holds are still echoed, it uses almost no
/// CPU at the limit, it warns once rather than per attempt, and when
/// clients leave it takes the ones waiting in its backlog by itself.
///
/// The server keeps 32 descriptors back from its connection budget, so a
/// lowered limit alone never runs `accept` dry (the next test covers that
/// case). Here the process also inherits 45 open descriptors, which it does
/// not know about, and `accept` really fails with EMFILE.
///
/// Without the pause, a server that retried at once would spin (tried, with
/// the retry interval at zero: 67% of a core, against 0% here); one that
/// waited for the listener's next event would never take the clients
/// already waiting (edge-triggered, the event came and went), and their
/// echo would not come (tried); one that logged every failure would log
/// about ten lines a second (tried: 31 warnings).
#[test]
fn out_of_descriptors_the_server_pauses_accepting_without_spinning_and_resumes_alone() {
    const SEED: u64 = 0xFD;
    const LIMIT: u64 = 64;
    const CLIENTS: usize = 100;
    const LEAVING: usize = 5;
    const AT_THE_LIMIT: Duration = Duration::from_secs(2);
    let devnull = File::open("/dev/null").unwrap();
    let mut command = server_command();
    command.args(["-l", "127.0.0.1:0"]);
    limit_descriptors(&mut command, LIMIT, Some((devnull.as_raw_fd(), 3..48)));
    let (mut server, addr) = start_server(&mut command);
    drop(devnull);
    let budget = logged_budget(&mut server, LIMIT);
    let pid = server.pid();
    let idle_fds = fds_below(pid, LIMIT);
    // Accept fails once every descriptor below the limit is open: the
    // server then holds exactly this many connections.
    let held = LIMIT as usize - idle_fds;
    assert!(
        held > LEAVING && held < budget,
        "setup: {idle_fds} descriptors open at start leave room for {held} connections \
         (budget {budget})"
    );

    // Every client sends its message as soon as it is connected: the
    // kernel completes the handshake, the server takes the first `held`.
    let messages: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|i| random_bytes(SEED + i as u64, 32))
        .collect();
    let mut clients: Vec<Option<TcpStream>> = messages
        .iter()
        .map(|m| {
            let client = connect(addr);
            (&client).write_all(m).unwrap();
            Some(client)
        })
        .collect();
    server.line_containing("pausing accepts");
    wait_until("the server holds every descriptor it may", || {
        fds_below(pid, LIMIT) == LIMIT as usize
    });
    let read_echo = |client: &TcpStream, i: usize| {
        let mut echo = vec![0u8; messages[i].len()];
        (&*client)
            .read_exact(&mut echo)
            .unwrap_or_else(|e| panic!("client {i}'s echo: {e}"));
        assert_same_bytes(&messages[i], &echo, format_args!("client {i}"));
    };
    for (i, client) in clients.iter().enumerate().take(held) {
        read_echo(client.as_ref().unwrap(), i);
    }
    // The first client in the backlog has not been taken: no echo yet.
    let first_waiting = clients[held].as_ref().unwrap();
    first_waiting.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = (&*first_waiting).read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "setup: client {held} was served although the server was at its limit: {early:?}"
    );
    first_waiting.set_nonblocking(false).unwrap();

    // The measured interval: the server sits at its limit with a full
    // backlog. The sleep is the behaviour under test, not a wait for it.
    let (cpu_before, wall) = (cpu_time(pid), Instant::now());
    thread::sleep(AT_THE_LIMIT);
    let (cpu, wall) = (cpu_time(pid) - cpu_before, wall.elapsed());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "out of descriptors: {held} connections held, {} waiting; server CPU {cpu:?} in \
         {wall:?} at the limit ({:.1}%)",
        CLIENTS - held,
        share * 100.0
    );
    assert!(
        share < 0.2,
        "the server used {:.0}% of a core at the limit",
        share * 100.0
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );

    let mut rng = StdRng::seed_from_u64(SEED);
    for (i, client) in clients.iter().enumerate().take(held) {
        let again = random_bytes(rng.random(), 100);
        round_trip(client.as_ref().unwrap(), &again)
            .unwrap_or_else(|e| panic!("client {i} at the limit: {e}"));
    }
    // Five clients leave. No new connection is made: the next five in the
    // backlog must be taken and echoed without one.
    for client in clients.iter_mut().take(LEAVING) {
        drop(client.take());
    }
    for (i, client) in clients.iter().enumerate().skip(held).take(LEAVING) {
        read_echo(client.as_ref().unwrap(), i);
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );

    // Everyone leaves; a new client is served after the backlog.
    clients.clear();
    round_trip(&connect(addr), b"after the crowd").expect("a new client after the crowd");

    let (status, lines, last) = stop_server(server);
    assert_eq!(status.code(), Some(0), "{last}");
    let warnings = lines
        .iter()
        .filter(|l| l.contains("pausing accepts"))
        .count();
    let failures = count(&last, "accept_errors");
    eprintln!("out of descriptors: {failures} failed accepts, {warnings} warning(s)");
    // One per 10 s; a second only if this test ran unusually slowly.
    assert!((1..=2).contains(&warnings), "warnings: {lines:#?}");
    assert!(
        failures >= 5,
        "only {failures} failed accepts: the retry did not run (or is not counted)"
    );
    assert_eq!(count(&last, "connections"), CLIENTS as u64 + 1, "{last}");
    assert_eq!(count(&last, "rejected"), 0, "{last}");
}

/// Under a lowered open-file limit (soft and hard, so it cannot be raised)
/// the server promises no more connections than its descriptors allow,
/// logs that budget, and closes the connections past it at once instead of
/// running out.
///
/// Without the cap, the server would serve the five extra clients (it has
/// descriptors for them) and they would wait for an EOF that never comes.
#[test]
fn a_lowered_open_file_limit_caps_connections_and_refuses_the_rest() {
    const LIMIT: u64 = 64;
    const EXTRA: usize = 5;
    let mut command = server_command();
    command.args(["-l", "127.0.0.1:0"]);
    limit_descriptors(&mut command, LIMIT, None);
    let (mut server, addr) = start_server(&mut command);
    let budget = logged_budget(&mut server, LIMIT);
    assert!(budget > 0 && budget < LIMIT as usize, "budget {budget}");

    let served: Vec<TcpStream> = (0..budget)
        .map(|i| {
            let client = connect(addr);
            round_trip(&client, format!("client {i}").as_bytes())
                .unwrap_or_else(|e| panic!("client {i} of {budget}: {e}"));
            client
        })
        .collect();
    for i in 0..EXTRA {
        let extra = connect(addr);
        extra.set_read_timeout(Some(REFUSAL_WAIT)).unwrap();
        assert!(
            closed_by_peer(&extra),
            "connection {} past the budget of {budget} was not closed",
            budget + i + 1
        );
    }
    for (i, client) in served.iter().enumerate() {
        round_trip(client, b"still here").unwrap_or_else(|e| panic!("client {i}: {e}"));
    }
    assert!(fds_below(server.pid(), LIMIT) < LIMIT as usize);
    drop(served);

    let (status, lines, last) = stop_server(server);
    assert_eq!(status.code(), Some(0), "{last}");
    assert_eq!(count(&last, "rejected"), EXTRA as u64, "{last}");
    assert_eq!(count(&last, "accept_errors"), 0, "{last}");
    assert_eq!(count(&last, "connections"), budget as u64, "{last}");
    assert!(
        !lines.iter().any(|l| l.contains("pausing accepts")),
        "{lines:#?}"
    );
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// Connects from `source` and expects the server to close the connection at
/// once, unserved.
fn assert_refused(source: IpAddr, addr: SocketAddr, what: &str) {
    let client = connect_from(source, addr);
    client.set_read_timeout(Some(REFUSAL_WAIT)).unwrap();
    assert!(closed_by_peer(&client), "{what} was not closed at once");
}

/// Half-closes `client` and waits for the server's FIN: once it comes, the
/// server has closed its side and freed the connection's slot.
fn leave(client: &TcpStream) {
    client.shutdown(Shutdown::Write).unwrap();
    assert!(closed_by_peer(client), "no EOF after a half-close");
}

/// With `--max-connections 5`, a sixth connection is closed at once while
/// the five keep echoing; when one leaves, its slot serves a new client,
/// and the next one past the limit is closed again. Refusals are counted,
/// and warned about once.
///
/// Without the limit the sixth client would be served, and would wait for
/// an EOF that never comes; without the slot being freed the new client
/// would be closed instead of echoed.
#[test]
fn past_max_connections_a_new_connection_is_closed_at_once_and_a_freed_slot_is_used_again() {
    let (server, addr) =
        start_server(server_command().args(["-l", "127.0.0.1:0", "--max-connections", "5"]));
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let clients: Vec<TcpStream> = (0..5)
        .map(|i| {
            let client = connect(addr);
            round_trip(&client, format!("client {i}").as_bytes()).unwrap();
            client
        })
        .collect();
    assert_refused(local, addr, "the sixth connection");
    for (i, client) in clients.iter().enumerate() {
        round_trip(client, format!("client {i} again").as_bytes()).unwrap();
    }
    leave(&clients[0]);
    let newcomer = connect(addr);
    round_trip(&newcomer, b"in the freed slot").expect("a client in the freed slot");
    assert_refused(local, addr, "a connection past the limit again");
    drop(clients);
    drop(newcomer);

    let (status, lines, last) = stop_server(server);
    assert_eq!(status.code(), Some(0), "{last}");
    assert_eq!(count(&last, "connections"), 6, "{last}");
    assert_eq!(count(&last, "closed"), 6, "{last}");
    assert_eq!(count(&last, "rejected"), 2, "{last}");
    let warnings = lines.iter().filter(|l| l.contains(": refused: ")).count();
    assert_eq!(warnings, 1, "refusals are warned about once: {lines:#?}");
}

/// With `--max-connections-per-ip 2`, a third connection from 127.0.0.1 is
/// closed at once while 127.0.0.2 is served (twice, then refused too); when
/// one of 127.0.0.1's connections leaves, it may connect again.
///
/// Without the limit the third connection would be served; with a limit
/// that were global rather than per address, 127.0.0.2 would be refused.
#[test]
fn past_max_connections_per_ip_one_address_is_refused_while_another_is_served() {
    let (server, addr) =
        start_server(server_command().args(["-l", "127.0.0.1:0", "--max-connections-per-ip", "2"]));
    let one = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let two = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let served = |source: IpAddr, what: &str| {
        let client = connect_from(source, addr);
        round_trip(&client, what.as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
        client
    };
    let a = served(one, "first from 127.0.0.1");
    let b = served(one, "second from 127.0.0.1");
    assert_refused(one, addr, "a third connection from 127.0.0.1");
    let c = served(two, "first from 127.0.0.2");
    let d = served(two, "second from 127.0.0.2");
    assert_refused(two, addr, "a third connection from 127.0.0.2");
    for (client, what) in [(&a, "a"), (&b, "b"), (&c, "c"), (&d, "d")] {
        round_trip(client, what.as_bytes()).unwrap_or_else(|e| panic!("{what} again: {e}"));
    }
    leave(&a);
    let e = served(one, "127.0.0.1 again, after one left");
    drop((a, b, c, d, e));

    let (status, _, last) = stop_server(server);
    assert_eq!(status.code(), Some(0), "{last}");
    assert_eq!(count(&last, "connections"), 5, "{last}");
    assert_eq!(count(&last, "rejected"), 2, "{last}");
}

/// With a 0.5 s idle timeout, a connection that never sends and one that
/// goes quiet after a round trip are both closed (EOF) once the timeout has
/// passed and not before, while a connection that sends a small message
/// every 50 ms for 1.5 s (three timeouts) is kept. Both closes are counted.
///
/// The sleeps here are the behaviour under test (idleness and a steady
/// pace), with wide margins: 50 ms of pace against a 500 ms timeout.
/// Without idle timers the quiet connections would never see EOF (the read
/// would time out after 10 s); timers that ignored traffic would close the
/// steady connection too.
#[test]
fn an_idle_connection_is_closed_after_the_timeout_and_a_steady_one_is_kept() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    const PACE: Duration = Duration::from_millis(50);
    const STEADY_FOR: Duration = Duration::from_millis(1500);
    // The server keeps time in whole milliseconds, so it may close a
    // connection up to a millisecond before the exact timeout.
    const CLOCK: Duration = Duration::from_millis(2);
    let server = server_with(Config {
        idle_timeout: Some(TIMEOUT),
        ..Config::loopback()
    });
    let addr = server.addr();
    let silent_since = Instant::now();
    let silent = connect(addr);
    let quiet_since = Instant::now();
    let quiet = connect(addr);
    round_trip(&quiet, b"and then nothing").unwrap();
    let steady = connect(addr);
    for client in [&silent, &quiet] {
        client.set_read_timeout(Some(REFUSAL_WAIT)).unwrap();
    }

    let steady_rounds = thread::scope(|scope| {
        let steady_client = scope.spawn(|| -> io::Result<usize> {
            let started = Instant::now();
            let mut rounds = 0;
            while started.elapsed() < STEADY_FOR {
                round_trip(&steady, format!("message {rounds}").as_bytes())?;
                rounds += 1;
                thread::sleep(PACE);
            }
            round_trip(&steady, b"one more, after three timeouts")?;
            Ok(rounds + 1)
        });
        assert!(
            closed_by_peer(&silent),
            "the silent connection was not closed"
        );
        let silent_for = silent_since.elapsed();
        assert!(
            closed_by_peer(&quiet),
            "the quiet connection was not closed"
        );
        let quiet_for = quiet_since.elapsed();
        assert!(
            silent_for + CLOCK >= TIMEOUT && quiet_for + CLOCK >= TIMEOUT,
            "closed before the timeout: silent after {silent_for:?}, quiet after {quiet_for:?}"
        );
        steady_client
            .join()
            .expect("steady client panicked")
            .expect("the steady connection")
    });
    leave(&steady);

    let summary = server.stop().unwrap();
    assert!(
        steady_rounds >= 10,
        "only {steady_rounds} steady round trips"
    );
    assert_eq!(summary.idle_closed, 2, "{summary}");
    assert_eq!(summary.connections, 3, "{summary}");
    assert_eq!(summary.closed, 3, "{summary}");
}

// ---------------------------------------------------------------------------
// Tokens and batches
// ---------------------------------------------------------------------------

/// Thousands of rapid connect/close cycles (some send a few bytes and read
/// them back, some close with a reset, some leave unread echo) beside 16
/// long-lived connections that keep exchanging random data: every client
/// gets exactly its own bytes, and the server's totals account for every
/// connection.
///
/// Slab keys are reused constantly here: five thousand connections pass
/// through a table that rarely holds more than twenty. If anything of a
/// closed connection (bytes it was owed, its socket, a decision to close
/// it) reached the connection that took its key next, a client would see
/// another's bytes, lose its own, or be closed unasked, and a round trip or
/// the totals would fail.
///
/// Freeing a key at once instead of at the end of the turn does not fail
/// this test (tried), and on Linux it cannot: epoll reports a descriptor at
/// most once per wait, and during the event batch a connection closes only
/// on its own event, so no later event of the batch can name a reused key.
/// The one stale reference left, a ready-list entry, drives the new owner
/// into a `WouldBlock`. The deferral is a second line of defence; this test
/// pins the guarantee, not that mechanism.
#[test]
fn rapid_connect_close_cycles_never_deliver_a_byte_to_the_wrong_client() {
    const SEED: u64 = 0x70CE;
    const LONG_LIVED: usize = 16;
    const CHURNERS: usize = 3;
    const CYCLES: usize = 5000;
    let server = server();
    let addr = server.addr();
    let churn_over = AtomicBool::new(false);
    let (rounds, echoed) = thread::scope(|scope| {
        let _over = SetOnDrop(&churn_over);
        let long_lived: Vec<_> = (0..LONG_LIVED)
            .map(|k| {
                let churn_over = &churn_over;
                scope.spawn(move || -> Result<usize, String> {
                    let stream = connect(addr);
                    let mut rng = StdRng::seed_from_u64(SEED ^ ((k as u64 + 1) << 32));
                    let (mut rounds, started) = (0, Instant::now());
                    while (rounds < 4 || !churn_over.load(SeqCst)) && started.elapsed() < DEADLINE {
                        let len = rng.random_range(1..=8 * KIB);
                        let mut data = random_bytes(rng.random(), len);
                        // Each connection's bytes start with its own number.
                        data[0] = k as u8;
                        round_trip(&stream, &data).map_err(|e| {
                            format!("long-lived {k}, round {rounds} (seed {SEED:#x}): {e}")
                        })?;
                        rounds += 1;
                    }
                    leave(&stream);
                    Ok(rounds)
                })
            })
            .collect();
        let churners: Vec<_> = (0..CHURNERS)
            .map(|t| {
                scope.spawn(move || -> Result<usize, String> {
                    let mut rng = StdRng::seed_from_u64(SEED + t as u64);
                    let cycles = CYCLES / CHURNERS + usize::from(t < CYCLES % CHURNERS);
                    let mut echoed = 0;
                    for c in 0..cycles {
                        let what = format!("churner {t}, cycle {c} (seed {SEED:#x})");
                        let stream = connect(addr);
                        let mut message = [0u8; 12];
                        message[..4].copy_from_slice(&(t as u32).to_le_bytes());
                        message[4..8].copy_from_slice(&(c as u32).to_le_bytes());
                        message[8..].copy_from_slice(&rng.random::<[u8; 4]>());
                        match rng.random_range(0..4) {
                            0 => {}
                            1 => {
                                reset(stream);
                                continue;
                            }
                            2 => {
                                round_trip(&stream, &message)
                                    .map_err(|e| format!("{what}: {e}"))?;
                                echoed += 1;
                            }
                            _ => (&stream)
                                .write_all(&message)
                                .map_err(|e| format!("{what}: {e}"))?,
                        }
                        if rng.random() {
                            reset(stream);
                        }
                    }
                    Ok(echoed)
                })
            })
            .collect();
        let echoed: Vec<Result<usize, String>> = churners
            .into_iter()
            .map(|c| c.join().expect("churner panicked"))
            .collect();
        churn_over.store(true, SeqCst);
        let rounds: Vec<Result<usize, String>> = long_lived
            .into_iter()
            .map(|c| c.join().expect("long-lived client panicked"))
            .collect();
        (rounds, echoed)
    });
    let failures: Vec<&String> = rounds
        .iter()
        .chain(&echoed)
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    let rounds: usize = rounds.iter().map(|r| *r.as_ref().unwrap()).sum();
    let echoed: usize = echoed.iter().map(|r| *r.as_ref().unwrap()).sum();

    // The accept queue is first in, first out: once a last client is
    // echoed, every connection before it has been accepted.
    let last = connect(addr);
    round_trip(&last, b"the last one").unwrap();
    leave(&last);
    let summary = server.stop().unwrap();
    eprintln!(
        "tokens: {CYCLES} short connections ({echoed} echoed) beside {LONG_LIVED} long-lived \
         ones ({rounds} round trips); server: {summary}"
    );
    assert_eq!(
        summary.connections + summary.reset_early,
        (LONG_LIVED + CYCLES + 1) as u64,
        "{summary}"
    );
    assert_eq!(summary.closed, summary.connections, "{summary}");
    assert_eq!(summary.rejected, 0, "{summary}");
}

// ---------------------------------------------------------------------------
// Scale
// ---------------------------------------------------------------------------

/// Ten thousand connections open at once, from four source addresses, all
/// echo a message of their own; the server's resident memory grows by less
/// than 1 KiB per connection (the issue's target is 128 B; the figure is
/// printed). Then a stop closes all ten thousand.
///
/// A server that allocated a buffer per connection up front (a 4 KiB page
/// or more each), or that limited itself below 10,000, fails here.
#[test]
fn ten_thousand_concurrent_connections_each_echo_and_cost_little_memory() {
    const SEED: u64 = 0x10_000;
    const CONNECTIONS: usize = 10_000;
    const MESSAGE: usize = 16;
    // Source addresses: each holds its own range of ports, so the test
    // stays far from running out of them.
    const SOURCES: [Ipv4Addr; 4] = [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
        Ipv4Addr::new(127, 0, 0, 4),
    ];
    // This process holds one end of every connection (plus other tests').
    let limit = mio_echo_net::raise_fd_limit().unwrap();
    assert!(
        limit >= (CONNECTIONS + 2000) as u64,
        "this test needs an open-file limit of {} (ulimit -Hn); it is {limit}",
        CONNECTIONS + 2000
    );
    let started = Instant::now();
    let (server, addr) =
        start_server(server_command().args(["-l", "127.0.0.1:0", "--max-connections", "10000"]));
    let pid = server.pid();
    let idle_fds = open_fds(pid);
    let warm_up = connect(addr);
    round_trip(&warm_up, b"warm-up").unwrap();
    leave(&warm_up);
    drop(warm_up);
    wait_until("the server closes the warm-up connection", || {
        open_fds(pid) == idle_fds
    });
    let rss_before = rss(pid);

    let clients: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|i| connect_from(SOURCES[i % SOURCES.len()].into(), addr))
        .collect();
    let connected = started.elapsed();
    let mut rng = StdRng::seed_from_u64(SEED);
    let messages: Vec<[u8; MESSAGE]> = (0..CONNECTIONS).map(|_| rng.random()).collect();
    for (i, (client, message)) in clients.iter().zip(&messages).enumerate() {
        (&*client)
            .write_all(message)
            .unwrap_or_else(|e| panic!("writing to connection {i}: {e}"));
    }
    for (i, (client, message)) in clients.iter().zip(&messages).enumerate() {
        let mut echo = [0u8; MESSAGE];
        (&*client)
            .read_exact(&mut echo)
            .unwrap_or_else(|e| panic!("connection {i}'s echo: {e}"));
        if let Some(diff) = difference(message, &echo) {
            panic!("connection {i} (seed {SEED:#x}): {diff}");
        }
    }
    let echoed = started.elapsed();
    assert_eq!(open_fds(pid), idle_fds + CONNECTIONS);
    let rss_after = rss(pid);
    let per_connection = rss_after.saturating_sub(rss_before) / CONNECTIONS as u64;
    eprintln!(
        "scale: {CONNECTIONS} connections open and echoed in {echoed:?} (connected after \
         {connected:?}); server RSS {} KiB -> {} KiB: {per_connection} bytes per connection",
        rss_before / 1024,
        rss_after / 1024,
    );

    // Stopped with every connection open: the server closes them all.
    let (status, _, last) = stop_server(server);
    drop(clients);
    eprintln!("scale: done in {:?}", started.elapsed());
    assert_eq!(status.code(), Some(0), "{last}");
    assert_eq!(
        count(&last, "connections"),
        CONNECTIONS as u64 + 1,
        "{last}"
    );
    assert_eq!(count(&last, "closed"), CONNECTIONS as u64 + 1, "{last}");
    assert_eq!(count(&last, "rejected"), 0, "{last}");
    assert!(
        per_connection < 1024,
        "{per_connection} bytes of server memory per connection"
    );
}

// ---------------------------------------------------------------------------
// Soak
// ---------------------------------------------------------------------------

/// How long the soak runs: `MIO_ECHO_SOAK_SECS`, or 5 s.
fn soak_duration() -> Duration {
    let secs = std::env::var("MIO_ECHO_SOAK_SECS").map_or(5.0, |s| {
        s.parse::<f64>()
            .unwrap_or_else(|_| panic!("MIO_ECHO_SOAK_SECS={s:?} is not a number of seconds"))
    });
    Duration::from_secs_f64(secs)
}

/// What one soak worker did.
#[derive(Debug, Default)]
struct Tally {
    connections: u64,
    verified_bytes: u64,
    streams: u32,
    ping_pongs: u32,
    slow_readers: u32,
    half_closes: u32,
    resets: u32,
    churns: u32,
}

/// One soak worker: until `until`, picks a kind of client at random (from
/// `seed`) and runs it, checking every byte that comes back.
fn soak_worker(addr: SocketAddr, seed: u64, until: Instant) -> Result<Tally, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    for round in 0..1_000_000u32 {
        if Instant::now() >= until {
            break;
        }
        let what = |kind: &str| format!("{kind}, round {round} (seed {seed:#x})");
        match rng.random_range(0..100) {
            // A stream: up to 1 MiB, full duplex, in pieces of any size.
            0..20 => {
                let data = random_bytes(rng.random(), rng.random_range(0..=MIB));
                let chunks = random_chunks(&mut rng, data.len(), 64 * KIB);
                tally.connections += 1;
                let stream = connect(addr);
                let echo = exchange(&stream, &data, &chunks).map_err(|e| what(&e.to_string()))?;
                if let Some(diff) = difference(&data, &echo) {
                    return Err(format!("{}: {diff}", what("stream")));
                }
                tally.verified_bytes += data.len() as u64;
                tally.streams += 1;
            }
            // Ping-pong: small messages, one at a time, then a half-close.
            20..40 => {
                tally.connections += 1;
                let stream = connect(addr);
                for _ in 0..rng.random_range(10..50) {
                    let message = random_bytes(rng.random(), rng.random_range(1..=1024));
                    round_trip(&stream, &message).map_err(|e| format!("{}: {e}", what("ping")))?;
                    tally.verified_bytes += message.len() as u64;
                }
                stream.shutdown(Shutdown::Write).ok();
                if !closed_by_peer(&stream) {
                    return Err(format!("{}: no EOF", what("ping-pong")));
                }
                tally.ping_pongs += 1;
            }
            // A slow reader behind a small window: the server must queue.
            40..50 => {
                let data = random_bytes(rng.random(), rng.random_range(0..=256 * KIB));
                let chunks = random_chunks(&mut rng, data.len(), 16 * KIB);
                tally.connections += 1;
                let stream = connect_small_window(addr, 8 * KIB);
                let echo = exchange_reading(&stream, &data, &chunks, KIB)
                    .map_err(|e| format!("{}: {e}", what("slow reader")))?;
                if let Some(diff) = difference(&data, &echo) {
                    return Err(format!("{}: {diff}", what("slow reader")));
                }
                tally.verified_bytes += data.len() as u64;
                tally.slow_readers += 1;
            }
            // A half-close first: all of it sent, then FIN, then the echo
            // read. Small enough for the socket buffers to hold meanwhile.
            50..60 => {
                let data = random_bytes(rng.random(), rng.random_range(0..=32 * KIB));
                tally.connections += 1;
                let mut stream = connect(addr);
                stream
                    .write_all(&data)
                    .and_then(|()| stream.shutdown(Shutdown::Write))
                    .map_err(|e| format!("{}: {e}", what("half-close")))?;
                let mut echo = Vec::with_capacity(data.len());
                read_to_eof(&stream, &mut echo, 64 * KIB)
                    .map_err(|e| format!("{}: {e}", what("half-close")))?;
                if let Some(diff) = difference(&data, &echo) {
                    return Err(format!("{}: {diff}", what("half-close")));
                }
                tally.verified_bytes += data.len() as u64;
                tally.half_closes += 1;
            }
            // A reset mid-stream: bytes sent, part of the echo read, the
            // rest of it (and perhaps bytes the server owes) abandoned.
            60..75 => {
                let data = random_bytes(rng.random(), rng.random_range(1..=256 * KIB));
                tally.connections += 1;
                let stream = connect(addr);
                (&stream)
                    .write_all(&data)
                    .map_err(|e| format!("{}: {e}", what("reset")))?;
                let mut echo = vec![0u8; rng.random_range(1..=data.len().min(4 * KIB))];
                (&stream)
                    .read_exact(&mut echo)
                    .map_err(|e| format!("{}: {e}", what("reset")))?;
                if let Some(diff) = difference(&data[..echo.len()], &echo) {
                    return Err(format!("{}: {diff}", what("reset")));
                }
                tally.verified_bytes += echo.len() as u64;
                reset(stream);
                tally.resets += 1;
            }
            // Churn: connect and leave at once, by FIN or by RST, perhaps
            // after a few bytes that are never read back.
            _ => {
                tally.connections += 1;
                let stream = connect(addr);
                if rng.random() {
                    let message: [u8; 8] = rng.random();
                    (&stream)
                        .write_all(&message)
                        .map_err(|e| format!("{}: {e}", what("churn")))?;
                }
                if rng.random() {
                    reset(stream);
                }
                tally.churns += 1;
            }
        }
    }
    Ok(tally)
}

/// A bounded soak of mixed clients against the binary: streams, ping-pongs,
/// slow readers, half-closes, resets mid-stream and connect/close churn,
/// from four threads at once beside a hundred idle connections. Every byte
/// that comes back is checked; the idle connections still echo at the end;
/// and once every client has left, the server's resident memory is back
/// within 2 MiB of where it started.
///
/// The 2 MiB of slack is for memory the server keeps on purpose or by way
/// of the allocator, not per connection: pages of the connection table
/// touched at the peak stay resident, and malloc keeps some freed buffers
/// (up to 64 KiB owed per slow peer) for reuse rather than returning them.
/// A leak of one buffer per connection would be tens of MiB over the
/// soak's thousands of connections.
///
/// CI runs it for 5 s. The long form, a few minutes against a release
/// build:
///
/// ```text
/// MIO_ECHO_SOAK_SECS=180 cargo test --release --test resilience soak -- --nocapture
/// ```
#[test]
fn soak_mixed_clients_get_every_byte_and_leave_memory_where_it_was() {
    const SEED: u64 = 0x50A4;
    const WORKERS: u64 = 4;
    const IDLE: usize = 100;
    let duration = soak_duration();
    let (server, addr) = start_server(server_command().args(["-l", "127.0.0.1:0"]));
    let pid = server.pid();
    let idle_fds = open_fds(pid);
    let warm_up = connect(addr);
    round_trip(&warm_up, b"warm-up").unwrap();
    leave(&warm_up);
    drop(warm_up);
    wait_until("the server closes the warm-up connection", || {
        open_fds(pid) == idle_fds
    });
    let rss_before = rss(pid);

    let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(addr)).collect();
    let started = Instant::now();
    let until = started + duration;
    let mut rss_peak = rss_before;
    let outcomes: Vec<Result<Tally, String>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| scope.spawn(move || soak_worker(addr, SEED + w, until)))
            .collect();
        // Sample the server's memory while the workers run; the sleep only
        // paces the sampling, and the loop ends with the workers.
        while !workers.iter().all(|w| w.is_finished()) {
            assert!(started.elapsed() < duration + DEADLINE, "the soak overran");
            rss_peak = rss_peak.max(rss(pid));
            thread::sleep(Duration::from_millis(50));
        }
        workers
            .into_iter()
            .map(|w| w.join().expect("soak worker panicked"))
            .collect()
    });
    let soaked = started.elapsed();
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );

    let mut rng = StdRng::seed_from_u64(SEED);
    for (i, client) in idle.iter().enumerate() {
        let message = random_bytes(rng.random(), 100);
        round_trip(client, &message).unwrap_or_else(|e| panic!("idle client {i}: {e}"));
    }
    drop(idle);
    wait_until("the server closes every connection", || {
        open_fds(pid) == idle_fds
    });
    let rss_after = rss(pid);

    let tallies: Vec<&Tally> = outcomes.iter().map(|o| o.as_ref().unwrap()).collect();
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(|t| f(t)).sum::<u64>();
    // Every worker's connections, the idle ones and the warm-up.
    let made = sum(|t| t.connections) + IDLE as u64 + 1;
    eprintln!(
        "soak: {soaked:?}, {made} connections ({} streams, {} ping-pongs, {} slow readers, \
         {} half-closes, {} resets, {} churns, {IDLE} idle), {:.1} MiB verified; server RSS \
         {} KiB at the start, {} KiB at the peak, {} KiB at the end ({:+} KiB)",
        sum(|t| t.streams.into()),
        sum(|t| t.ping_pongs.into()),
        sum(|t| t.slow_readers.into()),
        sum(|t| t.half_closes.into()),
        sum(|t| t.resets.into()),
        sum(|t| t.churns.into()),
        sum(|t| t.verified_bytes) as f64 / MIB as f64,
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024,
        (rss_after as i64 - rss_before as i64) / 1024,
    );

    let (status, _, last) = stop_server(server);
    assert_eq!(status.code(), Some(0), "{last}");
    let early = count(&last, "reset_early");
    assert_eq!(count(&last, "connections") + early, made, "{last}");
    assert_eq!(count(&last, "closed") + early, made, "{last}");
    assert_eq!(count(&last, "rejected"), 0, "{last}");
    assert!(
        rss_after <= rss_before + 2 * MIB as u64,
        "the server's RSS went from {rss_before} to {rss_after} bytes over the soak"
    );
}
