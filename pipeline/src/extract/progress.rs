//! Progress of an extract phase, reported to whoever runs it: the binary draws
//! a bar on a terminal; the library's default logs a line every tenth of a phase.

use super::state::Phase;

/// Where a phase stands after one more user finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseProgress {
    /// The phase.
    pub phase: Phase,
    /// Users finished so far (pulled, skipped or failed).
    pub done: usize,
    /// Users in the phase.
    pub total: usize,
    /// API calls made by the process so far.
    pub calls: u64,
    /// Retries so far, all causes.
    pub retries: u64,
}

/// Receives progress; every method has a default that does nothing.
pub trait Progress: Send + Sync {
    /// A phase starts with `total` users.
    fn start(&self, _phase: Phase, _total: usize) {}
    /// One more user finished.
    fn user_done(&self, _progress: PhaseProgress) {}
    /// The phase finished.
    fn finish(&self, _phase: Phase) {}
}

/// Logs `extract progress` at every tenth of a phase and at its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogProgress;

impl Progress for LogProgress {
    fn user_done(&self, p: PhaseProgress) {
        let step = (p.total / 10).max(1);
        if p.done.is_multiple_of(step) || p.done == p.total {
            tracing::info!(
                phase = p.phase.name(),
                done = p.done,
                total = p.total,
                calls = p.calls,
                "extract progress"
            );
        }
    }
}
