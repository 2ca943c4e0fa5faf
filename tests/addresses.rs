//! Addresses the binaries take: the IPv6 loopback, IPv4 and IPv6
//! wildcards on one port, a dual-stack wildcard, IPv6 scope ids by
//! interface name or number, and IPv4-mapped IPv6 addresses, each served
//! and echoed over
//! real sockets on loopback, or inside a network namespace the test makes
//! and deletes. Every wait has a deadline and every child is killed if a
//! test fails.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;

use common::{
    connect, count, field, has_ipv6_loopback, round_trip, server_command, stop, summary, tcp_echo,
    EchoServer,
};

/// SIGTERM ends `server`: status 0, and a summary counting `connections`.
fn stops_with(server: EchoServer, connections: u64) {
    server.signal(libc::SIGTERM);
    let (status, lines) = server.finish();
    assert_eq!(status.code(), Some(0), "{status}: {lines:#?}");
    let last = lines.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains("stopped: "), "last line: {last:?}");
    assert_eq!(count(last, "connections"), connections, "{last}");
}

/// `[::ffff:127.0.0.1]:0` binds (IPV6_V6ONLY off for it, although
/// --dual-stack is not given) and echoes to a client of 127.0.0.1:P and
/// to one of the mapped address itself.
#[test]
fn a_mapped_ipv4_address_is_served() {
    let mut server = EchoServer::start(&["-l", "[::ffff:127.0.0.1]:0"], None);
    let addr = server.listening(1)[0];
    assert_eq!(addr.ip().to_string(), "::ffff:127.0.0.1", "{addr}");
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()));
    round_trip(&connect(v4), b"over IPv4\n").expect("echo over 127.0.0.1");
    round_trip(&connect(addr), b"over the mapped address\n").expect("echo over ::ffff:");
    stops_with(server, 2);
}

/// `[::1%lo]:0`, a scope by interface name, parses and binds on the IPv6
/// loopback (Linux takes a scope id on `::1` and ignores it), and serves.
#[test]
fn a_scope_by_interface_name_is_taken() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let mut server = EchoServer::start(&["-l", "[::1%lo]:0"], None);
    let addr = server.listening(1)[0];
    assert_eq!(addr.ip().to_string(), "::1", "{addr}");
    round_trip(&connect(addr), b"scoped\n").expect("echo over [::1]");
    stops_with(server, 1);
}

/// An interface that does not exist: one usage error naming it, from the
/// server and from the client alike, exit status 2.
#[test]
fn an_unknown_interface_is_a_usage_error_naming_it() {
    let bad = "[fe80::1%nosuch0]:7007";
    let client = Command::new(common::workspace_bin("echo-client"));
    for mut command in [server_command(), client] {
        if command
            .get_program()
            .to_string_lossy()
            .ends_with("echo-server")
        {
            command.args(["-l", bad]);
        } else {
            command.arg(bad);
        }
        let run = common::run(&mut command, Vec::new());
        run.assert_one_error_line();
        assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("no network interface is named \"nosuch0\""),
            "{}",
            run.stderr
        );
    }
}

/// A link-local address without its interface cannot be bound: one line
/// says what it lacks, never a bare "invalid argument".
#[test]
fn a_link_local_address_without_its_interface_says_what_it_lacks() {
    let run = common::run(server_command().args(["-l", "[fe80::1]:0"]), Vec::new());
    run.assert_one_error_line();
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("needs its interface, such as [fe80::1%eth0]:0"),
        "{}",
        run.stderr
    );
}

/// A network namespace of this test's own, deleted when dropped (a failed
/// test included).
struct Netns(String);

impl Netns {
    /// A new namespace with its loopback up, or `None` (and why) when this
    /// user may not make one.
    fn create() -> Result<Netns, String> {
        let name = format!("mio-echo-test-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let netns = Netns(name);
        ip(&["-n", &netns.0, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// `program args...` run inside the namespace (`ip netns exec` execs
    /// it, so the child's pid is the program's).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0]).arg(program);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.0]);
    }
}

/// Runs `ip args...`, bounded by the kit's deadline.
fn ip(args: &[&str]) -> Result<(), String> {
    let run = common::run(Command::new("ip").args(args), Vec::new());
    if run.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), run.stderr.trim()))
    }
}

/// `[fe80::1%lo]:0`: inside a namespace whose loopback has fe80::1, the
/// server binds the link-local address by interface name and echoes to
/// `echo-client '[fe80::1%lo]:P'` run in the same namespace.
#[test]
fn a_link_local_address_with_its_interface_is_served() {
    let netns = match Netns::create() {
        Ok(netns) => netns,
        Err(why) => {
            eprintln!("skipped: cannot make a network namespace: {why}");
            return;
        }
    };
    // nodad: the address is usable at once, not tentative for a second.
    let added = ip(&[
        "-n",
        &netns.0,
        "addr",
        "add",
        "fe80::1/64",
        "dev",
        "lo",
        "nodad",
    ]);
    added.expect("add fe80::1 to the namespace's loopback");

    let mut command = netns.command(env!("CARGO_BIN_EXE_echo-server"));
    command
        .args(["-l", "[fe80::1%lo]:0"])
        .env_remove("RUST_LOG")
        .env_remove("RUST_LOG_STYLE");
    let mut server = EchoServer::spawn(&mut command);
    let addr = server.listening(1)[0];
    let SocketAddr::V6(v6) = addr else {
        panic!("{addr}")
    };
    assert_eq!(v6.ip().to_string(), "fe80::1", "{addr}");
    assert_ne!(v6.scope_id(), 0, "{addr}");

    let target = format!("[fe80::1%lo]:{}", addr.port());
    let mut client = netns.command(common::workspace_bin("echo-client"));
    client.args(["-m", "link-local", &target]);
    let run = common::run(&mut client, Vec::new());
    run.assert_success();
    assert_eq!(run.stdout, b"link-local\n");
    stops_with(server, 1);
}

// --- IPv6 and dual stack ----------------------------------------------------

/// `-l [::1]:0` serves IPv6 and logs `tcp://[::1]:PORT`.
#[test]
fn ipv6_loopback_is_served_and_logged_in_brackets() {
    if !has_ipv6_loopback() {
        eprintln!("note: no IPv6 loopback on this machine; test skipped");
        return;
    }
    let mut server = EchoServer::start(&["-l", "[::1]:0"], None);
    let addr = server.listening(1)[0];
    assert!(addr.is_ipv6() && addr.ip().is_loopback(), "{addr}");
    let line = format!("listening on tcp://[::1]:{}", addr.port());
    assert!(
        server.seen.iter().any(|l| l.contains(&line)),
        "{:#?}",
        server.seen
    );
    tcp_echo(addr, b"over IPv6\n");
    let lines = stop(server);
    assert_eq!(field(summary(&lines), "connections"), Some("1"));
}

/// `0.0.0.0:P` and `[::]:P` are served at once on the same port (the server
/// sets `IPV6_V6ONLY` itself, whatever the system default), each by its own
/// server, each reached over its own family.
#[test]
fn ipv4_and_ipv6_wildcards_share_a_port() {
    if !has_ipv6_loopback() {
        eprintln!("note: no IPv6 loopback on this machine; test skipped");
        return;
    }
    let mut v4 = EchoServer::start(&["-l", "0.0.0.0:0"], None);
    let port = v4.listening(1)[0].port();
    let mut v6 = EchoServer::start(&["-l", &format!("[::]:{port}")], None);
    let logged = v6.listening(1)[0];
    assert_eq!(
        logged,
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        "{:#?}",
        v6.seen
    );
    tcp_echo(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), b"to IPv4\n");
    tcp_echo(SocketAddr::from((Ipv6Addr::LOCALHOST, port)), b"to IPv6\n");
    for (name, server) in [("0.0.0.0", v4), ("[::]", v6)] {
        let lines = stop(server);
        assert_eq!(
            field(summary(&lines), "connections"),
            Some("1"),
            "{name}:{port} served exactly its own family's client"
        );
    }
}

/// With `--dual-stack`, `[::]:P` also takes IPv4 clients on 127.0.0.1:P.
#[test]
fn dual_stack_wildcard_accepts_ipv4_clients() {
    if !has_ipv6_loopback() {
        eprintln!("note: no IPv6 loopback on this machine; test skipped");
        return;
    }
    let mut server = EchoServer::start(&["--dual-stack", "-l", "[::]:0"], None);
    let port = server.listening(1)[0].port();
    tcp_echo(SocketAddr::from(([127, 0, 0, 1], port)), b"v4 via v6\n");
    let lines = stop(server);
    assert_eq!(field(summary(&lines), "connections"), Some("1"));
}
