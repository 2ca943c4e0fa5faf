//! Runs one of the comparison servers as its own process, for measuring it
//! the way `echo-server` is measured (callgrind, perf, taskset):
//!
//! ```sh
//! cargo run --release --example peer -- epoll 127.0.0.1:7008
//! ```
//!
//! Servers: `epoll` (raw libc, the floor), `tokio` (current_thread),
//! `threads` (thread per connection). See `benches/peers/`.

#[path = "../benches/peers/mod.rs"]
mod peers;

use std::net::TcpListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(name), addr) = (args.next(), args.next()) else {
        eprintln!("usage: peer <{}> [ADDR]", peers::NAMES.join("|"));
        return ExitCode::from(2);
    };
    let addr = addr.unwrap_or_else(|| "127.0.0.1:7008".into());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().expect("local address");
    eprintln!("{name}: listening on tcp://{local}");
    match peers::serve(&name, listener) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
