//! The server at scale, against the built binary: ten thousand connections
//! open at once, each echoed, for less than 1 KiB of memory apiece; and a
//! bounded soak of mixed clients after which memory is back where it was.
//!
//! Memory is read from `/proc/PID` of the server alone. Figures are printed
//! to standard error; see them with `cargo test --test scale -- --nocapture`.
// Linux only: every test here reads /proc (threads, descriptors, memory).
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    closed_by_peer, connect, connect_from, connect_small_window, count, difference, exchange,
    exchange_reading, leave, open_fds, random_bytes, random_chunks, read_to_eof, reset, round_trip,
    rss, server_command, start_server, stop_server, wait_until, DEADLINE, KIB, MIB,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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
/// MIO_ECHO_SOAK_SECS=180 cargo test --release --test scale soak -- --nocapture
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
