//! `echo-bench`: parse the command line, run one load mode, print its
//! report and set the exit status.
//!
//! Everything else lives in the library; read `src/lib.rs` first.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use echo_bench::{
    churn, connections, dial, json, pingpong, progress, stream, target, udp, LoadError, Outcome,
    Percentiles,
};
use mio_echo_net::{parse_socket_addr, DEFAULT_ADDR};

/// A load generator for any TCP echo server (RFC 862) that checks every
/// byte it gets back.
///
/// One mio poll loop drives every connection (one thread unless --threads
/// says otherwise). Each mode prints a summary, then one line of
/// `result key=value ...` for scripts (or, with --json, one JSON object).
/// When standard error is a terminal, a progress line there shows the load
/// of a TCP mode once a second.
///
/// Exit status: 0 if every byte came back unchanged; 1 if any connection
/// failed (refused, reset, closed early, a byte differed, or silent for
/// --timeout) or the load could not start; 2 for bad arguments.
#[derive(Parser, Debug)]
#[command(name = "echo-bench", version)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,

    /// Print the report as one JSON object on standard output, instead of
    /// the summary and the result line: every pair of the result line, the
    /// failures described, and `error` (null if every byte came back).
    #[arg(long, global = true)]
    json: bool,
}

/// How the report is printed on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The summary, then the `result` line.
    Text,
    /// One JSON object (`--json`).
    Json,
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

impl Mode {
    /// The options every mode takes.
    fn server(&self) -> &Server {
        match self {
            Mode::Pingpong(a) => &a.server,
            Mode::Stream(a) => &a.server,
            Mode::Connections(a) => &a.server,
            Mode::Churn(a) => &a.server,
            Mode::Udp(a) => &a.server,
        }
    }
}

/// Options every mode takes.
#[derive(Args, Debug)]
struct Server {
    /// The echo server: IP:PORT, `[IPv6]:PORT`, `[IPv6%INTERFACE]:PORT` or
    /// HOST:PORT (a name is resolved once, and the first of its addresses
    /// that accepts a connection serves the whole run).
    #[arg(short, long, value_name = "ADDR", default_value = DEFAULT_ADDR,
          value_parser = parse_addr)]
    addr: String,

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

    /// Source addresses to bind, in turn: K for 127.0.0.1 to 127.0.0.K,
    /// or FIRST-LAST (such as 127.0.1.1-127.0.1.4) so that several
    /// processes loading one server each use addresses of their own
    /// (default: as for `connections`). For an IPv4 loopback server only.
    #[arg(long, value_name = "K|FIRST-LAST", value_parser = dial::Sources::parse)]
    sources: Option<dial::Sources>,

    /// Start the load (the warm-up) at this wall-clock time, in seconds
    /// since the Unix epoch (such as `$(($(date +%s) + 10))`), once every
    /// connection is open, so that several echo-bench processes measure
    /// the same window. A time already past when the connections are open
    /// starts at once; `start_late_secs` says by how much.
    #[arg(long, value_name = "UNIX_SECS", value_parser = parse_start_at)]
    start_at: Option<SystemTime>,
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
    /// and at most 100 (result keys p50_us, p99_9_us, ...; churn reports
    /// them for each of its times: connect_p50_us, echo_p50_us, ...).
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

    /// Source addresses to bind, in turn: K for 127.0.0.1 to 127.0.0.K,
    /// or FIRST-LAST (such as 127.0.1.1-127.0.1.4) so that several
    /// processes loading one server each use addresses of their own; each
    /// (source, server) pair has one ephemeral port range. Default: the
    /// kernel's choice up to 10000 connections, past that one address per
    /// 10000 from 127.0.0.1. For an IPv4 loopback server only.
    #[arg(long, value_name = "K|FIRST-LAST", value_parser = dial::Sources::parse)]
    sources: Option<dial::Sources>,

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

    #[command(flatten)]
    percentiles: PercentilesArg,
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

    #[command(flatten)]
    percentiles: PercentilesArg,
}

fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    match s.parse::<f64>() {
        Ok(secs) if (0.0..1e11).contains(&secs) => {
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs))
        }
        _ => Err("expected seconds since the Unix epoch, such as 1796000000".to_string()),
    }
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

/// `--addr` as the resolver will take it: an IP and port, or a name and a
/// port. A malformed one (no port, a port past 65535, a bracketed address
/// that is not IPv6, an unknown interface) is a usage error here; whether
/// a name resolves is found out when the run starts.
fn parse_addr(s: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected IP:PORT or HOST:PORT, such as 127.0.0.1:7007, [::1]:7007 or localhost:7007";
    match parse_socket_addr(s) {
        Ok(addr) => return Ok(addr.to_string()),
        // Meant as an IPv6 address: say what is wrong with it.
        Err(e) if s.starts_with('[') => return Err(e),
        Err(_) => {}
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_string()),
        _ => Err(EXPECTED.to_string()),
    }
}

fn main() -> ExitCode {
    // `--generate man|bash|zsh|fish` (hidden) writes this command line's
    // man page or completions; anything else parses as usual.
    let cli = match mio_echo_cli::parse::<Cli>() {
        Ok(cli) => cli,
        Err(status) => return status,
    };
    // Quiet unless asked: RUST_LOG=debug names every failed connection,
    // RUST_LOG=info marks the phases of a `connections` run.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    let format = if cli.json { Format::Json } else { Format::Text };
    let server = cli.mode.server();
    let resolved = match cli.mode {
        Mode::Udp(_) => target::resolve_datagram(&server.addr, server.timeout),
        _ => target::resolve(&server.addr, server.timeout),
    };
    let addr = match resolved {
        Ok(addr) => addr,
        Err(e) => return format.fail(e),
    };
    // A person watching: a line once a second. Never into a pipe or a file.
    if io::stderr().is_terminal() {
        progress::show();
    }
    match cli.mode {
        Mode::Pingpong(a) => format.finish(pingpong::run(&pingpong::Options {
            addr,
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
            sources: a.sources.unwrap_or_default(),
            start_at: a.start_at,
        })),
        Mode::Stream(a) => format.finish(stream::run(&stream::Options {
            addr,
            bytes: a.bytes,
            connections: a.connections as usize,
            timeout: a.server.timeout,
            max_time: a.max_time,
            threads: a.threads as usize,
            percentiles: a.percentiles.percentiles,
        })),
        Mode::Connections(a) => format.finish(connections::run(&connections::Options {
            addr,
            count: a.count as usize,
            hold: a.hold,
            sources: a.sources.unwrap_or_default(),
            size: usize::try_from(a.size).unwrap_or(usize::MAX),
            timeout: a.server.timeout,
        })),
        Mode::Churn(a) => format.finish(churn::run(&churn::Options {
            addr,
            rate: a.rate,
            duration: a.duration,
            concurrency: a.concurrency as usize,
            size: usize::try_from(a.size).unwrap_or(usize::MAX),
            sources: a.sources.unwrap_or(0) as usize,
            timeout: a.server.timeout,
            percentiles: a.percentiles.percentiles,
        })),
        Mode::Udp(a) => format.finish(udp::run(&udp::Options {
            addr,
            rate: a.rate,
            sockets: a.sockets as usize,
            size: usize::try_from(a.size).unwrap_or(usize::MAX),
            duration: a.duration,
            timeout: a.server.timeout,
            percentiles: a.percentiles.percentiles,
        })),
    }
}

impl Format {
    /// Prints the report and the result line (or, with `--json`, one JSON
    /// object) on standard output; if any connection failed, one `error:`
    /// line on standard error and status 1.
    fn finish(self, result: Result<impl Outcome, LoadError>) -> ExitCode {
        progress::clear();
        let report = match result {
            Ok(report) => report,
            Err(e) => return self.fail(e),
        };
        match self {
            Format::Text => print(&format!("{report}{}\n", report.result_line())),
            Format::Json => print(&(json::report(&report) + "\n")),
        }
        let failures = report.failures();
        if failures.total() == 0 {
            return ExitCode::SUCCESS;
        }
        let _ = writeln!(io::stderr().lock(), "error: {}", report.failure_summary());
        ExitCode::FAILURE
    }

    /// The `error:` line (and, with `--json`, the object) for a run that
    /// could not start, and its status.
    fn fail(self, e: LoadError) -> ExitCode {
        if self == Format::Json {
            print(&(json::load_error(&e) + "\n"));
        }
        match e {
            // Options that parsed but do not fit together: a usage error.
            LoadError::Config(what) => {
                let _ = writeln!(io::stderr().lock(), "error: {what} (see --help)");
                ExitCode::from(2)
            }
            e => {
                let _ = writeln!(io::stderr().lock(), "error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Writes `text` on standard output. Not `print!`: it panics if standard
/// output is closed.
fn print(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
