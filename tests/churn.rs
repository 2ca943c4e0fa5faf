//! Connection churn and token reuse: thousands of short connections beside
//! long-lived ones pass through a connection table whose keys are reused
//! constantly, and no byte of one client ever reaches another.
//!
//! A storm of connections that reset at once, against the limits, is in
//! `limits.rs`. Figures are printed to standard error; see them with
//! `cargo test --test churn -- --nocapture`.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::Instant;

use common::{connect, leave, random_bytes, reset, round_trip, server, SetOnDrop, DEADLINE, KIB};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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
