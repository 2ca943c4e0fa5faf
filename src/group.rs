//! Several independent loops, one per thread, for more than one core.
//!
//! Nothing inside a loop changes: each has its own `Poll` and its own slab,
//! and a connection lives and dies in the loop that accepted it. By default
//! the loops share each listening socket (one socket, a descriptor per
//! loop): every loop is told of a new connection and the first to call
//! `accept` gets it. With `--reuse-port` each loop binds its own socket with
//! `SO_REUSEPORT` instead and the kernel spreads connections (and
//! datagrams) across them by a hash of the peer's address; that also lets
//! other processes bind the same address, which is why it is asked for,
//! never implied: without it a second server on a taken address fails.
//!
//! The limits are the whole server's (`src/limits.rs`): the loops count
//! connections, connections per address and buffer memory together, with
//! atomics and one mutex touched only when a connection opens or closes,
//! never per echo.
//!
//! The first loop runs on the calling thread and is the leader: it alone
//! reads the signal pipe, and when it stops (or logs its stats) it asks the
//! others to do the same through their [`Handle`]s. The summary adds up
//! every loop's totals, and a stats request logs each loop's line and then
//! the total of all of them.
//!
//! With one loop (the default) the process holds exactly one thread, the
//! cheapest per echo (the tour, "One thread"). Use `--threads N` only when
//! one core is saturated and a second is free.
//!
//! Read next: `src/server/mod.rs` for the loop itself.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use crate::config::Config;
use crate::error::StartError;
use crate::server::{self, Handle, Server};
use crate::stats::Summary;

/// Bound loops, ready to run.
pub struct Group {
    servers: Vec<Server>,
}

impl Group {
    /// Binds `config.threads` loops (at least one) on `config`'s sockets,
    /// under one set of limits.
    ///
    /// The first loop binds first, so that a port 0 is resolved once and
    /// every other loop serves the very port it got.
    pub fn bind(config: Config) -> Result<Group, StartError> {
        let n = config.threads.max(1);
        let shared = Arc::new(server::shared_limits(&config, n)?);
        let sockets = server::open_sockets(&config, config.reuse_port)?;
        let first = Server::new(&config, sockets, Arc::clone(&shared), 0)?;
        let mut servers = vec![first];
        if n > 1 {
            let mut rest = servers[0].with_bound_addrs(&config);
            rest.handle_signals = false;
            presize_fd_table();
            for index in 1..n {
                let mut sockets = if config.reuse_port {
                    server::open_sockets(&rest, true)?
                } else {
                    servers[0].share_sockets()?
                };
                // A UDP socket that several loops would share is served by
                // the first alone: each loop keeps its own rate buckets, so
                // sharing would multiply every source's limit by the loops.
                sockets.retain(|l| !l.is_shared_udp(config.reuse_port));
                servers.push(Server::new(&rest, sockets, Arc::clone(&shared), index)?);
            }
        }
        Ok(Group { servers })
    }

    /// The TCP addresses served (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.servers[0].local_addrs()
    }

    /// The UDP addresses served (port 0 resolved).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.servers[0].udp_addrs()
    }

    /// Logs the sockets served and the connection budget, once.
    pub fn announce(&self) {
        self.servers[0].announce();
        if self.servers.len() > 1 {
            log::info!(
                "{} loops, one per thread, {}",
                self.servers.len(),
                if self.servers[0].reuses_port() {
                    "each with its own sockets (SO_REUSEPORT)"
                } else {
                    "sharing each socket"
                }
            );
        }
    }

    /// A handle that stops every loop (through the leader).
    pub fn handle(&self) -> Handle {
        self.servers[0].handle()
    }

    /// Runs the leader on this thread and every other loop on a thread of
    /// its own, until a stop; returns the totals of all of them.
    pub fn run(self) -> io::Result<Summary> {
        let n = self.servers.len();
        let mut servers = self.servers.into_iter();
        let mut leader = servers.next().expect("a group has a first loop");
        if n == 1 {
            return leader.run();
        }
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for (i, mut follower) in servers.enumerate() {
            follower.join_group(format!("loop {}/{n}: ", i + 2), Vec::new());
            handles.push(follower.handle());
            let thread = thread::Builder::new()
                .name(format!("echo-loop-{}", i + 2))
                .spawn(move || follower.run());
            match thread {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stop_all(&handles, threads);
                    return Err(e);
                }
            }
        }
        leader.join_group(format!("loop 1/{n}: "), handles.clone());
        let led = leader.run();
        if led.is_err() {
            stop_all(&handles, Vec::new());
        }
        let mut total = led?;
        for thread in threads {
            let summary = thread
                .join()
                .map_err(|_| io::Error::other("a loop's thread panicked"))??;
            total += &summary;
        }
        // One count for the process, read once all loops are done.
        total.log_dropped = crate::logging::dropped();
        Ok(total)
    }
}

fn stop_all(handles: &[Handle], threads: Vec<thread::JoinHandle<io::Result<Summary>>>) {
    for h in handles {
        let _ = h.stop();
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Grows the kernel's descriptor table to its final size while the process
/// still has one thread.
///
/// Linux grows the table by copying it, and in a multi-threaded process it
/// must then wait out an RCU grace period before freeing the old one, on
/// every growth. Opening the highest descriptor we may use once, now, makes
/// the table full-sized before the loops' threads exist.
fn presize_fd_table() {
    let Ok(limit) = crate::net::fd_limit() else {
        return;
    };
    let Ok(highest) = libc::c_int::try_from(limit.saturating_sub(1)) else {
        return;
    };
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto a descriptor number we then close at once; if that
    // number were in use dup2 would close it, so check it is free first.
    unsafe {
        if libc::fcntl(highest, libc::F_GETFD) == -1 && libc::dup2(null.as_raw_fd(), highest) >= 0 {
            libc::close(highest);
        }
    }
}
