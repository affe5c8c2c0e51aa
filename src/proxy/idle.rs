//! A timer that ends a body which stops making progress.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A timer that fires when a body makes no progress for a while. Armed only when the body
/// waits, so a body that is always ready never touches the timer wheel.
pub struct Idle {
    sleep: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

impl Idle {
    pub fn new() -> Self {
        Self {
            sleep: None,
            progressed: false,
        }
    }

    /// Data moved: the next wait starts a new idle period.
    pub fn progress(&mut self) {
        self.progressed = true;
    }

    /// The body is waiting: whether it has now waited `limit` since the last progress.
    pub fn expired(&mut self, limit: Duration, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + limit;
        match &mut self.sleep {
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            Some(sleep) if self.progressed => sleep.as_mut().reset(deadline),
            Some(_) => {}
        }
        self.progressed = false;
        self.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}
