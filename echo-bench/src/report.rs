//! What a run found: failures by kind, round-trip latencies, and the one
//! `result` line a script reads.
//!
//! Every mode's report prints a human summary (its `Display`) and then one
//! line of `key=value` pairs, always starting with `result mode=...`. The
//! keys of each mode are listed on its report type; its latency keys follow
//! `--percentiles` and are named here, by [`Latency::add_to`] and
//! [`Latency::add_prefixed_to`], for every mode alike. Values never contain
//! spaces. Every line ends with `errors=` (the total) and one
//! count per [`Failure`] kind, so a script can tell a reset from a mismatch.
//!
//! Read next: [`super::pingpong`], the mode that uses all of this.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::pattern::Mismatch;
use mio_echo_net::describe;

/// The kinds of failure a run counts, one per connection that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server refused the connection.
    Refused,
    /// The connection did not open within `--timeout`.
    ConnectTimeout,
    /// The server reset the connection (or it broke: `EPIPE`, `ECONNABORTED`).
    Reset,
    /// The server closed the connection before echoing everything.
    EarlyClose,
    /// An echoed byte differed from the one sent, or the server sent bytes
    /// nobody sent it.
    Mismatch,
    /// The server left the connection without an echo for `--timeout`, or
    /// the run's deadline passed with the connection unfinished.
    Timeout,
    /// Any other error; the details name it.
    Other,
}

impl Failure {
    /// Every kind, in the order the result line lists them.
    pub const ALL: [Failure; 7] = [
        Failure::Refused,
        Failure::ConnectTimeout,
        Failure::Reset,
        Failure::EarlyClose,
        Failure::Mismatch,
        Failure::Timeout,
        Failure::Other,
    ];

    /// The kind's key in the result line.
    pub fn key(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::ConnectTimeout => "connect_timeouts",
            Failure::Reset => "resets",
            Failure::EarlyClose => "early_closes",
            Failure::Mismatch => "mismatches",
            Failure::Timeout => "timeouts",
            Failure::Other => "other_errors",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What went wrong with one connection, in enough detail for a person.
#[derive(Debug)]
pub enum Fault {
    /// Opening the connection failed.
    Connect(io::Error),
    /// The connection did not open before the connect deadline.
    ConnectTimeout(Duration),
    /// A read, write or shutdown failed.
    Io(io::Error),
    /// The server sent EOF while bytes were still owed.
    EarlyClose {
        /// Bytes echoed before the EOF.
        received: u64,
        /// Bytes the server had been sent by then.
        sent: u64,
    },
    /// An echoed byte differed from the one sent.
    Mismatch(Mismatch),
    /// The server sent more bytes than it was sent.
    Extra {
        /// Bytes echoed when the surplus arrived (all of them correct).
        received: u64,
        /// Bytes the server had been sent.
        sent: u64,
    },
    /// No echo for a whole timeout while bytes were owed.
    Silent {
        /// How long nothing came.
        waited: Duration,
        /// Bytes echoed so far.
        received: u64,
        /// Bytes sent so far.
        sent: u64,
    },
    /// Everything came back after our half-close, but the server's EOF did
    /// not, for a whole timeout.
    NoEof {
        /// How long nothing came.
        waited: Duration,
    },
    /// An echoed datagram that is not one sent (UDP): its length or its
    /// bytes differ, it came back twice, or its sequence number was never
    /// sent.
    Datagram {
        /// The sequence number its header names, if it has one.
        seq: Option<u64>,
        /// What is wrong with it.
        what: String,
    },
    /// The run's deadline passed before the connection finished.
    Unfinished {
        /// Bytes echoed so far.
        received: u64,
        /// Bytes the connection had to get back.
        expected: u64,
    },
}

impl Fault {
    /// The kind this fault is counted as.
    pub fn kind(&self) -> Failure {
        match self {
            Fault::Connect(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => Failure::Refused,
                io::ErrorKind::TimedOut => Failure::ConnectTimeout,
                _ => Failure::Other,
            },
            Fault::ConnectTimeout(_) => Failure::ConnectTimeout,
            Fault::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Failure::Reset,
                io::ErrorKind::TimedOut => Failure::Timeout,
                _ => Failure::Other,
            },
            Fault::EarlyClose { .. } => Failure::EarlyClose,
            Fault::Mismatch(_) | Fault::Extra { .. } | Fault::Datagram { .. } => Failure::Mismatch,
            Fault::Silent { .. } | Fault::Unfinished { .. } | Fault::NoEof { .. } => {
                Failure::Timeout
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Connect(e) => write!(f, "connect: {}", describe(e)),
            Fault::ConnectTimeout(t) => {
                write!(f, "connect: no answer within {:.1}s", t.as_secs_f64())
            }
            Fault::Io(e) => f.write_str(&describe(e)),
            Fault::EarlyClose { received, sent } => write!(
                f,
                "the server closed the connection after echoing {received} of {sent} bytes"
            ),
            Fault::Mismatch(m) => m.fmt(f),
            Fault::Extra { received, sent } => write!(
                f,
                "the server sent more than it was sent: {sent} bytes sent, more than \
                 {received} came back"
            ),
            // Everything came back: what is missing is the server's EOF.
            Fault::Silent {
                waited,
                received,
                sent,
            } if received == sent && *sent > 0 => write!(
                f,
                "all {sent} bytes came back, then nothing (no EOF) for {:.1}s",
                waited.as_secs_f64()
            ),
            Fault::Silent {
                waited,
                received,
                sent,
            } => write!(
                f,
                "no echo for {:.1}s ({received} of {sent} bytes back)",
                waited.as_secs_f64()
            ),
            Fault::NoEof { waited } => write!(
                f,
                "no EOF from the server for {:.1}s after the whole echo and our half-close",
                waited.as_secs_f64()
            ),
            Fault::Datagram {
                seq: Some(seq),
                what,
            } => write!(f, "datagram {seq}: {what}"),
            Fault::Datagram { seq: None, what } => write!(f, "a datagram: {what}"),
            Fault::Unfinished { received, expected } => write!(
                f,
                "unfinished at the deadline ({received} of {expected} bytes back)"
            ),
        }
    }
}

/// How many faults of each detail a report keeps: enough to see a pattern,
/// few enough that 20,000 failed connections do not flood the terminal.
const DETAILS: usize = 5;

/// Failed connections, counted by kind, with the first few described.
#[derive(Debug, Clone, Default)]
pub struct Failures {
    counts: [u64; Failure::ALL.len()],
    details: Vec<String>,
}

impl Failures {
    /// Counts connection number `connection`'s fault.
    pub fn record(&mut self, connection: usize, fault: &Fault) {
        self.record_for("connection", connection, fault);
    }

    /// Counts the fault of `what` number `number` ("socket 3" in `udp`).
    pub fn record_for(&mut self, what: &str, number: usize, fault: &Fault) {
        self.counts[fault.kind().index()] += 1;
        log::debug!("{what} {number}: {fault}");
        if self.details.len() < DETAILS {
            self.details.push(format!("{what} {number}: {fault}"));
        }
    }

    /// Every failure of every kind.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The failures of one kind.
    pub fn count(&self, kind: Failure) -> u64 {
        self.counts[kind.index()]
    }

    /// The first few failures, described, in the order they happened.
    pub fn details(&self) -> &[String] {
        &self.details
    }

    /// Adds another loop's failures to these.
    pub fn merge(&mut self, other: &Failures) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        let room = DETAILS.saturating_sub(self.details.len());
        self.details
            .extend(other.details.iter().take(room).cloned());
    }

    /// Adds `errors=` and one count per kind to a result line.
    pub fn add_to(&self, line: &mut ResultLine) {
        line.push("errors", self.total());
        for kind in Failure::ALL {
            line.push(kind.key(), self.count(kind));
        }
    }

    /// A one-line summary for the `error:` line: the total, the kinds, and
    /// the first failure.
    pub fn summary(&self, connections: usize) -> String {
        self.summary_of(&count(connections as u64, "connection"))
    }

    /// Like [`Failures::summary`], out of `whole` ("2000 datagrams").
    pub fn summary_of(&self, whole: &str) -> String {
        let kinds: Vec<String> = Failure::ALL
            .iter()
            .filter(|k| self.count(**k) > 0)
            .map(|k| format!("{} {}", self.count(*k), k.key().replace('_', " ")))
            .collect();
        let mut text = format!("{} of {whole} failed ({})", self.total(), kinds.join(", "));
        if let Some(first) = self.details.first() {
            text.push_str("; first: ");
            text.push_str(first);
        }
        text
    }
}

impl fmt::Display for Failures {
    /// `  errors     none`, or the counts by kind and the first few details.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total() == 0 {
            return writeln!(f, "  errors       none");
        }
        let kinds: Vec<String> = Failure::ALL
            .iter()
            .filter(|k| self.count(**k) > 0)
            .map(|k| format!("{}={}", k.key(), self.count(*k)))
            .collect();
        writeln!(f, "  errors       {} ({})", self.total(), kinds.join(" "))?;
        for detail in &self.details {
            writeln!(f, "    {detail}")?;
        }
        let unshown = self.total().saturating_sub(self.details.len() as u64);
        if unshown > 0 {
            writeln!(f, "    ... and {unshown} more")?;
        }
        Ok(())
    }
}

/// Round-trip times, in nanoseconds, without storing each one.
///
/// An HDR histogram keeps three significant digits over its whole range in
/// a fixed table allocated once, so recording never allocates.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

/// The longest round trip the histogram tells apart (longer ones count as
/// this): a minute, far beyond any `--timeout` that makes sense.
const LATENCY_MAX_NS: u64 = 60_000_000_000;

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram from 1 ns to a minute, three significant digits.
    pub fn new() -> Latency {
        Latency {
            hist: Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// Records one round trip.
    pub fn record(&mut self, rtt: Duration) {
        let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
    }

    /// How many round trips were recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The round trip at `quantile` (0.5 for the median), in microseconds;
    /// 0 when nothing was recorded.
    pub fn quantile_us(&self, quantile: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The longest round trip, in microseconds.
    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }

    /// Adds another loop's round trips to these.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// `p50 12.3us  p99 45.6us  max 78.9us`: each of `percentiles`, then
    /// the longest, for a summary line.
    pub fn summary(&self, percentiles: &Percentiles) -> String {
        let mut text = String::new();
        for &p in percentiles.list() {
            text.push_str(&format!("p{p} {:.1}us  ", self.quantile_us(p / 100.0)));
        }
        text.push_str(&format!("max {:.1}us", self.max_us()));
        text
    }

    /// Adds `pNN_us=` for each of `percentiles` (`p99_9_us` for 99.9), then
    /// `max_us=`, to a result line.
    pub fn add_to(&self, line: &mut ResultLine, percentiles: &Percentiles) {
        self.add_prefixed_to(line, "", percentiles);
    }

    /// Like [`Latency::add_to`], for a report that times several things:
    /// each key starts with `prefix` and `_` (`connect_p99_9_us=`,
    /// `connect_max_us=`); an empty prefix adds the plain keys.
    pub fn add_prefixed_to(&self, line: &mut ResultLine, prefix: &str, percentiles: &Percentiles) {
        for &p in percentiles.list() {
            line.push(
                prefixed(prefix, Percentiles::key(p)),
                format!("{:.1}", self.quantile_us(p / 100.0)),
            );
        }
        line.push(
            prefixed(prefix, "max_us".to_string()),
            format!("{:.1}", self.max_us()),
        );
    }
}

/// `key`, or `{prefix}_{key}` when there is a prefix.
fn prefixed(prefix: &str, key: String) -> String {
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}_{key}")
    }
}

/// The latency percentiles a report shows (`--percentiles 50,90,99,99.9`):
/// each more than 0 and at most 100, in increasing order, none twice.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles(Vec<f64>);

impl Default for Percentiles {
    /// p50, p99 and p99.9.
    fn default() -> Self {
        Percentiles(Percentiles::DEFAULT.to_vec())
    }
}

impl Percentiles {
    /// What a report shows unless told otherwise.
    pub const DEFAULT: [f64; 3] = [50.0, 99.0, 99.9];

    /// The list, sorted and without repeats; an error names the first
    /// value out of range.
    pub fn new(list: &[f64]) -> Result<Percentiles, String> {
        if list.is_empty() {
            return Err("expected at least one percentile".into());
        }
        if let Some(p) = list.iter().find(|p| !(**p > 0.0 && **p <= 100.0)) {
            return Err(format!(
                "percentile {p} is out of range: each must be more than 0 and at most 100"
            ));
        }
        let mut list = list.to_vec();
        list.sort_by(f64::total_cmp);
        list.dedup();
        Ok(Percentiles(list))
    }

    /// Parses a comma-separated list such as `50,90,99,99.9`.
    pub fn parse(text: &str) -> Result<Percentiles, String> {
        let list = text
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("expected percentiles such as 50,99,99.9, got {p:?}"))
            })
            .collect::<Result<Vec<f64>, String>>()?;
        Percentiles::new(&list)
    }

    /// The percentiles, in increasing order.
    pub fn list(&self) -> &[f64] {
        &self.0
    }

    /// The result-line key of percentile `p`: `p50_us`, `p99_9_us`.
    pub fn key(p: f64) -> String {
        format!("p{}_us", p.to_string().replace('.', "_"))
    }
}

/// The machine-readable last line of a run: `result key=value ...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultLine {
    fields: Vec<(Cow<'static, str>, String)>,
}

impl ResultLine {
    /// An empty line; `push` adds pairs in the order they print.
    pub fn new() -> ResultLine {
        ResultLine::default()
    }

    /// Adds `key=value`. Spaces in the value become `_`, so the line always
    /// splits on spaces.
    pub fn push(&mut self, key: impl Into<Cow<'static, str>>, value: impl fmt::Display) {
        self.fields
            .push((key.into(), value.to_string().replace(' ', "_")));
    }

    /// The value of `key`, if the line has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in the order they print (for [`super::json`]).
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }
}

impl fmt::Display for ResultLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("result")?;
        for (key, value) in &self.fields {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

/// What every mode's report offers the binary: a human summary (`Display`),
/// the result line, and the failures that decide the exit status.
pub trait Outcome: fmt::Display {
    /// The mode's name, the result line's `mode=`.
    fn mode(&self) -> &'static str;
    /// The server the run loaded, the result line's `addr=`.
    fn addr(&self) -> SocketAddr;
    /// Adds the mode's own pairs, in order (the keys its report type lists).
    fn add_fields(&self, line: &mut ResultLine);
    /// The connections that failed, by kind.
    fn failures(&self) -> &Failures;
    /// How many connections the run used (or tried to open).
    fn connections(&self) -> usize;

    /// The `error:` line's text when something failed: the failures out of
    /// the connections (a mode that counts in other units says so).
    fn failure_summary(&self) -> String {
        self.failures().summary(self.connections())
    }

    /// The machine-readable line, printed last: `mode`, `addr`, the mode's
    /// own pairs, then `errors` and one count per [`Failure`] kind.
    fn result_line(&self) -> ResultLine {
        let mut line = ResultLine::new();
        line.push("mode", self.mode());
        line.push("addr", self.addr());
        self.add_fields(&mut line);
        self.failures().add_to(&mut line);
        line
    }
}

/// `n` and the noun, plural unless `n` is 1: "1 connection", "2 connections".
pub(crate) fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// `n` bytes per second as MiB/s.
pub(crate) fn mib_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    per_sec(bytes, elapsed) / (1024.0 * 1024.0)
}

/// A rate as people read one: whole numbers from 100 up, else three
/// significant digits or so (`0.400`, `12.50`), so that a low `--rate`
/// does not print as 0.
pub(crate) fn rate(per_sec: f64) -> String {
    if per_sec >= 100.0 {
        format!("{per_sec:.0}")
    } else if per_sec >= 10.0 {
        format!("{per_sec:.1}")
    } else {
        format!("{per_sec:.3}")
    }
}

/// `n` per second over `elapsed` (0 for an empty interval).
pub(crate) fn per_sec(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The result line is `result` then the pairs, in order, spaces replaced.
    #[test]
    fn result_line_is_key_value_pairs() {
        let mut line = ResultLine::new();
        line.push("mode", "pingpong");
        line.push("note", "a b");
        line.push("n", 3);
        assert_eq!(line.to_string(), "result mode=pingpong note=a_b n=3");
        assert_eq!(line.get("n"), Some("3"));
    }

    /// Every kind has a count on the line, zero or not.
    #[test]
    fn failures_list_every_kind() {
        let mut failures = Failures::default();
        failures.record(
            3,
            &Fault::Io(io::Error::from(io::ErrorKind::ConnectionReset)),
        );
        let mut line = ResultLine::new();
        failures.add_to(&mut line);
        assert_eq!(
            line.to_string(),
            "result errors=1 refused=0 connect_timeouts=0 resets=1 early_closes=0 \
             mismatches=0 timeouts=0 other_errors=0"
        );
        assert_eq!(
            failures.details(),
            ["connection 3: connection reset by peer"]
        );
    }

    /// Merging adds counts and keeps at most a few details.
    #[test]
    fn merge_adds_and_bounds_details() {
        let mut a = Failures::default();
        let mut b = Failures::default();
        for i in 0..4 {
            a.record(
                i,
                &Fault::EarlyClose {
                    received: 0,
                    sent: 1,
                },
            );
            b.record(
                i + 10,
                &Fault::EarlyClose {
                    received: 0,
                    sent: 1,
                },
            );
        }
        a.merge(&b);
        assert_eq!(a.count(Failure::EarlyClose), 8);
        assert_eq!(a.details().len(), DETAILS);
    }

    /// A percentile list is sorted, without repeats, each in (0, 100]; its
    /// keys spell the decimal point as `_`.
    #[test]
    fn percentiles_are_checked_sorted_and_keyed() {
        let p = Percentiles::parse("99.9, 50,99,50").unwrap();
        assert_eq!(p.list(), [50.0, 99.0, 99.9]);
        assert_eq!(p, Percentiles::default());
        let keys: Vec<String> = p.list().iter().map(|&p| Percentiles::key(p)).collect();
        assert_eq!(keys, ["p50_us", "p99_us", "p99_9_us"]);
        assert_eq!(Percentiles::parse("100").unwrap().list(), [100.0]);
        for bad in ["0", "-1", "100.1", "NaN", "", "50,,99", "p99"] {
            assert!(Percentiles::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// The summary and the result line show the percentiles asked for.
    #[test]
    fn latency_shows_the_percentiles_asked_for() {
        let mut l = Latency::new();
        for us in 1..=1000 {
            l.record(Duration::from_micros(us));
        }
        let p = Percentiles::parse("90,99.99").unwrap();
        let mut line = ResultLine::new();
        l.add_to(&mut line, &p);
        let p90: f64 = line.get("p90_us").unwrap().parse().unwrap();
        assert!((899.0..=901.0).contains(&p90), "{line}");
        assert!(line.get("p99_99_us").is_some(), "{line}");
        assert!(line.get("max_us").is_some(), "{line}");
        assert!(l.summary(&p).starts_with("p90 9"), "{}", l.summary(&p));
    }

    /// With a prefix, every key of the line starts with it, built by the
    /// same rule as the plain keys.
    #[test]
    fn latency_keys_take_a_prefix() {
        let mut l = Latency::new();
        l.record(Duration::from_micros(5));
        let p = Percentiles::parse("50,99.9").unwrap();
        let mut line = ResultLine::new();
        l.add_prefixed_to(&mut line, "connect", &p);
        let keys: Vec<&str> = line.fields().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["connect_p50_us", "connect_p99_9_us", "connect_max_us"]
        );
        let mut plain = ResultLine::new();
        l.add_prefixed_to(&mut plain, "", &p);
        let keys: Vec<&str> = plain.fields().map(|(k, _)| k).collect();
        assert_eq!(keys, ["p50_us", "p99_9_us", "max_us"]);
    }

    /// Percentiles come back in microseconds.
    #[test]
    fn latency_reports_microseconds() {
        let mut l = Latency::new();
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.count(), 100);
        let p50 = l.quantile_us(0.5);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((99.0..=101.0).contains(&l.max_us()));
    }
}
