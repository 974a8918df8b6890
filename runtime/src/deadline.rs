//! Cooperative deadlines for in-process plugin calls (ABI 1.3).
//!
//! Native code running in the host's process cannot be preempted. Instead, the code that makes a
//! plugin call sets a deadline on its thread with [`with_deadline`], and a long-running plugin
//! polls it through the host services `deadline_expired` and `deadline_remaining_ns`
//! (`calc_host_api_t`, Rust SDK: `Host::deadline_expired`), which read the thread-local set here.
//! A plugin that does not poll runs to its end; the hard, preemptive limit is isolation mode's
//! per-call timeout, which kills the runner process (`docs/ISOLATION.md`).
//!
//! The deadline is per thread: a plugin call sees the deadline of the thread it runs on, and
//! threads started inside the call see none. Nested [`with_deadline`] calls keep the earlier of
//! the two deadlines, so an inner call can shorten but never extend an outer one.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use calc_runtime::deadline;
//!
//! assert!(!deadline::expired()); // no deadline set
//! let late = deadline::with_deadline(Some(Instant::now()), || {
//!     std::thread::sleep(Duration::from_millis(1));
//!     deadline::expired()
//! });
//! assert!(late);
//! assert_eq!(deadline::current(), None); // restored on return
//! ```
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    /// The deadline of the call in progress on this thread, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Restores the previous deadline when dropped, so a panic in `f` cannot leave ours behind.
struct Restore(Option<Instant>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0;
        let _ = DEADLINE.try_with(|d| d.set(previous));
    }
}

/// Runs `f` with `deadline` as this thread's deadline, then restores the previous one (also when
/// `f` panics).
///
/// When a deadline is already set (a nested call), the earlier of the two applies inside `f`;
/// `None` adds no deadline and keeps the enclosing one. Plugin calls made by `f` on this thread
/// see the deadline through the `deadline_expired` host service; nothing is interrupted.
pub fn with_deadline<R>(deadline: Option<Instant>, f: impl FnOnce() -> R) -> R {
    let previous = current();
    let effective = match (previous, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let _restore = Restore(previous);
    let _ = DEADLINE.try_with(|d| d.set(effective));
    f()
}

/// [`with_deadline`] with a deadline `timeout` from now (no deadline when `timeout` is `None` or
/// so large that the deadline is not representable).
pub fn with_timeout<R>(timeout: Option<Duration>, f: impl FnOnce() -> R) -> R {
    with_deadline(timeout.and_then(|t| Instant::now().checked_add(t)), f)
}

/// This thread's deadline, if one is set.
#[inline]
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(Cell::get).ok().flatten()
}

/// True when this thread has a deadline and it has passed. Without a deadline this costs one
/// thread-local read; with one, also one monotonic clock read.
#[inline]
pub fn expired() -> bool {
    current().is_some_and(|d| Instant::now() >= d)
}

/// Time left before this thread's deadline: `None` without one, zero once it has passed.
#[inline]
pub fn remaining() -> Option<Duration> {
    current().map(|d| d.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_deadline_by_default() {
        assert_eq!(current(), None);
        assert!(!expired());
        assert_eq!(remaining(), None);
    }

    #[test]
    fn a_past_deadline_is_expired_and_a_future_one_is_not() {
        let now = Instant::now();
        with_deadline(Some(now), || {
            assert!(expired());
            assert_eq!(remaining(), Some(Duration::ZERO));
        });
        with_deadline(Some(now + Duration::from_secs(3600)), || {
            assert!(!expired());
            let left = remaining().unwrap();
            assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));
        });
        assert_eq!(current(), None);
    }

    #[test]
    fn nested_deadlines_keep_the_earlier_and_restore_the_outer() {
        let now = Instant::now();
        let (early, late) = (now + Duration::from_secs(10), now + Duration::from_secs(20));
        with_deadline(Some(late), || {
            assert_eq!(current(), Some(late));
            with_deadline(Some(early), || assert_eq!(current(), Some(early)));
            assert_eq!(current(), Some(late));
            // An inner call cannot extend the outer deadline, nor lift it with `None`.
            with_deadline(Some(now + Duration::from_secs(30)), || {
                assert_eq!(current(), Some(late))
            });
            with_deadline(None, || assert_eq!(current(), Some(late)));
        });
        with_deadline(None, || assert_eq!(current(), None));
        assert_eq!(current(), None);
    }

    #[test]
    fn a_panic_inside_restores_the_previous_deadline() {
        let outer = Instant::now() + Duration::from_secs(60);
        with_deadline(Some(outer), || {
            let result = std::panic::catch_unwind(|| {
                with_deadline(Some(Instant::now()), || panic!("boom"));
            });
            assert!(result.is_err());
            assert_eq!(current(), Some(outer));
        });
        assert_eq!(current(), None);
    }

    #[test]
    fn deadlines_are_per_thread() {
        with_deadline(Some(Instant::now()), || {
            assert!(expired());
            let other = std::thread::spawn(|| (current(), expired()))
                .join()
                .unwrap();
            assert_eq!(other, (None, false));
        });
    }

    #[test]
    fn with_timeout_sets_a_deadline_from_now_and_ignores_unrepresentable_ones() {
        let before = Instant::now();
        with_timeout(Some(Duration::from_secs(5)), || {
            let d = current().unwrap();
            assert!(d >= before + Duration::from_secs(5));
            assert!(d <= Instant::now() + Duration::from_secs(5));
        });
        with_timeout(Some(Duration::MAX), || assert_eq!(current(), None));
        with_timeout(None, || assert_eq!(current(), None));
    }
}
