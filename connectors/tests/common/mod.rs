//! Helpers shared by the receivers' integration tests.

use feedloop_connectors::delivery::{Progress, Remote};

/// Records what a receiver reports while it applies a notice.
#[derive(Default)]
pub struct Recorder {
    pub created: Vec<Remote>,
    pub render_failures: Vec<String>,
}

impl Progress for Recorder {
    fn created(&mut self, remote: &Remote) {
        self.created.push(remote.clone());
    }

    fn render_failed(&mut self, reason: &str) {
        self.render_failures.push(reason.to_string());
    }
}
