//! The annotated `RUST_LOG=trace` transcript in `docs/TRANSCRIPT.md` stays
//! true: this test plays the same session against a real server (connect,
//! echo, a partial write under back-pressure, half-close), captures what
//! the loop logs, and checks that every log line the document shows is one
//! the current code really prints (numbers aside).
//!
//! To write the document afresh from a run:
//!
//! ```sh
//! MIO_ECHO_WRITE_TRANSCRIPT=1 cargo test --test transcript
//! ```

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::{Mutex, OnceLock};
use std::thread;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/TRANSCRIPT.md");

/// Every record the server logs, as `LEVEL message`.
static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("mio_echo")
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{:<5} {}", record.level(), record.args());
            LINES
                .get_or_init(Default::default)
                .lock()
                .unwrap()
                .push(line);
        }
    }
    fn flush(&self) {}
}

fn lines() -> Vec<String> {
    LINES.get_or_init(Default::default).lock().unwrap().clone()
}

fn count() -> usize {
    LINES.get_or_init(Default::default).lock().unwrap().len()
}

/// Waits until a line logged since `from` contains `needle`.
fn wait_for(from: usize, needle: &str) {
    common::wait_until(&format!("a log line containing {needle:?}"), || {
        lines()[from..].iter().any(|l| l.contains(needle))
    });
}

/// One session, in phases: (title, the lines it logged).
fn play() -> Vec<(&'static str, Vec<String>)> {
    log::set_boxed_logger(Box::new(Capture)).expect("one logger per test binary");
    log::set_max_level(log::LevelFilter::Trace);
    let config = mio_echo::Config {
        max_buffer: 16 * 1024,
        ..mio_echo::Config::loopback()
    };
    let server = common::server_with(config);
    let mut phases = Vec::new();
    let mut mark = count();
    let mut phase = |title, mark: &mut usize| {
        let all = lines();
        phases.push((title, all[*mark..].to_vec()));
        *mark = all.len();
    };

    // 1. Connect. A small receive window makes back-pressure quick later.
    let mut client = common::connect_small_window(server.addr(), 4096);
    wait_for(mark, "connected");
    phase("connect", &mut mark);

    // 2. One message out and back: the fast path.
    client.write_all(b"hello\n").unwrap();
    let mut echo = [0u8; 6];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"hello\n");
    wait_for(mark, "wrote 6");
    phase("echo", &mut mark);

    // 3. Send 8 MiB without reading: the kernel's buffers fill, writes come
    //    back partial, the server queues the rest and stops reading at
    //    --max-buffer. Then read it all: writable events drain the queue.
    let data = common::random_bytes(7, 8 << 20);
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let feeder = thread::spawn(move || writer.write_all(&sent));
    wait_for(mark, "stops reading");
    phase("back-pressure", &mut mark);
    let mut back = vec![0u8; data.len()];
    client.read_exact(&mut back).unwrap();
    feeder.join().unwrap().unwrap();
    common::assert_same_bytes(&data, &back, "the pushed-back stream");
    phase("drain", &mut mark);

    // 4. Half-close: the server finishes what it owes, sends FIN, closes.
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    wait_for(mark, "closed (");
    phase("half-close", &mut mark);

    server.stop().unwrap();
    phases
}

/// The log lines quoted in the document's `text` blocks.
fn quoted(doc: &str) -> Vec<&str> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            inside = line == "```text";
            continue;
        }
        let levels = ["TRACE", "DEBUG", "INFO ", "WARN "];
        if inside && levels.iter().any(|l| line.starts_with(l)) {
            out.push(line);
        }
    }
    out
}

/// Every log line docs/TRANSCRIPT.md shows is one the code really prints,
/// and the session shows each phase the document explains.
#[test]
fn the_transcript_shows_what_the_loop_really_logs() {
    let phases = play();
    let all: Vec<&String> = phases.iter().flat_map(|(_, l)| l).collect();
    // The phases the document explains all happened in this run.
    for needle in [
        "connected (token",
        "event readable",
        "read 6, wrote 6",
        "stops reading",
        "wrote ",
        "read EOF",
        "Open => Draining",
        "Draining => Closed",
        "closed (peer closed, all bytes echoed)",
    ] {
        assert!(
            all.iter().any(|l| l.contains(needle)),
            "the session never logged {needle:?}"
        );
    }

    if std::env::var_os("MIO_ECHO_WRITE_TRANSCRIPT").is_some() {
        write_document(&phases);
    }
    let doc = std::fs::read_to_string(DOC).expect("docs/TRANSCRIPT.md");
    let formats = log_formats();
    let quoted = quoted(&doc);
    assert!(quoted.len() > 10, "the document quotes too few lines");
    for line in quoted {
        // Which lines a run prints depends on timing (where a write comes
        // back short), so the check is against what the code can print: the
        // format strings of its log calls.
        let message = line[6..].trim_start();
        assert!(
            formats.iter().any(|f| matches_format(f, message)),
            "docs/TRANSCRIPT.md shows a line the code no longer prints: {line}\n\
             (regenerate with MIO_ECHO_WRITE_TRANSCRIPT=1 cargo test --test transcript)"
        );
    }
}

/// The format strings of every log call in the server's `src/`, found
/// recursively (the binary in `src/bin/` too), so that files can move.
/// Only the server's package: the transcript is the server's log, and the
/// other members' lines never appear in it.
fn log_formats() -> Vec<String> {
    let mut formats = Vec::new();
    let mut sources = Vec::new();
    rust_files(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut sources,
    );
    assert!(!sources.is_empty(), "no sources found under src/");
    for path in sources {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("log::") {
            let rest = &text[i..];
            let Some(open) = rest.find("!(") else {
                continue;
            };
            let after = rest[open + 2..].trim_start();
            if let Some(body) = after.strip_prefix('"') {
                formats.push(string_literal(body));
            }
        }
    }
    formats
}

/// Every `.rs` file under `dir`, in subdirectories too.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a Rust string literal whose opening quote was just read,
/// with `\` line continuations folded as the compiler folds them.
fn string_literal(body: &str) -> String {
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('\n') => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                }
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// Whether `line` could come from `format`: its literal pieces appear in
/// order, the `{...}` holes matching anything.
fn matches_format(format: &str, line: &str) -> bool {
    let mut pieces = Vec::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        pieces.push(&rest[..open]);
        rest = rest[open..].split_once('}').map_or("", |(_, r)| r);
    }
    pieces.push(rest);
    let mut at = 0;
    for (i, piece) in pieces.iter().enumerate() {
        if i == 0 {
            if !line.starts_with(piece) {
                return false;
            }
            at = piece.len();
        } else if i == pieces.len() - 1 {
            return line[at..].ends_with(piece);
        } else {
            match line[at..].find(piece) {
                Some(p) => at += p + piece.len(),
                None => return false,
            }
        }
    }
    at == line.len()
}

/// Rewrites the log blocks of the document from this run, keeping its prose:
/// each `<!-- phase: NAME -->` marker is followed by that phase's lines.
fn write_document(phases: &[(&'static str, Vec<String>)]) {
    let doc = std::fs::read_to_string(DOC).expect("docs/TRANSCRIPT.md");
    let mut out = String::new();
    let mut skipping = false;
    for line in doc.lines() {
        if skipping {
            if line == "```" {
                skipping = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if let Some(name) = line
            .strip_prefix("<!-- phase: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            let lines = &phases.iter().find(|(t, _)| *t == name).expect(name).1;
            out.push_str("```text\n");
            for l in excerpt(lines) {
                out.push_str(&l);
                out.push('\n');
            }
            out.push_str("```\n");
            skipping = true;
        }
    }
    std::fs::write(DOC, out).expect("write docs/TRANSCRIPT.md");
}

/// A phase's lines with long runs of routine ones (whole echoes and the
/// events that carry them) cut to their first two and a count.
fn excerpt(lines: &[String]) -> Vec<String> {
    let routine = |l: &str| {
        l.ends_with("event readable writable") || {
            // "PEER: read N, wrote N" with both numbers equal
            let tail = l.rsplit(": read ").next().unwrap_or("");
            matches!(tail.split_once(", wrote "), Some((a, b)) if a == b)
        }
    };
    let mut out = Vec::new();
    let mut run = 0;
    for l in lines {
        if routine(l) {
            run += 1;
            if run <= 2 {
                out.push(l.clone());
            }
            continue;
        }
        if run > 2 {
            out.push(format!("    ... {} more lines like these ...", run - 2));
        }
        run = 0;
        out.push(l.clone());
    }
    if run > 2 {
        out.push(format!("    ... {} more lines like these ...", run - 2));
    }
    out
}
