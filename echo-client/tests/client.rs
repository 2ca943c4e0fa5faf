//! `echo-client` end to end: the built binary against a real server started
//! in this process, or against small fake servers that misbehave on
//! purpose. Everything runs over loopback and every wait has a deadline.

use echo_test_kit as common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{drain, feed, server, wait, Guarded, Run};

/// The seed of every random input here, so a failure reproduces.
const SEED: u64 = 0x0ec0;

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_echo-client"))
}

/// Runs the client with `args`, feeding `input` on stdin.
fn run_client(args: &[&str], input: Vec<u8>) -> Run {
    common::run(client().args(args), input)
}

fn random_bytes(len: usize) -> Vec<u8> {
    common::random_bytes(SEED, len)
}

/// A fake server for one connection: `serve` gets the accepted stream.
fn fake_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            serve(stream);
        }
    });
    addr
}

/// Echoes everything through `alter(offset, byte)` until the client's FIN.
/// Errors end it quietly: the client is expected to hang up on a liar.
fn altered_echo(mut stream: TcpStream, alter: impl Fn(u64, u8) -> u8) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for byte in &mut buf[..n] {
            *byte = alter(offset, *byte);
            offset += 1;
        }
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Piped text comes back byte for byte.
#[test]
fn piped_text_comes_back_byte_for_byte() {
    let server = server();
    let text = "hello\nsecond line\n\nno newline at the end: é ✓".repeat(100);
    let run = run_client(&[&server.addr().to_string()], text.clone().into_bytes());
    run.assert_success();
    assert_eq!(String::from_utf8(run.stdout).unwrap(), text);
}

/// Several MiB of random binary come back identical.
#[test]
fn piped_binary_comes_back_identical() {
    let server = server();
    let data = random_bytes(8 * 1024 * 1024);
    let run = run_client(&[&server.addr().to_string()], data.clone());
    run.assert_success();
    assert_eq!(run.stdout.len(), data.len());
    assert!(run.stdout == data, "the echo differs from the input");
}

/// `-m TEXT` prints TEXT and a newline.
#[test]
fn message_flag_prints_the_message_and_a_newline() {
    let server = server();
    let run = run_client(&[&server.addr().to_string(), "-m", "hello"], Vec::new());
    run.assert_success();
    assert_eq!(run.stdout, b"hello\n");
}

/// Empty standard input: exit 0 with nothing printed.
#[test]
fn empty_stdin_prints_nothing_and_succeeds() {
    let server = server();
    let run = run_client(&[&server.addr().to_string()], Vec::new());
    run.assert_success();
    assert!(run.stdout.is_empty());
}

/// Each chunk's echo is printed before the next input arrives, as at a
/// terminal where lines are typed one at a time.
#[test]
fn each_line_is_echoed_before_the_next_is_sent() {
    let server = server();
    let mut child = Guarded::spawn(
        client()
            .arg(server.addr().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    for line in ["first\n", "second\n"] {
        stdin.write_all(line.as_bytes()).unwrap();
        let mut echoed = Vec::new();
        while echoed.len() < line.len() {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(piece) => echoed.extend(piece),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("no echo of {line:?} while stdin stays open");
                }
            }
        }
        assert_eq!(echoed, line.as_bytes());
    }
    drop(stdin);
    assert!(wait(&mut child, started).success());
}

/// A name is resolved and each of its addresses tried: `localhost` may be
/// ::1 first, where nothing listens.
#[test]
fn a_host_name_is_resolved() {
    let server = server();
    let addr = format!("localhost:{}", server.addr().port());
    let run = run_client(&[&addr, "-m", "by name"], Vec::new());
    run.assert_success();
    assert_eq!(run.stdout, b"by name\n");
}

/// A refused connection is one line naming the address, and exit status 1.
#[test]
fn refused_connection_is_one_line_and_status_1() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let run = run_client(&[&format!("127.0.0.1:{port}")], b"hi\n".to_vec());
    run.assert_one_error_line();
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot connect to 127.0.0.1:{port}: connection refused \
             (is echo-server running?)"
        )),
        "{}",
        run.stderr
    );
}

/// An echo with one byte changed fails and names that byte's offset in the
/// session (past the first chunk, so a per-chunk offset would be wrong).
#[test]
fn a_changed_byte_is_reported_at_its_offset() {
    const FLIPPED: u64 = 100_000;
    let addr = fake_server(|stream| {
        altered_echo(
            stream,
            |offset, byte| {
                if offset == FLIPPED {
                    !byte
                } else {
                    byte
                }
            },
        )
    });
    let run = run_client(&[&addr.to_string()], random_bytes(300_000));
    run.assert_one_error_line();
    assert!(
        run.stderr.contains(&format!("at offset {FLIPPED} ")),
        "{}",
        run.stderr
    );
    assert!(
        (run.stdout.len() as u64) <= FLIPPED,
        "nothing past the wrong byte is printed"
    );
}

/// A server that accepts and never answers ends in a timeout error, soon.
#[test]
fn a_silent_server_times_out() {
    let addr = fake_server(|mut stream| {
        // Swallow everything, say nothing; return when the client leaves.
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    });
    let run = run_client(
        &[&addr.to_string(), "--timeout", "0.5"],
        b"anyone?\n".to_vec(),
    );
    run.assert_one_error_line();
    assert!(
        run.stderr
            .contains(&format!("no echo from {addr} within 0.5s")),
        "{}",
        run.stderr
    );
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}

/// A server that sends bytes it was never sent is caught.
#[test]
fn a_server_that_invents_bytes_is_an_error() {
    let addr = fake_server(|stream| {
        let mut writer = stream.try_clone().unwrap();
        altered_echo(stream, |_, byte| byte);
        let _ = writer.write_all(b"surprise");
    });
    let run = run_client(&[&addr.to_string()], b"hi\n".to_vec());
    run.assert_one_error_line();
    assert!(run.stderr.contains("invented"), "{}", run.stderr);
}

/// A server that closes before echoing everything is reported with counts.
#[test]
fn a_server_that_closes_early_is_an_error() {
    let addr = fake_server(|mut stream| {
        let mut buf = [0u8; 11];
        let _ = stream.read_exact(&mut buf);
        let _ = stream.write_all(&buf[..4]);
        // FIN with 7 bytes still owed. (Closing with unread bytes would send
        // a reset instead, which the client reports as one.)
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    });
    let run = run_client(&[&addr.to_string(), "-m", "0123456789"], Vec::new());
    run.assert_one_error_line();
    assert!(
        run.stderr
            .contains("closed the connection after 4 of 11 bytes"),
        "{}",
        run.stderr
    );
}

/// An unknown flag is a usage error: one line, status 2.
#[test]
fn unknown_flag_is_a_usage_error() {
    let run = run_client(&["--nope"], Vec::new());
    run.assert_one_error_line();
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("--nope"), "{}", run.stderr);
    assert!(run.stderr.trim_end().ends_with("(see --help)"));
}

/// Negative, zero and NaN timeouts are refused with one line.
#[test]
fn bad_timeouts_are_refused() {
    for bad in ["-1", "0", "NaN", "soon"] {
        let run = run_client(&["--timeout", bad], Vec::new());
        run.assert_one_error_line();
        assert_eq!(run.status.code(), Some(2), "--timeout {bad}");
        assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    }
}

/// A reader that closes our output early ends the client quietly.
#[test]
fn a_closed_stdout_ends_quietly() {
    let server = server();
    let started = Instant::now();
    let mut child = Guarded::spawn(
        client()
            .arg(server.addr().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // Like `echo-client | head -c0`: the reader is gone before the echo.
    drop(child.stdout.take());
    let feeder = feed(child.stdin.take().unwrap(), random_bytes(1024 * 1024));
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait(&mut child, started);
    feeder.join().unwrap();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.lines().count() <= 1, "{stderr}");
    assert!(status.code().is_some(), "not killed by a signal: {status}");
}

/// `--help` describes every flag and the address.
#[test]
fn help_mentions_every_flag() {
    let run = run_client(&["--help"], Vec::new());
    run.assert_success();
    let help = String::from_utf8(run.stdout).unwrap();
    for flag in [
        "ADDR",
        "-m",
        "--message",
        "-u, --udp",
        "65,507",
        "--timeout",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// `--version` prints the crate's version.
#[test]
fn version_prints_the_version() {
    let run = run_client(&["--version"], Vec::new());
    run.assert_success();
    let out = String::from_utf8(run.stdout).unwrap();
    assert_eq!(
        out.trim(),
        format!("echo-client {}", env!("CARGO_PKG_VERSION"))
    );
}

/// An in-process server on free loopback ports, serving UDP as well.
fn udp_server() -> mio_echo::Running {
    common::server_with(mio_echo::Config {
        udp: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        ..mio_echo::Config::loopback()
    })
}

/// A fake UDP server that answers `answered` datagrams through `alter`,
/// then stays silent. The returned socket keeps the port open (so the
/// silence is silence, not a port unreachable) until the test drops it.
fn fake_udp_server(
    answered: usize,
    alter: impl Fn(&mut Vec<u8>) + Send + 'static,
) -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let answering = socket.try_clone().unwrap();
    answering
        .set_read_timeout(Some(common::IO_TIMEOUT))
        .unwrap();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..answered {
            let Ok((n, from)) = answering.recv_from(&mut buf) else {
                return;
            };
            let mut reply = buf[..n].to_vec();
            alter(&mut reply);
            let _ = answering.send_to(&reply, from);
        }
    });
    (socket, addr)
}

/// `--udp`, piped: each line (newline included, the last one without) is
/// one datagram, and the output is the input.
#[test]
fn udp_piped_lines_are_one_datagram_each() {
    let server = udp_server();
    let addr = server.udp_addrs()[0].to_string();
    let text = "first\nsecond line\n\nno newline at the end: é ✓";
    let run = run_client(&["--udp", &addr], text.as_bytes().to_vec());
    run.assert_success();
    assert_eq!(String::from_utf8(run.stdout).unwrap(), text);
    let udp = server.stop().unwrap().udp;
    assert_eq!(udp.echoed, 4, "{udp:?}");
    assert_eq!(udp.bytes, text.len() as u64, "{udp:?}");
}

/// `--udp -m`: each message, newlines and all, is one datagram.
#[test]
fn udp_messages_are_one_datagram_each() {
    let server = udp_server();
    let addr = server.udp_addrs()[0].to_string();
    let run = run_client(
        &["-u", &addr, "-m", "hello", "-m", "two\nlines"],
        Vec::new(),
    );
    run.assert_success();
    assert_eq!(run.stdout, b"hello\ntwo\nlines\n");
    let udp = server.stop().unwrap().udp;
    assert_eq!(udp.echoed, 2, "{udp:?}");
}

/// Empty standard input with `--udp`: nothing sent, nothing printed, exit 0.
#[test]
fn udp_empty_stdin_sends_nothing() {
    let server = udp_server();
    let run = run_client(&["--udp", &server.udp_addrs()[0].to_string()], Vec::new());
    run.assert_success();
    assert!(run.stdout.is_empty());
    assert_eq!(server.stop().unwrap().udp.echoed, 0);
}

/// A line of 65,507 bytes (newline included) goes as one datagram; one of
/// 65,508 is an error naming the datagram, and exit status 1.
#[test]
fn udp_a_line_longer_than_a_datagram_is_an_error() {
    let server = udp_server();
    let mut input = vec![b'a'; 65_506];
    input.push(b'\n');
    let fits = input.len();
    input.extend(vec![b'b'; 65_507]);
    input.push(b'\n');
    let run = run_client(
        &["--udp", &server.udp_addrs()[0].to_string()],
        input.clone(),
    );
    run.assert_one_error_line();
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr
            .starts_with("error: datagram 2 would be longer than 65507 bytes"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout == input[..fits],
        "the first line is echoed whole"
    );
    let udp = server.stop().unwrap().udp;
    assert_eq!((udp.echoed, udp.bytes), (1, fits as u64), "{udp:?}");
}

/// A server that answers the first datagram and not the second: after the
/// timeout, one error line naming datagram 2, exit status 1, soon.
#[test]
fn udp_a_missing_reply_times_out_naming_the_datagram() {
    let (_open, addr) = fake_udp_server(1, |_| {});
    let run = run_client(
        &["--udp", &addr.to_string(), "--timeout", "0.5"],
        b"answered\nignored\nnever sent\n".to_vec(),
    );
    run.assert_one_error_line();
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr.contains(&format!(
            "no reply from udp {addr} to datagram 2 within 0.5s"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, b"answered\n");
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}

/// A server that never answers at all: the first datagram times out.
#[test]
fn udp_a_silent_server_times_out() {
    let (_open, addr) = fake_udp_server(0, |_| {});
    let run = run_client(
        &["-u", &addr.to_string(), "--timeout", "0.3", "-m", "anyone?"],
        Vec::new(),
    );
    run.assert_one_error_line();
    assert!(
        run.stderr.contains("to datagram 1 within 0.3s"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

/// A reply with a byte changed is an error naming the datagram and offset.
#[test]
fn udp_a_changed_reply_names_the_offset() {
    let (_open, addr) = fake_udp_server(1, |reply| reply[3] = b'X');
    let run = run_client(&["--udp", &addr.to_string(), "-m", "abcdef"], Vec::new());
    run.assert_one_error_line();
    assert!(
        run.stderr.contains(&format!(
            "reply from udp {addr} to datagram 1 differs from what was sent at offset 3 \
             (sent 0x64, got 0x58)"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "a wrong reply is not printed");
}

/// Nothing on the port: the kernel's port unreachable is reported as such,
/// without waiting out the timeout.
#[test]
fn udp_a_closed_port_is_reported_as_unreachable() {
    let addr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = run_client(
        &["--udp", &addr.to_string(), "--timeout", "30", "-m", "hi"],
        Vec::new(),
    );
    run.assert_one_error_line();
    assert!(
        run.stderr.contains("nothing listens on that port"),
        "{}",
        run.stderr
    );
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}
