//! The servers mio-echo is compared with, each a plain echo over TCP:
//!
//! * [`epoll`]: a minimal edge-triggered epoll loop over raw `libc` calls,
//!   the floor: what any abstraction costs is measured against it;
//! * [`tokio_rt`]: tokio's `current_thread` runtime with `tokio::io::copy`
//!   per connection, the usual async choice;
//! * [`threads`]: one blocking std thread per connection.
//!
//! Each has `serve(listener)`, which runs on the calling thread forever.
//! The benches start them on a thread of their own beside mio-echo's;
//! `examples/peer.rs` runs one as a separate process.

#![allow(dead_code)]

pub(crate) mod epoll;
pub(crate) mod threads;
pub(crate) mod tokio_rt;

use std::net::{SocketAddr, TcpListener};
use std::thread;

/// The servers by name, as `examples/peer.rs` and the benches call them.
pub(crate) const NAMES: [&str; 3] = ["epoll", "tokio", "threads"];

/// Runs the named server on `listener`, on this thread, forever.
pub(crate) fn serve(name: &str, listener: TcpListener) -> std::io::Result<()> {
    match name {
        "epoll" => epoll::serve(listener),
        "tokio" => tokio_rt::serve(listener),
        "threads" => threads::serve(listener),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("unknown peer {other:?}; expected one of {NAMES:?}"),
        )),
    }
}

/// Starts the named server on `127.0.0.1:0` on a detached thread and
/// returns its address. It lives until the process exits.
pub(crate) fn spawn(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    thread::Builder::new()
        .name(format!("peer-{name}"))
        .spawn(move || serve(name, listener).expect("peer server"))
        .expect("spawn peer thread");
    addr
}
