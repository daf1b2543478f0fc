//! The offline demo: the synthetic community served by the Flickr API simulator,
//! extracted over HTTP with the real client, scored and published.

use crate::community::{Community, generate};
use crate::extract::client::{ApiKey, FlickrClient};
use crate::extract::sim::{SimOptions, Simulator};
use crate::model::Table;
use crate::raw::{RawTableError, merge_raw};
use crate::store::Storage;

/// What [`run_demo`] did.
#[derive(Debug)]
pub struct DemoReport {
    /// The generated community (the simulator's ground truth).
    pub community: Community,
    /// The extract run.
    pub extract: crate::extract::ExtractManifest,
    /// The score run, published.
    pub run: crate::runs::Manifest,
}

/// The offline demo pipeline: generate the community, serve it from the Flickr API
/// simulator on a free loopback port, add its tracked users, run the real extractor
/// against the simulator over HTTP, score, and publish.
///
/// The simulator is local, so the demo lifts the rate limit to 100 calls per second;
/// everything else uses the settings as given.
pub async fn run_demo(
    storage: &Storage,
    settings: &crate::config::Settings,
) -> Result<DemoReport, DemoError> {
    let community = generate(&settings.demo);
    let key = format!(
        "demo-{:016x}",
        settings.demo.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    );
    let sim = Simulator::new(&community, SimOptions::keyed(&key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError::Sim(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DemoError::Sim(e.to_string()))?;
    let server = tokio::spawn(async move { axum::serve(listener, sim.router()).await });
    tracing::info!(%addr, "Flickr API simulator started");

    let mut settings = settings.clone();
    settings.flickr.api_url = format!("http://{addr}/services/rest/");
    settings.flickr.calls_per_hour = 360_000;
    settings.flickr.burst = 20;
    merge_raw(
        storage,
        Table::TrackedUsers,
        vec![community.tracked_users.clone()],
    )
    .await?;
    let client = FlickrClient::new(&settings.flickr, ApiKey::new(key))?;
    let extract = crate::extract::run_extract(
        storage,
        &settings,
        &client,
        crate::extract::ExtractOptions::at(chrono::Utc::now()),
    )
    .await;
    server.abort();
    let extract = extract?;
    // The demo run carries the offline evaluation, so its runs page has metrics.
    settings.evaluate.enabled = true;
    let run =
        crate::score::run_score(storage, &settings, crate::score::ScoreOptions::default()).await?;
    crate::runs::publish(storage, Some(&run.run_id)).await?;
    Ok(DemoReport {
        community,
        extract,
        run,
    })
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulator could not start.
    #[error("cannot start the Flickr API simulator: {0}")]
    Sim(String),
    /// Writing tables failed.
    #[error(transparent)]
    Write(#[from] RawTableError),
    /// The client could not be built.
    #[error(transparent)]
    Flickr(#[from] crate::extract::client::FlickrError),
    /// Extract failed.
    #[error(transparent)]
    Extract(#[from] crate::extract::ExtractError),
    /// Score failed.
    #[error(transparent)]
    Score(#[from] crate::score::ScoreError),
    /// Publish failed.
    #[error(transparent)]
    Run(#[from] crate::runs::RunError),
}
