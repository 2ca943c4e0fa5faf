//! What the three binaries (`echo-server`, `echo-client`, `echo-bench`)
//! share on their command lines: [`parse`], which answers the hidden
//! `--generate` option with a man page or a completion script ([`docs`])
//! and otherwise parses as clap does; a rejected command line as one line
//! and exit status 2 ([`usage_error`]); and the parsers for seconds and
//! byte sizes their options take.
//!
//! The libraries never parse arguments: this crate, and clap with it, is a
//! dependency of the binaries only.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, Command, Parser};

pub mod docs;

pub use docs::Generate;

/// Parses the process's command line into `T`, or says with `Err` the exit
/// status to end with at once: the line was rejected ([`usage_error`]:
/// `--help` and `--version` included) or it asked for documentation.
///
/// Every binary takes two hidden options besides its own, which `--help`
/// does not list (and so neither do the pages they write):
///
/// - `--generate KIND` writes, for KIND `man`, `bash`, `zsh` or `fish`, the
///   man page or the completion script of `T`'s own command to standard
///   output (see [`docs::generate`]), and exits 0;
/// - `--generate man --out-dir DIR` writes instead a page for the command
///   and one for each subcommand into DIR (see [`docs::man_pages_to`]).
///
/// They go alone: with any other option, argument or a subcommand they are
/// a usage error, and a required subcommand or argument is not required
/// with them. A command line without `--generate` is parsed by
/// `T::try_parse_from` exactly as before they existed.
pub fn parse<T: Parser>() -> Result<T, ExitCode> {
    parse_from(std::env::args_os())
}

/// [`parse`] on a given command line (its first item the program name).
pub fn parse_from<T, I>(args: I) -> Result<T, ExitCode>
where
    T: Parser,
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    match docs_request(T::command(), &args) {
        Ok(None) => T::try_parse_from(args).map_err(usage_error),
        Ok(Some(request)) => Err(request.answer(T::command())),
        Err(e) => Err(usage_error(e)),
    }
}

/// What a `--generate` command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct DocsRequest {
    kind: Generate,
    out_dir: Option<PathBuf>,
}

impl DocsRequest {
    /// Writes what was asked for; the exit status says whether it could.
    fn answer(self, cmd: Command) -> ExitCode {
        let written = match &self.out_dir {
            Some(dir) => docs::man_pages_to(cmd, dir).map(drop),
            None => docs::generate(cmd, self.kind, &mut io::stdout().lock()),
        };
        match written {
            Ok(()) => ExitCode::SUCCESS,
            // The reader left (`--generate bash | head`): it has what it
            // wanted, so end quietly, as echo-client does.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                let what = match &self.out_dir {
                    Some(dir) => format!("man pages to {}", dir.display()),
                    None => format!("{:?} output", self.kind).to_lowercase(),
                };
                let _ = writeln!(io::stderr().lock(), "error: cannot write the {what}: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// `Ok(Some(..))` if `args` asks for documentation, `Ok(None)` if it does
/// not (then `cmd` parses it as usual), `Err` if it names `--generate` but
/// is wrong.
///
/// Only a command line that names `--generate` (before any `--`) is parsed
/// here, by `cmd` with the two hidden options added, so no ordinary command
/// line can meet an error that this parse alone would find. One that names
/// it only as a value (`echo-client -m --generate`) parses here without the
/// option, and then as usual.
fn docs_request(cmd: Command, args: &[OsString]) -> Result<Option<DocsRequest>, clap::Error> {
    let names_it = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
        .any(|a| a == "--generate" || a.starts_with("--generate="));
    if !names_it {
        return Ok(None);
    }
    let mut cmd = with_docs_options(cmd);
    let matches = cmd.try_get_matches_from_mut(args)?;
    let Some(&kind) = matches.get_one::<Generate>("generate") else {
        return Ok(None);
    };
    let out_dir = matches.get_one::<PathBuf>("out_dir").cloned();
    if out_dir.is_some() && kind != Generate::Man {
        return Err(cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            "--out-dir is for `--generate man` only: completions go to standard output",
        ));
    }
    Ok(Some(DocsRequest { kind, out_dir }))
}

/// `cmd` with `--generate` and `--out-dir`, which conflict with every
/// argument and subcommand of its own and make none of them required.
fn with_docs_options(cmd: Command) -> Command {
    let own: Vec<clap::Id> = cmd.get_arguments().map(|a| a.get_id().clone()).collect();
    cmd.subcommand_required(false)
        .arg_required_else_help(false)
        .args_conflicts_with_subcommands(true)
        .arg(
            Arg::new("generate")
                .long("generate")
                .value_name("KIND")
                .value_parser(clap::value_parser!(Generate))
                .conflicts_with_all(own)
                .hide(true),
        )
        .arg(
            Arg::new("out_dir")
                .long("out-dir")
                .value_name("DIR")
                .value_parser(clap::value_parser!(PathBuf))
                .requires("generate")
                .hide(true),
        )
}

/// What the binaries do with a command line clap rejects: `--help` and
/// `--version` print and exit 0 (and a missing subcommand prints the help),
/// anything else becomes one `error: ... (see --help)` line on standard
/// error and exit status 2, instead of clap's several lines of usage.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("error: invalid arguments");
    // A closed standard error leaves nothing better to do than exit.
    let _ = writeln!(std::io::stderr().lock(), "{first} (see --help)");
    ExitCode::from(2)
}

/// Zero or more seconds, fractions allowed (`5`, `0.5`).
pub fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "expected a number of seconds, 0 or more, such as 5 or 0.5".to_string())
}

/// More than zero seconds: for a timeout or a duration, where zero would
/// mean "wait forever" to a socket call or end a run before it began.
pub fn positive_secs(s: &str) -> Result<Duration, String> {
    secs(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "expected a number of seconds above 0, such as 5 or 0.5".to_string())
}

/// A positive byte count, with an optional K, M or G suffix (powers of
/// 1024: `64`, `64K`, `1M`; `KiB`, `MiB` and `GiB` too).
pub fn bytes(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let scale: u64 = match unit {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        "G" | "g" | "GiB" => 1 << 30,
        _ => return Err("expected a number of bytes, such as 64, 64K or 1M".into()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
        .ok_or_else(|| "expected a number of bytes above 0, such as 64, 64K or 1M".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Shaped like echo-bench: a required subcommand.
    #[derive(Parser, Debug)]
    #[command(name = "bench", version)]
    struct Bench {
        #[command(subcommand)]
        mode: Mode,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Mode {
        Run {
            #[arg(long)]
            fast: bool,
        },
    }

    /// Shaped like echo-client: a positional with a default, and an option
    /// whose value may look like a flag.
    #[derive(Parser, Debug)]
    #[command(name = "client")]
    struct Client {
        #[arg(default_value = "127.0.0.1:7007")]
        addr: String,
        #[arg(short, long, allow_hyphen_values = true)]
        message: Vec<String>,
    }

    fn request<T: Parser>(args: &[&str]) -> Result<Option<DocsRequest>, clap::Error> {
        let args: Vec<OsString> = args.iter().map(Into::into).collect();
        docs_request(T::command(), &args)
    }

    fn asked(kind: Generate, out_dir: Option<&str>) -> Option<DocsRequest> {
        let out_dir = out_dir.map(PathBuf::from);
        Some(DocsRequest { kind, out_dir })
    }

    /// `--generate` alone is answered though a subcommand is required, in
    /// either spelling, with or without `--out-dir`.
    #[test]
    fn generate_alone_needs_no_subcommand() {
        let man = asked(Generate::Man, None);
        assert_eq!(
            request::<Bench>(&["bench", "--generate", "man"]).unwrap(),
            man
        );
        let fish = asked(Generate::Fish, None);
        assert_eq!(
            request::<Bench>(&["bench", "--generate=fish"]).unwrap(),
            fish
        );
        let dir = asked(Generate::Man, Some("d"));
        let args = ["bench", "--generate", "man", "--out-dir", "d"];
        assert_eq!(request::<Bench>(&args).unwrap(), dir);
        let zsh = asked(Generate::Zsh, None);
        assert_eq!(
            request::<Client>(&["client", "--generate", "zsh"]).unwrap(),
            zsh
        );
    }

    /// With anything else, with a kind it does not know, or `--out-dir`
    /// for a completion, `--generate` is a usage error, not a page.
    #[test]
    fn generate_goes_alone() {
        let bench = [
            &["bench", "--generate", "man", "run"][..],
            &["bench", "run", "--generate", "man"],
            &["bench", "--generate", "troff"],
            &["bench", "--generate"],
            &["bench", "--generate", "bash", "--out-dir", "d"],
        ];
        for args in bench {
            let e = request::<Bench>(args).expect_err(&format!("{args:?}"));
            assert!(e.use_stderr(), "{args:?}: {e}");
        }
        let client = [
            &["client", "--generate", "man", "127.0.0.1:7"][..],
            &["client", "--generate", "man", "-m", "hi"],
        ];
        for args in client {
            let e = request::<Client>(args).expect_err(&format!("{args:?}"));
            assert!(e.use_stderr(), "{args:?}: {e}");
        }
    }

    /// A command line that does not ask for documentation is left to the
    /// usual parse, which then gives the same verdict as before.
    #[test]
    fn other_command_lines_parse_as_before() {
        for args in [
            &["client", "-m", "--generate"][..],
            &["client", "--", "--generate"],
        ] {
            assert_eq!(request::<Client>(args).unwrap(), None, "{args:?}");
            assert!(Client::try_parse_from(args).is_ok(), "{args:?}");
        }
        for args in [
            &["bench"][..],
            &["bench", "--out-dir", "d"],
            &["bench", "run"],
        ] {
            assert_eq!(request::<Bench>(args).unwrap(), None, "{args:?}");
        }
        let missing = Bench::try_parse_from(["bench"]).unwrap_err().kind();
        assert_eq!(
            missing,
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert!(Bench::command()
            .get_arguments()
            .all(|a| a.get_id() != "generate"));
    }

    /// Suffixes scale by powers of 1024; zero, overflow and unknown units
    /// are one-line errors, never a panic.
    #[test]
    fn byte_sizes_take_suffixes_and_refuse_nonsense() {
        assert_eq!(bytes("64"), Ok(64));
        assert_eq!(bytes("64K"), Ok(64 << 10));
        assert_eq!(bytes("1MiB"), Ok(1 << 20));
        assert_eq!(bytes("2g"), Ok(2 << 30));
        for bad in [
            "",
            "0",
            "0K",
            "K",
            "-1",
            "1T",
            "1.5M",
            "99999999999999999999G",
        ] {
            let e = bytes(bad).unwrap_err();
            assert!(e.starts_with("expected a number of bytes"), "{bad:?}: {e}");
        }
    }

    /// Seconds take fractions; a negative, a NaN or a huge number is an
    /// error, and zero only where it is allowed.
    #[test]
    fn seconds_take_fractions_and_zero_only_where_allowed() {
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        assert_eq!(secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(positive_secs("5"), Ok(Duration::from_secs(5)));
        assert!(positive_secs("0").is_err());
        for bad in ["", "-1", "NaN", "inf", "1e30", "five"] {
            assert!(secs(bad).is_err(), "{bad:?}");
            assert!(positive_secs(bad).is_err(), "{bad:?}");
        }
    }
}
