//! The `laic` command. For now: a small demo of GradNorm scoring on random unit vectors
//! (replaced by the full CLI with the embedded Oxford Pets default later).

use laic::{Context, GradNormOptions, MatrixRef, Order, select_nouns};

fn unit_rows(seed: u64, rows: usize, d: usize) -> Vec<f32> {
    // xorshift: a dependency-free deterministic generator for the demo.
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..rows * d)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    for r in v.chunks_exact_mut(d) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn main() -> Result<(), laic::Error> {
    let (m, k, d) = (20_000, 200, 512);
    let nouns = unit_rows(1, m, d);
    let centres = unit_rows(2, k, d);
    let ctx = Context::cpu();
    let t0 = std::time::Instant::now();
    let s = ctx.gradnorm_scores(
        &MatrixRef::from_f32(&nouns, m, d)?,
        &MatrixRef::from_f32(&centres, k, d)?,
        &GradNormOptions::default(),
    )?;
    let dt = t0.elapsed();
    let sel = select_nouns(&s.scores, &s.assignment, k, 5, Order::Smallest)?;
    println!(
        "laic {}: GradNorm scores of {m} random nouns against {k} centres (D = {d}) in {dt:.2?}",
        laic::VERSION
    );
    println!(
        "selected {} nouns (top 5 per centre); first few:",
        sel.len()
    );
    for &i in sel.iter().take(5) {
        let i = i as usize;
        println!(
            "  noun {i:6}  centre {:4}  score {:.4e}  p {:.4}",
            s.assignment[i], s.scores[i], s.confidence[i]
        );
    }
    Ok(())
}
