//! UDP echo and its guards: a datagram of any size comes back whole, from
//! one socket that `-u` logs with its real port; datagrams from a
//! privileged port or from the served port get no reply; a UDP flood does
//! not starve TCP clients, and UDP's budget lets a waiting one in. And what
//! a forged UDP source can make the server send: a loop with another
//! echo server ends after one burst, other sources cannot reset or raise a
//! source's limit, a total rate caps a flood from many sources, and the
//! datagrams the kernel drops are counted (`SO_RXQ_OVFL`).
//!
//! Socket activation of a UDP socket is pinned in `socket_activation.rs`.
//!
//! Everything runs over real loopback sockets. All of 127.0.0.0/8 is
//! loopback on Linux, so one test can be many sources by binding
//! 127.0.0.x addresses. Every loop is bounded in count and every wait has
//! a timeout.
// Some tests here need Linux (/proc, network namespaces); elsewhere they
// are compiled out, and what only they use goes unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

mod common;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use common::process_state;
use common::{
    bounce_until_quiet, connect, count, field, random_bytes, server_with, stop, summary,
    udp_client, udp_round_trip, wait_until, EchoServer, IO_TIMEOUT,
};
use mio_echo::Config;

/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// How long a quiet socket means "nothing more is coming" on loopback.
const QUIET: Duration = Duration::from_millis(300);

/// An in-process server on free loopback ports: TCP and UDP.
fn udp_server() -> mio_echo::Running {
    server_with(Config {
        udp: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        ..Config::loopback()
    })
}

/// An in-process server with one UDP socket on a free loopback port and
/// the given rates.
fn udp_server_with_rates(rate_per_source: u32, rate: u32) -> mio_echo::Running {
    server_with(Config {
        udp: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        udp_rate_per_source: rate_per_source,
        udp_rate: rate,
        ..Config::loopback()
    })
}

/// A UDP socket on `ip` (any port) with `timeout` on every receive.
fn socket_on(ip: Ipv4Addr, timeout: Duration) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    socket.set_read_timeout(Some(timeout)).unwrap();
    socket
}

/// The `n`th loopback address after 127.0.0.1 (127.0.0.2, 127.0.0.3, ...,
/// skipping the .0 and .255 of each /24).
fn other_source(n: u32) -> Ipv4Addr {
    let (block, host) = (n / 254, n % 254 + 1);
    Ipv4Addr::new(
        127,
        (1 + block / 256) as u8,
        (block % 256) as u8,
        host as u8,
    )
}

/// Whether a receive error is a timeout (the read timed out, nothing came).
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads every datagram already waiting on `socket` (non-blocking) and
/// returns how many there were.
fn drain(socket: &UdpSocket) -> u64 {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let mut n = 0;
    // Bounded by what a receive queue holds.
    while n < 1_000_000 {
        match socket.recv(&mut buf) {
            Ok(_) => n += 1,
            Err(e) if timed_out(&e) => break,
            Err(e) => panic!("receive: {e}"),
        }
    }
    socket.set_nonblocking(false).unwrap();
    n
}

/// Sends numbered sync datagrams on `socket` (connected to the server), one
/// per `wait` without a reply, until the newest one is answered; returns how
/// many were sent. The server has then read every datagram sent to it
/// before, and learnt how many of them the kernel dropped.
fn sync(socket: &UdpSocket, wait: Duration, tries: u64) -> u64 {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    for sent in 1..=tries {
        socket.send(&sent.to_le_bytes()).unwrap();
        // Replies to earlier tries may come first; bounded by the tries.
        for _ in 0..=tries {
            match socket.recv(&mut buf) {
                Ok(8) if buf[..8] == sent.to_le_bytes() => return sent,
                Ok(_) => {}
                Err(e) if timed_out(&e) => break,
                Err(e) => panic!("receive: {e}"),
            }
        }
    }
    panic!("no reply to {tries} sync datagrams");
}

/// The most replies a token bucket of `rate` a second (and as large a
/// burst) can give over `elapsed`: the burst, the refill, and one token for
/// the server's clock being read once per pass, up to a pass before ours.
fn bucket_bound(rate: u32, elapsed: Duration) -> u64 {
    u64::from(rate) + (f64::from(rate) * elapsed.as_secs_f64()).ceil() as u64 + 1
}

/// A loop started by one datagram with another echo server (this test,
/// echoing every reply back) costs at most the per-source burst and ends
/// within a second.
#[test]
fn a_loop_with_another_echo_server_ends_after_one_burst() {
    const BURST: u32 = 20;
    let server = udp_server_with_rates(BURST, 1_000_000);
    let target = server.udp_addrs()[0];
    let peer = socket_on(Ipv4Addr::LOCALHOST, QUIET);
    peer.connect(target).unwrap();

    let started = Instant::now();
    peer.send(b"one forged datagram").unwrap();
    // Today's code answered 1,000 a second to one source and port; the
    // bound stops a loop that never ends.
    let (replies, last) = bounce_until_quiet(&peer, 100_000);
    let lasted = last - started;
    let udp = server.stop().unwrap().udp;
    eprintln!("loop: {replies} replies in {lasted:?}; {udp:?}");
    assert!(
        replies <= u64::from(BURST),
        "the loop got {replies} replies, more than the burst of {BURST}"
    );
    assert!(
        lasted < Duration::from_secs(1),
        "the loop lasted {lasted:?}"
    );
    assert_eq!(udp.echoed, replies, "{udp:?}");
    assert_eq!(
        udp.limited, 1,
        "the loop ended at its first refusal: {udp:?}"
    );
}

/// While one source sends far more than its burst, datagrams from
/// thousands of other sources (other addresses, other ports) neither reset
/// nor raise its limit: it gets at most its burst plus the refill.
#[test]
fn other_sources_cannot_reset_or_raise_a_sources_limit() {
    const RATE: u32 = 50;
    /// Far more than the table's slots, so that some share the victim's.
    const OTHERS: u32 = 20_000;
    /// One datagram from the victim after every this many others.
    const EVERY: u32 = 20;
    let server = udp_server_with_rates(RATE, 10_000_000);
    let target = server.udp_addrs()[0];
    let victim = socket_on(Ipv4Addr::LOCALHOST, QUIET);
    victim.connect(target).unwrap();

    let started = Instant::now();
    let mut victim_sent = 0u64;
    let mut others_answered = 0u64;
    let mut buf = [0u8; 64];
    for n in 0..OTHERS {
        if n % EVERY == 0 {
            victim.send(b"victim").unwrap();
            victim_sent += 1;
        }
        // Each other source waits for its reply, which paces the test to
        // the server and keeps every queue short. One that shares the
        // victim's bucket may find it empty and get none.
        let other = socket_on(other_source(n), Duration::from_millis(100));
        other.send_to(b"other", target).unwrap();
        match other.recv(&mut buf) {
            Ok(_) => others_answered += 1,
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("receive: {e}"),
        }
    }
    // Every reply to the victim is in its queue once the server has read
    // all we sent: loopback delivers a reply as it is sent.
    let probe = socket_on(other_source(OTHERS), QUIET);
    probe.connect(target).unwrap();
    sync(&probe, Duration::from_millis(100), 50);
    let elapsed = started.elapsed();
    let victim_replies = drain(&victim);
    let udp = server.stop().unwrap().udp;
    let bound = bucket_bound(RATE, elapsed);
    eprintln!(
        "victim: {victim_sent} sent, {victim_replies} answered (bound {bound}) in \
         {elapsed:?}; others: {OTHERS} sent, {others_answered} answered; {udp:?}"
    );
    assert!(
        victim_replies <= bound,
        "the victim got {victim_replies} replies in {elapsed:?}, more than {bound}"
    );
    assert!(victim_replies >= u64::from(RATE), "{victim_replies}");
    // Most other sources had a slot of their own.
    assert!(
        others_answered >= u64::from(OTHERS) * 9 / 10,
        "{others_answered}"
    );
}

/// Many sources, each within its own rate, together get at most the total
/// rate's burst plus its refill; every other datagram is counted as
/// `limited`, and every datagram sent is counted exactly once.
#[test]
fn a_flood_from_many_sources_is_capped_by_the_total_rate() {
    const RATE: u32 = 200;
    const SOURCES: u32 = 2_000;
    let server = udp_server_with_rates(1_000, RATE);
    let target = server.udp_addrs()[0];
    let sources: Vec<UdpSocket> = (0..SOURCES)
        .map(|n| socket_on(other_source(n), QUIET))
        .collect();

    let started = Instant::now();
    for socket in &sources {
        socket.send_to(b"flood", target).unwrap();
    }
    // The total bucket is empty now and gets a token every 1/RATE s, so a
    // try now and then is answered; the tries that are not are counted
    // like any other datagram.
    let probe = socket_on(Ipv4Addr::LOCALHOST, QUIET);
    probe.connect(target).unwrap();
    let tries = sync(&probe, Duration::from_millis(20), 500);
    let elapsed = started.elapsed();
    let sent = u64::from(SOURCES) + tries;
    let replies: u64 = sources.iter().map(drain).sum::<u64>() + drain(&probe) + 1;
    let udp = server.stop().unwrap().udp;
    let bound = bucket_bound(RATE, elapsed);
    eprintln!("{sent} sent, {replies} answered (bound {bound}) in {elapsed:?}; {udp:?}");
    assert_eq!(udp.echoed, replies, "{udp:?}");
    assert!(
        udp.echoed <= bound,
        "{} replies in {elapsed:?}, more than {bound}: {udp:?}",
        udp.echoed
    );
    assert!(udp.limited > 0, "{udp:?}");
    let read = sent - udp.overflow;
    assert_eq!(
        udp.echoed + udp.limited + udp.refused + udp.dropped,
        read,
        "every datagram read is counted once: {udp:?}"
    );
}

/// Datagrams the kernel drops while the server is stopped and its receive
/// queue is full are counted as `udp_overflow`, exactly: with what was
/// echoed they add up to what was sent.
#[cfg(target_os = "linux")]
#[test]
fn datagrams_dropped_by_a_full_receive_queue_are_counted() {
    const SENT: u64 = 5_000;
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
        None,
    );
    let udp = server.sockets(2).into_iter().find(|s| s.udp).unwrap().addr;
    let pid = server.pid();

    server.signal(libc::SIGSTOP);
    wait_until("the server to stop", || process_state(pid) == 'T');
    // Far more than the default receive queue (212,992 bytes) holds. The
    // replies are never read: they overflow our queue, not the server's.
    let flood = socket_on(Ipv4Addr::LOCALHOST, IO_TIMEOUT);
    flood.connect(udp).unwrap();
    for _ in 0..SENT {
        flood.send(&[0x55u8; 32]).unwrap();
    }
    server.signal(libc::SIGCONT);
    // The first tries may find the queue still full and be dropped too;
    // the one answered was queued after every drop, so it carries the
    // whole count.
    let probe = socket_on(Ipv4Addr::LOCALHOST, IO_TIMEOUT);
    probe.connect(udp).unwrap();
    let tries = sync(&probe, Duration::from_millis(100), 100);

    server.signal(libc::SIGTERM);
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{status}: {lines:#?}");
    let summary = lines
        .iter()
        .rev()
        .find(|l| l.contains("stopped: "))
        .unwrap_or_else(|| panic!("no summary line: {lines:#?}"));
    eprintln!("{SENT} + {tries} sent; {summary}");
    let overflow = count(summary, "udp_overflow");
    assert!(overflow > 0, "{summary}");
    let counted = count(summary, "udp_echoed")
        + count(summary, "udp_limited")
        + count(summary, "udp_refused")
        + count(summary, "udp_dropped")
        + overflow;
    assert_eq!(
        counted,
        SENT + tries,
        "every datagram sent is counted once: {summary}"
    );
}

// --- Echo and its guards, in process ---------------------------------------

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
#[cfg(target_os = "linux")]
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

// --- The binary -------------------------------------------------------------

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
