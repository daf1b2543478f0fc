//! faverecs pipeline: the batch stages as a library.
//!
//! # Layout
//!
//! - [`config`] — layered settings (defaults, TOML file, environment), validated.
//! - [`store`] — the object store and Parquet I/O; nothing else touches storage.
//! - [`model`] — the table contract: every table's schema and location.
//! - [`frame`] — Arrow ↔ Polars conversion for the table work.
//! - [`raw`] — writing the raw tables: merge or replace, deduplicated by key.
//! - [`import`] — CSV/Parquet files into the raw tables.
//! - [`extract`] — the Flickr API client, the simulator, and the resumable extract stage.
//! - [`community`] — the deterministic synthetic community (demo, simulator,
//!   tests, benchmarks).
//! - [`evolve`] — the community night after night (the simulator's changing
//!   truth, for the freshness benchmark).
//! - [`demo`] — the offline demo: simulator → extract → score → publish.
//! - [`score`] — the run: load, prepare, the Rayon kernels (Flexplore, itemknn,
//!   popular, explore, similar photos, tag photos), the offline evaluation
//!   (`score::evaluate`), and writing the run's tables.
//! - [`lock`] — the run lock: one run at a time on a storage, with a lease.
//! - [`serving`] — the serving layout: a run's lists as `serve` answers them,
//!   one memory-mapped file.
//! - [`runs`] — manifests, the `CURRENT` pointer, publish and rollback.
//! - [`shard`] — which shard a user or photo belongs to (a stable hash).
//! - [`gc`] — retention: old, failed and abandoned runs and stray temp files.
//! - [`nightly`] — extract → score → publish → gc under the run lock, for cron.
//! - [`sql`] — Polars SQL over a run's tables, for analysts.
//! - [`text`] — data quoted in messages, capped in length.
//!
//! Data flows one way: raw tables → `score` → a run → `publish` → `serve`.

pub mod community;
pub mod config;
pub mod demo;
pub mod evolve;
pub mod extract;
pub mod frame;
pub mod gc;
pub mod import;
pub mod lock;
pub mod model;
pub mod nightly;
pub mod raw;
pub mod runs;
pub mod score;
pub mod serving;
pub mod shard;
pub mod sort;
pub mod sql;
pub mod store;
pub mod text;
