//! `echo-server` end to end: the built binary, started on a free loopback
//! port (`-l 127.0.0.1:0`; the port is read back from its log), talked to
//! over TCP, stopped with real signals. Every child is killed if a test
//! fails, and every wait has a deadline.

mod common;

use std::net::TcpListener;

use common::{
    connect, echo_ok, exchange, field, random_bytes, server_command, EchoServer, LISTENING,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Runs the server to its end with `args`: for flags that make it exit.
fn run_server(args: &[&str]) -> common::Run {
    common::run(server_command().args(args), Vec::new())
}

/// Two clients echo a known number of bytes; then `signal` ends the server:
/// status 0, and the last line reports exactly those totals.
fn signal_stops_with_the_real_totals(signal: libc::c_int) {
    const SEED: u64 = 0x516;
    let mut server = EchoServer::start(&["-l", "127.0.0.1:0"], None);
    let addr = server.listening(1)[0];
    let mut rng = StdRng::seed_from_u64(SEED);
    let sizes = [12_345, 100_000];
    for (i, size) in sizes.into_iter().enumerate() {
        echo_ok(
            addr,
            &random_bytes(SEED + i as u64, size),
            &mut rng,
            format_args!("client {i}, seed {SEED:#x}"),
        );
    }
    server.signal(signal);
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{status}: {lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:#?}");
    let last = lines.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains("stopped: "), "last line: {last:?}");
    let bytes = sizes.iter().sum::<usize>().to_string();
    assert_eq!(field(last, "connections"), Some("2"), "{last}");
    assert_eq!(field(last, "closed"), Some("2"), "{last}");
    assert_eq!(field(last, "bytes"), Some(bytes.as_str()), "{last}");
    assert_eq!(field(last, "bytes_in"), Some(bytes.as_str()), "{last}");
}

/// SIGTERM: exit status 0 and a last line with the real totals.
#[test]
fn sigterm_exits_0_and_reports_the_real_totals() {
    signal_stops_with_the_real_totals(libc::SIGTERM);
}

/// SIGINT (Ctrl-C): exit status 0 and a last line with the real totals.
#[test]
fn sigint_exits_0_and_reports_the_real_totals() {
    signal_stops_with_the_real_totals(libc::SIGINT);
}

/// A second server on a port in use: one line that names the address and
/// says what to do, exit status 1; the first server keeps serving.
#[test]
fn a_taken_port_is_one_line_and_status_1() {
    let mut first = EchoServer::start(&["-l", "127.0.0.1:0"], None);
    let addr = first.listening(1)[0];
    let run = run_server(&["-l", &addr.to_string()]);
    run.assert_one_error_line();
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot listen on {addr}: address already in use"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--listen"), "{}", run.stderr);
    let mut rng = StdRng::seed_from_u64(1);
    echo_ok(addr, b"still here", &mut rng, "the first server");
}

/// An unknown flag: one `error:` line naming it, exit status 2.
#[test]
fn unknown_flag_is_a_usage_error() {
    let run = run_server(&["--nope"]);
    run.assert_one_error_line();
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--nope"), "{}", run.stderr);
}

/// Addresses that are not IP:PORT: one `error:` line each, exit status 2.
#[test]
fn malformed_addresses_are_usage_errors() {
    for bad in [
        "nonsense",
        "127.0.0.1",
        "300.1.1.1:80",
        "[::1]",
        "127.0.0.1:70000",
    ] {
        let run = run_server(&["-l", bad]);
        run.assert_one_error_line();
        assert_eq!(run.status.code(), Some(2), "-l {bad}: {}", run.stderr);
        assert!(run.stderr.contains(bad), "-l {bad}: {}", run.stderr);
    }
}

/// Shutdown timeouts that are not a number of seconds, 0 or more: one
/// `error:` line each, exit status 2.
#[test]
fn bad_shutdown_timeouts_are_usage_errors() {
    for bad in ["-1", "soon", "NaN"] {
        let run = run_server(&["--shutdown-timeout", bad]);
        run.assert_one_error_line();
        assert_eq!(run.status.code(), Some(2), "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--shutdown-timeout"), "{}", run.stderr);
    }
}

/// `-l` twice, IPv4 and IPv6: both listeners are logged (`tcp://[::1]:PORT`
/// for IPv6) and both echo. Without an IPv6 loopback only IPv4 is checked.
#[test]
fn two_listeners_are_both_logged_and_both_echo() {
    let has_ipv6 = TcpListener::bind("[::1]:0").is_ok();
    let mut args = vec!["-l", "127.0.0.1:0"];
    if has_ipv6 {
        args.extend(["-l", "[::1]:0"]);
    } else {
        eprintln!("note: no IPv6 loopback on this machine; checking 127.0.0.1 only");
    }
    let mut server = EchoServer::start(&args, None);
    let addrs = server.listening(args.len() / 2);
    let logged = server.seen.join("\n");
    assert!(
        addrs[0].ip().is_loopback() && addrs[0].is_ipv4(),
        "{logged}"
    );
    assert!(logged.contains(&format!("{LISTENING}127.0.0.1:{}", addrs[0].port())));
    if has_ipv6 {
        assert!(
            addrs[1].ip().is_loopback() && addrs[1].is_ipv6(),
            "{logged}"
        );
        assert!(logged.contains(&format!("{LISTENING}[::1]:{}", addrs[1].port())));
    }
    let mut rng = StdRng::seed_from_u64(2);
    for (i, &addr) in addrs.iter().enumerate() {
        let data = random_bytes(i as u64, 50_000);
        echo_ok(addr, &data, &mut rng, format_args!("via {addr}"));
    }
    server.signal(libc::SIGTERM);
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    let last = lines.last().map(String::as_str).unwrap_or_default();
    assert_eq!(
        field(last, "connections"),
        Some(addrs.len().to_string().as_str()),
        "{last}"
    );
}

/// With `RUST_LOG=debug` each connection gets exactly two lines naming its
/// peer: one when it opens, one when it closes.
#[test]
fn debug_log_names_the_peer_on_open_and_on_close() {
    let mut server = EchoServer::start(&["-l", "127.0.0.1:0"], Some("debug"));
    let addr = server.listening(1)[0];
    let stream = connect(addr);
    let peer = stream.local_addr().unwrap().to_string();
    let echo = exchange(&stream, b"logged", &[6]).unwrap();
    assert_eq!(echo, b"logged");
    drop(stream);
    // Every line is in once the server has exited.
    server.signal(libc::SIGTERM);
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    let about_peer: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.split_whitespace()
                .any(|w| w.trim_end_matches([':', ',', ')']) == peer)
        })
        .collect();
    assert_eq!(about_peer.len(), 2, "lines naming {peer}: {about_peer:#?}");
    assert!(about_peer[0].contains("connected"), "{about_peer:#?}");
    assert!(about_peer[1].contains("closed"), "{about_peer:#?}");
}

/// `--help` lists every flag.
#[test]
fn help_documents_every_flag() {
    let run = run_server(&["--help"]);
    run.assert_success();
    let help = String::from_utf8(run.stdout).unwrap();
    for flag in [
        "-l, --listen <ADDR>",
        "-u, --udp <ADDR>",
        "--dual-stack",
        "--udp-rate-per-source <N>",
        "--udp-rate <N>",
        "--threads <N>",
        "--reuse-port",
        "--stats-interval <SECS>",
        "--shutdown-timeout <SECS>",
        "--max-buffer <BYTES>",
        "--max-memory <BYTES>",
        "--socket-buffer <BYTES>",
        "--keepalive <SECS>",
        "--max-connections <N>",
        "--max-connections-per-ip <N>",
        "--ipv6-prefix <BITS>",
        "--idle-timeout <SECS>",
        "-h, --help",
        "-V, --version",
    ] {
        assert!(help.contains(flag), "--help lacks {flag:?}:\n{help}");
    }
}

/// `--version` prints the crate's version.
#[test]
fn version_prints_the_version() {
    let run = run_server(&["--version"]);
    run.assert_success();
    let out = String::from_utf8(run.stdout).unwrap();
    assert_eq!(
        out.trim(),
        format!("echo-server {}", env!("CARGO_PKG_VERSION"))
    );
}
