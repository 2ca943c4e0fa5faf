//! Idle connections: with an idle timeout, a connection that sends nothing
//! for that long is closed, and one that keeps sending is kept.
//!
//! What a stopped server does with its idle timers when it wakes (no close
//! of a connection with data waiting) is pinned in `memory.rs`, and TCP
//! keepalive for a peer that vanished there too.

mod common;

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use common::{closed_by_peer, connect, leave, round_trip, server_with, REFUSAL_WAIT};
use mio_echo::Config;

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
