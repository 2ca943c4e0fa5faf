//! Round-trip latency through the echo server, one connection, one message
//! in flight: write a message, read its echo back.
//!
//! The server runs in this process on a second thread (see
//! `Server::spawn`), so these are multi-threaded-process figures: glibc's
//! `recv`/`send` take their cancellable path and cost more instructions
//! than in the single-threaded `echo-server` binary. Compare servers
//! measured the same way, in the same run.
//!
//! Run: `cargo bench --bench latency`; criterion writes its HTML report to
//! `target/criterion/report/index.html`.

use std::io::{Read, Write};
use std::net::TcpStream;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mio_echo::{Config, Server};

/// Message sizes: a small request, a page, a full read buffer and more.
const SIZES: [usize; 3] = [64, 4 * 1024, 64 * 1024];

fn round_trip(c: &mut Criterion) {
    let server = Server::bind(Config::loopback())
        .expect("bind 127.0.0.1:0")
        .spawn()
        .expect("start the server thread");
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");

    let mut group = c.benchmark_group("round_trip");
    for size in SIZES {
        let message: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut echo = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("mio-echo", size), &size, |b, _| {
            b.iter(|| {
                stream.write_all(&message).expect("send");
                stream.read_exact(&mut echo).expect("echo");
            })
        });
        assert_eq!(echo, message, "the echo differs from the message");
    }
    group.finish();
    drop(stream);
    server.stop().expect("stop the server");
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
