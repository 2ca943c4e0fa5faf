//! A precise wake-up for a poll loop with a schedule to keep (`churn`'s
//! connections, `udp`'s datagrams).
//!
//! mio's `poll` takes its timeout in whole milliseconds, rounded up (the
//! `epoll_wait` it calls counts in milliseconds). A loop that sleeps until
//! its next intended start would wake up to a millisecond late, and an
//! open-loop measurement counts that lateness against the server: on
//! loopback, where a connect takes tens of microseconds, it would be most
//! of what is measured. So a scheduled loop registers a Linux `timerfd`
//! with its poll, arms it for the next start (to the nanosecond; the
//! kernel's timer slack adds some 50 us), and the poll wakes on it as on
//! any other event. `pingpong --rate` uses it too, for the same reason:
//! its latencies run from when each message was due. The poll's timeout
//! stays set as well, so a loop wakes (a little late) even without it.
//!
//! Linux only: elsewhere there is no timerfd, and none is needed: mio's
//! kqueue passes the poll's timeout on to the nanosecond, so [`Alarm`] is
//! a stand-in with nothing to arm, and every loop that uses it also sets
//! the poll's timeout to the same moment.

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
#[cfg(target_os = "linux")]
use std::time::Duration;
use std::time::Instant;

#[cfg(target_os = "linux")]
use mio::unix::SourceFd;
#[cfg(target_os = "linux")]
use mio::Interest;
use mio::{Registry, Token};

/// A one-shot timer the poll reports as readable when it fires.
#[cfg(target_os = "linux")]
pub(crate) struct Alarm {
    fd: OwnedFd,
    /// When it is set to fire, if it is.
    armed: Option<Instant>,
}

#[cfg(target_os = "linux")]
impl Alarm {
    /// A disarmed alarm, registered with `registry` under `token`.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Alarm> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result
        // is a new descriptor that nothing else owns.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Alarm { fd, armed: None })
    }

    /// Arms the alarm to fire at `at` (which must be after `now`), unless
    /// it already is. A call per wake-up at most: the schedule moves on
    /// only when something was started.
    pub(crate) fn set(&mut self, at: Instant, now: Instant) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        // A zero value would disarm the timer instead.
        let wait = at
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
            },
        };
        // SAFETY: `spec` is a valid itimerspec for the call's duration; the
        // old value is not asked for (null).
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = Some(at);
        Ok(())
    }

    /// The poll reported the alarm: it fired. Reads its count of
    /// expirations (so the descriptor is not left readable) and notes it
    /// disarmed.
    pub(crate) fn fired(&mut self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a buffer of 8 that lives for
        // the call. Nothing to read (a spurious event) is WouldBlock,
        // which is fine either way.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        self.armed = None;
    }
}

/// Where there is no timerfd (kqueue, whose timeout is already precise):
/// nothing to arm; the poll's timeout wakes the loop.
#[cfg(not(target_os = "linux"))]
pub(crate) struct Alarm;

#[cfg(not(target_os = "linux"))]
impl Alarm {
    /// The stand-in.
    pub(crate) fn new(_registry: &Registry, _token: Token) -> io::Result<Alarm> {
        Ok(Alarm)
    }

    /// Nothing to arm.
    pub(crate) fn set(&mut self, _at: Instant, _now: Instant) -> io::Result<()> {
        Ok(())
    }

    /// Never reported.
    pub(crate) fn fired(&mut self) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    /// A set alarm ends a long wait at its time, with an event under its
    /// own token; one set for a moment just passed fires at once.
    #[test]
    fn a_set_alarm_ends_the_wait() {
        const TOKEN: Token = Token(7);
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut alarm = Alarm::new(poll.registry(), TOKEN).unwrap();
        for after in [Duration::from_millis(20), Duration::ZERO] {
            let now = Instant::now();
            alarm.set(now + after, now).unwrap();
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            let waited = now.elapsed();
            assert!(events.iter().any(|e| e.token() == TOKEN));
            assert!(waited >= after, "{waited:?}");
            assert!(waited < Duration::from_secs(5), "{waited:?}");
            alarm.fired();
        }
    }
}
