//! # mio-echo
//!
//! An [RFC 862](https://www.rfc-editor.org/rfc/rfc862) echo server on one
//! hand-written [`mio`] poll loop: every byte a client sends comes back to
//! it, in order, until the client closes.
//!
//! To embed the server, depend on it without the `echo-server` binary's
//! command line and logging set-up: `mio-echo = { version = "0.1",
//! default-features = false }` (the default feature `cli` builds the binary).
//! The API is [`Config`], [`Server`] (or [`group::Group`] for several loops),
//! [`Running`], [`Handle`], [`Summary`] and [`StartError`], with what the
//! binary also uses ([`systemd`], [`logging`]); the rest is private to the
//! crate, and the tour names the file of each part it mentions.
//!
//! This page is the tour. It explains readiness-based I/O through this
//! server, in the order a byte meets it, and links each idea to the code
//! that does it. An hour with it, `examples/minimal.rs` (the smallest
//! correct version) and `docs/TRANSCRIPT.md` (a real session as
//! the loop logs it) should be enough to change the loop safely.
//!
//! ## 1. What "readiness" means
//!
//! A socket in non-blocking mode never makes its caller wait: `read` on an
//! empty socket returns the error `WouldBlock` at once. A server with ten
//! thousand sockets cannot try them all in turn, so it asks the kernel
//! which ones are *ready*: readable means a `read` will return something
//! (bytes, an EOF, an error) instead of `WouldBlock`; writable means a
//! `write` will take at least one byte. That question is `epoll_wait` on
//! Linux (`kqueue` on the BSDs), and [`mio::Poll`] is a thin, portable
//! layer over it. mio reports readiness; it does no I/O. The loop does the
//! reading and writing itself, which is the point of writing it by hand.
//!
//! Each socket is registered once with a [`mio::Token`], a number the loop
//! picks. `poll` hands back [`mio::event::Event`]s carrying that number.
//! Here a connection's token is its key in a [`slab::Slab`]: the table of
//! connections and the map from token to connection are the same thing
//! (see `src/server/mod.rs` for the tokens of the listeners, the waker and the
//! signal pipe, which no key can reach).
//!
//! ## 2. Why edge-triggered readiness means "drain until `WouldBlock`"
//!
//! mio registers sockets *edge-triggered*: the kernel reports a socket when
//! it *becomes* ready, once, not for as long as it stays ready. If a
//! handler reads 16 KiB of a 64 KiB burst and returns, the other 48 KiB
//! raise no second event; the connection is stuck until the client sends
//! more. So every handler reads until `read` says `WouldBlock`, accepts
//! until `accept` says `WouldBlock`, writes until everything is out or
//! `write` says `WouldBlock`.
//!
//! There is one proof of emptiness cheaper than a `WouldBlock`: a TCP
//! `read` that returns *fewer* bytes than asked has emptied the receive
//! queue, and any byte that arrives later raises a new edge. So after a
//! short read the loop stops, saving one system call per echo, unless the
//! event said the peer closed (then the EOF behind the data must be read
//! now: its edge has passed). `Wake::short_read_is_empty` in
//! `src/connection.rs` is that rule.
//!
//! The same holds for whatever the loop leaves behind on purpose: a pass
//! that spent its budget, a buffer that was full, memory that was short,
//! an `accept` that failed. Their edges have passed and no event will come
//! for what they left in the kernel, so the loop goes back by itself: the
//! ready list, the list of connections waiting for memory, the accept
//! retry (section 6). The code says "(the tour, section 2)" where it
//! relies on this.
//!
//! ## 3. The life of one connection
//!
//! ```text
//!             accept + register (READABLE | WRITABLE), once
//!                              │
//!                              ▼
//!          ┌──────────────── Open ◄──── read, echo, queue what the kernel
//!          │                 │    │     refuses; stop reading at
//!          │ reset, EPIPE,   │    │     --max-buffer, resume when it drains
//!          │ idle timeout    │    │ the server is stopping
//!          │  read 0 bytes   │    ▼
//!          │  (peer's FIN)   │  Stopping ── write what is owed, echo nothing
//!          │                 ▼    │         new; then send our FIN
//!          │            Draining  ▼
//!          │  write what  │   Lingering ── read and discard until the
//!          │  is owed,    │       │        peer's FIN (a close with unread
//!          │  then FIN    │       │        bytes would reset it)
//!          ▼              ▼       ▼
//!        Closed ◄─────────┴───────┘     removed from the slab at the end
//!                                       of the turn; dropping it closes it
//! ```
//!
//! In `src/connection.rs`, every transition goes through
//! `Connection::set_state`, which logs `from => to` at trace level, and
//! `State` says what each state means. Accepting is `accept` and `admit`
//! in `src/server/accept.rs`; `Open` and `Draining` are driven by
//! `Connection::on_event` and `Connection::drive`; `Closed` connections
//! are swept by the loop's `end_turn`. What a connection *wants* (to read,
//! to write) is derived from its state and its buffer
//! (`Connection::wants_read`, `Connection::wants_write`), never kept in
//! flags.
//!
//! ## 4. One byte, from socket to socket
//!
//! 1. **Accept.** The client's SYN completes in the kernel; the listener
//!    becomes readable; the loop accepts until `WouldBlock` (or a batch of
//!    `ACCEPT_BATCH`, then comes back from the ready list), sets
//!    `TCP_NODELAY`, registers the new socket under its slab key, once.
//! 2. **Readable.** The client writes `h`. `poll` returns an event for the
//!    connection's token, readable. The loop looks the connection up in the
//!    slab and calls `Connection::on_event` (`src/connection.rs`).
//! 3. **Read, echo.** On the fast path (nothing owed, peer open) one `read`
//!    copies `h` into the loop's single shared buffer and one `write` hands
//!    it straight back to the kernel. The read was short, so the queue is
//!    empty: done. Nothing was copied into the connection: an idle
//!    connection holds no buffer at all.
//! 4. **Partial write.** Had the client stopped reading, the kernel's send
//!    buffer toward it would be full and `write` would take fewer bytes, or
//!    none (`WouldBlock`). The rest goes into the connection's own buffer,
//!    `Pending` in `src/buffer.rs`, in order. Later reads queue behind it.
//! 5. **Writable.** When the client reads, space opens and the kernel raises
//!    a writable event. `Connection::drive` writes what is owed first, then
//!    reads on.
//! 6. **Back-pressure.** If the buffer reaches `--max-buffer` the
//!    connection stops reading. The client's bytes wait in the kernel, the
//!    kernel's TCP window closes, the client's `write` blocks: the server's
//!    memory for it stays bounded. When the buffer drains, reading resumes
//!    *in the same pass*: no event would come for the bytes that waited.
//!    All buffers together draw on one budget, `--max-memory`
//!    (`Budget` in `src/buffer.rs`): at the budget a connection stops reading the
//!    same way, and the loop keeps it on a list to drive again once memory
//!    is freed, for the same reason.
//! 7. **Half-close.** The client shuts down its writing side. Our `read`
//!    returns 0: not an error, not "close now", but "no more bytes will
//!    come". The connection turns `Draining`, writes the rest it owes, then
//!    calls `shutdown(Write)`: the client's `read` returns the last byte and
//!    then EOF.
//!
//! `docs/TRANSCRIPT.md` shows each of these steps as the loop logs them.
//!
//! ## 5. Events are hints
//!
//! A readable event may find nothing to read (a spurious wake-up), a
//! writable event may come when nothing is owed, and a token may name a
//! connection closed earlier in the same batch. Handlers act only on what
//! the system calls return, never on the event alone, so a stale or
//! spurious event costs one `WouldBlock` and nothing else. A closed
//! connection stays in the slab, marked `Closed`, until the end of the
//! turn, so its key cannot be handed to a new connection while events of
//! that turn may still name it; idle timers, which outlive a turn, carry a
//! serial number as well as the key.
//!
//! ## 6. Fairness, timers and signals
//!
//! * **Fairness.** One pass reads at most `BUDGET` bytes from one
//!   connection, and accepts at most `ACCEPT_BATCH` connections from one
//!   listener (both in `src/server/`; a UDP pass reads at most
//!   [`UDP_BUDGET`] datagrams). A source with more waiting goes on the *ready
//!   list*, which the loop serves after the events and before it blocks
//!   again (with a zero timeout while the list is not empty): one client
//!   streaming flat out, or a storm of connections, cannot starve the rest.
//! * **Timers.** Idle timeouts, the shutdown deadline, a paused accept,
//!   periodic stats and the retry of connections waiting for memory are
//!   deadlines; the earliest one becomes `poll`'s timeout
//!   (`src/timers.rs`). No timer thread, no scan over every connection.
//! * **Signals.** A signal handler cannot run loop code.
//!   signal-hook's handler writes a byte into a pipe registered with the
//!   poll, so a signal arrives as an ordinary readable event and the loop
//!   handles it between two events. A [`Handle`] does the same from another
//!   thread through a [`mio::Waker`].
//! * **One thread.** In a process with a second thread, glibc's system
//!   call wrappers take their cancellable path, which costs more per echo
//!   (figures: BENCHMARKS.md): `--threads N` exists ([`group`]), but one
//!   loop is the default, and the process then holds exactly one thread.
//!
//! ## 7. What a tokio version would hide, and cost
//!
//! With tokio, each connection is a task: `let (mut r, mut w) =
//! stream.split(); tokio::io::copy(&mut r, &mut w).await`. That is the
//! whole server, and it is correct. What it hides is everything above:
//! the runtime keeps the readiness state per socket, drains for you, parks
//! tasks on `WouldBlock`, and keeps its own ready queue and timer wheel.
//! What it costs, measured on this machine: many times the user-space
//! instructions per echo, and a copy buffer per idle connection where this
//! loop holds none (BENCHMARKS.md has the figures, beside raw epoll). The
//! throughput is the same for all of them: the kernel's TCP path is the
//! ceiling. The difference is how much CPU and memory the server adds on
//! top, which is what this crate is built to show.
//!
//! ## Where to read
//!
//! | concept | file |
//! |---|---|
//! | the poll loop: tokens, dispatch, ready list, timers | `src/server/mod.rs` |
//! | accept in batches, and admission under the limits | `src/server/accept.rs` |
//! | listening sockets: bound, inherited, shared between loops | `src/server/listeners.rs` |
//! | handles, signals, stats, the stop and its drain | `src/server/control.rs` |
//! | connections waiting for memory; giving memory back | `src/server/memory.rs` |
//! | what a connection speaks: discard, chargen | `src/service/` |
//! | idle deadlines and rate-limited warnings | `src/timers.rs` |
//! | UDP echo and its reflection guard | `src/udp.rs` |
//! | several loops on several threads | [`group`] |
//! | the whole server's limits: connections, per address, memory | `src/limits.rs` |
//! | socket activation and readiness notification | [`systemd`] |
//! | one connection's states and its read-echo-write pass | `src/connection.rs` |
//! | the bytes owed to a slow peer | `src/buffer.rs` |
//! | listening sockets and their options | `src/net.rs` |
//! | configuration and defaults | [`config`] |
//! | errors a person reads | `src/error.rs` |
//! | counters, stats lines and the exit summary | `src/stats.rs` |
//! | log output that never blocks the loop | [`logging`] |
//! | the blocking client behind `echo-client` | the `echo-client` crate (`echo-client/src/lib.rs`) |
//! | the load generator behind `echo-bench` | the `echo-bench` crate (`echo-bench/src/lib.rs`) |

mod buffer;
pub mod config;
mod connection;
mod error;
pub mod group;
mod limits;
pub mod logging;
mod net;
mod server;
mod service;
mod stats;
pub mod systemd;
mod timers;
mod udp;

pub use config::Config;
pub use error::StartError;
pub use server::{Handle, Running, Server};
pub use service::{Service, ServiceAddr};
pub use stats::Summary;
pub use udp::UdpCounts;

/// The most datagrams one UDP pass reads before the loop moves on (section
/// 6). Exported for the tests, which check that a UDP flood cannot starve
/// a TCP client; nothing else needs it.
pub use udp::BUDGET as UDP_BUDGET;
