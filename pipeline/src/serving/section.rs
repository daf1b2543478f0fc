//! The names of a layout's sections (see the module docs of `crate::serving`).

/// Run-wide values: `algorithms`.
pub const META: &str = "meta";
/// Every user with a list.
pub const USERS: &str = "users";
/// Photographer recs by user.
pub const PHOTOGRAPHERS: &str = "photographers";
/// Similar photos by photo id.
pub const SIMILAR: &str = "similar";
/// A tag's most favourited photos by tag.
pub const TAGS: &str = "tags";
/// What the run knows of a photo, by id.
pub const PHOTO_INFO: &str = "photo_info";
/// Tracked users: NSID → username (JSON).
pub const TRACKED: &str = "tracked";
/// Lower-cased username → NSID.
pub const USERNAMES: &str = "usernames";

/// Photo recs of `algorithm` by user.
pub fn photos(algorithm: &str) -> String {
    format!("photos/{algorithm}")
}
