//! The daemon side of `echo-server` (issue 5): UDP echo and its guards,
//! IPv6 and several listeners, several loops, socket activation, readiness
//! notification and stats.
//!
//! The UDP behaviours run against a server inside this process, so the test
//! can read its exact totals; everything that is about the process (its
//! threads, its descriptors, its environment, its signals) runs the built
//! binary. Clients use loopback only, ports are 0 and read back, every wait
//! has a deadline, and every child is killed if a test fails.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    connect, echo_ok, exchange, field, has_ipv6_loopback, process_state, random_bytes,
    server_command, server_with, threads, wait_until, EchoServer, IO_TIMEOUT,
};
use mio_echo::Config;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// An in-process server on free loopback ports: TCP and UDP.
fn udp_server() -> mio_echo::Running {
    server_with(Config {
        udp: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        ..Config::loopback()
    })
}

/// A UDP socket on a free loopback port of `server`'s family, connected to
/// it, with [`IO_TIMEOUT`] on every receive.
fn udp_client(server: SocketAddr) -> UdpSocket {
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
fn udp_round_trip(socket: &UdpSocket, data: &[u8]) -> Vec<u8> {
    socket.send(data).unwrap();
    let mut buf = vec![0u8; 70_000];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no reply to {} bytes: {e}", data.len()));
    buf.truncate(n);
    buf
}

/// The `stopped: ...` summary among a finished server's lines.
fn summary(lines: &[String]) -> &str {
    lines
        .iter()
        .rev()
        .find(|l| l.contains("stopped: "))
        .unwrap_or_else(|| panic!("no summary line: {lines:#?}"))
}

/// Stops a binary server with SIGTERM and checks it exits 0 with a
/// summary; returns every line it logged.
fn stop(server: EchoServer) -> Vec<String> {
    server.signal(libc::SIGTERM);
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{status}: {lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:#?}");
    summary(&lines);
    lines
}

/// One short echo over a fresh TCP connection.
fn tcp_echo(addr: SocketAddr, data: &[u8]) {
    let stream = connect(addr);
    let echo = exchange(&stream, data, &[data.len()]).unwrap();
    assert_eq!(echo, data, "echo via {addr}");
}

// --- UDP, in process --------------------------------------------------------

/// Datagrams of 0, 1, 1000 and 65,507 bytes each come back as one datagram
/// with the same bytes, and nothing else comes back.
#[test]
fn udp_datagrams_of_every_size_come_back_whole() {
    let server = udp_server();
    let client = udp_client(server.udp_addrs()[0]);
    let sizes = [0, 1, 1000, MAX_DATAGRAM];
    for (seed, size) in sizes.into_iter().enumerate() {
        let data = random_bytes(seed as u64, size);
        let reply = udp_round_trip(&client, &data);
        common::assert_same_bytes(&data, &reply, format_args!("a {size}-byte datagram"));
    }
    let udp = server.stop().unwrap().udp;
    // The server has stopped, and loopback delivers at once: any stray
    // reply would be waiting in our queue now.
    client.set_nonblocking(true).unwrap();
    let stray = client.recv(&mut [0u8; 16]);
    assert_eq!(
        stray.map_err(|e| e.kind()),
        Err(io::ErrorKind::WouldBlock),
        "a datagram beyond the replies"
    );
    assert_eq!(udp.echoed, sizes.len() as u64, "{udp:?}");
    assert_eq!(udp.bytes, sizes.iter().sum::<usize>() as u64, "{udp:?}");
    assert_eq!((udp.dropped, udp.refused), (0, 0), "{udp:?}");
}

/// A datagram from a port below 1024 (where echo and chargen live) gets no
/// reply, and the summary counts it as refused.
#[test]
fn udp_from_a_privileged_port_is_refused_and_counted() {
    let server = udp_server();
    let target = server.udp_addrs()[0];
    let mut low = None;
    for port in (990..1000).rev() {
        match UdpSocket::bind(("127.0.0.1", port)) {
            Ok(socket) => {
                low = Some(socket);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("note: cannot bind a port below 1024 here ({e}); test skipped");
                return;
            }
            // Taken by something else: try the next one.
            Err(_) => continue,
        }
    }
    let low = low.expect("one of the ports 990-999 is free");
    low.send_to(b"reflect me?", target).unwrap();
    // A datagram sent after it on the same server socket: once its reply is
    // here, the server has dealt with the first (and any reply to it would
    // have been delivered, loopback being synchronous).
    let ordinary = udp_client(target);
    assert_eq!(udp_round_trip(&ordinary, b"sync"), b"sync");
    low.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    match low.recv_from(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!(
            "a reply went to port {}: {other:?}",
            low.local_addr().unwrap().port()
        ),
    }
    let udp = server.stop().unwrap().udp;
    assert_eq!(udp.refused, 1, "{udp:?}");
    assert_eq!(udp.echoed, 1, "only the ordinary datagram: {udp:?}");
}

/// A datagram whose source uses the port the server serves gets no reply:
/// it is the server's own address forged (a loop with itself) or another
/// echo server like it (a loop between the two).
#[test]
fn udp_from_the_served_port_is_refused_and_counted() {
    let server = udp_server();
    let target = server.udp_addrs()[0];
    // Same port, another loopback address: a stand-in for "another echo
    // server on our port" (or our own address, forged).
    let twin = match UdpSocket::bind(("127.0.0.2", target.port())) {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!(
                "note: cannot bind 127.0.0.2:{} ({e}); test skipped",
                target.port()
            );
            return;
        }
    };
    twin.send_to(b"loop?", target).unwrap();
    // The next datagram on the same server socket is answered only after the
    // first was dealt with.
    let ordinary = udp_client(target);
    assert_eq!(udp_round_trip(&ordinary, b"sync"), b"sync");
    twin.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    match twin.recv_from(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("a reply went to the served port: {other:?}"),
    }
    let udp = server.stop().unwrap().udp;
    assert_eq!(udp.refused, 1, "{udp:?}");
    assert_eq!(udp.echoed, 1, "only the ordinary datagram: {udp:?}");
}

/// One thread sends datagrams flat out for a second; meanwhile a TCP client
/// keeps completing round trips, and afterwards the server still answers
/// and has accounted for each datagram it took at most once.
///
/// On two cores a loop without UDP's budget also drains its queue now and
/// then, so this pins responsiveness; the budget itself is pinned by
/// [`udp_budget_lets_a_waiting_tcp_client_in`].
#[test]
fn a_udp_flood_does_not_starve_tcp_clients() {
    const FLOOD: Duration = Duration::from_secs(1);
    const ROUND_TRIPS: u64 = 10;
    let server = udp_server();
    let target = server.udp_addrs()[0];
    let flooding = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (flooding, sent) = (Arc::clone(&flooding), Arc::clone(&sent));
        // Never read: its replies pile up in (and then overflow) our own
        // receive queue, which is the kernel's business, not the server's.
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(target).unwrap();
        thread::spawn(move || {
            let started = Instant::now();
            let payload = [0x55u8; 64];
            while started.elapsed() < FLOOD {
                if socket.send(&payload).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            flooding.store(false, Ordering::SeqCst);
        })
    };

    let mut stream = connect(server.addr());
    stream.set_nodelay(true).unwrap();
    let mut during_flood = 0u64;
    let mut buf = [0u8; 100];
    // Bounded by the flood's second (and each read by IO_TIMEOUT).
    while flooding.load(Ordering::SeqCst) {
        let data = [during_flood as u8; 100];
        stream.write_all(&data).unwrap();
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(buf, data);
        if flooding.load(Ordering::SeqCst) {
            during_flood += 1;
        }
    }
    flood.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        during_flood >= ROUND_TRIPS,
        "only {during_flood} TCP round trips completed during a flood of {sent} datagrams"
    );

    // Still answering, and the flood is behind us: this reply comes after
    // every flood datagram the server received. From another address: the
    // flood has used up 127.0.0.1's per-source rate.
    let after = UdpSocket::bind("127.0.0.2:0").unwrap();
    after.connect(target).unwrap();
    after.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(udp_round_trip(&after, b"still there?"), b"still there?");
    drop(stream);
    let udp = server.stop().unwrap().udp;
    assert!(udp.echoed >= 1, "{udp:?}");
    // One source flooding gets at most its per-source rate; the rest is
    // limited and counted, never queued.
    assert!(
        udp.echoed + udp.dropped + udp.refused + udp.limited <= sent + 1,
        "more datagrams handled than sent ({sent} + 1): {udp:?}"
    );
}

/// With datagrams queued ahead of a TCP client, the loop turns to the
/// client after at most two UDP passes of `UDP_BUDGET` datagrams (one for
/// the event, one from the ready list while the client is being accepted),
/// not after draining the queue.
///
/// Deterministic: the server is stopped (SIGSTOP) while the datagrams and
/// the client's bytes queue up, and its trace log gives the order in which
/// the resumed loop served them.
#[test]
fn udp_budget_lets_a_waiting_tcp_client_in() {
    let budget = mio_echo::UDP_BUDGET;
    // Rates that never bind: every queued datagram is echoed (and traced),
    // and the sync datagram from the flood's address is answered.
    let mut server = EchoServer::start(
        &[
            "-l",
            "127.0.0.1:0",
            "-u",
            "127.0.0.1:0",
            "--udp-rate-per-source",
            "10000000",
            "--udp-rate",
            "10000000",
        ],
        Some("info,mio_echo=trace"),
    );
    let sockets = server.sockets(2);
    let tcp = sockets.iter().find(|s| !s.udp).unwrap().addr;
    let udp = sockets.iter().find(|s| s.udp).unwrap().addr;
    let pid = server.pid();

    server.signal(libc::SIGSTOP);
    wait_until("the server to stop", || process_state(pid) == 'T');
    // Far more than the receive queue holds: the kernel keeps what fits.
    let flood = udp_client(udp);
    for _ in 0..2000 {
        flood.send(b"f").unwrap();
    }
    // Queued behind the datagrams: a connection in the backlog, with bytes.
    let mut client = connect(tcp);
    client.write_all(b"let me in\n").unwrap();
    server.signal(libc::SIGCONT);

    let mut echo = [0u8; 10];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"let me in\n");
    // Answered after every datagram queued before it: once its trace line
    // is in, so are theirs.
    let sync = udp_client(udp);
    assert_eq!(udp_round_trip(&sync, b"sync"), b"sync");
    let sync_port = sync.local_addr().unwrap().port();
    server.line_containing(&format!("udp 127.0.0.1:{sync_port}: echoed"));

    let flood_echo = format!(
        "udp 127.0.0.1:{}: echoed",
        flood.local_addr().unwrap().port()
    );
    let peer = client.local_addr().unwrap().to_string();
    let lines = &server.seen;
    let connected = lines
        .iter()
        .position(|l| l.contains(&format!("{peer}: connected (token ")))
        .unwrap_or_else(|| panic!("no connected line for {peer}: {lines:#?}"));
    let token = lines[connected]
        .rsplit("(token ")
        .next()
        .and_then(|t| t.strip_suffix(')'))
        .unwrap();
    let first_event = connected
        + lines[connected..]
            .iter()
            .position(|l| l.contains(&format!("token {token}: event")))
            .unwrap_or_else(|| panic!("no event for token {token}: {lines:#?}"));
    let queued = lines.iter().filter(|l| l.contains(&flood_echo)).count();
    let before = lines[..first_event]
        .iter()
        .filter(|l| l.contains(&flood_echo))
        .count();
    if queued <= budget.saturating_mul(3) {
        eprintln!(
            "note: the receive queue held only {queued} datagrams, too few to tell a budget \
             of {budget} from draining; test skipped"
        );
        return;
    }
    assert!(
        before <= budget.saturating_mul(2),
        "{before} of {queued} queued datagrams were echoed before the TCP client's first \
         event (budget {budget} per pass)"
    );
    stop(server);
}

// --- The binary: UDP and IPv6 -------------------------------------------------

/// `-u 127.0.0.1:0` logs `listening on udp://127.0.0.1:PORT` with the real
/// port, and that port echoes.
#[test]
fn udp_listener_is_logged_with_its_real_port() {
    let mut server = EchoServer::start(&["-l", "127.0.0.1:0", "-u", "127.0.0.1:0"], None);
    let sockets = server.sockets(2);
    let udp = sockets
        .iter()
        .find(|s| s.udp)
        .unwrap_or_else(|| panic!("no udp:// line: {:#?}", server.seen));
    assert!(
        udp.addr.ip().is_loopback() && udp.addr.port() != 0,
        "{udp:?}"
    );
    let line = format!("listening on udp://127.0.0.1:{}", udp.addr.port());
    assert!(
        server.seen.iter().any(|l| l.contains(&line)),
        "{:#?}",
        server.seen
    );
    let client = udp_client(udp.addr);
    assert_eq!(udp_round_trip(&client, b"datagram\n"), b"datagram\n");
    let lines = stop(server);
    assert_eq!(field(summary(&lines), "udp_echoed"), Some("1"));
    assert_eq!(field(summary(&lines), "udp_bytes"), Some("9"));
}

/// `-l [::1]:0` serves IPv6 and logs `tcp://[::1]:PORT`.
#[test]
fn ipv6_loopback_is_served_and_logged_in_brackets() {
    if !has_ipv6_loopback() {
        eprintln!("note: no IPv6 loopback on this machine; test skipped");
        return;
    }
    let mut server = EchoServer::start(&["-l", "[::1]:0"], None);
    let addr = server.listening(1)[0];
    assert!(addr.is_ipv6() && addr.ip().is_loopback(), "{addr}");
    let line = format!("listening on tcp://[::1]:{}", addr.port());
    assert!(
        server.seen.iter().any(|l| l.contains(&line)),
        "{:#?}",
        server.seen
    );
    tcp_echo(addr, b"over IPv6\n");
    let lines = stop(server);
    assert_eq!(field(summary(&lines), "connections"), Some("1"));
}

/// `0.0.0.0:P` and `[::]:P` are served at once on the same port (the server
/// sets `IPV6_V6ONLY` itself, whatever the system default), each by its own
/// server, each reached over its own family.
#[test]
fn ipv4_and_ipv6_wildcards_share_a_port() {
    if !has_ipv6_loopback() {
        eprintln!("note: no IPv6 loopback on this machine; test skipped");
        return;
    }
    let mut v4 = EchoServer::start(&["-l", "0.0.0.0:0"], None);
    let port = v4.listening(1)[0].port();
    let mut v6 = EchoServer::start(&["-l", &format!("[::]:{port}")], None);
    let logged = v6.listening(1)[0];
    assert_eq!(
        logged,
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        "{:#?}",
        v6.seen
    );
    tcp_echo(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), b"to IPv4\n");
    tcp_echo(SocketAddr::from((Ipv6Addr::LOCALHOST, port)), b"to IPv6\n");
    for (name, server) in [("0.0.0.0", v4), ("[::]", v6)] {
        let lines = stop(server);
        assert_eq!(
            field(summary(&lines), "connections"),
            Some("1"),
            "{name}:{port} served exactly its own family's client"
        );
    }
}

/// With `--dual-stack`, `[::]:P` also takes IPv4 clients on 127.0.0.1:P.
#[test]
fn dual_stack_wildcard_accepts_ipv4_clients() {
    if !has_ipv6_loopback() {
        eprintln!("note: no IPv6 loopback on this machine; test skipped");
        return;
    }
    let mut server = EchoServer::start(&["--dual-stack", "-l", "[::]:0"], None);
    let port = server.listening(1)[0].port();
    tcp_echo(SocketAddr::from(([127, 0, 0, 1], port)), b"v4 via v6\n");
    let lines = stop(server);
    assert_eq!(field(summary(&lines), "connections"), Some("1"));
}

// --- Several loops ------------------------------------------------------------

/// `--threads 2 --reuse-port`: two threads; 40 connections all echo, the
/// kernel spreads them over both loops by hash (each loop's SIGUSR1 stats
/// line shows some, and a third line their total), and the summary after
/// SIGTERM adds both loops up.
#[test]
fn two_threads_share_the_clients_and_add_up_the_summary() {
    const CLIENTS: usize = 40;
    const SEED: u64 = 0x2_7ead;
    let mut server = EchoServer::start(
        &["--threads", "2", "--reuse-port", "-l", "127.0.0.1:0"],
        None,
    );
    let addr = server.listening(1)[0];
    server.line_containing("2 loops");
    let pid = server.pid();
    wait_until("the second loop's thread", || threads(pid) >= 2);
    assert_eq!(threads(pid), 2, "one thread per loop, no more");

    let streams: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(addr)).collect();
    let mut bytes = 0;
    for (i, stream) in streams.iter().enumerate() {
        let data = random_bytes(SEED + i as u64, 1000 + i * 997);
        let echo = exchange(stream, &data, &[data.len()]).unwrap();
        common::assert_same_bytes(&data, &echo, format_args!("client {i}"));
        bytes += data.len();
    }
    drop(streams);
    assert_eq!(threads(pid), 2, "no thread beyond one per loop");

    server.signal(libc::SIGUSR1);
    let mut per_loop = [0u64; 2];
    for _ in 0..2 {
        let line = server.line_containing("stats: ");
        let slot = if line.contains("loop 1/2: ") {
            0
        } else if line.contains("loop 2/2: ") {
            1
        } else {
            panic!("a stats line that names no loop: {line}")
        };
        per_loop[slot] = field(&line, "connections").unwrap().parse().unwrap();
    }
    assert!(
        per_loop.iter().all(|&n| n > 0),
        "one loop got every connection: {per_loop:?}"
    );
    assert_eq!(per_loop.iter().sum::<u64>(), CLIENTS as u64, "{per_loop:?}");
    let total = server.line_containing("stats of all loops: ");
    assert_eq!(
        field(&total, "connections"),
        Some(CLIENTS.to_string().as_str()),
        "{total}"
    );

    let lines = stop(server);
    let last = summary(&lines);
    assert_eq!(field(last, "connections"), Some("40"), "{last}");
    assert_eq!(field(last, "closed"), Some("40"), "{last}");
    assert_eq!(field(last, "bytes"), Some(bytes.to_string().as_str()));
}

/// With several loops the connection limit is still the whole server's, and
/// the startup line says what set it: `--threads 2 --max-connections 100`
/// serves 100.
#[test]
fn threads_announce_the_connection_limit_of_the_whole_server() {
    let mut server = EchoServer::start(
        &[
            "--threads",
            "2",
            "--max-connections",
            "100",
            "-l",
            "127.0.0.1:0",
        ],
        None,
    );
    let line = server.line_containing("serving at most");
    assert!(
        line.contains("serving at most 100 connections (set by --max-connections;"),
        "{line}"
    );
    stop(server);
}

/// By default the process has exactly one thread: no helper thread for
/// signals, timers or logging (the tour, "One thread").
#[test]
fn one_thread_by_default() {
    let mut server = EchoServer::start(&["-l", "127.0.0.1:0"], None);
    let addr = server.listening(1)[0];
    tcp_echo(addr, b"single-threaded\n");
    server.signal(libc::SIGUSR1);
    server.line_containing("stats: ");
    assert_eq!(threads(server.pid()), 1);
    stop(server);
}

// --- Socket activation ----------------------------------------------------------

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

// --- Stats ----------------------------------------------------------------------

/// SIGUSR1 logs a `stats:` line with the counters so far, and the server
/// goes on serving.
#[test]
fn sigusr1_logs_stats_and_keeps_serving() {
    let mut server = EchoServer::start(&["-l", "127.0.0.1:0"], None);
    let addr = server.listening(1)[0];
    tcp_echo(addr, b"hello");
    server.signal(libc::SIGUSR1);
    let line = server.line_containing("stats: connections=");
    assert_eq!(field(&line, "connections"), Some("1"), "{line}");
    assert_eq!(field(&line, "bytes"), Some("5"), "{line}");
    let mut rng = StdRng::seed_from_u64(0x5a7);
    echo_ok(
        addr,
        &random_bytes(0x5a7, 10_000),
        &mut rng,
        "after SIGUSR1",
    );
    let lines = stop(server);
    assert_eq!(field(summary(&lines), "connections"), Some("2"));
}

/// `--stats-interval 0.2` logs `stats:` lines on its own, again and again.
#[test]
fn stats_interval_logs_periodically() {
    // Before the start: the loop's clock, and so each interval, starts later.
    let started = Instant::now();
    let mut server = EchoServer::start(&["--stats-interval", "0.2", "-l", "127.0.0.1:0"], None);
    server.listening(1);
    server.line_containing("stats: connections=");
    server.line_containing("stats: connections=");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "two lines within {:?}: not one interval apart",
        started.elapsed()
    );
    stop(server);
}
