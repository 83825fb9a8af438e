//! Harness for spindle's end-to-end tests: a mosquitto the test starts itself
//! ([`broker`]), a recording subscriber ([`subscriber`]), and the real
//! `spindle` binary as a child process ([`agent`]), and a headless browser
//! for the status page ([`browser`]).

pub mod agent;
pub mod broker;
pub mod browser;
pub mod disk;
pub mod http;
pub mod plant;
pub mod proxy;
pub mod subscriber;

pub mod schema;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Serialises the tests of one test binary: end-to-end tests measure
/// liveness against the clock and share two cores, so they run one at a time.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}
