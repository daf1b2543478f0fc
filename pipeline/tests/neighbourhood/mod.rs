//! A run whose algorithms and tables need only its targets' neighbourhood
//! reads only that (the favourites of the tracked users and of their
//! neighbours), from buckets and from a single file of the last release, and
//! writes exactly the tables a whole read writes: its tag lists too, which
//! it makes from a scan of every favourite's ids rather than from a graph.

use std::sync::Arc;

use arrow_array::{Array, RecordBatch, StringArray};
use pipeline::config::Settings;
use pipeline::model::{Algorithm, Table, run_table_dir};
use pipeline::raw::merge_raw;
use pipeline::runs::Manifest;
use pipeline::score::{ScoreOptions, run_score};
use pipeline::store::Storage;

use crate::extract::community;
use crate::helpers::local;

/// Every row of `batches` as text, sorted: the table as a multiset.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out: Vec<String> = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(|i| format!("{:?}", b.slice(i, 1).columns())))
        .collect();
    out.sort();
    out
}

/// A string column of `batch`, by name.
fn strings<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
}

/// `favorites` with the owner of `users`' rows removed (as an import without
/// an owner column leaves them); the photos table still names the owners.
fn without_owner(favorites: &RecordBatch, users: &[&str]) -> RecordBatch {
    let (by, owners) = (
        strings(favorites, "user_id"),
        strings(favorites, "owner_id"),
    );
    let cleared: StringArray = (0..favorites.num_rows())
        .map(|i| (!users.contains(&by.value(i)) && !owners.is_null(i)).then(|| owners.value(i)))
        .collect();
    let index = favorites.schema().index_of("owner_id").unwrap();
    let mut columns = favorites.columns().to_vec();
    columns[index] = Arc::new(cleared);
    RecordBatch::try_new(favorites.schema(), columns).unwrap()
}

fn mentions_neighbourhood(manifest: &Manifest) -> bool {
    manifest
        .notes
        .iter()
        .any(|n| n.starts_with("read only the neighbourhood"))
}

async fn table(storage: &Storage, run_id: &str, table: Table) -> Vec<String> {
    rows(
        &storage
            .read_table_dir(&run_table_dir(run_id, table), table)
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn a_run_needing_only_the_neighbourhood_reads_it_and_writes_what_a_whole_read_writes() {
    let c = community(1500, 12);
    let tracked = strings(&c.tracked_users, "user_id").value(0).to_string();
    // A neighbour of that user (an owner of a photo they favourited, not
    // tracked, with favourites of their own) whose favourites name no owner either: the photos table names
    // them, and a neighbourhood read must read those rows too.
    let tracked_ids = strings(&c.tracked_users, "user_id");
    let (by, owners) = (
        strings(&c.favorites, "user_id"),
        strings(&c.favorites, "owner_id"),
    );
    let neighbour = (0..c.favorites.num_rows())
        .filter(|&i| by.value(i) == tracked && !owners.is_null(i))
        .map(|i| owners.value(i))
        .find(|o| !tracked_ids.iter().any(|t| t == Some(*o)) && by.iter().any(|u| u == Some(*o)))
        .expect("the tracked user has a neighbour")
        .to_string();
    let favorites = without_owner(&c.favorites, &[&tracked, &neighbour]);
    let total = favorites.num_rows() as u64;

    let mut narrow = Settings::load_with_env(None, Vec::new()).unwrap();
    narrow.score.algorithms = vec![Algorithm::Flexplore, Algorithm::Popular, Algorithm::Explore];
    narrow.similar.enabled = false;
    // Tag lists stay on: the narrow run makes them from a scan of every
    // favourite's ids, the whole read from its graph. Long lists, so that
    // they name photos outside the neighbourhood, whose `photos` rows the
    // run must still hold.
    narrow.score.tag_photos_per_tag = 500;
    narrow.evaluate.enabled = false;
    // The evaluation splits every favourite, so this run reads them all.
    let mut whole = narrow.clone();
    whole.evaluate.enabled = true;

    for single_file in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let storage = local(dir.path(), 16);
        for (t, batch) in [
            (Table::Favorites, &favorites),
            (Table::Contacts, &c.contacts),
            (Table::Photos, &c.photos),
            (Table::TrackedUsers, &c.tracked_users),
        ] {
            if single_file {
                storage
                    .write_parquet(&t.raw_path(), t, std::slice::from_ref(batch))
                    .await
                    .unwrap();
            } else {
                merge_raw(&storage, t, vec![batch.clone()]).await.unwrap();
            }
        }

        let a = run_score(&storage, &narrow, ScoreOptions::default())
            .await
            .unwrap();
        let b = run_score(&storage, &whole, ScoreOptions::default())
            .await
            .unwrap();
        let case = if single_file {
            "single file"
        } else {
            "buckets"
        };
        assert!(mentions_neighbourhood(&a), "{case}: {:?}", a.notes);
        assert!(!mentions_neighbourhood(&b), "{case}: {:?}", b.notes);
        let read = a.rows_in["favorites"];
        assert!(
            read > 0 && read < total / 2,
            "{case}: read {read} of {total} favourites"
        );
        assert_eq!(b.rows_in["favorites"], total, "{case}");
        assert_eq!(a.rows_in["favorites_scanned"], total, "{case}");
        assert!(!b.rows_in.contains_key("favorites_scanned"), "{case}");
        assert_eq!(a.rows_in["targets"], b.rows_in["targets"], "{case}");
        for t in [
            Table::PhotoRecs,
            Table::PhotographerRecs,
            Table::Photos,
            Table::TrackedUsers,
            Table::TagPhotos,
        ] {
            let (x, y) = (
                table(&storage, &a.run_id, t).await,
                table(&storage, &b.run_id, t).await,
            );
            assert!(!x.is_empty(), "{case}: {} is empty", t.name());
            assert!(x == y, "{case}: {} differs from the whole read's", t.name());
        }
        // The user whose favourites name no owner still has Flexplore recs:
        // their neighbours were found through the photos table.
        let recs = table(&storage, &a.run_id, Table::PhotoRecs).await;
        assert!(
            recs.iter()
                .any(|r| r.contains(&format!("\"{tracked}\"")) && r.contains("\"flexplore\"")),
            "{case}: {tracked} has no Flexplore recs"
        );
    }
}
