//! The floor: an edge-triggered epoll echo over raw `libc` calls.
//!
//! The same policy as mio-echo, with nothing in between: register each
//! socket once for reading and writing, read into one shared 32 KiB buffer,
//! write straight back, keep only what the kernel refused, stop reading
//! while anything is owed, and stop after a short read unless the peer has
//! closed. No slab, no state machine, no logging.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};

const BUF: usize = 32 * 1024;

#[derive(Default)]
struct Conn {
    open: bool,
    owed: Vec<u8>,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn add(ep: RawFd, fd: RawFd, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: a valid epoll fd, a valid socket fd, a valid event.
    check(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

/// Serves `listener` on this thread forever.
pub(crate) fn serve(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let lfd = listener.as_raw_fd();
    // SAFETY: plain syscall.
    let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    add(ep, lfd, (libc::EPOLLIN | libc::EPOLLET) as u32)?;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; BUF];
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        // SAFETY: `events` has room for 1024 entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 1024, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as RawFd;
            if fd == lfd {
                accept_all(ep, lfd, &mut conns);
            } else if handle(fd, ev.events, &mut buf, &mut conns[fd as usize]) {
                conns[fd as usize] = Conn::default();
                // SAFETY: closing a socket we own; epoll forgets it.
                unsafe { libc::close(fd) };
            }
        }
    }
}

fn accept_all(ep: RawFd, lfd: RawFd, conns: &mut Vec<Conn>) {
    loop {
        // SAFETY: plain syscall; we do not want the peer's address.
        let fd = unsafe {
            libc::accept4(
                lfd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted
                || e.raw_os_error() == Some(libc::ECONNABORTED)
            {
                continue;
            }
            return;
        }
        let one: libc::c_int = 1;
        // SAFETY: setting TCP_NODELAY with a valid int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let flags = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        if add(ep, fd, flags as u32).is_err() {
            // SAFETY: closing the socket we just accepted.
            unsafe { libc::close(fd) };
            continue;
        }
        if conns.len() <= fd as usize {
            conns.resize_with(fd as usize + 1, Conn::default);
        }
        conns[fd as usize] = Conn {
            open: true,
            ..Conn::default()
        };
    }
}

/// One pass over a connection; true when it should be closed.
fn handle(fd: RawFd, events: u32, buf: &mut [u8], conn: &mut Conn) -> bool {
    if !conn.open {
        return false;
    }
    let mut trust_short = events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 == 0;
    if !conn.owed.is_empty() {
        // SAFETY: writing from an initialised buffer.
        let w = unsafe { libc::write(fd, conn.owed.as_ptr().cast(), conn.owed.len()) };
        if w < 0 {
            return io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock;
        }
        conn.owed.drain(..w as usize);
        if !conn.owed.is_empty() {
            return false;
        }
        // We stopped reading while we owed: bytes may wait with no event.
        trust_short = false;
    } else if events & libc::EPOLLIN as u32 == 0 && trust_short {
        return false;
    }
    loop {
        // SAFETY: reading into a buffer we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return false,
                io::ErrorKind::Interrupted => continue,
                _ => return true,
            }
        }
        if n == 0 {
            // SAFETY: plain syscall.
            unsafe { libc::shutdown(fd, libc::SHUT_WR) };
            return true;
        }
        let n = n as usize;
        // SAFETY: writing from the bytes just read.
        let w = unsafe { libc::write(fd, buf.as_ptr().cast(), n) };
        let w = if w < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                return true;
            }
            0
        } else {
            w as usize
        };
        if w < n {
            conn.owed.extend_from_slice(&buf[w..n]);
            // Stop reading until the kernel takes what we owe; the writable
            // pass then reads on to `WouldBlock` (or the EOF).
            return false;
        }
        if n < buf.len() && trust_short {
            return false;
        }
    }
}
