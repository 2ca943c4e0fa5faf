//! What a server is asked to do: addresses, limits and timeouts.
//!
//! The binaries fill a [`Config`] from the command line; tests and benches
//! build one directly, usually `Config::default()` with `listen` set to
//! `127.0.0.1:0`.
//!
//! Read next: `src/server/mod.rs`, which binds and runs it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::StartError;
use crate::limits::Bound;
use crate::service::ServiceAddr;
use crate::systemd::Inherited;

/// The address `echo-server` serves when `--listen` is not given (defined
/// in `mio-echo-net`, where the client and the load generator find it too).
pub use mio_echo_net::DEFAULT_ADDR;

pub use crate::udp::{DEFAULT_RATE, DEFAULT_RATE_PER_SOURCE, MAX_RATE};

/// The default budget for the buffers of all connections together: 64 MiB.
pub const DEFAULT_MAX_MEMORY: usize = 64 << 20;

/// The largest `max_buffer` and `max_memory` accepted: 1 TiB. Anything
/// above is a typo, not a plan.
pub const MAX_BYTES: usize = 1 << 40;

/// The default TCP keepalive time: probes start after a minute of silence.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);

/// Descriptors kept back from the connection budget: standard streams, the
/// poll, the waker, the signal pipe, and some slack for the process.
const RESERVED_FDS: u64 = 32;

/// The longest time any timeout or interval may be: 24 days.
const LONGEST: Duration = Duration::from_secs(24 * 86_400);

/// Everything a [`crate::Server`] needs to know before it binds.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP addresses to listen on. Port 0 picks a free port.
    pub listen: Vec<SocketAddr>,
    /// TCP addresses of the sibling services, each with what it serves:
    /// [`crate::Service::Discard`] (RFC 863: read and drop until the client
    /// closes), [`crate::Service::Chargen`] (RFC 864: a rotating pattern of lines,
    /// as fast as the client reads; TCP only, since over UDP it is an
    /// amplifier). Echo's own addresses are `listen`.
    pub services: Vec<ServiceAddr>,
    /// UDP addresses to serve (RFC 862's datagram echo). Port 0 picks one.
    pub udp: Vec<SocketAddr>,
    /// Sockets handed over by a service manager (socket activation),
    /// served as they are, beside `listen` and `udp`.
    pub inherited: Vec<Inherited>,
    /// IPv6 sockets serve IPv6 only (`IPV6_V6ONLY`), so `0.0.0.0:P` and
    /// `[::]:P` can both be bound. False: `[::]:P` also takes IPv4.
    pub v6_only: bool,
    /// Independent poll loops, one per thread, each with its own
    /// connections; see [`crate::group`]. [`crate::Server::bind`] builds
    /// one loop whatever this says; [`crate::group::Group::bind`] builds
    /// this many.
    pub threads: usize,
    /// `SO_REUSEPORT`: each loop binds its own sockets, and other processes
    /// may bind the same addresses and share the connections. Off, the
    /// loops share one socket per address and a second server on a taken
    /// address fails with "address already in use".
    pub reuse_port: bool,
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
    /// IPv6 clients are counted for `max_connections_per_ip` by this many
    /// leading bits of their address (a host usually has a whole /64).
    pub ipv6_prefix: u8,
    /// The most bytes the buffers of all connections together may hold;
    /// past it connections stop reading until memory is freed.
    pub max_memory: usize,
    /// Clamp the kernel's send and receive buffers of every socket to this
    /// many bytes (`SO_SNDBUF`/`SO_RCVBUF`; `None`: the kernel autotunes).
    pub socket_buffer: Option<usize>,
    /// TCP keepalive: probe a connection after this long without traffic,
    /// and close it when the peer does not answer (`None`: off).
    pub keepalive: Option<Duration>,
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
    /// Whether the server handles signals: SIGINT and SIGTERM stop it,
    /// SIGHUP and SIGUSR1 log the counters, SIGUSR2 and SIGALRM are logged
    /// and ignored. The binary sets this; tests that run a server inside
    /// their own process leave it off and stop it through a
    /// [`crate::Handle`].
    pub handle_signals: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![DEFAULT_ADDR.parse().expect("the default address parses")],
            udp: Vec::new(),
            services: Vec::new(),
            inherited: Vec::new(),
            v6_only: true,
            threads: 1,
            reuse_port: false,
            shutdown_timeout: Duration::from_secs(5),
            max_buffer: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            ipv6_prefix: 64,
            max_memory: DEFAULT_MAX_MEMORY,
            socket_buffer: None,
            keepalive: Some(DEFAULT_KEEPALIVE),
            idle_timeout: None,
            stats_interval: None,
            udp_rate_per_source: crate::udp::DEFAULT_RATE_PER_SOURCE,
            udp_rate: crate::udp::DEFAULT_RATE,
            handle_signals: false,
        }
    }
}

impl Config {
    /// How many listening sockets the configuration names.
    pub(crate) fn socket_count(&self) -> usize {
        self.listen.len() + self.services.len() + self.udp.len() + self.inherited.len()
    }

    /// The most connections the server may hold with `fd_limit` open
    /// descriptors and `loops` loops, and what set it: `max_connections`,
    /// or the descriptors (every connection holds one; each loop holds its
    /// own copy of every socket, a poll and a waker).
    pub(crate) fn connection_budget(
        &self,
        fd_limit: u64,
        loops: usize,
    ) -> Result<(usize, Bound), StartError> {
        let per_loop = self.socket_count() as u64 + 2;
        let fds = fd_limit.saturating_sub(RESERVED_FDS + loops as u64 * per_loop);
        let wanted = (self.max_connections as u64).min(crate::server::FIRST_RESERVED as u64);
        let (most, bound) = if fds < wanted {
            (fds, Bound::Descriptors(fd_limit))
        } else {
            (wanted, Bound::Flag)
        };
        if most == 0 {
            return Err(StartError::Config(format!(
                "the open-file limit ({fd_limit}) leaves no descriptors for connections; \
                 raise it with ulimit -n, or lower --max-connections"
            )));
        }
        Ok((most as usize, bound))
    }

    /// Checks that the configuration asks for something possible: a
    /// message for the operator if not.
    pub fn validate(&self) -> Result<(), StartError> {
        let bad = |what: String| Err(StartError::Config(what));
        if self.socket_count() > crate::server::MAX_SOCKETS {
            return bad(format!(
                "at most {} listening sockets",
                crate::server::MAX_SOCKETS
            ));
        }
        if self.max_buffer == 0 || self.max_buffer > MAX_BYTES {
            return bad("--max-buffer must be between 1 byte and 1T".into());
        }
        if self.max_memory > MAX_BYTES {
            return bad("--max-memory must be at most 1T".into());
        }
        if self.max_buffer > self.max_memory {
            return bad(format!(
                "--max-buffer ({}) is larger than --max-memory ({}): one \
                 connection could never fill its buffer",
                self.max_buffer, self.max_memory
            ));
        }
        if let Some(size) = self.socket_buffer {
            if !(1024..=(1 << 30)).contains(&size) {
                return bad("--socket-buffer must be between 1K and 1G".into());
            }
        }
        if self.udp_rate_per_source == 0 || self.udp_rate == 0 {
            return bad("--udp-rate-per-source and --udp-rate must be at least 1".into());
        }
        if self.ipv6_prefix == 0 || self.ipv6_prefix > 128 {
            return bad("--ipv6-prefix must be between 1 and 128".into());
        }
        if self.shutdown_timeout > LONGEST {
            return bad("--shutdown-timeout must be at most 2073600 seconds (24 days)".into());
        }
        for (name, value, least) in [
            (
                "--idle-timeout",
                self.idle_timeout,
                Duration::from_millis(1),
            ),
            (
                "--stats-interval",
                self.stats_interval,
                Duration::from_millis(1),
            ),
            ("--keepalive", self.keepalive, Duration::from_secs(1)),
        ] {
            if matches!(value, Some(t) if t < least || t > LONGEST) {
                return bad(format!(
                    "{name} must be between {} and 2073600 seconds (24 days)",
                    least.as_secs_f64()
                ));
            }
        }
        Ok(())
    }

    /// A configuration for tests and benches: one listener on
    /// `127.0.0.1:0` (a free port), everything else at its default.
    pub fn loopback() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_listener() -> Config {
        Config::loopback()
    }

    /// Below the descriptor limit the flag sets the connection limit.
    #[test]
    fn the_flag_sets_the_limit_when_descriptors_allow() {
        let config = Config {
            max_connections: 100,
            ..one_listener()
        };
        assert_eq!(
            config.connection_budget(20_000, 1).unwrap(),
            (100, Bound::Flag)
        );
    }

    /// Past it, the descriptors do: what is left after the reserve and each
    /// loop's own descriptors (one socket, a poll and a waker: 3 each).
    #[test]
    fn descriptors_set_the_limit_when_they_are_fewer() {
        let config = one_listener();
        assert_eq!(
            config.connection_budget(1024, 1).unwrap(),
            (1024 - 32 - 3, Bound::Descriptors(1024))
        );
        assert_eq!(
            config.connection_budget(1024, 4).unwrap(),
            (1024 - 32 - 12, Bound::Descriptors(1024)),
            "every loop holds its own copies"
        );
    }

    /// No descriptor left for connections is a start-up error.
    #[test]
    fn no_descriptors_left_is_an_error() {
        assert!(one_listener().connection_budget(30, 1).is_err());
    }

    /// Sizes that cannot work together are refused with a message.
    #[test]
    fn impossible_sizes_are_refused() {
        let bad = [
            Config {
                max_buffer: 2 << 20,
                max_memory: 1 << 20,
                ..one_listener()
            },
            Config {
                max_buffer: 0,
                ..one_listener()
            },
            Config {
                max_memory: MAX_BYTES + 1,
                ..one_listener()
            },
            Config {
                socket_buffer: Some(10),
                ..one_listener()
            },
            Config {
                udp_rate: 0,
                ..one_listener()
            },
            Config {
                keepalive: Some(Duration::from_millis(10)),
                ..one_listener()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
        assert!(one_listener().validate().is_ok());
    }
}
