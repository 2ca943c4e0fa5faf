//! Back-pressure and fairness: a peer that never reads is pushed back (the
//! server stops reading at `max_buffer`) and gets every byte once it reads;
//! a client that pauses until pushed back is read again by the server on its
//! own; and a stream flat out beside small round trips does not starve them.
//!
//! The memory a slow reader may cost in all is pinned in `memory.rs`; a UDP
//! flood beside TCP clients in `udp.rs`. Figures are printed to standard
//! error; see them with `cargo test --test backpressure -- --nocapture`.
// Some tests here need Linux (/proc, network namespaces); elsewhere they
// are compiled out, and what only they use goes unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_same_bytes, check_cyclic, closed_by_peer, connect, connect_small_window, count,
    live_stats, random_bytes, round_trip, server, server_command, server_with, start_server,
    stop_server, wait_until, SetOnDrop, DEADLINE, KIB, MIB,
};
#[cfg(target_os = "linux")]
use common::{kernel_socket, rss, tcp_socket};
use mio_echo::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------
// Back-pressure
// ---------------------------------------------------------------------------

/// A peer that writes without ever reading is pushed back within a few MiB
/// (the server stops reading at `--max-buffer`), costs the server less than
/// 8 MiB of memory, and gets every byte back once it reads; another
/// client's round trips go on meanwhile.
///
/// Without back-pressure the server would read on and queue the echo it
/// cannot send: the writer would never stall, all 256 MiB would go out and
/// the server's memory would grow by about as much (tried: the whole 256
/// MiB went out in half a second). The read-back at the end needs the
/// server to read again as its buffer drains; on Linux the writable event
/// that drains it also reports the bytes waiting, so that part holds even
/// without the server's explicit resume (tried).
#[cfg(target_os = "linux")]
#[test]
fn a_peer_that_never_reads_is_pushed_back_and_costs_the_server_little_memory() {
    const SEED: u64 = 0xF100D;
    // What the flooder attempts to send. It stops as soon as its writes
    // stall, which is the push-back: once the kernel's socket buffers both
    // ways and the server's 64 KiB are full, about 10 MiB on this machine.
    const ATTEMPT: usize = 256 * MIB;
    // A write that makes no progress for this long has stalled.
    const STALL: Duration = Duration::from_secs(1);
    const PING: usize = 64;
    const PINGS_HELD_BACK: usize = 50;
    let (mut server, addr) =
        start_server(server_command().args(["-l", "127.0.0.1:0", "--max-buffer", "64K"]));
    let pid = server.pid();

    // One round trip before the baseline, so the server's one-time costs
    // (its read buffer, the first page of its connection table) are in it.
    let pinger = connect(addr);
    round_trip(&pinger, b"warm-up").unwrap();
    let rss_before = rss(pid);

    let pattern = random_bytes(SEED, MIB);
    let flood = connect(addr);
    flood.set_write_timeout(Some(STALL)).unwrap();
    let me = flood.local_addr().unwrap();
    let stopped = AtomicBool::new(false);
    let pings = AtomicUsize::new(0);
    let flooding = Instant::now();
    let (written, stalled, pinged) = thread::scope(|scope| {
        let _stop = SetOnDrop(&stopped);
        let pinging = scope.spawn(|| -> Result<(), String> {
            let mut rng = StdRng::seed_from_u64(SEED);
            let started = Instant::now();
            while !stopped.load(SeqCst) && started.elapsed() < DEADLINE {
                let message = random_bytes(rng.random(), PING);
                round_trip(&pinger, &message).map_err(|e| {
                    format!(
                        "round trip {} during the flood (seed {SEED:#x}): {e}",
                        pings.load(SeqCst)
                    )
                })?;
                pings.fetch_add(1, SeqCst);
            }
            Ok(())
        });
        let mut written = 0;
        let mut stalled = false;
        while written < ATTEMPT {
            match (&flood).write(&pattern[written % pattern.len()..]) {
                Ok(n) => written += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    stalled = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("flood write after {written} bytes: {e}"),
            }
        }
        stopped.store(true, SeqCst);
        pinging.join().expect("pinger panicked").unwrap();
        (written, stalled, pings.load(SeqCst))
    });
    let flood_time = flooding.elapsed();
    assert!(
        stalled,
        "no back-pressure: all {written} bytes went out without a stall; server RSS \
         {rss_before} -> {} bytes",
        rss(pid)
    );
    assert!(
        pinged > 0,
        "no round trip completed during the {flood_time:?} of the flood"
    );

    // Held back, not merely slow: while 50 more round trips go through the
    // loop, the server reads no byte of the flood (its counter of bytes read
    // moves by exactly the pings) and leaves it waiting in its socket.
    let theirs = kernel_socket(addr, me).expect("the server's side of the flood");
    assert!(theirs.rx > 0, "the server left nothing unread: {theirs:?}");
    let before = count(&live_stats(&mut server), "bytes_in");
    let mut rng = StdRng::seed_from_u64(SEED + 1);
    for i in 0..PINGS_HELD_BACK {
        let message = random_bytes(rng.random(), PING);
        round_trip(&pinger, &message)
            .unwrap_or_else(|e| panic!("round trip {i} with the flooder held back: {e}"));
    }
    let after = count(&live_stats(&mut server), "bytes_in");
    assert_eq!(
        after - before,
        (PINGS_HELD_BACK * PING) as u64,
        "the server read from the flooder after pushing back"
    );
    let rss_held = rss(pid);
    let growth = rss_held.saturating_sub(rss_before);
    eprintln!(
        "back-pressure: the flooder stalled after {:.1} MiB of the {} MiB attempted ({:?}); \
         server RSS {} KiB -> {} KiB (+{} KiB); {} round trips during the flood; \
         {} bytes unread in the server's socket",
        written as f64 / MIB as f64,
        ATTEMPT / MIB,
        flood_time,
        rss_before / 1024,
        rss_held / 1024,
        growth / 1024,
        pinged,
        theirs.rx,
    );
    assert!(written < 64 * MIB, "pushed back only after {written} bytes");
    assert!(
        growth < 8 * MIB as u64,
        "the server's RSS grew by {growth} bytes under the flood"
    );

    // The flooder now reads: every byte it wrote comes back in order (the
    // server resumes reading as its buffer drains), then EOF after its FIN.
    let mut buf = vec![0u8; MIB];
    let mut got = 0;
    while got < written {
        let want = (written - got).min(buf.len());
        (&flood)
            .read_exact(&mut buf[..want])
            .unwrap_or_else(|e| panic!("reading back after {got} of {written} bytes: {e}"));
        check_cyclic(&pattern, got, &buf[..want]).unwrap();
        got += want;
    }
    flood.shutdown(Shutdown::Write).unwrap();
    assert!(closed_by_peer(&flood), "no EOF after the read-back");
    drop(pinger);

    let (status, _, last) = stop_server(server);
    assert_eq!(status.code(), Some(0), "{last}");
    let total = (7 + (pinged + PINGS_HELD_BACK) * PING + written) as u64;
    assert_eq!(count(&last, "bytes_in"), total, "{last}");
    assert_eq!(count(&last, "bytes"), total, "{last}");
}

/// A client that reads nothing until its own writes stall, then reads: it
/// gets every byte back, then EOF. By the stall the server has stopped
/// reading from it, its buffer full (`max_buffer`); once the client reads,
/// the server must start reading again by itself, since no new event
/// announces the bytes it left waiting in its socket.
#[cfg(target_os = "linux")]
#[test]
fn a_client_that_pauses_reading_until_pushed_back_gets_every_byte() {
    const SEED: u64 = 0xBAC;
    let server = server();
    let addr = server.addr();
    // Twice what the kernel buffers on both sides and the server's own
    // held between them on Linux loopback (about 7 MiB), so writes stall.
    let data = random_bytes(SEED, 16 * MIB);
    let stream = connect_small_window(addr, 8 * KIB);
    let me = stream.local_addr().unwrap();
    let mut writer = stream.try_clone().unwrap();
    let written = AtomicUsize::new(0);
    let echo = thread::scope(|scope| {
        let sending = scope.spawn(|| -> io::Result<()> {
            for chunk in data.chunks(64 * KIB) {
                writer.write_all(chunk)?;
                written.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            writer.shutdown(Shutdown::Write)
        });
        // Pushed back: the server leaves bytes unread on its side (its
        // buffer is full) and the writer has made no progress for 100 ms.
        // Or the writer is done (or failed), which the checks below report.
        let (mut last, mut still) = (usize::MAX, 0);
        let mut theirs = None;
        wait_until("the server pushes back on the client", || {
            let now = written.load(Ordering::SeqCst);
            (still, last) = if now == last {
                (still + 1, now)
            } else {
                (0, now)
            };
            let t = tcp_socket(addr, Some(me)).expect("the server's socket");
            theirs = Some(t);
            sending.is_finished() || (still >= 20 && t.rx > 0)
        });
        assert!(
            last < data.len(),
            "setup: no back-pressure; all {last} bytes went out, server side {theirs:?}"
        );
        let mut echo = Vec::with_capacity(data.len());
        let read = common::read_to_eof(&stream, &mut echo, 64 * KIB);
        let sent = sending.join().expect("writer thread panicked");
        sent.expect("sending");
        read.unwrap_or_else(|e| panic!("reading after {} bytes: {e}", echo.len()));
        echo
    });
    assert_same_bytes(&data, &echo, format_args!("seed {SEED:#x}"));
}

// ---------------------------------------------------------------------------
// Fairness
// ---------------------------------------------------------------------------

/// While one connection streams MiB-sized writes flat out (and reads its
/// echo), another connection's 4-byte round trips keep completing: all 500
/// of them finish while the stream is still running, every byte of both
/// checked.
///
/// This asserts progress, not latency (the 5 ms p99 target is measured with
/// the load tool on a release build); the p99 seen here is only printed. A
/// loop that served a busy connection until its socket ran dry for good, or
/// until it closed, would fail: the round trips would finish only after the
/// stream (which stops after 10 s at most). Removing only the 256 KiB budget
/// does not fail it on this machine (tried): the stream's socket still runs
/// dry now and then, and the round trips get through, but late (p99 about
/// 280 ms, worst 1.7 s, against about 10 ms with the budget). That is a
/// latency figure, for the load tool. The stream also keeps the budget's
/// yield and the ready list busy (hundreds of yields a second), and any
/// byte they lost or reordered would fail the stream's check.
#[test]
fn a_full_speed_stream_does_not_starve_small_round_trips() {
    const SEED: u64 = 0xFA1;
    const ROUND_TRIPS: usize = 500;
    const CHUNK: usize = MIB;
    // The stream's own bound: long past the round trips of a fair server.
    const STREAM_AT_MOST: Duration = Duration::from_secs(10);
    // Small reads (the server reads at most `max_buffer` per call) make a
    // stream the server cannot keep up with: the client refills the socket
    // faster than the server empties it, so the socket seldom runs dry and
    // the budget ends almost every pass. With the default 32 KiB reads this
    // machine drains a loopback stream faster than a client fills it, and
    // every pass would end on its own.
    let server = server_with(Config {
        max_buffer: KIB,
        ..Config::loopback()
    });
    let addr = server.addr();
    // Not a multiple of the chunk, so chunks start anywhere in it.
    let pattern = random_bytes(SEED, 4 * MIB + 17);
    let stream = connect(addr);
    let writer = stream.try_clone().unwrap();
    let done = AtomicBool::new(false);
    let echoed = AtomicUsize::new(0);
    let (latencies, during, still_streaming, sent, got) = thread::scope(|scope| {
        let _stop = SetOnDrop(&done);
        let sending = scope.spawn(|| -> io::Result<usize> {
            let mut writer = writer;
            let (mut sent, started) = (0, Instant::now());
            while !done.load(SeqCst) && started.elapsed() < STREAM_AT_MOST {
                let at = sent % pattern.len();
                let end = (at + CHUNK).min(pattern.len());
                writer.write_all(&pattern[at..end])?;
                sent += end - at;
            }
            writer.shutdown(Shutdown::Write)?;
            Ok(sent)
        });
        let receiving = scope.spawn(|| -> Result<usize, String> {
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0;
            loop {
                let n = match (&stream).read(&mut buf) {
                    Ok(0) => return Ok(got),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("stream read after {got} bytes: {e}")),
                };
                check_cyclic(&pattern, got, &buf[..n])?;
                got += n;
                echoed.store(got, SeqCst);
            }
        });
        wait_until("the stream is under way", || {
            echoed.load(SeqCst) >= 8 * MIB || receiving.is_finished()
        });

        let pinger = connect(addr);
        let mut rng = StdRng::seed_from_u64(SEED);
        let before = echoed.load(SeqCst);
        let mut latencies = Vec::with_capacity(ROUND_TRIPS);
        for i in 0..ROUND_TRIPS {
            let message: [u8; 4] = rng.random();
            let started = Instant::now();
            round_trip(&pinger, &message)
                .unwrap_or_else(|e| panic!("round trip {i} (seed {SEED:#x}): {e}"));
            latencies.push(started.elapsed());
        }
        let during = echoed.load(SeqCst) - before;
        let still_streaming = !sending.is_finished();
        done.store(true, SeqCst);
        let sent = sending.join().expect("sender panicked").expect("sending");
        let got = receiving.join().expect("receiver panicked").unwrap();
        (latencies, during, still_streaming, sent, got)
    });
    let mut sorted = latencies.clone();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    eprintln!(
        "fairness (debug build, in-process server): {} round trips of 4 bytes beside a stream \
         that echoed {:.0} MiB meanwhile ({:.0} MiB in all); p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        during as f64 / MIB as f64,
        got as f64 / MIB as f64,
        at(0.5),
        at(0.99),
        at(1.0),
    );
    assert!(
        still_streaming,
        "the stream ended before the round trips did: they waited for it"
    );
    assert!(
        during > 0,
        "the stream made no progress during the round trips"
    );
    assert_eq!(got, sent, "the stream's echo ended early");
    let summary = server.stop().unwrap();
    assert_eq!(summary.bytes_in, (sent + 4 * ROUND_TRIPS) as u64);
    assert_eq!(summary.bytes, summary.bytes_in);
}
