//! Stopping the server: a stop drains the bytes it owes and then sends EOF,
//! a stop while a client still sends ends in EOF rather than a reset, and a
//! server with no connections stops at once.
//!
//! Runs the library in this process, so a test holds the stop handle and
//! reads the exact totals. SIGTERM and SIGINT on the binary are pinned in
//! `server_cli.rs`; a stop draining discard and chargen in `services.rs`.
// Some tests here need Linux (/proc, network namespaces); elsewhere they
// are compiled out, and what only they use goes unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_same_bytes, connect, random_bytes, roomy_server, server_with, wait_until, MIB,
};
#[cfg(target_os = "linux")]
use common::{owed_at_least, tcp_socket, ESTABLISHED};
use mio_echo::Config;

/// Waits until the server has read every byte the client `me` sent it:
/// nothing left in the client's send queue or in the server's receive
/// queue. Returns the server's side of the connection at that moment.
#[cfg(target_os = "linux")]
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

/// A stop while the server owes a client bytes it has read: the client
/// still gets every byte it sent, then EOF, and the stop returns.
#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
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
