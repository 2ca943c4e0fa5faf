//! Man pages and shell completions, made from the same clap [`Command`]
//! that makes `--help`, so they cannot drift from the flags: there is no
//! second copy of them to keep in step. Every binary writes them when
//! asked with `--generate KIND` (see [`crate::parse`]).
//!
//! A man page is clap_mangen's NAME, SYNOPSIS, DESCRIPTION (the long help),
//! OPTIONS (each flag's long help), SUBCOMMANDS and VERSION, with one
//! addition: a paragraph of the long help that opens with one of the
//! [`SECTIONS`] headings (`Signals.`, `Exit status:`) starts a section of
//! its own, as man readers expect to find it, instead of staying buried in
//! DESCRIPTION. A command with subcommands gets a page for each, named
//! git-style (`echo-bench-pingpong.1`), written by [`man_pages_to`].

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Command, ValueEnum};
use clap_complete::{Generator, Shell};
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;

/// What `--generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The man page, in roff (`man -l -` reads it).
    Man,
    /// A bash completion script.
    Bash,
    /// A zsh completion script.
    Zsh,
    /// A fish completion script.
    Fish,
}

/// Headings that, opening a paragraph of a command's long help, start a
/// man section of their own (the heading itself is dropped): the section
/// runs to the next such paragraph or to the end of the long help.
pub const SECTIONS: [(&str, &str); 2] = [("Signals.", "SIGNALS"), ("Exit status:", "EXIT STATUS")];

/// Writes `cmd`'s man page (for a command with subcommands, the page of
/// the command itself) or its completion script for `kind` to `out`.
pub fn generate(cmd: Command, kind: Generate, out: &mut dyn Write) -> io::Result<()> {
    let shell = match kind {
        Generate::Man => {
            let cmd = prepare(cmd);
            let program = Program::of(&cmd);
            return man_page(cmd, &program, out);
        }
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
    };
    let mut cmd = cmd;
    let name = cmd.get_name().to_string();
    cmd.set_bin_name(name);
    cmd.build();
    // Into memory first: the generators panic on a failed write (a reader
    // that went away, `--generate bash | head -1`) instead of returning it.
    let mut script = Vec::new();
    shell.try_generate(&cmd, &mut script)?;
    if shell == Shell::Bash {
        script = bash_subcommand_states(&cmd, script);
    }
    out.write_all(&script)?;
    out.flush()
}

/// Works around clap_complete's bash script for a hyphenated program name
/// (clap-rs/clap#6421, open for clap_complete 4.6.12): the loop that finds
/// the subcommand names the state `echo__bench__subcmd__stream`, but the
/// arms that list each subcommand's options spell it
/// `echo__subcmd__bench__subcmd__stream`, so `echo-bench stream --<TAB>`
/// offered nothing. Spelling the arms as the loop does mends it; once the
/// upstream fix is released there is nothing left to replace.
fn bash_subcommand_states(cmd: &Command, script: Vec<u8>) -> Vec<u8> {
    const SEP: &str = "__subcmd__";
    let name = cmd.get_name();
    if !name.contains('-') {
        return script;
    }
    let text = match String::from_utf8(script) {
        Ok(text) => text,
        // clap_complete writes UTF-8; were it not to, leave its script be.
        Err(e) => return e.into_bytes(),
    };
    let wrong = format!("{}{SEP}", name.replace('-', SEP));
    let right = format!("{}{SEP}", name.replace('-', "__"));
    text.replace(&wrong, &right).into_bytes()
}

/// Writes a man page for `cmd` and one for each of its subcommands, at any
/// depth, into `dir` (made if missing), as `NAME.1` and `NAME-SUB.1`;
/// returns the paths written, the command's own page first.
pub fn man_pages_to(cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let cmd = prepare(cmd);
    write_pages(&cmd, &Program::of(&cmd), dir, &mut written)?;
    Ok(written)
}

/// [`man_pages_to`] for one prepared command and, depth first, its
/// subcommands.
fn write_pages(
    cmd: &Command,
    program: &Program,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    man_page(cmd.clone(), program, &mut page)?;
    std::fs::write(&path, page)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, program, dir, written)?;
    }
    Ok(())
}

/// The command as its pages show it: built, so that each subcommand knows
/// its full name (`echo-bench-pingpong`), and without clap's `help`
/// subcommand, which has no page of its own.
fn prepare(cmd: Command) -> Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// What every page of a program says of the program, a subcommand's page
/// too (whose command has no version of its own, nor a `--version`).
struct Program {
    /// The footer's source: `echo-bench 0.1.0`.
    source: String,
    /// For the VERSION section.
    version: Option<String>,
}

impl Program {
    fn of(cmd: &Command) -> Program {
        let version = cmd.get_version().map(str::to_string);
        let source = match &version {
            Some(version) => format!("{} {version}", cmd.get_name()),
            None => cmd.get_name().to_string(),
        };
        Program { source, version }
    }
}

/// One of clap_mangen's sections, rendered.
type Section = fn(&Man, &mut dyn Write) -> io::Result<()>;

/// One page: clap_mangen's sections, with [`SECTIONS`] taken out of the
/// description and put after OPTIONS and SUBCOMMANDS.
fn man_page(cmd: Command, program: &Program, out: &mut dyn Write) -> io::Result<()> {
    let long_help = cmd
        .get_long_about()
        .or(cmd.get_about())
        .map(|s| s.to_string());
    let (description, sections) = split_sections(long_help.as_deref().unwrap_or_default());
    let has_options = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subcommands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let man = Man::new(if sections.is_empty() {
        cmd
    } else {
        cmd.long_about(description)
    })
    .source(&program.source);

    let mut parts: Vec<Section> = vec![
        Man::render_title,
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
    ];
    if has_options {
        parts.push(Man::render_options_section);
    }
    if has_subcommands {
        parts.push(Man::render_subcommands_section);
    }
    let mut page = Page::default();
    for part in parts {
        page.add(|w| part(&man, w))?;
    }
    let version = program
        .version
        .iter()
        .map(|v| ("VERSION", vec![v.as_str()]));
    for (heading, paragraphs) in sections.into_iter().chain(version) {
        let mut roff = Roff::new();
        roff.control("SH", [heading]);
        for (i, paragraph) in paragraphs.iter().enumerate() {
            if i > 0 {
                roff.control("PP", []);
            }
            roff.text([roman(*paragraph)]);
        }
        page.add(|w| roff.to_writer(w))?;
    }
    out.write_all(&page.roff)?;
    out.flush()
}

/// A page put together from separately rendered sections. Each rendering
/// opens with the same few lines that define the apostrophe string (`Aq`);
/// the page keeps the first copy, before `.TH`, and drops the rest.
#[derive(Default)]
struct Page {
    roff: Vec<u8>,
    preamble: Option<Vec<u8>>,
}

impl Page {
    fn add(&mut self, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        let mut part = Vec::new();
        render(&mut part)?;
        let body = match &self.preamble {
            Some(preamble) => part.strip_prefix(preamble.as_slice()).unwrap_or(&part),
            None => {
                let title = part.windows(4).position(|w| w == b".TH ").unwrap_or(0);
                self.preamble = Some(part[..title].to_vec());
                &part
            }
        };
        self.roff.extend_from_slice(body);
        Ok(())
    }
}

/// Splits a long help into the description (the paragraphs before the
/// first [`SECTIONS`] heading) and the sections, each a man heading and
/// its paragraphs, in the order the help gives them.
fn split_sections(long_help: &str) -> (String, Vec<(&'static str, Vec<&str>)>) {
    let mut description = Vec::new();
    let mut sections: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for paragraph in long_help.split("\n\n").map(str::trim) {
        let opens = SECTIONS.iter().find_map(|&(opening, heading)| {
            let rest = paragraph.strip_prefix(opening)?;
            Some((heading, rest.trim_start()))
        });
        match (opens, sections.last_mut()) {
            (Some((heading, rest)), _) => sections.push((heading, vec![rest])),
            (None, Some((_, paragraphs))) => paragraphs.push(paragraph),
            (None, None) => description.push(paragraph),
        }
    }
    (description.join("\n\n"), sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn tool() -> Command {
        Command::new("tool")
            .version("1.2.3")
            .about("Does one thing.")
            .long_about(
                "Does one thing.\n\nAt length.\n\n\
                 Signals. SIGTERM: stop.\n\nSIGHUP: log.\n\n\
                 Exit status: 0 if fine.",
            )
            .arg(Arg::new("fast").long("fast").action(ArgAction::SetTrue))
            .subcommand(
                Command::new("run")
                    .about("Runs it.")
                    .arg(Arg::new("n").long("count")),
            )
    }

    fn page(cmd: Command) -> String {
        let mut out = Vec::new();
        generate(cmd, Generate::Man, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Paragraphs from a heading on leave DESCRIPTION for sections of
    /// their own, in order, each to the next heading.
    #[test]
    fn headed_paragraphs_become_sections() {
        let (description, sections) = split_sections(
            "One.\n\nTwo.\n\nSignals. SIGTERM: stop.\n\nSIGHUP: log.\n\nExit status: 0 if fine.",
        );
        assert_eq!(description, "One.\n\nTwo.");
        assert_eq!(
            sections,
            [
                ("SIGNALS", vec!["SIGTERM: stop.", "SIGHUP: log."]),
                ("EXIT STATUS", vec!["0 if fine."]),
            ]
        );
        assert_eq!(split_sections("Only this."), ("Only this.".into(), vec![]));
    }

    /// The page has one title and one apostrophe preamble, the sections in
    /// man's order, and the signals outside DESCRIPTION.
    #[test]
    fn a_page_has_its_sections_in_order_once() {
        let page = page(tool());
        let headings: Vec<&str> = page.lines().filter(|l| l.starts_with(".SH ")).collect();
        assert_eq!(
            headings,
            [
                ".SH NAME",
                ".SH SYNOPSIS",
                ".SH DESCRIPTION",
                ".SH OPTIONS",
                ".SH SUBCOMMANDS",
                ".SH SIGNALS",
                ".SH \"EXIT STATUS\"",
                ".SH VERSION",
            ],
            "{page}"
        );
        assert_eq!(page.matches(".TH ").count(), 1, "{page}");
        assert_eq!(
            page.matches(".ds Aq").count(),
            2,
            "one .ie/.el pair:\n{page}"
        );
        let description =
            &page[page.find(".SH DESCRIPTION").unwrap()..page.find(".SH OPTIONS").unwrap()];
        assert!(description.contains("At length."), "{page}");
        assert!(!description.contains("SIGTERM"), "{page}");
        assert!(
            !page.contains("tool\\-help("),
            "no page for `help`:\n{page}"
        );
    }

    /// One page per command, subcommands named git-style.
    #[test]
    fn each_subcommand_has_its_own_page() {
        let dir = std::env::temp_dir().join(format!("mio-echo-cli-pages-{}", std::process::id()));
        let written = man_pages_to(tool(), &dir).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["tool.1", "tool-run.1"]);
        let run = std::fs::read_to_string(&written[1]).unwrap();
        assert!(run.contains(".TH tool-run 1  \"tool 1.2.3\""), "{run}");
        assert!(run.contains(".SH VERSION"), "{run}");
        assert!(run.contains("\\-\\-count"), "{run}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// bash completes a subcommand's options though the program's name has
    /// a hyphen: each state the loop reaches has its arm.
    #[test]
    fn bash_reaches_the_options_of_a_subcommand_of_a_hyphenated_program() {
        let cmd = Command::new("my-tool")
            .subcommand(Command::new("run").arg(Arg::new("n").long("count")));
        let mut out = Vec::new();
        generate(cmd, Generate::Bash, &mut out).unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("cmd=\"my__tool__subcmd__run\""), "{script}");
        let arm = script.find("\n        my__tool__subcmd__run)\n");
        let options = arm.map(|at| &script[at..]).unwrap_or_default();
        assert!(
            options.contains("--count"),
            "no arm for the state:\n{script}"
        );
    }

    /// A reader that goes away is an error returned, not a panic.
    #[test]
    fn a_closed_output_is_an_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        for kind in Generate::value_variants() {
            assert!(generate(tool(), *kind, &mut Closed).is_err(), "{kind:?}");
        }
    }
}
