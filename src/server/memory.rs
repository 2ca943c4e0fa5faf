//! Connections waiting for memory, and giving memory back.
//!
//! A connection the memory budget (`src/buffer.rs`, `Budget`) tells "no
//! room" stops reading and waits on a list here (the tour, section 2: no
//! event will come for the bytes it left in its socket). So the loop
//! gives the oldest waiting connections another pass whenever memory is
//! freed, and every [`MEMORY_RETRY`] in any case.
//!
//! Read next: `src/buffer.rs`.

use super::*;

/// While connections wait for memory that another loop may free, how often
/// to look.
pub(super) const MEMORY_RETRY: Duration = Duration::from_millis(10);

/// Give freed heap back to the system once the buffers' memory has fallen
/// this far below its last peak (see [`Server::end_turn`]).
const TRIM_STEP: usize = 8 << 20;

impl Server {
    /// Puts a connection that has no memory to read into on the list that
    /// [`Server::resume_starved`] serves as memory is freed.
    #[cold]
    pub(super) fn await_memory(&mut self, key: usize) {
        if self.conns[key].mark_awaiting_memory() {
            self.starved.push_back(Token(key));
        }
        if self.memory_retry.is_none() {
            self.memory_retry = Some(Instant::now() + MEMORY_RETRY);
        }
        if self.memory_warning.allow(Instant::now()) {
            log::warn!(
                "{}buffers hold {} bytes, the most allowed (--max-memory): connections \
                 that owe bytes stop reading until memory is freed",
                self.label,
                self.limits.memory.held()
            );
        }
    }

    /// Gives connections waiting for memory another pass, oldest first: as
    /// many as the memory freed may serve, or, every [`MEMORY_RETRY`], up
    /// to [`ACCEPT_BATCH`] of them whatever was freed.
    pub(super) fn resume_starved(&mut self) {
        let memory = &self.limits.memory;
        let frees = memory.frees();
        let mut room = if frees != self.frees_seen {
            self.frees_seen = frees;
            // What the waiting connections that owe bytes may read: up to
            // the soft limit (the others wait for their kernel queues, which
            // the timed retry below covers).
            memory.room()
        } else {
            0
        };
        let now = Instant::now();
        if matches!(self.memory_retry, Some(at) if at <= now) {
            room = room.max(ACCEPT_BATCH * memory.read_size());
            self.memory_retry = Some(now + MEMORY_RETRY);
        }
        while room > 0 {
            let Some(token) = self.starved.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.get_mut(token.0) else {
                continue;
            };
            conn.unmark_awaiting_memory();
            if conn.state() != State::Closed {
                self.ready.push(token);
                room = room.saturating_sub(memory.read_size());
            }
        }
        if self.starved.is_empty() {
            self.memory_retry = None;
        }
    }

    /// Gives freed heap memory back to the system after a burst.
    ///
    /// glibc's `free` keeps what it frees for later allocations and returns
    /// memory to the system only from the top of its heap, so after
    /// thousands of slow readers leave, their buffers would stay resident
    /// for the life of the process. When the buffers' memory has fallen
    /// [`TRIM_STEP`] below its peak, `malloc_trim` returns the free pages.
    /// Other allocators (musl's, macOS's, FreeBSD's jemalloc) return freed
    /// memory on their own: there is nothing to call.
    pub(super) fn trim_heap(&mut self) {
        let held = self.limits.memory.held();
        if held > self.trim_peak {
            self.trim_peak = held;
        } else if self.trim_peak - held >= TRIM_STEP {
            self.trim_peak = held;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only releases free memory of the heap.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}
