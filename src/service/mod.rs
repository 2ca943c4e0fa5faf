//! What a connection speaks: echo (RFC 862), discard (RFC 863) or
//! chargen (RFC 864), chosen once, when it is accepted, from the listener
//! it came through.
//!
//! How a connection *lives* (its states, the limits, the idle timer,
//! keepalive, the memory budget, the drain at shutdown) is the same for
//! every service and stays in `src/connection.rs`. What it *speaks* is a
//! pass of its own: echo's is the read-echo-write cycle in
//! `src/connection.rs`; each other service is one file here. A connection
//! of another service starts in the state `Serving`, never in echo's
//! `Open`, so the echo fast path, which checks `Open` anyway, pays nothing
//! for them: the general pass sends them to [`pass`], which picks the
//! service's own.
//!
//! Adding a service: a file here with its pass, and here its variant, its
//! name and its arm in [`pass`]; then the binary's flag, which adds its
//! addresses to [`crate::Config::services`]. Nothing else changes: every
//! limit, the drain and the counters apply as they are.
//!
//! Only TCP: chargen over UDP answers one small forged datagram with a
//! large one and is the classic amplifier of CERT CA-1996-01, so it is not
//! offered; UDP discard would be harmless but nobody asked.
//!
//! Read next: [`discard`] and [`chargen`].

pub(crate) mod chargen;
pub(crate) mod discard;

use std::fmt;
use std::net::SocketAddr;

use crate::connection::{Connection, Limits, Next, Stream, Wake};

/// One pass of a connection that speaks `c.speaks()` (not echo, whose
/// pass is `Connection::drive` itself).
pub(crate) fn pass<S: Stream>(
    c: &mut Connection<S>,
    buf: &mut [u8],
    wake: Wake,
    limits: &Limits,
) -> Next {
    match c.speaks() {
        Service::Discard => discard::pass(c, buf, wake, limits),
        Service::Chargen => chargen::pass(c, buf, wake, limits),
        // An echo connection is never `Serving`.
        Service::Echo => Next::Wait,
    }
}

/// A TCP address and the service it serves, for [`crate::Config::services`].
pub type ServiceAddr = (Service, SocketAddr);

/// The protocol a TCP listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// RFC 862: every byte comes back.
    Echo,
    /// RFC 863: every byte is read and dropped, until the client closes.
    Discard,
    /// RFC 864: lines of a rotating character pattern, as fast as the
    /// client reads; what it sends is read and ignored.
    Chargen,
}

impl Service {
    /// The service's usual name, as in `/etc/services` and systemd's
    /// `FileDescriptorName=`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Discard => "discard",
            Service::Chargen => "chargen",
        }
    }

    /// The service with this name, if there is one.
    pub fn from_name(name: &str) -> Option<Service> {
        [Service::Echo, Service::Discard, Service::Chargen]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
