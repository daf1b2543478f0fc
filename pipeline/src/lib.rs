//! faverecs pipeline: the batch stages as a library.
//!
//! # Layout
//!
//! - [`config`] — layered settings (defaults, TOML file, environment), validated.
//! - [`store`] — the object store and Parquet I/O; nothing else touches storage.
//! - [`model`] — the table contract: every table's schema and location.
//! - [`frame`] — Arrow ↔ Polars conversion for the table work.
//! - [`import`] — CSV/Parquet files into the raw tables.
//! - [`extract`] — the Flickr API client, the simulator, and the resumable extract stage.
//! - [`demo`] — the deterministic synthetic community.
//! - [`score`] — Polars preparation and the Rayon kernels (Flexplore, itemknn,
//!   popular, explore, similar photos, tag photos); writes a run.
//! - [`evaluate`] — offline evaluation on a held-out split; the `metrics` table.
//! - [`runs`] — manifests, the `CURRENT` pointer, publish and rollback.
//! - [`sql`] — Polars SQL over a run's tables, for analysts.
//!
//! Data flows one way: raw tables → `score` → a run → `publish` → `serve`.

pub mod config;
pub mod demo;
pub mod evaluate;
pub mod extract;
pub mod frame;
pub mod import;
pub mod model;
pub mod runs;
pub mod score;
pub mod sql;
pub mod store;
