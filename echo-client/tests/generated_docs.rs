//! `echo-client --generate`: the man page and the bash, zsh and fish
//! completions are made from the command line `--help` describes, so each
//! holds every flag `--help` lists today (the checks are the kit's
//! `echo_test_kit::docs`); and the hidden option leaves the client's own
//! command line as it was.

use std::path::Path;
use std::process::Command;

use echo_test_kit::docs::{self, SHELLS};
use echo_test_kit::{run, server};

fn client() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-client"))
}

/// The long flags of `echo-client --help`.
fn help_flags() -> Vec<String> {
    let flags = docs::long_flags(&docs::output(client(), &["--help"]));
    for flag in ["--message", "--udp", "--timeout", "--help", "--version"] {
        assert!(
            flags.iter().any(|f| f == flag),
            "{flag} not read from --help: {flags:?}"
        );
    }
    flags
}

/// The man page is roff titled `echo-client(1)`, renders without a
/// warning, and documents every flag of `--help` and the address.
#[test]
fn man_page_documents_every_flag_of_help() {
    let page = docs::output(client(), &["--generate", "man"]);
    docs::assert_man_page(&page, "echo-client", &help_flags());
    assert!(page.contains("ADDR"), "the positional address:\n{page}");
}

/// Each completion script names every flag of `--help` and parses in its
/// shell; bash and fish complete `echo-client --` to each of them.
#[test]
fn completions_offer_every_flag_of_help() {
    let flags = help_flags();
    for shell in SHELLS {
        let script = docs::output(client(), &["--generate", shell]);
        docs::assert_offers_every_flag(shell, &script, "echo-client", &flags);
    }
}

/// `--generate` with the address is a one-line usage error, status 2;
/// `--generate` as the text of `-m` is still sent and echoed.
#[test]
fn generate_goes_alone_and_is_still_a_message() {
    let usage = run(
        Command::new(client()).args(["--generate", "man", "127.0.0.1:7"]),
        vec![],
    );
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
    usage.assert_one_error_line();

    let server = server();
    let addr = server.addr().to_string();
    let sent = run(
        Command::new(client()).args([&addr, "-m", "--generate"]),
        vec![],
    );
    sent.assert_success();
    assert_eq!(String::from_utf8_lossy(&sent.stdout), "--generate\n");
}
