//! The stepping-stone server in `examples/minimal.rs` builds and echoes:
//! random payloads over several concurrent connections, every byte
//! compared, and a half-close answered with the rest and then EOF.

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
