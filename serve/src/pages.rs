//! Server-rendered HTML pages. maud escapes every interpolated value, so titles and
//! names from the data render as text, never as markup. The pages need no
//! JavaScript.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::api::{ApiError, user_lists};
use crate::error::bad_query;
use crate::snapshot::{
    PhotoInfo, PhotoItem, PhotographerItem, SimilarItem, Snapshot, TagItem, decode,
};
use crate::state::AppState;

/// Photos per page of the grid.
pub const PER_PAGE: usize = 24;

/// The stylesheet, served from `/static/style.css` so the CSP can forbid inline
/// styles.
pub const STYLE: &str = include_str!("style.css");

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · faverecs" }
                link rel="stylesheet" href="/static/style.css";
                script src="/static/app.js" defer {}
            }
            body {
                header { a.brand href="/" { "faverecs" } }
                main { (body) }
            }
        }
    }
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = layout(
        "Error",
        html! { h1 { "Sorry" } p.error { (message) } p { a href="/" { "Back to the start" } } },
    );
    (status, Html(body.into_string())).into_response()
}

/// Errors on HTML routes render as pages, with the same status codes as the API.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        error_page(status, &self.0.to_string())
    }
}

/// The script that swaps broken thumbnails for placeholders.
pub const SCRIPT: &str = include_str!("app.js");

/// `GET /static/style.css`
pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// `GET /static/app.js`
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// `GET /`: the users with recommendations in the loaded run.
pub async fn home(State(state): State<AppState>) -> Result<Html<String>, PageError> {
    let snapshot = state.serving()?;
    let users = snapshot.user_ids();
    let body = html! {
        h1 { "Photo recommendations" }
        form.search action="/lookup" method="get" {
            label for="q" { "Paste a Flickr photostream or profile URL, or type an NSID or username" }
            div.row {
                input #q type="search" name="q" required maxlength="512" placeholder="https://www.flickr.com/photos/…";
                button type="submit" { "Show recommendations" }
            }
        }
        p.meta {
            "Run " code { (snapshot.manifest.run_id) } ", published " (snapshot.published_at.format("%Y-%m-%d %H:%M UTC"))
            " (" (age_text(snapshot.age_seconds())) " ago). " a href="/runs" { "All runs" }
        }
        h2 { "Tracked users" }
        ul.users {
            @for u in users {
                li { a href={ "/users/" (u) } { (u) } }
            }
        }
    };
    Ok(Html(layout("faverecs", body).into_string()))
}

fn age_text(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// `GET /lookup?q=`: the search box. Redirects to the user's page.
pub async fn lookup(
    State(state): State<AppState>,
    query: Result<Query<crate::api::LookupQuery>, QueryRejection>,
) -> Result<axum::response::Redirect, PageError> {
    let (_, id) = crate::api::resolve_lookup(&state, query)?;
    Ok(axum::response::Redirect::to(&format!("/users/{id}")))
}

/// `GET /runs`: every run, its status, row counts and stage timings, and the
/// served run's offline-evaluation metrics.
pub async fn runs_page(State(state): State<AppState>) -> Result<Html<String>, PageError> {
    let runs = crate::api::run_items(&state).await?;
    let snapshot = state.snapshot();
    let body = html! {
        h1 { "Runs" }
        @if let Some(s) = &snapshot {
            h2 { "Offline evaluation of run " code { (s.manifest.run_id) } }
            @if s.metrics.is_empty() {
                p.meta { "This run was not evaluated. Run " code { "faverecs evaluate" } " (or set evaluate.enabled) and publish that run." }
            } @else {
                (crate::chart::metrics_chart(&s.algorithms, &s.metrics))
            }
            h2 { "All runs" }
        }
        table.people {
            thead { tr { th { "Run" } th { "Status" } th { "Photo recs" } th { "Photographer recs" } th { "Stages" } th { "Started" } } }
            tbody {
                @for r in &runs {
                    tr {
                        td { code { (r.run_id) } @if r.current { " " strong.current { "current" } } }
                        td { (r.status) }
                        @if let Some(m) = &r.manifest {
                            td { (m.rows_out.get("photo_recs").copied().unwrap_or(0)) }
                            td { (m.rows_out.get("photographer_recs").copied().unwrap_or(0)) }
                            td { @for st in &m.stages { (st.stage) " " (format!("{:.2}", st.seconds)) "s " } }
                            td { (m.started_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        } @else {
                            td colspan="4" {
                                @if r.status.starts_with("unreadable") { "the manifest cannot be read" }
                                @else { "no manifest (interrupted before it started)" }
                            }
                        }
                    }
                    @if let Some(e) = r.manifest.as_ref().and_then(|m| m.error.as_ref()) {
                        tr { td colspan="6" .error { (e) } }
                    }
                }
            }
        }
    };
    Ok(Html(layout("Runs", body).into_string()))
}

/// `?page=N&tab=…&algorithm=…` on the user page.
#[derive(Debug, Deserialize, Default)]
pub struct UserPageQuery {
    page: Option<String>,
    tab: Option<String>,
    algorithm: Option<String>,
}

fn tabs(user_id: &str, active: &str) -> Markup {
    let items = [
        ("Photos", format!("/users/{user_id}")),
        (
            "Photographers",
            format!("/users/{user_id}?tab=photographers"),
        ),
        ("Compare", format!("/users/{user_id}/compare")),
    ];
    html! {
        nav.tabs {
            @for (name, href) in items {
                @if name == active { span.active aria-current="page" { (name) } } @else { a href=(href) { (name) } }
            }
        }
    }
}

fn photographers_table(list: &[PhotographerItem]) -> Markup {
    html! {
        table.people {
            thead { tr { th { "#" } th { "Photographer" } th { "Favourites in common" } th { "Their favourites" } } }
            tbody {
                @for p in list {
                    tr {
                        td { (p.rank) }
                        td { a href=(p.photostream_url) rel="noopener noreferrer" { (p.photographer_name.as_deref().unwrap_or(&p.photographer_id)) } }
                        td { (p.common_favorites) }
                        td { (p.total_favorites) }
                    }
                }
            }
        }
    }
}

/// Why a photo is recommended, in the algorithm's terms.
fn explanation(snapshot: &Snapshot, algorithm: &str, p: &PhotoItem) -> Markup {
    let title = |id: &str| {
        snapshot
            .photo_info(id)
            .and_then(|i| i.title)
            .unwrap_or_else(|| format!("photo {id}"))
    };
    html! {
        @if p.fallback {
            p.why { "A popular photo in the tracked users' neighbourhood: there are not enough of your favourites yet for recommendations of your own." }
        } @else if !p.similar_to.is_empty() {
            p.why {
                "Similar to photos you favourited: "
                @for (i, id) in p.similar_to.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href={ "/photos/" (id) } { (title(id)) }
                }
                @if p.neighbor_count as usize > p.similar_to.len() {
                    " and " (p.neighbor_count as usize - p.similar_to.len()) " more"
                }
                "."
            }
        } @else if algorithm == "popular" {
            p.why { "Favourited by " (p.neighbor_count) " people in the tracked users' neighbourhood." }
        } @else if !p.top_neighbors.is_empty() {
            p.why {
                @if algorithm == "explore" { "A random pick to explore. " }
                "Favourited by " (p.top_neighbors.iter().map(|n| &**n).collect::<Vec<&str>>().join(", "))
                @if p.neighbor_count as usize > p.top_neighbors.len() {
                    " and " (p.neighbor_count as usize - p.top_neighbors.len()) " more"
                }
                ", whose tastes match yours."
            }
        }
    }
}

/// A photo's 150 px thumbnail, or a placeholder showing its title when the run
/// has no usable thumbnail URL (app.js also swaps in the placeholder when an
/// image fails to load). Grids load lazily; a photo page's own image does not.
fn thumbnail(src: Option<&str>, title: &str, lazy: bool) -> Markup {
    html! {
        @if let Some(src) = src {
            img src=(src) alt=(title) width="150" height="150" loading=[lazy.then_some("lazy")] data-fallback;
        } @else {
            div.placeholder role="img" aria-label=(title) { span { (title) } }
        }
    }
}

fn photo_card(snapshot: &Snapshot, algorithm: &str, p: &PhotoItem) -> Markup {
    let title = p.title.as_deref().unwrap_or("Untitled");
    let by = p
        .owner_name
        .as_deref()
        .or(p.owner_id.as_deref())
        .unwrap_or("unknown photographer");
    html! {
        li.card {
            a href=(p.photo_url) rel="noopener noreferrer" {
                (thumbnail(p.thumbnail_url.as_deref(), title, true))
            }
            div.caption {
                @if p.is_new { span.new title="First recommended in this run" { "new" } " " }
                @if p.fallback { span.fallback title="Not enough favourites yet for recommendations of your own" { "popular pick" } " " }
                a.title href=(p.photo_url) rel="noopener noreferrer" { (title) }
                " by "
                @if let Some(owner) = &p.owner_id {
                    a href={ "https://www.flickr.com/photos/" (owner) "/" } rel="noopener noreferrer" { (by) }
                } @else { (by) }
            }
            a.more href={ "/photos/" (p.photo_id) } { "Similar photos →" }
            (explanation(snapshot, algorithm, p))
        }
    }
}

/// `GET /users/{user_id}`: the grid of recommended photos, then photographers.
pub async fn user_page(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    query: Result<Query<UserPageQuery>, QueryRejection>,
) -> Result<Html<String>, PageError> {
    let Query(q) = query.map_err(bad_query)?;
    let (snapshot, user_id) = user_lists(&state, &user_id)?;
    let index = snapshot
        .algorithm_index(q.algorithm.as_deref())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "algorithm must be one of: {}",
                snapshot.algorithms.join(", ")
            ))
        })?;
    let algorithm = snapshot.algorithms[index].clone();
    // Links keep the algorithm only when it is not the default.
    let alg_param = if index == 0 {
        String::new()
    } else {
        format!("&algorithm={algorithm}")
    };
    let photos = snapshot.photo_list(&user_id, index)?;
    let total = photos.as_ref().map_or(0, |l| l.len());
    let pages = total.div_ceil(PER_PAGE).max(1);
    let page = match q.page.as_deref() {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=pages).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("page must be a whole number from 1 to {pages}"))
            })?,
    };
    let shown: Vec<PhotoItem> = decode(photos.as_ref(), (page - 1) * PER_PAGE..page * PER_PAGE)?;
    let photographers_tab = match q.tab.as_deref() {
        None | Some("photos") => false,
        Some("photographers") => true,
        Some(_) => {
            return Err(ApiError::BadRequest("tab must be photos or photographers".into()).into());
        }
    };
    let name = snapshot
        .username(&user_id)
        .flatten()
        .unwrap_or_else(|| user_id.clone());
    let photographers: Vec<PhotographerItem> = if photographers_tab {
        let list = snapshot.photographer_list(&user_id)?;
        decode(list.as_ref(), 0..usize::MAX)?
    } else {
        Vec::new()
    };
    let body = html! {
        h1 { "Recommended for " (name) }
        (tabs(&user_id, if photographers_tab { "Photographers" } else { "Photos" }))
        @if photographers_tab {
            p.meta { (photographers.len()) " photographers whose favourites overlap yours, from run " code { (snapshot.manifest.run_id) } }
            (photographers_table(&photographers))
        } @else {
            @if snapshot.algorithms.len() > 1 {
                nav.algorithms aria-label="Algorithm" {
                    "Algorithm: "
                    @for (i, a) in snapshot.algorithms.iter().enumerate() {
                        @if i == index { strong aria-current="true" { (a) } }
                        @else if i == 0 { a href={ "/users/" (user_id) } { (a) } }
                        @else { a href={ "/users/" (user_id) "?algorithm=" (a) } { (a) } }
                        " "
                    }
                }
            }
            p.meta { (total) " photos by " (algorithm) " from run " code { (snapshot.manifest.run_id) } }
            ul.grid { @for p in &shown { (photo_card(&snapshot, &algorithm, p)) } }
            nav.pager {
                @if page > 1 { a rel="prev" href={ "/users/" (user_id) "?page=" (page - 1) (alg_param) } { "← Previous" } }
                span { "Page " (page) " of " (pages) }
                @if page < pages { a rel="next" href={ "/users/" (user_id) "?page=" (page + 1) (alg_param) } { "Next →" } }
            }
        }
    };
    Ok(Html(
        layout(&format!("Recommended for {user_id}"), body).into_string(),
    ))
}

/// `GET /photos/{photo_id}`: a photo and its similar photos; each similar photo
/// links to its own page, so people can wander from photo to photo.
pub async fn photo_page(
    State(state): State<AppState>,
    Path(photo_id): Path<String>,
) -> Result<Html<String>, PageError> {
    crate::api::check_photo_id(&photo_id)?;
    let snapshot = state.serving()?;
    let info: Option<PhotoInfo> = snapshot.photo_info(&photo_id);
    let info = info.as_ref();
    let similar = match snapshot.similar_list(&photo_id)? {
        Some(list) => Some(decode::<SimilarItem>(Some(&list), 0..usize::MAX)?),
        None => None,
    };
    if info.is_none() && similar.is_none() {
        return Err(ApiError::NotFound(format!(
            "run {} knows nothing about photo {photo_id}",
            snapshot.manifest.run_id
        ))
        .into());
    }
    let title = info.and_then(|i| i.title.as_deref()).unwrap_or("Untitled");
    let flickr = info.map_or_else(
        || crate::snapshot::photo_url(&photo_id, None),
        |i| i.photo_url.clone(),
    );
    let body = html! {
        div.photo {
            (thumbnail(info.and_then(|i| i.thumbnail_url.as_deref()), title, false))
            div {
                h1 { (title) }
                @if let Some(i) = info {
                    p { "by " a href={ "https://www.flickr.com/photos/" (i.owner_id) "/" } rel="noopener noreferrer" { (i.owner_name.as_deref().unwrap_or(&i.owner_id)) } }
                }
                p { a href=(flickr) rel="noopener noreferrer" { "View on Flickr" } }
                @if let Some(i) = info.filter(|i| !i.tags.is_empty()) {
                    p.tags {
                        "Tags: "
                        @for t in &i.tags {
                            @if crate::api::check_tag(t).is_ok() && snapshot.has_tag(t) { a href={ "/tags/" (t) } { (t) } " " } @else { (t) " " }
                        }
                    }
                }
            }
        }
        h2 { "Similar photos" }
        @match &similar {
            Some(list) => {
                ul.grid {
                    @for s in list {
                        (wander_card(
                            &s.photo_id,
                            s.title.as_deref(),
                            s.owner_name.as_deref().or(s.owner_id.as_deref()),
                            s.thumbnail_url.as_deref(),
                            html! { (s.common_favorites) " people favourited both · " (s.algorithm) " " (format!("{:.3}", s.score)) },
                        ))
                    }
                }
            }
            None => p.meta { "This run has no similar photos for this photo." }
        }
    };
    Ok(Html(layout(title, body).into_string()))
}

/// A grid card that links to the photo's page here (not to Flickr), so people can
/// wander from photo to photo: used by the similar photos and the tag pages.
fn wander_card(
    photo_id: &str,
    title: Option<&str>,
    by: Option<&str>,
    thumbnail: Option<&str>,
    why: Markup,
) -> Markup {
    let t = title.unwrap_or("Untitled");
    html! {
        li.card {
            a.similar href={ "/photos/" (photo_id) } {
                (self::thumbnail(thumbnail, t, true))
            }
            div.caption {
                a.title href={ "/photos/" (photo_id) } { (t) }
                @if let Some(o) = by { " by " (o) }
            }
            p.why { (why) }
        }
    }
}

/// `GET /tags/{tag}`: a tag's most favourited photos, each linking to its page.
pub async fn tag_page(
    State(state): State<AppState>,
    Path(tag): Path<String>,
) -> Result<Html<String>, PageError> {
    let tag = crate::api::check_tag(&tag)?;
    let snapshot = state.serving()?;
    let Some(list) = snapshot.tag_list(&tag)? else {
        return Err(ApiError::NotFound(format!(
            "run {} has no photos tagged {tag:?}",
            snapshot.manifest.run_id
        ))
        .into());
    };
    let list: Vec<TagItem> = decode(Some(&list), 0..usize::MAX)?;
    let body = html! {
        h1 { "Most favourited photos tagged “" (tag) "”" }
        ul.grid {
            @for t in &list {
                (wander_card(
                    &t.photo_id,
                    t.title.as_deref(),
                    t.owner_name.as_deref().or(t.owner_id.as_deref()),
                    t.thumbnail_url.as_deref(),
                    html! { (t.favorites) " favourites" },
                ))
            }
        }
    };
    Ok(Html(layout(&format!("Tagged {tag}"), body).into_string()))
}

/// `GET /users/{user_id}/compare`: every algorithm in the run side by side.
pub async fn compare_page(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Html<String>, PageError> {
    let (snapshot, user_id) = user_lists(&state, &user_id)?;
    let mut columns: Vec<Vec<PhotoItem>> = Vec::new();
    for i in 0..snapshot.algorithms.len() {
        columns.push(decode(snapshot.photo_list(&user_id, i)?.as_ref(), 0..20)?);
    }
    let photographers: Vec<PhotographerItem> =
        decode(snapshot.photographer_list(&user_id)?.as_ref(), 0..20)?;
    let body = html! {
        h1 { "Compare algorithms for " (user_id) }
        (tabs(&user_id, "Compare"))
        div.columns {
            @for (i, algorithm) in snapshot.algorithms.iter().enumerate() {
                section.column {
                    h2 { (algorithm) " · photos" }
                    ol.compact {
                        @for p in &columns[i] {
                            li {
                                a href={ "/photos/" (p.photo_id) } { (p.title.as_deref().unwrap_or("Untitled")) }
                                " " span.meta { (format!("{:.2}", p.score)) }
                            }
                        }
                    }
                }
            }
            section.column {
                h2 { "flexplore · photographers" }
                ol.compact {
                    @for p in &photographers {
                        li {
                            a href=(p.photostream_url) rel="noopener noreferrer" { (p.photographer_name.as_deref().unwrap_or(&p.photographer_id)) }
                            " " span.meta { (p.common_favorites) " in common" }
                        }
                    }
                }
            }
        }
    };
    Ok(Html(
        layout(&format!("Compare for {user_id}"), body).into_string(),
    ))
}
