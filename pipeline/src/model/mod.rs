//! The table contract: every Parquet table's name, location and Arrow schema.
//!
//! This module is the only place a schema is written down. Writers build batches
//! against these schemas, readers check what they read against them, and
//! `docs/data-model.md` documents the same columns. `serve` depends on this module,
//! never on scoring internals.
//!
//! Layout in storage:
//!
//! ```text
//! raw/<table>/data.parquet              small raw tables (photos, tracked_users, extract_state)
//! raw/<table>/_layout.json              large raw tables (favorites, contacts, dismissals):
//! raw/<table>/bucket=NNNN/<gen>.parquet   hash buckets by user (crate::store::layout)
//! runs/<run_id>/<table>/part-*.parquet  a run's output tables
//! runs/<run_id>/manifest.json           the run's manifest
//! CURRENT                               the published run pointer
//! ```

pub mod algorithm;
pub mod arrow;
pub mod columns;
pub mod metrics;
pub mod packed;

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use object_store::path::Path;

pub use algorithm::{Algorithm, Similarity};

/// Every table in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Who favourited which photo, and when.
    Favorites,
    /// Photo metadata: owner, title, thumbnail parts.
    Photos,
    /// Who follows whom.
    Contacts,
    /// The users the pipeline produces recommendations for.
    TrackedUsers,
    /// Photos and people a user asked never to be shown again.
    Dismissals,
    /// Per-user extract bookkeeping: when pulled, newest favourite held, outcome.
    ExtractState,
    /// Output: per-user photo recommendations.
    PhotoRecs,
    /// Output: per-user photographer recommendations.
    PhotographerRecs,
    /// Output: when each photo rec was first made, carried from run to run.
    FirstRecommended,
    /// Output: per-photo similar photos.
    SimilarPhotos,
    /// Output: the most favourited photos per tag.
    TagPhotos,
    /// Output: offline-evaluation metrics per algorithm and cut-off.
    Metrics,
}

/// Column names shared by several tables.
pub mod col {
    /// A Flickr user NSID (the person a row is about).
    pub const USER_ID: &str = "user_id";
    /// A Flickr photo id (decimal digits).
    pub const PHOTO_ID: &str = "photo_id";
    /// NSID of the photo's owner.
    pub const OWNER_ID: &str = "owner_id";
    /// When the user favourited the photo.
    pub const DATE_FAVED: &str = "date_faved";
    /// The owner's display name.
    pub const OWNER_NAME: &str = "owner_name";
    /// Photo title.
    pub const TITLE: &str = "title";
    /// Flickr image server, part of the thumbnail URL.
    pub const SERVER: &str = "server";
    /// Flickr image secret, part of the thumbnail URL.
    pub const SECRET: &str = "secret";
    /// Space-separated tags.
    pub const TAGS: &str = "tags";
    /// When the photo was uploaded.
    pub const DATE_UPLOAD: &str = "date_upload";
    /// NSID of a followed person.
    pub const CONTACT_ID: &str = "contact_id";
    /// Flickr username, when known.
    pub const USERNAME: &str = "username";
    /// When the user became tracked.
    pub const ADDED_AT: &str = "added_at";
    /// NSID of a dismissed person.
    pub const DISMISSED_USER_ID: &str = "dismissed_user_id";
    /// 1-based position in a user's list.
    pub const RANK: &str = "rank";
    /// Recommendation score.
    pub const SCORE: &str = "score";
    /// How many scoring neighbors favourited the photo.
    pub const NEIGHBOR_COUNT: &str = "neighbor_count";
    /// The neighbors who contributed most to a photo rec, best first.
    pub const TOP_NEIGHBORS: &str = "top_neighbors";
    /// The recommended photographer's NSID.
    pub const PHOTOGRAPHER_ID: &str = "photographer_id";
    /// |F(u) ∩ F(n)|.
    pub const COMMON_FAVORITES: &str = "common_favorites";
    /// |F(n)|.
    pub const TOTAL_FAVORITES: &str = "total_favorites";
    /// For `itemknn` recs: the user's favourites the photo is most similar to.
    pub const SIMILAR_TO: &str = "similar_to";
    /// The algorithm that produced a row.
    pub const ALGORITHM: &str = "algorithm";
    /// A Flickr tag.
    pub const TAG: &str = "tag";
}

/// The Arrow type of every timestamp column: microseconds, UTC. Parquet stores it as
/// `TIMESTAMP(MICROS, isAdjustedToUTC=true)`, which DuckDB, Polars and Athena read
/// as a timestamp with time zone.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// The metadata key that marks a column added to the contract after files were
/// first written: older files lack it, and readers fill it with nulls.
pub const ADDED_LATER: &str = "faverecs:added_later";

/// `field`, marked as added later (see [`ADDED_LATER`]); it must be nullable.
fn added_later(field: Field) -> Field {
    field
        .with_nullable(true)
        .with_metadata(std::collections::HashMap::from([(
            ADDED_LATER.to_string(),
            "true".to_string(),
        )]))
}

/// Whether a contract column was added later (older files may lack it).
pub fn is_added_later(field: &Field) -> bool {
    field.metadata().contains_key(ADDED_LATER)
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

static FAVORITES: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::USER_ID, false),
        utf8(col::PHOTO_ID, false),
        utf8(col::OWNER_ID, true),
        Field::new(col::DATE_FAVED, timestamp_type(), true),
    ])
});

static PHOTOS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::PHOTO_ID, false),
        utf8(col::OWNER_ID, false),
        utf8(col::OWNER_NAME, true),
        utf8(col::TITLE, true),
        utf8(col::SERVER, true),
        utf8(col::SECRET, true),
        utf8(col::TAGS, true),
        Field::new(col::DATE_UPLOAD, timestamp_type(), true),
    ])
});

static CONTACTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::USER_ID, false),
        utf8(col::CONTACT_ID, false),
    ])
});

static TRACKED_USERS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::USER_ID, false),
        utf8(col::USERNAME, true),
        Field::new(col::ADDED_AT, timestamp_type(), true),
    ])
});

static DISMISSALS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::USER_ID, false),
        utf8(col::PHOTO_ID, true),
        utf8(col::DISMISSED_USER_ID, true),
    ])
});

static EXTRACT_STATE: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::USER_ID, false),
        Field::new("last_pulled_at", timestamp_type(), true),
        Field::new("last_full_pull_at", timestamp_type(), true),
        Field::new("newest_date_faved", timestamp_type(), true),
        utf8("outcome", true),
        Field::new("next_attempt_at", timestamp_type(), true),
        // Added later: files written before lack them (read as null).
        added_later(Field::new("favorites_total", DataType::Int64, true)),
        added_later(Field::new("refresh_hours", DataType::Float64, true)),
    ])
});

static PHOTO_RECS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::USER_ID, false),
        Field::new(col::RANK, DataType::Int32, false),
        utf8(col::PHOTO_ID, false),
        utf8(col::OWNER_ID, true),
        Field::new(col::SCORE, DataType::Float64, false),
        Field::new(col::NEIGHBOR_COUNT, DataType::Int32, false),
        Field::new(
            col::TOP_NEIGHBORS,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
            false,
        ),
        Field::new(
            col::SIMILAR_TO,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
            false,
        ),
        utf8(col::ALGORITHM, false),
        // Added later: runs written before lack it (read as false).
        added_later(Field::new("fallback", DataType::Boolean, true)),
    ])
});

static TAG_PHOTOS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::TAG, false),
        Field::new(col::RANK, DataType::Int32, false),
        utf8(col::PHOTO_ID, false),
        Field::new("favorites", DataType::Int64, false),
    ])
});

static METRICS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let f = |name: &str| Field::new(name, DataType::Float64, false);
    schema(vec![
        utf8(col::ALGORITHM, false),
        Field::new("k", DataType::Int32, false),
        Field::new("users_evaluated", DataType::Int64, false),
        f("precision"),
        f("recall"),
        f("ndcg"),
        f("map"),
        f("hit_rate"),
        f("coverage"),
        utf8("split", false),
    ])
});

static FIRST_RECOMMENDED: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::USER_ID, false),
        utf8(col::PHOTO_ID, false),
        Field::new("first_recommended_at", timestamp_type(), false),
        utf8("first_run_id", false),
    ])
});

static SIMILAR_PHOTOS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::PHOTO_ID, false),
        Field::new(col::RANK, DataType::Int32, false),
        utf8("similar_photo_id", false),
        Field::new(col::SCORE, DataType::Float64, false),
        Field::new(col::COMMON_FAVORITES, DataType::Int64, false),
        utf8(col::ALGORITHM, false),
    ])
});

static PHOTOGRAPHER_RECS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8(col::USER_ID, false),
        Field::new(col::RANK, DataType::Int32, false),
        utf8(col::PHOTOGRAPHER_ID, false),
        Field::new(col::SCORE, DataType::Float64, false),
        Field::new(col::COMMON_FAVORITES, DataType::Int64, false),
        Field::new(col::TOTAL_FAVORITES, DataType::Int64, false),
    ])
});

impl Table {
    /// Every table of the contract.
    pub const ALL: [Table; 12] = [
        Table::Favorites,
        Table::Photos,
        Table::Contacts,
        Table::TrackedUsers,
        Table::Dismissals,
        Table::ExtractState,
        Table::PhotoRecs,
        Table::PhotographerRecs,
        Table::FirstRecommended,
        Table::SimilarPhotos,
        Table::TagPhotos,
        Table::Metrics,
    ];

    /// Every raw table, in the order the docs list them.
    pub const RAW: [Table; 6] = [
        Table::Favorites,
        Table::Photos,
        Table::Contacts,
        Table::TrackedUsers,
        Table::Dismissals,
        Table::ExtractState,
    ];

    /// The tables a score run writes. `photos` and `tracked_users` are included: a
    /// run carries the metadata of every photo it recommends and the users it was
    /// made for, so it is self-contained for `serve`.
    pub const RUN: [Table; 8] = [
        Table::PhotoRecs,
        Table::PhotographerRecs,
        Table::SimilarPhotos,
        Table::TagPhotos,
        Table::Metrics,
        Table::FirstRecommended,
        Table::Photos,
        Table::TrackedUsers,
    ];

    /// The table's name, used as its folder name and in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::Favorites => "favorites",
            Table::Photos => "photos",
            Table::Contacts => "contacts",
            Table::TrackedUsers => "tracked_users",
            Table::Dismissals => "dismissals",
            Table::ExtractState => "extract_state",
            Table::PhotoRecs => "photo_recs",
            Table::PhotographerRecs => "photographer_recs",
            Table::FirstRecommended => "first_recommended",
            Table::SimilarPhotos => "similar_photos",
            Table::TagPhotos => "tag_photos",
            Table::Metrics => "metrics",
        }
    }

    /// The table's Arrow schema.
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Favorites => FAVORITES.clone(),
            Table::Photos => PHOTOS.clone(),
            Table::Contacts => CONTACTS.clone(),
            Table::TrackedUsers => TRACKED_USERS.clone(),
            Table::Dismissals => DISMISSALS.clone(),
            Table::ExtractState => EXTRACT_STATE.clone(),
            Table::PhotoRecs => PHOTO_RECS.clone(),
            Table::PhotographerRecs => PHOTOGRAPHER_RECS.clone(),
            Table::FirstRecommended => FIRST_RECOMMENDED.clone(),
            Table::SimilarPhotos => SIMILAR_PHOTOS.clone(),
            Table::TagPhotos => TAG_PHOTOS.clone(),
            Table::Metrics => METRICS.clone(),
        }
    }

    /// The columns that identify a row: rows agreeing on these are duplicates.
    pub fn key(self) -> &'static [&'static str] {
        match self {
            Table::Favorites => &[col::USER_ID, col::PHOTO_ID],
            Table::Photos => &[col::PHOTO_ID],
            Table::Contacts => &[col::USER_ID, col::CONTACT_ID],
            Table::TrackedUsers => &[col::USER_ID],
            Table::Dismissals => &[col::USER_ID, col::PHOTO_ID, col::DISMISSED_USER_ID],
            Table::ExtractState => &[col::USER_ID],
            Table::PhotoRecs => &[col::USER_ID, col::ALGORITHM, col::RANK],
            Table::PhotographerRecs => &[col::USER_ID, col::RANK],
            Table::FirstRecommended => &[col::USER_ID, col::PHOTO_ID],
            Table::SimilarPhotos => &[col::PHOTO_ID, col::ALGORITHM, col::RANK],
            Table::TagPhotos => &[col::TAG, col::RANK],
            Table::Metrics => &[col::ALGORITHM, "k"],
        }
    }

    /// Whether the raw table is stored in hash buckets by user
    /// ([`crate::store::layout`]): the large ones, written a few users at a time.
    pub fn bucketed(self) -> bool {
        matches!(self, Table::Favorites | Table::Contacts | Table::Dismissals)
    }

    /// Where a raw table's single snapshot file lives (for a bucketed table:
    /// lived, before it was migrated to buckets).
    pub fn raw_path(self) -> Path {
        Path::from(format!("raw/{}/data.parquet", self.name()))
    }
}

/// A column type as `faverecs tables --json` prints it (and the Glue tables in
/// `terraform/analytics.tf` are checked against): `utf8`, `int32`, `int64`,
/// `float64`, `boolean`, `timestamp[us, UTC]`, `list<…>`.
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 => "utf8".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "float64".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => format!("timestamp[us, {tz}]"),
        DataType::List(item) => format!("list<{}>", type_name(item.data_type())),
        other => format!("{other}"),
    }
}

/// The folder of all runs.
pub const RUNS_DIR: &str = "runs";

/// The published-run pointer.
pub const CURRENT: &str = "CURRENT";

/// A copy of the pointer in a folder of its own, for query engines that read
/// folders, not objects (Athena's `current_run` table). `CURRENT` is the truth.
pub const PUBLISHED_COPY: &str = "published/current.json";

/// The folder of one table inside a run.
pub fn run_table_dir(run_id: &str, table: Table) -> Path {
    Path::from(format!("{RUNS_DIR}/{run_id}/{}", table.name()))
}

/// A run's manifest file.
pub fn manifest_path(run_id: &str) -> Path {
    Path::from(format!("{RUNS_DIR}/{run_id}/manifest.json"))
}

/// True when `id` looks like a Flickr NSID: digits, `@N`, two digits
/// (`38134034@N04`). Checked on import and on every request.
pub fn is_nsid(id: &str) -> bool {
    let Some((num, tail)) = id.split_once("@N") else {
        return false;
    };
    !num.is_empty()
        && num.len() <= 20
        && num.bytes().all(|b| b.is_ascii_digit())
        && tail.len() == 2
        && tail.bytes().all(|b| b.is_ascii_digit())
}

/// True when `id` looks like a Flickr photo id: 1 to 20 decimal digits.
pub fn is_photo_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// A run id is generated by `score` as `YYYYMMDDTHHMMSSZ-xxxxxx` (UTC start time,
/// then six lower-case hex digits). Anything read back from storage or a flag is
/// checked against exactly this shape before it is used in a path, and folders
/// under `runs/` of any other name are not runs.
pub fn is_run_id(id: &str) -> bool {
    let b = id.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 23
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Whether a run name given by a person (`--run`) is safe to put in a path:
/// 1 to 64 letters, digits, `-` and `_`. A safe name that is not a run id simply
/// names no run; an unsafe one is refused before it reaches storage.
pub fn is_safe_run_name(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsid_and_photo_id_shapes() {
        assert!(is_nsid("38134034@N04"));
        assert!(!is_nsid("38134034@N4"));
        assert!(!is_nsid("@N04"));
        assert!(!is_nsid("../etc/passwd"));
        assert!(!is_nsid("abc@N04"));
        assert!(is_photo_id("51737769056"));
        assert!(!is_photo_id("5173x"));
        assert!(!is_photo_id(""));
        assert!(!is_photo_id("123456789012345678901"));
        assert!(is_run_id("20261123T013705Z-ab12cd"));
        assert!(!is_run_id("../x"));
        assert!(!is_run_id("backup"));
        assert!(!is_run_id("20261123T013705Z-AB12CD"));
        assert!(!is_run_id("20261123T013705Z-ab12cd-old"));
        assert!(!is_run_id("20261123X013705Z-ab12cd"));
    }

    #[test]
    fn every_table_has_a_distinct_name_and_its_key_columns_exist() {
        let all = Table::ALL;
        let names: std::collections::HashSet<_> = all.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), all.len());
        for t in all {
            for k in t.key() {
                assert!(
                    t.schema().field_with_name(k).is_ok(),
                    "{} lacks {k}",
                    t.name()
                );
            }
        }
    }
}
