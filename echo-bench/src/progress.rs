//! The live progress line: once a second, on standard error, rewritten in
//! place, while a run is under load.
//!
//! ```text
//!   3s  conns 100  echoed 1.23 GiB  330,123 echoes/s  failures 0
//! ```
//!
//! Off unless the binary asks for it ([`show`], when standard error is a
//! terminal), so a library user, a pipe or a log file never sees it. Every
//! TCP mode gets it through the driver (`udp`, with a loop of its own, has
//! none), which keeps what the line needs anyway
//! (live connections, bytes checked, failures) and asks the mode only for
//! its echoes (`Mode::echoes` in `src/driver.rs`; a mode without messages
//! shows MiB/s instead).
//!
//! # What it costs the load
//!
//! Nothing on the hot path. Each loop adds what changed since it last
//! published to a few process-wide relaxed atomics (its `Meter`), at most
//! once per `TICK` (100 ms) and only when the line is shown; the first
//! loop prints the line when a second has passed. No thread of its own: a
//! one-thread run stays single-threaded (see the crate docs for why that
//! matters).
//!
//! The counters are process-wide because the line describes the process:
//! however many loops a run has, they add to the same totals.
//!
//! Read next: [`super::json`], the report for programs.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often, at most, a loop adds its counts to the totals.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// How often the line is rewritten.
const EVERY: Duration = Duration::from_secs(1);

/// Erases from the cursor to the end of the line (ANSI "EL"), so a shorter
/// line leaves nothing of a longer one behind.
const ERASE: &str = "\x1b[K";

/// Whether the binary asked for the line.
static SHOWN: AtomicBool = AtomicBool::new(false);

/// Whether a line is on the terminal, to be cleared.
static PRINTED: AtomicBool = AtomicBool::new(false);

/// What every loop of the process has published.
static TOTALS: Totals = Totals::new();

/// Prints the progress line on standard error during the runs that follow.
/// The binary calls this when standard error is a terminal.
pub fn show() {
    SHOWN.store(true, Relaxed);
}

/// Erases the progress line, if one is on the terminal, so the report
/// that follows starts on a clean line.
pub fn clear() {
    if PRINTED.swap(false, Relaxed) {
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r{ERASE}");
        let _ = err.flush();
    }
}

/// What a loop has counted, or, added up, every loop of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Connections open.
    pub(crate) live: u64,
    /// Bytes echoed and checked.
    pub(crate) echoed: u64,
    /// Whole messages echoed (0 for modes without messages).
    pub(crate) echoes: u64,
    /// Connections that failed.
    pub(crate) failures: u64,
}

/// The process's totals: each loop adds what changed since it last did.
pub(crate) struct Totals {
    /// Signed: one loop's connections close while another's count is not
    /// added yet.
    live: AtomicI64,
    echoed: AtomicU64,
    echoes: AtomicU64,
    failures: AtomicU64,
}

impl Totals {
    pub(crate) const fn new() -> Totals {
        Totals {
            live: AtomicI64::new(0),
            echoed: AtomicU64::new(0),
            echoes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The totals now. Relaxed: each counter is exact, the four are read
    /// a few nanoseconds apart, and a progress line needs no more.
    fn load(&self) -> Sample {
        Sample {
            live: self.live.load(Relaxed).max(0) as u64,
            echoed: self.echoed.load(Relaxed),
            echoes: self.echoes.load(Relaxed),
            failures: self.failures.load(Relaxed),
        }
    }
}

/// One loop's part in the progress line: publishes its counts into the
/// totals, and, in the first loop, prints the line.
pub(crate) struct Meter<'a> {
    totals: &'a Totals,
    /// What this loop last added.
    published: Sample,
    next_publish: Instant,
    /// Only in the loop that prints.
    printer: Option<Printer>,
}

/// When the line was last printed, and what the totals were then (for the
/// rates over the last second).
struct Printer {
    started: Instant,
    next: Instant,
    last: (Instant, Sample),
}

impl Meter<'static> {
    /// The meter of the loop whose share starts at connection `first`, if
    /// the line is shown: that of connection 0's loop prints.
    pub(crate) fn for_loop(first: usize, now: Instant) -> Option<Meter<'static>> {
        SHOWN
            .load(Relaxed)
            .then(|| Meter::new(&TOTALS, first == 0, now))
    }
}

impl<'a> Meter<'a> {
    /// A meter adding to `totals`, printing if `prints`, from `now` on.
    fn new(totals: &'a Totals, prints: bool, now: Instant) -> Meter<'a> {
        Meter {
            totals,
            published: Sample::default(),
            next_publish: now,
            printer: prints.then(|| Printer {
                started: now,
                next: now + EVERY,
                last: (now, Sample::default()),
            }),
        }
    }

    /// Whether a publish is due.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now >= self.next_publish
    }

    /// The latest the loop may sleep until: the next publish, so no count
    /// stays unpublished longer than a [`TICK`], or the next line.
    pub(crate) fn wake(&self) -> Instant {
        match &self.printer {
            Some(p) => self.next_publish.min(p.next),
            None => self.next_publish,
        }
    }

    /// Adds what changed since the last publish to the totals and, if this
    /// loop prints and a second has passed, prints the line.
    pub(crate) fn publish(&mut self, now: Instant, sample: Sample) {
        let was = self.published;
        let t = self.totals;
        t.live
            .fetch_add(sample.live as i64 - was.live as i64, Relaxed);
        t.echoed
            .fetch_add(sample.echoed.wrapping_sub(was.echoed), Relaxed);
        t.echoes
            .fetch_add(sample.echoes.wrapping_sub(was.echoes), Relaxed);
        t.failures
            .fetch_add(sample.failures.wrapping_sub(was.failures), Relaxed);
        self.published = sample;
        self.next_publish = now + TICK;
        let Some(p) = &mut self.printer else {
            return;
        };
        if now < p.next {
            return;
        }
        let total = t.load();
        let text = line(now - p.started, &total, &p.last.1, now - p.last.0);
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r{text}{ERASE}");
        let _ = err.flush();
        PRINTED.store(true, Relaxed);
        p.last = (now, total);
        p.next = now + EVERY;
    }

    /// The loop is over: its connections are closed, its counts final.
    pub(crate) fn finish(&mut self, now: Instant, sample: Sample) {
        self.publish(now, Sample { live: 0, ..sample });
    }
}

/// The progress line: the time under load, the totals, and the rate over
/// the last `interval` (since the totals were `before`): echoes per second
/// for a mode that counts echoes, MiB/s of echo otherwise.
fn line(elapsed: Duration, total: &Sample, before: &Sample, interval: Duration) -> String {
    let secs = interval.as_secs_f64();
    let per_sec = |now: u64, then: u64| {
        if secs > 0.0 {
            now.saturating_sub(then) as f64 / secs
        } else {
            0.0
        }
    };
    let rate = if total.echoes > 0 {
        let echoes = per_sec(total.echoes, before.echoes).round() as u64;
        format!("{} echoes/s", thousands(echoes))
    } else {
        let mib = per_sec(total.echoed, before.echoed) / (1024.0 * 1024.0);
        format!("{mib:.1} MiB/s")
    };
    format!(
        "{:>3}s  conns {}  echoed {}  {rate}  failures {}",
        elapsed.as_secs(),
        thousands(total.live),
        bytes(total.echoed),
        thousands(total.failures)
    )
}

/// `n` with commas between thousands: 330,123.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() * 4 / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count in the largest binary unit that keeps it at least 1:
/// `512 B`, `1.50 KiB`, `1.23 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of the module docs: time, connections, bytes, the echo
    /// rate over the last interval, failures.
    #[test]
    fn the_line_shows_totals_and_the_last_rate() {
        let before = Sample {
            live: 100,
            echoed: 1_000_000_000,
            echoes: 1_000_000,
            failures: 0,
        };
        let total = Sample {
            live: 100,
            echoed: 1_320_702_444,
            echoes: 1_330_123,
            failures: 0,
        };
        assert_eq!(
            line(
                Duration::from_millis(3_020),
                &total,
                &before,
                Duration::from_secs(1)
            ),
            "  3s  conns 100  echoed 1.23 GiB  330,123 echoes/s  failures 0"
        );
    }

    /// A mode without messages shows MiB/s; big counts get commas.
    #[test]
    fn without_echoes_the_rate_is_mib_per_sec() {
        let before = Sample::default();
        let total = Sample {
            live: 20_000,
            echoed: 3 << 20,
            echoes: 0,
            failures: 1_234,
        };
        assert_eq!(
            line(
                Duration::from_secs(62),
                &total,
                &before,
                Duration::from_secs(2)
            ),
            " 62s  conns 20,000  echoed 3.00 MiB  1.5 MiB/s  failures 1,234"
        );
    }

    /// Commas every three digits from the right, none below a thousand.
    #[test]
    fn thousands_are_separated() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (330_123, "330,123"),
            (1_234_567, "1,234,567"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }

    /// Bytes in the largest unit that keeps the number at least 1.
    #[test]
    fn bytes_take_the_largest_unit() {
        for (n, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (1536, "1.50 KiB"),
            (5 << 30, "5.00 GiB"),
            (u64::MAX, "16384.00 PiB"),
        ] {
            assert_eq!(bytes(n), text);
        }
    }

    /// Two loops publishing deltas add up to their sum; a loop that ends
    /// takes its connections out of the total but keeps its bytes in.
    #[test]
    fn loops_add_what_changed_since_they_last_published() {
        let totals = Totals::new();
        let now = Instant::now();
        let mut a = Meter::new(&totals, false, now);
        let mut b = Meter::new(&totals, false, now);
        let sample = |live, echoed, failures| Sample {
            live,
            echoed,
            echoes: echoed / 10,
            failures,
        };
        assert!(a.due(now));
        a.publish(now, sample(5, 100, 0));
        assert!(!a.due(now), "published: not due again until a tick later");
        assert!(a.due(now + TICK));
        b.publish(now, sample(3, 50, 1));
        a.publish(now + TICK, sample(4, 300, 1));
        assert_eq!(totals.load(), sample(7, 350, 2));
        b.finish(now + TICK, sample(2, 80, 1));
        assert_eq!(totals.load(), sample(4, 380, 2));
    }
}
