//! The run lock: one object in storage, `locks/run.json`, that serialises whole
//! runs (`nightly`, `score`, `evaluate`, `gc`) on one storage, on a local
//! directory and on S3 alike.
//!
//! - It is taken with a conditional create (`PutMode::Create`, `If-None-Match: *`
//!   on S3), so of two processes starting together exactly one gets it.
//! - It records the holder (a random id, the command, host, pid), its start time
//!   and the run it is writing, and carries a lease: the holder renews
//!   `renewed_at` every third of the lease with a conditional update, from a
//!   background task.
//! - A lock whose lease ran out (its holder was killed, or its machine lost) is
//!   taken over with a conditional update against the version read, so two
//!   processes taking over at once cannot both win; the takeover is logged.
//! - A holder that finds its lock taken over (its heartbeat's conditional update
//!   fails) knows it lost it: [`RunLock::check`] says so and the command stops
//!   before it writes anything shared.
//!
//! A `running` run whose writer no longer holds a live lease is *abandoned*
//! ([`run_is_live`]): `runs` shows it so, `publish` refuses it and `gc` removes
//! it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::store::{Storage, StoreError, Version, json_bytes};
use crate::text::capped;

/// Where the lock lives.
pub const RUN_LOCK: &str = "locks/run.json";

/// What the lock object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Random id of this holding (not the pid: pids repeat across machines).
    pub id: String,
    /// The command that holds it (`nightly`, `score`, `gc`, …).
    pub command: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id on that host.
    pub pid: u32,
    /// When it was taken.
    pub started_at: DateTime<Utc>,
    /// The holder's last heartbeat.
    pub renewed_at: DateTime<Utc>,
    /// Seconds after `renewed_at` at which the lock may be taken over.
    pub lease_secs: u64,
    /// The run being written, once it has an id.
    #[serde(default)]
    pub run_id: Option<String>,
}

impl Holder {
    /// Whether the lease has run out at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now > self.renewed_at + chrono::Duration::seconds(self.lease_secs as i64)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`faverecs {}` (pid {} on {}, since {}, last heartbeat {}",
            self.command,
            self.pid,
            self.host,
            self.started_at.format("%Y-%m-%d %H:%M:%SZ"),
            self.renewed_at.format("%H:%M:%SZ"),
        )?;
        if let Some(run) = &self.run_id {
            write!(f, ", writing run {run}")?;
        }
        f.write_str(")")
    }
}

/// Why the lock could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds a live lease.
    #[error(
        "another run holds the lock {RUN_LOCK}: {holder}; its lease runs out {lease_left}s after its last heartbeat. Wait for it, or, if that process is gone, let the lease run out (a later run takes the lock over)"
    )]
    Held {
        /// Who holds it.
        holder: Box<Holder>,
        /// Seconds until the lease runs out.
        lease_left: i64,
    },
    /// Another process took the lock over (this one's heartbeat stalled past the
    /// lease).
    #[error(
        "the run lock was taken over by another process ({holder}); this run stops without writing further"
    )]
    Lost {
        /// Who holds it now, as far as known.
        holder: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The lock as stored: its holder (or why it cannot be read) and version.
#[derive(Debug)]
pub struct Stored {
    /// The holder, or why the object is not a holder.
    pub holder: Result<Holder, String>,
    /// The object's version, for a conditional takeover.
    pub version: Version,
    /// When the object was last written.
    pub last_modified: DateTime<Utc>,
}

/// Reads the lock, if any.
pub async fn read_lock(storage: &Storage) -> Result<Option<Stored>, StoreError> {
    let path = Path::from(RUN_LOCK);
    let version = storage.version(&path).await?;
    if version == Version::Absent {
        return Ok(None);
    }
    let last_modified = storage.last_modified(&path).await?;
    let holder = match storage.get_json::<Holder>(&path).await {
        Ok(h) => Ok(h),
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(StoreError::Json { source, .. }) => Err(capped(&source.to_string(), 200)),
        Err(e) => return Err(e),
    };
    Ok(Some(Stored {
        holder,
        version,
        last_modified,
    }))
}

/// Whether `run_id`, a `running` run started at `started_at`, still has a live
/// writer at `now`: the lock's live holder names it, or the run is younger than
/// the lease (its writer may not have named it yet, or runs without the lock,
/// as the library's callers may).
pub fn run_is_live(
    lock: Option<&Holder>,
    run_id: &str,
    started_at: DateTime<Utc>,
    lease: Duration,
    now: DateTime<Utc>,
) -> bool {
    let young = now - started_at < chrono::Duration::from_std(lease).unwrap_or_default();
    young || lock.is_some_and(|h| !h.expired(now) && h.run_id.as_deref() == Some(run_id))
}

/// A held run lock, renewed in the background until [`RunLock::release`] (or
/// the process ends: then the lease runs out and the next run takes it over).
pub struct RunLock {
    storage: Storage,
    state: Arc<Mutex<(Holder, Version)>>,
    /// Held through each renewal: the heartbeat and [`RunLock::set_run`]
    /// both renew, and two renewals at once would make the later one's
    /// conditional update fail, as if another process had taken the lock.
    renewing: Arc<tokio::sync::Mutex<()>>,
    lost: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl RunLock {
    /// Takes the lock for `command`, or says who holds it. A lock whose lease
    /// ran out, or which is not a holder at all and is older than `lease`, is
    /// taken over (logged).
    pub async fn acquire(
        storage: &Storage,
        command: &str,
        lease: Duration,
    ) -> Result<RunLock, LockError> {
        let path = Path::from(RUN_LOCK);
        let lease_secs = lease.as_secs().max(1);
        // Two rounds: one to read, one to write; a conflict means another
        // process moved first, and the next read says who.
        for _ in 0..5 {
            let now = Utc::now();
            let mine = Holder {
                id: random_id(),
                command: command.to_string(),
                host: crate::store::conditional::hostname(),
                pid: std::process::id(),
                started_at: now,
                renewed_at: now,
                lease_secs,
                run_id: None,
            };
            let expected = match read_lock(storage).await? {
                None => Version::Absent,
                Some(stored) => match &stored.holder {
                    Ok(h) if !h.expired(now) => {
                        let left = (h.renewed_at + chrono::Duration::seconds(h.lease_secs as i64)
                            - now)
                            .num_seconds();
                        return Err(LockError::Held {
                            holder: Box::new(h.clone()),
                            lease_left: left.max(0),
                        });
                    }
                    Ok(h) => {
                        tracing::warn!(holder = %h, "taking over the run lock: its holder's lease ran out (the holder was killed or lost)");
                        stored.version
                    }
                    Err(reason) => {
                        let age = now - stored.last_modified;
                        if age < chrono::Duration::seconds(lease_secs as i64) {
                            return Err(LockError::Held {
                                holder: Box::new(Holder {
                                    id: String::new(),
                                    command: format!("unknown (unreadable lock: {reason})"),
                                    host: "?".into(),
                                    pid: 0,
                                    started_at: stored.last_modified,
                                    renewed_at: stored.last_modified,
                                    lease_secs,
                                    run_id: None,
                                }),
                                lease_left: (chrono::Duration::seconds(lease_secs as i64) - age)
                                    .num_seconds(),
                            });
                        }
                        tracing::warn!(%reason, "taking over an unreadable run lock older than the lease");
                        stored.version
                    }
                },
            };
            match storage
                .put_if(&path, json_bytes(&path, &mine)?, &expected)
                .await
            {
                Ok(version) => {
                    tracing::info!(command, host = %mine.host, pid = mine.pid, "took the run lock");
                    return Ok(Self::hold(storage.clone(), mine, version, lease));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LockError::Lost {
            holder: "other processes kept taking it".into(),
        })
    }

    fn hold(storage: Storage, holder: Holder, version: Version, lease: Duration) -> RunLock {
        let state = Arc::new(Mutex::new((holder, version)));
        let lost = Arc::new(AtomicBool::new(false));
        let renewing = Arc::new(tokio::sync::Mutex::new(()));
        let heartbeat = {
            let (storage, state, lost) = (storage.clone(), state.clone(), lost.clone());
            let renewing = renewing.clone();
            tokio::spawn(async move {
                let every = (lease / 3).max(Duration::from_millis(200));
                loop {
                    tokio::time::sleep(every).await;
                    let renewed = {
                        let _one_at_a_time = renewing.lock().await;
                        renew(&storage, &state, None).await
                    };
                    if let Err(e) = renewed {
                        tracing::error!(error = %e, "the run lock's heartbeat failed");
                        if matches!(e, LockError::Lost { .. }) {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        };
        RunLock {
            storage,
            state,
            renewing,
            lost,
            heartbeat,
        }
    }

    /// Records the run being written (so `runs` shows it as live, not
    /// abandoned), renewing the lease.
    pub async fn set_run(&self, run_id: &str) -> Result<(), LockError> {
        self.check()?;
        let _one_at_a_time = self.renewing.lock().await;
        renew(&self.storage, &self.state, Some(run_id)).await
    }

    /// Fails once another process took the lock over.
    pub fn check(&self) -> Result<(), LockError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(LockError::Lost {
                holder: "see the lock object".into(),
            });
        }
        Ok(())
    }

    /// The holding as last written.
    pub fn holder(&self) -> Holder {
        lock_state(&self.state).0.clone()
    }

    /// Stops the heartbeat and removes the lock, if it is still ours.
    pub async fn release(self) -> Result<(), LockError> {
        self.heartbeat.abort();
        let ours = lock_state(&self.state).0.id.clone();
        let path = Path::from(RUN_LOCK);
        if let Some(Stored { holder: Ok(h), .. }) = read_lock(&self.storage).await? {
            if h.id == ours {
                self.storage.delete(&path).await?;
                tracing::info!("released the run lock");
            } else {
                tracing::warn!(holder = %h, "the run lock had been taken over; left to its holder");
            }
        }
        Ok(())
    }
}

impl Drop for RunLock {
    /// A lock dropped without [`RunLock::release`] stops its heartbeat and is
    /// left to run out its lease, as a killed holder's is.
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

fn lock_state(state: &Mutex<(Holder, Version)>) -> std::sync::MutexGuard<'_, (Holder, Version)> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// One heartbeat: rewrite the holding with a fresh `renewed_at` (and the run, if
/// given), conditional on the version this holder last wrote.
async fn renew(
    storage: &Storage,
    state: &Mutex<(Holder, Version)>,
    run_id: Option<&str>,
) -> Result<(), LockError> {
    let path = Path::from(RUN_LOCK);
    let (mut holder, version) = lock_state(state).clone();
    holder.renewed_at = Utc::now();
    if let Some(run) = run_id {
        holder.run_id = Some(run.to_string());
    }
    match storage
        .put_if(&path, json_bytes(&path, &holder)?, &version)
        .await
    {
        Ok(new_version) => {
            *lock_state(state) = (holder, new_version);
            Ok(())
        }
        Err(StoreError::Conflict { .. }) => {
            let now_held = match read_lock(storage).await {
                Ok(Some(Stored { holder: Ok(h), .. })) => h.to_string(),
                _ => "unknown".into(),
            };
            Err(LockError::Lost { holder: now_held })
        }
        Err(e) => Err(e.into()),
    }
}

/// 16 random hex digits.
fn random_id() -> String {
    use rand::RngCore;
    format!("{:016x}", rand::rng().next_u64())
}
