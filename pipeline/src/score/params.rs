//! Score settings as the kernels take them: the options of a run, and each
//! kernel's parameters built from [`Settings`].

use crate::config::Settings;

use super::algorithms::AlgorithmParams;
use super::flexplore::Params;
use super::similar;

/// Options of one score run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreOptions {
    /// Score every favoriter instead of the tracked users.
    pub all_users: bool,
    /// The id to write the run under (one that a run lock already names);
    /// default a new one.
    pub run_id: Option<String>,
}

impl Params {
    /// The kernel parameters from settings.
    pub fn from_settings(settings: &Settings) -> Self {
        Params {
            photo_recs: settings.score.photo_recs_per_user,
            photographer_recs: settings.score.photographer_recs_per_user,
            top_neighbors: settings.score.top_neighbors_per_rec,
            explore_seed: Some(settings.score.explore_seed),
            fallback_below: settings.score.fallback_below,
        }
    }
}

impl AlgorithmParams {
    /// Every algorithm's parameters from settings.
    pub fn from_settings(settings: &Settings) -> Self {
        AlgorithmParams {
            algorithms: settings.score.algorithms.clone(),
            flexplore: Params::from_settings(settings),
            itemknn: similar::SimilarParams {
                k: settings.score.itemknn_neighbors,
                ..similar_params(settings)
            },
        }
    }
}

/// The similar-photos parameters from settings.
pub fn similar_params(settings: &Settings) -> similar::SimilarParams {
    similar::SimilarParams {
        k: settings.similar.k,
        min_common: settings.similar.min_common,
        similarity: settings.similar.similarity,
        bm25: similar::Bm25 {
            k1: settings.similar.bm25_k1,
            b: settings.similar.bm25_b,
        },
    }
}
