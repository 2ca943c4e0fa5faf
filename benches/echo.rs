//! mio-echo beside the servers people would otherwise pick, in one run.
//!
//! Servers (see `benches/peers/`): `mio-echo` (this crate's loop), `epoll`
//! (raw libc epoll, the floor), `tokio` (`current_thread`, one task and
//! `tokio::io::copy` per connection) and `threads` (a blocking std thread
//! per connection). Each runs in this process on a thread of its own, and
//! the client is this bench's thread, so every figure is from a
//! multi-threaded process (the tour, "One thread") for all
//! servers alike. For single-process figures use `echo-bench` against
//! `echo-server` and `examples/peer.rs` (see BENCHMARKS.md).
//!
//! Groups:
//! * `round_trip/SERVER/SIZE`: one connection, one message in flight,
//!   64 B, 4 KiB and 64 KiB: write it, read its echo.
//! * `throughput/SERVER/N`: N connections each send a 64-byte message, then
//!   every echo is read: N echoes per iteration, reported as elements/s.
//!
//! Run: `cargo bench --bench echo`; criterion writes its HTML report, with
//! plots, to `target/criterion/report/index.html`. Filter with a regex:
//! `cargo bench --bench echo -- round_trip/mio-echo`.

mod peers;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mio_echo::{Config, Running, Server};

const SIZES: [usize; 3] = [64, 4 * 1024, 64 * 1024];
const CONNECTIONS: [usize; 3] = [1, 10, 100];
const SMALL: usize = 64;

/// Every server under test, started once for the whole run.
struct Servers {
    _mio: Running,
    all: Vec<(&'static str, SocketAddr)>,
}

fn start() -> Servers {
    let mio = Server::bind(Config::loopback())
        .expect("bind 127.0.0.1:0")
        .spawn()
        .expect("start mio-echo");
    let mut all = vec![("mio-echo", mio.addr())];
    for name in peers::NAMES {
        all.push((name, peers::spawn(name)));
    }
    Servers { _mio: mio, all }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

fn round_trip(c: &mut Criterion, servers: &Servers) {
    let mut group = c.benchmark_group("round_trip");
    for size in SIZES {
        let message: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let mut echo = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        for &(name, addr) in &servers.all {
            let mut stream = connect(addr);
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| {
                    stream.write_all(&message).expect("send");
                    stream.read_exact(&mut echo).expect("echo");
                })
            });
            assert_eq!(echo, message, "{name}: the echo differs from the message");
        }
    }
    group.finish();
}

fn throughput(c: &mut Criterion, servers: &Servers) {
    let mut group = c.benchmark_group("throughput");
    let message = [0x5au8; SMALL];
    let mut echo = [0u8; SMALL];
    for n in CONNECTIONS {
        group.throughput(Throughput::Elements(n as u64));
        for &(name, addr) in &servers.all {
            let mut streams: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    for s in &mut streams {
                        s.write_all(&message).expect("send");
                    }
                    for s in &mut streams {
                        s.read_exact(&mut echo).expect("echo");
                    }
                })
            });
            assert_eq!(echo, message, "{name}: the echo differs from the message");
        }
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let servers = start();
    round_trip(c, &servers);
    throughput(c, &servers);
}

criterion_group!(echo, benches);
criterion_main!(echo);
