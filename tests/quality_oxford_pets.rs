//! Quality on real CLIP ViT-B/32 features (Oxford-IIIT Pets, bundled in `data/`): the pipeline
//! with the reference script's settings (seed 0, 10 final restarts) against the reference
//! table of `data/README.md`.
//!
//! NMI of TAC and GradNorm must be within ±2 points of the reference. The image-only baseline
//! ("none") is allowed ±4: it is plain k-means, and its NMI moves with the seed far more than
//! the noun-assisted runs — scikit-learn itself gives 67.6, 66.7, 65.3, 65.0, 64.3, 64.5, 67.6
//! for seeds 0–6 (mean 65.9), laic gives 64.2 … 66.8 for seeds 0–9 (mean 65.3) at the same
//! objective values (656.4–658.8); the reference's 67.6 is the top of that spread. The gap
//! GradNorm − none (reference 67.6 → 82.1) must be reproduced: at least 10 points.

use laic::data::{bundled_dir, load_feature_set, load_imagenet_nouns};
use laic::eval::{reference, run_feature_set};
use laic::pipeline::{Filter, PipelineOptions};
use laic::{ClusterMetrics, Context};

#[test]
fn oxford_pets_scores_match_the_reference_and_gradnorm_beats_image_only_kmeans() {
    let set = load_feature_set(&bundled_dir().join("oxford_pets.safetensors")).unwrap();
    let nouns = load_imagenet_nouns(bundled_dir()).unwrap();
    let ctx = Context::cpu();
    let rows = run_feature_set(
        &ctx,
        "oxford_pets",
        &set,
        &nouns,
        &[Filter::None, Filter::Tac, Filter::GradNorm],
        &PipelineOptions::default(),
    )
    .unwrap();
    print!("{}", laic::eval::format_table(&rows));
    let nmi = |f: Filter| -> (f64, f64) {
        let row = rows.iter().find(|r| r.filter == f).unwrap();
        let want: ClusterMetrics = reference("oxford_pets", f).unwrap();
        (row.metrics.nmi * 100.0, want.nmi * 100.0)
    };
    for (filter, tol) in [
        (Filter::None, 4.0),
        (Filter::Tac, 2.0),
        (Filter::GradNorm, 2.0),
    ] {
        let (got, want) = nmi(filter);
        assert!(
            (got - want).abs() <= tol,
            "{}: NMI {got:.1} vs reference {want:.1} (±{tol})",
            filter.name()
        );
    }
    let gap = nmi(Filter::GradNorm).0 - nmi(Filter::None).0;
    assert!(gap >= 10.0, "GradNorm − none NMI gap {gap:.1} < 10");
    // The clusters are named after pet breeds in the ImageNet corpus.
    let gn = rows.iter().find(|r| r.filter == Filter::GradNorm).unwrap();
    assert_eq!(gn.n_centres, 74);
    assert!(gn.sample_names.iter().all(|c| !c.is_empty()));
}
