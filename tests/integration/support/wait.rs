//! Waiting for a condition with a generous deadline: tests assert behaviour, not speed, so a
//! deadline only turns a hang into a clear failure.

use std::fmt::Debug;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

/// Polls `f` every 20 ms until it returns `Some`, and returns that value. Panics after
/// `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    eventually_named("the condition", timeout, &mut f)
}

/// [`eventually`] with a description for the panic message.
pub fn eventually_named<T>(what: &str, timeout: Duration, f: &mut dyn FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if started.elapsed() > timeout {
            panic!("{what} did not hold within {timeout:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `observe` until it returns `want`; panics after `timeout` with the last value seen.
pub fn eventually_eq<T: PartialEq + Debug>(
    what: &str,
    timeout: Duration,
    want: T,
    mut observe: impl FnMut() -> T,
) {
    let started = Instant::now();
    loop {
        let now = observe();
        if now == want {
            return;
        }
        if started.elapsed() > timeout {
            panic!("{what}: wanted {want:?} within {timeout:?}, last saw {now:?}");
        }
        std::thread::sleep(POLL);
    }
}
