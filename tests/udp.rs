//! What a forged UDP source can make the server send: a loop with another
//! echo server ends after one burst, other sources cannot reset or raise a
//! source's limit, a total rate caps a flood from many sources, and the
//! datagrams the kernel drops are counted (`SO_RXQ_OVFL`).
//!
//! Everything runs over real loopback sockets. All of 127.0.0.0/8 is
//! loopback on Linux, so one test can be many sources by binding
//! 127.0.0.x addresses. Every loop is bounded in count and every wait has
//! a timeout.

mod common;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{count, process_state, server_with, wait_until, EchoServer, IO_TIMEOUT};
use mio_echo::Config;

/// How long a quiet socket means "nothing more is coming" on loopback.
const QUIET: Duration = Duration::from_millis(300);

/// An in-process server with one UDP socket on a free loopback port.
fn udp_server(rate_per_source: u32, rate: u32) -> mio_echo::Running {
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
    let server = udp_server(BURST, 1_000_000);
    let target = server.udp_addrs()[0];
    let peer = socket_on(Ipv4Addr::LOCALHOST, QUIET);
    peer.connect(target).unwrap();

    let started = Instant::now();
    let mut last = started;
    peer.send(b"one forged datagram").unwrap();
    let mut replies = 0u64;
    let mut buf = [0u8; 64];
    // Today's code answered 1,000 a second to one source and port; the
    // bound stops a loop that never ends.
    while replies < 100_000 {
        match peer.recv(&mut buf) {
            Ok(n) => {
                replies += 1;
                last = Instant::now();
                peer.send(&buf[..n]).unwrap();
            }
            Err(e) if timed_out(&e) => break,
            Err(e) => panic!("receive: {e}"),
        }
    }
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
    let server = udp_server(RATE, 10_000_000);
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
    let server = udp_server(1_000, RATE);
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
