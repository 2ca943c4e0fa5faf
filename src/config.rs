//! What a server is asked to do: addresses, limits and timeouts.
//!
//! The binaries fill a [`Config`] from the command line; tests and benches
//! build one directly, usually `Config::default()` with `listen` set to
//! `127.0.0.1:0`.
//!
//! Read next: [`crate::server`], which binds and runs it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::systemd::Inherited;

/// The address `echo-server` serves when `--listen` is not given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7007";

/// Everything a [`crate::Server`] needs to know before it binds.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP addresses to listen on. Port 0 picks a free port.
    pub listen: Vec<SocketAddr>,
    /// UDP addresses to serve (RFC 862's datagram echo). Port 0 picks one.
    pub udp: Vec<SocketAddr>,
    /// Sockets handed over by a service manager (socket activation),
    /// served as they are, beside `listen` and `udp`.
    pub inherited: Vec<Inherited>,
    /// IPv6 sockets serve IPv6 only (`IPV6_V6ONLY`), so `0.0.0.0:P` and
    /// `[::]:P` can both be bound. False: `[::]:P` also takes IPv4.
    pub v6_only: bool,
    /// Independent poll loops, one per thread, each with its own sockets
    /// (`SO_REUSEPORT`) and its own connections.
    pub threads: usize,
    /// After a stop request, how long owed bytes may drain before every
    /// connection is closed regardless.
    pub shutdown_timeout: Duration,
    /// The most bytes a connection may owe (read, not yet echoed) before
    /// the server stops reading from it.
    pub max_buffer: usize,
    /// The most connections served at once; past it a new connection is
    /// closed as soon as it is accepted. Lowered to what the descriptor
    /// limit allows.
    pub max_connections: usize,
    /// The most connections one IP address may hold at once (0: no limit).
    pub max_connections_per_ip: usize,
    /// Close a connection after this long without traffic either way
    /// (`None`: never; RFC 862 lets the client decide when to leave).
    pub idle_timeout: Option<Duration>,
    /// Log the counters at `info` this often (`None`: only on SIGUSR1 and
    /// at exit).
    pub stats_interval: Option<Duration>,
    /// UDP replies per second to one source (an IP address, an IPv6 /64),
    /// with a burst of as many: a loop with another echo server costs at
    /// most this many replies. At least 1.
    pub udp_rate_per_source: u32,
    /// UDP replies per second to all sources together, with a burst of as
    /// many, however many sources there are. At least 1.
    pub udp_rate: u32,
    /// Whether SIGINT and SIGTERM stop the server (and SIGUSR1 logs stats). The binary sets this;
    /// tests that run a server inside their own process leave it off and
    /// stop it through a [`crate::Handle`].
    pub handle_signals: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![DEFAULT_ADDR.parse().expect("the default address parses")],
            udp: Vec::new(),
            inherited: Vec::new(),
            v6_only: true,
            threads: 1,
            shutdown_timeout: Duration::from_secs(5),
            max_buffer: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            idle_timeout: None,
            stats_interval: None,
            udp_rate_per_source: crate::udp::DEFAULT_RATE_PER_SOURCE,
            udp_rate: crate::udp::DEFAULT_RATE,
            handle_signals: false,
        }
    }
}

impl Config {
    /// A configuration for tests and benches: one listener on
    /// `127.0.0.1:0` (a free port), everything else at its default.
    pub fn loopback() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ..Config::default()
        }
    }
}
