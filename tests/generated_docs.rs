//! `echo-server --generate`: the man page and the bash, zsh and fish
//! completions are made from the command line `--help` describes, so each
//! holds every flag `--help` lists today (the checks are the kit's
//! `echo_test_kit::docs`). Nothing is served; each run is a child process
//! that writes and exits.

use std::path::Path;

use echo_test_kit::docs::{self, SHELLS};
use echo_test_kit::run;

fn server() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-server"))
}

/// The long flags of `echo-server --help`.
fn help_flags() -> Vec<String> {
    let flags = docs::long_flags(&docs::output(server(), &["--help"]));
    for flag in ["--listen", "--idle-timeout", "--help", "--version"] {
        assert!(
            flags.iter().any(|f| f == flag),
            "{flag} not read from --help: {flags:?}"
        );
    }
    flags
}

/// The man page is roff titled `echo-server(1)`, renders without a
/// warning, and documents every flag of `--help`.
#[test]
fn man_page_documents_every_flag_of_help() {
    let page = docs::output(server(), &["--generate", "man"]);
    docs::assert_man_page(&page, "echo-server", &help_flags());
}

/// The signals the long help lists have a SIGNALS section of their own,
/// out of DESCRIPTION, and the page names the version.
#[test]
fn man_page_gives_the_signals_their_own_section() {
    let page = docs::output(server(), &["--generate", "man"]);
    let at = |heading: &str| {
        page.find(heading)
            .unwrap_or_else(|| panic!("no {heading}:\n{page}"))
    };
    let description = &page[at(".SH DESCRIPTION")..at(".SH OPTIONS")];
    let signals = &page[at(".SH SIGNALS")..at(".SH VERSION")];
    for signal in ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2"] {
        assert!(signals.contains(signal), "{signal} not in SIGNALS:\n{page}");
        assert!(
            !description.contains(signal),
            "{signal} still in DESCRIPTION:\n{page}"
        );
    }
    let version = docs::output(server(), &["--version"]);
    let version = version.split_whitespace().last().unwrap_or_default();
    assert!(
        page[at(".SH VERSION")..].contains(version),
        "no {version}:\n{page}"
    );
}

/// Each completion script names every flag of `--help` and parses in its
/// shell; bash and fish complete `echo-server --` to each of them.
#[test]
fn completions_offer_every_flag_of_help() {
    let flags = help_flags();
    for shell in SHELLS {
        let script = docs::output(server(), &["--generate", shell]);
        docs::assert_offers_every_flag(shell, &script, "echo-server", &flags);
    }
}

/// `--generate` goes alone: with a flag of the server's, or with a kind it
/// does not know, it is a one-line usage error, status 2.
#[test]
fn generate_with_anything_else_is_a_usage_error() {
    for args in [
        &["--generate", "man", "--threads", "2"][..],
        &["--generate", "pdf"],
        &["--generate", "zsh", "--out-dir", "/tmp"],
    ] {
        let run = run(std::process::Command::new(server()).args(args), Vec::new());
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        run.assert_one_error_line();
    }
}
