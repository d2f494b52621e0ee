//! Synthetic traffic and the benchmarks of feedloop.
//!
//! [`gen`] produces seeded, reproducible API events with a set share of attack traffic and
//! writes them as JSON Lines in feedloop's native schema. [`scenario`] produces realistic
//! traffic with labelled attack scenarios at known times, each with a known effect on its
//! route's KPIs, as JSON Lines, Avro or Kafka messages. [`harness`] times a read-and-decode
//! baseline against `feedloop scan` on such a file and writes a results page, and [`results`]
//! keeps each benchmark's section of that page apart from the others. The binaries
//! `feedloop-gen` and `feedloop-bench` are command-line wrappers around them; `feedloop-bench
//! latency`, which times findings through a Kafka broker, lives in the binary.
//!
//! Benchmarks here print and record their figures; no test asserts a wall-clock time.

#![deny(missing_docs)]

pub mod gen;
pub mod harness;
pub mod results;
pub mod scenario;
