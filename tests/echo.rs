//! Byte-exact echo through the library, running in this process: many
//! clients at once with random data in random chunks, one client after
//! another, clients that leave early or reset, half-closes, and urgent
//! data. Every echoed byte is compared with what was sent; every random
//! choice comes from a fixed seed that failures print. Everything runs over
//! loopback and every wait has a deadline.
//!
//! Stops are pinned in `shutdown.rs`, back-pressure in `backpressure.rs`.
// Some tests here need Linux (/proc, network namespaces); elsewhere they
// are compiled out, and what only they use goes unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Barrier;
use std::thread;

use common::{
    assert_same_bytes, connect, connect_small_window, difference, echo_ok, exchange,
    exchange_reading, random_bytes, random_chunks, reset, roomy_server, server, wait_until, KIB,
    MIB,
};
#[cfg(target_os = "linux")]
use common::{owed_at_least, tcp_socket, ESTABLISHED};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Many clients at once, each with its own payload size and write pattern,
/// all get their own bytes back exactly, and the totals add up.
#[test]
fn concurrent_clients_each_get_their_own_bytes_back() {
    const SEED: u64 = 0xC0FFEE;
    const CLIENTS: usize = 100;
    let server = server();
    let addr = server.addr();

    // The plan: a payload size and a seed per client. Most payloads are
    // small; about a third run to 4 MiB (some 60 MiB in all). Client 0
    // sends nothing, client 1 one byte, client 2 the largest payload.
    let mut rng = StdRng::seed_from_u64(SEED);
    let plan: Vec<(usize, u64)> = (0..CLIENTS)
        .map(|i| {
            let size = match (i, rng.random_range(0..100)) {
                (0, _) => 0,
                (1, _) => 1,
                (2, _) => 4 * MIB,
                (_, 0..30) => rng.random_range(0..=4 * MIB),
                (_, 30..60) => rng.random_range(0..=256 * KIB),
                _ => rng.random_range(0..=16 * KIB),
            };
            (size, rng.random())
        })
        .collect();
    let total: usize = plan.iter().map(|&(size, _)| size).sum();

    // Every client connects before any sends, so all of them are open at
    // once. Every fourth reads 1 KiB at a time through a small window: slow
    // peers among fast ones.
    let clients: Vec<(TcpStream, usize)> = (0..CLIENTS)
        .map(|i| match i % 4 {
            3 => (connect_small_window(addr, 8 * KIB), KIB),
            _ => (connect(addr), 64 * KIB),
        })
        .collect();
    let outcomes: Vec<Result<(), String>> = thread::scope(|scope| {
        let clients: Vec<_> = plan
            .iter()
            .zip(&clients)
            .enumerate()
            .map(|(i, (&(size, seed), (stream, read_size)))| {
                scope.spawn(move || {
                    let what = format!("client {i} ({size} bytes, seed {SEED:#x}/{seed:#x})");
                    let data = random_bytes(seed, size);
                    let chunks = random_chunks(&mut StdRng::seed_from_u64(seed), size, 64 * KIB);
                    let echo = exchange_reading(stream, &data, &chunks, *read_size)
                        .map_err(|e| format!("{what}: {e}"))?;
                    match difference(&data, &echo) {
                        None => Ok(()),
                        Some(diff) => Err(format!("{what}: {diff}")),
                    }
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("client thread panicked"))
            .collect()
    });
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );

    let summary = server.stop().unwrap();
    assert_eq!(summary.connections, CLIENTS as u64, "seed {SEED:#x}");
    assert_eq!(summary.closed, CLIENTS as u64, "seed {SEED:#x}");
    assert_eq!(summary.bytes, total as u64, "seed {SEED:#x}");
    assert_eq!(summary.bytes_in, total as u64, "seed {SEED:#x}");
}

/// One client after another: the server outlives each of them and the
/// 51st is served like the first.
#[test]
fn server_outlives_fifty_sequential_clients() {
    const SEED: u64 = 0x5E9;
    let server = server();
    let mut rng = StdRng::seed_from_u64(SEED);
    for i in 0..51 {
        let data = random_bytes(rng.random(), rng.random_range(0..=64 * KIB));
        echo_ok(
            server.addr(),
            &data,
            &mut rng,
            format_args!("client {i}, seed {SEED:#x}"),
        );
    }
    let summary = server.stop().unwrap();
    assert_eq!(summary.connections, 51);
    assert_eq!(summary.closed, 51);
}

/// A hundred connections that close without sending a byte, half with FIN
/// and half with RST, while another client is mid-session: that client
/// finishes byte-exact and a new client is served.
#[test]
fn silent_connections_leave_the_server_serving_others() {
    const SEED: u64 = 0x51;
    const SILENT: usize = 100;
    let server = server();
    let addr = server.addr();
    let mut rng = StdRng::seed_from_u64(SEED);

    // A client that has had its first half echoed and waits to send the rest.
    let data = random_bytes(SEED, 200 * KIB);
    let (first, second) = data.split_at(100 * KIB);
    let mut busy = connect(addr);
    busy.write_all(first).unwrap();
    let mut echo = vec![0u8; first.len()];
    busy.read_exact(&mut echo).unwrap();
    assert_same_bytes(first, &echo, "first half, before the silent ones");

    for i in 0..SILENT {
        let silent = connect(addr);
        if i % 2 == 0 {
            drop(silent);
        } else {
            reset(silent);
        }
    }

    let chunks = random_chunks(&mut rng, second.len(), 64 * KIB);
    let echo = exchange(&busy, second, &chunks).expect("the busy client's second half");
    assert_same_bytes(second, &echo, format_args!("second half, seed {SEED:#x}"));

    let data = random_bytes(SEED + 1, 100 * KIB);
    echo_ok(addr, &data, &mut rng, "a client after the silent ones");

    // Linux hands out reset connections from the accept queue like any
    // other, in order: all the silent ones were accepted before the last
    // (those reset before it got to them are dropped there, and counted).
    let summary = server.stop().unwrap();
    assert_eq!(
        summary.connections + summary.reset_early,
        SILENT as u64 + 2,
        "{summary:?}"
    );
    assert_eq!(summary.bytes, 300 * KIB as u64);
}

/// 8 MiB written in full and then half-closed: every byte comes back, then
/// the server's EOF. The echo is read meanwhile, as a half-closing client
/// must: 8 MiB can be more than the socket buffers on both sides and the
/// server's `max_buffer` hold together (about 7 MiB on Linux loopback).
#[test]
fn half_close_after_eight_mib_returns_every_byte_then_eof() {
    const SEED: u64 = 0x8;
    let server = server();
    let data = random_bytes(SEED, 8 * MIB);
    let stream = connect(server.addr());
    // Large writes, so the FIN follows the bulk of the data closely.
    let chunks: Vec<usize> = data.chunks(MIB).map(<[u8]>::len).collect();
    let echo = exchange(&stream, &data, &chunks).expect("the 8 MiB session");
    assert_same_bytes(&data, &echo, format_args!("seed {SEED:#x}"));
    let summary = server.stop().unwrap();
    assert_eq!(summary.bytes, data.len() as u64);
}

/// Starts a session that ends in a reset: sends `data[..first]`, reads one
/// byte of echo (so the server has accepted it and is echoing), then, if
/// `fill`, keeps writing without blocking until the socket will take no more
/// (leaving the server with bytes in flight, and perhaps owed), and resets
/// with the rest of the echo unread.
fn reset_mid_stream(addr: SocketAddr, data: &[u8], first: usize, fill: bool) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(common::IO_TIMEOUT))?;
    stream.write_all(&data[..first])?;
    let mut one = [0u8; 1];
    stream.read_exact(&mut one)?;
    if one[0] != data[0] {
        return Err(io::Error::other("the first echoed byte is wrong"));
    }
    if fill {
        stream.set_nonblocking(true)?;
        let mut at = first;
        while at < data.len() {
            match stream.write(&data[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    reset(stream);
    Ok(())
}

/// Peers that reset mid-stream, with echo they never read and bytes the
/// server may still owe them, disturb no one: clients mid-transfer at the
/// time finish byte-exact, and a new client is served afterwards.
#[test]
fn resets_mid_stream_do_not_disturb_other_clients() {
    const SEED: u64 = 0x4E5E7;
    const STEADY: usize = 8;
    const RESETS: usize = 6;
    let server = server();
    let addr = server.addr();
    let mut rng = StdRng::seed_from_u64(SEED);
    let payloads: Vec<(u64, Vec<u8>)> = (0..STEADY)
        .map(|_| {
            let seed: u64 = rng.random();
            (seed, random_bytes(seed, rng.random_range(64 * KIB..=MIB)))
        })
        .collect();
    // Connected up front: nothing below may fail between the barriers.
    let streams: Vec<(TcpStream, TcpStream)> = (0..STEADY)
        .map(|_| {
            let stream = connect(addr);
            let writer = stream.try_clone().unwrap();
            (stream, writer)
        })
        .collect();
    let reset_data = random_bytes(SEED, 8 * MIB);

    // Each steady client sends its first half, waits at `halfway` while the
    // resets happen, then sends the rest; its echo is read all along.
    let halfway = Barrier::new(STEADY + 1);
    let resume = Barrier::new(STEADY + 1);
    let (outcomes, resets) = thread::scope(|scope| {
        let steady: Vec<_> = payloads
            .iter()
            .zip(&streams)
            .enumerate()
            .map(|(i, ((seed, data), (stream, writer)))| {
                let (halfway, resume) = (&halfway, &resume);
                scope.spawn(move || -> Result<(), String> {
                    let what = format!("steady client {i} (seed {SEED:#x}/{seed:#x})");
                    let (first, second) = data.split_at(data.len() / 2);
                    let sending = scope.spawn(move || -> io::Result<()> {
                        let mut writer = writer;
                        let sent = writer.write_all(first);
                        // Always both waits, whatever happened: the other
                        // parties must not wait for us forever.
                        halfway.wait();
                        resume.wait();
                        sent?;
                        writer.write_all(second)?;
                        writer.shutdown(Shutdown::Write)
                    });
                    let mut echo = Vec::with_capacity(data.len());
                    let read = (&*stream).read_to_end(&mut echo);
                    let sent = sending.join().expect("writer thread panicked");
                    sent.map_err(|e| format!("{what}: sending: {e}"))?;
                    read.map_err(|e| format!("{what}: reading after {}: {e}", echo.len()))?;
                    match difference(data, &echo) {
                        None => Ok(()),
                        Some(diff) => Err(format!("{what}: {diff}")),
                    }
                })
            })
            .collect();

        halfway.wait();
        // No panics between the barriers: collect the results, judge later.
        let resets: Vec<io::Result<()>> = (0..RESETS)
            .map(|k| reset_mid_stream(addr, &reset_data, 1000 * (k + 1), k % 2 == 1))
            .collect();
        resume.wait();

        let outcomes: Vec<Result<(), String>> = steady
            .into_iter()
            .map(|c| c.join().expect("client thread panicked"))
            .collect();
        (outcomes, resets)
    });
    for (k, r) in resets.iter().enumerate() {
        assert!(r.is_ok(), "resetting client {k}: {r:?}");
    }
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );

    let data = random_bytes(SEED + 1, 256 * KIB);
    echo_ok(
        addr,
        &data,
        &mut rng,
        format_args!("after the resets, seed {SEED:#x}"),
    );

    let summary = server.stop().unwrap();
    assert_eq!(summary.connections, (STEADY + RESETS + 1) as u64);
}

/// A FIN that arrives while the server owes bytes: the server writes them
/// all before its own FIN.
#[cfg(target_os = "linux")]
#[test]
fn half_close_while_owed_bytes_gets_them_all_then_eof() {
    const SEED: u64 = 0xF1;
    let server = roomy_server();
    let addr = server.addr();
    let data = random_bytes(SEED, 8 * MIB);
    let mut stream = connect(addr);
    let me = stream.local_addr().unwrap();
    // The server reads all of it into its buffer, so this does not block
    // although nothing is read back yet.
    stream.write_all(&data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    // Past ESTABLISHED: CLOSE_WAIT for a server still draining, later
    // states (or none) for one that closed early, which the echo then shows.
    wait_until("the server reads every byte and our FIN", || {
        let ours = tcp_socket(me, Some(addr)).expect("our socket");
        ours.tx == 0
            && tcp_socket(addr, Some(me)).is_none_or(|t| t.rx == 0 && t.state != ESTABLISHED)
    });
    let owed = owed_at_least(me, addr, data.len());
    assert!(
        owed > 0,
        "setup: the kernel took all the echo, nothing owed"
    );

    let mut echo = Vec::with_capacity(data.len());
    stream
        .read_to_end(&mut echo)
        .unwrap_or_else(|e| panic!("after {} bytes of echo: {e}", echo.len()));
    assert_same_bytes(
        &data,
        &echo,
        format_args!("{owed}+ bytes owed at the FIN, seed {SEED:#x}"),
    );
    let summary = server.stop().unwrap();
    assert_eq!(summary.bytes, data.len() as u64);
}

/// TCP urgent data is echoed in place, and the bytes behind it too: a read
/// stops short at the urgent mark, so a short read must not end the pass.
#[test]
fn urgent_data_is_echoed_with_the_bytes_behind_it() {
    let server = server();
    let client = connect(server.addr());
    let socket = socket2::SockRef::from(&client);
    socket.send(b"ab").unwrap();
    socket.send_out_of_band(b"X").unwrap();
    socket.send(b"def").unwrap();
    let mut back = [0u8; 6];
    (&client).read_exact(&mut back).unwrap();
    assert_eq!(&back, b"abXdef");
}
