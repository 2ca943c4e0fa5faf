//! The servers mio-echo is compared with, each a plain echo over TCP:
//!
//! * `epoll`: a minimal edge-triggered epoll loop over raw `libc` calls,
//!   the floor: what any abstraction costs is measured against it (Linux
//!   only: elsewhere the benches compare with the other two, and
//!   `examples/peer.rs epoll` says it is not on this platform);
//! * [`tokio_rt`]: tokio's `current_thread` runtime with `tokio::io::copy`
//!   per connection, the usual async choice;
//! * [`threads`]: one blocking std thread per connection.
//!
//! Each has `serve(listener)`, which runs on the calling thread forever.
//! The benches start them on a thread of their own beside mio-echo's;
//! `examples/peer.rs` runs one as a separate process.

#![allow(dead_code)]

#[cfg(target_os = "linux")]
pub(crate) mod epoll;
pub(crate) mod threads;
pub(crate) mod tokio_rt;

use std::net::{SocketAddr, TcpListener};
use std::thread;

/// The servers by name, as `examples/peer.rs` and the benches call them:
/// those this platform has.
pub(crate) const NAMES: &[&str] = &[
    #[cfg(target_os = "linux")]
    "epoll",
    "tokio",
    "threads",
];

/// Runs the named server on `listener`, on this thread, forever.
pub(crate) fn serve(name: &str, listener: TcpListener) -> std::io::Result<()> {
    match name {
        #[cfg(target_os = "linux")]
        "epoll" => epoll::serve(listener),
        #[cfg(not(target_os = "linux"))]
        "epoll" => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the epoll peer is Linux-only (raw epoll calls); on this platform \
             compare with tokio or threads",
        )),
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
