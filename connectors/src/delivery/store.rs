//! The delivery state store: an embedded SQLite database holding the outbox and what every
//! receiver made of every change.
//!
//! Tables:
//! - `findings`: each fingerprint's latest state (open or resolved, severity, service, resolve
//!   deadline). `feedloop gate` reads it, and a new run seeds its lifecycle from it.
//! - `pending`: changes waiting in a route's group for its wait to end, written in the same
//!   transaction as their finding's state, so a crash during the wait loses nothing.
//! - `outbox`: notices waiting for a receiver, in arrival order. A notice is written here, in
//!   the same transaction that removes its changes from `pending`, before any receiver gets
//!   it.
//! - `applied`: every (receiver, change id) done, skipped or dead-lettered, including each
//!   change folded into a group's notice, so a replayed change is never queued twice.
//! - `remotes`: the object each receiver made for each key (a Jira key, an issue number, a
//!   Slack `ts`).
//! - `intents`: creates that were started but whose result was not recorded yet. An intent
//!   left behind by a crash means the create's outcome is unknown; the receiver's `recover`
//!   looks for the object before anything else is sent for that key.
//!
//! The database runs in WAL mode with full synchronous commits: a committed change survives a
//! crash of the process or the machine, and `feedloop gate` can read while a run writes. Each
//! thread opens its own connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use feedloop_pipeline::{Change, Finding, OpenFinding};
use feedloop_rules::Severity;

use super::render::clean;
use super::{Notice, Remote};

/// The database's file name inside the state directory.
pub const DATABASE_FILE: &str = "delivery.sqlite";

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
#[error("delivery state store {path}: {cause}")]
pub struct StoreError {
    path: String,
    cause: rusqlite::Error,
}

/// The outcome of a change at one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Skipped,
    DeadLettered,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Skipped => "skipped",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// A notice taken from the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub seq: i64,
    pub notice: Notice,
    /// The ids of the changes folded into the notice, its own included.
    pub members: Vec<String>,
}

/// A notice to queue for a receiver, with the ids of the changes folded into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub receiver: String,
    pub notice: Notice,
    pub members: Vec<String>,
}

/// A change waiting in a route's group, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub id: i64,
    pub change: Change,
}

/// An open finding as `feedloop gate` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRow {
    pub fingerprint: String,
    pub rule_id: String,
    pub title: String,
    pub severity: Severity,
    pub service: String,
    pub group: String,
    pub window_end: String,
}

/// One connection to the state store.
pub struct Store {
    path: PathBuf,
    conn: Connection,
}

impl Store {
    /// Opens the store in a directory, creating both when missing.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DATABASE_FILE);
        let fail = |source| StoreError {
            path: path.display().to_string(),
            cause: source,
        };
        if let Err(err) = std::fs::create_dir_all(dir) {
            return Err(fail(rusqlite::Error::ToSqlConversionFailure(Box::new(err))));
        }
        let conn = Connection::open(&path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(Store { path, conn })
    }

    /// Opens an existing store read-only, for `feedloop gate`.
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DATABASE_FILE);
        let fail = |source| StoreError {
            path: path.display().to_string(),
            cause: source,
        };
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn = Connection::open_with_flags(&path, flags).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(fail)?;
        Ok(Store { path, conn })
    }

    /// Returns the database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            cause: source,
        }
    }

    /// Records a change's finding state, and the groups it waits in, in one transaction.
    pub fn record_change(
        &mut self,
        change: &Change,
        waiting_in: &[(String, String)],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| fail_at(&self.path, e))?;
        let result = (|| {
            upsert_finding(&tx, change)?;
            insert_waiting(&tx, change, waiting_in)
        })();
        result.map_err(|e| fail_at(&self.path, e))?;
        tx.commit().map_err(|e| fail_at(&self.path, e))
    }

    /// Puts a change back into groups after a restart, leaving its finding's state alone.
    pub fn wait_again(
        &mut self,
        change: &Change,
        waiting_in: &[(String, String)],
        replaces: i64,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| fail_at(&self.path, e))?;
        let result = (|| {
            insert_waiting(&tx, change, waiting_in)?;
            tx.execute("DELETE FROM pending WHERE id = ?1", params![replaces])
                .map(drop)
        })();
        result.map_err(|e| fail_at(&self.path, e))?;
        tx.commit().map_err(|e| fail_at(&self.path, e))
    }

    /// Returns the changes that were waiting in groups when the last run stopped.
    pub fn waiting(&self) -> Result<Vec<Waiting>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, change FROM pending ORDER BY id")
            .map_err(|e| self.fail(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(|e| self.fail(e))?;
            if let Ok(change) = serde_json::from_str(&json) {
                out.push(Waiting { id, change });
            }
        }
        Ok(out)
    }

    /// Ends a group's wait: removes its waiting changes and queues its notices, in one
    /// transaction. A notice whose changes a receiver already has, queued or done, is left out.
    /// Returns how many were queued.
    pub fn release(
        &mut self,
        group: Option<(&str, &str)>,
        notices: &[Queued],
    ) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| fail_at(&self.path, e))?;
        let result = (|| {
            if let Some((route, key)) = group {
                tx.execute(
                    "DELETE FROM pending WHERE route = ?1 AND key = ?2",
                    params![route, key],
                )?;
            }
            let mut queued = 0;
            for item in notices {
                if already_has(&tx, item)? {
                    continue;
                }
                let json = serde_json::to_string(&item.notice).expect("a notice always serializes");
                let members =
                    serde_json::to_string(&item.members).expect("a list of ids always serializes");
                queued += tx.execute(
                    "INSERT OR IGNORE INTO outbox (receiver, key, change_id, notice, members) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![item.receiver, item.notice.key, item.notice.change_id, json, members],
                )?;
            }
            Ok(queued)
        })();
        let queued = result.map_err(|e| fail_at(&self.path, e))?;
        tx.commit().map_err(|e| fail_at(&self.path, e))?;
        Ok(queued)
    }

    /// Returns a receiver's oldest queued notices.
    pub fn pending(&self, receiver: &str, limit: usize) -> Result<Vec<Pending>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT seq, notice, members FROM outbox WHERE receiver = ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.fail(e))?;
        let rows = statement
            .query_map(params![receiver, limit as i64], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, json, members) = row.map_err(|e| self.fail(e))?;
            let members = serde_json::from_str(&members).unwrap_or_default();
            let notice = serde_json::from_str(&json).map_err(|err| {
                self.fail(rusqlite::Error::FromSqlConversionFailure(
                    1,
                    rusqlite::types::Type::Text,
                    Box::new(err),
                ))
            })?;
            out.push(Pending {
                seq,
                notice,
                members,
            });
        }
        Ok(out)
    }

    /// Returns how many notices wait in the outbox, per receiver.
    pub fn queued(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT receiver, COUNT(*) FROM outbox GROUP BY receiver ORDER BY receiver")
            .map_err(|e| self.fail(e))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }

    /// Returns the object a receiver made for a key.
    pub fn remote(&self, receiver: &str, key: &str) -> Result<Option<Remote>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT remote FROM remotes WHERE receiver = ?1 AND key = ?2",
                params![receiver, key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))?;
        Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Returns true when a finding of the service was ever recorded.
    pub fn knows_service(&self, service: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM findings WHERE service = ?1)",
                params![service],
                |row| row.get(0),
            )
            .map_err(|e| self.fail(e))
    }

    /// Returns every service with a recorded finding.
    pub fn services(&self) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT DISTINCT service FROM findings WHERE service != '' ORDER BY service")
            .map_err(|e| self.fail(e))?;
        let rows = statement
            .query_map([], |row| row.get(0))
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }

    /// Returns true when a create for the key was started and its result never recorded.
    pub fn has_intent(&self, receiver: &str, key: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM intents WHERE receiver = ?1 AND key = ?2)",
                params![receiver, key],
                |row| row.get(0),
            )
            .map_err(|e| self.fail(e))
    }

    /// Records that a create is about to be sent.
    pub fn begin_create(
        &self,
        receiver: &str,
        key: &str,
        change_id: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO intents (receiver, key, change_id) VALUES (?1, ?2, ?3)",
                params![receiver, key, change_id],
            )
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// Stores a remote object and clears the key's create intent.
    pub fn save_remote(
        &mut self,
        receiver: &str,
        key: &str,
        remote: &Remote,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| fail_at(&self.path, e))?;
        save_remote(&tx, receiver, key, remote).map_err(|e| fail_at(&self.path, e))?;
        tx.commit().map_err(|e| fail_at(&self.path, e))
    }

    /// Clears a create intent after a create that certainly failed.
    pub fn clear_intent(&self, receiver: &str, key: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM intents WHERE receiver = ?1 AND key = ?2",
                params![receiver, key],
            )
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// Marks a queued notice done, with the remote object after it when there is one.
    pub fn complete(
        &mut self,
        receiver: &str,
        pending: &Pending,
        outcome: Outcome,
        remote: Option<&Remote>,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| fail_at(&self.path, e))?;
        let notice = &pending.notice;
        let result = (|| {
            tx.execute("DELETE FROM outbox WHERE seq = ?1", params![pending.seq])?;
            let ids = std::iter::once(&notice.change_id).chain(&pending.members);
            for id in ids {
                tx.execute(
                    "INSERT OR REPLACE INTO applied (receiver, change_id, key, outcome) VALUES (?1, ?2, ?3, ?4)",
                    params![receiver, id, notice.key, outcome.as_str()],
                )?;
            }
            if let Some(remote) = remote {
                save_remote(&tx, receiver, &notice.key, remote)?;
            }
            Ok(())
        })();
        result.map_err(|e| fail_at(&self.path, e))?;
        tx.commit().map_err(|e| fail_at(&self.path, e))
    }

    /// Returns the findings still open, to seed a new run's lifecycle.
    pub fn open_findings(&self) -> Result<Vec<OpenFinding>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT finding, resolve_at_ms FROM findings WHERE open = 1 ORDER BY fingerprint",
            )
            .map_err(|e| self.fail(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (json, resolve_at_ms) = row.map_err(|e| self.fail(e))?;
            if let Ok(finding) = serde_json::from_str::<Finding>(&json) {
                out.push(OpenFinding {
                    finding,
                    resolve_at_ms,
                });
            }
        }
        Ok(out)
    }

    /// Returns the open findings of a service (every service when `None`) at or above a
    /// severity, most severe first.
    pub fn open_rows(
        &self,
        service: Option<&str>,
        min_severity: Severity,
    ) -> Result<Vec<OpenRow>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT finding FROM findings WHERE open = 1 AND (?1 IS NULL OR service = ?1)
                 ORDER BY severity_rank DESC, rule_id, fingerprint",
            )
            .map_err(|e| self.fail(e))?;
        let rows = statement
            .query_map(params![service], |row| row.get::<_, String>(0))
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for json in rows {
            let json = json.map_err(|e| self.fail(e))?;
            let Ok(finding) = serde_json::from_str::<Finding>(&json) else {
                continue;
            };
            if finding.severity < min_severity {
                continue;
            }
            // Gate output lands in CI logs, which many people read: clients and principals are
            // hashed, and nothing from traffic can forge a line.
            let shown = super::render::Redaction::public().apply(&finding);
            out.push(OpenRow {
                fingerprint: finding.fingerprint.clone(),
                rule_id: clean(&finding.rule_id),
                title: clean(&finding.title),
                severity: finding.severity,
                service: clean(finding.service.as_deref().unwrap_or_default()),
                group: clean(&super::render::group_text(&shown)),
                window_end: finding.window.end.clone(),
            });
        }
        Ok(out)
    }
}

fn fail_at(path: &Path, cause: rusqlite::Error) -> StoreError {
    StoreError {
        path: path.display().to_string(),
        cause,
    }
}

fn upsert_finding(tx: &rusqlite::Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
    let finding = &change.finding;
    let json = serde_json::to_string(finding).expect("a finding always serializes");
    tx.execute(
        "INSERT INTO findings (fingerprint, open, rule_id, service, severity_rank, resolve_at_ms, finding, change)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(fingerprint) DO UPDATE SET open = ?2, rule_id = ?3, service = ?4,
           severity_rank = ?5, resolve_at_ms = ?6, finding = ?7, change = ?8",
        params![
            finding.fingerprint,
            change.kind.leaves_open(),
            finding.rule_id,
            finding.service.clone().unwrap_or_default(),
            finding.severity as i64,
            change.resolve_at_ms,
            json,
            change.kind.as_str(),
        ],
    )
    .map(drop)
}

fn insert_waiting(
    tx: &rusqlite::Transaction<'_>,
    change: &Change,
    waiting_in: &[(String, String)],
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(change).expect("a change always serializes");
    for (route, key) in waiting_in {
        tx.execute(
            "INSERT INTO pending (route, key, change) VALUES (?1, ?2, ?3)",
            params![route, key, json],
        )?;
    }
    Ok(())
}

/// Returns true when the receiver has the notice's change, or every change folded into it,
/// queued or done.
fn already_has(tx: &rusqlite::Transaction<'_>, item: &Queued) -> rusqlite::Result<bool> {
    let has = |id: &str| -> rusqlite::Result<bool> {
        tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM applied WHERE receiver = ?1 AND change_id = ?2)
                 OR EXISTS(SELECT 1 FROM outbox WHERE receiver = ?1 AND change_id = ?2)",
            params![item.receiver, id],
            |row| row.get(0),
        )
    };
    if has(&item.notice.change_id)? {
        return Ok(true);
    }
    if item.members.is_empty() {
        return Ok(false);
    }
    for id in &item.members {
        if !has(id)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn save_remote(
    tx: &rusqlite::Transaction<'_>,
    receiver: &str,
    key: &str,
    remote: &Remote,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(remote).expect("a remote always serializes");
    tx.execute(
        "INSERT OR REPLACE INTO remotes (receiver, key, remote) VALUES (?1, ?2, ?3)",
        params![receiver, key, json],
    )?;
    tx.execute(
        "DELETE FROM intents WHERE receiver = ?1 AND key = ?2",
        params![receiver, key],
    )
    .map(drop)
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS findings (
    fingerprint TEXT PRIMARY KEY,
    open INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    service TEXT NOT NULL,
    severity_rank INTEGER NOT NULL,
    resolve_at_ms INTEGER NOT NULL,
    finding TEXT NOT NULL,
    change TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    key TEXT NOT NULL,
    change_id TEXT NOT NULL,
    notice TEXT NOT NULL,
    members TEXT NOT NULL DEFAULT '[]',
    UNIQUE (receiver, change_id)
);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    change TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (
    receiver TEXT NOT NULL,
    change_id TEXT NOT NULL,
    key TEXT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (receiver, change_id)
);
CREATE TABLE IF NOT EXISTS remotes (
    receiver TEXT NOT NULL,
    key TEXT NOT NULL,
    remote TEXT NOT NULL,
    PRIMARY KEY (receiver, key)
);
CREATE TABLE IF NOT EXISTS intents (
    receiver TEXT NOT NULL,
    key TEXT NOT NULL,
    change_id TEXT NOT NULL,
    PRIMARY KEY (receiver, key)
);
";
