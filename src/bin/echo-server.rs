//! `echo-server`: parse the command line, start the loop, report how it ended.
//!
//! Everything else lives in the library; read `src/lib.rs` first.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mio_echo::config::DEFAULT_ADDR;
use mio_echo::group::Group;
use mio_echo::{systemd, udp, Config};

/// An RFC 862 echo server: every byte a client sends comes back to it, in
/// order, until the client closes.
///
/// One thread, one mio poll loop (or --threads of them). Serves TCP, and UDP
/// with --udp. Logs go to standard error; set RUST_LOG (error, warn, info,
/// debug, trace) to choose how much. SIGINT or SIGTERM stops accepting and
/// lets owed bytes drain, a second one closes at once; SIGUSR1 logs the
/// counters. Under systemd it serves the sockets passed by socket
/// activation (LISTEN_FDS) and reports readiness (NOTIFY_SOCKET).
#[derive(Parser, Debug)]
#[command(name = "echo-server", version)]
struct Args {
    /// TCP address to serve, as IP:PORT ([::1]:PORT for IPv6). Repeat to
    /// serve several. Port 0 picks a free port; the log says which.
    /// [default: 127.0.0.1:7007, unless sockets came by socket activation]
    #[arg(short, long = "listen", value_name = "ADDR", value_parser = parse_addr)]
    listen: Vec<SocketAddr>,

    /// UDP address to serve (RFC 862 datagram echo), as IP:PORT. Repeat to
    /// serve several. Replies to ports below 1024, broadcast and multicast
    /// sources are never sent.
    #[arg(short, long = "udp", value_name = "ADDR", value_parser = parse_addr)]
    udp: Vec<SocketAddr>,

    /// UDP replies per second to one source (an IP address; IPv6 by /64),
    /// with a burst of as many. A loop with another echo server, started by
    /// one forged datagram, costs at most N replies and then ends.
    #[arg(long, value_name = "N", default_value_t = udp::DEFAULT_RATE_PER_SOURCE,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(udp::MAX_RATE)))]
    udp_rate_per_source: u32,

    /// UDP replies per second to all sources together, with a burst of as
    /// many: bounds what a flood from many forged sources makes the server
    /// send.
    #[arg(long, value_name = "N", default_value_t = udp::DEFAULT_RATE,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(udp::MAX_RATE)))]
    udp_rate: u32,

    /// Let an IPv6 wildcard such as [::]:7007 take IPv4 connections too
    /// (IPV6_V6ONLY off). By default IPv6 sockets are IPv6-only, so
    /// 0.0.0.0:7007 and [::]:7007 can both be served.
    #[arg(long)]
    dual_stack: bool,

    /// Independent poll loops, one per thread, sharing each socket through
    /// SO_REUSEPORT. 1 keeps the process single-threaded, the cheapest per
    /// echo; use more only when one core is saturated.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,

    /// Log the counters at info every SECS seconds (0: only on SIGUSR1 and
    /// at exit).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs,
          allow_negative_numbers = true)]
    stats_interval: Duration,

    /// After SIGINT/SIGTERM, how many seconds owed bytes may drain before
    /// every connection is closed.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs,
          allow_negative_numbers = true)]
    shutdown_timeout: Duration,

    /// The most bytes a connection may owe (read, not yet echoed) before the
    /// server stops reading from it and lets TCP push back on the client.
    /// Accepts K and M suffixes (1K = 1024).
    #[arg(long, value_name = "BYTES", default_value = "64K", value_parser = parse_bytes)]
    max_buffer: usize,

    /// The most connections served at once; past it a new connection is
    /// closed as soon as it is accepted. Never more than the open-file limit
    /// allows (the server raises its soft limit to the hard one at start).
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// The most connections one client IP address may hold at once
    /// (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_connections_per_ip: u32,

    /// Close a connection after this many seconds without traffic either
    /// way (0: never; RFC 862 lets the client decide when to leave).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs,
          allow_negative_numbers = true)]
    idle_timeout: Duration,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        "expected IP:PORT, such as 127.0.0.1:7007, 0.0.0.0:7007 or [::1]:7007".to_string()
    })
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "expected a number of seconds, 0 or more".to_string())
}

fn parse_bytes(s: &str) -> Result<usize, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let scale: usize = match unit {
        "" => 1,
        "K" | "k" | "KiB" => 1024,
        "M" | "m" | "MiB" => 1024 * 1024,
        _ => return Err("expected a number of bytes, such as 65536, 64K or 1M".into()),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
        .ok_or_else(|| "expected a number of bytes above 0, such as 65536, 64K or 1M".into())
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return mio_echo::error::usage_error(e),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    // Each connection holds a descriptor; ask for every one we may have.
    if let Err(e) = mio_echo::net::raise_fd_limit() {
        log::warn!(
            "cannot raise the open-file limit: {}",
            mio_echo::error::describe(&e)
        );
    }

    let inherited = match systemd::listen_fds() {
        Ok(fds) => fds,
        Err(e) => {
            eprintln!("error: {e}");
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
        inherited,
        v6_only: !args.dual_stack,
        threads: usize::from(args.threads),
        stats_interval: nonzero(args.stats_interval),
        shutdown_timeout: args.shutdown_timeout,
        max_buffer: args.max_buffer,
        max_connections: args.max_connections as usize,
        max_connections_per_ip: args.max_connections_per_ip as usize,
        idle_timeout: nonzero(args.idle_timeout),
        udp_rate_per_source: args.udp_rate_per_source,
        udp_rate: args.udp_rate,
        handle_signals: true,
    };
    let group = match Group::bind(config) {
        Ok(group) => group,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    group.announce();
    if let Err(e) = systemd::notify("READY=1") {
        log::warn!(
            "cannot notify the service manager: {}",
            mio_echo::error::describe(&e)
        );
    }
    match group.run() {
        Ok(summary) => {
            log::info!("stopped: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: the poll loop failed: {}",
                mio_echo::error::describe(&e)
            );
            ExitCode::FAILURE
        }
    }
}
