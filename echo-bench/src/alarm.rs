//! The fine timer of a paced mode: a `timerfd` in the loop's poll.
//!
//! `epoll_wait` takes its timeout in milliseconds (mio rounds up), so a
//! loop that sleeps until a deadline may wake up to a millisecond late.
//! For `pingpong --rate`, whose latencies run from when each message was
//! due, that millisecond would be counted against the server. A timerfd
//! fires within microseconds; its readable event ends the wait, and the
//! loop then finds the deadline passed as usual.
//!
//! Read next: `src/paced.rs`, the mode that asks for it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};

/// The token of the loop's [`Alarm`]: far above any connection's key, so
/// its events find no connection and only end the wait.
const ALARM: Token = Token(usize::MAX - 1);

/// A timer finer than epoll's: a `timerfd` in the poll. `epoll_wait` counts
/// its timeout in milliseconds (mio rounds up), so a wake may come up to a
/// millisecond after the deadline; a timerfd fires within microseconds.
/// Armed before each wait, only when the deadline moved (one
/// `timerfd_settime`); re-arming clears its count, so it is never read.
pub(crate) struct Alarm {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl Alarm {
    /// A disarmed timer, registered with `poll` under [`ALARM`].
    pub(crate) fn new(poll: &Poll) -> io::Result<Alarm> {
        // SAFETY: plain system call; the descriptor it returns is ours.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        poll.registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), ALARM, Interest::READABLE)?;
        Ok(Alarm { fd, armed: None })
    }

    /// Fires at `at`, `now` being now (at once if it has passed).
    pub(crate) fn arm(&mut self, at: Instant, now: Instant) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        // A zero value would disarm the timer: a nanosecond is "at once".
        let after = at
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = Some(at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Events;

    /// An armed alarm ends a long wait at its time, with an event under
    /// its own token; one armed for a moment passed fires at once.
    #[test]
    fn an_armed_alarm_ends_the_wait() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut alarm = Alarm::new(&poll).unwrap();
        for after in [Duration::from_millis(20), Duration::ZERO] {
            let now = Instant::now();
            alarm.arm(now + after, now).unwrap();
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            let waited = now.elapsed();
            assert!(events.iter().any(|e| e.token() == ALARM));
            assert!(waited >= after, "{waited:?}");
            assert!(waited < Duration::from_secs(5), "{waited:?}");
        }
    }
}
