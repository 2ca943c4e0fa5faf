//! Helpers the integration tests of every member share: an in-process
//! server, seeded random payloads, a full-duplex echo exchange, byte-exact
//! comparison, and child processes that are waited on with a deadline and
//! killed if a test fails.
//!
//! On Linux, [`kernel`] adds what `/proc` says about a process and the
//! kernel's TCP tables; [`docs`] checks a binary's man page and shell
//! completions against its `--help`.
//!
//! A dev-dependency only, never published. The server's own tests add what
//! only they need (the `echo-server` binary read from its log) in
//! `tests/common/mod.rs`, which re-exports all of this.

use std::fmt::Display;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

pub mod docs;
#[cfg(target_os = "linux")]
pub mod kernel;
#[cfg(target_os = "linux")]
pub use kernel::{
    cpu_time, fds_below, kernel_socket, open_fds, process_state, rss, tcp_socket, tcp_sockets,
    threads, vm_peak, KernelSocket, ESTABLISHED, LISTEN,
};

/// The longest any one child process, or any one wait for a condition, may
/// take before the test fails. Generous: debug builds on a busy two-core
/// machine are slow, and a healthy run takes a small fraction of it.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The longest one blocking socket read or write may take in a test client.
/// A server that stops answering fails the test after this, never hangs it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A real echo server on a free loopback port, running on its own thread in
/// this process and stopped when dropped.
pub fn server() -> mio_echo::Running {
    server_with(mio_echo::Config::loopback())
}

/// Like [`server`], with a configuration of the test's own.
pub fn server_with(config: mio_echo::Config) -> mio_echo::Running {
    mio_echo::Server::bind(config)
        .expect("bind the in-process server")
        .spawn()
        .expect("start the server thread")
}

/// `len` pseudo-random bytes, the same for the same `seed`.
///
/// `SmallRng` rather than `StdRng`: test payloads run to tens of MiB and a
/// debug build fills them about fifteen times faster; nothing here needs
/// cryptographic quality, only reproducibility on this machine.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    SmallRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Chunk sizes from 1 B to `max` that add up to `len`, spread evenly over
/// orders of magnitude so that tiny writes are as common as large ones.
pub fn random_chunks(rng: &mut impl Rng, len: usize, max: usize) -> Vec<usize> {
    assert!(max >= 1);
    let top = usize::BITS - max.leading_zeros();
    let mut chunks = Vec::new();
    let mut left = len;
    while left > 0 {
        let scale = 1usize << rng.random_range(0..top);
        let size = rng.random_range(1..=scale.min(max)).min(left);
        chunks.push(size);
        left -= size;
    }
    chunks
}

/// Connects to `addr` with [`IO_TIMEOUT`] on every read and write.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// The whole client side of one echo session on `stream`: writes `data` in
/// pieces of the given sizes, then half-closes (`shutdown(Write)`), while
/// this thread reads the echo until the server's EOF. Reading and writing at
/// once is what keeps a large payload from deadlocking against the server's
/// back-pressure. Returns everything read, which a correct server makes equal
/// to `data`; a reset or a timeout is an error.
pub fn exchange(stream: &TcpStream, data: &[u8], chunks: &[usize]) -> io::Result<Vec<u8>> {
    exchange_reading(stream, data, chunks, 64 * 1024)
}

/// [`exchange`], reading the echo at most `read_size` bytes at a time: a
/// small size makes a slow reader, which the server must queue bytes for.
pub fn exchange_reading(
    stream: &TcpStream,
    data: &[u8],
    chunks: &[usize],
    read_size: usize,
) -> io::Result<Vec<u8>> {
    assert_eq!(
        chunks.iter().sum::<usize>(),
        data.len(),
        "chunks cover data"
    );
    let mut writer = stream.try_clone()?;
    thread::scope(|scope| {
        let sending = scope.spawn(move || -> io::Result<()> {
            let mut at = 0;
            for &size in chunks {
                writer.write_all(&data[at..at + size])?;
                at += size;
            }
            writer.shutdown(Shutdown::Write)
        });
        let mut echo = Vec::with_capacity(data.len());
        let read = read_to_eof(stream, &mut echo, read_size);
        let sent = sending.join().expect("the writer thread panicked");
        sent.map_err(|e| io::Error::new(e.kind(), format!("sending: {e}")))?;
        read.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("reading the echo after {} bytes: {e}", echo.len()),
            )
        })?;
        Ok(echo)
    })
}

/// Reads until EOF, `read_size` bytes at most per call, appending to `out`.
pub fn read_to_eof(mut stream: &TcpStream, out: &mut Vec<u8>, read_size: usize) -> io::Result<()> {
    let mut buf = vec![0u8; read_size];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Connects to `addr` with a receive buffer of about `rcvbuf` bytes, set
/// before the handshake so the window the server sees stays that small,
/// and [`IO_TIMEOUT`] on every read and write.
pub fn connect_small_window(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    socket
        .connect(&addr.into())
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Connects, runs [`exchange`] with chunks of up to 64 KiB drawn from `rng`,
/// and fails unless the echo is `data` exactly, followed by EOF.
pub fn echo_ok(addr: SocketAddr, data: &[u8], rng: &mut impl Rng, what: impl Display) {
    let stream = connect(addr);
    let chunks = random_chunks(rng, data.len(), 64 * 1024);
    let echo = exchange(&stream, data, &chunks).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_same_bytes(data, &echo, what);
}

/// `None` if `got` is `sent` byte for byte; otherwise what differs: the
/// lengths and the first offset where they part. Never prints the payloads.
pub fn difference(sent: &[u8], got: &[u8]) -> Option<String> {
    if sent == got {
        return None;
    }
    let first = sent
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(got.len()));
    Some(format!(
        "sent {} bytes, got {} back; they first differ at offset {first}",
        sent.len(),
        got.len()
    ))
}

/// Fails unless `got` equals `sent`, naming `what` (include the seed).
pub fn assert_same_bytes(sent: &[u8], got: &[u8], what: impl Display) {
    if let Some(diff) = difference(sent, got) {
        panic!("{what}: {diff}");
    }
}

/// Polls `done` every few milliseconds until it holds, failing the test
/// with `what` after [`DEADLINE`]. The sleep only paces the polling.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < DEADLINE,
            "still waiting after {DEADLINE:?}: {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A child process that is killed and reaped when dropped, so a failing test
/// never leaves one running. Derefs to the [`Child`].
pub struct Guarded(Child);

impl Guarded {
    /// Starts `command`; every child of these tests goes through here.
    pub fn spawn(command: &mut Command) -> Guarded {
        Guarded(command.spawn().expect("start the child process"))
    }
}

impl Deref for Guarded {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // Our own child: killing one that already exited is harmless, and
        // `wait` reaps it either way.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` until [`DEADLINE`] after `started`; past it, kills the
/// child (ours) and fails the test.
pub fn wait(child: &mut Child, started: Instant) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child process still running after {DEADLINE:?}");
        }
        // Polling interval only: the deadline, not this sleep, is the bound.
        thread::sleep(Duration::from_millis(10));
    }
}

/// Writes `input` to the child's stdin from a thread, then closes it, so a
/// large input cannot deadlock against the output we read meanwhile. A
/// child that exits early makes the write fail; that is not our failure.
pub fn feed(stdin: ChildStdin, input: Vec<u8>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut stdin = stdin;
        let _ = stdin.write_all(&input);
    })
}

/// Reads a pipe to its end on a thread.
pub fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// What a finished child process left behind.
pub struct Run {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to standard output.
    pub stdout: Vec<u8>,
    /// Everything it wrote to standard error, lossily as text.
    pub stderr: String,
    /// From the start to the exit.
    pub elapsed: Duration,
}

impl Run {
    /// The non-empty lines of standard error.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.is_empty()).collect()
    }

    /// Fails unless the run succeeded with nothing on standard error.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "failed with {}: {}",
            self.status,
            self.stderr
        );
        assert!(self.stderr.is_empty(), "unexpected stderr: {}", self.stderr);
    }

    /// Fails unless the run failed with exactly one `error:` line and no panic.
    pub fn assert_one_error_line(&self) {
        assert!(!self.status.success(), "expected a failure");
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "expected one line, got: {:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    }
}

/// Runs `command` to its end (within [`DEADLINE`]) with `input` on stdin.
pub fn run(command: &mut Command, input: Vec<u8>) -> Run {
    let started = Instant::now();
    let mut child = Guarded::spawn(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let feeder = feed(child.stdin.take().unwrap(), input);
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait(&mut child, started);
    let elapsed = started.elapsed();
    feeder.join().unwrap();
    Run {
        status,
        stdout: stdout.join().unwrap(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
        elapsed,
    }
}

/// The binary `name` of another member of the workspace, from the target
/// directory this test was built into. `cargo test` at the workspace root
/// builds every member's binaries before it runs any test, so it is there
/// and as new as the sources; after `cargo test -p` of one member it may
/// be missing (the failure says what to build) or older than its sources.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .expect("the test runs from target/<profile>/deps");
    assert!(
        bin.is_file(),
        "no {} (run `cargo test` at the workspace root, or `cargo build --bin {name}` first)",
        bin.display()
    );
    bin
}
