//! k-means: options, validation, k-means++ seeding, the Lloyd loop with restarts and
//! empty-cluster repair. The heavy steps (assignment, per-cluster sums) are backend
//! primitives ([`crate::backend::Backend::kmeans_assign`], `cluster_sums`); the seeding and
//! the Lloyd loop here are the host loops of [`KMeansSteps::kmeans_plus_plus`] and
//! [`KMeansSteps::lloyd`], which a device backend may run on the device instead.
//!
//! The loop follows scikit-learn's `KMeans(algorithm="lloyd")`, which the reference uses:
//! greedy k-means++ with `2 + ⌊ln K⌋` local trials, stop when the labels no longer change or
//! the squared centre shift falls to `tol` × the mean per-feature variance, a final assignment
//! to the last centres, and the restart with the lowest objective wins (earliest on ties).

use crate::backend::{Backend, KMeansSteps};
use crate::error::{Error, Result};
use crate::matrix::MatrixRef;
use crate::progress::{Progress, Stage};
use crate::rng::Rng;

/// The distance k-means minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance on the rows as given; centres are member means.
    Euclidean,
    /// Cosine: rows are L2-normalised first, the distance is 1 − cos, and centres are the
    /// normalised member means.
    Spherical,
}

/// Options of [`crate::Context::kmeans`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansOptions {
    /// Number of clusters K (1 ≤ K ≤ N).
    pub n_clusters: usize,
    /// Distance (default Euclidean, as scikit-learn).
    pub metric: Metric,
    /// Most Lloyd iterations per restart (default 300).
    pub max_iter: usize,
    /// Restarts from independent seedings; the lowest objective wins (default 10).
    pub n_redo: usize,
    /// Convergence tolerance, relative to the mean per-feature variance (default 1e-4).
    pub tol: f64,
    /// Seed of the k-means++ seeding (default 0).
    pub seed: u64,
}

impl Default for KMeansOptions {
    fn default() -> Self {
        KMeansOptions {
            n_clusters: 8,
            metric: Metric::Euclidean,
            max_iter: 300,
            n_redo: 10,
            tol: 1e-4,
            seed: 0,
        }
    }
}

impl KMeansOptions {
    /// Errors unless the options are usable for `n` rows.
    pub fn validate(&self, n: usize) -> Result<()> {
        if self.n_clusters == 0 {
            return Err(Error::invalid("n_clusters must be at least 1"));
        }
        if self.n_clusters > n {
            return Err(Error::invalid(format!(
                "n_clusters is {} but there are only {n} rows",
                self.n_clusters
            )));
        }
        if self.n_clusters > u32::MAX as usize {
            return Err(Error::invalid("n_clusters exceeds 2^32 - 1"));
        }
        if self.max_iter == 0 {
            return Err(Error::invalid("max_iter must be at least 1"));
        }
        if self.n_redo == 0 {
            return Err(Error::invalid("n_redo must be at least 1"));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(Error::invalid(format!(
                "tol must be finite and >= 0, got {}",
                self.tol
            )));
        }
        Ok(())
    }
}

/// Caller-owned outputs of an assignment step, one element per row.
#[derive(Debug)]
pub struct AssignOut<'a> {
    /// Nearest centre per row.
    pub labels: &'a mut [u32],
    /// Distance to it per row (squared Euclidean, or 1 − cos).
    pub distances: &'a mut [f32],
}

/// The result of [`crate::Context::kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansResult {
    /// Cluster of each row (N).
    pub labels: Vec<u32>,
    /// Centres, K×D row-major (unit rows for the spherical metric).
    pub centres: Vec<f32>,
    /// Columns D of the centres.
    pub dim: usize,
    /// Sum over rows of the distance to their centre (squared Euclidean or 1 − cos).
    pub objective: f64,
    /// Lloyd iterations of the winning restart.
    pub n_iter: usize,
    /// Index of the winning restart.
    pub best_run: usize,
}

/// The f32 rows of one k-means call (unit rows for the spherical metric) as the loops read
/// them: a few at a time, for the seeds and for the points that refill empty clusters. The
/// rows may live in host memory ([`HostRows`]) or on a device.
pub trait Rows {
    /// Number of rows N.
    fn n_rows(&self) -> usize;

    /// Columns D of each row.
    fn dim(&self) -> usize;

    /// Copies the rows `idx` (each < N), in that order, into `out` (`idx.len()` × D).
    fn copy_rows(&self, idx: &[usize], out: &mut [f32]) -> Result<()>;
}

/// [`Rows`] in host memory: `data` holds N×`d` f32, row-major.
#[derive(Debug, Clone, Copy)]
pub struct HostRows<'a> {
    /// The rows.
    pub data: &'a [f32],
    /// Columns per row.
    pub d: usize,
}

impl<'a> HostRows<'a> {
    /// The rows of `data`, `d` columns each (`data.len()` a multiple of `d`).
    pub fn new(data: &'a [f32], d: usize) -> Self {
        debug_assert!(d > 0 && data.len().is_multiple_of(d));
        HostRows { data, d }
    }
}

impl Rows for HostRows<'_> {
    fn n_rows(&self) -> usize {
        self.data.len() / self.d
    }

    fn dim(&self) -> usize {
        self.d
    }

    fn copy_rows(&self, idx: &[usize], out: &mut [f32]) -> Result<()> {
        let d = self.d;
        for (o, &i) in out.chunks_exact_mut(d).zip(idx) {
            o.copy_from_slice(&self.data[i * d..(i + 1) * d]);
        }
        Ok(())
    }
}

/// Runs k-means on validated-shape input `x` on `backend`, reporting progress under `stage`.
pub(crate) fn run(
    backend: &dyn Backend,
    x: &MatrixRef<'_>,
    opts: &KMeansOptions,
    progress: &Progress<'_>,
    stage: Stage,
) -> Result<KMeansResult> {
    opts.validate(x.rows()).map_err(|e| e.in_arg("options"))?;
    let spherical = opts.metric == Metric::Spherical;
    x.check_rows("x", spherical)?;
    let (n, d) = (x.rows(), x.cols());
    let mut data = x.to_f32_vec();
    if spherical {
        normalize_rows(&mut data, d);
    }
    let tol = opts.tol * mean_variance(&data, n, d);
    // The backend sees the rows once per call: as given for the Euclidean metric (any dtype,
    // converted exactly), the normalised f32 copy for the spherical one.
    let xm = if spherical {
        MatrixRef::from_f32(&data, n, d)?
    } else {
        *x
    };
    let mut steps = backend.kmeans_steps(xm)?;
    restarts(
        steps.as_mut(),
        &HostRows::new(&data, d),
        opts,
        tol,
        progress,
        stage,
    )
}

/// The `opts.n_redo` restarts of k-means (seeding, Lloyd) on the rows `steps` works on, whose
/// f32 copy `rows` is, with the tolerance `tol` already scaled; the lowest objective wins
/// (earliest on ties). `opts` has been validated for the rows.
pub(crate) fn restarts(
    steps: &mut dyn KMeansSteps,
    rows: &dyn Rows,
    opts: &KMeansOptions,
    tol: f64,
    progress: &Progress<'_>,
    stage: Stage,
) -> Result<KMeansResult> {
    let n = rows.n_rows();
    let mut best: Option<KMeansResult> = None;
    for run in 0..opts.n_redo {
        let report = |f: f64| progress.report(stage, (run as f64 + f) / opts.n_redo as f64);
        let mut rng = Rng::new(opts.seed, run as u64);
        let first = rng.below(n as u64) as usize;
        let seeds =
            steps.kmeans_plus_plus(rows, opts.n_clusters, opts.metric, first, &mut || {
                rng.next_f64()
            })?;
        let mut res = steps.lloyd(rows, seeds, opts, tol, &report)?;
        res.best_run = run;
        if best.as_ref().is_none_or(|b| res.objective < b.objective) {
            best = Some(res);
        }
    }
    progress.report(stage, 1.0)?;
    best.ok_or_else(|| Error::Internal("k-means ran no restart".into()))
}

/// L2-normalises each row (non-zero rows: checked before).
fn normalize_rows(buf: &mut [f32], d: usize) {
    for row in buf.chunks_exact_mut(d) {
        let ss: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let inv = (1.0 / ss.sqrt()) as f32;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Mean over the columns of the per-column variance (scikit-learn's tolerance scale).
pub(crate) fn mean_variance(data: &[f32], n: usize, d: usize) -> f64 {
    let mut mean = vec![0f64; d];
    for row in data.chunks_exact(d) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = 0f64;
    for row in data.chunks_exact(d) {
        var += row
            .iter()
            .zip(&mean)
            .map(|(&v, &m)| (v as f64 - m).powi(2))
            .sum::<f64>();
    }
    var / (n as f64 * d as f64)
}

/// Greedy k-means++ (as scikit-learn): the first centre uniformly at random; each next one
/// the best of `2 + ⌊ln K⌋` candidates drawn with probability ∝ distance to the nearest
/// centre so far, "best" meaning the lowest total distance afterwards. The distances to all
/// candidates of a step come from one call of the backend's `distances` primitive; `rows` is
/// the f32 copy of the rows `steps` works on, for the chosen rows. `first` is the first
/// centre's row (drawn uniformly by the caller) and `uniform` draws the candidates' numbers in
/// [0, 1) (the host loop of [`KMeansSteps::kmeans_plus_plus`]).
pub(crate) fn kmeans_plus_plus<S: KMeansSteps + ?Sized>(
    steps: &mut S,
    rows: &dyn Rows,
    k: usize,
    metric: Metric,
    first: usize,
    uniform: &mut dyn FnMut() -> f64,
) -> Result<Vec<f32>> {
    let (n, d) = (rows.n_rows(), rows.dim());
    let trials = 2 + (k as f64).ln() as usize;
    let mut centres = vec![0f32; d];
    rows.copy_rows(&[first], &mut centres)?;
    centres.reserve((k - 1) * d);
    let mut closest = vec![0f32; n];
    steps.distances(&centres, metric, &mut closest)?;
    let mut cand_rows = vec![0f32; trials * d];
    let mut cand_dist = vec![0f32; n * trials];
    let mut cumsum = vec![0f64; n];
    for _ in 1..k {
        let mut acc = 0f64;
        for (c, &v) in cumsum.iter_mut().zip(&closest) {
            acc += v as f64;
            *c = acc;
        }
        let cands: Vec<usize> = (0..trials)
            .map(|_| {
                let r = uniform() * acc;
                cumsum.partition_point(|&c| c < r).min(n - 1)
            })
            .collect();
        rows.copy_rows(&cands, &mut cand_rows)?;
        steps.distances(&cand_rows, metric, &mut cand_dist)?;
        let mut best: Option<(f64, usize)> = None;
        for t in 0..trials {
            let pot: f64 = closest
                .iter()
                .enumerate()
                .map(|(i, &cl)| cl.min(cand_dist[i * trials + t]) as f64)
                .sum();
            if best.is_none_or(|(p, _)| pot < p) {
                best = Some((pot, t));
            }
        }
        let (_, t) = best.expect("at least two trials");
        centres.extend_from_slice(&cand_rows[t * d..(t + 1) * d]);
        for (j, cl) in closest.iter_mut().enumerate() {
            *cl = cl.min(cand_dist[j * trials + t]);
        }
    }
    Ok(centres)
}

/// Lloyd iterations from `centres` until the labels repeat, the shift falls below `tol`, or
/// `max_iter`; then one assignment to the final centres (the host loop of
/// [`KMeansSteps::lloyd`]).
pub(crate) fn lloyd<S: KMeansSteps + ?Sized>(
    steps: &mut S,
    rows: &dyn Rows,
    mut centres: Vec<f32>,
    opts: &KMeansOptions,
    tol: f64,
    report: &dyn Fn(f64) -> Result<()>,
) -> Result<KMeansResult> {
    let (n, d, k) = (rows.n_rows(), rows.dim(), opts.n_clusters);
    let mut labels = vec![0u32; n];
    let mut prev = vec![u32::MAX; n];
    let mut dist = vec![0f32; n];
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0u64; k];
    let mut assigned_to_current = false;
    let mut n_iter = 0;
    for it in 0..opts.max_iter {
        steps.assign(
            &centres,
            opts.metric,
            AssignOut {
                labels: &mut labels,
                distances: &mut dist,
            },
        )?;
        n_iter = it + 1;
        if labels == prev {
            assigned_to_current = true;
            break;
        }
        steps.cluster_sums(&labels, &mut sums, &mut counts)?;
        repair_empty(rows, &labels, &dist, &mut sums, &mut counts)?;
        let shift = update_centres(&sums, &counts, opts.metric, &mut centres, d);
        std::mem::swap(&mut labels, &mut prev);
        report((it + 1) as f64 / opts.max_iter as f64)?;
        if shift <= tol {
            break;
        }
    }
    if !assigned_to_current {
        steps.assign(
            &centres,
            opts.metric,
            AssignOut {
                labels: &mut labels,
                distances: &mut dist,
            },
        )?;
    }
    let objective = dist.iter().map(|&v| v as f64).sum();
    Ok(KMeansResult {
        labels,
        centres,
        dim: d,
        objective,
        n_iter,
        best_run: 0,
    })
}

/// Gives every empty cluster one of the points farthest from their centres (largest distance
/// first, ties to the lower index), taking it out of its old cluster, as scikit-learn does.
/// Only the moved points' rows are read from `rows`.
pub(crate) fn repair_empty(
    rows: &dyn Rows,
    labels: &[u32],
    dist: &[f32],
    sums: &mut [f64],
    counts: &mut [u64],
) -> Result<()> {
    let d = rows.dim();
    let empty: Vec<usize> = (0..counts.len()).filter(|&c| counts[c] == 0).collect();
    if empty.is_empty() {
        return Ok(());
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
    let mut far = order.into_iter();
    // Which point refills which cluster depends on the counts only; the rows come after.
    let mut moves = Vec::with_capacity(empty.len());
    for c in empty {
        // A point whose cluster keeps at least one other member.
        let Some(i) = far.by_ref().find(|&i| counts[labels[i] as usize] > 1) else {
            break;
        };
        counts[labels[i] as usize] -= 1;
        counts[c] = 1;
        moves.push((i, c));
    }
    let idx: Vec<usize> = moves.iter().map(|&(i, _)| i).collect();
    let mut moved = vec![0f32; idx.len() * d];
    rows.copy_rows(&idx, &mut moved)?;
    for (&(i, c), row) in moves.iter().zip(moved.chunks_exact(d)) {
        let old = labels[i] as usize;
        for j in 0..d {
            sums[old * d + j] -= row[j] as f64;
            sums[c * d + j] = row[j] as f64;
        }
    }
    Ok(())
}

/// New centres from sums and counts (empty clusters keep their centre); returns the squared
/// shift Σ‖c_new − c_old‖².
pub(crate) fn update_centres(
    sums: &[f64],
    counts: &[u64],
    metric: Metric,
    centres: &mut [f32],
    d: usize,
) -> f64 {
    let mut shift = 0f64;
    for (c, &count) in counts.iter().enumerate() {
        let s = &sums[c * d..(c + 1) * d];
        let scale = match metric {
            Metric::Euclidean if count > 0 => 1.0 / count as f64,
            Metric::Spherical => {
                let norm = s.iter().map(|v| v * v).sum::<f64>().sqrt();
                if norm > 0.0 { 1.0 / norm } else { 0.0 }
            }
            _ => 0.0,
        };
        if scale == 0.0 {
            continue;
        }
        for (o, &v) in centres[c * d..(c + 1) * d].iter_mut().zip(s) {
            let new = (v * scale) as f32;
            shift += ((new - *o) as f64).powi(2);
            *o = new;
        }
    }
    shift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Context;
    use rand::{Rng as _, SeedableRng};
    use rand_distr::{Distribution, Normal};

    /// `k` planted clusters of `per` points in `d` dims around well-separated centres.
    fn planted(k: usize, per: usize, d: usize, spread: f32, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let noise = Normal::new(0.0f32, spread).unwrap();
        let centres: Vec<f32> = (0..k * d)
            .map(|_| rng.random::<f32>() * 20.0 - 10.0)
            .collect();
        let mut x = Vec::new();
        let mut y = Vec::new();
        // Interleave the clusters so that rows of one cluster are not contiguous.
        for _ in 0..per {
            for c in 0..k {
                x.extend((0..d).map(|j| centres[c * d + j] + noise.sample(&mut rng)));
                y.push(c as u32);
            }
        }
        (x, y)
    }

    /// Naive f64 Lloyd (no tolerance stop, no repair) from given centres: its objective.
    fn naive_lloyd_objective(x: &[f32], d: usize, centres: &[f32], iters: usize) -> f64 {
        let n = x.len() / d;
        let k = centres.len() / d;
        let mut c: Vec<f64> = centres.iter().map(|&v| v as f64).collect();
        let dist = |i: usize, c: &[f64], j: usize| -> f64 {
            (0..d)
                .map(|t| (x[i * d + t] as f64 - c[j * d + t]).powi(2))
                .sum()
        };
        let mut labels = vec![0usize; n];
        for _ in 0..iters {
            for (i, l) in labels.iter_mut().enumerate() {
                *l = (0..k)
                    .min_by(|&a, &b| dist(i, &c, a).total_cmp(&dist(i, &c, b)))
                    .unwrap();
            }
            let mut s = vec![0f64; k * d];
            let mut cnt = vec![0usize; k];
            for i in 0..n {
                cnt[labels[i]] += 1;
                for t in 0..d {
                    s[labels[i] * d + t] += x[i * d + t] as f64;
                }
            }
            for j in 0..k {
                if cnt[j] > 0 {
                    for t in 0..d {
                        c[j * d + t] = s[j * d + t] / cnt[j] as f64;
                    }
                }
            }
        }
        (0..n)
            .map(|i| (0..k).map(|j| dist(i, &c, j)).fold(f64::INFINITY, f64::min))
            .sum()
    }

    fn same_partition(a: &[u32], b: &[u32]) -> bool {
        let mut map = std::collections::HashMap::new();
        a.iter()
            .zip(b)
            .all(|(&x, &y)| *map.entry(x).or_insert(y) == y)
            && a.iter()
                .zip(b)
                .map(|(&x, &y)| (y, x))
                .collect::<std::collections::HashMap<_, _>>()
                .len()
                == map.len()
    }

    #[test]
    fn planted_clusters_are_recovered_for_both_metrics() {
        let (x, y) = planted(7, 40, 37, 0.5, 1);
        let ctx = Context::cpu();
        let xm = MatrixRef::from_f32(&x, y.len(), 37).unwrap();
        for metric in [Metric::Euclidean, Metric::Spherical] {
            let opts = KMeansOptions {
                n_clusters: 7,
                metric,
                n_redo: 3,
                ..Default::default()
            };
            let r = ctx.kmeans(&xm, &opts).unwrap();
            assert!(same_partition(&r.labels, &y), "{metric:?}");
            assert_eq!(r.centres.len(), 7 * 37);
        }
    }

    #[test]
    fn objective_never_exceeds_plain_lloyd_from_the_same_seeds() {
        let (x, _) = planted(5, 30, 13, 4.0, 2);
        let n = x.len() / 13;
        let ctx = Context::cpu();
        let xm = MatrixRef::from_f32(&x, n, 13).unwrap();
        let opts = KMeansOptions {
            n_clusters: 9,
            n_redo: 4,
            tol: 0.0,
            seed: 11,
            ..Default::default()
        };
        let r = ctx.kmeans(&xm, &opts).unwrap();
        let mut best_plain = f64::INFINITY;
        for run in 0..4 {
            let mut rng = Rng::new(11, run);
            let mut steps = ctx.backend().kmeans_steps(xm).unwrap();
            let first = rng.below(x.len() as u64 / 13) as usize;
            let seeds = kmeans_plus_plus(
                steps.as_mut(),
                &HostRows::new(&x, 13),
                9,
                Metric::Euclidean,
                first,
                &mut || rng.next_f64(),
            )
            .unwrap();
            best_plain = best_plain.min(naive_lloyd_objective(&x, 13, &seeds, 300));
        }
        assert!(
            r.objective <= best_plain * (1.0 + 1e-5),
            "{} vs {best_plain}",
            r.objective
        );
        // The objective is the sum of squared distances to the returned centres.
        let direct: f64 = (0..n)
            .map(|i| {
                let l = r.labels[i] as usize;
                (0..13)
                    .map(|t| (x[i * 13 + t] as f64 - r.centres[l * 13 + t] as f64).powi(2))
                    .sum::<f64>()
            })
            .sum();
        assert!(
            (direct - r.objective).abs() <= 1e-4 * direct,
            "{direct} vs {}",
            r.objective
        );
    }

    #[test]
    fn restarts_pick_the_lowest_objective_and_runs_are_deterministic() {
        let (x, _) = planted(6, 25, 11, 6.0, 3);
        let n = x.len() / 11;
        let ctx = Context::cpu();
        let xm = MatrixRef::from_f32(&x, n, 11).unwrap();
        let base = KMeansOptions {
            n_clusters: 6,
            n_redo: 1,
            seed: 5,
            ..Default::default()
        };
        let all = ctx
            .kmeans(&xm, &KMeansOptions { n_redo: 6, ..base })
            .unwrap();
        let mut singles = Vec::new();
        for run in 0..6u64 {
            // Restart r of a multi-run uses stream r; reproduce it alone.
            let mut rng = Rng::new(5, run);
            let mut steps = ctx.backend().kmeans_steps(xm).unwrap();
            let first = rng.below(x.len() as u64 / 11) as usize;
            let seeds = kmeans_plus_plus(
                steps.as_mut(),
                &HostRows::new(&x, 11),
                6,
                Metric::Euclidean,
                first,
                &mut || rng.next_f64(),
            )
            .unwrap();
            let tol = base.tol * mean_variance(&x, n, 11);
            let rows = HostRows::new(&x, 11);
            let r = lloyd(steps.as_mut(), &rows, seeds, &base, tol, &|_| Ok(())).unwrap();
            singles.push(r.objective);
        }
        let min = singles.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(all.objective, min);
        assert_eq!(singles[all.best_run], min);
        assert_eq!(
            ctx.kmeans(&xm, &KMeansOptions { n_redo: 6, ..base })
                .unwrap(),
            all
        );
        let threaded = Context::with_options(&crate::ContextOptions {
            n_threads: 1,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            threaded
                .kmeans(&xm, &KMeansOptions { n_redo: 6, ..base })
                .unwrap(),
            all
        );
    }

    #[test]
    fn empty_clusters_are_repaired_with_far_points() {
        // Two identical points and one far away, three clusters, seeds force an empty one.
        let x = [0.0f32, 0.0, 0.0, 0.0, 10.0, 10.0, 0.0, 0.1];
        let labels = [0u32, 0, 1, 0];
        let dist = [0.0f32, 0.0, 0.0, 0.01];
        let mut sums = vec![0.0, 0.1, 10.0, 10.0, 0.0, 0.0];
        let mut counts = vec![3u64, 1, 0];
        repair_empty(
            &HostRows::new(&x, 2),
            &labels,
            &dist,
            &mut sums,
            &mut counts,
        )
        .unwrap();
        assert_eq!(counts, vec![2, 1, 1]);
        assert_eq!(&sums[4..6], &[0.0, 0.1f32 as f64]);
        assert!((sums[1]).abs() < 1e-7);
        // Duplicate points: more clusters than distinct points still gives K labels in range.
        let dup = [1.0f32, 2.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0];
        let ctx = Context::cpu();
        let r = ctx
            .kmeans(
                &MatrixRef::from_f32(&dup, 4, 2).unwrap(),
                &KMeansOptions {
                    n_clusters: 3,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(r.labels.iter().all(|&l| l < 3));
        assert!(r.objective.abs() < 1e-6);
    }

    #[test]
    fn assignment_matches_f64_on_odd_sizes_and_dtypes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let (n, k, d) = (531, 300, 67);
        let x: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>() - 0.5).collect();
        let c: Vec<f32> = (0..k * d).map(|_| rng.random::<f32>() - 0.5).collect();
        let xh: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        let backend = crate::backend::cpu::CpuBackend;
        use crate::backend::Backend;
        for xm in [
            MatrixRef::from_f32(&x, n, d).unwrap(),
            MatrixRef::from_f16(&xh, n, d).unwrap(),
        ] {
            let xf = xm.to_f32_vec();
            let mut labels = vec![0u32; n];
            let mut dist = vec![0f32; n];
            backend
                .kmeans_assign(
                    &xm,
                    &c,
                    Metric::Euclidean,
                    AssignOut {
                        labels: &mut labels,
                        distances: &mut dist,
                    },
                )
                .unwrap();
            for i in 0..n {
                let dd: Vec<f64> = (0..k)
                    .map(|j| {
                        (0..d)
                            .map(|t| (xf[i * d + t] as f64 - c[j * d + t] as f64).powi(2))
                            .sum()
                    })
                    .collect();
                let best = dd.iter().copied().fold(f64::INFINITY, f64::min);
                assert!(
                    (dist[i] as f64 - best).abs() < 1e-4 * (1.0 + best),
                    "row {i}"
                );
                assert!(dd[labels[i] as usize] - best < 1e-4, "row {i}");
            }
        }
    }

    #[test]
    fn bad_options_and_nan_rows_are_rejected() {
        let x = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
        let ctx = Context::cpu();
        let xm = MatrixRef::from_f32(&x, 3, 2).unwrap();
        let ok = KMeansOptions {
            n_clusters: 2,
            ..Default::default()
        };
        for bad in [
            KMeansOptions {
                n_clusters: 4,
                ..ok
            },
            KMeansOptions {
                n_clusters: 0,
                ..ok
            },
            KMeansOptions { n_redo: 0, ..ok },
            KMeansOptions { max_iter: 0, ..ok },
            KMeansOptions {
                tol: f64::NAN,
                ..ok
            },
        ] {
            let e = ctx.kmeans(&xm, &bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e}");
        }
        let e = ctx
            .kmeans(
                &xm,
                &KMeansOptions {
                    n_clusters: 4,
                    ..ok
                },
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("n_clusters is 4 but there are only 3 rows"),
            "{e}"
        );
        let nan = [1.0f32, f32::NAN, 0.0, 1.0];
        let e = ctx
            .kmeans(&MatrixRef::from_f32(&nan, 2, 2).unwrap(), &ok)
            .unwrap_err();
        assert!(e.to_string().contains("x row 0 contains NaN"), "{e}");
    }
}
