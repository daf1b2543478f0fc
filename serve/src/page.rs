//! Paging: the `limit`/`offset`/`algorithm` query, the validated window, and the
//! JSON shape of one page of any list.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use pipeline::serving::{List, page_json};

use crate::error::{ApiError, bad_query};

/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 100;
/// Default page size.
pub use pipeline::serving::DEFAULT_LIMIT;
pub use pipeline::serving::UserList;
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

/// One page of `list` (none: an empty list) in the shape of [`Page`], from
/// the items' stored JSON: the window's items are joined, nothing is decoded.
pub fn list_page<A: Serialize>(
    about: &A,
    run_id: &str,
    w: &Window,
    list: Option<&List>,
) -> Result<axum::body::Bytes, ApiError> {
    let total = list.map_or(0, List::len);
    let items = (w.offset.min(total)..(w.offset.saturating_add(w.limit)).min(total))
        .filter_map(|i| list.map(|l| l.item(i)));
    page_json(about, run_id, total, w.offset, w.limit, items)
        .map(Into::into)
        .map_err(|e| ApiError::Internal(format!("serialising a page: {e}")))
}

/// The window most requests ask for: no parameters.
pub fn default_window() -> Window {
    Window {
        limit: DEFAULT_LIMIT,
        offset: 0,
        algorithm: None,
    }
}
