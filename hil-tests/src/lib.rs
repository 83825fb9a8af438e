//! Harness for spindle's end-to-end tests.
