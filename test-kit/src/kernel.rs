//! What the kernel says about a process (its memory, CPU time, descriptors,
//! threads and state) and about TCP sockets (their states and queues), as
//! the `procfs` crate reads it from `/proc`. Linux only.
//!
//! Each helper fails the test, naming what it read, when `/proc` cannot
//! be read: the process is a child of the test, so it is there.

use std::net::SocketAddr;
use std::time::Duration;

use procfs::process::{Process, Stat, Status};

/// The process `pid`, a child of this test.
fn process(pid: u32) -> Process {
    let id = i32::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} out of range"));
    Process::new(id).unwrap_or_else(|e| panic!("/proc/{pid}: {e}"))
}

fn status(pid: u32) -> Status {
    process(pid)
        .status()
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"))
}

fn stat(pid: u32) -> Stat {
    process(pid)
        .stat()
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"))
}

/// Resident memory (`VmRSS`) of process `pid`, in bytes.
pub fn rss(pid: u32) -> u64 {
    let kib = status(pid).vmrss.expect("a VmRSS line in /proc/PID/status");
    kib * 1024
}

/// `VmPeak` of process `pid`: the most address space it ever mapped, in
/// bytes.
pub fn vm_peak(pid: u32) -> u64 {
    let kib = status(pid)
        .vmpeak
        .expect("a VmPeak line in /proc/PID/status");
    kib * 1024
}

/// CPU time process `pid` has used so far, user and system together.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = stat(pid);
    let ticks = stat.utime + stat.stime;
    Duration::from_secs_f64(ticks as f64 / procfs::ticks_per_second() as f64)
}

/// The state letter of process `pid` (`R`, `S`, `T` once it is stopped...).
pub fn process_state(pid: u32) -> char {
    stat(pid).state
}

/// How many threads process `pid` has.
pub fn threads(pid: u32) -> usize {
    usize::try_from(stat(pid).num_threads).expect("a count of threads")
}

/// How many descriptors process `pid` holds open.
pub fn open_fds(pid: u32) -> usize {
    process(pid)
        .fd_count()
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// How many of process `pid`'s descriptors are numbered below `limit`: the
/// ones a new descriptor competes with. (Descriptors above the limit can be
/// inherited, as from a parent that leaks one, and count for nothing.)
pub fn fds_below(pid: u32, limit: u64) -> usize {
    process(pid)
        .fd()
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        // One closed between the listing and the look at it is not open.
        .filter_map(Result::ok)
        .filter(|fd| u64::try_from(fd.fd).is_ok_and(|fd| fd < limit))
        .count()
}

/// One TCP socket as the kernel reports it in /proc/net/tcp or tcp6.
#[derive(Debug, Clone, Copy)]
pub struct KernelSocket {
    /// Its local address.
    pub local: SocketAddr,
    /// Its peer's address (unspecified for a listener).
    pub remote: SocketAddr,
    /// The TCP state, as the kernel numbers it (1 is `ESTABLISHED`).
    pub state: u8,
    /// Bytes written by the socket's owner and not yet acknowledged.
    pub tx: usize,
    /// Bytes received and not yet read by the socket's owner.
    pub rx: usize,
}

/// The TCP state `ESTABLISHED`, as /proc/net/tcp numbers it.
pub const ESTABLISHED: u8 = 0x01;
/// The TCP state `LISTEN`, as /proc/net/tcp numbers it.
pub const LISTEN: u8 = 0x0A;

/// Every TCP socket of this network namespace, IPv4 and IPv6: one reading
/// of the kernel's tables, for a test that looks at many sockets at once.
pub fn tcp_sockets() -> Vec<KernelSocket> {
    let v4 = procfs::net::tcp().unwrap_or_else(|e| panic!("/proc/net/tcp: {e}"));
    let v6 = procfs::net::tcp6().unwrap_or_else(|e| panic!("/proc/net/tcp6: {e}"));
    v4.into_iter()
        .chain(v6)
        .map(|entry| KernelSocket {
            local: entry.local_address,
            remote: entry.remote_address,
            state: entry.state.to_u8(),
            tx: entry.tx_queue as usize,
            rx: entry.rx_queue as usize,
        })
        .collect()
}

/// The connected socket `local` -> `remote` from the kernel's table: how a
/// test sees the server's side of a connection, in this process or
/// another, without asking the server.
pub fn kernel_socket(local: SocketAddr, remote: SocketAddr) -> Option<KernelSocket> {
    tcp_socket(local, Some(remote))
}

/// Like [`kernel_socket`], or the listener on `local` if `remote` is `None`.
pub fn tcp_socket(local: SocketAddr, remote: Option<SocketAddr>) -> Option<KernelSocket> {
    tcp_sockets().into_iter().find(|s| match remote {
        Some(remote) => s.local == local && s.remote == remote && s.state != LISTEN,
        None => s.local == local && s.state == LISTEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process: some memory, at least one thread and descriptor, and
    /// running or (its main thread waiting for this test) sleeping.
    #[test]
    fn the_test_process_reads_back() {
        let me = std::process::id();
        assert!(rss(me) > 0 && vm_peak(me) >= rss(me));
        assert!(threads(me) >= 1);
        assert!(open_fds(me) >= fds_below(me, 3) && fds_below(me, 3) <= 3);
        assert!(matches!(process_state(me), 'R' | 'S'));
        let _ = cpu_time(me);
    }

    /// A listener and both ends of a connection on loopback are found, with
    /// their states.
    #[test]
    fn loopback_sockets_are_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(tcp_socket(addr, None).map(|s| s.state), Some(LISTEN));
        let client = std::net::TcpStream::connect(addr).unwrap();
        let me = client.local_addr().unwrap();
        assert_eq!(kernel_socket(me, addr).map(|s| s.state), Some(ESTABLISHED));
        assert!(kernel_socket(addr, me).is_some());
    }
}
