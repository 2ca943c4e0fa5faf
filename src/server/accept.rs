//! Accept and admission: taking connections from a listener's backlog,
//! a bounded batch at a time, and deciding which of them to serve.
//!
//! A pass accepts at most [`ACCEPT_BATCH`] connections from one listener,
//! then puts the listener on the ready list: a storm of connections that
//! reset as soon as they open cannot hold the loop in `accept` while the
//! connections it already took pile up unserved. One that was reset
//! before it was accepted is dropped without taking a slot; the others
//! are admitted under the whole server's limits ([`crate::limits`]). When
//! `accept` runs out of descriptors the loop pauses accepting and retries
//! on a timer and whenever a connection closes: it neither spins nor stops
//! serving.
//!
//! Read next: `src/connection.rs`, what an admitted connection does.

use super::*;

/// The most connections one pass accepts from one listener before the loop
/// serves the others; the listener goes on the ready list for the rest.
pub(crate) const ACCEPT_BATCH: usize = 64;

/// While `accept` fails for want of descriptors, how often to try again.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Accept errors that concern one would-be connection, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::PermissionDenied
    ) || e
        .raw_os_error()
        .is_some_and(|code| PER_CONNECTION_ERRORS.contains(&code))
}

/// accept(2) on Linux: these network errors of the new socket "should be
/// treated like EAGAIN by retrying". The BSDs and macOS report a connection
/// that died in the queue as `ECONNABORTED` (above); the rest of the list
/// is harmless there, and `ENONET` exists on Linux only.
const PER_CONNECTION_ERRORS: &[i32] = &[
    libc::EPROTO,
    libc::ENETDOWN,
    #[cfg(target_os = "linux")]
    libc::ENONET,
    libc::EHOSTDOWN,
    libc::EHOSTUNREACH,
    libc::ENETUNREACH,
    libc::ENOPROTOOPT,
    libc::EOPNOTSUPP,
];

impl Server {
    /// Tries every listener again after `accept` ran out of resources (the
    /// tour, section 2).
    pub(super) fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        for i in 0..self.sockets.len() {
            self.accept(i);
            if self.accept_paused_until.is_some() {
                return;
            }
        }
    }

    /// Accepts pending connections on listener `i` until `WouldBlock`, or
    /// [`ACCEPT_BATCH`] of them: then the listener goes on the ready list,
    /// so that the loop serves (and reaps) what it accepted before it
    /// takes more.
    pub(super) fn accept(&mut self, i: usize) {
        if self.accept_paused_until.is_some() {
            // Out of descriptors a moment ago: the retry timer, or the next
            // connection to close, comes back for this backlog.
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            // The listener may be gone: a stop earlier in this turn closed it.
            let Some(Listener {
                socket: Socket::Tcp(listener),
                addr,
                service,
                ..
            }) = self.sockets.get(i)
            else {
                return;
            };
            let (addr, service) = (*addr, *service);
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, service),
                // The backlog is empty: wait for the next event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up between its SYN and our accept: that
                // connection is gone, the others in the backlog are not.
                Err(e) if is_per_connection(&e) => {
                    log::debug!("accept on {addr}: {}", describe(&e));
                }
                // Out of descriptors or memory (or anything unforeseen): pause
                // rather than spin on an error that will not go away by
                // itself, and keep serving the connections we have.
                Err(e) => {
                    self.summary.accept_errors += 1;
                    let now = Instant::now();
                    if self.accept_warning.allow(now) {
                        let hint = if net::is_resource_exhaustion(&e) {
                            " (raise ulimit -n or lower --max-connections)"
                        } else {
                            ""
                        };
                        log::warn!(
                            "{}accept on {addr}: {}{hint}; pausing accepts, retrying every \
                             {ACCEPT_RETRY:?} and when a connection closes",
                            self.label,
                            describe(&e),
                        );
                    }
                    self.accept_paused_until = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
        // The batch is spent and the backlog may hold more: back on the
        // ready list (the tour, section 2).
        self.ready.push(Token(FIRST_SOCKET - i));
    }

    /// Registers a freshly accepted connection and gives it a slab slot, or
    /// closes it at once if a connection limit says no.
    pub(super) fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr, speaks: Service) {
        // A client that connected and reset before we got to it (a connect-
        // and-reset storm is made of these) is gone already: the reset is
        // waiting as the socket's error. Drop it before it takes a slot.
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.summary.reset_early += 1;
                log::debug!("{peer}: gone before it was served: {}", describe(&e));
                return;
            }
        }
        if let Err(refusal) = self.shared.admit(peer.ip()) {
            self.summary.rejected += 1;
            if self.limit_warning.allow(Instant::now()) {
                log::warn!(
                    "{}{peer}: refused: {refusal} (further refusals are counted, \
                     not logged, for {WARN_EVERY:?})",
                    self.label
                );
            } else {
                log::debug!("{peer}: refused: {refusal}");
            }
            // Dropping the stream closes it: the client reads EOF at once.
            return;
        }
        // Echoes are small and latency-bound: do not let Nagle hold them back.
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{peer}: TCP_NODELAY: {}", describe(&e));
        }
        // TCP urgent data stays in the stream (SO_OOBINLINE), so it is echoed
        // like any other byte instead of being set aside where no read sees it.
        if let Err(e) = socket2::SockRef::from(&stream).set_out_of_band_inline(true) {
            log::debug!("{peer}: SO_OOBINLINE: {}", describe(&e));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let now = Instant::now();
        let opened = self.tick(now);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Registered once for both directions, never again: the hot path
        // makes no `epoll_ctl` call. Readiness we do not need right now is
        // just a hint we ignore.
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), CONNECTION_INTEREST)
        {
            self.shared.release(peer.ip());
            log::debug!("{peer}: cannot register: {}", describe(&e));
            return;
        }
        entry.insert(Connection::new(Tcp(stream), peer, id, opened, speaks));
        if let Some(idle) = self.idle.as_mut() {
            idle.start(key, id, now);
        }
        self.summary.connections += 1;
        if speaks == Service::Echo {
            log::debug!("{peer}: connected (token {key})");
        } else {
            log::debug!("{peer}: connected (token {key}, {speaks})");
        }
    }
}
