//! What the whole server may hold, shared by every loop: connections in
//! all, connections per client address, and the memory of pending buffers.
//!
//! With `--threads N` each loop accepts on its own, but a limit is the
//! server's, not a loop's: `--max-connections 400` means 400 in all, and
//! `--max-connections-per-ip 10` means 10 from one address whichever loops
//! they land on. So the counts live here, behind an `Arc`, and are touched
//! only when a connection is admitted or closes (never per echo): an atomic
//! for the total, a mutex-guarded map for the per-address counts (taken
//! only while that limit is on), and the [`Budget`] of buffer memory.
//!
//! Client addresses are counted by [`address_key`]: an IPv4 client that
//! reached a dual-stack `[::]` listener (`::ffff:a.b.c.d`) counts as the
//! IPv4 address it is, and an IPv6 client by its /64 (configurable), since
//! one host is usually given a whole /64 and could otherwise take any
//! number of addresses from it.
//!
//! Read next: [`crate::server`], whose accept path asks these limits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::buffer::Budget;
use crate::stats::Summary;

/// Limits and counts shared by every loop of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The most connections at once, for the whole server.
    max_connections: usize,
    /// What set `max_connections`: the flag, or the descriptor limit.
    bound_by: Bound,
    open: AtomicUsize,
    per_ip: Option<PerIp>,
    /// The bytes every pending buffer may hold together.
    pub(crate) memory: Arc<Budget>,
    /// How many loops share these limits.
    loops: usize,
    /// Each loop's figures for the stats request under way, so that the
    /// last loop to report can log the total.
    stats_round: Mutex<Vec<Option<Summary>>>,
}

/// What set the connection limit in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// `--max-connections`.
    Flag,
    /// The open-file limit (`ulimit -n`), lower than the flag.
    Descriptors(u64),
}

#[derive(Debug)]
struct PerIp {
    limit: u32,
    v6_prefix: u8,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// Why a new connection was refused, in words for the log.
pub(crate) type Refusal = String;

impl Shared {
    /// Limits for `loops` loops: at most `max_connections` in all (set by
    /// `bound_by`), `per_ip` per client address (0: no limit; IPv6 counted
    /// by `v6_prefix` bits), and `memory` bytes of buffers.
    pub(crate) fn new(
        max_connections: usize,
        bound_by: Bound,
        per_ip: usize,
        v6_prefix: u8,
        memory: Budget,
        loops: usize,
    ) -> Shared {
        Shared {
            max_connections,
            bound_by,
            open: AtomicUsize::new(0),
            per_ip: (per_ip > 0).then(|| PerIp {
                limit: u32::try_from(per_ip).unwrap_or(u32::MAX),
                v6_prefix,
                open: Mutex::new(HashMap::new()),
            }),
            memory: Arc::new(memory),
            loops,
            stats_round: Mutex::new(vec![None; loops]),
        }
    }

    /// The most connections the server holds at once.
    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// How many loops share these limits.
    pub(crate) fn loops(&self) -> usize {
        self.loops
    }

    /// What set [`Shared::max_connections`].
    pub(crate) fn bound_by(&self) -> Bound {
        self.bound_by
    }

    /// Connections open now, in every loop.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a new connection from `ip`, or says which limit it would
    /// break (and counts nothing). Every admitted connection is
    /// [`Shared::release`]d exactly once when it closes.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        let taken = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_connections).then_some(n + 1)
            });
        if taken.is_err() {
            let limit = match self.bound_by {
                Bound::Flag => "--max-connections".to_string(),
                Bound::Descriptors(fds) => format!(
                    "the descriptor budget of the open-file limit {fds}; \
                     raise it with ulimit -n"
                ),
            };
            return Err(format!(
                "{} connections open, the most allowed ({limit})",
                self.max_connections
            ));
        }
        let Some(per_ip) = &self.per_ip else {
            return Ok(());
        };
        let key = address_key(ip, per_ip.v6_prefix);
        let mut open = per_ip.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= per_ip.limit {
            let held = *count;
            drop(open);
            self.open.fetch_sub(1, Ordering::Relaxed);
            let what = match key {
                IpAddr::V6(_) => format!("{key}/{}", per_ip.v6_prefix),
                IpAddr::V4(_) => key.to_string(),
            };
            return Err(format!(
                "{what} already holds {held} connections, the most allowed \
                 (--max-connections-per-ip)"
            ));
        }
        *count += 1;
        Ok(())
    }

    /// Uncounts a connection from `ip` that was admitted and has closed.
    pub(crate) fn release(&self, ip: IpAddr) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        let Some(per_ip) = &self.per_ip else {
            return;
        };
        let key = address_key(ip, per_ip.v6_prefix);
        let mut open = per_ip.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }

    /// Files loop `index`'s figures for a stats request. Returns the total
    /// of every loop once the last of them has reported, and then starts
    /// the next round. With one loop there is no total to log.
    pub(crate) fn report_stats(&self, index: usize, figures: Summary) -> Option<Summary> {
        if self.loops < 2 {
            return None;
        }
        let mut round = self
            .stats_round
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        round[index] = Some(figures);
        if round.iter().any(Option::is_none) {
            return None;
        }
        let mut total = Summary::default();
        for figures in round.iter_mut() {
            total += &figures.take().expect("every loop reported");
        }
        Some(total)
    }

    /// A new stats request begins (the leader calls this before asking the
    /// others): figures of an unfinished earlier round are dropped.
    pub(crate) fn begin_stats_round(&self) {
        let mut round = self
            .stats_round
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        round.iter_mut().for_each(|r| *r = None);
    }
}

/// The address a client is counted under for `--max-connections-per-ip`:
/// IPv4 (also when it arrives IPv4-mapped on a dual-stack socket) as it
/// is, IPv6 by its first `v6_prefix` bits.
pub(crate) fn address_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max: usize, per_ip: usize) -> Shared {
        Shared::new(max, Bound::Flag, per_ip, 64, Budget::new(1 << 20, 1024), 1)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A mapped IPv4 client counts as its IPv4 address.
    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        assert_eq!(address_key(ip("::ffff:10.1.2.3"), 64), ip("10.1.2.3"));
        assert_eq!(address_key(ip("10.1.2.3"), 64), ip("10.1.2.3"));
    }

    /// IPv6 clients are counted by their prefix.
    #[test]
    fn ipv6_counts_by_prefix() {
        let a = address_key(ip("2001:db8:1:2:aaaa::1"), 64);
        let b = address_key(ip("2001:db8:1:2:bbbb::2"), 64);
        let c = address_key(ip("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_eq!(address_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(address_key(ip("2001:db8::1"), 0), ip("::"));
    }

    /// The total limit holds, and a release makes room again.
    #[test]
    fn total_limit_holds_and_frees() {
        let s = shared(2, 0);
        assert!(s.admit(ip("10.0.0.1")).is_ok());
        assert!(s.admit(ip("10.0.0.2")).is_ok());
        let refusal = s.admit(ip("10.0.0.3")).unwrap_err();
        assert!(refusal.contains("--max-connections"), "{refusal}");
        s.release(ip("10.0.0.1"));
        assert!(s.admit(ip("10.0.0.3")).is_ok());
        assert_eq!(s.open(), 2);
    }

    /// The refusal names the descriptor budget when that set the limit.
    #[test]
    fn refusal_names_the_limit_in_force() {
        let s = Shared::new(1, Bound::Descriptors(64), 0, 64, Budget::new(1024, 1), 1);
        s.admit(ip("10.0.0.1")).unwrap();
        let refusal = s.admit(ip("10.0.0.1")).unwrap_err();
        assert!(refusal.contains("open-file limit 64"), "{refusal}");
        assert!(!refusal.contains("--max-connections"), "{refusal}");
    }

    /// The per-address limit counts mapped and plain IPv4 together, and a
    /// refused connection is not counted in the total.
    #[test]
    fn per_ip_limit_counts_one_address_however_it_arrives() {
        let s = shared(100, 2);
        s.admit(ip("10.0.0.1")).unwrap();
        s.admit(ip("::ffff:10.0.0.1")).unwrap();
        let refusal = s.admit(ip("10.0.0.1")).unwrap_err();
        assert!(refusal.contains("--max-connections-per-ip"), "{refusal}");
        assert_eq!(s.open(), 2);
        s.admit(ip("10.0.0.2")).unwrap();
        s.release(ip("::ffff:10.0.0.1"));
        s.admit(ip("10.0.0.1")).unwrap();
    }

    /// The last loop to report a stats round gets the total.
    #[test]
    fn stats_total_comes_with_the_last_report() {
        let s = Shared::new(10, Bound::Flag, 0, 64, Budget::new(1024, 1), 3);
        let one = Summary {
            connections: 1,
            ..Summary::default()
        };
        assert!(s.report_stats(0, one.clone()).is_none());
        assert!(s.report_stats(2, one.clone()).is_none());
        let total = s.report_stats(1, one.clone()).expect("all three reported");
        assert_eq!(total.connections, 3);
        assert!(s.report_stats(0, one).is_none(), "a new round begins");
    }
}
