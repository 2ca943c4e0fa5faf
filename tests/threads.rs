//! Threads: one by default (no helper thread for signals, timers or
//! logging), and with `--threads N --reuse-port` one loop per thread that
//! the kernel spreads clients over, whose totals add up and whose
//! connection limit is the whole server's.
//!
//! Every test runs the built binary and counts its threads in `/proc`. The
//! limits across loops are pinned in `limits.rs`.
// Linux only: every test here reads /proc (threads, descriptors, memory).
#![cfg(target_os = "linux")]

mod common;

use std::net::TcpStream;

use common::{
    connect, exchange, field, random_bytes, stop, summary, tcp_echo, threads, wait_until,
    EchoServer,
};

/// `--threads 2 --reuse-port`: two threads; 40 connections all echo, the
/// kernel spreads them over both loops by hash (each loop's SIGUSR1 stats
/// line shows some, and a third line their total), and the summary after
/// SIGTERM adds both loops up.
#[test]
fn two_threads_share_the_clients_and_add_up_the_summary() {
    const CLIENTS: usize = 40;
    const SEED: u64 = 0x2_7ead;
    let mut server = EchoServer::start(
        &["--threads", "2", "--reuse-port", "-l", "127.0.0.1:0"],
        None,
    );
    let addr = server.listening(1)[0];
    server.line_containing("2 loops");
    let pid = server.pid();
    wait_until("the second loop's thread", || threads(pid) >= 2);
    assert_eq!(threads(pid), 2, "one thread per loop, no more");

    let streams: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(addr)).collect();
    let mut bytes = 0;
    for (i, stream) in streams.iter().enumerate() {
        let data = random_bytes(SEED + i as u64, 1000 + i * 997);
        let echo = exchange(stream, &data, &[data.len()]).unwrap();
        common::assert_same_bytes(&data, &echo, format_args!("client {i}"));
        bytes += data.len();
    }
    drop(streams);
    assert_eq!(threads(pid), 2, "no thread beyond one per loop");

    server.signal(libc::SIGUSR1);
    let mut per_loop = [0u64; 2];
    for _ in 0..2 {
        let line = server.line_containing("stats: ");
        let slot = if line.contains("loop 1/2: ") {
            0
        } else if line.contains("loop 2/2: ") {
            1
        } else {
            panic!("a stats line that names no loop: {line}")
        };
        per_loop[slot] = field(&line, "connections").unwrap().parse().unwrap();
    }
    assert!(
        per_loop.iter().all(|&n| n > 0),
        "one loop got every connection: {per_loop:?}"
    );
    assert_eq!(per_loop.iter().sum::<u64>(), CLIENTS as u64, "{per_loop:?}");
    let total = server.line_containing("stats of all loops: ");
    assert_eq!(
        field(&total, "connections"),
        Some(CLIENTS.to_string().as_str()),
        "{total}"
    );

    let lines = stop(server);
    let last = summary(&lines);
    assert_eq!(field(last, "connections"), Some("40"), "{last}");
    assert_eq!(field(last, "closed"), Some("40"), "{last}");
    assert_eq!(field(last, "bytes"), Some(bytes.to_string().as_str()));
}

/// With several loops the connection limit is still the whole server's, and
/// the startup line says what set it: `--threads 2 --max-connections 100`
/// serves 100.
#[test]
fn threads_announce_the_connection_limit_of_the_whole_server() {
    let mut server = EchoServer::start(
        &[
            "--threads",
            "2",
            "--max-connections",
            "100",
            "-l",
            "127.0.0.1:0",
        ],
        None,
    );
    let line = server.line_containing("serving at most");
    assert!(
        line.contains("serving at most 100 connections (set by --max-connections;"),
        "{line}"
    );
    stop(server);
}

/// By default the process has exactly one thread: no helper thread for
/// signals, timers or logging (the tour, "One thread").
#[test]
fn one_thread_by_default() {
    let mut server = EchoServer::start(&["-l", "127.0.0.1:0"], None);
    let addr = server.listening(1)[0];
    tcp_echo(addr, b"single-threaded\n");
    server.signal(libc::SIGUSR1);
    server.line_containing("stats: ");
    assert_eq!(threads(server.pid()), 1);
    stop(server);
}
