//! The echo server through the library, running in this process: many
//! clients at once, clients that leave early or reset, half-closes, and
//! stops with bytes still owed. Every echoed byte is compared with what was
//! sent; every random choice comes from a fixed seed that failures print.
//! Everything runs over loopback and every wait has a deadline.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_same_bytes, connect, connect_small_window, difference, echo_ok, exchange,
    exchange_reading, random_bytes, random_chunks, server, server_with, tcp_socket, wait_until,
    ESTABLISHED,
};
use mio_echo::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Closes `stream` with a reset instead of a FIN: with SO_LINGER set to zero,
/// `close` discards whatever is queued and sends RST.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

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

/// A client that reads nothing until its own writes stall, then reads: it
/// gets every byte back, then EOF. By the stall the server has stopped
/// reading from it, its buffer full (`max_buffer`); once the client reads,
/// the server must start reading again by itself, since no new event
/// announces the bytes it left waiting in its socket.
#[test]
fn a_client_that_pauses_reading_until_pushed_back_gets_every_byte() {
    const SEED: u64 = 0xBAC;
    let server = server();
    let addr = server.addr();
    // Twice what the kernel buffers on both sides and the server's own
    // held between them on Linux loopback (about 7 MiB), so writes stall.
    let data = random_bytes(SEED, 16 * MIB);
    let stream = connect_small_window(addr, 8 * KIB);
    let me = stream.local_addr().unwrap();
    let mut writer = stream.try_clone().unwrap();
    let written = AtomicUsize::new(0);
    let echo = thread::scope(|scope| {
        let sending = scope.spawn(|| -> io::Result<()> {
            for chunk in data.chunks(64 * KIB) {
                writer.write_all(chunk)?;
                written.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            writer.shutdown(Shutdown::Write)
        });
        // Pushed back: the server leaves bytes unread on its side (its
        // buffer is full) and the writer has made no progress for 100 ms.
        // Or the writer is done (or failed), which the checks below report.
        let (mut last, mut still) = (usize::MAX, 0);
        let mut theirs = None;
        wait_until("the server pushes back on the client", || {
            let now = written.load(Ordering::SeqCst);
            (still, last) = if now == last {
                (still + 1, now)
            } else {
                (0, now)
            };
            let t = tcp_socket(addr, Some(me)).expect("the server's socket");
            theirs = Some(t);
            sending.is_finished() || (still >= 20 && t.rx > 0)
        });
        assert!(
            last < data.len(),
            "setup: no back-pressure; all {last} bytes went out, server side {theirs:?}"
        );
        let mut echo = Vec::with_capacity(data.len());
        let read = common::read_to_eof(&stream, &mut echo, 64 * KIB);
        let sent = sending.join().expect("writer thread panicked");
        sent.expect("sending");
        read.unwrap_or_else(|e| panic!("reading after {} bytes: {e}", echo.len()));
        echo
    });
    assert_same_bytes(&data, &echo, format_args!("seed {SEED:#x}"));
}

/// A server that reads everything a client sends (its buffer is larger
/// than any payload here) and never gives up on a drain in a test's time.
fn roomy_server() -> mio_echo::Running {
    server_with(Config {
        max_buffer: 16 * MIB,
        shutdown_timeout: Duration::from_secs(60),
        ..Config::loopback()
    })
}

/// Waits until the server has read every byte the client `me` sent it:
/// nothing left in the client's send queue or in the server's receive
/// queue. Returns the server's side of the connection at that moment.
fn wait_until_all_read(me: SocketAddr, server: SocketAddr) -> common::KernelSocket {
    let mut theirs = None;
    wait_until("the server reads every byte sent", || {
        let ours = tcp_socket(me, Some(server)).expect("our socket");
        let t = tcp_socket(server, Some(me)).expect("the server's socket");
        theirs = Some(t);
        ours.tx == 0 && t.rx == 0
    });
    theirs.unwrap()
}

/// A lower bound on what the server itself (not the kernel) still owes the
/// client `me`, which has sent `sent` bytes, all read by the server, and
/// read none back: the kernel holds at most the client's receive queue and
/// the server's send queue. Valid once the traffic has settled.
fn owed_at_least(me: SocketAddr, server: SocketAddr, sent: usize) -> usize {
    let ours = tcp_socket(me, Some(server)).expect("our socket");
    let theirs = tcp_socket(server, Some(me)).map_or(0, |t| t.tx);
    sent.saturating_sub(ours.rx + theirs)
}

/// A FIN that arrives while the server owes bytes: the server writes them
/// all before its own FIN.
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

/// A stop while the server owes a client bytes it has read: the client
/// still gets every byte it sent, then EOF, and the stop returns.
#[test]
fn stop_drains_owed_bytes_then_sends_eof() {
    const SEED: u64 = 0x0DE;
    let server = roomy_server();
    let addr = server.addr();
    let data = random_bytes(SEED, 8 * MIB);
    let mut stream = connect(addr);
    let me = stream.local_addr().unwrap();
    // Nothing is read back yet; the server reads it all into its buffer.
    stream.write_all(&data).unwrap();
    // "Sent before the stop" means read by the server before the stop.
    let theirs = wait_until_all_read(me, addr);
    assert_eq!(theirs.state, ESTABLISHED);

    let handle = server.handle();
    let stopping = Instant::now();
    handle.stop().unwrap();
    // The stop has begun once the listener is closed.
    wait_until("the server closes its listener", || {
        tcp_socket(addr, None).is_none()
    });
    // Nothing was read back since, so this is also a lower bound on what
    // the server owed when the stop began.
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
        format_args!("{owed}+ bytes owed at the stop, seed {SEED:#x}"),
    );

    let summary = server.stop().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "the stop waited for its timeout instead of the drain: {:?}",
        stopping.elapsed()
    );
    assert_eq!(summary.connections, 1);
    assert_eq!(summary.bytes, data.len() as u64);
}

/// A server with no connections stops at once, with zero totals.
#[test]
fn stop_with_no_connections_is_prompt_and_counts_nothing() {
    let server = server_with(Config {
        shutdown_timeout: Duration::from_secs(60),
        ..Config::loopback()
    });
    let started = Instant::now();
    let summary = server.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        (
            summary.connections,
            summary.closed,
            summary.bytes,
            summary.bytes_in
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(summary.accept_errors, 0);
}

/// Stopping while a client is still sending: the server echoes nothing new,
/// sends every byte it owes, then FIN, and reads what the client still sends
/// until the client closes, so no reset destroys echoed bytes in flight. The
/// client reads every echoed byte (each one right), then a clean EOF.
#[test]
fn stop_while_the_client_still_sends_ends_in_eof_not_a_reset() {
    let server = server_with(Config {
        shutdown_timeout: Duration::from_secs(30),
        ..Config::loopback()
    });
    let client = connect(server.addr());
    let data = common::random_bytes(11, 32 << 20);
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    // Writes until the server stops reading and the kernel buffers are full,
    // then, after the stop, until the server's FIN has turned its writes
    // into a broken pipe or all 32 MiB are gone; then closes its side.
    let feeder = thread::spawn(move || {
        let mut written = 0;
        for chunk in sent.chunks(64 * 1024) {
            if writer.write_all(chunk).is_err() {
                break;
            }
            written += chunk.len();
        }
        let _ = writer.shutdown(Shutdown::Write);
        written
    });
    // Wait until the server is pushing back: it owes bytes and has stopped
    // reading (the kernel table shows bytes queued toward it).
    let (server_side, client_side) = (server.addr(), client.local_addr().unwrap());
    // Pushed back: bytes wait unread at the server, and more wait unsent here.
    common::wait_until("the server to stop reading (pushed back)", || {
        let at_server = common::kernel_socket(server_side, client_side).is_some_and(|s| s.rx > 0);
        let here =
            common::kernel_socket(client_side, server_side).is_some_and(|s| s.tx > 64 * 1024);
        at_server && here
    });
    let stopper = thread::spawn(move || server.stop());
    let mut back = Vec::new();
    let mut reader = client;
    let result = reader.read_to_end(&mut back);
    assert!(
        result.is_ok(),
        "the client got {result:?} after {} echoed bytes: a reset",
        back.len()
    );
    assert!(!back.is_empty(), "nothing came back before the stop");
    common::assert_same_bytes(
        &data[..back.len()],
        &back,
        "the bytes echoed before the stop",
    );
    feeder.join().unwrap();
    drop(reader);
    let summary = stopper.join().unwrap().unwrap();
    assert_eq!(summary.bytes, back.len() as u64, "{summary:?}");
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
