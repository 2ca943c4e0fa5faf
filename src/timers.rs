//! Time in the loop: idle deadlines and rate-limited warnings.
//!
//! The loop has no timer thread and never scans every connection to find
//! the idle ones. Each timer is a deadline; the earliest one becomes
//! `poll`'s timeout, so the kernel's wait is the timer.
//!
//! Read next: [`crate::server`], which asks [`IdleTimers::next_deadline`]
//! how long it may block and calls [`IdleTimers::expired`] after each wait.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Milliseconds since the loop started, wrapping after 49 days: enough to
/// time idleness and lifetimes, in four bytes per timestamp.
pub(crate) type Tick = u32;

/// Closes connections that have been quiet for `timeout`.
///
/// One entry per connection, ordered by when it would expire if nothing
/// happened: (deadline, slab key, serial number). When an entry comes due
/// the connection's real last activity decides: expire it, or put the entry
/// back for the remainder. Traffic never touches the queue; a busy
/// connection costs one heap operation per timeout period.
#[derive(Debug)]
pub(crate) struct IdleTimers {
    timeout: Duration,
    queue: BinaryHeap<Reverse<(Instant, usize, u32)>>,
}

impl IdleTimers {
    /// Timers that expire connections quiet for `timeout`.
    pub(crate) fn new(timeout: Duration) -> Self {
        IdleTimers {
            timeout,
            queue: BinaryHeap::new(),
        }
    }

    /// Starts timing connection `id`, at slab `key`, from `now`.
    pub(crate) fn start(&mut self, key: usize, id: u32, now: Instant) {
        self.queue.push(Reverse((now + self.timeout, key, id)));
    }

    /// When the earliest entry comes due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops every entry due at `now` and returns the keys of the connections
    /// that really have been quiet for the timeout. `quiet(key, id)` says
    /// how long the connection at `key` has been quiet, or `None` when that
    /// key now holds another connection (or none): the entry outlived its
    /// connection and is dropped.
    pub(crate) fn expired(
        &mut self,
        now: Instant,
        mut quiet: impl FnMut(usize, u32) -> Option<Duration>,
    ) -> Vec<usize> {
        let mut expired = Vec::new();
        while let Some(&Reverse((at, key, id))) = self.queue.peek() {
            if at > now {
                break;
            }
            self.queue.pop();
            let Some(quiet) = quiet(key, id) else {
                continue;
            };
            if quiet >= self.timeout {
                expired.push(key);
            } else {
                self.queue
                    .push(Reverse((now + (self.timeout - quiet), key, id)));
            }
        }
        expired
    }

    /// Drops the entries of connections that are gone, keeping those for
    /// which `live(key, id)` holds. Entries of closed connections otherwise
    /// wait until their deadline: with many short connections and a long
    /// timeout they would pile up, so the loop sweeps them out once they
    /// outnumber the live ones (an O(n) pass every n closes: O(1) each).
    pub(crate) fn retain(&mut self, mut live: impl FnMut(usize, u32) -> bool) {
        self.queue.retain(|Reverse((_, key, id))| live(*key, *id));
    }

    /// How many entries are queued: one per live connection, plus those of
    /// closed connections not yet swept.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no entry is queued.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Lets a warning of one kind through at most once per `every`, so a flood
/// of the same failure cannot flood the log.
#[derive(Debug)]
pub(crate) struct RateLimit {
    every: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    /// A limit of one message per `every`.
    pub(crate) const fn new(every: Duration) -> Self {
        RateLimit { every, last: None }
    }

    /// Whether a message may go out at `now`.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    /// A connection quiet for the whole timeout expires.
    #[test]
    fn quiet_connection_expires() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(T);
        timers.start(3, 7, start);
        assert!(timers.expired(start + T / 2, |_, _| Some(T)).is_empty());
        assert_eq!(timers.expired(start + T, |_, _| Some(T)), vec![3]);
        assert!(timers.is_empty());
    }

    /// A connection with recent traffic is re-armed for the remainder.
    #[test]
    fn busy_connection_is_rearmed() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(T);
        timers.start(3, 7, start);
        let quiet = Duration::from_secs(4);
        assert!(timers.expired(start + T, |_, _| Some(quiet)).is_empty());
        assert_eq!(timers.next_deadline(), Some(start + T + (T - quiet)));
        assert_eq!(timers.len(), 1);
    }

    /// An entry whose connection is gone (or replaced) is dropped.
    #[test]
    fn stale_entry_is_dropped() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(T);
        timers.start(3, 7, start);
        assert!(timers.expired(start + T, |_, _| None).is_empty());
        assert!(timers.is_empty());
    }

    /// Sweeping keeps the live connections' entries and drops the rest.
    #[test]
    fn retain_sweeps_closed_connections() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(T);
        for key in 0..10 {
            timers.start(key, key as u32, start);
        }
        timers.retain(|key, _| key % 2 == 0);
        assert_eq!(timers.len(), 5);
        let due = timers.expired(start + T, |_, _| Some(T));
        assert_eq!(due.len(), 5);
        assert!(due.iter().all(|key| key % 2 == 0));
    }

    /// A second warning within the interval is held back.
    #[test]
    fn rate_limit_holds_back_repeats() {
        let now = Instant::now();
        let mut limit = RateLimit::new(T);
        assert!(limit.allow(now));
        assert!(!limit.allow(now + T / 2));
        assert!(limit.allow(now + T));
    }
}
