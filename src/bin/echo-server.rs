//! `echo-server`: parse the command line, start the loop, report how it ended.
//!
//! Everything else lives in the library; read `src/lib.rs` first.

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mio_echo::config::{DEFAULT_RATE, DEFAULT_RATE_PER_SOURCE, MAX_RATE};
use mio_echo::group::Group;
use mio_echo::{logging, systemd, Config, Service};
use mio_echo_net::{describe, parse_socket_addr, raise_fd_limit, DEFAULT_ADDR};

/// An RFC 862 echo server: every byte a client sends comes back to it, in
/// order, until the client closes.
///
/// One thread, one mio poll loop (or --threads of them). Serves TCP, and UDP
/// with --udp; with --discard and --chargen, also RFC 863 discard and RFC
/// 864 chargen over TCP, under the same limits (chargen is never served
/// over UDP, where it is an amplifier: CERT CA-1996-01). Logs go to standard error; set RUST_LOG (error, warn, info,
/// debug, trace) to choose how much. A log line standard error cannot take
/// at once (an unread pipe, a paused terminal) is dropped and counted as
/// log_dropped, never waited for. When standard error is the systemd journal
/// (JOURNAL_STREAM names it), each line starts with its syslog priority and
/// carries no timestamp. Under systemd it serves the sockets passed
/// by socket activation (LISTEN_FDS) and reports readiness (NOTIFY_SOCKET).
///
/// Signals. SIGINT, SIGTERM: stop accepting, let owed bytes drain (for at
/// most --shutdown-timeout), log the summary, exit 0; a second one closes
/// every connection at once.
///
/// SIGHUP, SIGUSR1: log the counters (a "stats:" line) and keep serving;
/// there is nothing else to reload.
///
/// SIGUSR2, SIGALRM: log that they mean nothing to this server, and keep
/// serving.
#[derive(Parser, Debug)]
#[command(name = "echo-server", version)]
struct Args {
    /// TCP address to serve, as IP:PORT (`[::1]:PORT` for IPv6, with an
    /// interface name or number for a link-local one: `[fe80::1%eth0]:PORT`).
    /// Repeat to serve several. Port 0 picks a free port; the log says which.
    /// [default: 127.0.0.1:7007, unless sockets came by socket activation]
    #[arg(short, long = "listen", value_name = "ADDR", value_parser = parse_socket_addr)]
    listen: Vec<SocketAddr>,

    /// TCP address to serve RFC 863 discard on: everything a client sends is
    /// read and dropped (and counted) until it closes. Repeat for several.
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr)]
    discard: Vec<SocketAddr>,

    /// TCP address to serve RFC 864 chargen on: lines of a rotating
    /// 72-character pattern, as fast as the client reads them; what it sends
    /// is ignored. A client that never reads costs no growing memory.
    /// Repeat for several.
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr)]
    chargen: Vec<SocketAddr>,

    /// UDP address to serve (RFC 862 datagram echo), as IP:PORT. Repeat to
    /// serve several. No reply goes to a source port below 1024 (port 0
    /// included), to the port served, to a broadcast, multicast or
    /// unspecified source address, or past --udp-rate-per-source and
    /// --udp-rate.
    #[arg(short, long = "udp", value_name = "ADDR", value_parser = parse_socket_addr)]
    udp: Vec<SocketAddr>,

    /// UDP replies per second to one source (an IP address; IPv6 by /64),
    /// with a burst of as many. A loop with another echo server, started by
    /// one forged datagram, costs at most N replies and then ends.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE_PER_SOURCE,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RATE)))]
    udp_rate_per_source: u32,

    /// UDP replies per second to all sources together, with a burst of as
    /// many: bounds what a flood from many forged sources makes the server
    /// send.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RATE)))]
    udp_rate: u32,

    /// Let an IPv6 wildcard such as `[::]:7007` take IPv4 connections too
    /// (IPV6_V6ONLY off). By default IPv6 sockets are IPv6-only, so
    /// 0.0.0.0:7007 and `[::]:7007` can both be served.
    #[arg(long)]
    dual_stack: bool,

    /// Independent poll loops, one per thread, sharing each listening
    /// socket; the limits below are for the whole server, not per loop. 1
    /// keeps the process single-threaded, the cheapest per echo; use more
    /// only when one core is saturated.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,

    /// Bind with SO_REUSEPORT: each loop gets its own sockets, and other
    /// processes (other echo-server instances) may serve the same address,
    /// the kernel spreading connections across all of them. Without it a
    /// second server on a taken address fails with "address already in use".
    #[arg(long)]
    reuse_port: bool,

    /// Log the counters at info every SECS seconds (0: only on SIGHUP,
    /// SIGUSR1 and at exit).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = mio_echo_cli::secs,
          allow_negative_numbers = true)]
    stats_interval: Duration,

    /// After SIGINT/SIGTERM, how many seconds owed bytes may drain before
    /// every connection is closed.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = mio_echo_cli::secs,
          allow_negative_numbers = true)]
    shutdown_timeout: Duration,

    /// The most bytes a connection may owe (read, not yet echoed) before the
    /// server stops reading from it and lets TCP push back on the client.
    /// Accepts K, M and G suffixes (1K = 1024); at most --max-memory.
    #[arg(long, value_name = "BYTES", default_value = "64K", value_parser = parse_bytes)]
    max_buffer: usize,

    /// The most bytes the buffers of all connections together may hold.
    /// At the budget, connections that owe bytes stop reading (TCP pushes
    /// back on their clients) and resume as memory is freed; the last
    /// eighth is kept for clients whose echoes go straight back.
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = parse_bytes)]
    max_memory: usize,

    /// Clamp the kernel's send and receive buffers of every socket to
    /// BYTES (SO_SNDBUF/SO_RCVBUF; Linux doubles it for bookkeeping).
    /// By default the kernel autotunes them up to several MiB per
    /// connection for throughput; a clamp bounds the kernel memory a slow
    /// reader can cost, and one connection's throughput to about BYTES per
    /// round trip. [default: autotuned]
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    socket_buffer: Option<usize>,

    /// TCP keepalive: after SECS without traffic, probe the client three
    /// times, SECS/3 apart (at least 1 s), and close the connection if it
    /// never answers, so clients that vanish without FIN or RST (a cable
    /// pulled, a host powered off) do not hold a slot forever. 0 turns it
    /// off.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = mio_echo_cli::secs,
          allow_negative_numbers = true)]
    keepalive: Duration,

    /// The most connections served at once; past it a new connection is
    /// closed as soon as it is accepted. Never more than the open-file limit
    /// allows (the server raises its soft limit to the hard one at start).
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// The most connections one client IP address may hold at once
    /// (0: no limit). IPv4 clients on a dual-stack socket count as their
    /// IPv4 address; IPv6 clients count by their --ipv6-prefix.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_connections_per_ip: u32,

    /// How many leading bits of an IPv6 client's address name one client
    /// for --max-connections-per-ip (a host is usually given a whole /64).
    #[arg(long, value_name = "BITS", default_value_t = 64,
          value_parser = clap::value_parser!(u8).range(1..=128))]
    ipv6_prefix: u8,

    /// Close a connection after this many seconds without traffic either
    /// way (0: never; RFC 862 lets the client decide when to leave).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = mio_echo_cli::secs,
          allow_negative_numbers = true)]
    idle_timeout: Duration,
}

/// A byte size (see `mio_echo_cli::bytes`), at most what the library
/// accepts ([`mio_echo::config::MAX_BYTES`]).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let n = mio_echo_cli::bytes(s)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= mio_echo::config::MAX_BYTES)
        .ok_or_else(|| {
            "expected a number of bytes from 1 to 1024G, such as 65536, 64K or 1M".into()
        })
}

/// Logs to standard error through a writer that never blocks the loop: a
/// line the output cannot take at once is dropped and counted
/// (`log_dropped`), see `mio_echo::logging`. Returns whether standard
/// error is the systemd journal, whose lines carry their priority and no
/// timestamp.
fn init_logging() -> bool {
    let stderr = logging::Stderr::open();
    let how = stderr.describe();
    let journal = stderr.is_journal();
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if journal {
        builder.format(logging::write_for_journal);
    }
    // env_logger colours only its own stderr target by itself; keep the
    // colours at a terminal unless RUST_LOG_STYLE or NO_COLOR says otherwise.
    let asked = ["RUST_LOG_STYLE", "NO_COLOR"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !asked && io::stderr().is_terminal() {
        builder.write_style(env_logger::WriteStyle::Always);
    }
    builder
        .target(env_logger::Target::Pipe(Box::new(stderr)))
        .init();
    let journal_note = if journal { " (the journal)" } else { "" };
    log::debug!("log output: standard error is {how}{journal_note}");
    journal
}

/// Writes `line` to standard error even if it has to wait, for the lines
/// that end the server; when standard error is the journal, with the
/// priority of `level` in front of each of its lines (the journal takes
/// every line for a record).
fn say(journal: bool, level: log::Level, line: std::fmt::Arguments<'_>) {
    if !journal {
        eprintln!("{line}");
        return;
    }
    for part in line.to_string().lines() {
        eprintln!("{}{part}", logging::priority(level));
    }
}

fn main() -> ExitCode {
    // `--generate man|bash|zsh|fish` (hidden) writes this command line's
    // man page or completions; anything else parses as usual.
    let args = match mio_echo_cli::parse::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    let journal = init_logging();

    // Each connection holds a descriptor; ask for every one we may have.
    if let Err(e) = raise_fd_limit() {
        log::warn!("cannot raise the open-file limit: {}", describe(&e));
    }

    let inherited = match systemd::listen_fds() {
        Ok(fds) => fds,
        Err(e) => {
            say(journal, log::Level::Error, format_args!("error: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let listen = if args.listen.is_empty() && inherited.is_empty() {
        vec![DEFAULT_ADDR.parse().expect("the default address parses")]
    } else {
        args.listen
    };
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    let config = Config {
        listen,
        udp: args.udp,
        services: (args.discard.iter().map(|&a| (Service::Discard, a)))
            .chain(args.chargen.iter().map(|&a| (Service::Chargen, a)))
            .collect(),
        inherited,
        v6_only: !args.dual_stack,
        threads: usize::from(args.threads),
        reuse_port: args.reuse_port,
        stats_interval: nonzero(args.stats_interval),
        shutdown_timeout: args.shutdown_timeout,
        max_buffer: args.max_buffer,
        max_connections: args.max_connections as usize,
        max_connections_per_ip: args.max_connections_per_ip as usize,
        ipv6_prefix: args.ipv6_prefix,
        max_memory: args.max_memory,
        socket_buffer: args.socket_buffer,
        keepalive: nonzero(args.keepalive),
        idle_timeout: nonzero(args.idle_timeout),
        udp_rate_per_source: args.udp_rate_per_source,
        udp_rate: args.udp_rate,
        handle_signals: true,
    };
    // Flags that parse but cannot go together are a usage error too.
    if let Err(e) = config.validate() {
        say(
            journal,
            log::Level::Error,
            format_args!("error: {e} (see --help)"),
        );
        return ExitCode::from(2);
    }
    let group = match Group::bind(config) {
        Ok(group) => group,
        Err(e) => {
            say(journal, log::Level::Error, format_args!("error: {e}"));
            return ExitCode::FAILURE;
        }
    };
    group.announce();
    if let Err(e) = systemd::notify("READY=1") {
        log::warn!("cannot notify the service manager: {}", describe(&e));
    }
    match group.run() {
        Ok(summary) => {
            let dropped = logging::dropped();
            log::info!("stopped: {summary}");
            if logging::dropped() > dropped {
                // The log could not take the summary; the loop is done, so
                // waiting for standard error harms no one now.
                say(
                    journal,
                    log::Level::Info,
                    format_args!("stopped: {summary}"),
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(
                journal,
                log::Level::Error,
                format_args!("error: the poll loop failed: {}", describe(&e)),
            );
            ExitCode::FAILURE
        }
    }
}
