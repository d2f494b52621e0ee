//! Synthetic traffic and the throughput benchmark for feedloop.
//!
//! [`gen`] produces seeded, reproducible API events with a set share of attack traffic and
//! writes them as JSON Lines in feedloop's native schema. [`harness`] times a read-and-decode
//! baseline against `feedloop scan` on such a file and writes a results page. The binaries
//! `feedloop-gen` and `feedloop-bench` are thin command-line wrappers around both.
//!
//! Benchmarks here print and record their figures; no test asserts a wall-clock time.

#![deny(missing_docs)]

pub mod gen;
pub mod harness;
