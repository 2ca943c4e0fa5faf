//! `echo-bench`: parse the command line, run one load mode, print its
//! report and set the exit status.
//!
//! Everything else lives in the library; read `src/lib.rs` first.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use echo_bench::{connections, dial, pingpong, stream, LoadError, Outcome, Percentiles};
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
    /// seconds. Only the --duration window is counted. These percentiles
    /// are closed-loop: a stall delays the load too, and counts once.
    ///
    /// With --rate R: an open loop. R messages per second in all, spread
    /// evenly over the connections, each sent when due (pipelined, up to
    /// --depth in flight) and timed from when it was due: the latency a
    /// client sending at R would see, and whether the server kept up.
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

    /// Messages in flight per connection (default 1: strict ping-pong);
    /// with --rate, the most in flight before a connection is behind
    /// (default 1024).
    #[arg(long, value_name = "K",
          value_parser = clap::value_parser!(u32).range(1..=pingpong::MAX_DEPTH as i64))]
    depth: Option<u32>,

    /// Open loop: R messages per second over all connections, each timed
    /// from when it was due.
    #[arg(short, long, value_name = "R", value_parser = parse_rate, allow_negative_numbers = true)]
    rate: Option<f64>,

    #[command(flatten)]
    percentiles: PercentilesArg,

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

    #[command(flatten)]
    percentiles: PercentilesArg,
}

/// `--percentiles`, for every mode that reports latency.
#[derive(Args, Debug)]
struct PercentilesArg {
    /// Latency percentiles to report, comma-separated, each more than 0
    /// and at most 100 (result keys p50_us, p99_9_us, ...).
    #[arg(long, value_name = "LIST", default_value = "50,99,99.9",
          value_parser = Percentiles::parse, allow_hyphen_values = true)]
    percentiles: Percentiles,
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

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= pingpong::MAX_RATE => Ok(r),
        _ => Err(format!(
            "expected messages per second, more than 0 and at most {:e}",
            pingpong::MAX_RATE
        )),
    }
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
            depth: a.depth.map_or(
                if a.rate.is_some() {
                    pingpong::RATE_DEPTH
                } else {
                    1
                },
                |d| d as usize,
            ),
            rate: a.rate,
            percentiles: a.percentiles.percentiles,
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
            percentiles: a.percentiles.percentiles,
        })),
        Mode::Connections(a) => finish(connections::run(&connections::Options {
            addr: a.server.addr,
            count: a.count as usize,
            hold: a.hold,
            sources: a.sources.unwrap_or(0) as usize,
            size: usize::try_from(a.size).unwrap_or(usize::MAX),
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
            let _ = writeln!(
                io::stderr().lock(),
                "error: {}",
                failures.summary(report.connections())
            );
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
