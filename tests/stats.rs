//! Stats on demand and on a clock: SIGUSR1 logs a `stats:` line and the
//! server goes on serving; `--stats-interval` logs one again and again.
//!
//! Both run the built binary. SIGHUP's stats are pinned in `signals.rs`,
//! the stats of several loops in `threads.rs` and `limits.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{echo_ok, field, random_bytes, stop, summary, tcp_echo, EchoServer};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// SIGUSR1 logs a `stats:` line with the counters so far, and the server
/// goes on serving.
#[test]
fn sigusr1_logs_stats_and_keeps_serving() {
    let mut server = EchoServer::start(&["-l", "127.0.0.1:0"], None);
    let addr = server.listening(1)[0];
    tcp_echo(addr, b"hello");
    server.signal(libc::SIGUSR1);
    let line = server.line_containing("stats: connections=");
    assert_eq!(field(&line, "connections"), Some("1"), "{line}");
    assert_eq!(field(&line, "bytes"), Some("5"), "{line}");
    let mut rng = StdRng::seed_from_u64(0x5a7);
    echo_ok(
        addr,
        &random_bytes(0x5a7, 10_000),
        &mut rng,
        "after SIGUSR1",
    );
    let lines = stop(server);
    assert_eq!(field(summary(&lines), "connections"), Some("2"));
}

/// `--stats-interval 0.2` logs `stats:` lines on its own, again and again.
#[test]
fn stats_interval_logs_periodically() {
    // Before the start: the loop's clock, and so each interval, starts later.
    let started = Instant::now();
    let mut server = EchoServer::start(&["--stats-interval", "0.2", "-l", "127.0.0.1:0"], None);
    server.listening(1);
    server.line_containing("stats: connections=");
    server.line_containing("stats: connections=");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "two lines within {:?}: not one interval apart",
        started.elapsed()
    );
    stop(server);
}
