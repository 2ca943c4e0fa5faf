//! Log output that never blocks the poll loop.
//!
//! The loop logs from its own thread. If standard error is a pipe nobody
//! reads, a stalled journal or a terminal paused with Ctrl-S, a plain
//! `write` to it waits, and while it waits no client is served. [`Stderr`]
//! is the writer the binary hands to `env_logger` instead: it looks once at
//! what descriptor 2 is and writes every line in a way that cannot wait.
//!
//! | descriptor 2 is | a line is written with |
//! |---|---|
//! | a socket (the systemd journal's stream) | `send(MSG_DONTWAIT \| MSG_NOSIGNAL)` |
//! | a pipe, a FIFO, a terminal | `write` on a second open file description of it, opened from `/proc/self/fd/2` with `O_NONBLOCK` |
//! | the same, where that open fails | `poll(POLLOUT, 0)` first, then `write` of at most `PIPE_BUF` bytes |
//! | a regular file | a plain `write`: a disk does not wait for a reader |
//!
//! `O_NONBLOCK` is a flag of the open file description, which descriptor
//! 2 shares with the shell, its terminal and every process writing to the
//! same pipe. It is never set on descriptor 2 itself: the second
//! description has its own flags.
//!
//! When the output cannot take a line at once, the line (or the part of it
//! that did not fit) is dropped and counted; [`dropped`] reads the count,
//! and the stats and the summary show it as `log_dropped`. A line of up to
//! `PIPE_BUF` (4096) bytes goes into a pipe whole or not at all. After a
//! line was cut short, the next one starts with a newline, so that the
//! fragment does not run into it.
//!
//! Read next: `src/stats.rs`, where `log_dropped` is reported.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Lines (whole or in part) dropped because the log output was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many log lines this process has dropped, whole or in part, because
/// the log output could not take them without waiting.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The largest write a pipe takes whole or not at all (POSIX's `PIPE_BUF`;
/// 4096 on Linux).
const PIPE_BUF: usize = 4096;

/// A write interrupted by a signal is tried again, this many times at most.
const RETRIES: u32 = 3;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT;

/// How lines reach the output; chosen once, from what the descriptor is.
#[derive(Debug)]
enum Sink {
    /// A socket: `send` with `MSG_DONTWAIT` never waits, whatever the
    /// socket's own flags.
    Socket,
    /// A pipe or terminal, reopened non-blocking: our own description.
    Reopened(OwnedFd),
    /// A pipe or terminal we could not reopen: ask `poll` before writing.
    /// The one way left that can still wait, briefly: another writer may
    /// fill a shared pipe between the `poll` and the `write`, and a
    /// terminal reports room for any write before it has room for a whole
    /// line. Reached only when `/proc/self/fd/2` cannot be opened.
    Polled,
    /// A regular file (or a block device): written as it is.
    Plain,
    /// Nothing usable (descriptor 2 is closed): every line is dropped.
    Closed,
}

/// A [`Write`] for standard error that never blocks; see the module doc.
///
/// Each call to [`Write::write`] is one unit, normally one log record of
/// one line: it is written whole, in part, or not at all, and the call
/// always reports the whole buffer taken, so that `write_all` calls it
/// once and a logger neither retries nor fails. `env_logger` formats each
/// record into a buffer of its own and hands it over with one `write_all`.
#[derive(Debug)]
pub struct Stderr {
    /// The descriptor the output goes to (2, or our reopened copy of it).
    fd: RawFd,
    sink: Sink,
    /// The last line was cut short: the next one starts with a newline.
    torn: bool,
    /// Room for a newline and a line after a torn one (rarely used).
    scratch: Vec<u8>,
}

impl Stderr {
    /// Looks at what standard error is and prepares to write to it.
    pub fn open() -> Stderr {
        Stderr::on(libc::STDERR_FILENO)
    }

    /// A writer for descriptor `fd`, which must stay open as long as the
    /// writer lives (standard error does).
    fn on(fd: RawFd) -> Stderr {
        let sink = match file_type(fd) {
            None => Sink::Closed,
            Some(libc::S_IFSOCK) => Sink::Socket,
            Some(libc::S_IFREG | libc::S_IFBLK) => Sink::Plain,
            // A pipe, a FIFO, a terminal, /dev/null: any of them may make a
            // writer wait. (Anything else too: the careful way is the default.)
            Some(_) => reopen_nonblocking(fd).map_or(Sink::Polled, Sink::Reopened),
        };
        let fd = match &sink {
            Sink::Reopened(own) => own.as_raw_fd(),
            _ => fd,
        };
        Stderr {
            fd,
            sink,
            torn: false,
            scratch: Vec::new(),
        }
    }

    /// What the output turned out to be, and so how it is written: for a
    /// line at start-up.
    pub fn describe(&self) -> &'static str {
        match self.sink {
            Sink::Socket => "a socket, sent with MSG_DONTWAIT",
            Sink::Reopened(_) => "a pipe or terminal, reopened non-blocking",
            Sink::Polled => "a pipe or terminal, polled before each write",
            Sink::Plain => "a file, written plainly",
            Sink::Closed => "closed: log lines are dropped",
        }
    }

    /// Writes `line` as far as the output takes it without waiting, and
    /// counts it dropped if it did not all go.
    fn put(&mut self, line: &[u8]) {
        let whole = if self.torn {
            // Cold: only after the output was full. The newline goes in the
            // same write as the line, so a pipe takes both or neither.
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.push(b'\n');
            scratch.extend_from_slice(line);
            let taken = self.write_some(&scratch);
            // The newline went out with at least the line's first byte, or
            // nothing went and the fragment before still needs one.
            let whole = taken == scratch.len();
            self.torn = taken == 0 || !whole;
            self.scratch = scratch;
            whole
        } else {
            let taken = self.write_some(line);
            self.torn = taken > 0 && taken < line.len();
            taken == line.len()
        };
        if !whole {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes as much of `bytes` as goes without waiting; returns how much.
    fn write_some(&self, bytes: &[u8]) -> usize {
        let mut rest = bytes;
        let mut interrupted = 0;
        while !rest.is_empty() {
            match self.try_write(rest) {
                // Nothing taken and no error: do not spin on it.
                Ok(0) => break,
                Ok(n) => rest = &rest[n..],
                // A signal came before anything was written: try again, a
                // bounded number of times.
                Err(e) if e.kind() == io::ErrorKind::Interrupted && interrupted < RETRIES => {
                    interrupted += 1;
                }
                // `WouldBlock`: the output is full, and waiting for it is
                // what this writer exists not to do. Any other error (a
                // closed pipe, a full disk) will not go away by retrying.
                Err(_) => break,
            }
        }
        bytes.len() - rest.len()
    }

    /// One system call's worth of writing.
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        let ptr = bytes.as_ptr().cast();
        // SAFETY (each call below): the pointer and length describe `bytes`,
        // which lives across the call; `self.fd` is open (descriptor 2, or
        // the descriptor we own in `Sink::Reopened`).
        let n = match self.sink {
            Sink::Socket => unsafe { libc::send(self.fd, ptr, bytes.len(), SEND_FLAGS) },
            Sink::Reopened(_) | Sink::Plain => unsafe { libc::write(self.fd, ptr, bytes.len()) },
            Sink::Polled => {
                if !writable_now(self.fd)? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                // A pipe that polls writable has room for `PIPE_BUF` bytes:
                // a write of no more cannot wait.
                let len = bytes.len().min(PIPE_BUF);
                unsafe { libc::write(self.fd, ptr, len) }
            }
            Sink::Closed => return Err(io::ErrorKind::NotConnected.into()),
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Write for Stderr {
    /// Writes `buf` as one unit, or as much of it as fits, or nothing; see
    /// [`Stderr`]. Always `Ok(buf.len())`: a line that did not fit is
    /// counted in [`dropped`], not reported to the logger.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.put(buf);
        }
        Ok(buf.len())
    }

    /// Nothing is buffered here.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The `S_IFMT` bits of what `fd` is, or `None` if it is not open.
fn file_type(fd: RawFd) -> Option<libc::mode_t> {
    // SAFETY: fstat writes one `stat` through a valid pointer; a zeroed
    // `stat` is a valid value of that plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some(st.st_mode & libc::S_IFMT)
}

/// A second, non-blocking open file description of what `fd` refers to.
///
/// Opening `/proc/self/fd/N` opens the pipe or terminal afresh, unlike
/// `dup`, which would share `fd`'s description and so its flags. Fails where
/// there is no `/proc`, and for a pipe whose reading end is closed.
fn reopen_nonblocking(fd: RawFd) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{fd}\0");
    // O_NOCTTY: reopening a terminal must not make it our controlling one.
    let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated and lives across the call.
    let own = unsafe { libc::open(path.as_ptr().cast(), flags) };
    if own < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `open` just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(own) })
}

/// Whether `fd` can take a write now (`poll` with a zero timeout).
fn writable_now(fd: RawFd) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll reads and writes one pollfd through a valid pointer.
    match unsafe { libc::poll(&mut pfd, 1, 0) } {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Ok(false),
        // POLLERR or POLLHUP without POLLOUT: the write would fail; let it
        // say why only if POLLOUT is there.
        _ => Ok(pfd.revents & libc::POLLOUT != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A pipe: (reading end, writing end), both blocking.
    fn pipe() -> (std::fs::File, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors through a valid pointer.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both are new and ours alone.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                OwnedFd::from_raw_fd(fds[1]),
            )
        }
    }

    fn is_nonblocking(fd: RawFd) -> bool {
        // SAFETY: F_GETFL reads a descriptor's flags; no pointers.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert!(flags >= 0);
        flags & libc::O_NONBLOCK != 0
    }

    /// A full pipe nobody reads: writing goes on without waiting, the lines
    /// that do not fit are counted, and the pipe's own descriptor stays
    /// blocking (the flag is on our second description only).
    #[test]
    fn a_full_pipe_drops_and_counts_lines_and_never_blocks() {
        let (mut reader, writer_end) = pipe();
        let mut log = Stderr::on(writer_end.as_raw_fd());
        assert!(matches!(log.sink, Sink::Reopened(_)), "{:?}", log.sink);
        let mut line = vec![b'x'; 99];
        line.push(b'\n');
        let before = dropped();
        // 200 KB into a 64 KiB pipe: most lines cannot fit.
        for _ in 0..2000 {
            log.write_all(&line).unwrap();
        }
        assert!(dropped() - before >= 1000, "dropped {}", dropped() - before);
        assert!(!is_nonblocking(writer_end.as_raw_fd()));
        drop(log);
        drop(writer_end);
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        // Short lines go into a pipe whole or not at all.
        assert_eq!(got.len() % line.len(), 0);
        assert!(got.chunks(line.len()).all(|l| l == line.as_slice()));
    }

    /// A line longer than the room left is cut, and the next line that
    /// goes out starts on a line of its own.
    #[test]
    fn after_a_torn_line_the_next_starts_on_a_new_line() {
        let (mut reader, writer_end) = pipe();
        let mut log = Stderr::on(writer_end.as_raw_fd());
        let long = vec![b'y'; 200 * 1024];
        log.write_all(&long).unwrap();
        assert!(log.torn);
        // Make room, then write a short line.
        let mut got = vec![0u8; 128 * 1024];
        let n = reader.read(&mut got).unwrap();
        got.truncate(n);
        log.write_all(b"next\n").unwrap();
        assert!(!log.torn);
        drop(log);
        drop(writer_end);
        reader.read_to_end(&mut got).unwrap();
        assert!(got.ends_with(b"y\nnext\n"), "{:?}", &got[got.len() - 8..]);
        assert!(got[..got.len() - 6].iter().all(|&b| b == b'y'));
    }

    /// A regular file is written plainly, every line.
    #[test]
    fn a_regular_file_takes_every_line() {
        let path = std::env::temp_dir().join(format!("mio-echo-log-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let mut log = Stderr::on(file.as_raw_fd());
        assert!(matches!(log.sink, Sink::Plain), "{:?}", log.sink);
        for i in 0..100 {
            writeln!(log, "line {i}").unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), 100);
    }

    /// A closed descriptor: lines are dropped and counted, nothing fails.
    #[test]
    fn a_closed_descriptor_drops_lines_without_failing() {
        let mut log = Stderr::on(-1);
        assert!(matches!(log.sink, Sink::Closed), "{:?}", log.sink);
        let before = dropped();
        log.write_all(b"lost\n").unwrap();
        assert!(dropped() > before);
    }
}
