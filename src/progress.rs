//! Progress reporting and cancellation for long operations.

use crate::error::{Error, Result};

/// A stage of a long operation, reported with the fraction of it that is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// k-means on the training images for the image centres.
    Centres = 0,
    /// Scoring the nouns (GradNorm or TAC confidence) and selecting them.
    Scores = 1,
    /// Retrieving noun semantics for the images to cluster.
    Retrieval = 2,
    /// The final k-means (or a stand-alone k-means run).
    Clustering = 3,
    /// Cluster names and metrics.
    Naming = 4,
}

/// A progress callback: called with a stage and the fraction of it done (0 to 1, never
/// decreasing within a stage); returning `false` cancels the operation, which then fails with
/// [`Error::Cancelled`]. It is called from one thread at a time, which need not be the
/// caller's.
pub type ProgressFn<'a> = &'a (dyn Fn(Stage, f64) -> bool + Sync);

/// An optional progress callback.
#[derive(Clone, Copy, Default)]
pub struct Progress<'a> {
    callback: Option<ProgressFn<'a>>,
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

impl<'a> Progress<'a> {
    /// No reporting; never cancels.
    pub fn none() -> Self {
        Progress { callback: None }
    }

    /// Reports to `callback`.
    pub fn new(callback: ProgressFn<'a>) -> Self {
        Progress {
            callback: Some(callback),
        }
    }

    /// Reports `fraction` of `stage`; errors with [`Error::Cancelled`] when the callback
    /// asks to stop.
    pub fn report(&self, stage: Stage, fraction: f64) -> Result<()> {
        match self.callback {
            Some(cb) if !cb(stage, fraction.clamp(0.0, 1.0)) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }
}
