//! `echo-bench` end to end: the built binary against a real server started
//! in this process, and against small fake servers that corrupt, stall or
//! close on purpose. Loopback only, free ports, every wait bounded; each run
//! is a fraction of a second.

use echo_test_kit as common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{run, server, Run};

fn bench(args: &[&str]) -> Run {
    run(
        Command::new(env!("CARGO_BIN_EXE_echo-bench")).args(args),
        Vec::new(),
    )
}

/// The `result` line's pairs; fails unless there is exactly one, last.
fn result_line(run: &Run) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&run.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let results: Vec<&&str> = lines.iter().filter(|l| l.starts_with("result ")).collect();
    assert_eq!(results.len(), 1, "one result line expected:\n{stdout}");
    assert_eq!(lines.last(), results.first().copied(), "result line last");
    results[0]
        .split(' ')
        .skip(1)
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("key=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn num(fields: &HashMap<String, String>, key: &str) -> f64 {
    fields
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {fields:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number: {fields:?}"))
}

/// A fake server for one connection: `serve` gets the accepted stream.
fn fake_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            // Bounded even if the tool under test misbehaves.
            let _ = stream.set_read_timeout(Some(common::IO_TIMEOUT));
            serve(stream);
        }
    });
    addr
}

/// Echoes like a real server, except that stream byte `flip` comes back
/// with its low bit changed.
fn corrupting_server(flip: usize) -> SocketAddr {
    fake_server(move |mut stream| {
        let mut buf = [0u8; 4096];
        let mut at = 0;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            if (at..at + n).contains(&flip) {
                buf[flip - at] ^= 0x01;
            }
            at += n;
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Strict ping-pong over a few connections: echoes counted, none wrong.
#[test]
fn pingpong_counts_echoes_without_errors() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "pingpong", "--addr", &addr, "-c", "4", "-s", "64", "-d", "0.5", "--warmup", "0.1",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["mode"], "pingpong");
    assert_eq!(r["depth"], "1");
    assert_eq!(r["connections"], "4");
    assert_eq!(num(&r, "errors"), 0.0);
    assert!(num(&r, "echoes") > 0.0, "{r:?}");
    assert!(num(&r, "echoes_per_sec") > 0.0, "{r:?}");
    assert!(num(&r, "p50_us") > 0.0 && num(&r, "p50_us") <= num(&r, "p99_9_us"));
}

/// Pipelined (depth 4) over two loops: every byte still checks out.
#[test]
fn pipelined_pingpong_on_two_threads_has_no_errors() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "pingpong",
        "--addr",
        &addr,
        "-c",
        "5",
        "-s",
        "100",
        "--depth",
        "4",
        "--threads",
        "2",
        "-d",
        "0.5",
        "--warmup",
        "0",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["depth"], "4");
    assert_eq!(r["threads"], "2");
    assert_eq!(num(&r, "errors"), 0.0);
    assert!(num(&r, "echoes") > 0.0, "{r:?}");
    // Whole messages only are counted; every one was checked.
    assert!(num(&r, "verified_bytes") >= num(&r, "echoes") * 100.0);
}

/// A bulk transfer comes back whole: the byte count is the one asked for.
#[test]
fn stream_echoes_every_byte() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&["stream", "--addr", &addr, "--bytes", "4M", "-c", "3"]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["mode"], "stream");
    assert_eq!(r["bytes"], (4 << 20).to_string());
    assert_eq!(r["echoed_bytes"], (4 << 20).to_string());
    assert_eq!(num(&r, "errors"), 0.0);
    assert!(num(&r, "mib_per_sec") > 0.0);
}

/// Many connections from two source addresses open, echo and are held.
#[test]
fn connections_open_from_two_sources_echo_and_hold() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "connections",
        "--addr",
        &addr,
        "--count",
        "200",
        "--sources",
        "2",
        "--hold",
        "0.2",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["mode"], "connections");
    assert_eq!(r["sources"], "2");
    assert_eq!(r["opened"], "200");
    assert_eq!(r["echoed"], "200");
    assert_eq!(r["held"], "200");
    assert_eq!(num(&r, "errors"), 0.0);
}

/// One flipped byte is found, named, counted, and fails the run.
#[test]
fn a_corrupted_byte_fails_the_run() {
    let addr = corrupting_server(100).to_string();
    let run = bench(&[
        "pingpong", "--addr", &addr, "-c", "1", "-s", "64", "-d", "2", "--warmup", "0",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let r = result_line(&run);
    assert_eq!(num(&r, "mismatches"), 1.0);
    assert_eq!(num(&r, "errors"), 1.0);
    run.assert_one_error_line();
    assert!(
        run.stderr.contains("echo differs at byte 100"),
        "{}",
        run.stderr
    );
    // The run ends as soon as its only connection failed, not at -d 2.
    assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
}

/// A corrupted bulk transfer fails too.
#[test]
fn a_corrupted_stream_fails_the_run() {
    let addr = corrupting_server(300_000).to_string();
    let run = bench(&["stream", "--addr", &addr, "--bytes", "1M"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(num(&result_line(&run), "mismatches"), 1.0);
}

/// A server that takes the bytes and never answers fails the run within
/// the timeout, instead of hanging it.
#[test]
fn a_silent_server_fails_within_the_timeout() {
    let addr = fake_server(|mut stream| {
        let _ = stream.read_to_end(&mut Vec::new());
    })
    .to_string();
    let run = bench(&[
        "pingpong",
        "--addr",
        &addr,
        "-c",
        "1",
        "-d",
        "5",
        "--warmup",
        "0",
        "--timeout",
        "0.5",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(num(&result_line(&run), "timeouts"), 1.0);
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
}

/// A server that closes before echoing everything is an early close.
#[test]
fn an_early_close_is_counted() {
    let addr = fake_server(|mut stream| {
        let mut buf = [0u8; 10];
        if stream.read_exact(&mut buf).is_ok() {
            let _ = stream.write_all(&buf);
        }
    })
    .to_string();
    let run = bench(&["stream", "--addr", &addr, "--bytes", "64K"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let r = result_line(&run);
    assert_eq!(num(&r, "early_closes") + num(&r, "resets"), 1.0, "{r:?}");
}

/// Nobody listening: one line that names the address and what to check.
#[test]
fn refused_connection_is_one_error_line() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    for mode in [
        &["pingpong", "-d", "1"][..],
        &["stream", "--bytes", "1K"],
        &["connections", "--count", "3"],
    ] {
        let mut args = mode.to_vec();
        let addr = addr.to_string();
        args.extend(["--addr", &addr]);
        let run = bench(&args);
        assert_eq!(run.status.code(), Some(1), "{mode:?}");
        run.assert_one_error_line();
        assert_eq!(
            run.stderr_lines()[0],
            format!(
                "error: cannot connect to {addr}: connection refused (is the echo server running?)"
            ),
            "{mode:?}"
        );
    }
}

/// Bad flags: one `error:` line, exit status 2, no panic.
#[test]
fn bad_flags_exit_2() {
    for args in [
        &["pingpong", "--connections", "0"][..],
        &["pingpong", "--size", "lots"],
        &["pingpong", "--duration", "0"],
        &["pingpong", "--depth", "0"],
        &["pingpong", "--addr", "localhost"],
        &["stream", "--bytes", "-5"],
        &["stream", "--bytes", "2", "--connections", "3"],
        &["connections", "--sources", "300"],
        &["connections", "--addr", "[::1]:7", "--sources", "2"],
        &["connections", "--size", "1M"],
        &["frobnicate"],
    ] {
        let run = bench(args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        run.assert_one_error_line();
    }
}

/// More connections than one process may open: the error says how many
/// processes to use, before any connection is tried.
#[test]
fn too_many_connections_for_one_process_says_how_to_split() {
    let run = bench(&["connections", "--addr", "127.0.0.1:9", "--count", "4000000"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    run.assert_one_error_line();
    assert!(
        run.stderr.contains("echo-bench processes"),
        "{}",
        run.stderr
    );
}

/// Echoes like a real server, but once it has read `after` bytes it stops
/// for `stall` before going on: a pause a load tool should see.
fn stalling_server(after: usize, stall: Duration) -> SocketAddr {
    fake_server(move |mut stream| {
        let mut buf = [0u8; 4096];
        let (mut at, mut stalled) = (0, false);
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            at += n;
            if at >= after && !stalled {
                stalled = true;
                thread::sleep(stall);
            }
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Echoes, then ends the stream its own way once the client's EOF came:
/// `end` gets the stream.
fn ending_server(end: impl FnOnce(&mut TcpStream) + Send + 'static) -> SocketAddr {
    fake_server(move |mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                end(&mut stream);
                return;
            }
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

/// At a modest rate a real server keeps up: the rate achieved is the rate
/// asked for, latency is timed from when messages were due, no errors.
#[test]
fn paced_pingpong_achieves_a_modest_rate() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "pingpong", "--addr", &addr, "-c", "4", "--rate", "1000", "-d", "2", "--warmup", "0.2",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["rate"], "1000");
    assert_eq!(r["latency"], "from_intended");
    assert_eq!(r["kept_up"], "true", "{r:?}");
    assert_eq!(num(&r, "errors"), 0.0);
    assert_eq!(num(&r, "unsent"), 0.0);
    let achieved = num(&r, "achieved_rate");
    assert!((990.0..=1010.0).contains(&achieved), "{r:?}");
    // 2 s at 1000/s: every message due in the window is timed.
    let echoes = num(&r, "echoes");
    assert!((1980.0..=2020.0).contains(&echoes), "{r:?}");
    assert!(num(&r, "p50_us") > 0.0 && num(&r, "p50_us") <= num(&r, "p99_us"));
}

/// A server that stalls once for 500 ms: timed from when each message was
/// due, the stall counts for every message due during it (half of them
/// here), so p99 shows it, even with one message in flight (`--depth 1`),
/// where those messages can only be written after the stall; the closed
/// loop sends nothing while it waits, so the same stall is one sample,
/// seen only in the max.
#[test]
fn the_open_loop_sees_a_stall_the_closed_loop_hides() {
    let stall = Duration::from_millis(500);
    // 200 messages in: 0.2 s into the open-loop run.
    let paced_addr = stalling_server(200 * 64, stall).to_string();
    let closed_addr = stalling_server(200 * 64, stall).to_string();
    let paced = thread::spawn(move || {
        bench(&[
            "pingpong",
            "--addr",
            &paced_addr,
            "-c",
            "1",
            "--rate",
            "1000",
            "--depth",
            "1",
            "-d",
            "1",
            "--warmup",
            "0",
        ])
    });
    let closed = bench(&[
        "pingpong",
        "--addr",
        &closed_addr,
        "-c",
        "1",
        "-d",
        "1",
        "--warmup",
        "0",
    ]);
    let paced = paced.join().unwrap();
    paced.assert_success();
    closed.assert_success();
    let (p, c) = (result_line(&paced), result_line(&closed));
    assert!(num(&p, "p99_us") >= 300_000.0, "open loop: {p:?}");
    assert!(num(&p, "p50_us") >= 1_000.0, "open loop: {p:?}");
    assert_eq!(c["latency"], "closed_loop");
    assert!(num(&c, "max_us") >= 400_000.0, "closed loop: {c:?}");
    assert!(num(&c, "p99_us") < 100_000.0, "closed loop: {c:?}");
    let summary = String::from_utf8_lossy(&closed.stdout);
    assert!(summary.contains("use --rate"), "{summary}");
}

/// A server too slow for the rate (one 64-byte read per 5 ms, at most 200
/// messages a second) is reported as not keeping up, in the summary and
/// the result line; its messages are all checked, so the run still passes.
#[test]
fn a_server_too_slow_for_the_rate_did_not_keep_up() {
    let addr = fake_server(|mut stream| {
        let mut buf = [0u8; 64];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
    })
    .to_string();
    let run = bench(&[
        "pingpong", "--addr", &addr, "-c", "1", "--rate", "1000", "--depth", "8", "-d", "0.5",
        "--warmup", "0",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["kept_up"], "false", "{r:?}");
    assert!(num(&r, "achieved_rate") <= 250.0, "{r:?}");
    assert!(num(&r, "unsent") > 0.0, "{r:?}");
    let summary = String::from_utf8_lossy(&run.stdout);
    assert!(
        summary.contains("the server did not keep up: achieved")
            && summary.contains("of 1000/s requested"),
        "{summary}"
    );
}

/// `--percentiles` picks the percentiles shown (keys spell the point as
/// `_`); values out of (0, 100], or not numbers, are usage errors, as are
/// rates that are not positive.
#[test]
fn percentiles_are_chosen_and_checked() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "pingpong",
        "--addr",
        &addr,
        "-c",
        "2",
        "-d",
        "0.2",
        "--warmup",
        "0",
        "--percentiles",
        "99.99,90",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert!(num(&r, "p90_us") <= num(&r, "p99_99_us"), "{r:?}");
    assert!(!r.contains_key("p50_us"), "{r:?}");
    for bad in ["0", "100.5", "-1", "ninety", "50,,99", ""] {
        let run = bench(&["pingpong", "--addr", &addr, "--percentiles", bad]);
        assert_eq!(run.status.code(), Some(2), "{bad:?}: {}", run.stderr);
        run.assert_one_error_line();
        assert!(run.stderr.contains("percentile"), "{bad:?}: {}", run.stderr);
    }
    for bad in ["0", "-5", "fast", "NaN"] {
        let run = bench(&["pingpong", "--addr", &addr, "--rate", bad]);
        assert_eq!(run.status.code(), Some(2), "{bad:?}: {}", run.stderr);
        assert!(run.stderr.contains("messages per second"), "{}", run.stderr);
    }
}

/// A bulk stream times sampled bytes' round trips and reports their
/// percentiles, the ones asked for.
#[test]
fn stream_reports_latency() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "stream",
        "--addr",
        &addr,
        "--bytes",
        "8M",
        "-c",
        "2",
        "--percentiles",
        "50,99.9",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert!(num(&r, "latency_samples") >= 2.0, "{r:?}");
    assert!(num(&r, "p50_us") > 0.0, "{r:?}");
    assert!(num(&r, "p50_us") <= num(&r, "p99_9_us"), "{r:?}");
    assert!(num(&r, "p99_9_us") <= num(&r, "max_us"), "{r:?}");
}

/// pingpong ends with a half-close and expects exactly the server's EOF: a
/// byte sent after the client's EOF is caught as a surplus.
#[test]
fn pingpong_catches_a_byte_after_its_eof() {
    let addr = ending_server(|stream| {
        let _ = stream.write_all(b"!");
    })
    .to_string();
    let run = bench(&[
        "pingpong", "--addr", &addr, "-c", "1", "-d", "0.2", "--warmup", "0",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(num(&result_line(&run), "mismatches"), 1.0);
    assert!(
        run.stderr.contains("more than it was sent"),
        "{}",
        run.stderr
    );
}

/// ... and a server that never closes after the client's EOF fails within
/// --timeout, open loop or closed.
#[test]
fn pingpong_catches_a_server_that_never_closes() {
    for rate in [None, Some("500")] {
        let addr = ending_server(|_| thread::sleep(Duration::from_secs(5))).to_string();
        let mut args = vec![
            "pingpong",
            "--addr",
            &addr,
            "-c",
            "1",
            "-d",
            "0.2",
            "--warmup",
            "0",
            "--timeout",
            "0.5",
        ];
        args.extend(rate.iter().flat_map(|r| ["--rate", r]));
        let run = bench(&args);
        assert_eq!(run.status.code(), Some(1), "{rate:?}: {}", run.stderr);
        assert_eq!(num(&result_line(&run), "timeouts"), 1.0, "{rate:?}");
        assert!(run.stderr.contains("no EOF"), "{rate:?}: {}", run.stderr);
        assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
    }
}
