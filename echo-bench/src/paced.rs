//! `pingpong --rate R`: the open loop. Messages go out on a fixed schedule,
//! whether or not the server has answered the ones before, and each is
//! timed from when it was due.
//!
//! # Why
//!
//! A closed loop ([`super::pingpong`] without a rate) sends a message only
//! after an echo, so when the server stalls, the load generator stalls with
//! it: a 500 ms pause delays one message per connection, shows as one slow
//! sample among thousands, and the messages a real client would have sent
//! meanwhile are never sent, so never measured. That is *coordinated
//! omission*. wrk2's answer, taken here, is a plan: message `k` of
//! connection `n` is due at a known time, and its latency runs from that
//! time to its echo, even if the connection could only write it late. A
//! stall then counts for every message due during it. (tcpkali's `-r`
//! paces the same way but stamps the actual write, which hides a stall
//! again as soon as writes wait for echoes.)
//!
//! # The schedule
//!
//! `R` messages per second over all `N` connections of the run, evenly
//! interleaved: slot `j` is due at `t0 + j / R` and belongs to connection
//! `j % N`, so connection `n` sends its `k`-th message at
//! `t0 + (k * N + n) / R`, on whichever loop (`--threads`) it lives. Times
//! are kept in whole picoseconds per slot, so "due by now" and "when due"
//! agree exactly, and no time is stored per message: a message's due time
//! is computed from its number when its echo arrives.
//!
//! A message due while earlier ones are still out is sent anyway
//! (pipelined), up to `--depth` in flight per connection. A connection with
//! `--depth` in flight is *behind*: it sends the next message when an echo
//! frees a slot, and that message's latency still runs from its due time.
//!
//! # The loop's timer
//!
//! The loop wakes at the next slot of its connections (the mode's `deadline`),
//! on a timerfd (the driver's `PRECISE_TIMER`): epoll's own timeout counts in
//! milliseconds, and a wake a millisecond late would add up to a
//! millisecond to every latency. Each wake hands every slot that fell due
//! since the last one to its connection (`Flow::Send`), and each
//! connection writes all its due messages in one `write`: when the loop is
//! busy, or the rate is high, wakes batch what fell due meanwhile, as
//! wrk2's do, and nothing spins. A wake visits only the connections due,
//! not all of them.
//!
//! # What is counted
//!
//! * Latency: every message *due* in the measured window, from its due
//!   time to its echo (messages due during the warm-up are not counted,
//!   whenever they arrive).
//! * The achieved rate: echoes that *arrived* in the window, per second.
//! * The backlog (messages due and not yet echoed) when the window starts
//!   and ends: a server that keeps up holds it steady; one that does not
//!   lets it grow, and its latencies grow with the length of the run.
//! * At the end, messages due in the window that were never sent (every
//!   connection behind) are not dropped: each is counted with the time it
//!   had waited by then, a lower bound, and reported as `unsent`.
//!
//! The run ends as a closed one does: no new message, the rest of the last
//! one begun, a half-close, every echo and then exactly the server's EOF.
//!
//! Read next: [`super::stream`] for bulk transfer in both directions.

use std::time::{Duration, Instant};

use super::driver::{Conn, Flow, Mode, Next};
use super::pattern::Pattern;
use super::pingpong::{end_missing, Options, Pacing, Tally};
use super::report::Fault;

/// The plan: when each slot is due, and whose it is.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// When slot 0 is due: the start of the load.
    t0: Instant,
    /// Picoseconds from one slot to the next: `1 / R`.
    step_ps: u64,
    /// Connections in the run: slot `j` is connection `j % connections`'s.
    connections: u64,
}

impl Schedule {
    fn new(t0: Instant, rate: f64, connections: usize) -> Schedule {
        Schedule {
            t0,
            step_ps: (1e12 / rate).round().max(1.0) as u64,
            connections: connections as u64,
        }
    }

    /// When slot `slot` is due: `t0 + ceil(slot * step)` (in nanoseconds).
    fn time(&self, slot: u64) -> Instant {
        let ps = slot.saturating_mul(self.step_ps);
        self.t0 + Duration::from_nanos(ps.div_ceil(1000))
    }

    /// How many slots are due by `now` (those with `time(slot) <= now`).
    #[inline]
    fn slots_by(&self, now: Instant) -> u64 {
        let ns = now.saturating_duration_since(self.t0).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(u64::MAX);
        ns.saturating_mul(1000) / self.step_ps + 1
    }

    /// How many slots are due before `at` (those with `time(slot) < at`).
    fn slots_before(&self, at: Instant) -> u64 {
        let ns = at.saturating_duration_since(self.t0).as_nanos();
        match u64::try_from(ns).unwrap_or(u64::MAX) {
            0 => 0,
            ns => (ns - 1).saturating_mul(1000) / self.step_ps + 1,
        }
    }

    /// How many of connection `number`'s messages are among the first
    /// `slots` slots.
    #[inline]
    fn messages_in(&self, number: usize, slots: u64) -> u64 {
        let n = number as u64;
        if slots > n {
            (slots - n - 1) / self.connections + 1
        } else {
            0
        }
    }

    /// When message `k` of connection `number` is due.
    #[inline]
    fn due_time(&self, number: usize, k: u64) -> Instant {
        self.time(k.saturating_mul(self.connections) + number as u64)
    }
}

/// Where a loop's run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// On schedule; nothing counted yet.
    Warming,
    /// On schedule, in the measured window.
    Loading,
    /// The window is over: no new message; connections half-close and
    /// close by the server's EOF, until `until`.
    Finishing { until: Instant },
    /// The finish took longer than the timeout.
    Over,
}

/// One connection's state: its number (its place in the schedule) and how
/// far its end has come.
pub(crate) struct Pace {
    number: usize,
    end: End,
}

/// How far a connection's end has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Still on schedule.
    Open,
    /// Finishing: its unsent messages are counted; the rest of the last
    /// message begun is being written.
    Closing,
    /// Half-closed: the server's EOF is due after the last echo.
    Shut,
}

/// The open-loop mode, in one loop.
pub(crate) struct Paced<'a> {
    options: &'a Options,
    size: u64,
    depth: u64,
    schedule: Schedule,
    /// This loop's connections by number, `first..end`: a contiguous share,
    /// learned as the driver opens them (in order, every one: a pingpong
    /// run starts only if all opened).
    first: usize,
    end: usize,
    /// The first slot not yet handed to its connection.
    cursor: u64,
    /// When the next of this loop's slots is due.
    next_send: Instant,
    phase: Phase,
    tally: Tally,
    /// Whole echoes so far, warm-up included.
    echoed: u64,
    /// The backlog when the window began and ended, and the unsent.
    pacing: Pacing,
}

impl<'a> Paced<'a> {
    pub(crate) fn new(options: &'a Options, rate: f64) -> Paced<'a> {
        // The schedule and window are set when the load starts.
        let now = Instant::now();
        Paced {
            options,
            size: options.size as u64,
            depth: options.depth as u64,
            schedule: Schedule::new(now, rate, options.connections),
            first: usize::MAX,
            end: 0,
            cursor: 0,
            next_send: now,
            phase: Phase::Warming,
            tally: Tally::new(now),
            echoed: 0,
            pacing: Pacing::default(),
        }
    }

    /// What the loop counted.
    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Adds the loop's backlog and unsent messages to the run's.
    pub(crate) fn add_pacing(&self, pacing: &mut Pacing) {
        pacing.lag_start += self.pacing.lag_start;
        pacing.lag_end += self.pacing.lag_end;
        pacing.unsent += self.pacing.unsent;
    }

    /// The first slot at or after `slot` that is this loop's.
    fn next_slot(&self, slot: u64) -> u64 {
        let n = self.schedule.connections;
        let (first, end) = (self.first as u64, self.end as u64);
        match slot % n {
            r if r < first => slot - r + first,
            r if r < end => slot,
            r => slot - r + n + first,
        }
    }

    /// How many of the first `slots` slots are this loop's.
    fn share_of(&self, slots: u64) -> u64 {
        let n = self.schedule.connections;
        let (first, end) = (self.first as u64, self.end as u64);
        (slots / n) * (end - first) + (slots % n).clamp(first, end) - first
    }

    /// Messages of this loop due before `at` and not echoed yet.
    fn lag(&self, at: Instant) -> u64 {
        let due = self.share_of(self.schedule.slots_before(at));
        due.saturating_sub(self.echoed)
    }

    /// Hands the slots due by `now` to their connections: the
    /// [`Flow::Send`] for the connections they belong to, or `None` if no
    /// slot of this loop is due. Slots that wrap past connection `N - 1`
    /// go in two turns, the second at once.
    fn release(&mut self, now: Instant) -> Option<Flow> {
        let n = self.schedule.connections;
        let next = self.next_slot(self.cursor);
        if self.schedule.time(next) > now {
            self.cursor = next;
            self.next_send = self.schedule.time(next);
            return None;
        }
        let last = (self.schedule.slots_by(now) - 1).max(next);
        let start = next % n;
        let span = last - next + 1;
        let flow = if span >= n {
            self.cursor = last + 1;
            Flow::Send {
                from: self.first,
                count: self.end - self.first,
            }
        } else if start + span <= n {
            self.cursor = last + 1;
            Flow::Send {
                from: start as usize,
                count: span as usize,
            }
        } else {
            // Up to the last connection now; the round after at once.
            self.cursor = next - start + n;
            Flow::Send {
                from: start as usize,
                count: (n - start) as usize,
            }
        };
        self.next_send = self.schedule.time(self.next_slot(self.cursor));
        Some(flow)
    }

    /// On schedule (warming up or measuring).
    fn on_schedule(&self) -> bool {
        matches!(self.phase, Phase::Warming | Phase::Loading)
    }

    /// Finishing begins for `conn`: its messages due in the window and
    /// never sent are counted, each with the time it has waited by `now`.
    fn count_unsent(&mut self, conn: &Conn<Pace>, now: Instant) {
        let number = conn.state.number;
        let begun = conn.sent().div_ceil(self.size);
        let due = self
            .schedule
            .messages_in(number, self.schedule.slots_before(self.tally.until));
        for k in begun..due {
            let at = self.schedule.due_time(number, k);
            if self.tally.within(at) {
                self.tally.latency.record(now.saturating_duration_since(at));
                self.pacing.unsent += 1;
            }
        }
    }
}

impl Mode for Paced<'_> {
    type State = Pace;

    /// A wake a millisecond late would count a millisecond against the
    /// server.
    const PRECISE_TIMER: bool = true;

    fn start(&mut self, now: Instant) {
        self.schedule.t0 = now;
        self.next_send = now;
        self.tally.from = now + self.options.warmup;
        self.tally.until = self.tally.from + self.options.duration;
    }

    fn open(&mut self, number: usize, _now: Instant) -> Pace {
        self.first = self.first.min(number);
        self.end = self.end.max(number + 1);
        Pace {
            number,
            end: End::Open,
        }
    }

    /// On schedule: writes every message due by now, up to `depth` in
    /// flight. Finishing: counts what was never sent, writes the rest of
    /// the last message begun, and half-closes.
    #[inline]
    fn send(
        &mut self,
        conn: &mut Conn<Pace>,
        pattern: &Pattern,
        now: Instant,
    ) -> Result<Next, Fault> {
        if conn.state.end == End::Open {
            if self.on_schedule() {
                let slots = self.schedule.slots_by(now);
                let due = self.schedule.messages_in(conn.state.number, slots);
                let room = conn.received() / self.size + self.depth;
                conn.write_until(pattern, due.min(room) * self.size, now)?;
                return Ok(Next::Continue);
            }
            self.count_unsent(conn, now);
            conn.state.end = End::Closing;
        }
        if conn.state.end == End::Closing {
            let begun = conn.sent().div_ceil(self.size) * self.size;
            conn.write_until(pattern, begun, now)?;
            if conn.sent() == begun {
                conn.shutdown_write()?;
                conn.state.end = End::Shut;
            }
        }
        Ok(Next::Continue)
    }

    /// Times every message that came back whole from when it was due.
    #[inline]
    fn received(&mut self, conn: &mut Conn<Pace>, from: u64, now: Instant) {
        self.tally.verified += conn.received() - from;
        let (first, last) = (from / self.size, conn.received() / self.size);
        self.echoed += last - first;
        let arrived_within = self.tally.within(now);
        for k in first..last {
            if arrived_within {
                self.tally.echoes += 1;
            }
            let due = self.schedule.due_time(conn.state.number, k);
            if self.tally.within(due) {
                self.tally
                    .latency
                    .record(now.saturating_duration_since(due));
            }
        }
    }

    /// Half-closed with every echo back: the EOF is next.
    #[inline]
    fn eof_due(&self, conn: &Conn<Pace>) -> bool {
        conn.state.end == End::Shut && conn.in_flight() == 0
    }

    /// The checked bytes in whole messages, for the progress line.
    fn echoes(&self) -> u64 {
        self.tally.verified / self.size
    }

    fn silence_limit(&self) -> Option<Duration> {
        Some(self.options.timeout)
    }

    /// Bytes in flight are owed, and after the half-close the EOF.
    fn owed(&self, conn: &Conn<Pace>) -> bool {
        conn.in_flight() > 0 || conn.state.end == End::Shut
    }

    fn deadline(&self) -> Instant {
        match self.phase {
            Phase::Warming => self.next_send.min(self.tally.from),
            Phase::Loading => self.next_send.min(self.tally.until),
            Phase::Finishing { until } => until,
            // Not reached: the loop stops when the phase becomes `Over`.
            Phase::Over => self.tally.until,
        }
    }

    /// Sends due come first, so the last slots before a phase's end go
    /// out in it; then the phase's end, if it has come. Once the end has
    /// come it goes first: a schedule the loop cannot keep up with would
    /// otherwise always have a slot due, and the phase would never end
    /// (slots of the window never sent are counted as `unsent`).
    fn on_timer(&mut self, now: Instant, live: usize) -> Flow {
        let phase_over = match self.phase {
            Phase::Warming => now >= self.tally.from,
            Phase::Loading => now >= self.tally.until,
            Phase::Finishing { until } => now >= until,
            Phase::Over => true,
        };
        if !phase_over && self.on_schedule() && now >= self.next_send {
            if let Some(flow) = self.release(now) {
                return flow;
            }
        }
        match self.phase {
            Phase::Warming if now >= self.tally.from => {
                self.pacing.lag_start = self.lag(self.tally.from);
                self.phase = Phase::Loading;
                Flow::Continue
            }
            Phase::Loading if now >= self.tally.until => {
                self.pacing.lag_end = self.lag(self.tally.until);
                log::debug!(
                    "measurement over, {} messages behind; half-closing",
                    self.pacing.lag_end
                );
                self.phase = Phase::Finishing {
                    until: now + self.options.timeout,
                };
                // Every connection counts what it never sent, finishes its
                // last message and half-closes.
                Flow::Send {
                    from: 0,
                    count: usize::MAX,
                }
            }
            Phase::Finishing { until } if now >= until => {
                log::debug!("{live} connections unfinished at {until:?}");
                self.phase = Phase::Over;
                Flow::Stop
            }
            Phase::Over => Flow::Stop,
            _ => Flow::Continue,
        }
    }

    /// Over: every connection still open (an echo or the EOF missing)
    /// fails.
    fn sweep(&mut self, conn: &Conn<Pace>, _now: Instant) -> Result<Next, Fault> {
        match self.phase {
            Phase::Over => Err(end_missing(
                conn,
                conn.sent().div_ceil(self.size) * self.size,
                self.options.timeout,
            )),
            _ => Ok(Next::Continue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule of `rate`/s over `n` connections, starting now.
    fn schedule(rate: f64, n: usize) -> Schedule {
        Schedule::new(Instant::now(), rate, n)
    }

    /// Slot `j` is due at `j / R`, and "due by" agrees with "when due" to
    /// the nanosecond.
    #[test]
    fn slots_fall_due_at_their_time_and_not_before() {
        let s = schedule(3_000.0, 4);
        for slot in [0, 1, 2, 3, 999, 1_000_001] {
            let at = s.time(slot);
            assert_eq!(s.slots_by(at), slot + 1, "slot {slot}");
            assert_eq!(s.slots_before(at), slot, "slot {slot}");
            if slot > 0 {
                assert_eq!(s.slots_by(at - Duration::from_nanos(1)), slot);
            }
        }
        let third_ms = s.time(1) - s.t0;
        assert_eq!(third_ms, Duration::from_nanos(333_334));
    }

    /// Connection `n` of `N` owns every `N`-th slot from `n`: its message
    /// `k` is due at `(k * N + n) / R`.
    #[test]
    fn connections_take_turns() {
        let s = schedule(1_000.0, 3);
        assert_eq!(s.due_time(2, 0) - s.t0, Duration::from_millis(2));
        assert_eq!(s.due_time(1, 4) - s.t0, Duration::from_millis(13));
        // Slots 0..=13 are due by 13 ms: connection 1 has 1, 4, 7, 10, 13.
        let by = s.slots_by(s.t0 + Duration::from_millis(13));
        assert_eq!(s.messages_in(1, by), 5);
        assert_eq!(s.messages_in(0, by), 5);
        assert_eq!(s.messages_in(2, by), 4);
        assert_eq!(s.messages_in(2, 2), 0);
    }

    /// A loop's share: its next slot skips the other loops' connections,
    /// and its count of slots is its share of them.
    #[test]
    fn a_loop_finds_its_own_slots() {
        let options = Options::new("127.0.0.1:9".parse().unwrap());
        let mut paced = Paced::new(&options, 1000.0);
        paced.schedule.connections = 10;
        paced.first = 4;
        paced.end = 7;
        assert_eq!(paced.next_slot(0), 4);
        assert_eq!(paced.next_slot(5), 5);
        assert_eq!(paced.next_slot(7), 14);
        assert_eq!(paced.share_of(0), 0);
        assert_eq!(paced.share_of(5), 1);
        assert_eq!(paced.share_of(10), 3);
        assert_eq!(paced.share_of(26), 8);
    }

    /// Releasing slots: those due by now go to their connections, at most
    /// one round at a time, wrapping in two turns; a late wake hands over
    /// everything due, and the next wake is the next slot.
    #[test]
    fn release_hands_over_what_is_due() {
        let options = Options::new("127.0.0.1:9".parse().unwrap());
        let mut paced = Paced::new(&options, 1000.0);
        paced.schedule.connections = 4;
        paced.first = 0;
        paced.end = 4;
        let t0 = paced.schedule.t0;
        let ms = |m| t0 + Duration::from_millis(m);
        // Slots 0..=2 are due at 2 ms.
        assert_eq!(paced.release(ms(2)), Some(Flow::Send { from: 0, count: 3 }));
        assert_eq!(paced.next_send, ms(3));
        assert_eq!(paced.release(ms(2)), None);
        // At 5 ms: slots 3, 4, 5 are connections 3, then 0 and 1.
        assert_eq!(paced.release(ms(5)), Some(Flow::Send { from: 3, count: 1 }));
        assert_eq!(paced.release(ms(5)), Some(Flow::Send { from: 0, count: 2 }));
        // Far behind: every connection at once.
        assert_eq!(
            paced.release(ms(50)),
            Some(Flow::Send { from: 0, count: 4 })
        );
        assert_eq!(paced.next_send, ms(51));
    }
}
