//! Listening sockets with the options std and mio leave out, the
//! addresses they are given, and the process's budget of descriptors.
//!
//! `std::net::TcpListener::bind` and mio's `TcpListener::bind` both listen
//! with a backlog of 128: in a connection storm the kernel drops the SYNs
//! past it and those clients wait out a one-second retransmit. We build the
//! socket with `socket2` instead and ask for the largest backlog; the kernel
//! clamps it to `net.core.somaxconn`.
//!
//! Addresses come from `mio_echo_net::parse_socket_addr`, which takes
//! what std's parser takes and an IPv6 scope by interface name as well
//! (`[fe80::1%eth0]:7`).
//! An IPv4-mapped address (`[::ffff:127.0.0.1]:7`) is IPv4 seen through an
//! IPv6 socket; Linux binds one only with `IPV6_V6ONLY` off, so such a
//! socket always has it off.
//!
//! Read next: [`crate::server`], which registers these listeners.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// The descriptor budget and address parsing live in `mio-echo-net`, which
/// the client and the load generator share with the server.
pub(crate) use mio_echo_net::fd_limit;

/// The backlog we ask `listen` for; the kernel lowers it to its maximum.
pub(crate) const BACKLOG: i32 = 65_535;

/// How a listening socket is opened, beyond its address.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SocketOptions {
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
pub(crate) fn tune(socket: &SockRef<'_>, tcp: bool, options: SocketOptions) -> io::Result<()> {
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
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    options: SocketOptions,
) -> io::Result<mio::net::TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP, options)?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    // (On Linux it does not let two servers listen on one address.)
    socket.set_reuse_address(true)?;
    // Before `listen`: the receive buffer sets the window scale that the
    // handshake of every accepted connection announces.
    tune(&SockRef::from(&socket), true, options)?;
    bind(&socket, addr)?;
    socket.listen(BACKLOG)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// A non-blocking UDP socket bound to `addr`.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    options: SocketOptions,
) -> io::Result<mio::net::UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP, options)?;
    tune(&SockRef::from(&socket), false, options)?;
    bind(&socket, addr)?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// `bind`, with the reason spelled out where the kernel says only "invalid
/// argument" about an IPv6 address.
fn bind(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    socket.bind(&addr.into()).map_err(|e| {
        let SocketAddr::V6(v6) = addr else { return e };
        if e.raw_os_error() != Some(libc::EINVAL) {
            return e;
        }
        let why = if let Some(v4) = v6.ip().to_ipv4_mapped() {
            format!(
                "this system does not bind IPv4-mapped addresses; use {}",
                SocketAddr::from((v4, v6.port()))
            )
        } else if v6.ip().is_unicast_link_local() && v6.scope_id() == 0 {
            format!(
                "a link-local address needs its interface, such as [{}%eth0]:{}",
                v6.ip(),
                v6.port()
            )
        } else {
            return e;
        };
        io::Error::new(e.kind(), why)
    })
}

fn new_socket(
    addr: SocketAddr,
    kind: Type,
    protocol: Protocol,
    options: SocketOptions,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if let SocketAddr::V6(v6) = addr {
        // A mapped address is IPv4: an IPv6-only socket cannot bind it
        // (Linux says EINVAL), whatever --dual-stack says.
        let mapped = v6.ip().to_ipv4_mapped().is_some();
        socket.set_only_v6(options.v6_only && !mapped)?;
    }
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Whether an `accept` error means the process or system is out of a
/// resource (descriptors, buffer memory) rather than one client's trouble.
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// An integer socket option of `fd` that socket2 does not read for this
/// platform (`getsockopt(2)`, `level` and `name` as there).
#[cfg(not(any(
    target_os = "aix",
    target_os = "android",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "linux",
    target_os = "cygwin",
)))]
pub(crate) fn int_option(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, and the
    // length into `len`, both valid for the call.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio_echo_net::parse_socket_addr;

    /// An IPv4-mapped address binds with IPV6_V6ONLY on (the default) and
    /// takes IPv4 connections to the address it maps.
    #[test]
    fn a_mapped_address_binds_whatever_v6_only_says() {
        let addr = parse_socket_addr("[::ffff:127.0.0.1]:0").unwrap();
        let options = SocketOptions {
            v6_only: true,
            ..SocketOptions::default()
        };
        let listener = bind_tcp(addr, options).expect("bind a mapped address");
        let port = listener.local_addr().unwrap().port();
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect over IPv4");
    }

    /// A link-local address without its interface: the error says so
    /// instead of the kernel's bare "invalid argument".
    #[test]
    fn a_link_local_address_without_a_scope_says_what_it_lacks() {
        let addr = parse_socket_addr("[fe80::1]:0").unwrap();
        let Err(e) = bind_tcp(addr, SocketOptions::default()) else {
            return; // Some system bound it after all: nothing to explain.
        };
        let text = crate::error::describe(&e);
        assert!(text.contains("needs its interface"), "{text}");
    }
}
