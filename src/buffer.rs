//! The bytes a connection owes its peer: read, not yet echoed.
//!
//! Most echoes never touch this buffer: the loop reads into one shared buffer
//! and writes the bytes straight back. Only what the kernel refuses to take
//! (its send buffer is full) lands here, in order, to go out on the next
//! writable event. While nothing is owed the buffer holds no allocation at
//! all, so an idle connection costs only the few words of an empty `Vec`.
//!
//! Every buffer of the server draws on one [`Budget`] (`--max-memory`): the
//! bytes all connections may hold together. A buffer never grows past its
//! connection's `max_buffer`, grows only with the budget's consent, and
//! gives its allocation back to the budget when it empties; an allocation
//! the allocator refuses is an error for that one connection, never an
//! abort of the process.
//!
//! Read next: [`crate::connection`], which decides when to fill and drain it.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Past a budget's soft limit, the most a connection that owes nothing may
/// read at once, less what its kernel send queue holds unsent: little
/// enough that the kernel takes the echo whole (Linux never makes a send
/// buffer smaller than about 4.5 KiB).
pub(crate) const TIGHT_READ: usize = 4096;

/// How many budgets in this process are full (see [`Budget`]).
static FULL_BUDGETS: AtomicUsize = AtomicUsize::new(0);

/// Whether any memory budget in the process cannot take one more full
/// read: then the echo fast path, which reads before it knows whether it
/// must queue, stands aside for the general pass, which asks its budget.
#[inline]
pub(crate) fn any_budget_full() -> bool {
    FULL_BUDGETS.load(Ordering::Relaxed) != 0
}

/// The bytes that the pending buffers of every connection, in every loop,
/// may hold together (`--max-memory`), counted by allocation, not by use.
///
/// Two thresholds. Any connection may read while the total is under the
/// *soft* limit (seven eighths of the budget), at most what would take it
/// there if none of it went back out. The last eighth is a reserve for
/// clients whose echoes go straight back: past the soft limit a connection
/// that owes nothing may still read [`TIGHT_READ`] bytes less what its
/// kernel send queue holds unsent, which the kernel will take at once,
/// so the reserve is touched only when that estimate is wrong. Peers that
/// never read fill their kernel queues first and then get nothing, so they
/// cannot use up the reserve and lock out the clients that do read. A
/// connection told "no room" stops reading (TCP pushes back on its peer)
/// and the loop resumes it once memory is freed, or soon after.
///
/// Whether a budget is full is also kept in one process-wide count,
/// [`any_budget_full`], which the echo fast path reads: one load of a
/// static, where asking this budget would chase two pointers on every
/// event. With several
/// servers in one process (tests do that) a full one sends the others
/// through the general path too, which is slower, never wrong.
///
/// Relaxed atomics: the counts are exact, and only their order relative to
/// other memory does not matter. Several loops may each read up to one read
/// buffer past the budget in the instant between checking and taking; that
/// slack is at most `loops x read_size`.
#[derive(Debug)]
pub(crate) struct Budget {
    max: usize,
    soft: usize,
    /// The most one read may bring in: the loop's shared read buffer.
    read_size: usize,
    held: AtomicUsize,
    /// Set while one full read could take the total past the soft limit:
    /// the fast path, which reads before it knows whether it must queue,
    /// stands aside.
    full: AtomicBool,
    /// Counts every release, so a loop can tell that memory was freed.
    frees: AtomicU64,
}

impl Drop for Budget {
    fn drop(&mut self) {
        if *self.full.get_mut() {
            FULL_BUDGETS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Budget {
    /// A budget of `max` bytes, for loops that read at most `read_size`
    /// bytes at a time.
    pub(crate) fn new(max: usize, read_size: usize) -> Budget {
        let budget = Budget {
            max,
            soft: max - max / 8,
            read_size,
            held: AtomicUsize::new(0),
            full: AtomicBool::new(false),
            frees: AtomicU64::new(0),
        };
        budget.update_full(0);
        budget
    }

    /// Whether the budget cannot take one more full read right now.
    #[cfg(test)]
    pub(crate) fn full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Bytes held by pending buffers now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The most one read brings in (the loop's read buffer).
    pub(crate) fn read_size(&self) -> usize {
        self.read_size
    }

    /// The budget, in bytes.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// How many bytes any connection may read now: up to the soft limit.
    pub(crate) fn room(&self) -> usize {
        self.soft.saturating_sub(self.held())
    }

    /// What is left of the reserve past the soft limit, for reads whose
    /// echoes the kernel will take at once.
    pub(crate) fn reserve(&self) -> usize {
        self.max.saturating_sub(self.held())
    }

    /// How many releases there have been: a change means memory was freed.
    pub(crate) fn frees(&self) -> u64 {
        self.frees.load(Ordering::Relaxed)
    }

    /// Takes between `need` and `want` bytes: all of `want` if that stays
    /// under the soft limit, else just `need`, which is always granted (the
    /// bytes were read already; the read was sized by [`Budget::room`]).
    fn take(&self, need: usize, want: usize) -> usize {
        let held = self.held();
        let grant = if held.saturating_add(want) <= self.soft {
            want
        } else {
            need
        };
        let after = self.held.fetch_add(grant, Ordering::Relaxed) + grant;
        self.update_full(after);
        grant
    }

    fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        let after = self.held.fetch_sub(n, Ordering::Relaxed) - n;
        self.frees.fetch_add(1, Ordering::Relaxed);
        self.update_full(after);
    }

    fn update_full(&self, held: usize) {
        let full = held.saturating_add(self.read_size) > self.soft;
        if self.full.load(Ordering::Relaxed) != full
            && self.full.swap(full, Ordering::Relaxed) != full
        {
            if full {
                FULL_BUDGETS.fetch_add(1, Ordering::Relaxed);
            } else {
                FULL_BUDGETS.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Bytes owed to the peer, oldest first.
///
/// A plain `Vec` plus a read offset: bytes are appended at the back and
/// written from `head`. When everything has gone out the allocation is
/// released, so the buffer costs memory only while the peer is slow.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    data: Vec<u8>,
    head: usize,
}

impl Pending {
    /// An empty buffer that has not allocated.
    pub(crate) const fn new() -> Self {
        Pending {
            data: Vec::new(),
            head: 0,
        }
    }

    /// How many bytes are owed.
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.head
    }

    /// Whether nothing is owed. (The allocation is released whenever the
    /// last byte goes out, so an empty buffer is an empty `Vec`: one
    /// comparison on the hot path.)
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes allocated, as counted against the [`Budget`].
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.data.capacity()
    }

    /// Queues `bytes` behind what is already owed.
    ///
    /// The allocation doubles as it grows (so many small pushes cost few
    /// copies) but never past `max_buffer`, and the extra beyond what the
    /// bytes need only while `budget` has room for it. An allocation the
    /// allocator refuses is `ErrorKind::OutOfMemory`: the bytes are not
    /// queued, and the caller closes the connection.
    pub(crate) fn push(
        &mut self,
        bytes: &[u8],
        max_buffer: usize,
        budget: &Budget,
    ) -> io::Result<()> {
        if self.head > 0 {
            // Slide the unsent tail to the front before growing, so the
            // allocation never exceeds what is owed plus one read.
            self.data.drain(..self.head);
            self.head = 0;
        }
        let len = self.data.len();
        let capacity = self.data.capacity();
        let need = len + bytes.len();
        if need > capacity {
            let want = need.max(capacity.saturating_mul(2).min(max_buffer));
            let grant = budget.take(need - capacity, want - capacity);
            if self.data.try_reserve_exact(capacity + grant - len).is_err() {
                budget.give(grant);
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!("cannot grow a buffer to {} bytes", capacity + grant),
                ));
            }
            // The allocator may round up; count what it says it gave.
            let extra = self.data.capacity() - (capacity + grant);
            if extra > 0 {
                budget.take(extra, extra);
            }
        }
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// Frees the allocation and gives it back to `budget` (the connection
    /// is closing; whatever is still owed is lost with it).
    pub(crate) fn release(&mut self, budget: &Budget) {
        budget.give(self.data.capacity());
        self.data = Vec::new();
        self.head = 0;
    }

    /// Writes owed bytes to `sink` until all are gone or the sink would block.
    ///
    /// Returns how many bytes went out. `WouldBlock` is not an error here: it
    /// only means the kernel's send buffer is full and the rest waits for the
    /// next writable event. `Interrupted` is retried. Any other error is
    /// returned and the bytes stay owed (the caller closes the connection).
    pub(crate) fn write_to<W: Write>(
        &mut self,
        sink: &mut W,
        budget: &Budget,
    ) -> io::Result<usize> {
        let mut written = 0;
        while self.head < self.data.len() {
            match sink.write(&self.data[self.head..]) {
                // A zero-byte write of a non-empty buffer: the socket cannot take
                // bytes at all. Say so instead of looping forever.
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.head += n;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.head == self.data.len() {
            // Give the memory back: an idle connection should cost nothing here.
            self.release(budget);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `room` bytes, then reports `WouldBlock`.
    struct Tight {
        out: Vec<u8>,
        room: usize,
    }

    impl Write for Tight {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room).min(3);
            self.out.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A new buffer owes nothing and has not allocated.
    #[test]
    fn starts_empty_without_allocating() {
        let p = Pending::new();
        assert!(p.is_empty());
        assert_eq!(p.data.capacity(), 0);
    }

    /// Bytes leave in the order they were queued, across partial writes.
    #[test]
    fn partial_writes_keep_order() {
        let budget = Budget::new(1 << 20, 16);
        let mut p = Pending::new();
        p.push(b"hello ", 100, &budget).unwrap();
        let mut sink = Tight {
            out: Vec::new(),
            room: 4,
        };
        assert_eq!(p.write_to(&mut sink, &budget).unwrap(), 4);
        assert_eq!(p.len(), 2);
        p.push(b"world", 100, &budget).unwrap();
        sink.room = usize::MAX;
        assert_eq!(p.write_to(&mut sink, &budget).unwrap(), 7);
        assert_eq!(sink.out, b"hello world");
    }

    /// Once everything is written the allocation is released.
    #[test]
    fn releases_memory_when_drained() {
        let budget = Budget::new(1 << 20, 16);
        let mut p = Pending::new();
        p.push(&[7; 1000], 1000, &budget).unwrap();
        let mut sink = Tight {
            out: Vec::new(),
            room: usize::MAX,
        };
        p.write_to(&mut sink, &budget).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.data.capacity(), 0);
        assert_eq!(budget.held(), 0, "the budget has it back");
    }

    /// The allocation is counted against the budget, doubles as it grows,
    /// and never passes the connection's `max_buffer`.
    #[test]
    fn growth_is_counted_and_capped() {
        let budget = Budget::new(1 << 20, 16);
        let mut p = Pending::new();
        for _ in 0..100 {
            p.push(&[1; 10], 1000, &budget).unwrap();
        }
        assert_eq!(p.len(), 1000);
        assert!(p.allocated() <= 1000, "{}", p.allocated());
        assert_eq!(budget.held(), p.allocated());
        p.release(&budget);
        assert_eq!(budget.held(), 0);
    }

    /// Near the budget a buffer grows by what it needs, not by doubling,
    /// and the budget reports itself full for the fast path.
    #[test]
    fn growth_near_the_budget_takes_only_what_is_needed() {
        let budget = Budget::new(1000, 100);
        assert_eq!(budget.room(), 875, "the soft limit is seven eighths");
        let mut a = Pending::new();
        a.push(&[1; 550], 10_000, &budget).unwrap();
        let mut b = Pending::new();
        b.push(&[2; 100], 10_000, &budget).unwrap();
        b.push(&[2; 10], 10_000, &budget).unwrap();
        assert_eq!(b.allocated(), 200, "room for doubling: it doubles");
        assert!(
            !budget.full(),
            "750 held: one more read of 100 fits under 875"
        );
        b.push(&[2; 110], 10_000, &budget).unwrap();
        assert_eq!(b.allocated(), 220, "doubling would pass the soft limit");
        assert!(!budget.full(), "770 held");
        b.push(&[2; 10], 10_000, &budget).unwrap();
        assert_eq!(b.allocated(), 230);
        assert!(
            budget.full(),
            "780 held: one more read of 100 would not fit"
        );
        assert_eq!(budget.room(), 95);
        assert_eq!(budget.reserve(), 220);
        a.release(&budget);
        assert!(!budget.full());
        assert!(budget.frees() > 0);
    }

    /// A hard write error is returned and the bytes stay owed.
    #[test]
    fn hard_error_keeps_bytes() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let budget = Budget::new(1 << 20, 16);
        let mut p = Pending::new();
        p.push(b"abc", 100, &budget).unwrap();
        let err = p.write_to(&mut Broken, &budget).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(p.len(), 3);
    }
}
