//! Checks that what a binary writes with `--generate` (its man page and its
//! bash, zsh and fish completions) covers every flag its `--help` lists:
//! proof that both are made from the command line as it is now, not from a
//! copy that could fall behind.
//!
//! Where the tools are installed, the checks go further: groff renders the
//! page with every warning on, each shell reads its script with `-n`, and
//! bash and fish really complete `NAME --` from it. A missing tool narrows
//! the check and says so on standard error (shown with `--nocapture`, or
//! when the test fails); it never passes for a check it did not make.

use std::path::Path;
use std::process::Command;

use crate::{run, Run};

/// The shells `--generate` writes completions for.
pub const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

/// What `bin args` writes to standard output; fails unless it exits 0 with
/// nothing on standard error.
pub fn output(bin: &Path, args: &[&str]) -> String {
    let run = run(Command::new(bin).args(args), Vec::new());
    run.assert_success();
    String::from_utf8(run.stdout).expect("UTF-8 output")
}

/// The long flags (`--name`) that the option lists of a `--help` define,
/// in order: lines that open, after an indentation of at most 6 spaces
/// (clap indents descriptions by more), with `-x, --name` or `--name`.
/// Flags the prose only mentions are not counted.
pub fn long_flags(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        if indent > 6 {
            continue;
        }
        let line = line.trim_start();
        let line = match line.as_bytes() {
            [b'-', short, b',', b' ', ..] if *short != b'-' => &line[4..],
            _ => line,
        };
        if let Some(rest) = line.strip_prefix("--") {
            let name = flag_name(rest);
            if !name.is_empty() {
                flags.push(format!("--{name}"));
            }
        }
    }
    flags
}

/// The subcommands a `--help` lists under `Commands:`, clap's `help`
/// excepted (it has no page and no options of its own).
pub fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Fails unless `page` is a man page in roff for `name` in section 1:
/// only the apostrophe preamble before `.TH name 1`, only the man macros
/// clap_mangen writes, the NAME, SYNOPSIS, DESCRIPTION and OPTIONS
/// sections, and in OPTIONS an entry for each of `flags` and for no other
/// long flag. If groff is installed, the page must also render without a
/// warning (`-ww`), and its OPTIONS, rendered, list the same flags.
pub fn assert_man_page(page: &str, name: &str, flags: &[String]) {
    const MACROS: [&str; 11] = [
        "ie", "el", "TH", "SH", "SS", "PP", "TP", "IP", "RS", "RE", "br",
    ];
    let mut lines = page
        .lines()
        .skip_while(|l| l.starts_with(".ie ") || l.starts_with(".el "));
    let title = lines.next().unwrap_or_default();
    assert!(
        title.starts_with(&format!(".TH {name} 1 ")),
        "the page must open with `.TH {name} 1`, not {title:?}:\n{page}"
    );
    for line in page.lines() {
        if let Some(control) = line.strip_prefix('.').or(line.strip_prefix('\'')) {
            let mac = control.split_whitespace().next().unwrap_or_default();
            assert!(MACROS.contains(&mac), "unknown macro in {line:?}:\n{page}");
        }
    }
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS"] {
        let heading = format!(".SH {section}");
        assert!(page.lines().any(|l| l == heading), "no {heading}:\n{page}");
    }
    let want = sorted(flags.to_vec());
    assert_eq!(
        sorted(roff_option_entries(page)),
        want,
        "OPTIONS entries:\n{page}"
    );
    match groff(page) {
        Some(text) => {
            let entries = sorted(rendered_option_entries(&text));
            assert_eq!(entries, want, "OPTIONS entries, rendered:\n{text}");
        }
        None => eprintln!("groff is not installed: {name}'s page was checked as roff source only"),
    }
}

fn sorted(mut flags: Vec<String>) -> Vec<String> {
    flags.sort();
    flags
}

/// The long flags that the entries of OPTIONS name in the roff source: the
/// lines after each `.TP`, such as `\fB\-l\fR, \fB\-\-listen\fR \fI<ADDR>\fR`.
fn roff_option_entries(page: &str) -> Vec<String> {
    let lines: Vec<&str> = section(page.lines(), |l| l.starts_with(".SH"), ".SH OPTIONS").collect();
    let entries = lines.windows(2).filter(|w| w[0] == ".TP").map(|w| w[1]);
    entries
        .flat_map(|entry| {
            // roff writes each hyphen that must stay one as `\-`.
            let entry = entry.replace("\\-", "-");
            entry
                .split("\\fB--")
                .skip(1)
                .map(|rest| format!("--{}", flag_name(rest)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The long flags that the entries of OPTIONS name in the page as
/// rendered: the least indented lines of the section.
fn rendered_option_entries(text: &str) -> Vec<String> {
    let body: Vec<&str> = section(
        text.lines(),
        |l| !l.starts_with(' ') && !l.is_empty(),
        "OPTIONS",
    )
    .filter(|l| !l.trim().is_empty())
    .collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let least = body.iter().map(|l| indent(l)).min().unwrap_or_default();
    let entries: Vec<&str> = body
        .into_iter()
        .filter(|l| indent(l) == least)
        .map(str::trim_start)
        .collect();
    long_flags(&entries.join("\n"))
}

/// The lines after the `heading` line up to the next line that `is_heading`.
fn section<'a>(
    lines: impl Iterator<Item = &'a str>,
    is_heading: impl Fn(&str) -> bool,
    heading: &str,
) -> impl Iterator<Item = &'a str> {
    let heading = heading.to_string();
    lines
        .skip_while(move |l| *l != heading)
        .skip(1)
        .take_while(move |l| !is_heading(l))
}

/// The name a flag's text starts with (`listen` of `listen <ADDR>`).
fn flag_name(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// The page as groff renders it for a terminal, as `man` would; fails on
/// any warning. `None` if groff is not installed.
fn groff(page: &str) -> Option<String> {
    // No hyphenation, long lines, and neither bold nor underline, so that
    // each flag is plain text in one piece.
    let args = ["-man", "-Tutf8", "-ww", "-rHY=0", "-rLL=400n", "-P-cbou"];
    Command::new("groff").arg("--version").output().ok()?;
    let run: Run = run(Command::new("groff").args(args), page.as_bytes().to_vec());
    assert!(
        run.status.success(),
        "groff: {}: {}",
        run.status,
        run.stderr
    );
    assert_eq!(run.stderr, "", "groff warns about the page:\n{page}");
    // groff -Tutf8 prints a roff `\-` as a minus sign.
    Some(String::from_utf8_lossy(&run.stdout).replace('\u{2212}', "-"))
}

/// Fails unless `script`, the completion script for `shell`, offers every
/// one of `flags` as an option (text that merely mentions a flag, such as
/// another option's description, does not count), and unless `shell`, if
/// installed, reads it without error (`-n`).
pub fn assert_completion_script(shell: &str, script: &str, flags: &[String]) {
    for flag in flags {
        assert!(
            offers(shell, script, flag),
            "the {shell} completion does not offer {flag}:\n{script}"
        );
    }
    let Some(run) = in_shell(shell, &["-n", "/dev/stdin"], script) else {
        eprintln!("{shell} is not installed: its completion was not syntax-checked");
        return;
    };
    assert!(
        run.status.success(),
        "{shell} -n: {}: {}",
        run.status,
        run.stderr
    );
    assert_eq!(run.stderr, "", "{shell} -n warns:\n{script}");
}

/// Whether the script offers `flag` where each shell's script lists its
/// options: bash in an `opts="..."` list, zsh as an `_arguments` spec
/// (`'--name[...]'`, `'*--name=[...]'`), fish as a `complete -c ... -l
/// name` line.
fn offers(shell: &str, script: &str, flag: &str) -> bool {
    let mut lines = script.lines().map(str::trim);
    match shell {
        "bash" => lines
            .filter_map(|l| l.strip_prefix("opts=\"")?.strip_suffix('"'))
            .any(|opts| opts.split_whitespace().any(|w| w == flag)),
        "zsh" => lines.any(|l| {
            let spec = l.strip_prefix('\'').unwrap_or_default();
            // An exclusion list first, as in `'(-v)--quiet[...]'`.
            let spec = match spec.strip_prefix('(') {
                Some(rest) => rest.split_once(')').map_or("", |(_, spec)| spec),
                None => spec,
            };
            let rest = spec.trim_start_matches('*').strip_prefix(flag);
            rest.is_some_and(|r| r.starts_with('[') || r.starts_with('='))
        }),
        "fish" => lines.filter(|l| l.starts_with("complete -c ")).any(|l| {
            // The options of `complete` come before the description.
            let options = l.split(" -d '").next().unwrap_or_default();
            let words: Vec<&str> = options.split_whitespace().collect();
            words.windows(2).any(|w| w[0] == "-l" && w[1] == &flag[2..])
        }),
        _ => panic!("no completion check for {shell}"),
    }
}

/// Both checks of a completion script: it names every one of `flags` where
/// `shell` lists options ([`assert_completion_script`]) and, for bash and
/// fish, the shell completes `line --` to each ([`assert_completes`]; zsh's
/// would need a terminal).
pub fn assert_offers_every_flag(shell: &str, script: &str, line: &str, flags: &[String]) {
    assert_completion_script(shell, script, flags);
    if shell != "zsh" {
        assert_completes(shell, script, line, flags);
    }
}

/// Fails unless bash or fish, if installed, given `script`, completes
/// `line --` (`line` being the program and any subcommand) to every one of
/// `flags`: the script is what the shell would load, and the completion is
/// the shell's own. Other shells are not checked this way (zsh's needs a
/// terminal); an absent shell is said on standard error.
pub fn assert_completes(shell: &str, script: &str, line: &str, flags: &[String]) {
    // bash: call the function the script binds to the program, as bash
    // does at a <TAB> after `line --`. fish: `complete -C` is fish's own.
    let program = line.split_whitespace().next().unwrap_or_default();
    let run = match shell {
        "bash" => in_shell(
            "bash",
            &[
                "-c",
                r#"source /dev/stdin
                   fn=$(complete -p "$1" | sed -n 's/.*-F \([^ ]*\).*/\1/p')
                   read -ra COMP_WORDS <<< "$2 --"
                   COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
                   COMP_LINE="$2 --"; COMP_POINT=${#COMP_LINE}
                   "$fn" "$1" -- "${COMP_WORDS[COMP_CWORD-1]}"
                   printf '%s\n' "${COMPREPLY[@]}""#,
                "bash",
                program,
                line,
            ],
            script,
        ),
        "fish" => in_shell(
            "fish",
            &[
                "--no-config",
                "-c",
                r#"source -; complete -C "$argv[1] --""#,
                line,
            ],
            script,
        ),
        _ => panic!("no completion check for {shell}"),
    };
    let Some(run) = run else {
        eprintln!("{shell} is not installed: `{line} --<TAB>` was not tried");
        return;
    };
    assert!(
        run.status.success(),
        "{shell}: {}: {}",
        run.status,
        run.stderr
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    // fish follows each candidate with a tab and its description.
    let offered: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    for flag in flags {
        assert!(
            offered.contains(&flag.as_str()),
            "{shell} does not complete `{line} --` to {flag}; it offers {offered:?}"
        );
    }
}

/// Runs `shell args` with `input` on standard input; `None` if the shell
/// is not installed.
fn in_shell(shell: &str, args: &[&str], input: &str) -> Option<Run> {
    Command::new(shell).arg("--version").output().ok()?;
    Some(run(
        Command::new(shell).args(args),
        input.as_bytes().to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags come from the option lists only, each once.
    #[test]
    fn long_flags_are_read_from_the_option_lists() {
        let help = "Usage: x [OPTIONS]\n\nSee --not-this.\n\nOptions:\n  \
                    -l, --listen <ADDR>\n          TCP address; see --threads\n      \
                    --udp-rate <N>\n          --in-a-description\n  -h, --help\n          \
                    Print help\n";
        assert_eq!(long_flags(help), ["--listen", "--udp-rate", "--help"]);
        let commands = "Commands:\n  run   Runs\n  help  Print this\n\nOptions:\n";
        assert_eq!(subcommands(commands), ["run"]);
    }

    /// A flag counts where a script lists its options, not where a
    /// description mentions it.
    #[test]
    fn a_script_offers_a_flag_only_as_an_option() {
        let flag = "--udp".to_string();
        let bash = "opts=\"-h --udp-rate --help\"\n    --udp)\n";
        assert!(!offers("bash", bash, &flag));
        assert!(offers("bash", "  opts=\"-h --udp --help\"", &flag));
        assert!(offers(
            "zsh",
            "'*--udp=[UDP address]:ADDR:_default' \\",
            &flag
        ));
        assert!(offers("zsh", "'(-q)--udp[talk UDP]' \\", &flag));
        assert!(!offers("zsh", "'--udp-rate=[past --udp]' \\", &flag));
        assert!(offers("fish", "complete -c x -s u -l udp -d 'UDP'", &flag));
        assert!(!offers(
            "fish",
            "complete -c x -l rate -d 'see -l udp'",
            &flag
        ));
    }
}
