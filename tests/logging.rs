//! Logging never stalls the loop: the real `echo-server`, logging at
//! `debug` into a pipe the test leaves unread, keeps serving, and counts
//! the lines it had to drop. Every wait has a deadline and the child is
//! killed if a test fails.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::{count, round_trip, server_command, wait, Guarded, DEADLINE, LISTENING};

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
