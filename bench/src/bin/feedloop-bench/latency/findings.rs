//! Watches feedloop's findings file and records when each finding first appears, and its
//! fingerprint.
//!
//! `feedloop run` writes findings to its JSON Lines file and flushes the file after each burst
//! of output. A thread here reads whatever the file gained every [`POLL_INTERVAL`] and stamps
//! each complete line with the instant the read returned, so a stamp is at most one interval
//! plus one read late.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the findings file is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// A finding's rule, phase and `client` group value, which identify a burst's findings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FindingKey {
    /// The rule's id.
    pub rule_id: String,
    /// `early` or `final`.
    pub phase: String,
    /// The group's `client` value, or empty when the rule does not group by client.
    pub client: String,
}

impl FindingKey {
    /// Creates a key from its parts.
    pub fn new(rule_id: &str, phase: &str, client: &str) -> FindingKey {
        FindingKey {
            rule_id: rule_id.to_string(),
            phase: phase.to_string(),
            client: client.to_string(),
        }
    }
}

/// Counts of the lines the watcher read.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchCounts {
    /// Complete lines read.
    pub lines: u64,
    /// Lines that were not a finding object.
    pub invalid: u64,
}

/// The first line read for one finding key.
struct FirstSeen {
    at: Instant,
    /// The finding's `fingerprint`, which a Slack message's metadata names as its key.
    fingerprint: String,
}

#[derive(Default)]
struct Seen {
    first: HashMap<FindingKey, FirstSeen>,
    counts: WatchCounts,
}

/// The thread that reads the findings file. Dropping the watcher stops the thread.
pub struct FindingsWatcher {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl FindingsWatcher {
    /// Starts reading `path`, which may not exist yet.
    pub fn start(path: PathBuf) -> FindingsWatcher {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let seen = seen.clone();
            let stop = stop.clone();
            thread::spawn(move || watch(&path, &seen, &stop))
        };
        FindingsWatcher {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Returns when the finding first appeared in the file, if it has.
    pub fn seen(&self, key: &FindingKey) -> Option<Instant> {
        self.lock().first.get(key).map(|first| first.at)
    }

    /// Returns the fingerprint of the finding's first line, if it has appeared.
    pub fn fingerprint(&self, key: &FindingKey) -> Option<String> {
        self.lock()
            .first
            .get(key)
            .map(|first| first.fingerprint.clone())
    }

    /// Stops the thread and returns what it read, or the error that stopped it.
    pub fn stop(mut self) -> anyhow::Result<WatchCounts> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .expect("the findings watcher does not panic")
                .map_err(|err| anyhow::anyhow!("failed to read the findings file: {err}"))?;
        }
        Ok(self.lock().counts)
    }

    /// Returns an error when the thread has stopped on a read error.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            anyhow::bail!("the findings watcher stopped on a read error");
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .expect("no thread panics while holding the seen findings")
    }
}

impl Drop for FindingsWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn watch(path: &Path, seen: &Mutex<Seen>, stop: &AtomicBool) -> io::Result<()> {
    let mut file: Option<File> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if file.is_none() {
            // feedloop creates the file when it starts.
            file = File::open(path).ok();
        }
        if let Some(file) = file.as_mut() {
            loop {
                let read = file.read(&mut chunk)?;
                if read == 0 {
                    break;
                }
                pending.extend_from_slice(&chunk[..read]);
            }
            let now = Instant::now();
            record_lines(&mut pending, now, seen);
        }
        thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// Takes every complete line off the front of `pending` and records its finding.
fn record_lines(pending: &mut Vec<u8>, now: Instant, seen: &Mutex<Seen>) {
    let Some(last_newline) = pending.iter().rposition(|b| *b == b'\n') else {
        return;
    };
    let complete: Vec<u8> = pending.drain(..=last_newline).collect();
    let mut seen = seen
        .lock()
        .expect("no thread panics while holding the seen findings");
    for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        seen.counts.lines += 1;
        match parse_finding(line) {
            Some((key, fingerprint)) => {
                seen.first.entry(key).or_insert(FirstSeen {
                    at: now,
                    fingerprint,
                });
            }
            None => seen.counts.invalid += 1,
        }
    }
}

/// Reads the rule id, phase and `client` group value of one finding line, and its
/// `fingerprint`, which is empty when the line has none.
pub fn parse_finding(line: &[u8]) -> Option<(FindingKey, String)> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let rule_id = value.get("rule_id")?.as_str()?;
    let phase = value.get("phase")?.as_str()?;
    let client = value
        .get("group")
        .and_then(|group| group.get("client"))
        .and_then(|client| client.as_str())
        .unwrap_or_default();
    let fingerprint = value
        .get("fingerprint")
        .and_then(|fingerprint| fingerprint.as_str())
        .unwrap_or_default();
    Some((
        FindingKey::new(rule_id, phase, client),
        fingerprint.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_finding_reads_client_group() {
        let line = br#"{"rule_id":"auth-failure-burst","fingerprint":"fp-4","phase":"early","group":{"client":"203.0.113.4"},"count":10}"#;
        assert_eq!(
            parse_finding(line),
            Some((
                FindingKey::new("auth-failure-burst", "early", "203.0.113.4"),
                "fp-4".to_string()
            ))
        );
    }

    #[test]
    fn parse_finding_without_client() {
        let line = br#"{"rule_id":"route-5xx-ratio","phase":"final","group":{"route":"/v1"}}"#;
        assert_eq!(
            parse_finding(line),
            Some((
                FindingKey::new("route-5xx-ratio", "final", ""),
                String::new()
            ))
        );
        assert_eq!(parse_finding(b"not json"), None);
        assert_eq!(parse_finding(br#"{"phase":"final"}"#), None);
    }

    #[test]
    fn partial_line_waits_for_newline() {
        let seen = Mutex::new(Seen::default());
        let start = Instant::now();
        let mut pending =
            br#"{"rule_id":"a","fingerprint":"fp-a","phase":"early","group":{"client":"x"}}"#
                .to_vec();
        pending.extend_from_slice(b"\n{\"rule_id\":\"b\"");
        record_lines(&mut pending, start, &seen);
        assert_eq!(pending, b"{\"rule_id\":\"b\"");
        assert_eq!(seen.lock().unwrap().counts.lines, 1);

        pending.extend_from_slice(b",\"phase\":\"final\",\"group\":{}}\n");
        let later = start + Duration::from_millis(5);
        record_lines(&mut pending, later, &seen);
        let seen = seen.lock().unwrap();
        assert!(pending.is_empty());
        assert_eq!(seen.counts.lines, 2);
        assert_eq!(seen.counts.invalid, 0);
        let first_a = &seen.first[&FindingKey::new("a", "early", "x")];
        assert_eq!(first_a.at, start);
        assert_eq!(first_a.fingerprint, "fp-a");
        assert_eq!(seen.first[&FindingKey::new("b", "final", "")].at, later);
    }
}
