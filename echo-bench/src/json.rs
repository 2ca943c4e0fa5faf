//! `--json`: a run's report as one JSON object, for programs rather than
//! people.
//!
//! The object is built from what every mode already reports, so a mode
//! gets it by implementing [`Outcome`] and nothing more: every pair of its
//! `result` line ([`Outcome::result_line`]), in the same order and under
//! the same keys, then the failures described (`failure_details`, the first
//! few, as the summary shows them) and `error`, the `error:` line's text,
//! or `null` when every byte came back. A value that reads as a JSON number
//! is one; any other (the mode, the address) is a string.
//!
//! ```text
//! {"mode":"stream","addr":"127.0.0.1:7007","connections":1,...,"errors":0,
//!  "refused":0,...,"other_errors":0,"failure_details":[],"error":null}
//! ```
//!
//! When the load cannot start there are no figures: the object is
//! `{"error":"..."}` alone, with the same text as the `error:` line.
//!
//! Hand-written rather than serde's: the object is flat, its keys are
//! fixed words, and the only care it needs is escaping strings, which
//! [`escape_into`] does by RFC 8259's rules.
//!
//! Read next: [`super::report`], where the result line comes from.

use std::fmt::Write;

use super::report::Outcome;
use super::LoadError;

/// A flat JSON object, written as it is built.
#[derive(Debug)]
struct Object {
    text: String,
}

impl Object {
    fn new() -> Object {
        Object {
            text: String::from("{"),
        }
    }

    /// Starts the pair `"key":`.
    fn key(&mut self, key: &str) -> &mut String {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        escape_into(&mut self.text, key);
        self.text.push(':');
        &mut self.text
    }

    /// `"key":value`, as a number if `value` is one, a boolean if it is
    /// `true` or `false` (such as `kept_up`), else as a string.
    fn value(&mut self, key: &str, value: &str) {
        let bare = is_number(value) || value == "true" || value == "false";
        let out = self.key(key);
        if bare {
            out.push_str(value);
        } else {
            escape_into(out, value);
        }
    }

    /// `"key":"text"`, or `"key":null`.
    fn string(&mut self, key: &str, text: Option<&str>) {
        let out = self.key(key);
        match text {
            Some(text) => escape_into(out, text),
            None => out.push_str("null"),
        }
    }

    /// `"key":["...", ...]`.
    fn strings<'a>(&mut self, key: &str, items: impl IntoIterator<Item = &'a str>) {
        let out = self.key(key);
        out.push('[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            escape_into(out, item);
        }
        out.push(']');
    }

    fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// The report of a run that ran: every pair of its result line, the
/// failures described, and `error` (see the module docs).
pub fn report(report: &(impl Outcome + ?Sized)) -> String {
    let mut object = Object::new();
    for (key, value) in report.result_line().fields() {
        object.value(key, value);
    }
    let failures = report.failures();
    object.strings(
        "failure_details",
        failures.details().iter().map(String::as_str),
    );
    let error = (failures.total() > 0).then(|| report.failure_summary());
    object.string("error", error.as_deref());
    object.finish()
}

/// The object for a run that could not start: `{"error":"..."}`, the text
/// of the `error:` line.
pub fn load_error(error: &LoadError) -> String {
    let mut object = Object::new();
    object.string("error", Some(&error.to_string()));
    object.finish()
}

/// Appends `text` to `out` as a JSON string, quotes included: `"` and `\`
/// escaped, control characters as `\n`, `\t`, ... or `\u00XX`; everything
/// else, non-ASCII included, as it is (the output is UTF-8).
pub fn escape_into(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < ' ' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether `s` is a number by JSON's grammar: `-? (0 | [1-9][0-9]*)
/// (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. Not Rust's float parser, which
/// also takes `inf`, `NaN` and `+1`, none of them JSON.
fn is_number(s: &str) -> bool {
    let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = s.strip_prefix('-').unwrap_or(s);
    let int = digits(rest);
    if int == 0 || (int > 1 && rest.starts_with('0')) {
        return false;
    }
    let mut rest = &rest[int..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = digits(fraction);
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    if let Some(exponent) = rest.strip_prefix(['e', 'E']) {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        let n = digits(exponent);
        if n == 0 {
            return false;
        }
        rest = &exponent[n..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Failures, Fault, ResultLine};
    use std::fmt;
    use std::io;
    use std::net::SocketAddr;

    /// A report with a result line and failures of the test's choosing.
    struct Fake {
        failures: Failures,
    }

    impl fmt::Display for Fake {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("fake\n")
        }
    }

    impl Outcome for Fake {
        fn mode(&self) -> &'static str {
            "fake"
        }
        fn addr(&self) -> SocketAddr {
            "[::1]:7007".parse().unwrap()
        }
        fn add_fields(&self, line: &mut ResultLine) {
            line.push("connections", 3);
            line.push("secs", "0.250");
            line.push("mib_per_sec", format!("{:.2}", f64::NAN));
            line.push("p50_us", "12.5");
        }
        fn failures(&self) -> &Failures {
            &self.failures
        }
        fn connections(&self) -> usize {
            3
        }
    }

    fn parse(text: &str) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("not one JSON object: {other:?}\n{text}"),
        }
    }

    /// Every pair of the result line is in the object, in order, under the
    /// same key; numbers as numbers equal to the line's, the rest strings.
    #[test]
    fn the_object_holds_the_result_line() {
        let fake = Fake {
            failures: Failures::default(),
        };
        let text = report(&fake);
        let object = parse(&text);
        let line = fake.result_line();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = line.fields().map(|(k, _)| k).collect();
        expected.extend(["failure_details", "error"]);
        // The map may sort its keys; the text keeps the line's order.
        let mut sorted = expected.clone();
        sorted.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys, sorted);
        let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
        assert!(expected.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
        for (key, value) in line.fields() {
            match value.parse::<f64>() {
                Ok(n) if n.is_finite() => assert_eq!(object[key].as_f64(), Some(n), "{key}"),
                _ => assert_eq!(object[key].as_str(), Some(value), "{key}"),
            }
        }
        assert_eq!(object["addr"], "[::1]:7007");
        assert_eq!(object["mib_per_sec"], "NaN");
        assert_eq!(object["errors"], 0);
        assert_eq!(object["failure_details"], serde_json::json!([]));
        assert!(object["error"].is_null());
    }

    /// A failure's details come back exactly, whatever they hold: quotes,
    /// backslashes, every control character, non-ASCII.
    #[test]
    fn details_are_escaped_to_round_trip() {
        let nasty: String = "say \"hi\" C:\\path\\ é ✓ \u{7f}\u{2028}"
            .chars()
            .chain((0..0x20u8).map(char::from))
            .collect();
        let mut failures = Failures::default();
        failures.record(7, &Fault::Io(io::Error::other(nasty.clone())));
        let fake = Fake { failures };
        let text = report(&fake);
        assert!(
            !text.chars().any(|c| c < ' '),
            "raw control character: {text:?}"
        );
        let object = parse(&text);
        let detail = object["failure_details"][0].as_str().unwrap();
        assert_eq!(detail, format!("connection 7: {nasty}"));
        assert_eq!(object["errors"], 1);
        assert_eq!(object["other_errors"], 1);
        assert_eq!(
            object["error"].as_str(),
            Some(fake.failures.summary(3).as_str())
        );
    }

    /// The escaper's output for the characters with short forms.
    #[test]
    fn escapes_use_the_short_forms() {
        let mut out = String::new();
        escape_into(&mut out, "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{1}i\u{1f}");
        assert_eq!(out, r#""a\"b\\c\nd\re\tf\bg\fh\u0001i\u001f""#);
    }

    /// Only JSON's own number syntax is a number.
    #[test]
    fn numbers_follow_json_grammar() {
        for yes in ["0", "7", "-3", "12.50", "0.001", "1e9", "2.5E-3", "-0.0"] {
            assert!(is_number(yes), "{yes}");
        }
        for no in [
            "",
            "-",
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "NaN",
            "inf",
            "-inf",
            "0x10",
            "1_000",
            "127.0.0.1:7",
            "1 ",
        ] {
            assert!(!is_number(no), "{no}");
        }
    }

    /// A run that could not start is an object with its error alone.
    #[test]
    fn a_load_error_is_an_object_with_the_error() {
        let e = LoadError::Config("--size must be \"small\"".into());
        let object = parse(&load_error(&e));
        assert_eq!(object.len(), 1);
        assert_eq!(object["error"], "--size must be \"small\"");
    }
}
