//! Helpers the server's integration tests share: everything in the
//! workspace's test kit (`test-kit/`: an in-process server, random
//! payloads, echo exchanges, child processes with deadlines), and what only
//! these tests need: the `echo-server` binary run as a child process and
//! read from its log and stopped with its summary; sockets from a chosen
//! source address; clients that leave or reset; a server that owes bytes
//! and what it owes; and UDP clients. What /proc says about a process is
//! the kit's (`echo_test_kit::kernel`).
//!
//! A helper lives here once two test files use it; one that a single file
//! uses lives in that file.
//!
//! Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) use echo_test_kit::*;

/// A kibibyte and a mebibyte, for sizes of payloads and buffers.
pub(crate) const KIB: usize = 1024;
/// See [`KIB`].
pub(crate) const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// The `echo-server` binary, run as a child process and read from its log.
// ---------------------------------------------------------------------------

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};

/// What the server logs for each TCP listener once it is ready.
pub(crate) const LISTENING: &str = "listening on tcp://";

/// The server binary with a clean logging environment: the default level
/// (info) unless a test asks for another. `MIO_ECHO_SERVER_BIN` names
/// another build to run instead (to see a test fail on an older server).
pub(crate) fn server_command() -> Command {
    let bin = std::env::var_os("MIO_ECHO_SERVER_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_echo-server").into());
    let mut command = Command::new(bin);
    command.env_remove("RUST_LOG").env_remove("RUST_LOG_STYLE");
    command
}

/// One `listening on SCHEME://ADDR` line of the server's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listening {
    /// `udp://` rather than `tcp://`.
    pub udp: bool,
    /// The address served, port 0 resolved.
    pub addr: SocketAddr,
    /// The line ends in `(socket activation)` or `(socket activation, name
    /// NAME)`: the socket was inherited.
    pub activated: bool,
}

impl Listening {
    /// Parses the `listening on` part of a log line, if it has one.
    pub(crate) fn parse(line: &str) -> Option<Listening> {
        const PREFIX: &str = "listening on ";
        let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
        let (udp, rest) = match (rest.strip_prefix("tcp://"), rest.strip_prefix("udp://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return None,
        };
        let addr = rest.split_whitespace().next()?.parse().ok()?;
        let activated = rest.contains("(socket activation");
        Some(Listening {
            udp,
            addr,
            activated,
        })
    }
}

/// A running `echo-server`, killed when dropped. Its standard error is read
/// line by line on a thread, so the test can wait for a line with a deadline.
pub(crate) struct EchoServer {
    pub child: Guarded,
    lines: Receiver<String>,
    /// Every line read so far, for failure messages and final checks.
    pub seen: Vec<String>,
}

impl EchoServer {
    /// Starts the server with `args` and `RUST_LOG` set to `log`, if given.
    pub(crate) fn start(args: &[&str], log: Option<&str>) -> EchoServer {
        let mut command = server_command();
        command.args(args);
        if let Some(level) = log {
            command.env("RUST_LOG", level);
        }
        EchoServer::spawn(&mut command)
    }

    /// Starts `command` (an `echo-server`, perhaps behind a shell that
    /// `exec`s it) with standard error piped to the line reader.
    pub(crate) fn spawn(command: &mut Command) -> EchoServer {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Guarded::spawn(command);
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in io::BufRead::lines(io::BufReader::new(stderr)) {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        EchoServer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of standard error; `None` once the server closed it.
    /// Fails the test if none comes before `deadline`.
    pub(crate) fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "no stderr line within {DEADLINE:?}; so far: {:#?}",
                    self.seen
                )
            }
        }
    }

    /// Waits (within [`DEADLINE`]) for the next line that contains `text`
    /// and returns it; fails if standard error closes first.
    pub(crate) fn line_containing(&mut self, text: &str) -> String {
        self.line_containing_within(text, DEADLINE)
    }

    /// [`EchoServer::line_containing`], waiting at most `within`.
    pub(crate) fn line_containing_within(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.next_line(deadline) {
                Some(line) if line.contains(text) => return line,
                Some(_) => {}
                None => panic!(
                    "stderr closed before a line with {text:?}: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for `n` `listening on tcp://ADDR` lines and returns the
    /// addresses, in the order logged.
    pub(crate) fn listening(&mut self, n: usize) -> Vec<SocketAddr> {
        let deadline = Instant::now() + DEADLINE;
        let mut addrs = Vec::new();
        while addrs.len() < n {
            let Some(line) = self.next_line(deadline) else {
                panic!("stderr closed before {n} listeners: {:#?}", self.seen);
            };
            if let Some(at) = line.find(LISTENING) {
                let addr = line[at + LISTENING.len()..].split_whitespace().next();
                let addr = addr.and_then(|a| a.parse().ok());
                addrs.push(addr.unwrap_or_else(|| panic!("no address in {line:?}")));
            }
        }
        addrs
    }

    /// Waits for `n` `listening on` lines, TCP or UDP, and returns them in
    /// the order logged.
    pub(crate) fn sockets(&mut self, n: usize) -> Vec<Listening> {
        let deadline = Instant::now() + DEADLINE;
        let mut found = Vec::new();
        while found.len() < n {
            let Some(line) = self.next_line(deadline) else {
                panic!("stderr closed before {n} sockets: {:#?}", self.seen);
            };
            if line.contains("listening on ") {
                found.push(
                    Listening::parse(&line).unwrap_or_else(|| panic!("cannot parse {line:?}")),
                );
            }
        }
        found
    }

    /// Sends `signal` to the server (a process this test started).
    pub(crate) fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) takes plain integers; the pid is our own child,
        // which the guard has not reaped yet.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits for the server to exit, then for the rest of its standard
    /// error; returns its status and every line it wrote.
    pub(crate) fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = wait(&mut self.child, Instant::now());
        let deadline = Instant::now() + DEADLINE;
        while self.next_line(deadline).is_some() {}
        (status, std::mem::take(&mut self.seen))
    }
}

/// The `key=value` fields of a line, such as `connections=2`.
pub(crate) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// Whether this machine has an IPv6 loopback to test on.
pub(crate) fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------------------
// Log fields as numbers, and sockets from a chosen source address.
// ---------------------------------------------------------------------------

/// The number in a line's `key=N` field, such as `connections=2`.
pub(crate) fn count(line: &str, key: &str) -> u64 {
    field(line, key)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}=N in {line:?}"))
}

/// Connects to `addr` from `source` (any port), with [`IO_TIMEOUT`] on
/// every read and write. All of 127.0.0.0/8 is loopback on Linux, so one
/// test can be clients from several addresses.
pub(crate) fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    // A port still in TIME_WAIT from an earlier run may be bound again.
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|e| panic!("bind {source}:0: {e}"));
    socket
        .connect(&addr.into())
        .unwrap_or_else(|e| panic!("connect from {source} to {addr}: {e}"));
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Closes `stream` with a reset instead of a FIN: with SO_LINGER set to
/// zero, `close` discards whatever is queued and sends RST.
pub(crate) fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// Writes `message` and reads exactly as many bytes back: an error if the
/// echo differs, ends early, or does not come within the socket's timeout.
pub(crate) fn round_trip(mut stream: &TcpStream, message: &[u8]) -> io::Result<()> {
    stream.write_all(message)?;
    let mut echo = vec![0u8; message.len()];
    stream.read_exact(&mut echo)?;
    match difference(message, &echo) {
        None => Ok(()),
        Some(diff) => Err(io::Error::other(diff)),
    }
}

/// Whether the peer closed `stream` without a word: a read returns EOF, or
/// the connection is reset. Waits at most the socket's read timeout; a byte
/// of echo, or no answer in time, is `false`.
pub(crate) fn closed_by_peer(mut stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    loop {
        return match stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        };
    }
}

/// Starts the server binary as `command` describes and returns it with the
/// first TCP address it logged.
pub(crate) fn start_server(command: &mut Command) -> (EchoServer, SocketAddr) {
    let mut server = EchoServer::spawn(command);
    let addr = server.listening(1)[0];
    (server, addr)
}

/// Stops the server binary with SIGTERM and returns its exit status, every
/// line it logged, and its `stopped: ...` line.
pub(crate) fn stop_server(server: EchoServer) -> (ExitStatus, Vec<String>, String) {
    server.signal(libc::SIGTERM);
    let (status, lines) = server.finish();
    let last = summary(&lines).to_owned();
    (status, lines, last)
}

/// Asks the running server binary for its counters (SIGUSR1) and returns
/// the `stats:` line it logs.
pub(crate) fn live_stats(server: &mut EchoServer) -> String {
    server.signal(libc::SIGUSR1);
    server.line_containing("stats: ")
}

/// Makes `command`'s process start with `resource` (an `RLIMIT_*`) limited
/// to `value`, soft and hard alike, so that it cannot raise it.
pub(crate) fn limit_resource(command: &mut Command, resource: libc::c_int, value: u64) {
    use std::os::unix::process::CommandExt;
    let hook = move || -> io::Result<()> {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(resource as _, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and makes one system call;
    // it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(hook);
    }
}

// ---------------------------------------------------------------------------
// A binary server's summary, and one short echo.
// ---------------------------------------------------------------------------

/// The `stopped: ...` summary among a finished server's lines.
pub(crate) fn summary(lines: &[String]) -> &str {
    lines
        .iter()
        .rev()
        .find(|l| l.contains("stopped: "))
        .unwrap_or_else(|| panic!("no summary line: {lines:#?}"))
}

/// Stops a binary server with SIGTERM and checks it exits 0 with a
/// summary; returns every line it logged.
pub(crate) fn stop(server: EchoServer) -> Vec<String> {
    server.signal(libc::SIGTERM);
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{status}: {lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:#?}");
    summary(&lines);
    lines
}

/// One short echo over a fresh TCP connection.
pub(crate) fn tcp_echo(addr: SocketAddr, data: &[u8]) {
    let stream = connect(addr);
    let echo = exchange(&stream, data, &[data.len()]).unwrap();
    assert_eq!(echo, data, "echo via {addr}");
}

// ---------------------------------------------------------------------------
// Clients that leave, refusals, threads that must stop, a cyclic stream.
// ---------------------------------------------------------------------------

/// How long a client refused by a limit may wait for the server to close
/// it. Generous: "at once" is a few milliseconds; a server that serves the
/// client instead never closes it, and this bounds the wait for that.
pub(crate) const REFUSAL_WAIT: Duration = Duration::from_secs(10);

/// Half-closes `client` and waits for the server's FIN: once it comes, the
/// server has closed its side and freed the connection's slot.
pub(crate) fn leave(client: &TcpStream) {
    client.shutdown(Shutdown::Write).unwrap();
    assert!(closed_by_peer(client), "no EOF after a half-close");
}

/// Sets a flag when dropped, so that threads polling it stop even when the
/// test fails (panics) before it would have set it.
pub(crate) struct SetOnDrop<'a>(pub &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Fails (with the offset) unless `got`, read at stream offset `at`, is
/// what a stream of `pattern` repeated end to end holds there.
pub(crate) fn check_cyclic(pattern: &[u8], at: usize, got: &[u8]) -> Result<(), String> {
    let mut done = 0;
    while done < got.len() {
        let p = (at + done) % pattern.len();
        let n = (got.len() - done).min(pattern.len() - p);
        if got[done..done + n] != pattern[p..p + n] {
            let i = got[done..done + n]
                .iter()
                .zip(&pattern[p..p + n])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "the echo differs from what was sent at stream offset {}",
                at + done + i
            ));
        }
        done += n;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A server that owes bytes (the library, in this process).
// ---------------------------------------------------------------------------

/// A server that reads everything a client sends (its buffer is larger
/// than any payload here) and never gives up on a drain in a test's time.
pub(crate) fn roomy_server() -> mio_echo::Running {
    server_with(mio_echo::Config {
        max_buffer: 16 * MIB,
        shutdown_timeout: Duration::from_secs(60),
        ..mio_echo::Config::loopback()
    })
}

/// A lower bound on what the server itself (not the kernel) still owes the
/// client `me`, which has sent `sent` bytes, all read by the server, and
/// read none back: the kernel holds at most the client's receive queue and
/// the server's send queue. Valid once the traffic has settled.
/// (Linux: it reads the kernel's socket tables.)
#[cfg(target_os = "linux")]
pub(crate) fn owed_at_least(me: SocketAddr, server: SocketAddr, sent: usize) -> usize {
    let ours = tcp_socket(me, Some(server)).expect("our socket");
    let theirs = tcp_socket(server, Some(me)).map_or(0, |t| t.tx);
    sent.saturating_sub(ours.rx + theirs)
}

// ---------------------------------------------------------------------------
// UDP clients.
// ---------------------------------------------------------------------------

/// A UDP socket on a free loopback port of `server`'s family, connected to
/// it, with [`IO_TIMEOUT`] on every receive.
pub(crate) fn udp_client(server: SocketAddr) -> UdpSocket {
    let local = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.connect(server).unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

/// Sends `data` as one datagram and returns the one datagram that answers.
pub(crate) fn udp_round_trip(socket: &UdpSocket, data: &[u8]) -> Vec<u8> {
    socket.send(data).unwrap();
    let mut buf = vec![0u8; 70_000];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no reply to {} bytes: {e}", data.len()));
    buf.truncate(n);
    buf
}

/// Plays another echo server on `peer` (a UDP socket connected to ours,
/// with a read timeout): sends every reply straight back until none comes
/// within the timeout, or `most` replies. Returns how many replies came
/// and when the last one did.
pub(crate) fn bounce_until_quiet(peer: &std::net::UdpSocket, most: u64) -> (u64, Instant) {
    let mut replies = 0u64;
    let mut last = Instant::now();
    let mut buf = [0u8; 64];
    while replies < most {
        match peer.recv(&mut buf) {
            Ok(n) => {
                replies += 1;
                last = Instant::now();
                peer.send(&buf[..n]).unwrap();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("receive: {e}"),
        }
    }
    (replies, last)
}
