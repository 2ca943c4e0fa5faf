//! The server's log output: it never stalls the loop (the real
//! `echo-server`, logging at `debug` into a pipe the test leaves unread,
//! keeps serving, and counts the lines it had to drop), and when standard
//! error is the systemd journal (`JOURNAL_STREAM` names it) each line
//! carries its syslog priority and no timestamp. Every wait has a deadline
//! and the child is killed if a test fails.
// The journal tests need Linux (GNU stat, /proc); elsewhere they are
// compiled out, and what only they use goes unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    closed_by_peer, connect, count, round_trip, server_command, stop, wait, EchoServer, Guarded,
    DEADLINE, LISTENING,
};

/// Connections opened, echoed and closed one after another. At `debug`
/// each one logs two lines of about 100 bytes; a pipe holds 64 KiB, so a
/// server that waits on its log freezes after about 300 of them.
const CONNECTIONS: usize = 3000;

/// How long one connection may take to connect and echo. A healthy debug
/// build needs a millisecond or so; a frozen loop never answers.
const PER_CONNECTION: Duration = Duration::from_secs(5);

/// Connects to `addr`, echoes one message and closes, each step bounded
/// by [`PER_CONNECTION`].
fn one_echo(addr: SocketAddr, i: usize) -> std::io::Result<()> {
    let stream = TcpStream::connect_timeout(&addr, PER_CONNECTION)?;
    stream.set_read_timeout(Some(PER_CONNECTION))?;
    stream.set_write_timeout(Some(PER_CONNECTION))?;
    round_trip(&stream, format!("connection {i}\n").as_bytes())
}

/// Standard error a pipe nobody reads, `RUST_LOG=debug`: every one of
/// 3000 connections in a row is echoed, and once the log is read again
/// the stats and the summary count the lines that were dropped
/// (`log_dropped`).
#[test]
fn an_unread_log_pipe_never_stalls_the_loop() {
    let started = Instant::now();
    let mut child = Guarded::spawn(
        server_command()
            .args(["-l", "127.0.0.1:0"])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    // Read the log only as far as the port, then hold the pipe unread.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read the server's log");
        assert!(n > 0, "the server closed its log before listening");
        if let Some(at) = line.find(LISTENING) {
            let addr = line[at + LISTENING.len()..].split_whitespace().next();
            break addr.and_then(|a| a.parse().ok()).expect("an address");
        }
    };

    for i in 0..CONNECTIONS {
        assert!(
            started.elapsed() < DEADLINE,
            "only {i} of {CONNECTIONS} connections echoed within {DEADLINE:?}"
        );
        if let Err(e) = one_echo(addr, i) {
            panic!(
                "connection {i} of {CONNECTIONS} got no echo ({e}): the loop is stuck \
                 while nobody reads its log"
            );
        }
    }

    // Read the log again, line by line, on a thread.
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Until the reader has caught up, the pipe is still full and a line may
    // be dropped: ask for stats (SIGUSR1) until a `stats:` line gets through.
    let mut seen = Vec::new();
    let stats = loop {
        assert!(
            started.elapsed() < DEADLINE,
            "no stats line within {DEADLINE:?}: {:?}",
            tail(&seen)
        );
        signal(&child, libc::SIGUSR1);
        let asked = Instant::now();
        let found = loop {
            let left = Duration::from_millis(200).saturating_sub(asked.elapsed());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains("stats: ") => break Some(line),
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => break None,
                Err(RecvTimeoutError::Disconnected) => panic!("log closed: {:?}", tail(&seen)),
            }
        };
        if let Some(line) = found {
            break line;
        }
    };
    assert!(count(&stats, "log_dropped") > 0, "{stats}");

    signal(&child, libc::SIGTERM);
    let status = wait(&mut child, started);
    assert_eq!(status.code(), Some(0), "{status}");
    let summary = loop {
        match lines.recv_timeout(DEADLINE) {
            Ok(line) if line.contains("stopped: ") => break line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no summary in the log; its last lines: {:?}", tail(&seen)),
        }
    };
    assert_eq!(
        count(&summary, "connections"),
        CONNECTIONS as u64,
        "{summary}"
    );
    assert!(count(&summary, "log_dropped") > 0, "{summary}");
}

/// Sends `signal` to `child`, a process this test started.
fn signal(child: &Guarded, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) takes plain integers; the pid is our own child, which
    // the guard has not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// The last few of `lines`, for a failure message.
fn tail(lines: &[String]) -> &[String] {
    &lines[lines.len().saturating_sub(5)..]
}

// ---------------------------------------------------------------------------
// The systemd journal: priorities from JOURNAL_STREAM.
// ---------------------------------------------------------------------------

/// Each level's `sd-daemon(3)` prefix, as `journalctl -p` reads it.
const PRIORITIES: [(&str, &str); 5] = [
    ("ERROR", "<3>"),
    ("WARN", "<4>"),
    ("INFO", "<6>"),
    ("DEBUG", "<7>"),
    ("TRACE", "<7>"),
];

/// `echo-server` with `args`, started by a shell that first sets
/// `JOURNAL_STREAM` to the `DEVICE:INODE` of `file`, as systemd does.
/// `/proc/self/fd/2` there is the pipe the test reads the log from (the
/// shell's standard error, which the server inherits): the journal's case;
/// any other file is the case of a variable inherited from a parent.
#[cfg(target_os = "linux")]
fn with_journal_stream_of(file: &str, args: &[&str]) -> Command {
    let server = server_command();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"JOURNAL_STREAM=$(stat -L -c %d:%i "$1") && export JOURNAL_STREAM && shift && exec "$@""#)
        .arg("sh")
        .arg(file)
        .arg(server.get_program())
        .args(args)
        .env("RUST_LOG", "debug")
        .env_remove("RUST_LOG_STYLE");
    command
}

/// `echo-server` with `args` at `RUST_LOG=debug`, `JOURNAL_STREAM` set to
/// `value`, or unset.
fn with_journal_stream(value: Option<&str>, args: &[&str]) -> Command {
    let mut command = server_command();
    command.args(args).env("RUST_LOG", "debug");
    match value {
        Some(value) => command.env("JOURNAL_STREAM", value),
        None => command.env_remove("JOURNAL_STREAM"),
    };
    command
}

/// Runs the server `command` starts (with `--max-connections 1`) through
/// a log at every level it has: start-up (info, debug), one echo, a
/// refused second connection (warn), the stop and its summary (info).
/// Returns every line it logged.
fn log_of_a_refusal(command: &mut Command) -> Vec<String> {
    let mut server = EchoServer::spawn(command);
    let addr = server.listening(1)[0];
    let served = connect(addr);
    round_trip(&served, b"the one allowed").expect("an echo");
    let refused = connect(addr);
    assert!(closed_by_peer(&refused), "the second connection was served");
    server.line_containing(": refused: ");
    drop((served, refused));
    stop(server)
}

/// The level a line's `[LEVEL target]` names, after `prefix`.
fn level_after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(prefix)?.strip_prefix('[')?;
    PRIORITIES
        .iter()
        .map(|&(level, _)| level)
        .find(|level| rest.starts_with(&format!("{level} ")))
}

/// Standard error is the journal (`JOURNAL_STREAM` holds its device and
/// inode): every line starts with the priority of its level (debug `<7>`,
/// info `<6>`, the refusal's warning `<4>`) and then the level, with no
/// timestamp before it.
#[cfg(target_os = "linux")] // GNU stat(1) and /proc/self/fd
#[test]
fn on_the_journal_every_line_starts_with_the_priority_of_its_level() {
    let lines = log_of_a_refusal(&mut with_journal_stream_of(
        "/proc/self/fd/2",
        &["-l", "127.0.0.1:0", "--max-connections", "1"],
    ));
    let mut seen = Vec::new();
    for line in &lines {
        let found = PRIORITIES
            .iter()
            .find(|&&(_, prefix)| level_after(line, prefix).is_some());
        let Some(&(_, prefix)) = found else {
            panic!("no priority and level at the start of {line:?}: {lines:#?}");
        };
        let level = level_after(line, prefix).unwrap();
        let want = PRIORITIES.iter().find(|&&(l, _)| l == level).unwrap().1;
        assert_eq!(prefix, want, "{level} line: {line:?}");
        seen.push(prefix);
    }
    for prefix in ["<7>", "<6>", "<4>"] {
        assert!(seen.contains(&prefix), "no {prefix} line: {lines:#?}");
    }
    let refusal = lines.iter().find(|l| l.contains(": refused: ")).unwrap();
    assert!(refusal.starts_with("<4>[WARN "), "{refusal}");
}

/// An error that stops the server before it serves (its address is taken)
/// goes to the journal at priority `<3>`.
#[cfg(target_os = "linux")] // GNU stat(1) and /proc/self/fd
#[test]
fn on_the_journal_an_error_that_ends_the_server_is_priority_3() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let server = EchoServer::spawn(&mut with_journal_stream_of(
        "/proc/self/fd/2",
        &["-l", &addr],
    ));
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(1), "{lines:#?}");
    let error = lines
        .iter()
        .find(|l| l.contains("error: "))
        .expect("an error line");
    assert!(error.starts_with("<3>error: "), "{error:?}: {lines:#?}");
}

/// Fails unless no line of `lines` carries a priority, and each starts
/// with env_logger's timestamp, as on a terminal.
fn assert_plain(lines: &[String], case: &str) {
    assert!(
        lines.iter().any(|l| l.contains(": refused: ")),
        "{case}: {lines:#?}"
    );
    for line in lines {
        assert!(!line.starts_with('<'), "{case}: a priority on {line:?}");
        let stamped = line
            .strip_prefix('[')
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        assert!(stamped, "{case}: no timestamp on {line:?}");
    }
}

/// `JOURNAL_STREAM` naming another file (what a child inherits from a
/// parent whose standard error was the journal) means no priorities: the
/// lines are as on a terminal, timestamps and all.
#[cfg(target_os = "linux")] // GNU stat(1) and /proc/self/fd
#[test]
fn journal_stream_naming_another_file_adds_no_priority() {
    let lines = log_of_a_refusal(&mut with_journal_stream_of(
        "/dev/null",
        &["-l", "127.0.0.1:0", "--max-connections", "1"],
    ));
    assert_plain(&lines, "JOURNAL_STREAM of /dev/null");
}

/// Without `JOURNAL_STREAM`, or with one that is not `DEVICE:INODE`, no
/// line has a priority.
#[test]
fn without_a_valid_journal_stream_no_line_has_a_priority() {
    let args = ["-l", "127.0.0.1:0", "--max-connections", "1"];
    for value in [None, Some("not-a-stream"), Some("")] {
        let lines = log_of_a_refusal(&mut with_journal_stream(value, &args));
        assert_plain(&lines, &format!("JOURNAL_STREAM={value:?}"));
    }
}
