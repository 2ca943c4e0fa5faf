//! `echo-bench --generate`: a man page for the tool and one for each mode
//! (`echo-bench-pingpong(1)`, git-style), and bash, zsh and fish
//! completions, all made from the command line `--help` describes, so each
//! holds every flag the `--help` of its mode lists today (the checks are
//! the kit's `echo_test_kit::docs`). No load is run.

use std::path::{Path, PathBuf};
use std::process::Command;

use echo_test_kit::docs::{self, SHELLS};
use echo_test_kit::run;

fn bench() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-bench"))
}

/// The modes `echo-bench --help` lists.
fn modes() -> Vec<String> {
    let modes = docs::subcommands(&docs::output(bench(), &["--help"]));
    assert!(
        modes.iter().any(|m| m == "pingpong"),
        "modes read from --help: {modes:?}"
    );
    modes
}

/// The long flags of `echo-bench [MODE] --help`.
fn help_flags(mode: Option<&str>) -> Vec<String> {
    let args: Vec<&str> = mode.into_iter().chain(["--help"]).collect();
    let flags = docs::long_flags(&docs::output(bench(), &args));
    assert!(flags.iter().any(|f| f == "--help"), "{args:?}: {flags:?}");
    flags
}

/// A directory of this test's own, empty, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `--out-dir` writes `echo-bench.1` and an `echo-bench-MODE.1` for each
/// mode, no other; each is roff titled after itself, renders without a
/// warning and documents every flag of its `--help`; the tool's own page
/// is the one `--generate man` writes, and it names every mode's page.
#[test]
fn man_pages_document_every_flag_of_every_mode() {
    let dir = TempDir::new("echo-bench-man");
    let out_dir = dir.0.to_str().expect("a UTF-8 temporary directory");
    let written = docs::output(bench(), &["--generate", "man", "--out-dir", out_dir]);
    assert_eq!(written, "", "pages go to files only");

    let modes = modes();
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .expect("the pages' directory")
        .map(|e| {
            e.expect("a page")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let mut want: Vec<String> = modes.iter().map(|m| format!("echo-bench-{m}.1")).collect();
    want.push("echo-bench.1".into());
    want.sort();
    assert_eq!(names, want);

    let read = |name: &str| std::fs::read_to_string(dir.0.join(name)).expect(name);
    let top = read("echo-bench.1");
    docs::assert_man_page(&top, "echo-bench", &help_flags(None));
    assert_eq!(top, docs::output(bench(), &["--generate", "man"]));
    for mode in &modes {
        let name = format!("echo-bench-{mode}");
        assert!(
            top.contains(&format!("{}(1)", name.replace('-', "\\-"))),
            "{name}:\n{top}"
        );
        docs::assert_man_page(&read(&format!("{name}.1")), &name, &help_flags(Some(mode)));
    }
}

/// The exit statuses the long help lists have an EXIT STATUS section of
/// their own, out of DESCRIPTION.
#[test]
fn man_page_gives_the_exit_status_its_own_section() {
    let page = docs::output(bench(), &["--generate", "man"]);
    let at = |heading: &str| {
        page.find(heading)
            .unwrap_or_else(|| panic!("no {heading}:\n{page}"))
    };
    let description = &page[at(".SH DESCRIPTION")..at(".SH OPTIONS")];
    let status = &page[at(".SH \"EXIT STATUS\"")..at(".SH VERSION")];
    for text in [
        "0 if every byte came back unchanged",
        "1 if any connection",
        "2 for bad",
    ] {
        assert!(
            status.contains(text),
            "{text:?} not in EXIT STATUS:\n{page}"
        );
    }
    assert!(!description.contains("Exit status"), "{page}");
}

/// Each completion script offers every mode and every flag of each mode's
/// `--help`, and parses in its shell; bash and fish complete
/// `echo-bench MODE --` to each flag of that mode.
#[test]
fn completions_offer_every_flag_of_every_mode() {
    let modes = modes();
    for shell in SHELLS {
        let script = docs::output(bench(), &["--generate", shell]);
        for mode in &modes {
            assert!(
                script.contains(mode.as_str()),
                "{shell} lacks {mode}:\n{script}"
            );
            let flags = help_flags(Some(mode));
            docs::assert_offers_every_flag(shell, &script, &format!("echo-bench {mode}"), &flags);
        }
    }
}

/// `--generate` needs no mode, and takes none: with one it is a one-line
/// usage error, status 2. Without it, no mode still prints the help and
/// exits 2, as before.
#[test]
fn generate_needs_no_mode_and_takes_none() {
    for args in [
        &["--generate", "man", "pingpong"][..],
        &["pingpong", "--generate", "man"],
    ] {
        let run = run(Command::new(bench()).args(args), Vec::new());
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        run.assert_one_error_line();
    }
    let bare = run(&mut Command::new(bench()), Vec::new());
    assert_eq!(bare.status.code(), Some(2), "{}", bare.stderr);
    assert!(
        bare.stderr
            .contains("Usage: echo-bench [OPTIONS] <COMMAND>"),
        "{}",
        bare.stderr
    );
}
