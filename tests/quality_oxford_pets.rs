//! Quality on real CLIP ViT-B/32 features (Oxford-IIIT Pets, bundled in `data/`): the pipeline
//! with the reference script's settings (seed 0, 10 final restarts) against the reference
//! table of `data/README.md`.
//!
//! NMI of TAC and GradNorm must be within ±2 points of the reference. The image-only baseline
//! ("none") is plain k-means, and its NMI moves with the seed far more than the noun-assisted
//! runs: scikit-learn itself gives 64.3 … 67.6 for seeds 0–9 (mean 65.8, inertia 656.7–659.3),
//! and the reference's 67.6 (seed 0) is the top of that spread. So seed 0 is allowed ±4 here,
//! and the second test holds "none" to ±2 where that is meaningful: the mean over seeds 0–9
//! against scikit-learn's mean over the same seeds. The gap GradNorm − none (reference
//! 67.6 → 82.1) must be reproduced: at least 10 points.

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

/// NMI of scikit-learn's `KMeans(37, n_init=10, random_state=s)` on the unit-normalised test
/// features, seeds 0–9 (computed once with scikit-learn 1.x; inertia 656.7–659.3): the
/// distribution the reference's single "none" figure (seed 0, 67.6) is drawn from.
const SKLEARN_NONE_NMI_SEEDS_0_TO_9: [f64; 10] = [
    67.63, 66.71, 65.33, 65.02, 64.27, 64.47, 67.59, 65.85, 65.43, 65.52,
];

/// The image-only baseline compared as what it is, a random draw: over seeds 0–9 laic's mean
/// NMI must be within ±2 points of scikit-learn's mean over the same seeds, and every seed's
/// value inside scikit-learn's range widened by 2 points.
#[test]
fn image_only_kmeans_nmi_over_seeds_matches_scikit_learn() {
    let set = load_feature_set(&bundled_dir().join("oxford_pets.safetensors")).unwrap();
    let nouns = load_imagenet_nouns(bundled_dir()).unwrap();
    let ctx = Context::cpu();
    let got: Vec<f64> = (0..10u64)
        .map(|seed| {
            let opts = PipelineOptions {
                seed,
                ..PipelineOptions::default()
            };
            let rows =
                run_feature_set(&ctx, "oxford_pets", &set, &nouns, &[Filter::None], &opts).unwrap();
            rows[0].metrics.nmi * 100.0
        })
        .collect();
    let want = &SKLEARN_NONE_NMI_SEEDS_0_TO_9;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (got_mean, want_mean) = (mean(&got), mean(want));
    eprintln!(
        "none NMI, seeds 0-9: laic {got:.2?} (mean {got_mean:.2}), scikit-learn mean {want_mean:.2}"
    );
    assert!(
        (got_mean - want_mean).abs() <= 2.0,
        "mean NMI {got_mean:.2} vs scikit-learn's {want_mean:.2} (±2)"
    );
    let lo = want.iter().copied().fold(f64::INFINITY, f64::min) - 2.0;
    let hi = want.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 2.0;
    for (seed, &v) in got.iter().enumerate() {
        assert!(
            (lo..=hi).contains(&v),
            "seed {seed}: NMI {v:.2} outside scikit-learn's range widened by 2 [{lo:.2}, {hi:.2}]"
        );
    }
}
