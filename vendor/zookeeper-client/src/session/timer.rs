//! zkdns patch: the session loop's deadline timer.
//!
//! async-io's timer lives in its reactor thread: the thread wakes when the timer is due and
//! then wakes the thread polling the session, and setting the timer again from the polling
//! thread wakes the reactor once more so that it sleeps until the new time. Inside a tokio
//! runtime, tokio's own timer is used instead: the runtime thread sleeps until the deadline
//! itself, so an idle session costs half the wakeups. Elsewhere, async-io's as before.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;

pub enum DeadlineTimer {
    #[cfg(feature = "tokio")]
    Tokio(Pin<Box<tokio::time::Sleep>>),
    AsyncIo(Timer),
}

impl DeadlineTimer {
    /// A timer that fires at `when`, on the runtime the caller runs in.
    pub fn at(when: Instant) -> Self {
        #[cfg(feature = "tokio")]
        if tokio::runtime::Handle::try_current().is_ok() {
            return Self::Tokio(Box::pin(tokio::time::sleep_until(when.into())));
        }
        Self::AsyncIo(Timer::at(when))
    }

    /// Fires at `when` instead (again, if it has fired).
    pub fn set_at(&mut self, when: Instant) {
        match self {
            #[cfg(feature = "tokio")]
            Self::Tokio(sleep) => sleep.as_mut().reset(when.into()),
            Self::AsyncIo(timer) => timer.set_at(when),
        }
    }
}

impl Future for DeadlineTimer {
    /// The time it was set to fire.
    type Output = Instant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        match self.get_mut() {
            #[cfg(feature = "tokio")]
            Self::Tokio(sleep) => sleep.as_mut().poll(cx).map(|()| sleep.deadline().into_std()),
            Self::AsyncIo(timer) => Pin::new(timer).poll(cx),
        }
    }
}
