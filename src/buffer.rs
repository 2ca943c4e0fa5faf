//! The bytes a connection owes its peer: read, not yet echoed.
//!
//! Most echoes never touch this buffer: the loop reads into one shared buffer
//! and writes the bytes straight back. Only what the kernel refuses to take
//! (its send buffer is full) lands here, in order, to go out on the next
//! writable event. While nothing is owed the buffer holds no allocation at
//! all, so an idle connection costs only the few words of an empty `Vec`.
//!
//! Read next: [`crate::connection`], which decides when to fill and drain it.

use std::io::{self, Write};

/// Bytes owed to the peer, oldest first.
///
/// A plain `Vec` plus a read offset: bytes are appended at the back and
/// written from `head`. When everything has gone out the allocation is
/// released, so the buffer costs memory only while the peer is slow.
#[derive(Debug, Default)]
pub struct Pending {
    data: Vec<u8>,
    head: usize,
}

impl Pending {
    /// An empty buffer that has not allocated.
    pub const fn new() -> Self {
        Pending {
            data: Vec::new(),
            head: 0,
        }
    }

    /// How many bytes are owed.
    pub fn len(&self) -> usize {
        self.data.len() - self.head
    }

    /// Whether nothing is owed. (The allocation is released whenever the
    /// last byte goes out, so an empty buffer is an empty `Vec`: one
    /// comparison on the hot path.)
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Queues `bytes` behind what is already owed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.head > 0 {
            // Slide the unsent tail to the front before growing, so the
            // allocation never exceeds what is owed plus one read.
            self.data.drain(..self.head);
            self.head = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    /// Writes owed bytes to `sink` until all are gone or the sink would block.
    ///
    /// Returns how many bytes went out. `WouldBlock` is not an error here: it
    /// only means the kernel's send buffer is full and the rest waits for the
    /// next writable event. `Interrupted` is retried. Any other error is
    /// returned and the bytes stay owed (the caller closes the connection).
    pub fn write_to<W: Write>(&mut self, sink: &mut W) -> io::Result<usize> {
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
            self.data = Vec::new();
            self.head = 0;
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
        let mut p = Pending::new();
        p.push(b"hello ");
        let mut sink = Tight {
            out: Vec::new(),
            room: 4,
        };
        assert_eq!(p.write_to(&mut sink).unwrap(), 4);
        assert_eq!(p.len(), 2);
        p.push(b"world");
        sink.room = usize::MAX;
        assert_eq!(p.write_to(&mut sink).unwrap(), 7);
        assert_eq!(sink.out, b"hello world");
    }

    /// Once everything is written the allocation is released.
    #[test]
    fn releases_memory_when_drained() {
        let mut p = Pending::new();
        p.push(&[7; 1000]);
        let mut sink = Tight {
            out: Vec::new(),
            room: usize::MAX,
        };
        p.write_to(&mut sink).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.data.capacity(), 0);
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
        let mut p = Pending::new();
        p.push(b"abc");
        let err = p.write_to(&mut Broken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(p.len(), 3);
    }
}
