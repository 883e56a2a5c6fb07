//! GradNorm and TAC selection on real CLIP ViT-B/32 features against the numpy reference
//! (`../shared/reference/laic_ref.py`): the 1000 ImageNet class-name embeddings (f16, in
//! data/) scored against fixed Oxford Pets image centres (tests/fixtures, made by
//! `make_gradnorm_fixture.py`). The selected sets must be identical.

use half::f16;
use laic::{Context, GradNormOptions, MatrixRef, Order, select_nouns};
use safetensors::SafeTensors;

fn read(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn i64s(st: &SafeTensors, name: &str) -> Vec<i64> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn selection_on_real_features_equals_the_numpy_reference() {
    let text_bytes = read("data/imagenet1k_text.safetensors");
    let text = SafeTensors::deserialize(&text_bytes).unwrap();
    let t = text.tensor("text_features").unwrap();
    let (m, d) = (t.shape()[0], t.shape()[1]);
    let nouns: Vec<f16> = t
        .data()
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]))
        .collect();
    let fix_bytes = read("tests/fixtures/oxford_pets_gradnorm.safetensors");
    let fix = SafeTensors::deserialize(&fix_bytes).unwrap();
    let c = fix.tensor("centres").unwrap();
    let k = c.shape()[0];
    let centres: Vec<f32> = c
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let want_scores: Vec<f64> = fix
        .tensor("gradnorm_scores")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();

    let ctx = Context::cpu();
    let nm = MatrixRef::from_f16(&nouns, m, d).unwrap();
    let cm = MatrixRef::from_f32(&centres, k, d).unwrap();
    let gn = ctx
        .gradnorm_scores(
            &nm,
            &cm,
            &GradNormOptions {
                tau: 0.02,
                ..Default::default()
            },
        )
        .unwrap();
    let want_assign = i64s(&fix, "gradnorm_assignment");
    for i in 0..m {
        assert_eq!(gn.assignment[i] as i64, want_assign[i], "noun {i}");
        let (g, w) = (gn.scores[i] as f64, want_scores[i]);
        assert!((g - w).abs() <= 1e-5 * w, "noun {i}: {g} vs {w}");
    }
    let selected = select_nouns(&gn.scores, &gn.assignment, k, 5, Order::Smallest).unwrap();
    let want: Vec<u32> = i64s(&fix, "gradnorm_selected")
        .iter()
        .map(|&i| i as u32)
        .collect();
    assert_eq!(selected, want, "GradNorm selection");

    let tac = ctx
        .gradnorm_scores(
            &nm,
            &cm,
            &GradNormOptions {
                tau: 1.0,
                ..Default::default()
            },
        )
        .unwrap();
    let selected = select_nouns(&tac.confidence, &tac.assignment, k, 5, Order::Largest).unwrap();
    let want: Vec<u32> = i64s(&fix, "tac_selected")
        .iter()
        .map(|&i| i as u32)
        .collect();
    assert_eq!(selected, want, "TAC selection");
}
