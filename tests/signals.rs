//! Every signal an operator may send has a meaning: the real `echo-server`
//! gets SIGHUP, SIGUSR2 and SIGALRM and keeps serving (the default action
//! of each would kill it, with no drain and no summary), then stops on
//! SIGTERM with its summary. Every wait has a deadline and the child is
//! killed if a test fails.

mod common;

use std::net::SocketAddr;

use common::{connect, count, round_trip, EchoServer};

/// A fresh connection echoes `message` exactly.
fn echoes(addr: SocketAddr, message: &str) {
    let stream = connect(addr);
    round_trip(&stream, message.as_bytes()).unwrap_or_else(|e| panic!("{message}: {e}"));
}

/// Sends `signal` to a server holding one open connection, waits for the
/// line that shows it was handled (`logged`), and checks that the old
/// connection and a new one still echo; then SIGTERM ends the server with
/// status 0 and a summary that counts both connections. Returns the line.
fn survives(signal: libc::c_int, name: &str, logged: &str) -> String {
    let mut server = EchoServer::start(&["-l", "127.0.0.1:0"], None);
    let addr = server.listening(1)[0];
    let held = connect(addr);
    round_trip(&held, b"before\n").expect("echo before the signal");

    server.signal(signal);
    // Handled before anything else is checked: a server that died of the
    // signal closes its log first, and this fails naming the line it lacks.
    let line = server.line_containing(logged);
    round_trip(&held, b"after\n").unwrap_or_else(|e| panic!("after {name}, the old one: {e}"));
    echoes(addr, &format!("after {name}, a new connection\n"));
    drop(held);

    server.signal(libc::SIGTERM);
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{status} after {name}: {lines:#?}");
    let last = lines.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains("stopped: "), "last line: {last:?}");
    assert_eq!(count(last, "connections"), 2, "{last}");
    line
}

/// SIGHUP (what operators send a daemon to reload): a `stats:` line with
/// the counters, as SIGUSR1 gives, and the server keeps serving.
#[test]
fn sighup_logs_stats_and_keeps_serving() {
    let line = survives(libc::SIGHUP, "SIGHUP", "stats: ");
    assert_eq!(count(&line, "connections"), 1, "{line}");
    assert_eq!(count(&line, "active"), 1, "{line}");
    assert_eq!(count(&line, "log_dropped"), 0, "{line}");
}

/// SIGUSR2 means nothing to the server: one line says so, and it keeps
/// serving.
#[test]
fn sigusr2_is_logged_and_ignored() {
    survives(libc::SIGUSR2, "SIGUSR2", "SIGUSR2: has no meaning");
}

/// SIGALRM means nothing to the server: one line says so, and it keeps
/// serving.
#[test]
fn sigalrm_is_logged_and_ignored() {
    survives(libc::SIGALRM, "SIGALRM", "SIGALRM: has no meaning");
}

/// `--help` names every signal the server handles and what it does.
#[test]
fn help_names_every_handled_signal() {
    let run = common::run(common::server_command().arg("--help"), Vec::new());
    run.assert_success();
    let help = String::from_utf8_lossy(&run.stdout);
    for signal in [
        "SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM",
    ] {
        assert!(
            help.contains(signal),
            "--help does not name {signal}:\n{help}"
        );
    }
}
