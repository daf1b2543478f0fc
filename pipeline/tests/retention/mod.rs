//! `gc` and the run lock, on a local directory: which runs retention keeps and
//! removes, that a reader of the current run is unaffected, and the lock's
//! refusal, lease and takeover.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pipeline::config::{Settings, StorageSettings, StorageUrl};
use pipeline::gc::{Keep, Remove, run_gc};
use pipeline::lock::{LockError, RunLock};
use pipeline::runs::{RunStatus, list_runs, publish, read_manifest, verify, write_manifest};
use pipeline::score::{ScoreOptions, run_score};
use pipeline::store::Storage;

use crate::helpers::write_example;

fn local(dir: &std::path::Path) -> Storage {
    Storage::open(&StorageSettings {
        url: StorageUrl::Local {
            path: dir.to_path_buf(),
        },
        endpoint: None,
        raw_buckets: 64,
    })
    .unwrap()
}

fn id_at(days_ago: i64, tag: &str) -> (String, DateTime<Utc>) {
    let t = Utc::now() - chrono::Duration::days(days_ago);
    (format!("{}-{tag}", t.format("%Y%m%dT%H%M%SZ")), t)
}

#[tokio::test]
async fn gc_removes_exactly_the_documented_runs_and_a_reader_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let storage = local(root);
    let mut settings = Settings::load_with_env(None, Vec::new()).unwrap();
    settings.retention.keep_runs = 2;
    settings.retention.keep_days = 14;
    write_example(&storage).await;
    // The published run, real.
    let real = run_score(&storage, &settings, ScoreOptions::default())
        .await
        .unwrap();
    publish(&storage, Some(&real.run_id)).await.unwrap();
    // Athena's current_run reads a one-line copy of the pointer.
    let copy = std::fs::read_to_string(root.join("published/current.json")).unwrap();
    assert_eq!(copy.lines().count(), 1, "{copy}");
    assert!(
        copy.contains(&format!("\"run_id\":\"{}\"", real.run_id)),
        "{copy}"
    );

    // Other runs: manifests with chosen ages and statuses.
    let fake = |days: i64, tag: &str, status: RunStatus| {
        let (run_id, started) = id_at(days, tag);
        let mut m = real.clone();
        m.run_id = run_id;
        m.started_at = started;
        m.status = status;
        m
    };
    let runs = [
        (
            fake(40, "aaaaa1", RunStatus::Succeeded),
            Err(Remove::Expired),
        ),
        (fake(30, "aaaaa2", RunStatus::Succeeded), Ok(Keep::Newest)),
        (fake(20, "aaaaa3", RunStatus::Succeeded), Ok(Keep::Newest)),
        (fake(30, "bbbbb1", RunStatus::Failed), Err(Remove::Expired)),
        (fake(2, "bbbbb2", RunStatus::Failed), Ok(Keep::Young)),
        (
            fake(1, "ccccc1", RunStatus::Running),
            Err(Remove::Abandoned),
        ),
        (fake(0, "ccccc2", RunStatus::Running), Ok(Keep::Running)),
    ];
    for (m, _) in &runs {
        write_manifest(&storage, m).await.unwrap();
        // A data file and a killed writer's temporary file in each.
        let folder = root.join(format!("runs/{}/photo_recs", m.run_id));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("part-00000.parquet"), b"x").unwrap();
        std::fs::write(folder.join("part-00001.parquet#1"), b"x").unwrap();
    }
    // An unreadable manifest 30 days old, a junk folder, and temporary files in
    // the raw tables: one old, one fresh (a writer may be at work).
    let (unreadable, _) = id_at(30, "ddddd1");
    std::fs::create_dir_all(root.join(format!("runs/{unreadable}"))).unwrap();
    std::fs::write(root.join(format!("runs/{unreadable}/manifest.json")), b"{").unwrap();
    std::fs::create_dir_all(root.join("runs/not-a-run")).unwrap();
    std::fs::write(root.join("runs/not-a-run/keep.txt"), b"x").unwrap();
    let old_temp = root.join("raw/favorites/data.parquet#7");
    let fresh_temp = root.join("raw/favorites/data.parquet#8");
    std::fs::write(&old_temp, b"x").unwrap();
    std::fs::write(&fresh_temp, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old_temp)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();

    // `runs` shows the dead writer's run as abandoned.
    let listed = list_runs(&storage).await.unwrap();
    let status = |id: &str| {
        listed
            .iter()
            .find(|r| r.run_id == id)
            .map(|r| r.status_text())
            .unwrap()
    };
    assert_eq!(status(&runs[5].0.run_id), "abandoned");
    assert_eq!(status(&runs[6].0.run_id), "running");

    // The dry run removes nothing and lists the plan.
    let (plan, report) = run_gc(&storage, &settings, true).await.unwrap();
    assert_eq!(report.runs, 0);
    for (m, expected) in &runs {
        let kept = plan
            .keep
            .iter()
            .find(|(id, _)| *id == m.run_id)
            .map(|k| k.1);
        let removed = plan
            .remove
            .iter()
            .find(|(id, _, _)| *id == m.run_id)
            .map(|r| r.1);
        match expected {
            Ok(keep) => assert_eq!(kept, Some(*keep), "{}", m.run_id),
            Err(why) => assert_eq!(removed, Some(*why), "{}", m.run_id),
        }
    }
    assert!(plan.keep.contains(&(real.run_id.clone(), Keep::Published)));
    assert!(plan.remove.iter().any(|(id, why, status)| *id == unreadable
        && *why == Remove::Expired
        && status.starts_with("unreadable")));
    assert_eq!(plan.stray, vec![old_temp.clone()]);
    assert!(root.join(format!("runs/{}", runs[0].0.run_id)).exists());

    // The real gc, while a reader checks the published run again and again.
    let current = read_manifest(&storage, &real.run_id).await.unwrap();
    let reader = {
        let storage = storage.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                verify(&storage, &current).await.unwrap();
            }
        })
    };
    let (_, report) = run_gc(&storage, &settings, false).await.unwrap();
    reader.await.unwrap();
    assert_eq!(report.runs, 4, "{report:?}");

    let left: Vec<String> = list_runs(&storage)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    let mut expected: Vec<String> = runs
        .iter()
        .filter(|(_, e)| e.is_ok())
        .map(|(m, _)| m.run_id.clone())
        .chain([real.run_id.clone()])
        .collect();
    expected.sort();
    assert_eq!(left, expected);
    for (m, e) in &runs {
        assert_eq!(
            root.join(format!("runs/{}", m.run_id)).exists(),
            e.is_ok(),
            "{}",
            m.run_id
        );
    }
    assert!(!root.join(format!("runs/{unreadable}")).exists());
    assert!(root.join("runs/not-a-run/keep.txt").exists());
    assert!(!old_temp.exists() && fresh_temp.exists());
    // The published run still verifies and nothing else changed: a second gc
    // removes nothing.
    verify(&storage, &real).await.unwrap();
    let (_, again) = run_gc(&storage, &settings, false).await.unwrap();
    assert_eq!(again.runs, 0);
}

#[tokio::test]
async fn the_run_lock_refuses_a_second_holder_and_is_taken_over_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let storage = local(dir.path());
    let lease = Duration::from_secs(1);
    let first = RunLock::acquire(&storage, "nightly", lease).await.unwrap();
    first.set_run("20261130T010203Z-abcdef").await.unwrap();
    // The heartbeat keeps it past its lease.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    match RunLock::acquire(&storage, "score", lease).await {
        Err(LockError::Held { holder, .. }) => {
            assert_eq!(holder.command, "nightly");
            assert_eq!(holder.pid, std::process::id());
            assert_eq!(holder.run_id.as_deref(), Some("20261130T010203Z-abcdef"));
            let text = LockError::Held {
                holder,
                lease_left: 1,
            }
            .to_string();
            assert!(text.contains("`faverecs nightly` (pid"), "{text}");
        }
        other => panic!("expected Held, got {:?}", other.map(|_| ())),
    }
    // A holder that stops renewing (as a killed one does) loses it once its
    // lease runs out, and then knows it lost it.
    drop(first);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = RunLock::acquire(&storage, "gc", lease).await.unwrap();
    assert_eq!(second.holder().command, "gc");
    second.release().await.unwrap();
    assert!(!dir.path().join("locks/run.json").exists());
}

/// The holder's own renewals never collide: recording runs while the
/// heartbeat renews (every 200 ms here) does not make it think the lock was
/// taken over. Before renewals were serialised, one of them failed its
/// conditional update on the version the other had just written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_runs_while_the_heartbeat_renews_keeps_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let storage = local(dir.path());
    let lock = RunLock::acquire(&storage, "nightly", Duration::from_millis(600))
        .await
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut recorded = 0;
    while std::time::Instant::now() < until {
        let run = format!("20261130T010203Z-{:06x}", recorded % 0x1000);
        lock.set_run(&run).await.unwrap();
        lock.check().unwrap();
        recorded += 1;
    }
    assert!(recorded > 10, "{recorded} runs recorded");
    lock.check().unwrap();
    assert_eq!(lock.holder().pid, std::process::id());
    lock.release().await.unwrap();
    assert!(!dir.path().join("locks/run.json").exists());
}

#[tokio::test]
async fn a_sharded_run_in_progress_is_not_abandoned_until_its_shards_stop_for_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let storage = local(root);
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();
    // Three runs without a manifest, all older than the lock's lease: one
    // whose shard wrote its record now, one whose last record is two days old,
    // and one with no shard record at all.
    let (active, _) = id_at(1, "a0a0a1");
    let (stalled, _) = id_at(3, "a0a0a2");
    let (plain, _) = id_at(1, "a0a0a3");
    for (run, record) in [(&active, true), (&stalled, true), (&plain, false)] {
        let folder = root.join(format!("runs/{run}/photo_recs"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("part-users-0000of0002-00000.parquet"), b"x").unwrap();
        if record {
            let shards = root.join(format!("runs/{run}/shards"));
            std::fs::create_dir_all(&shards).unwrap();
            std::fs::write(shards.join("users-0000-of-0002.json"), b"{}").unwrap();
        }
    }
    std::fs::File::options()
        .write(true)
        .open(root.join(format!("runs/{stalled}/shards/users-0000-of-0002.json")))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(2 * 86400))
        .unwrap();
    let listed = list_runs(&storage).await.unwrap();
    let abandoned = |id: &str| listed.iter().find(|r| r.run_id == id).unwrap().abandoned;
    assert!(!abandoned(&active), "a shard wrote its record just now");
    assert!(abandoned(&stalled), "no shard for two days");
    assert!(abandoned(&plain), "no shard record, older than the lease");
    let active_run = listed.iter().find(|r| r.run_id == active).unwrap();
    assert_eq!(
        active_run.status_text(),
        "incomplete (shards done: users 1/2, photos none)"
    );
    run_gc(&storage, &settings, false).await.unwrap();
    assert!(root.join(format!("runs/{active}/shards")).exists());
    assert!(!root.join(format!("runs/{stalled}")).exists());
    assert!(!root.join(format!("runs/{plain}")).exists());
}
