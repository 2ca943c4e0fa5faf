//! The sibling services: RFC 863 discard and RFC 864 chargen, over TCP,
//! under the same limits as echo.
// Some tests here need Linux (/proc, network namespaces); elsewhere they
// are compiled out, and what only they use goes unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use mio_echo::{Config, Service};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// An in-process server with one listener of each TCP service.
fn services() -> mio_echo::Running {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    server_with(Config {
        services: vec![(Service::Discard, loopback), (Service::Chargen, loopback)],
        ..Config::loopback()
    })
}

/// RFC 864's stream, computed here on its own: line `i` is the 72
/// printable characters from the `i`-th of the 95 (space first), then CR LF.
fn chargen_stream(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 74);
    let mut line = 0;
    while out.len() < len {
        out.extend((0..72).map(|col| b' ' + ((line + col) % 95) as u8));
        out.extend_from_slice(b"\r\n");
        line += 1;
    }
    out.truncate(len);
    out
}

/// Discard reads every byte of many concurrent clients and sends none
/// back: each client's half-close is answered with the server's FIN, and
/// the summary counts every byte as discarded, none as echoed.
#[test]
fn discard_reads_everything_and_sends_nothing() {
    const CLIENTS: u64 = 16;
    const SEED: u64 = 0x0d15_ca4d;
    let server = services();
    let addr = server.addrs_of(Service::Discard)[0];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(SEED + i);
                let data = random_bytes(SEED + i, rng.random_range(0..512 * KIB));
                let mut stream = connect(addr);
                for size in
                    random_chunks(&mut rng, data.len(), 64 * KIB)
                        .iter()
                        .scan(0, |at, &n| {
                            *at += n;
                            Some((*at - n, n))
                        })
                {
                    stream.write_all(&data[size.0..size.0 + size.1]).unwrap();
                }
                stream.shutdown(Shutdown::Write).unwrap();
                let mut back = Vec::new();
                stream.read_to_end(&mut back).unwrap();
                assert!(back.is_empty(), "discard sent {} bytes back", back.len());
                data.len() as u64
            })
        })
        .collect();
    let sent: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let summary = server.stop().unwrap();
    assert_eq!(summary.discarded, sent, "{summary:?}");
    assert_eq!((summary.bytes, summary.bytes_in), (0, 0), "{summary:?}");
    assert_eq!(summary.connections, CLIENTS, "{summary:?}");
}

/// Chargen sends RFC 864's lines, byte for byte, to clients reading at
/// their own pace in reads of random sizes, whatever they send meanwhile.
#[test]
fn chargen_sends_rfc_864_lines_as_fast_as_each_client_reads() {
    const CLIENTS: u64 = 8;
    const SEED: u64 = 0x00c4_a69e;
    let server = services();
    let addr = server.addrs_of(Service::Chargen)[0];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(SEED + i);
                let want = rng.random_range(1..2 * 1024 * KIB);
                let expected = chargen_stream(want);
                let mut stream = connect(addr);
                // Noise the server must read and ignore.
                stream.write_all(&random_bytes(SEED, 10 * KIB)).unwrap();
                let mut got = Vec::with_capacity(want);
                let mut buf = vec![0u8; 64 * KIB];
                while got.len() < want {
                    let size = rng.random_range(1..=buf.len()).min(want - got.len());
                    let n = stream.read(&mut buf[..size]).unwrap();
                    assert!(n > 0, "chargen closed after {} bytes", got.len());
                    got.extend_from_slice(&buf[..n]);
                }
                assert_same_bytes(&expected, &got, format_args!("chargen client {i}"));
                want as u64
            })
        })
        .collect();
    let read: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let summary = server.stop().unwrap();
    assert!(summary.generated >= read, "{summary:?}");
    assert_eq!(summary.bytes, 0, "nothing was echoed: {summary:?}");
}

/// A chargen client that closes gets the server's FIN in return: after the
/// lines already in flight, its read ends.
#[test]
fn a_chargen_client_that_closes_is_closed() {
    let server = services();
    let addr = server.addrs_of(Service::Chargen)[0];
    let mut stream = connect(addr);
    let mut first = [0u8; 74];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first[..], &chargen_stream(74)[..]);
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    read_to_eof(&stream, &mut rest, 64 * KIB).expect("the server's FIN");
    let stream_so_far = chargen_stream(74 + rest.len());
    assert_same_bytes(&stream_so_far[74..], &rest, "the lines in flight");
    drop(stream);
    let summary = server.stop().unwrap();
    assert_eq!(summary.closed, 1, "{summary:?}");
    assert!(summary.generated >= 74 + rest.len() as u64, "{summary:?}");
}

/// Chargen clients that never read cost the server no growing memory (the
/// pattern is one static table; nothing is queued), and echo clients are
/// served beside them.
#[cfg(target_os = "linux")]
#[test]
fn chargen_clients_that_never_read_cost_no_memory() {
    const STALLERS: usize = 50;
    let mut server = EchoServer::start(&["-l", "127.0.0.1:0", "--chargen", "127.0.0.1:0"], None);
    let echo = listening_as(&mut server, "");
    let chargen = listening_as(&mut server, " (chargen)");
    let warm = connect(echo);
    round_trip(&warm, b"warm").unwrap();
    let idle = rss(server.pid());
    let stallers: Vec<TcpStream> = (0..STALLERS)
        .map(|_| connect_small_window(chargen, 4 * KIB))
        .collect();
    // Let the server fill every staller's kernel queue (bounded wait: it
    // is done when a stats line shows the bytes no longer growing).
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        server.signal(libc::SIGUSR1);
        let line = server.line_containing("stats: ");
        let generated = count(&line, "generated");
        if generated > 0 && generated == last {
            break;
        }
        assert!(Instant::now() < deadline, "chargen never filled: {line}");
        last = generated;
        thread::sleep(Duration::from_millis(200));
    }
    let held = rss(server.pid());
    eprintln!(
        "chargen: {STALLERS} clients that never read took {last} bytes into their kernel \
         queues; server RSS {} -> {} KiB",
        idle / 1024,
        held / 1024
    );
    assert!(
        held.saturating_sub(idle) < 1024 * KIB as u64,
        "{STALLERS} chargen clients that never read grew the server by {} KiB",
        (held - idle) / 1024
    );
    round_trip(&warm, b"an echo client is still served").unwrap();
    drop(stallers);
    stop(server);
}

/// Discard and chargen are under the same limits as echo: the per-address
/// limit counts them with echo connections, and the idle timeout closes a
/// quiet discard client and a chargen client that stopped reading.
#[test]
fn services_keep_the_server_limits() {
    let mut server = EchoServer::start(
        &[
            "-l",
            "127.0.0.1:0",
            "--discard",
            "127.0.0.1:0",
            "--chargen",
            "127.0.0.1:0",
            "--max-connections-per-ip",
            "2",
            "--idle-timeout",
            "1",
        ],
        None,
    );
    let echo = listening_as(&mut server, "");
    let discard = listening_as(&mut server, " (discard)");
    let chargen = listening_as(&mut server, " (chargen)");

    let quiet = connect(discard);
    let stalled = connect_small_window(chargen, 4 * KIB);
    let third = connect(echo);
    assert!(
        closed_by_peer(&third),
        "a third connection from 127.0.0.1 was served past --max-connections-per-ip 2"
    );
    assert!(
        closed_by_peer(&quiet),
        "the quiet discard client was never closed"
    );
    // The stalled chargen client moves no byte once its queue is full, so
    // it is idle too (reading it would keep it busy forever).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        server.signal(libc::SIGUSR1);
        let line = server.line_containing("stats: ");
        if count(&line, "idle_closed") == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not both closed as idle: {line}");
        thread::sleep(Duration::from_millis(100));
    }
    drop(stalled);
    let lines = stop(server);
    let last = lines
        .iter()
        .rev()
        .find(|l| l.contains("stopped: "))
        .cloned()
        .unwrap_or_default();
    assert_eq!(count(&last, "idle_closed"), 2, "{last}");
    assert_eq!(count(&last, "rejected"), 1, "{last}");
}

/// A stop drains the services too: a chargen client mid-stream and a
/// discard client mid-send each read the server's FIN, and the server
/// returns well before its shutdown timeout.
#[test]
fn a_stop_drains_discard_and_chargen_clients() {
    let server = services();
    let mut chargen = connect(server.addrs_of(Service::Chargen)[0]);
    let mut discard = connect(server.addrs_of(Service::Discard)[0]);
    let mut first = [0u8; 1000];
    chargen.read_exact(&mut first).unwrap();
    discard.write_all(&random_bytes(7, 100 * KIB)).unwrap();
    let handle = server.handle();
    let started = Instant::now();
    handle.stop().unwrap();
    for (name, stream) in [("chargen", &chargen), ("discard", &discard)] {
        let mut rest = Vec::new();
        read_to_eof(stream, &mut rest, 64 * KIB)
            .unwrap_or_else(|e| panic!("{name}: no FIN after the stop: {e}"));
        // Our side closes: the server is lingering for our FIN.
        stream.shutdown(Shutdown::Write).unwrap();
    }
    let summary = server.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the drain took {:?} (shutdown timeout 5 s)",
        started.elapsed()
    );
    assert_eq!(summary.closed, 2, "{summary:?}");
    assert_eq!(summary.discarded, 100 * KIB as u64, "{summary:?}");
}

/// Stops the server with SIGTERM: it exits 0; returns its log.
fn stop(server: EchoServer) -> Vec<String> {
    server.signal(libc::SIGTERM);
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{status}: {lines:#?}");
    lines
}

/// The address of the `listening on tcp://ADDR{suffix}` line.
fn listening_as(server: &mut EchoServer, suffix: &str) -> SocketAddr {
    loop {
        let line = server.line_containing("listening on tcp://");
        let rest = &line[line.find("tcp://").unwrap() + 6..];
        let (addr, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let tail = if tail.is_empty() {
            ""
        } else {
            &rest[addr.len()..]
        };
        if tail.trim_end() == suffix {
            return addr.parse().unwrap();
        }
    }
}
