//! The stepping-stone server in `examples/minimal.rs` builds and echoes:
//! random payloads over several concurrent connections, every byte
//! compared, and a half-close answered with the rest and then EOF; and
//! after `accept` runs out of descriptors it comes back for the backlog by
//! itself.

mod common;

#[path = "../examples/minimal.rs"]
#[allow(dead_code)]
mod minimal;

use std::thread;

use rand::rngs::SmallRng;
use rand::SeedableRng;

/// The minimal example echoes every byte of concurrent clients, then EOF.
#[test]
fn minimal_example_echoes_concurrent_clients() {
    let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    // The example's loop runs forever; the test process ends it.
    thread::spawn(move || minimal::serve(listener));

    let clients: Vec<_> = (0..8u64)
        .map(|seed| {
            thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed);
                let data = common::random_bytes(seed, 300_000 * seed as usize);
                common::echo_ok(addr, &data, &mut rng, format_args!("client {seed}"));
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
}

/// After `accept` fails for want of descriptors, the example serves the
/// clients waiting in the backlog once descriptors are free again, though
/// no new event announces them (edge-triggered: theirs has passed).
#[cfg(target_os = "linux")]
#[test]
fn minimal_example_retries_accept_after_running_out_of_descriptors() {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    // The open-file limit is the whole process's: run alone, in a child.
    const CHILD: &str = "MIO_ECHO_MINIMAL_FD_TEST";
    if std::env::var_os(CHILD).is_none() {
        let name = "minimal_example_retries_accept_after_running_out_of_descriptors";
        let run = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "the test in a child process failed:\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        return;
    }

    let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    // Connected, so waiting in the backlog before the loop even starts.
    let mut clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();

    // Every descriptor below a new limit in use but one, for the example's
    // poll: then every accept fails.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write one rlimit.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let low = libc::rlimit {
        rlim_cur: highest + 2,
        rlim_max: limit.rlim_max,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let mut fillers = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fillers.push(f);
    }
    fillers.pop();
    thread::spawn(move || minimal::serve(listener));

    let mut reply = [0u8; 5];
    for c in &mut clients {
        c.write_all(b"hello").unwrap();
    }
    clients[0]
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let starved = clients[0].read(&mut reply);
    // Descriptors again; nothing else happens on the listener.
    drop(fillers);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    assert!(
        matches!(&starved, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "served while out of descriptors: {starved:?}"
    );

    for (i, c) in clients.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.read_exact(&mut reply)
            .unwrap_or_else(|e| panic!("client {i} was never served: {e}"));
        assert_eq!(&reply, b"hello", "client {i}");
    }
}
