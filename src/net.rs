//! Listening sockets with the options std and mio leave out, and the
//! process's budget of descriptors.
//!
//! `std::net::TcpListener::bind` and mio's `TcpListener::bind` both listen
//! with a backlog of 128: in a connection storm the kernel drops the SYNs
//! past it and those clients wait out a one-second retransmit. We build the
//! socket with `socket2` instead and ask for the largest backlog; the kernel
//! clamps it to `net.core.somaxconn`.
//!
//! Read next: [`crate::server`], which registers these listeners.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// The backlog we ask `listen` for; the kernel lowers it to its maximum.
pub const BACKLOG: i32 = 65_535;

/// How a listening socket is opened, beyond its address.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketOptions {
    /// `SO_REUSEPORT`: several sockets, one per loop, share the address and
    /// the kernel spreads connections (and datagrams) across them.
    pub reuse_port: bool,
    /// For an IPv6 address, whether it serves IPv6 only (`IPV6_V6ONLY`).
    /// Set explicitly either way, never left to the system default, so that
    /// `0.0.0.0:P` and `[::]:P` can be served side by side when true, and
    /// `[::]:P` alone also takes IPv4 (as `::ffff:a.b.c.d`) when false.
    pub v6_only: bool,
    /// `SO_SNDBUF` and `SO_RCVBUF`, set on the listener so that every
    /// accepted connection inherits them (`None`: the kernel autotunes).
    ///
    /// The trade-off: autotuning lets one connection's kernel buffers grow
    /// to several MiB (`net.ipv4.tcp_rmem`/`tcp_wmem`), so a slow reader
    /// costs that much kernel memory; a clamp bounds it, and also bounds
    /// one connection's throughput to about the buffer size per round trip.
    /// Linux doubles the value asked for (half is its bookkeeping).
    pub buffer: Option<usize>,
    /// TCP keepalive on the listener, inherited by every accepted
    /// connection: probes after this long without traffic, then three more
    /// a third of it apart (at least a second), and the connection fails
    /// with "timed out" if none is answered (`None`: off).
    pub keepalive: Option<Duration>,
}

/// Applies `options`' buffer sizes (and, for TCP, keepalive) to `socket`.
pub fn tune(socket: &SockRef<'_>, tcp: bool, options: SocketOptions) -> io::Result<()> {
    if let Some(size) = options.buffer {
        socket.set_send_buffer_size(size)?;
        socket.set_recv_buffer_size(size)?;
    }
    if let (true, Some(time)) = (tcp, options.keepalive) {
        let interval = (time / 3).max(Duration::from_secs(1));
        let keepalive = TcpKeepalive::new().with_time(time).with_interval(interval);
        #[cfg(not(any(target_os = "openbsd", target_os = "windows")))]
        let keepalive = keepalive.with_retries(3);
        socket.set_tcp_keepalive(&keepalive)?;
    }
    Ok(())
}

/// A non-blocking TCP listener on `addr`, ready to register with a poll.
pub fn bind_tcp(addr: SocketAddr, options: SocketOptions) -> io::Result<mio::net::TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP, options)?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    // (On Linux it does not let two servers listen on one address.)
    socket.set_reuse_address(true)?;
    // Before `listen`: the receive buffer sets the window scale that the
    // handshake of every accepted connection announces.
    tune(&SockRef::from(&socket), true, options)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// A non-blocking UDP socket bound to `addr`.
pub fn bind_udp(addr: SocketAddr, options: SocketOptions) -> io::Result<mio::net::UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP, options)?;
    tune(&SockRef::from(&socket), false, options)?;
    socket.bind(&addr.into())?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

fn new_socket(
    addr: SocketAddr,
    kind: Type,
    protocol: Protocol,
    options: SocketOptions,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(options.v6_only)?;
    }
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Raises this process's soft limit on open descriptors to its hard limit.
///
/// Every connection costs one descriptor, and the soft limit is often 1024
/// while the hard limit allows far more. Returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = nofile()?;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    fd_limit()
}

/// The current soft limit on open descriptors (`u64::MAX` when unlimited).
pub fn fd_limit() -> io::Result<u64> {
    let limit = nofile()?;
    Ok(if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur as u64
    })
}

fn nofile() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

/// Whether an `accept` error means the process or system is out of a
/// resource (descriptors, buffer memory) rather than one client's trouble.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
