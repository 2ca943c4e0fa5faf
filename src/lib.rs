//! # mio-echo
//!
//! An [RFC 862](https://www.rfc-editor.org/rfc/rfc862) echo server on one
//! hand-written [`mio`] poll loop: every byte a client sends comes back to
//! it, in order, until the client closes.
//!
//! ## The readiness contract
//!
//! mio tells the loop when a socket is *ready*: readable means a `read` will
//! not block, writable means a `write` will not. It does not do the I/O.
//! Three rules follow, and the whole server is built around them:
//!
//! * **Readiness is edge-triggered.** The kernel reports a socket when it
//!   *becomes* ready, once. Whoever handles the event must read (or write)
//!   until the call returns `WouldBlock`, or until it has proof that the
//!   queue is empty; bytes left behind raise no second event.
//! * **Every event is a hint.** A readable event may find nothing to read
//!   (a spurious wake-up), a token may name a connection that was just
//!   closed. Handlers act on what the system call returns, never on the
//!   event alone, so a stale event costs one `WouldBlock`.
//! * **A `Token` is just a number** the loop chose when it registered the
//!   socket. Here it is the connection's key in a [`slab::Slab`].
//!
//! ## Where to read
//!
//! | concept | file |
//! |---|---|
//! | the poll loop: tokens, accept, dispatch, ready list, shutdown | [`server`] |
//! | idle deadlines and rate-limited warnings | [`timers`] |
//! | UDP echo and its reflection guard | [`udp`] |
//! | several loops on several threads (`SO_REUSEPORT`) | [`group`] |
//! | socket activation and readiness notification | [`systemd`] |
//! | one connection's states and its read-echo-write pass | [`connection`] |
//! | the bytes owed to a slow peer | [`buffer`] |
//! | listening sockets and their options | [`net`] |
//! | configuration and defaults | [`config`] |
//! | errors a person reads | [`error`] |
//! | counters, stats lines and the exit summary | [`stats`] |
//! | the blocking client behind `echo-client` | [`client`] |

#![warn(missing_docs)]

pub mod buffer;
pub mod client;
pub mod config;
pub mod connection;
pub mod error;
pub mod group;
pub mod net;
pub mod server;
pub mod stats;
pub mod systemd;
pub mod timers;
pub mod udp;

pub use config::Config;
pub use error::StartError;
pub use server::{Handle, Running, Server};
pub use stats::Summary;
