//! laic — Language-assisted Image Clustering.
//!
//! laic filters a wild noun corpus down to the nouns that describe a set of images by
//! GradNorm (the norm of the gradient of a cross-entropy over image centres, arXiv 2510.16335),
//! then clusters the images on their CLIP features joined with retrieved noun semantics.
//!
//! The Rust API starts from a [`Context`] (a backend and a thread pool):
//!
//! ```
//! use laic::{Context, GradNormOptions, MatrixRef};
//! let nouns = [1.0f32, 0.0, 0.6, 0.8, 0.0, 1.0];
//! let centres = [1.0f32, 0.0, 0.0, 1.0];
//! let ctx = Context::cpu();
//! let s = ctx
//!     .gradnorm_scores(
//!         &MatrixRef::from_f32(&nouns, 3, 2)?,
//!         &MatrixRef::from_f32(&centres, 2, 2)?,
//!         &GradNormOptions::default(),
//!     )?;
//! assert_eq!(s.assignment, vec![0, 1, 1]);
//! let positive = laic::select_nouns(&s.scores, &s.assignment, 2, 1, laic::Order::Smallest)?;
//! assert_eq!(positive, vec![0, 2]);
//! # Ok::<(), laic::Error>(())
//! ```
//!
//! The same functions are exported with a C ABI (`include/laic.h`), see [`ffi`].
#![deny(missing_docs)]

pub mod backend;
pub mod clip;
mod context;
pub mod data;
mod error;
pub mod eval;
pub mod ffi;
pub mod gradnorm;
pub mod kmeans;
pub mod matrix;
pub mod metrics;
pub mod pipeline;
mod progress;
pub mod retrieve;
mod rng;

pub use backend::BackendKind;
pub use context::{Context, ContextOptions};
pub use data::{Embeddings, FeatureSet, NounSet};
pub use error::{Error, LaicStatus, Result};
pub use gradnorm::{
    GradNormOptions, GradNormOut, GradNormScores, Order, Target, max_selected, select_nouns,
};
pub use kmeans::{KMeansOptions, KMeansResult, Metric};
pub use matrix::{DeviceGradNormOut, DeviceMatrix, Dtype, MatrixData, MatrixRef};
pub use metrics::{ClusterMetrics, cluster_metrics};
pub use pipeline::{Filter, PipelineInput, PipelineOptions, PipelineResult};
pub use progress::{Progress, ProgressFn, Stage};
pub use retrieve::{RetrieveOptions, Retrieved};

/// The library version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
