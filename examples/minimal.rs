//! The smallest correct mio echo server: a stepping stone to `src/server.rs`.
//!
//! ```sh
//! cargo run --example minimal -- 127.0.0.1:7007
//! ```
//!
//! It keeps every rule the full server keeps (edge-triggered readiness
//! drained to `WouldBlock`, a failed `accept` retried on a timer rather than
//! left for an event that will not come, partial writes, half-close,
//! per-connection errors closing only that connection) and leaves out
//! everything else: limits, idle timers, signals, logging, the fast path. Read it first, then
//! `src/server.rs` and `src/connection.rs` to see what each addition buys.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// Slab keys are connection tokens, so the listener takes one no key reaches.
const LISTENER: Token = Token(usize::MAX);

/// After `accept` fails (out of descriptors, say), how soon to try again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// One client: its socket, and what we read but could not write back yet.
struct Conn {
    stream: TcpStream,
    owed: Vec<u8>,
    peer_done: bool, // the client sent FIN; finish writing, then close
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7007".into());
    let addr: SocketAddr = addr.parse().map_err(io::Error::other)?;
    let listener = TcpListener::bind(addr)?;
    eprintln!("listening on tcp://{}", listener.local_addr()?);
    serve(listener)
}

/// Runs the loop forever; only a failure of `poll` itself returns.
pub(crate) fn serve(mut listener: TcpListener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(256);
    let mut buf = [0u8; 16 * 1024]; // one read buffer, shared by every client
    let mut accept_failed = false; // the backlog may hold connections: retry

    loop {
        // Block until the kernel reports readiness, or, after a failed
        // accept, for a moment. A signal can interrupt the wait; that is
        // not an error, just wait again.
        let timeout = accept_failed.then_some(ACCEPT_RETRY);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if accept_failed {
            accept_failed = !accept_all(&listener, &poll, &mut conns);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_failed = !accept_all(&listener, &poll, &mut conns);
                continue;
            }
            // Events are hints: the connection may be gone already.
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if !pump(conn, &mut buf) {
                conns.remove(key); // dropping the socket closes it
            }
        }
    }
}

/// Accepts until `WouldBlock` (edge-triggered: the tour's section 2, on the
/// library's front page). Returns false if an error stopped it first: the
/// rest of the backlog then waits for the caller's retry timer.
fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>) -> bool {
    loop {
        match listener.accept() {
            Ok((mut stream, _peer)) => {
                let entry = conns.vacant_entry();
                // Register once, for both directions; never again.
                let interest = Interest::READABLE | Interest::WRITABLE;
                if poll
                    .registry()
                    .register(&mut stream, Token(entry.key()), interest)
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        owed: Vec::new(),
                        peer_done: false,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // That client gave up before we took it; the others wait behind.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            // Out of descriptors and the like: trying again at once would
            // fail again (a spin), so come back after ACCEPT_RETRY.
            Err(_) => return false,
        }
    }
}

/// One pass over a connection: write what is owed, then read and echo
/// until `WouldBlock`. Returns false when the connection is finished.
fn pump(conn: &mut Conn, buf: &mut [u8]) -> bool {
    loop {
        // 1. Write what we owe. `WouldBlock` means the kernel's send buffer is
        //    full: stop here (and stop reading, so the client feels the
        //    back-pressure); the writable event brings us back.
        while !conn.owed.is_empty() {
            match conn.stream.write(&conn.owed) {
                Ok(n) => {
                    conn.owed.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false, // reset, broken pipe: this client only
            }
        }
        // 2. The client sent FIN and has everything back: send ours, done.
        if conn.peer_done {
            let _ = conn.stream.shutdown(Shutdown::Write);
            return false;
        }
        // 3. Read. Zero bytes is the client's FIN (a half-close: it still
        //    reads), not an error; `WouldBlock` means the queue is drained.
        match conn.stream.read(buf) {
            Ok(0) => conn.peer_done = true,
            Ok(n) => conn.owed.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
