//! Totals the loop keeps, and the summary it logs when it stops.
//!
//! Read next: `src/server/mod.rs`, which counts into a [`Summary`].

use std::fmt;
use std::ops::AddAssign;
use std::time::Duration;

use crate::service::Service;
use crate::udp::UdpCounts;

/// What a server did over its whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted.
    pub connections: u64,
    /// Connections closed.
    pub closed: u64,
    /// Connections open when the figures were taken.
    pub active: u64,
    /// Bytes echoed (written back to clients).
    pub bytes: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes read and dropped by discard connections (RFC 863).
    pub discarded: u64,
    /// Bytes of pattern sent by chargen connections (RFC 864).
    pub generated: u64,
    /// Connections closed at once because a connection limit was reached.
    pub rejected: u64,
    /// Connections dropped at accept because the client had reset them
    /// already (they never took a slot).
    pub reset_early: u64,
    /// Connections closed because the allocator refused their buffer.
    pub out_of_memory: u64,
    /// Connections closed for being idle.
    pub idle_closed: u64,
    /// `accept` calls that failed for a reason other than one client's.
    pub accept_errors: u64,
    /// What the UDP sockets did.
    pub udp: UdpCounts,
    /// Log lines dropped because the log output could not take them
    /// without waiting ([`crate::logging::dropped`]). One count for the
    /// whole process, not one per loop.
    pub log_dropped: u64,
    /// How long the loop ran.
    pub elapsed: Duration,
}

/// Adds up the loops of a group; the elapsed time is the longest, and
/// `log_dropped`, one count for the whole process, is not added up either.
impl Summary {
    /// Counts the bytes of one connection speaking `speaks`: `bytes_in`
    /// read and `bytes_out` written (discard: dropped).
    pub(crate) fn count_bytes(&mut self, speaks: Service, bytes_in: u64, bytes_out: u64) {
        match speaks {
            Service::Echo => {
                self.bytes += bytes_out;
                self.bytes_in += bytes_in;
            }
            Service::Discard => self.discarded += bytes_out,
            Service::Chargen => self.generated += bytes_out,
        }
    }
}

impl AddAssign<&Summary> for Summary {
    fn add_assign(&mut self, other: &Summary) {
        self.connections += other.connections;
        self.closed += other.closed;
        self.active += other.active;
        self.bytes += other.bytes;
        self.bytes_in += other.bytes_in;
        self.discarded += other.discarded;
        self.generated += other.generated;
        self.rejected += other.rejected;
        self.reset_early += other.reset_early;
        self.out_of_memory += other.out_of_memory;
        self.idle_closed += other.idle_closed;
        self.accept_errors += other.accept_errors;
        self.udp.echoed += other.udp.echoed;
        self.udp.bytes += other.udp.bytes;
        self.udp.dropped += other.udp.dropped;
        self.udp.refused += other.udp.refused;
        self.log_dropped = self.log_dropped.max(other.log_dropped);
        self.udp.limited += other.udp.limited;
        self.udp.overflow += other.udp.overflow;
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections={} active={} closed={} bytes={} bytes_in={} discarded={} \
             generated={} rejected={} \
             reset_early={} out_of_memory={} idle_closed={} accept_errors={} udp_echoed={} \
             udp_bytes={} udp_dropped={} udp_refused={} udp_limited={} udp_overflow={} \
             log_dropped={} uptime={:.3}s",
            self.connections,
            self.active,
            self.closed,
            self.bytes,
            self.bytes_in,
            self.discarded,
            self.generated,
            self.rejected,
            self.reset_early,
            self.out_of_memory,
            self.idle_closed,
            self.accept_errors,
            self.udp.echoed,
            self.udp.bytes,
            self.udp.dropped,
            self.udp.refused,
            self.udp.limited,
            self.udp.overflow,
            self.log_dropped,
            self.elapsed.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each loop of a group reports the process's one `log_dropped`
    /// count: adding the loops up does not multiply it.
    #[test]
    fn adding_up_loops_keeps_one_log_dropped_count() {
        let loop_summary = Summary {
            connections: 2,
            log_dropped: 7,
            ..Summary::default()
        };
        let mut total = loop_summary.clone();
        total += &loop_summary;
        assert_eq!(total.connections, 4);
        assert_eq!(total.log_dropped, 7);
        assert!(total.to_string().contains(" log_dropped=7 "), "{total}");
    }
}
