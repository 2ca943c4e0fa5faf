//! `echo-bench` end to end: the built binary against a real server started
//! in this process, and against small fake servers that corrupt, stall or
//! close on purpose. Loopback only, free ports, every wait bounded; each run
//! is a fraction of a second.

use echo_test_kit as common;

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{run, server, server_with, Run};

fn bench(args: &[&str]) -> Run {
    run(
        Command::new(env!("CARGO_BIN_EXE_echo-bench")).args(args),
        Vec::new(),
    )
}

/// The `result` line's pairs; fails unless there is exactly one, last.
fn result_line(run: &Run) -> HashMap<String, String> {
    result_pairs(run).into_iter().collect()
}

/// The `result` line's pairs in the order they print; fails unless there
/// is exactly one, last.
fn result_pairs(run: &Run) -> Vec<(String, String)> {
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

/// The result line's latency keys (those in microseconds), in order.
fn latency_keys(run: &Run) -> Vec<String> {
    result_pairs(run)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with("_us"))
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

/// Echoes what it reads, in order, after `tamper` has seen each chunk (its
/// offset in the stream, and its bytes, which it may change), and hands
/// the stream to `end` once the client's EOF came.
fn echoing_server(
    mut tamper: impl FnMut(usize, &mut [u8]) + Send + 'static,
    end: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> SocketAddr {
    fake_server(move |mut stream| {
        let mut buf = [0u8; 4096];
        let mut at = 0;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                end(&mut stream);
                return;
            }
            tamper(at, &mut buf[..n]);
            at += n;
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

/// Echoes like a real server, except that stream byte `flip` comes back
/// with its low bit changed.
fn corrupting_server(flip: usize) -> SocketAddr {
    echoing_server(
        move |at, chunk| {
            if (at..at + chunk.len()).contains(&flip) {
                chunk[flip - at] ^= 0x01;
            }
        },
        |_| {},
    )
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
    // The summary's time to open is on the line too, as in `stream`.
    assert!(num(&r, "connect_secs") >= 0.0, "{r:?}");
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
    assert!(num(&r, "connect_secs") >= 0.0, "{r:?}");
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
    assert_eq!(r["eofs"], "200");
    assert_eq!(num(&r, "errors"), 0.0);
}

/// `connections --sources FIRST-LAST` spreads over the range's addresses
/// and names them in the summary.
#[test]
fn connections_open_from_a_source_range() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "connections",
        "--addr",
        &addr,
        "--count",
        "6",
        "--sources",
        "127.0.4.1-127.0.4.3",
    ]);
    run.assert_success();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("from 127.0.4.1 to 127.0.4.3"), "{stdout}");
    let r = result_line(&run);
    assert_eq!(r["sources"], "3");
    assert_eq!(r["echoed"], "6");
    assert_eq!(num(&r, "errors"), 0.0);
}

/// `pingpong --rate --sources FIRST-LAST` binds exactly the addresses of
/// the range, in turn: the server sees each connection come from one of
/// them, as many from each, and every one echoes.
#[test]
fn pingpong_binds_the_source_range_asked_for() {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&peers);
    let addr = fake_servers(4, move |mut stream| {
        seen.lock().unwrap().push(stream.peer_addr().unwrap().ip());
        let mut back = stream.try_clone().unwrap();
        let _ = std::io::copy(&mut stream, &mut back);
    });
    let run = bench(&[
        "pingpong",
        "--addr",
        &addr.to_string(),
        "-c",
        "4",
        "--sources",
        "127.0.3.7-127.0.3.8",
        "--rate",
        "400",
        "--duration",
        "0.2",
        "--warmup",
        "0",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(num(&r, "errors"), 0.0);
    assert!(num(&r, "echoes") > 0.0, "{r:?}");
    let mut peers = peers.lock().unwrap().clone();
    peers.sort();
    let expected: Vec<std::net::IpAddr> = ["127.0.3.7", "127.0.3.7", "127.0.3.8", "127.0.3.8"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(peers, expected);
}

/// A fake server for up to `count` connections, each served by `serve` on
/// a thread of its own.
fn fake_servers(count: usize, serve: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for _ in 0..count {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_read_timeout(Some(common::IO_TIMEOUT));
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// Echoes until the client's EOF, then keeps each connection open (never
/// sends its own EOF): the streams go to the returned receiver, and close
/// when the test drops it.
fn server_keeping_open_after_eof(count: usize) -> (SocketAddr, mpsc::Receiver<TcpStream>) {
    let (keep, kept) = mpsc::channel::<TcpStream>();
    let keep = Mutex::new(keep);
    let addr = fake_servers(count, move |mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                let _ = keep.lock().unwrap().send(stream);
                return;
            }
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    (addr, kept)
}

/// `connections` ends each held connection with our half-close and
/// expects the server's EOF: a server that keeps it open fails it within
/// --timeout.
#[test]
fn connections_fail_a_server_that_never_closes_after_our_eof() {
    let (addr, kept) = server_keeping_open_after_eof(1);
    let addr = addr.to_string();
    let run = bench(&[
        "connections",
        "--addr",
        &addr,
        "--count",
        "1",
        "--timeout",
        "0.5",
    ]);
    drop(kept);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let r = result_line(&run);
    assert_eq!(r["held"], "1");
    assert_eq!(r["eofs"], "0");
    assert_eq!(num(&r, "timeouts"), 1.0, "{r:?}");
    assert_eq!(num(&r, "errors"), 1.0, "{r:?}");
    run.assert_one_error_line();
    assert!(run.stderr.contains("no EOF"), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
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
        &["pingpong", "--addr", "localhost:70000"],
        &["pingpong", "--addr", ":7007"],
        &["pingpong", "--addr", "[localhost]:7007"],
        &["stream", "--bytes", "-5"],
        &["stream", "--bytes", "2", "--connections", "3"],
        &["connections", "--sources", "300"],
        &["connections", "--addr", "[::1]:7", "--sources", "2"],
        &["connections", "--sources", "127.0.1.9-127.0.1.2"],
        &["pingpong", "--sources", "10.0.0.1-10.0.0.2"],
        &[
            "pingpong",
            "--addr",
            "[::1]:7",
            "--sources",
            "127.0.1.1-127.0.1.2",
        ],
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

/// Standard output as one JSON object; fails unless it is exactly that
/// (whitespace aside), with nothing before or after.
fn json_object(run: &Run) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_slice(&run.stdout) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!(
            "stdout is not one JSON object ({other:?}):\n{}",
            String::from_utf8_lossy(&run.stdout)
        ),
    }
}

/// `--json` holds the result line's pairs: the same keys as a run without
/// it, numbers as JSON numbers, and the figures that do not vary between
/// runs equal; stdout holds that one object and nothing else.
#[test]
fn json_holds_every_pair_of_the_result_line() {
    let server = server();
    let addr = server.addr().to_string();
    let args = ["stream", "--addr", &addr, "--bytes", "1M", "-c", "2"];
    let text = bench(&args);
    text.assert_success();
    let line = result_line(&text);
    let run = bench(&[&args[..], &["--json"]].concat());
    run.assert_success();
    let object = json_object(&run);
    let mut keys: Vec<&String> = object.keys().collect();
    let mut expected: Vec<&String> = line.keys().collect();
    let extra = ["failure_details".to_string(), "error".to_string()];
    expected.extend(&extra);
    keys.sort();
    expected.sort();
    assert_eq!(keys, expected);
    for (key, value) in &line {
        match value.parse::<f64>() {
            Ok(_) => assert!(object[key].is_number(), "{key}: {}", object[key]),
            Err(_) => assert_eq!(object[key], value.as_str(), "{key}"),
        }
    }
    for key in ["connections", "threads", "bytes", "echoed_bytes", "errors"] {
        assert_eq!(object[key].as_f64(), Some(num(&line, key)), "{key}");
    }
    assert_eq!(object["mode"], "stream");
    assert_eq!(object["addr"], addr.as_str());
    assert_eq!(object["echoed_bytes"], 1 << 20);
    assert_eq!(object["failure_details"], serde_json::json!([]));
    assert!(object["error"].is_null());
}

/// `--json` on a failed run: the counts by kind and the details in the
/// object, the `error:` line on stderr as ever, status 1.
#[test]
fn json_reports_failures_with_their_details() {
    let addr = corrupting_server(100).to_string();
    let run = bench(&[
        "pingpong", "--addr", &addr, "-c", "1", "-s", "64", "-d", "2", "--warmup", "0", "--json",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    run.assert_one_error_line();
    let object = json_object(&run);
    assert_eq!(object["mode"], "pingpong");
    assert_eq!(object["errors"], 1);
    assert_eq!(object["mismatches"], 1);
    assert_eq!(object["resets"], 0);
    let details = object["failure_details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{details:?}");
    let detail = details[0].as_str().unwrap();
    assert!(detail.contains("echo differs at byte 100"), "{detail}");
    let error = run.stderr_lines()[0].strip_prefix("error: ").unwrap();
    assert_eq!(object["error"], error);
}

/// `--json` when the load cannot start: `{"error": ...}` alone on stdout,
/// the same text as the `error:` line, status 1.
#[test]
fn json_reports_a_run_that_cannot_start() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let run = bench(&["stream", "--json", "--addr", &addr, "--bytes", "1K"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    run.assert_one_error_line();
    let object = json_object(&run);
    let error = run.stderr_lines()[0].strip_prefix("error: ").unwrap();
    assert_eq!(object.len(), 1, "{object:?}");
    assert_eq!(object["error"], error);
    assert!(error.contains("connection refused"), "{error}");
}

/// Under load for over a second with standard error a pipe: no progress
/// line, standard error stays empty.
#[test]
fn no_progress_line_unless_stderr_is_a_terminal() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "pingpong", "--addr", &addr, "-c", "2", "-d", "1.3", "--warmup", "0",
    ]);
    run.assert_success();
    assert_eq!(num(&result_line(&run), "errors"), 0.0);
}

/// A pseudo-terminal: the master side, to read what the child writes, and
/// the slave side, for the child's standard error.
fn pty() -> (File, File) {
    // SAFETY: posix_openpt returns a new descriptor (or -1), which File
    // then owns; grantpt, unlockpt and ptsname act on that descriptor.
    // ptsname's static buffer is read at once, and no other test calls it
    // (ptsname_r, the reentrant one, is not on macOS).
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = File::from_raw_fd(master);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&master);
        assert_eq!(libc::grantpt(fd), 0, "grantpt");
        assert_eq!(libc::unlockpt(fd), 0, "unlockpt");
        let name = libc::ptsname(fd);
        assert!(!name.is_null(), "ptsname");
        let path = CStr::from_ptr(name).to_str().unwrap().to_string();
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        (master, slave)
    }
}

/// With standard error a terminal, a run of 2.5 s under load rewrites a
/// progress line in place at least twice and clears it at the end; with
/// --json, standard output still holds the JSON object alone.
#[test]
fn a_terminal_sees_a_progress_line_every_second() {
    let server = server();
    let addr = server.addr().to_string();
    let (mut master, slave) = pty();
    let started = Instant::now();
    let mut child = {
        let mut command = Command::new(env!("CARGO_BIN_EXE_echo-bench"));
        command
            .args([
                "pingpong", "--addr", &addr, "-c", "3", "-d", "2", "--warmup", "0.5", "--json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(slave));
        // The command, and with it our copy of the slave, ends here, so
        // the master reads EOF (EIO) once the child exits.
        common::Guarded::spawn(&mut command)
    };
    let stdout = common::drain(child.stdout.take().unwrap());
    let terminal = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // Linux's master says EIO, not EOF, once no slave is open.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let status = common::wait(&mut child, started);
    let stdout = stdout.join().unwrap();
    let terminal = terminal.join().unwrap();
    assert!(status.success(), "{status}: {terminal:?}");
    let lines: Vec<&str> = terminal
        .split('\r')
        .filter(|l| l.contains("s  conns 3  echoed "))
        .collect();
    assert!(lines.len() >= 2, "{terminal:?}");
    for line in &lines {
        assert!(line.ends_with("  failures 0\x1b[K"), "{line:?}");
        assert!(line.contains(" echoes/s"), "{line:?}");
    }
    assert!(
        terminal.ends_with("\r\x1b[K"),
        "cleared at the end: {terminal:?}"
    );
    assert!(!terminal.contains('\n'), "only the line: {terminal:?}");
    let object: serde_json::Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&stdout)));
    assert_eq!(object["errors"], 0);
}

/// A host name works: `localhost:PORT` reaches the server on 127.0.0.1,
/// and the report names the address used.
#[test]
fn a_host_name_is_resolved_to_the_address_that_answers() {
    let server = server();
    let addr = server.addr();
    let target = format!("localhost:{}", addr.port());
    let run = bench(&["stream", "--addr", &target, "--bytes", "64K"]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["addr"], addr.to_string());
    assert_eq!(r["echoed_bytes"], (64 << 10).to_string());
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.starts_with(&format!("stream to {addr}:")),
        "{stdout}"
    );
}

/// A name that does not resolve: one line saying so, status 1 (as
/// echo-client), and at once, not after a connect timeout. (`.invalid` is
/// reserved never to resolve; no answer comes from any network.)
#[test]
fn a_name_that_does_not_resolve_is_one_error_line() {
    let run = bench(&[
        "pingpong",
        "--addr",
        "nonexistent.invalid:7",
        "-d",
        "0.1",
        "--timeout",
        "30",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    run.assert_one_error_line();
    assert!(
        run.stderr
            .starts_with("error: cannot resolve nonexistent.invalid:7: "),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    // The resolver's own answer, not a wait for --timeout's 30 s of
    // connecting (a machine whose DNS server cannot be reached takes its
    // resolver's timeouts, 5 s per try).
    assert!(run.elapsed < Duration::from_secs(25), "{:?}", run.elapsed);
}

/// `churn` against a real server: every connection due in the window
/// starts, echoes and closes cleanly, at the rate asked, with its times.
#[test]
fn churn_opens_echoes_and_closes_at_the_rate() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&["churn", "--addr", &addr, "--rate", "200", "-d", "1"]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["mode"], "churn");
    assert_eq!(r["requested"], "200");
    assert_eq!(r["started"], "200");
    assert_eq!(r["completed"], "200");
    assert_eq!(num(&r, "conns_per_sec"), 200.0, "{r:?}");
    assert_eq!(num(&r, "held_back") + num(&r, "missed"), 0.0, "{r:?}");
    assert_eq!(num(&r, "errors"), 0.0);
    for times in ["connect", "echo", "life", "lag"] {
        let p50 = num(&r, &format!("{times}_p50_us"));
        let p99 = num(&r, &format!("{times}_p99_us"));
        let p99_9 = num(&r, &format!("{times}_p99_9_us"));
        let max = num(&r, &format!("{times}_max_us"));
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= p99_9 && p99_9 <= max,
            "{times}: {r:?}"
        );
    }
    // A lifetime holds its connect and its echo.
    assert!(num(&r, "life_max_us") >= num(&r, "connect_p50_us"));
}

/// `churn` expects the server's EOF after its half-close: a server that
/// keeps every connection open fails each within --timeout.
#[test]
fn churn_fails_connections_the_server_never_closes() {
    let (addr, kept) = server_keeping_open_after_eof(3);
    let addr = addr.to_string();
    let run = bench(&[
        "churn",
        "--addr",
        &addr,
        "--rate",
        "10",
        "-d",
        "0.3",
        "--timeout",
        "0.5",
    ]);
    drop(kept);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let r = result_line(&run);
    assert_eq!(r["started"], "3");
    assert_eq!(r["completed"], "0");
    assert_eq!(num(&r, "timeouts"), 3.0, "{r:?}");
    assert_eq!(num(&r, "errors"), 3.0, "{r:?}");
    run.assert_one_error_line();
    assert!(run.stderr.contains("no EOF"), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
}

/// `churn` expects exactly the server's EOF after its own: a byte sent
/// instead, after the whole echo, fails the connection.
#[test]
fn churn_fails_a_byte_after_the_echo() {
    let addr = fake_servers(3, |mut stream| {
        let mut message = [0u8; 32];
        if stream.read_exact(&mut message).is_ok() && stream.write_all(&message).is_ok() {
            // The client's EOF, then one byte more than it sent.
            if let Ok(0) = stream.read(&mut message) {
                let _ = stream.write_all(b"!");
            }
        }
    })
    .to_string();
    let run = bench(&[
        "churn", "--addr", &addr, "--rate", "10", "-d", "0.3", "-s", "32",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let r = result_line(&run);
    assert_eq!(r["started"], "3");
    assert_eq!(r["completed"], "0");
    assert_eq!(num(&r, "mismatches"), 3.0, "{r:?}");
    assert_eq!(num(&r, "errors"), 3.0, "{r:?}");
    assert!(
        run.stderr.contains("the server sent more than it was sent"),
        "{}",
        run.stderr
    );
}

/// `churn` with a server that never answers: the cap on open connections
/// holds starts back, and the report counts them and says so.
#[test]
fn churn_counts_starts_the_cap_held_back() {
    // Handshakes complete in the backlog; nothing is ever accepted.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let run = bench(&[
        "churn",
        "--addr",
        &addr,
        "--rate",
        "20",
        "-d",
        "1",
        "--concurrency",
        "2",
        "--timeout",
        "0.3",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let r = result_line(&run);
    assert_eq!(r["requested"], "20");
    assert_eq!(num(&r, "max_open"), 2.0, "{r:?}");
    assert!(num(&r, "held_back") >= 1.0, "{r:?}");
    assert!(num(&r, "missed") >= 1.0, "{r:?}");
    // Every start that did happen failed, silent, within the timeout.
    assert_eq!(num(&r, "timeouts"), num(&r, "started"), "{r:?}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("the server did not keep up"), "{stdout}");
    drop(listener);
}

/// An in-process server serving UDP on a free loopback port, its UDP
/// replies limited to `rate_per_source` a second to one source and `rate`
/// in all.
fn udp_server(rate_per_source: u32, rate: u32) -> mio_echo::Running {
    server_with(mio_echo::Config {
        udp: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        udp_rate_per_source: rate_per_source,
        udp_rate: rate,
        ..mio_echo::Config::loopback()
    })
}

/// `udp` at a modest rate against a real server with room to answer:
/// every datagram back intact, with its latency.
#[test]
fn udp_echoes_every_datagram_at_a_modest_rate() {
    let server = udp_server(1_000_000, 1_000_000);
    let addr = server.udp_addrs()[0].to_string();
    let run = bench(&[
        "udp",
        "--addr",
        &addr,
        "--rate",
        "500",
        "-d",
        "0.5",
        "--sockets",
        "2",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["mode"], "udp");
    assert_eq!(r["sent"], "250");
    assert_eq!(r["echoed"], "250");
    assert_eq!(r["lost"], "0");
    assert_eq!(
        num(&r, "corrupt") + num(&r, "duplicates") + num(&r, "unknown"),
        0.0
    );
    assert_eq!(num(&r, "errors"), 0.0);
    assert!(
        0.0 < num(&r, "p50_us")
            && num(&r, "p50_us") <= num(&r, "p99_9_us")
            && num(&r, "p99_9_us") <= num(&r, "max_us"),
        "{r:?}"
    );
}

/// `udp` ping-pong (no rate) against a real server: one in flight per
/// socket, none lost.
#[test]
fn udp_ping_pong_loses_nothing() {
    let server = udp_server(1_000_000, 1_000_000);
    let addr = server.udp_addrs()[0].to_string();
    let run = bench(&["udp", "--addr", &addr, "-d", "0.3", "--sockets", "3"]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["rate"], "pingpong");
    assert!(num(&r, "sent") > 0.0, "{r:?}");
    assert_eq!(r["echoed"], r["sent"]);
    assert_eq!(num(&r, "errors"), 0.0);
}

/// A server left at its default UDP limits answers 100 a second to one
/// source: the loss shows, and the report names the flags to raise.
#[test]
fn udp_loss_to_the_default_limit_is_visible() {
    let server = udp_server(
        mio_echo::config::DEFAULT_RATE_PER_SOURCE,
        mio_echo::config::DEFAULT_RATE,
    );
    let addr = server.udp_addrs()[0].to_string();
    let run = bench(&[
        "udp",
        "--addr",
        &addr,
        "--rate",
        "1000",
        "-d",
        "0.3",
        "--timeout",
        "0.3",
    ]);
    // Loss alone is the measurement, not a failure.
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["sent"], "300");
    // One burst of 100 and about 30 more refilled, of 300 sent.
    assert!(num(&r, "lost") >= 100.0, "{r:?}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("--udp-rate-per-source"), "{stdout}");
}

/// `udp` checks each echo: a server that drops every tenth datagram and
/// changes one byte of another has its loss and the corruption counted
/// exactly, and the corruption fails the run.
#[test]
fn udp_counts_loss_and_corruption_exactly() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        // Bounded: ends when the client has been quiet for a while.
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..1000 {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            if i % 10 == 9 {
                continue;
            }
            if i == 4 {
                // A payload byte, after the 8-byte sequence number.
                buf[20] ^= 0x01;
            }
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    let run = bench(&[
        "udp",
        "--addr",
        &addr,
        "--rate",
        "200",
        "-d",
        "0.5",
        "-s",
        "64",
        "--timeout",
        "0.3",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let r = result_line(&run);
    assert_eq!(r["sent"], "100");
    assert_eq!(r["lost"], "10", "{r:?}");
    assert_eq!(r["echoed"], "90", "{r:?}");
    assert_eq!(r["corrupt"], "1", "{r:?}");
    assert_eq!(num(&r, "duplicates") + num(&r, "unknown"), 0.0, "{r:?}");
    assert_eq!(num(&r, "mismatches"), 1.0, "{r:?}");
    assert_eq!(num(&r, "errors"), 1.0, "{r:?}");
    run.assert_one_error_line();
    assert!(
        run.stderr.contains("1 of 100 datagrams failed")
            && run
                .stderr
                .contains("datagram 4: byte 20 of the datagram differs"),
        "{}",
        run.stderr
    );
    server.join().unwrap();
}

/// The new modes' impossible options: one `error:` line, exit status 2.
#[test]
fn churn_and_udp_reject_bad_flags() {
    for args in [
        &["churn", "--rate", "0"][..],
        &["churn", "--rate", "-3"],
        &["churn", "--concurrency", "0"],
        &["churn", "--sources", "300"],
        &["churn", "--size", "1M"],
        &["udp", "--size", "65508"],
        &["udp", "--size", "4"],
        &["udp", "--rate", "0"],
        &["udp", "--sockets", "0"],
    ] {
        let run = bench(args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        run.assert_one_error_line();
    }
}

/// Nobody there: `churn` (every connect refused) and `udp` (every socket
/// refused by ICMP) end with the one line the other modes print.
#[test]
fn churn_and_udp_with_nobody_there_is_one_error_line() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let text = addr.to_string();
    for mode in [
        &["churn", "--rate", "20", "-d", "0.2"][..],
        &["udp", "-d", "1", "--sockets", "2"],
    ] {
        let mut args = mode.to_vec();
        args.extend(["--addr", &text]);
        let run = bench(&args);
        assert_eq!(run.status.code(), Some(1), "{mode:?}: {}", run.stderr);
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

/// Echoes like a real server, but once it has read `after` bytes it stops
/// for `stall` before going on: a pause a load tool should see.
fn stalling_server(after: usize, stall: Duration) -> SocketAddr {
    let mut stalled = false;
    echoing_server(
        move |at, chunk| {
            if at + chunk.len() >= after && !stalled {
                stalled = true;
                thread::sleep(stall);
            }
        },
        |_| {},
    )
}

/// Echoes, then ends the stream its own way once the client's EOF came:
/// `end` gets the stream.
fn ending_server(end: impl FnOnce(&mut TcpStream) + Send + 'static) -> SocketAddr {
    echoing_server(|_, _| {}, end)
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

/// `churn` and `udp` take `--percentiles` too: the result line holds one
/// key per percentile asked for and `max`, for each of churn's times, named
/// as in the other modes, and no other latency key; the summary shows the
/// same list. Bad lists are usage errors.
#[test]
fn churn_and_udp_report_the_percentiles_asked_for() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "churn",
        "--addr",
        &addr,
        "--rate",
        "100",
        "-d",
        "0.2",
        "--percentiles",
        "90,99.99",
    ]);
    run.assert_success();
    let times = ["connect", "echo", "life", "lag"];
    let expected: Vec<String> = times
        .iter()
        .flat_map(|t| ["p90_us", "p99_99_us", "max_us"].map(|k| format!("{t}_{k}")))
        .collect();
    assert_eq!(latency_keys(&run), expected);
    let r = result_line(&run);
    for t in times {
        let (p90, p99_99) = (
            num(&r, &format!("{t}_p90_us")),
            num(&r, &format!("{t}_p99_99_us")),
        );
        assert!(0.0 < p90 && p90 <= p99_99, "{t}: {r:?}");
        assert!(p99_99 <= num(&r, &format!("{t}_max_us")), "{t}: {r:?}");
    }
    let summary = String::from_utf8_lossy(&run.stdout);
    assert_eq!(summary.matches(" p90 ").count(), 4, "{summary}");
    assert_eq!(summary.matches(" p99.99 ").count(), 4, "{summary}");
    assert!(!summary.contains(" p50 "), "{summary}");

    let udp = udp_server(1_000_000, 1_000_000);
    let udp_addr = udp.udp_addrs()[0].to_string();
    let run = bench(&[
        "udp",
        "--addr",
        &udp_addr,
        "--rate",
        "200",
        "-d",
        "0.2",
        "--percentiles",
        "90",
    ]);
    run.assert_success();
    assert_eq!(latency_keys(&run), ["p90_us", "max_us"]);
    let r = result_line(&run);
    assert!(
        0.0 < num(&r, "p90_us") && num(&r, "p90_us") <= num(&r, "max_us"),
        "{r:?}"
    );
    let summary = String::from_utf8_lossy(&run.stdout);
    assert!(summary.contains("latency      p90 "), "{summary}");

    for mode in ["churn", "udp"] {
        for bad in ["0", "100.5", "ninety", "50,,99", ""] {
            let run = bench(&[mode, "--percentiles", bad]);
            assert_eq!(run.status.code(), Some(2), "{mode} {bad:?}: {}", run.stderr);
            run.assert_one_error_line();
            assert!(
                run.stderr.contains("percentile"),
                "{mode} {bad:?}: {}",
                run.stderr
            );
        }
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

/// `--start-at` holds the load, connections open, until the wall-clock
/// time given, so that several processes measure one window; a time
/// already past starts at once, and the result line says how late.
#[test]
fn pingpong_starts_at_the_time_given() {
    let server = server();
    let addr = server.addr().to_string();
    let epoch = |t: std::time::SystemTime| {
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap();
        format!("{:.3}", secs.as_secs_f64())
    };
    let at = std::time::SystemTime::now() + Duration::from_millis(1500);
    let args = |start: &str| {
        bench(&[
            "pingpong",
            "--addr",
            &addr,
            "-c",
            "2",
            "-d",
            "0.2",
            "--warmup",
            "0",
            "--start-at",
            start,
        ])
    };
    let run = args(&epoch(at));
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["start_late_secs"], "0.000", "{r:?}");
    // The load's window began at `at`, so the run cannot end before it ends.
    assert!(
        std::time::SystemTime::now() >= at + Duration::from_millis(200),
        "the run ended before the window that starts at --start-at"
    );
    let past = std::time::SystemTime::now() - Duration::from_secs(10);
    let run = args(&epoch(past));
    run.assert_success();
    assert!(num(&result_line(&run), "start_late_secs") >= 10.0);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    for bad in ["-1", "soon", "inf"] {
        assert_eq!(args(bad).status.code(), Some(2), "{bad}");
    }
}

/// A rate far beyond what the loop can send still ends on time, reported
/// as not kept up: each release of due messages goes through the poll, so
/// echoes are read and the window's end is seen. (The schedule used to
/// run ahead of the loop: it never polled again, and the run never ended.)
#[test]
fn a_rate_beyond_the_loop_ends_on_time_and_did_not_keep_up() {
    let server = server();
    let addr = server.addr().to_string();
    let run = bench(&[
        "pingpong",
        "--addr",
        &addr,
        "-c",
        "100",
        "--rate",
        "1e7",
        "-d",
        "1",
        "--warmup",
        "0",
        "--timeout",
        "2",
    ]);
    run.assert_success();
    let r = result_line(&run);
    assert_eq!(r["kept_up"], "false", "{r:?}");
    assert!(num(&r, "echoes") > 0.0, "{r:?}");
    assert!(run.elapsed < Duration::from_secs(15), "{:?}", run.elapsed);
}
