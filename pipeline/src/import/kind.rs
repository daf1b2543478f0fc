//! What each kind of import expects: its raw table, its columns and how each is
//! checked, and the cells read from a file before validation.

use std::path::Path;

use crate::model::{Table, col};
use crate::text::{capped, quoted};

use super::error::ImportError;

/// What a file is imported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// `user_id`, `photo_id`, optional `owner_id` and `date_faved`.
    Favorites,
    /// `user_id`, optional `username` and `added_at`.
    Tracked,
    /// `user_id`, `contact_id`.
    Contacts,
    /// `user_id` and exactly one of `photo_id` or `dismissed_user_id`.
    Dismissals,
    /// `photo_id`, `owner_id`; optional `owner_name`, `title`, `server`, `secret`,
    /// `tags`, `date_upload`.
    Photos,
}

/// How a column's values are checked.
#[derive(Clone, Copy)]
pub enum Check {
    Nsid,
    PhotoId,
    Text,
    Time,
}

/// One column a kind of import reads.
pub struct ColSpec {
    /// The column's name.
    pub name: &'static str,
    /// Whether a file must have it.
    pub required: bool,
    /// How its values are checked.
    pub check: Check,
}

const fn spec(name: &'static str, required: bool, check: Check) -> ColSpec {
    ColSpec {
        name,
        required,
        check,
    }
}

const FAVORITES_COLUMNS: &[ColSpec] = &[
    spec(col::USER_ID, true, Check::Nsid),
    spec(col::PHOTO_ID, true, Check::PhotoId),
    spec(col::OWNER_ID, false, Check::Nsid),
    spec(col::DATE_FAVED, false, Check::Time),
];
const TRACKED_COLUMNS: &[ColSpec] = &[
    spec(col::USER_ID, true, Check::Nsid),
    spec(col::USERNAME, false, Check::Text),
    spec(col::ADDED_AT, false, Check::Time),
];
const CONTACTS_COLUMNS: &[ColSpec] = &[
    spec(col::USER_ID, true, Check::Nsid),
    spec(col::CONTACT_ID, true, Check::Nsid),
];
const PHOTOS_COLUMNS: &[ColSpec] = &[
    spec(col::PHOTO_ID, true, Check::PhotoId),
    spec(col::OWNER_ID, true, Check::Nsid),
    spec(col::OWNER_NAME, false, Check::Text),
    spec(col::TITLE, false, Check::Text),
    spec(col::SERVER, false, Check::Text),
    spec(col::SECRET, false, Check::Text),
    spec(col::TAGS, false, Check::Text),
    spec(col::DATE_UPLOAD, false, Check::Time),
];
const DISMISSALS_COLUMNS: &[ColSpec] = &[
    spec(col::USER_ID, true, Check::Nsid),
    spec(col::PHOTO_ID, false, Check::PhotoId),
    spec(col::DISMISSED_USER_ID, false, Check::Nsid),
];

impl ImportKind {
    /// The raw table this kind lands in.
    pub fn table(self) -> Table {
        match self {
            ImportKind::Favorites => Table::Favorites,
            ImportKind::Tracked => Table::TrackedUsers,
            ImportKind::Contacts => Table::Contacts,
            ImportKind::Dismissals => Table::Dismissals,
            ImportKind::Photos => Table::Photos,
        }
    }

    /// The columns a file of this kind may have.
    pub fn columns(self) -> &'static [ColSpec] {
        match self {
            ImportKind::Favorites => FAVORITES_COLUMNS,
            ImportKind::Tracked => TRACKED_COLUMNS,
            ImportKind::Contacts => CONTACTS_COLUMNS,
            ImportKind::Dismissals => DISMISSALS_COLUMNS,
            ImportKind::Photos => PHOTOS_COLUMNS,
        }
    }

    /// What a file of this kind needs, for messages.
    pub fn hint(self) -> String {
        let cols = self.columns();
        let req: Vec<_> = cols.iter().filter(|c| c.required).map(|c| c.name).collect();
        let opt: Vec<_> = cols
            .iter()
            .filter(|c| !c.required)
            .map(|c| c.name)
            .collect();
        format!(
            "{} needs {} and may have {}",
            self.table().name(),
            req.join(", "),
            if opt.is_empty() {
                "nothing else".into()
            } else {
                opt.join(", ")
            }
        )
    }
}

/// One cell as read from the file, before validation.
pub enum Cell {
    Str(String),
    Int(i64),
    Micros(i64),
}

/// Cells by column (`None`: the file lacks the column), then by row.
pub type Cells = Vec<Option<Vec<Option<Cell>>>>;

/// The error for a required column the file lacks.
pub fn missing(
    kind: ImportKind,
    file: &Path,
    column: &'static str,
    found: &[String],
) -> ImportError {
    ImportError::MissingColumn {
        file: file.to_path_buf(),
        column,
        found: if found.is_empty() {
            "none".into()
        } else {
            capped(&found.join(", "), 200)
        },
        hint: kind.hint(),
    }
}

/// Refuses a header that names a column twice: which one would win is a guess.
pub fn check_unique(file: &Path, found: &[String]) -> Result<(), ImportError> {
    let mut seen = std::collections::HashMap::with_capacity(found.len());
    for (i, name) in found.iter().enumerate() {
        if let Some(first) = seen.insert(name.as_str(), i) {
            return Err(ImportError::DuplicateColumn {
                file: file.to_path_buf(),
                column: quoted(name),
                first: first + 1,
                second: i + 1,
            });
        }
    }
    Ok(())
}
