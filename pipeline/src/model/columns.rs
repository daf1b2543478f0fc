//! Typed column access to every contract table, resolved by name.
//!
//! For each table there are two structs, generated from one list of its columns:
//!
//! - `XxxColumns<'a>` borrows a batch's columns, each found by its name and
//!   downcast to its Arrow array type once per batch. Code reads
//!   `cols.photo_id.value(i)`, never `batch.column(2)`, so a schema whose columns
//!   are reordered, or gain a new one, is still read right; a missing or mistyped
//!   column is a [`ColumnError`] naming the table and the column.
//! - `XxxArrays` holds owned arrays, one field per column, and
//!   [`into_batch`](PhotoRecsArrays::into_batch) places each in the contract
//!   schema's order by name.
//!
//! The column lists here are checked against [`Table::schema`] by a test, so the
//! two cannot drift apart.

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_schema::ArrowError;

use super::Table;

/// A contract column that a batch lacks, or holds with another type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table {table}: column {column} {problem} (see docs/data-model.md)")]
pub struct ColumnError {
    /// The table's name.
    pub table: &'static str,
    /// The column's name.
    pub column: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// The column `name` of `batch`, downcast to `T`.
pub fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    table: Table,
    name: &'static str,
) -> Result<&'a T, ColumnError> {
    let err = |problem: String| ColumnError {
        table: table.name(),
        column: name,
        problem,
    };
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| err("is missing".to_string()))?;
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        err(format!(
            "has type {}, expected {}",
            array.data_type(),
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("?")
        ))
    })
}

/// Places named arrays in `table`'s schema order.
fn assemble(
    table: Table,
    mut named: Vec<(&'static str, ArrayRef)>,
) -> Result<RecordBatch, ArrowError> {
    let schema = table.schema();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let at = named
            .iter()
            .position(|(n, _)| n == field.name())
            .ok_or_else(|| {
                ArrowError::SchemaError(format!(
                    "table {}: no array for column {}",
                    table.name(),
                    field.name()
                ))
            })?;
        columns.push(named.swap_remove(at).1);
    }
    RecordBatch::try_new(schema, columns)
}

/// The column `name` of `batch` if it has one (a column added to the contract
/// later, which older files lack), downcast to `T`; a mistyped one is an error.
pub fn added_column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    table: Table,
    name: &'static str,
) -> Result<Option<&'a T>, ColumnError> {
    if batch.column_by_name(name).is_none() {
        return Ok(None);
    }
    column(batch, table, name).map(Some)
}

macro_rules! table_columns {
    (
        $(#[$doc:meta])*
        $view:ident, $arrays:ident for $table:path {
            $($field:ident: $ty:ty),+ $(,)?
        }
        $(added since a later release {
            $($added:ident: $aty:ty),+ $(,)?
        })?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $view<'a> {
            $(
                #[doc = concat!("The `", stringify!($field), "` column.")]
                pub $field: &'a $ty,
            )+
            $($(
                #[doc = concat!("The `", stringify!($added), "` column; `None` in files written before it was added.")]
                pub $added: Option<&'a $aty>,
            )+)?
        }

        impl<'a> $view<'a> {
            /// The column names, in the order this struct lists them.
            pub const NAMES: &'static [&'static str] =
                &[$(stringify!($field)),+ $($(, stringify!($added))+)?];

            /// Finds every column of `batch` by name.
            pub fn new(batch: &'a RecordBatch) -> Result<Self, ColumnError> {
                Ok(Self {
                    $($field: column(batch, $table, stringify!($field))?,)+
                    $($($added: added_column(batch, $table, stringify!($added))?,)+)?
                })
            }
        }

        #[doc = concat!("Owned arrays of one batch, assembled in schema order by [`", stringify!($arrays), "::into_batch`].")]
        #[derive(Debug, Clone)]
        pub struct $arrays {
            $(
                #[doc = concat!("The `", stringify!($field), "` column.")]
                pub $field: ArrayRef,
            )+
            $($(
                #[doc = concat!("The `", stringify!($added), "` column.")]
                pub $added: ArrayRef,
            )+)?
        }

        impl $arrays {
            /// The batch, its columns in the contract's order.
            pub fn into_batch(self) -> Result<RecordBatch, ArrowError> {
                assemble($table, vec![$((stringify!($field), self.$field)),+ $($(, (stringify!($added), self.$added))+)?])
            }
        }
    };
}

table_columns! {
    /// `favorites`.
    FavoritesColumns, FavoritesArrays for Table::Favorites {
        user_id: StringArray,
        photo_id: StringArray,
        owner_id: StringArray,
        date_faved: TimestampMicrosecondArray,
    }
}

table_columns! {
    /// `photos`.
    PhotosColumns, PhotosArrays for Table::Photos {
        photo_id: StringArray,
        owner_id: StringArray,
        owner_name: StringArray,
        title: StringArray,
        server: StringArray,
        secret: StringArray,
        tags: StringArray,
        date_upload: TimestampMicrosecondArray,
    }
}

table_columns! {
    /// `contacts`.
    ContactsColumns, ContactsArrays for Table::Contacts {
        user_id: StringArray,
        contact_id: StringArray,
    }
}

table_columns! {
    /// `tracked_users`.
    TrackedUsersColumns, TrackedUsersArrays for Table::TrackedUsers {
        user_id: StringArray,
        username: StringArray,
        added_at: TimestampMicrosecondArray,
    }
}

table_columns! {
    /// `dismissals`.
    DismissalsColumns, DismissalsArrays for Table::Dismissals {
        user_id: StringArray,
        photo_id: StringArray,
        dismissed_user_id: StringArray,
    }
}

table_columns! {
    /// `extract_state`.
    ExtractStateColumns, ExtractStateArrays for Table::ExtractState {
        user_id: StringArray,
        last_pulled_at: TimestampMicrosecondArray,
        last_full_pull_at: TimestampMicrosecondArray,
        newest_date_faved: TimestampMicrosecondArray,
        outcome: StringArray,
        next_attempt_at: TimestampMicrosecondArray,
    }
    added since a later release {
        favorites_total: Int64Array,
        refresh_hours: Float64Array,
    }
}

table_columns! {
    /// `photo_recs`.
    PhotoRecsColumns, PhotoRecsArrays for Table::PhotoRecs {
        user_id: StringArray,
        rank: Int32Array,
        photo_id: StringArray,
        owner_id: StringArray,
        score: Float64Array,
        neighbor_count: Int32Array,
        top_neighbors: ListArray,
        similar_to: ListArray,
        algorithm: StringArray,
    }
    added since a later release {
        fallback: BooleanArray,
    }
}

table_columns! {
    /// `photographer_recs`.
    PhotographerRecsColumns, PhotographerRecsArrays for Table::PhotographerRecs {
        user_id: StringArray,
        rank: Int32Array,
        photographer_id: StringArray,
        score: Float64Array,
        common_favorites: Int64Array,
        total_favorites: Int64Array,
    }
}

table_columns! {
    /// `first_recommended`.
    FirstRecommendedColumns, FirstRecommendedArrays for Table::FirstRecommended {
        user_id: StringArray,
        photo_id: StringArray,
        first_recommended_at: TimestampMicrosecondArray,
        first_run_id: StringArray,
    }
}

table_columns! {
    /// `similar_photos`.
    SimilarPhotosColumns, SimilarPhotosArrays for Table::SimilarPhotos {
        photo_id: StringArray,
        rank: Int32Array,
        similar_photo_id: StringArray,
        score: Float64Array,
        common_favorites: Int64Array,
        algorithm: StringArray,
    }
}

table_columns! {
    /// `tag_photos`.
    TagPhotosColumns, TagPhotosArrays for Table::TagPhotos {
        tag: StringArray,
        rank: Int32Array,
        photo_id: StringArray,
        favorites: Int64Array,
    }
}

table_columns! {
    /// `metrics`.
    MetricsColumns, MetricsArrays for Table::Metrics {
        algorithm: StringArray,
        k: Int32Array,
        users_evaluated: Int64Array,
        precision: Float64Array,
        recall: Float64Array,
        ndcg: Float64Array,
        map: Float64Array,
        hit_rate: Float64Array,
        coverage: Float64Array,
        split: StringArray,
    }
}

/// The column names each view lists, by table (for the drift test).
pub fn names(table: Table) -> &'static [&'static str] {
    match table {
        Table::Favorites => FavoritesColumns::NAMES,
        Table::Photos => PhotosColumns::NAMES,
        Table::Contacts => ContactsColumns::NAMES,
        Table::TrackedUsers => TrackedUsersColumns::NAMES,
        Table::Dismissals => DismissalsColumns::NAMES,
        Table::ExtractState => ExtractStateColumns::NAMES,
        Table::PhotoRecs => PhotoRecsColumns::NAMES,
        Table::PhotographerRecs => PhotographerRecsColumns::NAMES,
        Table::FirstRecommended => FirstRecommendedColumns::NAMES,
        Table::SimilarPhotos => SimilarPhotosColumns::NAMES,
        Table::TagPhotos => TagPhotosColumns::NAMES,
        Table::Metrics => MetricsColumns::NAMES,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{Field, Schema};

    use super::*;
    use crate::model::arrow::{string_array, timestamp_array};

    #[test]
    fn every_view_lists_exactly_its_tables_schema_columns() {
        for table in Table::ALL {
            let schema = table.schema();
            let schema: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(names(table), schema.as_slice(), "{}", table.name());
        }
    }

    #[test]
    fn a_column_is_found_by_name_whatever_the_order() {
        // `contacts` written with its columns swapped, and an extra column first.
        let schema = Arc::new(Schema::new(vec![
            Field::new("note", arrow_schema::DataType::Utf8, true),
            Field::new("contact_id", arrow_schema::DataType::Utf8, false),
            Field::new("user_id", arrow_schema::DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                string_array(vec![None]),
                string_array(vec![Some("2@N01".into())]),
                string_array(vec![Some("1@N01".into())]),
            ],
        )
        .expect("batch");
        let cols = ContactsColumns::new(&batch).expect("columns by name");
        assert_eq!(cols.user_id.value(0), "1@N01");
        assert_eq!(cols.contact_id.value(0), "2@N01");
    }

    #[test]
    fn a_missing_or_mistyped_column_is_named() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", arrow_schema::DataType::Utf8, false),
            Field::new("contact_id", crate::model::timestamp_type(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                string_array(vec![Some("1@N01".into())]),
                timestamp_array(vec![None]),
            ],
        )
        .expect("batch");
        let err = ContactsColumns::new(&batch).expect_err("mistyped");
        assert_eq!(err.column, "contact_id");
        assert!(err.to_string().contains("contacts"), "{err}");
        let err = PhotosColumns::new(&batch).expect_err("missing");
        assert_eq!(err.column, "photo_id");
        assert!(err.to_string().contains("is missing"), "{err}");
    }

    #[test]
    fn arrays_are_assembled_in_schema_order() {
        let batch = ContactsArrays {
            contact_id: string_array(vec![Some("2@N01".into())]),
            user_id: string_array(vec![Some("1@N01".into())]),
        }
        .into_batch()
        .expect("batch");
        assert_eq!(batch.schema(), Table::Contacts.schema());
        let cols = ContactsColumns::new(&batch).expect("columns");
        assert_eq!(cols.user_id.value(0), "1@N01");
    }
}
