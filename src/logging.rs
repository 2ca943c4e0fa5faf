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
//! # The systemd journal
//!
//! Under systemd, standard error is often the journal's stream, and the
//! service manager says so in `JOURNAL_STREAM`: the device and inode
//! numbers of that stream, as `DEVICE:INODE` in decimal. When they are the
//! ones of descriptor 2, [`Stderr::is_journal`] is true, and the binary
//! writes each record with [`write_for_journal`]: a syslog priority in
//! front (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug and trace, as
//! `sd-daemon(3)` describes), so that `journalctl -p warning` shows warnings
//! and errors only, and no timestamp, which the journal adds to every line
//! itself. The journal takes each line for a record of its own, so every
//! line of a message carries the prefix. A variable naming some other file
//! is one a child inherited from a parent whose standard error was the
//! journal, while its own is not: it is ignored, as a malformed one is.
//!
//! Read next: `src/stats.rs`, where `log_dropped` is reported.

use std::ffi::OsStr;
use std::fmt;
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
    /// The descriptor is the journal's stream (`JOURNAL_STREAM` names it).
    journal: bool,
}

impl Stderr {
    /// Looks at what standard error is and prepares to write to it.
    pub fn open() -> Stderr {
        Stderr::on(libc::STDERR_FILENO)
    }

    /// A writer for descriptor `fd`, which must stay open as long as the
    /// writer lives (standard error does).
    fn on(fd: RawFd) -> Stderr {
        let st = fstat(fd);
        let journal = match (&st, std::env::var_os("JOURNAL_STREAM")) {
            (Some(st), Some(value)) => names_file(&value, st),
            _ => false,
        };
        let sink = match st.map(|st| st.st_mode & libc::S_IFMT) {
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
            journal,
        }
    }

    /// Whether the output is the systemd journal's stream, as
    /// `JOURNAL_STREAM` says: then records are written with
    /// [`write_for_journal`] (see the module doc).
    pub fn is_journal(&self) -> bool {
        self.journal
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

/// What `fd` is (its type, device and inode), or `None` if it is not open.
fn fstat(fd: RawFd) -> Option<libc::stat> {
    // SAFETY: fstat writes one `stat` through a valid pointer; a zeroed
    // `stat` is a valid value of that plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some(st)
}

/// Whether `value`, a `JOURNAL_STREAM`, names the file `st` describes:
/// `DEVICE:INODE`, both decimal. Anything else names nothing.
fn names_file(value: &OsStr, st: &libc::stat) -> bool {
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    decimal::<libc::dev_t>(dev) == Some(st.st_dev) && decimal::<libc::ino_t>(ino) == Some(st.st_ino)
}

/// `text` as a number if it is decimal digits only (`FromStr` for the
/// integers also takes a leading `+`).
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The `sd-daemon(3)` prefix that gives a line written to the journal the
/// syslog priority of `level`: `<3>` (err), `<4>` (warning), `<6>` (info),
/// `<7>` (debug, for trace too: syslog has nothing below it).
pub fn priority(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "<3>",
        log::Level::Warn => "<4>",
        log::Level::Info => "<6>",
        log::Level::Debug | log::Level::Trace => "<7>",
    }
}

/// Writes `record` as the journal reads it: `<6>[INFO  target] message`,
/// the priority of its level in front of every line of the message (the
/// journal takes each line for a record), and no timestamp (the journal
/// stamps each line itself). The same layout as `env_logger`'s, less the
/// time; for `env_logger::Builder::format`.
pub fn write_for_journal(out: &mut impl Write, record: &log::Record<'_>) -> io::Result<()> {
    let prefix = priority(record.level());
    write!(out, "{prefix}[{:<5} {}] ", record.level(), record.target())?;
    let mut lines = Prefixed {
        out,
        prefix,
        newline: false,
        error: None,
    };
    if fmt::write(&mut lines, *record.args()).is_err() {
        return Err(lines
            .error
            .unwrap_or_else(|| io::Error::other("a log message failed to format")));
    }
    out.write_all(b"\n")
}

/// Passes a message through to `out`, with `prefix` at the start of every
/// line after the first. A newline is held back until more text follows,
/// so that a message ending in one does not make an empty record.
struct Prefixed<'a, W> {
    out: &'a mut W,
    prefix: &'static str,
    /// A newline was seen and not yet written.
    newline: bool,
    /// The writer's error, which `fmt::Error` cannot carry.
    error: Option<io::Error>,
}

impl<W: Write> Prefixed<'_, W> {
    fn put(&mut self, text: &str) -> io::Result<()> {
        for (i, part) in text.split('\n').enumerate() {
            if i > 0 {
                if self.newline {
                    self.break_line()?;
                }
                self.newline = true;
            }
            if !part.is_empty() {
                if self.newline {
                    self.break_line()?;
                    self.newline = false;
                }
                self.out.write_all(part.as_bytes())?;
            }
        }
        Ok(())
    }

    fn break_line(&mut self) -> io::Result<()> {
        self.out.write_all(b"\n")?;
        self.out.write_all(self.prefix.as_bytes())
    }
}

impl<W: Write> fmt::Write for Prefixed<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.put(text).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
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

    /// `JOURNAL_STREAM` names a file by its decimal `DEVICE:INODE`, and
    /// anything else (another file, a malformed value) names nothing.
    #[test]
    fn journal_stream_names_a_file_by_device_and_inode() {
        // SAFETY: a zeroed `stat` is a valid value of that plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_dev = 64769;
        st.st_ino = 123456;
        let names = |v: &str| names_file(OsStr::new(v), &st);
        assert!(names("64769:123456"));
        for other in ["64769:123457", "64770:123456", "123456:64769"] {
            assert!(!names(other), "{other}");
        }
        for malformed in [
            "",
            ":",
            "64769",
            "64769:",
            ":123456",
            "64769:123456:1",
            "+64769:123456",
            "64769:-123456",
            " 64769:123456",
            "0xfd01:123456",
            "64769:123456 ",
        ] {
            assert!(!names(malformed), "{malformed:?}");
        }
    }

    /// Each level's `sd-daemon(3)` prefix, trace sharing debug's.
    #[test]
    fn each_level_has_its_syslog_priority() {
        use log::Level::*;
        let prefixes: Vec<_> = [Error, Warn, Info, Debug, Trace]
            .into_iter()
            .map(priority)
            .collect();
        assert_eq!(prefixes, ["<3>", "<4>", "<6>", "<7>", "<7>"]);
    }

    /// What `write_for_journal` writes for a message of `text` at `level`.
    fn journal_record(level: log::Level, text: &str) -> String {
        let mut out = Vec::new();
        write_for_journal(
            &mut out,
            &log::Record::builder()
                .level(level)
                .target("mio_echo::test")
                .args(format_args!("{text}"))
                .build(),
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A one-line record: the priority, the level and target, the message,
    /// and no timestamp.
    #[test]
    fn a_journal_record_is_its_priority_level_target_and_message() {
        assert_eq!(
            journal_record(log::Level::Warn, "refused"),
            "<4>[WARN  mio_echo::test] refused\n"
        );
    }

    /// Every line of a multi-line message carries the priority, blank ones
    /// too; a trailing newline makes no empty record.
    #[test]
    fn every_line_of_a_journal_record_carries_the_priority() {
        assert_eq!(
            journal_record(log::Level::Error, "one\ntwo\n\nfour\n"),
            "<3>[ERROR mio_echo::test] one\n<3>two\n<3>\n<3>four\n"
        );
    }
}
