//! `echo-bench`: parse the command line, run one load mode, print its
//! report and set the exit status.
//!
//! Everything else lives in the library; read `src/lib.rs` first.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use echo_bench::{churn, connections, dial, pingpong, stream, udp, LoadError, Outcome};
use mio_echo_cli::usage_error;
use mio_echo_net::DEFAULT_ADDR;

/// A load generator for any TCP echo server (RFC 862) that checks every
/// byte it gets back.
///
/// One mio poll loop drives every connection (one thread unless --threads
/// says otherwise). Each mode prints a summary, then one line of
/// `result key=value ...` for scripts.
///
/// Exit status: 0 if every byte came back unchanged; 1 if any connection
/// failed (refused, reset, closed early, a byte differed, or silent for
/// --timeout) or the load could not start; 2 for bad arguments.
#[derive(Parser, Debug)]
#[command(name = "echo-bench", version)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Messages out and back: echoes/s, MiB/s and round-trip percentiles.
    ///
    /// Every connection sends a --size message and waits for its echo (or
    /// keeps --depth messages in flight), for --warmup and then --duration
    /// seconds. Only the --duration window is counted.
    Pingpong(PingpongArgs),
    /// Full-duplex bulk transfer: MiB/s.
    ///
    /// Every connection writes its share of --bytes while reading the echo,
    /// then half-closes and reads to the server's EOF.
    Stream(StreamArgs),
    /// Many connections at once: time to open, one echo each, then hold.
    ///
    /// Binds source addresses 127.0.0.1, 127.0.0.2, ... so the count is not
    /// limited by the ephemeral port range. One process can hold about as
    /// many connections as its open-file limit (raised to the hard limit).
    Connections(ConnectionsArgs),
    /// Connections opened, echoed over and closed at a rate: connect and
    /// first-echo percentiles.
    ///
    /// Connection k is due k/--rate seconds in (an open loop: a slow server
    /// does not slow the schedule). Each connects, sends one --size
    /// message, checks the echo, half-closes and expects exactly the
    /// server's EOF. Connect time runs from the intended start, so a late
    /// start counts against the server. --timeout bounds each step: the
    /// handshake, the echo, and the EOF.
    Churn(ChurnArgs),
    /// Datagrams out and back (RFC 862 over UDP): datagrams/s, loss and
    /// latency.
    ///
    /// With --rate, an open loop: datagrams go out on schedule over the
    /// sockets in turn, and latency runs from each one's intended time.
    /// Without, ping-pong: one datagram in flight per socket. Each carries
    /// a sequence number and checked bytes; corrupt, duplicate or unknown
    /// echoes fail the run, loss is reported. --addr is the server's UDP
    /// address; --timeout is how long to wait for the last echoes after
    /// sending (in ping-pong, also for each echo before the socket sends
    /// its next datagram: that one counts as lost).
    ///
    /// mio-echo's echo-server limits its UDP replies by default to 100/s
    /// per source address and 10000/s in all, and every socket here sends
    /// from one address: for a benchmark start it with
    /// `-u ADDR --udp-rate-per-source 10000000 --udp-rate 10000000`, or the
    /// loss measured is the limit's.
    Udp(UdpArgs),
}

/// Options every mode takes.
#[derive(Args, Debug)]
struct Server {
    /// The echo server, as IP:PORT (`[::1]:PORT` for IPv6).
    #[arg(short, long, value_name = "ADDR", default_value = DEFAULT_ADDR,
          value_parser = parse_addr)]
    addr: SocketAddr,

    /// How many seconds a connection may take to open, and how long the
    /// server may leave it without an echo, before it counts as failed.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = mio_echo_cli::positive_secs,
          allow_negative_numbers = true)]
    timeout: Duration,
}

#[derive(Args, Debug)]
struct PingpongArgs {
    #[command(flatten)]
    server: Server,

    /// Connections, all busy at once.
    #[arg(short, long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,

    /// Bytes per message (K and M suffixes: 1K = 1024).
    #[arg(short, long, value_name = "BYTES", default_value = "64", value_parser = mio_echo_cli::bytes)]
    size: u64,

    /// Messages in flight per connection (1: strict ping-pong).
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=pingpong::MAX_DEPTH as i64))]
    depth: u32,

    /// Seconds to measure, after the warm-up.
    #[arg(short, long, value_name = "SECS", default_value = "5",
          value_parser = mio_echo_cli::positive_secs, allow_negative_numbers = true)]
    duration: Duration,

    /// Seconds of full load before measuring starts.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = mio_echo_cli::secs,
          allow_negative_numbers = true)]
    warmup: Duration,

    /// Poll loops (threads) to spread the connections over.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
}

#[derive(Args, Debug)]
struct StreamArgs {
    #[command(flatten)]
    server: Server,

    /// Bytes to send in all, split evenly over the connections; each comes
    /// back once (K, M and G suffixes: 1K = 1024).
    #[arg(short, long, value_name = "BYTES", default_value = "1G", value_parser = mio_echo_cli::bytes)]
    bytes: u64,

    /// Connections sharing the bytes, all transferring at once.
    #[arg(short, long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,

    /// The longest the whole transfer may take, in seconds; connections
    /// unfinished by then count as failed.
    #[arg(long, value_name = "SECS", default_value = "120",
          value_parser = mio_echo_cli::positive_secs, allow_negative_numbers = true)]
    max_time: Duration,

    /// Poll loops (threads) to spread the connections over.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
}

#[derive(Args, Debug)]
struct ConnectionsArgs {
    #[command(flatten)]
    server: Server,

    /// Connections to open and hold at once.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,

    /// Seconds to hold the connections open after the echo.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = mio_echo_cli::secs,
          allow_negative_numbers = true)]
    hold: Duration,

    /// Source addresses 127.0.0.1 to 127.0.0.K to bind, in turn (default:
    /// the kernel's choice up to 10000 connections, past that one address
    /// per 10000). For an IPv4 loopback server only.
    #[arg(long, value_name = "K",
          value_parser = clap::value_parser!(u32).range(1..=dial::MAX_SOURCES as i64))]
    sources: Option<u32>,

    /// Bytes in each connection's one message.
    #[arg(short, long, value_name = "BYTES", default_value = "32", value_parser = mio_echo_cli::bytes)]
    size: u64,
}

#[derive(Args, Debug)]
struct ChurnArgs {
    #[command(flatten)]
    server: Server,

    /// Connections to start per second.
    #[arg(short, long, value_name = "PER_SEC", default_value_t = 100.0)]
    rate: f64,

    /// Seconds to start connections for.
    #[arg(short, long, value_name = "SECS", default_value = "5",
          value_parser = mio_echo_cli::positive_secs, allow_negative_numbers = true)]
    duration: Duration,

    /// The most connections open at once. A start that finds this many
    /// open waits for a close, and is counted: the server did not keep up.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,

    /// Bytes in each connection's one message.
    #[arg(short, long, value_name = "BYTES", default_value = "32", value_parser = mio_echo_cli::bytes)]
    size: u64,

    /// Source addresses 127.0.0.1 to 127.0.0.K to bind, in turn. We
    /// half-close first, so each closed connection holds its port on our
    /// side in TIME_WAIT: for 60 s, or about 2 s where Linux reuses
    /// TIME_WAIT ports (net.ipv4.tcp_tw_reuse 1, or 2, the default, for
    /// loopback). One address holds about 10000 ports comfortably: some
    /// 166 connections/s without reuse, thousands with it. Default: one
    /// address per 10000 connections started within that hold (--rate x
    /// min(--duration, hold)). For an IPv4 loopback server only.
    #[arg(long, value_name = "K",
          value_parser = clap::value_parser!(u32).range(1..=dial::MAX_SOURCES as i64))]
    sources: Option<u32>,
}

#[derive(Args, Debug)]
struct UdpArgs {
    #[command(flatten)]
    server: Server,

    /// Datagrams per second over all sockets (default: ping-pong, one in
    /// flight per socket).
    #[arg(short, long, value_name = "PER_SEC")]
    rate: Option<f64>,

    /// Sockets to send from, each connected to the server.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    sockets: u32,

    /// Bytes per datagram, its 8-byte sequence number included (at most
    /// 65507).
    #[arg(short, long, value_name = "BYTES", default_value = "64", value_parser = mio_echo_cli::bytes)]
    size: u64,

    /// Seconds to send for.
    #[arg(short, long, value_name = "SECS", default_value = "5",
          value_parser = mio_echo_cli::positive_secs, allow_negative_numbers = true)]
    duration: Duration,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "expected IP:PORT, such as 127.0.0.1:7007 or [::1]:7007".to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // Quiet unless asked: RUST_LOG=debug names every failed connection,
    // RUST_LOG=info marks the phases of a `connections` run.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    match cli.mode {
        Mode::Pingpong(a) => finish(pingpong::run(&pingpong::Options {
            addr: a.server.addr,
            connections: a.connections as usize,
            size: usize::try_from(a.size).unwrap_or(usize::MAX),
            depth: a.depth as usize,
            duration: a.duration,
            warmup: a.warmup,
            timeout: a.server.timeout,
            threads: a.threads as usize,
        })),
        Mode::Stream(a) => finish(stream::run(&stream::Options {
            addr: a.server.addr,
            bytes: a.bytes,
            connections: a.connections as usize,
            timeout: a.server.timeout,
            max_time: a.max_time,
            threads: a.threads as usize,
        })),
        Mode::Connections(a) => finish(connections::run(&connections::Options {
            addr: a.server.addr,
            count: a.count as usize,
            hold: a.hold,
            sources: a.sources.unwrap_or(0) as usize,
            size: usize::try_from(a.size).unwrap_or(usize::MAX),
            timeout: a.server.timeout,
        })),
        Mode::Churn(a) => finish(churn::run(&churn::Options {
            addr: a.server.addr,
            rate: a.rate,
            duration: a.duration,
            concurrency: a.concurrency as usize,
            size: usize::try_from(a.size).unwrap_or(usize::MAX),
            sources: a.sources.unwrap_or(0) as usize,
            timeout: a.server.timeout,
        })),
        Mode::Udp(a) => finish(udp::run(&udp::Options {
            addr: a.server.addr,
            rate: a.rate,
            sockets: a.sockets as usize,
            size: usize::try_from(a.size).unwrap_or(usize::MAX),
            duration: a.duration,
            timeout: a.server.timeout,
        })),
    }
}

/// Prints the report and the result line on standard output; if any
/// connection failed, one `error:` line on standard error and status 1.
fn finish(result: Result<impl Outcome, LoadError>) -> ExitCode {
    match result {
        Ok(report) => {
            // Not `print!`: it panics if standard output is closed.
            let mut out = io::stdout().lock();
            let _ = write!(out, "{report}");
            let _ = writeln!(out, "{}", report.result_line());
            let _ = out.flush();
            let failures = report.failures();
            if failures.total() == 0 {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr().lock(), "error: {}", report.failure_summary());
            ExitCode::FAILURE
        }
        // Options that parsed but do not fit together: a usage error.
        Err(LoadError::Config(what)) => {
            let _ = writeln!(io::stderr().lock(), "error: {what} (see --help)");
            ExitCode::from(2)
        }
        Err(e) => {
            let _ = writeln!(io::stderr().lock(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}
