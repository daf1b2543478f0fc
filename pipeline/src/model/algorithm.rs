//! The names written in the contract's `algorithm` columns: the per-user photo-rec
//! algorithms (`photo_recs.algorithm`, `metrics.algorithm`) and the similarity
//! measures (`similar_photos.algorithm`). They live with the contract, not with
//! the kernels, so that settings, scoring and serving can all name them.

use serde::{Deserialize, Serialize};

/// A per-user photo-rec algorithm.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Neighbor scoring.
    Flexplore,
    /// Item-item nearest neighbours.
    #[serde(rename = "itemknn")]
    ItemKnn,
    /// Most favourited in the neighborhood.
    Popular,
    /// Seeded random sample of the candidates.
    Explore,
}

impl Algorithm {
    /// Every algorithm, in the default display order.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Flexplore,
        Algorithm::ItemKnn,
        Algorithm::Popular,
        Algorithm::Explore,
    ];

    /// The name written in the `algorithm` column and used in config.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Flexplore => "flexplore",
            Algorithm::ItemKnn => "itemknn",
            Algorithm::Popular => "popular",
            Algorithm::Explore => "explore",
        }
    }

    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == text)
    }
}

/// The similar-photos measure. How each scores a pair is in `score::similar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// Binary cosine.
    Cosine,
    /// Jaccard index.
    Jaccard,
    /// BM25-weighted co-occurrence, as `implicit` computes it.
    Bm25,
}

impl Similarity {
    /// Every measure.
    pub const ALL: [Similarity; 3] = [Similarity::Cosine, Similarity::Jaccard, Similarity::Bm25];

    /// The name written in the `algorithm` column.
    pub fn name(self) -> &'static str {
        match self {
            Similarity::Cosine => "cosine",
            Similarity::Jaccard => "jaccard",
            Similarity::Bm25 => "bm25",
        }
    }

    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_match_serde() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::parse(a.name()), Some(a));
            assert_eq!(
                serde_json::to_string(&a).ok(),
                Some(format!("\"{}\"", a.name()))
            );
        }
        for s in Similarity::ALL {
            assert_eq!(Similarity::parse(s.name()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).ok(),
                Some(format!("\"{}\"", s.name()))
            );
        }
        assert_eq!(Algorithm::parse("Flexplore"), None);
        assert_eq!(Similarity::parse("dice"), None);
    }
}
