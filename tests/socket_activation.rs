//! systemd's protocols: socket activation (`LISTEN_PID`, `LISTEN_FDS` and
//! `LISTEN_FDNAMES`: the passed sockets are served, a service is chosen by
//! name, wrong counts or kinds of descriptor are refused) and readiness
//! notification (`READY=1` and `STOPPING=1` on `NOTIFY_SOCKET`).
//!
//! Every test runs the built binary, behind a shell that sets `LISTEN_PID`
//! and `exec`s it; every child is killed if a test fails.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use common::{
    connect, field, server_command, stop, summary, tcp_echo, udp_client, udp_round_trip,
    EchoServer, IO_TIMEOUT,
};

/// `echo-server ARGS` started as systemd would: `fds` at descriptors 3, 4,
/// ..., `LISTEN_FDS` their count and `LISTEN_PID` the server's own pid (a
/// shell sets it to `$$`, then `exec`s the server in its place).
fn activated(fds: &[RawFd], args: &[&str]) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(server_command().get_program())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RUST_LOG_STYLE")
        .env_remove("NOTIFY_SOCKET")
        .env("LISTEN_FDS", fds.len().to_string());
    assert!(fds.len() <= 8, "at most 8 descriptors");
    let fds = fds.to_vec();
    // SAFETY: between fork and exec the closure only calls fcntl and dup2,
    // which are async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Lift every descriptor out of the range 3.. first, so that
            // placing one cannot overwrite another still to be placed.
            let mut lifted = [0 as RawFd; 8];
            for (i, &fd) in fds.iter().enumerate() {
                lifted[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if lifted[i] < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, &fd) in lifted[..fds.len()].iter().enumerate() {
                // dup2 leaves FD_CLOEXEC clear on the copy: it survives exec.
                if libc::dup2(fd, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command
}

/// A TCP listener and a UDP socket passed at descriptors 3 and 4 are served
/// (logged with `(socket activation)`), both echo, and the default
/// 127.0.0.1:7007 is not bound.
#[test]
fn socket_activation_serves_the_passed_sockets() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tcp_addr, udp_addr) = (listener.local_addr().unwrap(), udp.local_addr().unwrap());
    let mut server = EchoServer::spawn(&mut activated(
        &[listener.as_raw_fd(), udp.as_raw_fd()],
        &[],
    ));
    // The server holds its copies now; without ours, a server that ignored
    // them would leave clients refused, not quietly queued.
    drop((listener, udp));
    let sockets = server.sockets(2);
    server.line_containing("serving at most");
    assert!(sockets.iter().all(|s| s.activated), "{:#?}", server.seen);
    assert_eq!((sockets[0].udp, sockets[0].addr), (false, tcp_addr));
    assert_eq!((sockets[1].udp, sockets[1].addr), (true, udp_addr));

    tcp_echo(tcp_addr, b"activated tcp\n");
    let client = udp_client(udp_addr);
    assert_eq!(
        udp_round_trip(&client, b"activated udp\n"),
        b"activated udp\n"
    );

    let lines = stop(server);
    assert!(
        !lines.iter().any(|l| l.contains("7007")),
        "the default address was bound: {lines:#?}"
    );
    let listening = lines.iter().filter(|l| l.contains("listening on ")).count();
    assert_eq!(listening, 2, "{lines:#?}");
    assert_eq!(field(summary(&lines), "connections"), Some("1"));
    assert_eq!(field(summary(&lines), "udp_echoed"), Some("1"));
}

/// With `LISTEN_FDNAMES` (each socket unit's `FileDescriptorName=`) the
/// passed sockets are served just the same, whether the names are given or
/// left empty.
#[test]
fn socket_activation_with_names_serves_the_passed_sockets() {
    for names in ["echo:echo-udp", ":"] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (tcp_addr, udp_addr) = (listener.local_addr().unwrap(), udp.local_addr().unwrap());
        let mut server = EchoServer::spawn(
            activated(&[listener.as_raw_fd(), udp.as_raw_fd()], &[]).env("LISTEN_FDNAMES", names),
        );
        drop((listener, udp));
        let sockets = server.sockets(2);
        server.line_containing("serving at most");
        assert!(
            sockets.iter().all(|s| s.activated),
            "{names}: {:#?}",
            server.seen
        );
        tcp_echo(tcp_addr, b"named tcp\n");
        let client = udp_client(udp_addr);
        assert_eq!(udp_round_trip(&client, b"named udp\n"), b"named udp\n");
        let lines = stop(server);
        assert_eq!(field(summary(&lines), "connections"), Some("1"), "{names}");
    }
}

/// Socket activation tells the services apart by `FileDescriptorName=`:
/// sockets named `echo`, `discard-v4` and `chargen` serve echo, discard and
/// chargen, and the log names each; a UDP socket named for chargen (an
/// amplifier) is one `error:` line.
#[test]
fn socket_activation_picks_the_service_by_name() {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let discard = TcpListener::bind("127.0.0.1:0").unwrap();
    let chargen = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs: Vec<SocketAddr> = [&echo, &discard, &chargen]
        .iter()
        .map(|l| l.local_addr().unwrap())
        .collect();
    let mut server = EchoServer::spawn(
        activated(
            &[echo.as_raw_fd(), discard.as_raw_fd(), chargen.as_raw_fd()],
            &[],
        )
        .env("LISTEN_FDNAMES", "echo:discard-v4:chargen"),
    );
    drop((echo, discard, chargen));
    server.sockets(3);
    server.line_containing("serving at most");
    for (addr, says) in addrs.iter().zip([
        "(socket activation, name echo)",
        "(discard) (socket activation, name discard-v4)",
        "(chargen) (socket activation, name chargen)",
    ]) {
        let line = format!("listening on tcp://{addr} {says}");
        assert!(
            server.seen.iter().any(|l| l.ends_with(&line)),
            "{line}: {:#?}",
            server.seen
        );
    }
    tcp_echo(addrs[0], b"named echo\n");
    let mut sink = connect(addrs[1]);
    sink.write_all(b"dropped").unwrap();
    sink.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    sink.read_to_end(&mut back).unwrap();
    assert!(back.is_empty(), "discard sent back {back:?}");
    let source = connect(addrs[2]);
    let mut first = [0u8; 74];
    (&source).read_exact(&mut first).unwrap();
    assert!(
        first.starts_with(b" !\"#$") && first.ends_with(b"\r\n"),
        "{first:?}"
    );
    drop(source);
    let lines = stop(server);
    let last = summary(&lines);
    assert_eq!(field(last, "discarded"), Some("7"), "{last}");

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let run = common::run(
        activated(&[udp.as_raw_fd()], &[]).env("LISTEN_FDNAMES", "chargen"),
        Vec::new(),
    );
    run.assert_one_error_line();
    assert!(run.stderr.contains("TCP only"), "{}", run.stderr);
}

/// `LISTEN_FDNAMES` with fewer or more names than `LISTEN_FDS` counts is
/// one `error:` line that shows the variables, and nothing is served.
#[test]
fn socket_activation_refuses_names_that_do_not_match_the_count() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for names in ["echo", "echo:echo-udp:chargen"] {
        let run = common::run(
            activated(&[listener.as_raw_fd(), udp.as_raw_fd()], &[]).env("LISTEN_FDNAMES", names),
            Vec::new(),
        );
        run.assert_one_error_line();
        assert!(
            run.stderr.contains("LISTEN_FDNAMES") && run.stderr.contains(names),
            "{names}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("listening on"), "{}", run.stderr);
    }
}

/// A descriptor that is neither a TCP listener nor a UDP socket (a Unix
/// datagram socket, a TCP socket that is not listening) is one `error:` line
/// naming it, and a non-zero exit.
#[test]
fn socket_activation_refuses_a_wrong_kind_of_descriptor() {
    let unix = UnixDatagram::unbound().unwrap();
    let not_listening = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    for (what, fd) in [
        ("a Unix datagram socket", unix.as_raw_fd()),
        (
            "a TCP socket that is not listening",
            not_listening.as_raw_fd(),
        ),
    ] {
        let run = common::run(&mut activated(&[fd], &[]), Vec::new());
        run.assert_one_error_line();
        assert!(
            run.stderr.contains("descriptor 3"),
            "{what}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("listening on"),
            "{what}: {}",
            run.stderr
        );
    }
}

// --- Notification -------------------------------------------------------------

/// A datagram socket at a fresh path under the temporary directory,
/// removed when dropped.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("mio-echo-{}-{nanos}.notify", std::process::id()));
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        NotifySocket { socket, path }
    }

    /// The next message, within [`IO_TIMEOUT`].
    fn recv(&self, waiting_for: &str) -> String {
        let mut buf = [0u8; 256];
        let n = self
            .socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {waiting_for} on NOTIFY_SOCKET: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// With `NOTIFY_SOCKET` set, the server sends `READY=1` once its socket
/// serves, `STOPPING=1` when SIGTERM arrives, nothing else, and exits 0.
#[test]
fn notify_socket_hears_ready_then_stopping() {
    let notify = NotifySocket::bind();
    let mut command = server_command();
    command
        .args(["-l", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify.path);
    let mut server = EchoServer::spawn(&mut command);
    // One state per datagram, each ended by a newline (as sd_notify(3)'s
    // newline-separated assignments are).
    assert_eq!(notify.recv("READY=1"), "READY=1\n");
    // Logged before READY=1 was sent, so already in the pipe.
    let addr = server.listening(1)[0];
    tcp_echo(addr, b"ready means ready\n");
    server.signal(libc::SIGTERM);
    assert_eq!(notify.recv("STOPPING=1"), "STOPPING=1\n");
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    notify.socket.set_nonblocking(true).unwrap();
    let more = notify.socket.recv(&mut [0u8; 256]);
    assert_eq!(
        more.map_err(|e| e.kind()),
        Err(io::ErrorKind::WouldBlock),
        "a third message"
    );
}

/// `NOTIFY_SOCKET=@NAME` is a socket in Linux's abstract namespace (no file
/// behind it, as sd_notify(3) says): it hears `READY=1` too.
#[cfg(target_os = "linux")]
#[test]
fn notify_socket_in_the_abstract_namespace_hears_ready() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("mio-echo-{}-abstract.notify", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut command = server_command();
    command
        .args(["-l", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", format!("@{name}"));
    let server = EchoServer::spawn(&mut command);
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1 on @{name}: {e}"));
    assert_eq!(&buf[..n], b"READY=1\n");
    stop(server);
}
