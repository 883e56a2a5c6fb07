//! The CPU GradNorm kernel against an f64 reference on fresh random inputs, and its properties.

mod common;

use common::{fresh_rng, gaussian_rows, reference};
use half::{bf16, f16};
use laic::{Context, GradNormOptions, MatrixData, MatrixRef, Order, Target, select_nouns};
use rand::Rng;

const QS: [f32; 4] = [1.0, 2.0, 3.5, f32::INFINITY];

/// Compares kernel output with the reference; a differing assignment is allowed only when the
/// two best logits are within `tie_tol` of each other. `floor` is an absolute tolerance for
/// scores whose conditioning is poor (the uniform target near a uniform p).
fn assert_close(
    got: &laic::GradNormScores,
    want: &common::Reference,
    rel: f64,
    floor: f64,
    what: &str,
) {
    let tie_tol = 1e-6;
    for i in 0..want.scores.len() {
        if got.assignment[i] != want.assignment[i] {
            let (a, b) = want.top2[i];
            assert!(
                a - b <= tie_tol * a.abs().max(1.0),
                "{what}: noun {i} assigned {} not {} (logits {a} vs {b})",
                got.assignment[i],
                want.assignment[i]
            );
            continue;
        }
        let (g, w) = (got.scores[i] as f64, want.scores[i]);
        // Scores below f32's normal range cannot be carried by an f32 output.
        let tol = rel * w.abs() + floor + 1e-36;
        assert!(
            (g - w).abs() <= tol,
            "{what}: noun {i} score {g:e} vs {w:e} (rel {:e})",
            (g - w).abs() / w.abs()
        );
        let (gc, wc) = (got.confidence[i] as f64, want.confidence[i]);
        assert!(
            (gc - wc).abs() <= rel * wc + 1e-7,
            "{what}: noun {i} confidence {gc} vs {wc}"
        );
    }
}

/// The largest row norm of a `rows × d` matrix.
fn max_norm(m: &[f32], d: usize) -> f64 {
    m.chunks_exact(d)
        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt())
        .fold(0.0, f64::max)
}

#[test]
fn f32_scores_match_f64_reference_across_sizes_tau_and_q() {
    let mut rng = fresh_rng("f32_scores_match");
    let ctx = Context::cpu();
    // (M, K, D): none a multiple of the kernel's 128-noun blocks or 320-centre tiles.
    let sizes = [
        (1, 1, 64),
        (37, 2, 512),
        (130, 1, 768),
        (1000, 321, 512),
        (3001, 641, 64),
        (257, 5000, 768),
        (129, 4999, 512),
    ];
    let taus = [0.005, 0.02, 0.1, 1.0];
    for (n, &(m, k, d)) in sizes.iter().enumerate() {
        let nouns = gaussian_rows(&mut rng, m, d);
        let centres = gaussian_rows(&mut rng, k, d);
        let normalize = n % 3 != 2;
        let tau = taus[n % taus.len()];
        let (z, t64) = common::logits(&nouns, &centres, d, tau as f64, normalize);
        for q in QS {
            for target in [Target::OneHot, Target::Uniform] {
                let opts = GradNormOptions {
                    tau,
                    q,
                    target,
                    normalize,
                };
                let got = ctx
                    .gradnorm_scores(
                        &MatrixRef::from_f32(&nouns, m, d).unwrap(),
                        &MatrixRef::from_f32(&centres, k, d).unwrap(),
                        &opts,
                    )
                    .unwrap();
                let uniform = target == Target::Uniform;
                let want = common::reference_from_logits(&z, &t64, q as f64, uniform);
                // 1e-5 relative for unit vectors; f32 dot products of longer vectors carry
                // proportionally larger rounding, so the bound scales with ‖t‖·‖w‖.
                let scale = if normalize {
                    1.0
                } else {
                    (max_norm(&nouns, d) * max_norm(&centres, d)).max(1.0)
                };
                // The uniform target's |p_k − 1/K| cancels: allow 1e-6 of ‖t‖_q absolute.
                let floor = if uniform {
                    1e-6 * want.scores.iter().cloned().fold(0.0, f64::max)
                } else {
                    0.0
                };
                let what = format!("M{m} K{k} D{d} tau{tau} q{q} {target:?} norm{normalize}");
                assert_close(&got, &want, 1e-5 * scale, floor, &what);
            }
        }
    }
}

#[test]
fn confident_nouns_keep_distinct_tiny_scores() {
    // Nouns close to one centre at a low temperature: p_ĉ rounds to 1 in f32, yet the scores
    // (around 1e-20) must match the reference rather than collapse to 0.
    let mut rng = fresh_rng("confident_nouns");
    let (m, k, d) = (300, 70, 512);
    let centres = gaussian_rows(&mut rng, k, d);
    let mut nouns = Vec::with_capacity(m * d);
    for _ in 0..m {
        let c = rng.random_range(0..k);
        let noise = gaussian_rows(&mut rng, 1, d);
        nouns.extend(
            centres[c * d..(c + 1) * d]
                .iter()
                .zip(&noise)
                .map(|(a, b)| a + 0.05 * b),
        );
    }
    let opts = GradNormOptions {
        tau: 0.02,
        ..Default::default()
    };
    let got = Context::cpu()
        .gradnorm_scores(
            &MatrixRef::from_f32(&nouns, m, d).unwrap(),
            &MatrixRef::from_f32(&centres, k, d).unwrap(),
            &opts,
        )
        .unwrap();
    let want = reference(&nouns, &centres, d, 0.02, 2.0, false, true);
    assert!(
        want.scores.iter().all(|&s| s < 1e-10 && s > 1e-30),
        "the test data is in the confident regime"
    );
    // A score here is e^((z_j - z_max)/τ)-like: an error δ in an f32 cosine moves it by δ/τ
    // relative. Two cosines of ~2^-23 (6e-8 × a few) each at 1/τ = 50 give ~1.2e-5 (the worst
    // seen over 300 seeds: 1.13e-5, where 1e-5 failed 5 of them); 3e-5 bounds it.
    assert_close(&got, &want, 3e-5, 0.0, "confident");
    assert!(got.confidence.iter().all(|&p| p == 1.0));
    let distinct: std::collections::HashSet<u32> = got.scores.iter().map(|s| s.to_bits()).collect();
    assert!(
        distinct.len() > m * 9 / 10,
        "scores must not tie: {} distinct of {m}",
        distinct.len()
    );
}

#[test]
fn half_precision_inputs_match_reference_on_their_values() {
    let mut rng = fresh_rng("half_inputs");
    let (m, k, d) = (301, 333, 768);
    let nouns = gaussian_rows(&mut rng, m, d);
    let centres = gaussian_rows(&mut rng, k, d);
    let ctx = Context::cpu();
    let opts = GradNormOptions {
        tau: 0.05,
        ..Default::default()
    };
    // f16 with a row stride wider than D; bf16 contiguous.
    let stride = d + 5;
    let mut nh = vec![f16::ZERO; m * stride];
    for r in 0..m {
        for j in 0..d {
            nh[r * stride + j] = f16::from_f32(nouns[r * d + j]);
        }
    }
    let ch: Vec<f16> = centres.iter().map(|&v| f16::from_f32(v)).collect();
    let got = ctx
        .gradnorm_scores(
            &MatrixRef::new(MatrixData::F16(&nh), m, d, stride).unwrap(),
            &MatrixRef::from_f16(&ch, k, d).unwrap(),
            &opts,
        )
        .unwrap();
    let back = |v: &[f16]| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
    let nouns_h: Vec<f32> = (0..m)
        .flat_map(|r| back(&nh[r * stride..r * stride + d]))
        .collect();
    let want = reference(&nouns_h, &back(&ch), d, 0.05, 2.0, false, true);
    assert_close(&got, &want, 1e-5, 0.0, "f16");

    let nb: Vec<bf16> = nouns.iter().map(|&v| bf16::from_f32(v)).collect();
    let cb: Vec<bf16> = centres.iter().map(|&v| bf16::from_f32(v)).collect();
    let got = ctx
        .gradnorm_scores(
            &MatrixRef::from_bf16(&nb, m, d).unwrap(),
            &MatrixRef::from_bf16(&cb, k, d).unwrap(),
            &opts,
        )
        .unwrap();
    let to32 = |v: &[bf16]| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
    let want = reference(&to32(&nb), &to32(&cb), d, 0.05, 2.0, false, true);
    assert_close(&got, &want, 1e-5, 0.0, "bf16");
}

#[test]
fn q1_and_qinf_rank_like_tac_confidence() {
    // With q = 1 or ∞ the score is a decreasing function of p_ĉ times ‖t‖_q; with unit-norm
    // nouns in the ∞-norm sense that factor is shared, so per-centre rankings equal TAC's.
    let mut rng = fresh_rng("q1_qinf_tac");
    let (m, k, d) = (2000, 37, 64);
    let mut nouns = gaussian_rows(&mut rng, m, d);
    let mut centres = gaussian_rows(&mut rng, k, d);
    for r in centres.chunks_exact_mut(d) {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        r.iter_mut().for_each(|v| *v /= n);
    }
    let ctx = Context::cpu();
    for q in [1.0f32, f32::INFINITY] {
        // Scale each noun so that its q-norm is 1; normalise = off keeps that norm.
        for r in nouns.chunks_exact_mut(d) {
            let n = if q.is_infinite() {
                r.iter().fold(0f32, |a, v| a.max(v.abs()))
            } else {
                r.iter().map(|v| v.abs()).sum()
            };
            r.iter_mut().for_each(|v| *v /= n);
        }
        // τ = 1 as TAC uses: confidences stay well away from 1, so f32 rounding makes no ties.
        let opts = GradNormOptions {
            tau: 1.0,
            q,
            target: Target::OneHot,
            normalize: false,
        };
        let t = MatrixRef::from_f32(&nouns, m, d).unwrap();
        let w = MatrixRef::from_f32(&centres, k, d).unwrap();
        let s = ctx.gradnorm_scores(&t, &w, &opts).unwrap();
        // Within each centre, a more confident noun never has a larger score (up to the f32
        // rounding of ‖t‖_q = 1).
        let mut by_centre: Vec<Vec<usize>> = vec![vec![]; k];
        for (i, &c) in s.assignment.iter().enumerate() {
            by_centre[c as usize].push(i);
        }
        for members in &mut by_centre {
            members.sort_by(|&a, &b| s.confidence[b].total_cmp(&s.confidence[a]));
            for pair in members.windows(2) {
                let (hi, lo) = (pair[0], pair[1]);
                assert!(
                    s.scores[lo] >= s.scores[hi] * (1.0 - 1e-6),
                    "q {q}: noun {hi} conf {} score {} vs noun {lo} conf {} score {}",
                    s.confidence[hi],
                    s.scores[hi],
                    s.confidence[lo],
                    s.scores[lo]
                );
            }
        }
        // And so the selections agree (f32 ties aside, which the seeds here do not hit often;
        // the check above is the exact statement).
        let by_score = select_nouns(&s.scores, &s.assignment, k, 3, Order::Smallest).unwrap();
        let by_conf = select_nouns(&s.confidence, &s.assignment, k, 3, Order::Largest).unwrap();
        let same = by_score.iter().filter(|i| by_conf.contains(i)).count();
        assert!(
            same + 2 >= by_conf.len(),
            "q {q}: selections differ beyond ties: {same} of {}",
            by_conf.len()
        );
    }
}

#[test]
fn scaling_inputs_changes_nothing_when_normalising() {
    let mut rng = fresh_rng("scale_invariance");
    let (m, k, d) = (500, 97, 512);
    let nouns = gaussian_rows(&mut rng, m, d);
    let centres = gaussian_rows(&mut rng, k, d);
    let ctx = Context::cpu();
    let opts = GradNormOptions::default();
    let base = ctx
        .gradnorm_scores(
            &MatrixRef::from_f32(&nouns, m, d).unwrap(),
            &MatrixRef::from_f32(&centres, k, d).unwrap(),
            &opts,
        )
        .unwrap();
    for c in [0.25f32, 3.0, 1000.0] {
        let sn: Vec<f32> = nouns.iter().map(|v| v * c).collect();
        let sc: Vec<f32> = centres.iter().map(|v| v * c * 0.5).collect();
        let s = ctx
            .gradnorm_scores(
                &MatrixRef::from_f32(&sn, m, d).unwrap(),
                &MatrixRef::from_f32(&sc, k, d).unwrap(),
                &opts,
            )
            .unwrap();
        assert_eq!(s.assignment, base.assignment, "scale {c}");
        for (a, b) in s.scores.iter().zip(&base.scores) {
            assert!((a - b).abs() <= 1e-5 * b.abs(), "scale {c}: {a} vs {b}");
        }
    }
}

#[test]
fn thread_count_does_not_change_results() {
    let mut rng = fresh_rng("threads");
    let (m, k, d) = (1111, 400, 128);
    let nouns = gaussian_rows(&mut rng, m, d);
    let centres = gaussian_rows(&mut rng, k, d);
    let t = MatrixRef::from_f32(&nouns, m, d).unwrap();
    let w = MatrixRef::from_f32(&centres, k, d).unwrap();
    let one = laic::Context::with_options(&laic::ContextOptions {
        n_threads: 1,
        ..Default::default()
    })
    .unwrap();
    let a = one
        .gradnorm_scores(&t, &w, &GradNormOptions::default())
        .unwrap();
    let b = Context::cpu()
        .gradnorm_scores(&t, &w, &GradNormOptions::default())
        .unwrap();
    assert_eq!(a, b, "results are bitwise identical for any thread count");
}
