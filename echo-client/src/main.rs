//! `echo-client`: parse the command line, run one echo session, report how
//! it ended.
//!
//! Everything else lives in the library; read `src/lib.rs` for the session
//! itself.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use echo_client::{self as client, ClientError, Options};
use mio_echo_net::{parse_socket_addr, DEFAULT_ADDR};

/// A client for an RFC 862 echo server: sends standard input, prints the
/// echo, and checks that every byte came back unchanged.
///
/// At a terminal each line goes out when Enter is pressed and its echo is
/// printed when it returns; end with Ctrl-D. Piped, the output is the input,
/// byte for byte. Any difference, early close or silence from the server is
/// an error naming what went wrong, with a non-zero exit status.
///
/// With --udp each line of input, newline included, is one datagram (at
/// most 65,507 bytes; a longer line is an error), sent when the reply to
/// the one before has come back unchanged.
#[derive(Parser, Debug)]
#[command(name = "echo-client", version)]
struct Args {
    /// The server: IP:PORT, `[IPv6]:PORT`, `[IPv6%INTERFACE]:PORT` or HOST:PORT
    /// (over TCP every address the name resolves to is tried; over UDP, the
    /// first).
    #[arg(value_name = "ADDR", default_value = DEFAULT_ADDR, value_parser = parse_addr)]
    addr: String,

    /// Send TEXT and a newline instead of reading standard input, print the
    /// echo and exit. Repeat to send several, in order; with --udp each is
    /// one datagram.
    #[arg(short, long, value_name = "TEXT", allow_hyphen_values = true)]
    message: Vec<String>,

    /// Talk UDP (RFC 862's datagram echo): send each line of input,
    /// newline included, or each --message as one datagram of at most
    /// 65,507 bytes, and wait for its reply before sending the next.
    #[arg(short, long)]
    udp: bool,

    /// How many seconds connecting, and each wait for the echo (with --udp:
    /// for each datagram's reply), may take (fractions allowed, such as 0.5).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = mio_echo_cli::positive_secs,
          allow_negative_numbers = true)]
    timeout: Duration,
}

/// The server's address, as the client library resolves it. An IPv6 scope
/// by interface name (`[fe80::1%eth0]:7007`) becomes the interface's
/// number, which std's resolver takes; an unknown interface is a usage
/// error. Anything else, host names included, is left to the resolver.
fn parse_addr(s: &str) -> Result<String, String> {
    if s.starts_with('[') && s.contains('%') {
        parse_socket_addr(s).map(|addr| addr.to_string())
    } else {
        Ok(s.to_string())
    }
}

fn main() -> ExitCode {
    // `--generate man|bash|zsh|fish` (hidden) writes this command line's
    // man page or completions; anything else parses as usual.
    let args = match mio_echo_cli::parse::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    // Quiet unless asked: RUST_LOG=debug shows each address tried.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    let opts = Options {
        timeout: args.timeout,
        ..Options::default()
    };
    match run(&args, &opts) {
        Ok(_) => ExitCode::SUCCESS,
        // The reader of our output left (`echo-client | head -c1`): it has
        // what it wanted, so end quietly, as a tool killed by SIGPIPE would.
        Err(e) if e.is_output_closed() => ExitCode::SUCCESS,
        Err(e) => {
            // Not `eprintln!`: it panics if standard error is closed.
            let _ = writeln!(io::stderr().lock(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects and runs one session over `--message` or standard input.
fn run(args: &Args, opts: &Options) -> Result<u64, ClientError> {
    let mut stdout = io::stdout().lock();
    let messages: Vec<String> = args.message.iter().map(|m| format!("{m}\n")).collect();
    if args.udp {
        let (socket, peer) = client::connect_udp(&args.addr, opts.timeout)?;
        return if messages.is_empty() {
            client::echo_lines(&socket, peer, &mut io::stdin().lock(), &mut stdout, opts)
        } else {
            client::echo_messages(&socket, peer, &messages, &mut stdout, opts)
        };
    }
    let (mut stream, peer) = client::connect(&args.addr, opts.timeout)?;
    if messages.is_empty() {
        client::echo(
            &mut stream,
            peer,
            &mut io::stdin().lock(),
            &mut stdout,
            opts,
        )
    } else {
        let text = messages.concat();
        client::echo(&mut stream, peer, &mut text.as_bytes(), &mut stdout, opts)
    }
}
