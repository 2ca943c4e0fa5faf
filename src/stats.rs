//! Totals the loop keeps, and the summary it logs when it stops.
//!
//! Read next: [`crate::server`], which counts into a [`Summary`].

use std::fmt;
use std::time::Duration;

/// What a server did over its whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted.
    pub connections: u64,
    /// Connections closed.
    pub closed: u64,
    /// Bytes echoed (written back to clients).
    pub bytes: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Connections closed at once because a connection limit was reached.
    pub rejected: u64,
    /// Connections closed for being idle.
    pub idle_closed: u64,
    /// `accept` calls that failed for a reason other than one client's.
    pub accept_errors: u64,
    /// How long the loop ran.
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections={} closed={} bytes={} bytes_in={} rejected={} idle_closed={} \
             accept_errors={} uptime={:.3}s",
            self.connections,
            self.closed,
            self.bytes,
            self.bytes_in,
            self.rejected,
            self.idle_closed,
            self.accept_errors,
            self.elapsed.as_secs_f64()
        )
    }
}
