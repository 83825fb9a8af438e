//! Harness for spindle's end-to-end tests: a mosquitto the test starts itself
//! ([`broker`]), a recording subscriber ([`subscriber`]), and the real
//! `spindle` binary as a child process ([`agent`]).

pub mod agent;
pub mod broker;
pub mod subscriber;
