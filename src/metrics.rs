//! Clustering metrics against ground-truth labels (DESIGN.md §1.8): accuracy under the best
//! one-to-one mapping of clusters to classes (exact Hungarian algorithm, any numbers of
//! clusters and classes), normalised mutual information with the arithmetic mean of the
//! entropies, and the adjusted Rand index — each as scikit-learn defines it, special cases
//! included.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::hash::Hash;

/// Scores of a clustering against true labels, each as a fraction (1 = perfect).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterMetrics {
    /// Accuracy under the best one-to-one mapping of clusters to classes.
    pub acc: f64,
    /// Normalised mutual information (arithmetic normalisation).
    pub nmi: f64,
    /// Adjusted Rand index (can be negative).
    pub ari: f64,
}

/// ACC, NMI and ARI of `pred` against `truth` (same length > 0; any label values).
pub fn cluster_metrics<A, B>(truth: &[A], pred: &[B]) -> Result<ClusterMetrics>
where
    A: Copy + Eq + Hash + Ord,
    B: Copy + Eq + Hash + Ord,
{
    let c = Contingency::new(truth, pred)?;
    Ok(ClusterMetrics {
        acc: c.accuracy(),
        nmi: c.nmi(),
        ari: c.ari(),
    })
}

/// Indices 0.. of the distinct values of `labels`, in sorted order of the values.
fn dense_labels<T: Copy + Eq + Hash + Ord>(labels: &[T]) -> (Vec<usize>, usize) {
    let mut values: Vec<T> = labels.to_vec();
    values.sort_unstable();
    values.dedup();
    let index: HashMap<T, usize> = values.iter().enumerate().map(|(i, &v)| (v, i)).collect();
    (labels.iter().map(|v| index[v]).collect(), values.len())
}

/// The contingency table of two labellings: `counts[i][j]` samples of class i in cluster j.
struct Contingency {
    n: u64,
    classes: usize,
    clusters: usize,
    counts: Vec<u64>,
}

impl Contingency {
    fn new<A, B>(truth: &[A], pred: &[B]) -> Result<Self>
    where
        A: Copy + Eq + Hash + Ord,
        B: Copy + Eq + Hash + Ord,
    {
        if truth.len() != pred.len() {
            return Err(Error::invalid(format!(
                "{} true labels but {} predicted labels",
                truth.len(),
                pred.len()
            )));
        }
        if truth.is_empty() {
            return Err(Error::invalid("no labels to compare"));
        }
        let (t, classes) = dense_labels(truth);
        let (p, clusters) = dense_labels(pred);
        let size = classes
            .checked_mul(clusters)
            .filter(|&s| s <= 1 << 28)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{classes} classes × {clusters} clusters is too large a contingency table"
                ))
            })?;
        let mut counts = vec![0u64; size];
        for (&i, &j) in t.iter().zip(&p) {
            counts[i * clusters + j] += 1;
        }
        Ok(Contingency {
            n: truth.len() as u64,
            classes,
            clusters,
            counts,
        })
    }

    fn class_sizes(&self) -> Vec<u64> {
        self.counts
            .chunks_exact(self.clusters)
            .map(|r| r.iter().sum())
            .collect()
    }

    fn cluster_sizes(&self) -> Vec<u64> {
        let mut s = vec![0u64; self.clusters];
        for r in self.counts.chunks_exact(self.clusters) {
            s.iter_mut().zip(r).for_each(|(a, &b)| *a += b);
        }
        s
    }

    /// Best one-to-one matching of clusters to classes (Hungarian), as a fraction of samples.
    fn accuracy(&self) -> f64 {
        // Rows = the smaller side, so the assignment is rows → distinct columns.
        let (rows, cols) = (
            self.classes.min(self.clusters),
            self.classes.max(self.clusters),
        );
        let weight = |r: usize, c: usize| -> i64 {
            let (i, j) = if self.classes <= self.clusters {
                (r, c)
            } else {
                (c, r)
            };
            self.counts[i * self.clusters + j] as i64
        };
        let cost: Vec<i64> = (0..rows * cols)
            .map(|x| -weight(x / cols, x % cols))
            .collect();
        let matched = -hungarian_min_cost(&cost, rows, cols);
        matched as f64 / self.n as f64
    }

    fn entropy(sizes: &[u64], n: u64) -> f64 {
        let ln_n = (n as f64).ln();
        -sizes
            .iter()
            .filter(|&&s| s > 0)
            .map(|&s| (s as f64 / n as f64) * ((s as f64).ln() - ln_n))
            .sum::<f64>()
    }

    /// NMI as `sklearn.metrics.normalized_mutual_info_score` (arithmetic mean).
    fn nmi(&self) -> f64 {
        if self.classes == 1 && self.clusters == 1 {
            return 1.0;
        }
        if self.classes == 1 || self.clusters == 1 {
            return 0.0;
        }
        let (a, b) = (self.class_sizes(), self.cluster_sizes());
        let n = self.n as f64;
        let ln_n = n.ln();
        let mut mi = 0f64;
        for (row, &ai) in self.counts.chunks_exact(self.clusters).zip(&a) {
            for (&nij, &bj) in row.iter().zip(&b) {
                if nij == 0 {
                    continue;
                }
                let p = nij as f64 / n;
                let outer = (ai as f64) * (bj as f64);
                let term = p * ((nij as f64).ln() - ln_n) + p * (-outer.ln() + 2.0 * ln_n);
                // As scikit-learn: terms below machine epsilon count as zero.
                if term.abs() >= f64::EPSILON {
                    mi += term;
                }
            }
        }
        let mi = mi.max(0.0);
        if mi == 0.0 {
            return 0.0;
        }
        let norm = 0.5 * (Self::entropy(&a, self.n) + Self::entropy(&b, self.n));
        mi / norm
    }

    /// ARI as `sklearn.metrics.adjusted_rand_score`.
    fn ari(&self) -> f64 {
        let sq = |v: &[u64]| v.iter().map(|&x| (x as i128) * (x as i128)).sum::<i128>();
        let n = self.n as i128;
        let sum_sq = sq(&self.counts);
        let tp = sum_sq - n;
        let fp = sq(&self.cluster_sizes()) - sum_sq;
        let fn_ = sq(&self.class_sizes()) - sum_sq;
        let tn = n * n - fp - fn_ - sum_sq;
        if fn_ == 0 && fp == 0 {
            return 1.0;
        }
        let num = 2.0 * ((tp * tn - fn_ * fp) as f64);
        let den = ((tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn)) as f64;
        num / den
    }
}

/// Minimum total cost of assigning each of `rows` rows to a distinct one of `cols ≥ rows`
/// columns (`cost` row-major): the Hungarian algorithm with potentials and shortest augmenting
/// paths, O(rows² · cols), exact on integers.
fn hungarian_min_cost(cost: &[i64], rows: usize, cols: usize) -> i64 {
    debug_assert!(rows <= cols && cost.len() == rows * cols);
    const INF: i64 = i64::MAX / 4;
    // 1-based: column 0 is a virtual column holding the row being inserted.
    let mut u = vec![0i64; rows + 1];
    let mut v = vec![0i64; cols + 1];
    let mut row_of = vec![0usize; cols + 1];
    let mut way = vec![0usize; cols + 1];
    for i in 1..=rows {
        row_of[0] = i;
        let mut j0 = 0usize;
        let mut min_to = vec![INF; cols + 1];
        let mut used = vec![false; cols + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = INF;
            let mut j1 = 0usize;
            for j in 1..=cols {
                if used[j] {
                    continue;
                }
                let cur = cost[(i0 - 1) * cols + (j - 1)] - u[i0] - v[j];
                if cur < min_to[j] {
                    min_to[j] = cur;
                    way[j] = j0;
                }
                if min_to[j] < delta {
                    delta = min_to[j];
                    j1 = j;
                }
            }
            for j in 0..=cols {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_to[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    (1..=cols)
        .filter(|&j| row_of[j] != 0)
        .map(|j| cost[(row_of[j] - 1) * cols + (j - 1)])
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, truth, pred, ACC, NMI, ARI): expected values computed once with scikit-learn
    /// 1.9.1 (`normalized_mutual_info_score`, `adjusted_rand_score`) and scipy's
    /// `linear_sum_assignment` on the contingency table (as `laic_ref.py`'s `acc`).
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, &[i64], &[i64], f64, f64, f64)] = &[
        (
            "random_5_vs_4",
            &[
                0, 3, 3, 2, 2, 4, 0, 3, 1, 0, 2, 4, 3, 3, 3, 3, 2, 0, 4, 2, 2, 1, 0, 4, 3, 3, 2, 4,
                2, 2, 2, 1, 0, 2, 4, 0, 4, 4, 1, 3,
            ],
            &[
                0, 3, 2, 1, 0, 3, 1, 3, 2, 3, 3, 0, 1, 1, 1, 0, 2, 0, 2, 2, 3, 2, 1, 3, 1, 1, 3, 1,
                0, 1, 3, 0, 1, 0, 2, 1, 1, 0, 2, 2,
            ],
            0.35,
            0.13454654003772964,
            0.0002880184331797235,
        ),
        (
            "random_noisy_copy",
            &[
                5, 2, 0, 4, 3, 4, 0, 1, 4, 4, 2, 4, 5, 2, 5, 1, 1, 4, 3, 0, 4, 1, 4, 0, 4, 4, 4, 3,
                2, 4, 1, 4, 3, 2, 3, 3, 0, 0, 1, 0, 2, 4, 3, 2, 5, 3, 0, 4, 3, 3,
            ],
            &[
                7, 5, 9, -1, -5, 1, 9, -1, 1, 1, -3, 1, 3, 7, 7, 5, -1, 1, -5, 9, -3, 9, 1, 9, 1,
                -5, 1, -5, 5, 1, -1, -3, -5, 5, -5, -5, 7, 9, -1, 9, 5, 1, -5, 5, 7, -5, 9, 1, 9,
                -5,
            ],
            0.78,
            0.705961498349446,
            0.6078455514787362,
        ),
        (
            "all_one_label_truth",
            &[3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
            &[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2],
            0.3333333333333333,
            0.0,
            0.0,
        ),
        (
            "all_one_label_both",
            &[3, 3, 3, 3, 3, 3, 3],
            &[9, 9, 9, 9, 9, 9, 9],
            1.0,
            1.0,
            1.0,
        ),
        (
            "singletons_pred",
            &[0, 0, 0, 1, 1, 1, 2, 2, 2, 2],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            0.3,
            0.642137561217943,
            0.0,
        ),
        (
            "singletons_both",
            &[0, 1, 2, 3, 4, 5],
            &[5, 4, 3, 2, 1, 0],
            1.0,
            1.0,
            1.0,
        ),
        (
            "perfect_permuted",
            &[0, 0, 1, 1, 2, 2, 3],
            &[7, 7, -1, -1, 4, 4, 100],
            1.0,
            1.0,
            1.0,
        ),
        (
            "two_vs_seven",
            &[0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1],
            &[0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6],
            0.14285714285714285,
            0.0,
            -0.1518987341772152,
        ),
        (
            "discordant_pairs",
            &[0, 0, 1, 1],
            &[0, 1, 0, 1],
            0.5,
            0.0,
            -0.5,
        ),
    ];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12
    }

    #[test]
    fn metrics_equal_scikit_learn_on_random_and_adversarial_labels() {
        for &(name, y, p, acc, nmi, ari) in CASES {
            let m = cluster_metrics(y, p).unwrap();
            assert!(close(m.acc, acc), "{name}: acc {} vs {acc}", m.acc);
            assert!(close(m.nmi, nmi), "{name}: nmi {} vs {nmi}", m.nmi);
            assert!(close(m.ari, ari), "{name}: ari {} vs {ari}", m.ari);
        }
    }

    #[test]
    fn metrics_equal_scikit_learn_on_37_classes_vs_40_clusters() {
        // Values from scikit-learn 1.9.1 / scipy 1.17.1 on the same formula-generated labels.
        let n = 3001usize;
        let y: Vec<u32> = (0..n).map(|i| ((i * i * 7 + i * 3) % 37) as u32).collect();
        let p: Vec<u64> = (0..n)
            .map(|i| ((y[i] as usize * 5 + if i % 3 == 0 { i % 7 } else { 0 }) % 40) as u64)
            .collect();
        let m = cluster_metrics(&y, &p).unwrap();
        assert!(close(m.acc, 0.3375541486171276), "{}", m.acc);
        assert!(close(m.nmi, 0.6019237642086607), "{}", m.nmi);
        assert!(close(m.ari, 0.349339829250593), "{}", m.ari);
        // Swapping the roles keeps ACC (rectangular both ways), NMI and ARI.
        let s = cluster_metrics(&p, &y).unwrap();
        assert!(close(s.acc, m.acc) && close(s.nmi, m.nmi) && close(s.ari, m.ari));
    }

    #[test]
    fn hungarian_is_exact_against_brute_force() {
        // All permutations of a 6×6 and injections of 4 rows into 6 columns.
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % 50) as i64 - 10
        };
        for (rows, cols) in [(6, 6), (4, 6), (1, 5), (3, 3)] {
            for _ in 0..20 {
                let cost: Vec<i64> = (0..rows * cols).map(|_| next()).collect();
                fn best(
                    cost: &[i64],
                    rows: usize,
                    cols: usize,
                    r: usize,
                    used: &mut Vec<bool>,
                ) -> i64 {
                    if r == rows {
                        return 0;
                    }
                    let mut b = i64::MAX;
                    for c in 0..cols {
                        if !used[c] {
                            used[c] = true;
                            b = b.min(cost[r * cols + c] + best(cost, rows, cols, r + 1, used));
                            used[c] = false;
                        }
                    }
                    b
                }
                let want = best(&cost, rows, cols, 0, &mut vec![false; cols]);
                assert_eq!(hungarian_min_cost(&cost, rows, cols), want);
            }
        }
    }

    #[test]
    fn mismatched_or_empty_labels_are_rejected() {
        let e = cluster_metrics(&[0u32, 1], &[0u32]).unwrap_err();
        assert!(
            e.to_string().contains("2 true labels but 1 predicted"),
            "{e}"
        );
        assert!(cluster_metrics::<u32, u32>(&[], &[]).is_err());
    }
}
