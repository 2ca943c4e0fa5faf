//! Control from outside the loop: [`Handle`]s from other threads, signals
//! through signal-hook's self-pipe, stats on request, and the stop (a
//! drain, then a deadline) with its summary.
//!
//! Read next: `src/group.rs`, which stops and counts several loops.

use super::*;

/// What handles have asked of a loop, counted so none is lost or repeated.
#[derive(Default)]
pub(super) struct Requests {
    pub(super) stops: AtomicU32,
    pub(super) stats: AtomicU32,
}

/// Asks a running [`Server`] to stop, or to log its stats, from any thread.
#[derive(Clone)]
pub struct Handle {
    waker: Arc<Waker>,
    requests: Arc<Requests>,
}

impl Handle {
    /// Asks the server to stop: it stops accepting, lets owed bytes drain
    /// for at most the shutdown timeout, and returns from [`Server::run`].
    /// A second request closes every connection at once.
    pub fn stop(&self) -> io::Result<()> {
        self.requests.stops.fetch_add(1, Ordering::SeqCst);
        self.waker.wake()
    }

    /// Asks the server to log its counters at `info`.
    pub fn log_stats(&self) -> io::Result<()> {
        self.requests.stats.fetch_add(1, Ordering::SeqCst);
        self.waker.wake()
    }
}

/// A server running on its own thread; see [`Server::spawn`].
pub struct Running {
    addrs: Vec<SocketAddr>,
    udp_addrs: Vec<SocketAddr>,
    discard_addrs: Vec<SocketAddr>,
    chargen_addrs: Vec<SocketAddr>,
    handle: Handle,
    thread: Option<thread::JoinHandle<io::Result<Summary>>>,
}

impl Running {
    /// The first TCP address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every TCP address the server listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every UDP address the server serves.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// Every TCP address the server serves `service` on.
    pub fn addrs_of(&self, service: Service) -> &[SocketAddr] {
        match service {
            Service::Echo => &self.addrs,
            Service::Discard => &self.discard_addrs,
            Service::Chargen => &self.chargen_addrs,
        }
    }

    /// A handle that stops the server.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the server and waits for its totals.
    pub fn stop(mut self) -> io::Result<Summary> {
        self.handle.stop()?;
        let thread = self.thread.take().expect("stop runs once");
        thread
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.handle.stop();
            let _ = thread.join();
        }
    }
}

impl Server {
    /// A handle that stops this server from another thread.
    pub fn handle(&self) -> Handle {
        Handle {
            waker: Arc::clone(&self.waker),
            requests: Arc::clone(&self.requests),
        }
    }

    /// Makes this loop one of a group: it is named `label` in logs, and when
    /// it stops it stops `followers` too.
    pub(crate) fn join_group(&mut self, label: String, followers: Vec<Handle>) {
        self.label = label;
        self.followers = followers;
    }

    /// Runs the server on a new thread (for tests and benches). The returned
    /// [`Running`] stops it when asked, or when dropped.
    pub fn spawn(self) -> io::Result<Running> {
        let addrs = self.local_addrs();
        let udp_addrs = self.udp_addrs();
        let discard_addrs = self.tcp_addrs(Service::Discard);
        let chargen_addrs = self.tcp_addrs(Service::Chargen);
        let handle = self.handle();
        let thread = thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || self.run())?;
        Ok(Running {
            addrs,
            udp_addrs,
            discard_addrs,
            chargen_addrs,
            handle,
            thread: Some(thread),
        })
    }

    /// Acts on new requests from handles: log stats, stop, stop now.
    pub(super) fn handle_requests(&mut self, buf: &mut [u8]) {
        let stats = self.requests.stats.load(Ordering::SeqCst);
        if stats != self.seen.1 {
            self.seen.1 = stats;
            if self.followers.is_empty() {
                self.log_stats();
            } else {
                // A group's leader: every loop reports, as on SIGUSR1.
                self.all_log_stats();
            }
        }
        // Two requests can arrive before the loop wakes once: act on each.
        let stops = self.requests.stops.load(Ordering::SeqCst);
        let new = stops.wrapping_sub(self.seen.0).min(2);
        self.seen.0 = stops;
        for _ in 0..new {
            self.stop_requested("stop requested", buf);
        }
    }

    /// Reads the signal pipe and acts on every signal in it.
    ///
    /// SIGINT and SIGTERM stop (a second one closes everything). SIGHUP and
    /// SIGUSR1 log the counters: `kill -HUP` is how daemons are asked to
    /// reload, and there is nothing else to reload. SIGUSR2 and SIGALRM mean
    /// nothing here; caught, they cannot end the process by their default
    /// action.
    pub(super) fn signal_event(&mut self, buf: &mut [u8]) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let arrived: Vec<i32> = signals.pending().collect();
        for signal in arrived {
            match signal {
                SIGHUP | SIGUSR1 => self.all_log_stats(),
                SIGINT => self.stop_requested("SIGINT", buf),
                SIGTERM => self.stop_requested("SIGTERM", buf),
                SIGUSR2 | SIGALRM => {
                    let name = if signal == SIGUSR2 {
                        "SIGUSR2"
                    } else {
                        "SIGALRM"
                    };
                    log::info!(
                        "{}{name}: has no meaning for this server; ignored",
                        self.label
                    );
                }
                other => log::debug!("signal {other}: not handled; ignored"),
            }
        }
    }

    /// Logs this loop's counters and asks every other loop of the group for
    /// theirs; the last to report logs the total.
    fn all_log_stats(&mut self) {
        self.shared.begin_stats_round();
        self.log_stats();
        for f in &self.followers {
            let _ = f.log_stats();
        }
    }

    /// A stop was asked for: the first one drains, a second one closes all.
    pub(super) fn stop_requested(&mut self, why: &str, buf: &mut [u8]) {
        if self.phase == Phase::Serving {
            self.begin_stop(why, buf);
        } else {
            log::warn!("{}{why} again: closing every connection now", self.label);
            self.abort_all();
            self.phase = Phase::Draining {
                deadline: Instant::now(),
            };
        }
        for f in &self.followers {
            let _ = f.stop();
        }
    }

    /// Stops accepting and lets every connection finish what it owes.
    pub(super) fn begin_stop(&mut self, why: &str, buf: &mut [u8]) {
        if self.signals.is_some() {
            // Tell a service manager we are on our way out (no-op otherwise).
            if let Err(e) = systemd::notify("STOPPING=1") {
                log::warn!("cannot notify the service manager: {}", describe(&e));
            }
        }
        self.phase = Phase::Draining {
            deadline: Instant::now() + self.shutdown_timeout,
        };
        self.accept_paused_until = None;
        // Dropping a listener closes it: new clients are refused from now on.
        // (A socket-activated listener is our copy of the service manager's
        // socket, which stays open: clients may still complete a handshake
        // there, and are refused when the process exits.)
        for mut l in self.sockets.drain(..) {
            let _ = match &mut l.socket {
                Socket::Tcp(s) => self.poll.registry().deregister(s),
                Socket::Udp(s) => self.poll.registry().deregister(s),
            };
        }
        self.ready.retain(|t| t.0 < FIRST_RESERVED);
        let now = self.now_tick();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        let owing = self.conns.iter().filter(|(_, c)| c.owed() > 0).count();
        log::info!(
            "{}{why}: stopping; {} connections open, {owing} still owed bytes \
             (draining for up to {:?})",
            self.label,
            keys.len(),
            self.shutdown_timeout
        );
        for key in keys {
            if self.conns[key].state() == State::Closed {
                continue;
            }
            let next = self.conns[key].stop(buf, now, &self.limits);
            self.after_pass(key, next);
        }
    }

    /// Closes every connection that is not closed yet.
    pub(super) fn abort_all(&mut self) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state() != State::Closed)
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            let next = self.conns[key].abort(Reason::Shutdown);
            self.after_pass(key, next);
        }
    }

    /// The totals so far, live connections included.
    pub fn snapshot(&self) -> Summary {
        let mut now = self.summary.clone();
        // Connections closed this turn are in the totals already.
        let live = self
            .conns
            .iter()
            .filter(|(_, c)| c.state() != State::Closed);
        now.active = live.clone().count() as u64;
        for (_, c) in live {
            now.count_bytes(c.speaks(), c.bytes_in(), c.bytes_out());
        }
        now.elapsed = self.started.elapsed();
        now.log_dropped = crate::logging::dropped();
        now
    }

    /// Logs this loop's counters; the last loop of a group to do so for
    /// one request also logs the total of all of them.
    pub(super) fn log_stats(&self) {
        let figures = self.snapshot();
        log::info!("{}stats: {figures}", self.label);
        if let Some(total) = self.shared.report_stats(self.index, figures) {
            log::info!("stats of all loops: {total}");
        }
    }
}
