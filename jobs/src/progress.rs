//! Extract progress on a terminal: a live bar per phase. Elsewhere (cron, AWS
//! Batch, a pipe) the library's log lines are used instead.

use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use pipeline::extract::{LogProgress, Phase, PhaseProgress, Progress};

/// A bar for the phase being pulled.
pub struct Bar {
    /// The current phase's bar and when it started; `None` between phases.
    current: Mutex<Option<(ProgressBar, Instant)>>,
}

impl Bar {
    /// A bar when stderr is a terminal, log lines otherwise.
    pub fn for_stderr() -> Box<dyn Progress> {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Box::new(Bar {
                current: Mutex::new(None),
            })
        } else {
            Box::new(LogProgress)
        }
    }

    fn with(&self, f: impl FnOnce(&mut Option<(ProgressBar, Instant)>)) {
        match self.current.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

impl Progress for Bar {
    fn start(&self, phase: Phase, total: usize) {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} [{bar:30}] {pos}/{len} users  {msg}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(phase.name());
        self.with(|c| *c = Some((bar, Instant::now())));
    }

    fn user_done(&self, p: PhaseProgress) {
        self.with(|c| {
            if let Some((bar, started)) = c {
                let rate = p.calls as f64 / started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{} calls ({rate:.1}/s), {} retries",
                    p.calls, p.retries
                ));
                bar.inc(1);
            }
        });
    }

    fn finish(&self, _phase: Phase) {
        self.with(|c| {
            if let Some((bar, _)) = c.take() {
                bar.finish();
            }
        });
    }
}
