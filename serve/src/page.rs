//! Paging: the `limit`/`offset`/`algorithm` query, the validated window, and the
//! JSON shape of one page of any list.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, bad_query};

/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 100;
/// Default page size.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest offset a client may ask for (lists are never longer).
pub const MAX_OFFSET: usize = 10_000;

/// `limit` and `offset`, as text so that a bad value gets our message.
#[derive(Debug, Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items to return, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Items to skip, 0 to 10000 (default 0).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 10000)]
    offset: Option<String>,
    /// The algorithm whose list to return; each endpoint documents its own.
    #[param(ignore)]
    algorithm: Option<String>,
}

/// A validated page window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Items to return.
    pub limit: usize,
    /// Items to skip.
    pub offset: usize,
    /// The algorithm asked for, if any.
    pub algorithm: Option<String>,
}

fn parse_bounded(
    name: &str,
    value: Option<&str>,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(v) = value else { return Ok(default) };
    v.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("{name} must be a whole number from {min} to {max}"))
        })
}

impl Window {
    /// The window's part of a list (empty past its end).
    pub fn slice<'a, T>(&self, all: &'a [T]) -> &'a [T] {
        let start = self.offset.min(all.len());
        &all[start..(start + self.limit).min(all.len())]
    }
}

/// Parses the window, mapping a malformed query string to a 400.
pub fn window(query: Result<Query<PageQuery>, QueryRejection>) -> Result<Window, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    Ok(Window {
        limit: parse_bounded("limit", q.limit.as_deref(), DEFAULT_LIMIT, 1, MAX_LIMIT)?,
        offset: parse_bounded("offset", q.offset.as_deref(), 0, 0, MAX_OFFSET)?,
        algorithm: q.algorithm,
    })
}

/// One page of a list, as every list endpoint answers it: what the list is
/// about (`about`'s fields appear inline), the run, the window, and the items.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<'a, A: Serialize, T: Serialize> {
    /// What the list is of: a user and algorithm, a tag, a photo.
    #[serde(flatten)]
    pub about: A,
    /// The run the list comes from.
    pub run_id: &'a str,
    /// Items in the whole list.
    pub total: usize,
    /// Items skipped.
    pub offset: usize,
    /// Items asked for.
    pub limit: usize,
    /// The window's items.
    pub items: &'a [T],
}

/// What a user's list is of.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList<'a> {
    /// The user.
    pub user_id: &'a str,
    /// The algorithm that made the list.
    pub algorithm: &'a str,
}

impl<'a, A: Serialize, T: Serialize> Page<'a, A, T> {
    /// The window `w` of `all`.
    pub fn new(about: A, run_id: &'a str, w: &Window, all: &'a [T]) -> Self {
        Page {
            about,
            run_id,
            total: all.len(),
            offset: w.offset,
            limit: w.limit,
            items: w.slice(all),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// The JSON body of one page of a user's list.
pub fn user_page_json<T: Serialize>(
    run_id: &str,
    user_id: &str,
    algorithm: &str,
    w: &Window,
    all: &[T],
) -> Result<Vec<u8>, serde_json::Error> {
    Page::new(UserList { user_id, algorithm }, run_id, w, all).to_json()
}

/// The window most requests ask for: no parameters.
pub fn default_window() -> Window {
    Window {
        limit: DEFAULT_LIMIT,
        offset: 0,
        algorithm: None,
    }
}
