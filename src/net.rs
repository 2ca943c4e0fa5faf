//! Opening listening sockets with the options std and mio leave out.
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

use socket2::{Domain, Protocol, Socket, Type};

/// The backlog we ask `listen` for; the kernel lowers it to its maximum.
pub const BACKLOG: i32 = 65_535;

/// A non-blocking TCP listener on `addr`, ready to register with a poll.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    // (On Linux it does not let two servers listen on one address.)
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}
