//! The listening sockets a loop serves: bound here or inherited from a
//! service manager, shared with the other loops or bound per loop with
//! `SO_REUSEPORT`, and what the start-up log says about them.
//!
//! Read next: `src/net.rs` for the socket options, `src/systemd.rs` for
//! socket activation.

use super::*;

/// A listening socket: TCP connections to accept or UDP datagrams to echo.
pub(crate) struct Listener {
    pub(super) socket: Socket,
    pub(super) addr: SocketAddr,
    pub(super) inherited: bool,
    /// What its connections speak (UDP: always echo).
    pub(super) service: Service,
    /// For an inherited socket, its `FileDescriptorName=`, if it has one.
    pub(super) name: Option<&'static str>,
    /// For UDP, the kernel's count of dropped datagrams as last seen, by
    /// any loop serving this socket.
    pub(super) drops_seen: Arc<AtomicU32>,
}

pub(super) enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    pub(super) fn describe(&self) -> String {
        let scheme = match self.socket {
            Socket::Tcp(_) => "tcp",
            Socket::Udp(_) => "udp",
        };
        let from = match (self.inherited, self.name) {
            (true, Some(name)) => format!(" (socket activation, name {name})"),
            (true, None) => " (socket activation)".to_string(),
            (false, _) => String::new(),
        };
        let speaks = match self.service {
            Service::Echo => String::new(),
            other => format!(" ({other})"),
        };
        format!("{scheme}://{}{speaks}{from}", self.addr)
    }
}

impl Listener {
    /// Whether this is a UDP socket that every loop would serve from one
    /// receive queue (shared without `SO_REUSEPORT`, or inherited).
    pub(crate) fn is_shared_udp(&self, reuse_port: bool) -> bool {
        matches!(self.socket, Socket::Udp(_)) && (self.inherited || !reuse_port)
    }

    /// A second descriptor for the same socket, for another loop to serve.
    pub(super) fn try_clone(&self) -> Result<Listener, StartError> {
        let wrap = |source| StartError::Listen {
            addr: self.addr,
            source,
        };
        let socket = match &self.socket {
            Socket::Tcp(s) => {
                let copy = socket2::SockRef::from(s).try_clone().map_err(wrap)?;
                Socket::Tcp(TcpListener::from_std(copy.into()))
            }
            Socket::Udp(s) => {
                let copy = socket2::SockRef::from(s).try_clone().map_err(wrap)?;
                Socket::Udp(UdpSocket::from_std(copy.into()))
            }
        };
        Ok(Listener {
            socket,
            addr: self.addr,
            inherited: self.inherited,
            service: self.service,
            name: self.name,
            drops_seen: Arc::clone(&self.drops_seen),
        })
    }
}

/// Opens every socket `config` names: the inherited ones first, then the
/// TCP and UDP addresses, with `SO_REUSEPORT` if `reuse_port`.
pub(crate) fn open_sockets(config: &Config, reuse_port: bool) -> Result<Vec<Listener>, StartError> {
    let socket_count = config.socket_count();
    if socket_count == 0 {
        return Err(StartError::Config("nothing to listen on".into()));
    }
    if socket_count > MAX_SOCKETS {
        return Err(StartError::Config(format!(
            "at most {MAX_SOCKETS} listening sockets"
        )));
    }
    let options = SocketOptions {
        reuse_port,
        v6_only: config.v6_only,
        buffer: config.socket_buffer,
        keepalive: config.keepalive,
    };
    let mut sockets = Vec::with_capacity(socket_count);
    for &inherited in &config.inherited {
        sockets.push(adopt(inherited, options)?);
    }
    let echo = config.listen.iter().map(|&addr| (Service::Echo, addr));
    for (service, addr) in echo.chain(config.services.iter().copied()) {
        let socket =
            net::bind_tcp(addr, options).map_err(|source| StartError::Listen { addr, source })?;
        let mut l = listener(Socket::Tcp(socket), addr, false)?;
        l.service = service;
        sockets.push(l);
    }
    for &addr in &config.udp {
        let socket =
            net::bind_udp(addr, options).map_err(|source| StartError::Listen { addr, source })?;
        sockets.push(listener(Socket::Udp(socket), addr, false)?);
    }
    Ok(sockets)
}

/// Turns an inherited descriptor into a listening socket of ours, with
/// the buffer and keepalive options `options` asks for.
fn adopt(inherited: Inherited, options: SocketOptions) -> Result<Listener, StartError> {
    let wrap = |source| StartError::Setup("inherited socket", source);
    // SAFETY: `listen_fds` checked the descriptor is an open socket, and it
    // stays open for the life of the process; we take a duplicate of it.
    let fd: OwnedFd = unsafe { BorrowedFd::borrow_raw(inherited.fd) }
        .try_clone_to_owned()
        .map_err(wrap)?;
    net::tune(
        &socket2::SockRef::from(&fd),
        inherited.kind == Kind::Tcp,
        options,
    )
    .map_err(wrap)?;
    let socket = match inherited.kind {
        Kind::Tcp => {
            let std = std::net::TcpListener::from(fd);
            std.set_nonblocking(true).map_err(wrap)?;
            Socket::Tcp(TcpListener::from_std(std))
        }
        Kind::Udp => {
            let std = std::net::UdpSocket::from(fd);
            std.set_nonblocking(true).map_err(wrap)?;
            Socket::Udp(UdpSocket::from_std(std))
        }
    };
    let addr = match &socket {
        Socket::Tcp(s) => s.local_addr(),
        Socket::Udp(s) => s.local_addr(),
    }
    .map_err(wrap)?;
    let service = inherited_service(inherited.name, inherited.kind, addr)?;
    Ok(Listener {
        socket,
        addr,
        inherited: true,
        service,
        name: inherited.name,
        drops_seen: Arc::default(),
    })
}

/// What an inherited socket serves, by its `FileDescriptorName=`: a name
/// that is, or starts with, a service's name and a dash (`discard`,
/// `chargen-v6`) picks that service; any other name, or none, is echo.
/// Over UDP only echo is served: UDP chargen is an amplifier (CERT
/// CA-1996-01), so a UDP socket named for another service is refused.
fn inherited_service(
    name: Option<&str>,
    kind: Kind,
    addr: SocketAddr,
) -> Result<Service, StartError> {
    let service = name
        .and_then(|n| Service::from_name(n.split('-').next().unwrap_or(n)))
        .unwrap_or(Service::Echo);
    if kind == Kind::Udp && service != Service::Echo {
        return Err(StartError::Config(format!(
            "the inherited UDP socket {addr} is named for {service}, which is served over \
             TCP only (UDP {service} answers forged datagrams; CERT CA-1996-01)"
        )));
    }
    Ok(service)
}

/// Wraps a freshly bound socket, reading back its real address.
fn listener(socket: Socket, asked: SocketAddr, inherited: bool) -> Result<Listener, StartError> {
    let addr = match &socket {
        Socket::Tcp(s) => s.local_addr(),
        Socket::Udp(s) => s.local_addr(),
    }
    .map_err(|source| StartError::Listen {
        addr: asked,
        source,
    })?;
    Ok(Listener {
        socket,
        addr,
        inherited,
        service: Service::Echo,
        name: None,
        drops_seen: Arc::default(),
    })
}

impl Server {
    /// Copies of this loop's sockets, for another loop of the same server
    /// to serve beside it (without `SO_REUSEPORT`).
    pub(crate) fn share_sockets(&self) -> Result<Vec<Listener>, StartError> {
        self.sockets.iter().map(Listener::try_clone).collect()
    }

    /// The TCP echo addresses actually bound, in order (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.tcp_addrs(Service::Echo)
    }

    /// The TCP addresses of `service` actually bound, in order.
    pub fn tcp_addrs(&self, service: Service) -> Vec<SocketAddr> {
        self.addrs_of(|l| matches!(l.socket, Socket::Tcp(_)) && l.service == service)
    }

    /// The UDP addresses actually bound, in order (port 0 resolved).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(|l| matches!(l.socket, Socket::Udp(_)))
    }

    fn addrs_of(&self, which: impl Fn(&Listener) -> bool) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter(|l| which(l))
            .map(|l| l.addr)
            .collect()
    }

    /// `config` with the addresses this loop bound itself (not inherited
    /// ones), port 0 resolved: for the other loops of a group to bind the
    /// very same ports.
    pub(crate) fn with_bound_addrs(&self, config: &Config) -> Config {
        let own = |udp: bool, service: Service| {
            self.addrs_of(|l| {
                !l.inherited && matches!(l.socket, Socket::Udp(_)) == udp && l.service == service
            })
        };
        let services = self
            .sockets
            .iter()
            .filter(|l| {
                !l.inherited && matches!(l.socket, Socket::Tcp(_)) && l.service != Service::Echo
            })
            .map(|l| (l.service, l.addr))
            .collect();
        Config {
            listen: own(false, Service::Echo),
            services,
            udp: own(true, Service::Echo),
            ..config.clone()
        }
    }

    /// Logs, at `info`, one `listening on` line per socket and the
    /// connection budget. The binaries call it once the sockets are bound.
    pub fn announce(&self) {
        for l in &self.sockets {
            log::info!("listening on {}", l.describe());
        }
        let bound = match self.shared.bound_by() {
            Bound::Flag => "--max-connections",
            Bound::Descriptors(_) => "the descriptor budget",
        };
        log::info!(
            "serving at most {} connections (set by {bound}; open-file limit {}) and {} \
             bytes of buffers (--max-memory)",
            self.shared.max_connections(),
            net::fd_limit().map_or("unknown".into(), |n| n.to_string()),
            self.limits.memory.max(),
        );
    }
}
