//! The C ABI of k-means, retrieval, metrics and the pipeline, exercised from Rust: results,
//! the result handle's accessors, progress and cancellation, and bad input → status + message
//! with outputs left untouched.

use laic::LaicStatus;
use laic::ffi::*;
use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::{null, null_mut};

fn last_error() -> String {
    // SAFETY: laic_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(laic_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn matrix(data: &[f32], rows: usize, cols: usize) -> LaicMatrix {
    LaicMatrix {
        data: data.as_ptr() as *const c_void,
        rows,
        cols,
        row_stride: cols,
        dtype: LAIC_DTYPE_F32,
    }
}

/// A small deterministic generator for test data.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
}

/// `k` clusters of `per` images around random directions in `d` dims, and `nouns_per` nouns
/// near each direction (plus as many random distractor nouns).
struct World {
    images: Vec<f32>,
    labels: Vec<i64>,
    nouns: Vec<f32>,
    names: Vec<CString>,
    n: usize,
    m: usize,
    d: usize,
}

fn world(k: usize, per: usize, nouns_per: usize, d: usize) -> World {
    let mut rng = Lcg(42);
    let dirs: Vec<f32> = (0..k * d).map(|_| rng.next()).collect();
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..k * per {
        let c = i % k;
        images.extend((0..d).map(|j| dirs[c * d + j] + 0.08 * rng.next()));
        labels.push(c as i64);
    }
    let mut nouns = Vec::new();
    let mut names = Vec::new();
    for c in 0..k {
        for s in 0..nouns_per {
            nouns.extend((0..d).map(|j| dirs[c * d + j] + 0.1 * rng.next()));
            names.push(CString::new(format!("noun{c}_{s}")).unwrap());
        }
    }
    for s in 0..k * nouns_per {
        nouns.extend((0..d).map(|_| rng.next()));
        names.push(CString::new(format!("distractor{s}")).unwrap());
    }
    World {
        n: k * per,
        m: names.len(),
        images,
        labels,
        nouns,
        names,
        d,
    }
}

fn cpu_context() -> *mut LaicContext {
    let mut ctx = null_mut();
    let mut o = LaicContextOptions {
        struct_size: 0,
        backend: 0,
        n_threads: 0,
        device: 0,
    };
    // SAFETY: valid pointers to locals.
    unsafe {
        assert_eq!(
            laic_context_options_default(&mut o, size_of::<LaicContextOptions>()),
            LaicStatus::Ok
        );
        o.backend = LAIC_BACKEND_CPU;
        assert_eq!(laic_context_create(&o, &mut ctx), LaicStatus::Ok);
    }
    ctx
}

fn pipeline_defaults() -> LaicPipelineOptions {
    // SAFETY: zeroed is a valid bit pattern for this plain struct; then filled.
    let mut o: LaicPipelineOptions = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    let s = unsafe { laic_pipeline_options_default(&mut o, size_of::<LaicPipelineOptions>()) };
    assert_eq!(s, LaicStatus::Ok);
    o
}

/// Runs the pipeline on `w` with `opts`; returns the status and the handle (NULL on failure).
#[allow(clippy::too_many_arguments)]
fn run(
    ctx: *mut LaicContext,
    w: &World,
    images: &LaicMatrix,
    nouns: Option<&LaicMatrix>,
    labels: Option<&[i64]>,
    opts: &LaicPipelineOptions,
    progress: LaicProgressFn,
    user: *mut c_void,
) -> (LaicStatus, *mut LaicPipelineResult) {
    let name_ptrs: Vec<*const c_char> = w.names.iter().map(|s| s.as_ptr()).collect();
    let mut out = null_mut();
    // SAFETY: every pointer refers to live locals of the right sizes.
    let s = unsafe {
        laic_pipeline_run(
            ctx,
            images,
            null(),
            nouns.map_or(null(), |m| m as *const _),
            if nouns.is_some() {
                name_ptrs.as_ptr()
            } else {
                null()
            },
            labels.map_or(null(), |l| l.as_ptr()),
            labels.map_or(0, |l| l.len()),
            opts,
            progress,
            user,
            &mut out,
        )
    };
    (s, out)
}

unsafe extern "C" fn count_calls(user: *mut c_void, stage: LaicStage, fraction: f64) -> i32 {
    // SAFETY: the tests pass a pointer to a Vec<(u32, f64)>.
    let log = unsafe { &mut *(user as *mut Vec<(u32, f64)>) };
    log.push((stage, fraction));
    0
}

unsafe extern "C" fn cancel_at_retrieval(_: *mut c_void, stage: LaicStage, _: f64) -> i32 {
    (stage == LAIC_STAGE_RETRIEVAL) as i32
}

#[test]
fn pipeline_through_the_c_abi_clusters_names_and_scores() {
    let w = world(4, 30, 3, 24);
    let ctx = cpu_context();
    let images = matrix(&w.images, w.n, w.d);
    let nouns = matrix(&w.nouns, w.m, w.d);
    let mut opts = pipeline_defaults();
    opts.n_clusters = 4;
    opts.n_centres = 4;
    opts.top_k = 2;
    opts.n_redo = 3;
    let mut log: Vec<(u32, f64)> = Vec::new();
    let (s, res) = run(
        ctx,
        &w,
        &images,
        Some(&nouns),
        Some(&w.labels),
        &opts,
        Some(count_calls),
        &mut log as *mut _ as *mut c_void,
    );
    assert_eq!(s, LaicStatus::Ok, "{}", last_error());
    // Every stage reported, in order, ending at 1.
    let stages: Vec<u32> = log.iter().map(|l| l.0).collect();
    assert!(stages.windows(2).all(|p| p[0] <= p[1]), "{stages:?}");
    assert_eq!(log.last(), Some(&(LAIC_STAGE_NAMING, 1.0)));
    // SAFETY (block): `res` is a live handle; outputs are locals.
    unsafe {
        let (mut p, mut len) = (null(), 0usize);
        assert_eq!(
            laic_pipeline_result_labels(res, &mut p, &mut len),
            LaicStatus::Ok
        );
        assert_eq!(len, w.n);
        let labels = std::slice::from_raw_parts(p, len);
        assert!(labels.iter().all(|&l| l < 4));
        let mut m = LaicClusterMetrics {
            acc: -1.0,
            nmi: -1.0,
            ari: -1.0,
        };
        assert_eq!(laic_pipeline_result_metrics(res, &mut m), LaicStatus::Ok);
        assert_eq!((m.acc, m.nmi, m.ari), (1.0, 1.0, 1.0), "planted clusters");
        let (mut sel, mut n_sel) = (null(), 0usize);
        assert_eq!(
            laic_pipeline_result_selected(res, &mut sel, &mut n_sel),
            LaicStatus::Ok
        );
        assert!(n_sel > 0 && n_sel <= 16);
        let (mut n_clusters, mut n_centres) = (0usize, 0usize);
        assert_eq!(
            laic_pipeline_result_sizes(res, &mut n_clusters, &mut n_centres),
            LaicStatus::Ok
        );
        assert_eq!((n_clusters, n_centres), (4, 4));
        // Each cluster is named after the nouns planted near its images.
        for c in 0..4 {
            let (mut names, mut count) = (null(), 0usize);
            assert_eq!(
                laic_pipeline_result_cluster_names(res, c, &mut names, &mut count),
                LaicStatus::Ok
            );
            assert!((1..=3).contains(&count));
            let first = CStr::from_ptr(*names).to_str().unwrap();
            let member = labels.iter().position(|&l| l as usize == c).unwrap();
            let class = w.labels[member];
            assert!(
                first.starts_with(&format!("noun{class}_")),
                "cluster {c}: {first}"
            );
        }
        let mut obj = -1.0;
        assert_eq!(
            laic_pipeline_result_objective(res, &mut obj),
            LaicStatus::Ok
        );
        assert!(obj > 0.0);
        let (mut nn, mut nc) = (null(), 0usize);
        assert_eq!(
            laic_pipeline_result_cluster_nouns(res, 4, &mut nn, &mut nc),
            LaicStatus::InvalidArgument
        );
        laic_pipeline_result_free(res);
        laic_pipeline_result_free(null_mut());
        laic_context_free(ctx);
    }
}

#[test]
fn a_progress_callback_returning_non_zero_cancels() {
    let w = world(3, 10, 2, 8);
    let ctx = cpu_context();
    let images = matrix(&w.images, w.n, w.d);
    let nouns = matrix(&w.nouns, w.m, w.d);
    let mut opts = pipeline_defaults();
    opts.n_clusters = 3;
    let (s, res) = run(
        ctx,
        &w,
        &images,
        Some(&nouns),
        None,
        &opts,
        Some(cancel_at_retrieval),
        null_mut(),
    );
    assert_eq!(s, LaicStatus::Cancelled);
    assert!(res.is_null());
    assert!(last_error().contains("cancelled"), "{}", last_error());
    // SAFETY: live handle.
    unsafe { laic_context_free(ctx) };
}

#[test]
fn bad_pipeline_input_gives_status_and_message() {
    let w = world(3, 10, 2, 8);
    let ctx = cpu_context();
    let images = matrix(&w.images, w.n, w.d);
    let nouns = matrix(&w.nouns, w.m, w.d);
    let base = {
        let mut o = pipeline_defaults();
        o.n_clusters = 3;
        o
    };
    let mut nan_images = w.images.clone();
    nan_images[5 * w.d + 2] = f32::NAN;
    let nan = matrix(&nan_images, w.n, w.d);
    let empty_nouns = LaicMatrix { rows: 0, ..nouns };
    let short_labels = &w.labels[..w.n - 1];
    let with = |f: &dyn Fn(&mut LaicPipelineOptions)| {
        let mut o = base;
        f(&mut o);
        o
    };
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        LaicPipelineOptions,
        &LaicMatrix,
        Option<&LaicMatrix>,
        Option<&[i64]>,
        &str,
    )> = vec![
        (
            "n_clusters > N",
            with(&|o| o.n_clusters = 31),
            &images,
            Some(&nouns),
            None,
            "n_clusters is 31",
        ),
        (
            "n_clusters = 0",
            with(&|o| o.n_clusters = 0),
            &images,
            Some(&nouns),
            None,
            "n_clusters is 0",
        ),
        (
            "K_c = 0",
            with(&|o| o.n_centres = 0),
            &images,
            Some(&nouns),
            None,
            "n_centres must be at least 1",
        ),
        (
            "K_c > N_c",
            with(&|o| o.n_centres = 31),
            &images,
            Some(&nouns),
            None,
            "n_centres is 31",
        ),
        ("no nouns", base, &images, None, None, "noun set is empty"),
        (
            "empty noun set",
            base,
            &images,
            Some(&empty_nouns),
            None,
            "nouns has 0×8 elements",
        ),
        (
            "top_k = 0",
            with(&|o| o.top_k = 0),
            &images,
            Some(&nouns),
            None,
            "top_k must be at least 1",
        ),
        (
            "labels of another length",
            base,
            &images,
            Some(&nouns),
            Some(short_labels),
            "labels has 29 elements but there are 30 images",
        ),
        (
            "NaN features",
            base,
            &nan,
            Some(&nouns),
            None,
            "images row 5 contains NaN",
        ),
        (
            "tau_r = 0",
            with(&|o| o.tau_r = 0.0),
            &images,
            Some(&nouns),
            None,
            "tau_r",
        ),
        (
            "q < 1",
            with(&|o| o.q = 0.5),
            &images,
            Some(&nouns),
            None,
            "q must be",
        ),
        (
            "unknown filter",
            with(&|o| o.filter = 9),
            &images,
            Some(&nouns),
            None,
            "unknown filter 9",
        ),
    ];
    for (what, opts, imgs, nn, labels, msg) in cases {
        let (s, res) = run(ctx, &w, imgs, nn, labels, &opts, None, null_mut());
        assert_eq!(s, LaicStatus::InvalidArgument, "{what}");
        assert!(res.is_null(), "{what}");
        assert!(last_error().contains(msg), "{what}: {}", last_error());
    }
    // The no-filter pipeline needs no nouns.
    let (s, res) = run(
        ctx,
        &w,
        &images,
        None,
        Some(&w.labels),
        &with(&|o| o.filter = LAIC_FILTER_NONE),
        None,
        null_mut(),
    );
    assert_eq!(s, LaicStatus::Ok, "{}", last_error());
    // SAFETY: live handles; names were not given.
    unsafe {
        let (mut names, mut count) = (null(), 0usize);
        assert_eq!(
            laic_pipeline_result_cluster_names(res, 0, &mut names, &mut count),
            LaicStatus::InvalidArgument
        );
        laic_pipeline_result_free(res);
        laic_context_free(ctx);
    }
}

#[test]
fn kmeans_retrieve_and_metrics_through_the_c_abi() {
    let w = world(3, 20, 2, 12);
    let ctx = cpu_context();
    let x = matrix(&w.images, w.n, w.d);
    // SAFETY (block): every pointer refers to live locals of the sizes passed.
    unsafe {
        let mut o: LaicKMeansOptions = std::mem::zeroed();
        assert_eq!(
            laic_kmeans_options_default(&mut o, size_of::<LaicKMeansOptions>()),
            LaicStatus::Ok
        );
        assert_eq!((o.n_redo, o.max_iter, o.tol), (10, 300, 1e-4));
        o.n_clusters = 3;
        let mut labels = vec![u32::MAX; w.n];
        let mut centres = vec![f32::NAN; 3 * w.d];
        let mut obj = -1.0;
        let s = laic_kmeans(
            ctx,
            &x,
            &o,
            labels.as_mut_ptr(),
            labels.len(),
            centres.as_mut_ptr(),
            centres.len(),
            &mut obj,
            None,
            null_mut(),
        );
        assert_eq!(s, LaicStatus::Ok, "{}", last_error());
        assert!(centres.iter().all(|v| v.is_finite()) && obj >= 0.0);
        let pred: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let mut m = LaicClusterMetrics {
            acc: 0.0,
            nmi: 0.0,
            ari: 0.0,
        };
        assert_eq!(
            laic_cluster_metrics(w.labels.as_ptr(), pred.as_ptr(), w.n, &mut m),
            LaicStatus::Ok
        );
        assert_eq!((m.acc, m.nmi, m.ari), (1.0, 1.0, 1.0));
        // A scikit-learn case: ARI −0.5, NMI 0, ACC 0.5.
        let (t, p) = ([0i64, 0, 1, 1], [0i64, 1, 0, 1]);
        assert_eq!(
            laic_cluster_metrics(t.as_ptr(), p.as_ptr(), 4, &mut m),
            LaicStatus::Ok
        );
        assert_eq!((m.acc, m.nmi, m.ari), (0.5, 0.0, -0.5));
        assert_eq!(
            laic_cluster_metrics(t.as_ptr(), p.as_ptr(), 0, &mut m),
            LaicStatus::InvalidArgument
        );
        // Bad k-means input: outputs untouched.
        o.n_clusters = w.n + 1;
        let mut poisoned = vec![7u32; w.n];
        let s = laic_kmeans(
            ctx,
            &x,
            &o,
            poisoned.as_mut_ptr(),
            w.n,
            null_mut(),
            0,
            null_mut(),
            None,
            null_mut(),
        );
        assert_eq!(s, LaicStatus::InvalidArgument);
        assert!(
            last_error().contains("n_clusters is 61"),
            "{}",
            last_error()
        );
        assert!(poisoned.iter().all(|&v| v == 7));
        o.n_clusters = 3;
        let s = laic_kmeans(
            ctx,
            &x,
            &o,
            poisoned.as_mut_ptr(),
            w.n - 1,
            null_mut(),
            0,
            null_mut(),
            None,
            null_mut(),
        );
        assert_eq!(s, LaicStatus::BufferTooSmall);
        assert!(poisoned.iter().all(|&v| v == 7));
        // Retrieval: same as the Rust API, top nouns included.
        let mut ro: LaicRetrieveOptions = std::mem::zeroed();
        assert_eq!(
            laic_retrieve_options_default(&mut ro, size_of::<LaicRetrieveOptions>()),
            LaicStatus::Ok
        );
        ro.top_n = 2;
        let t = matrix(&w.nouns, w.m, w.d);
        let mut feats = vec![0f32; w.n * w.d];
        let mut ti = vec![0u32; w.n * 2];
        let mut tw = vec![0f32; w.n * 2];
        let s = laic_retrieve(
            ctx,
            &x,
            &t,
            &ro,
            feats.as_mut_ptr(),
            feats.len(),
            ti.as_mut_ptr(),
            tw.as_mut_ptr(),
            ti.len(),
        );
        assert_eq!(s, LaicStatus::Ok, "{}", last_error());
        let want = laic::Context::cpu()
            .retrieve(
                &laic::MatrixRef::from_f32(&w.images, w.n, w.d).unwrap(),
                &laic::MatrixRef::from_f32(&w.nouns, w.m, w.d).unwrap(),
                &laic::RetrieveOptions {
                    top_n: 2,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            (feats, ti, tw),
            (want.features, want.top_indices, want.top_weights)
        );
        ro.tau = 0.0;
        let mut untouched = vec![3f32; w.n * w.d];
        let s = laic_retrieve(
            ctx,
            &x,
            &t,
            &ro,
            untouched.as_mut_ptr(),
            untouched.len(),
            null_mut(),
            null_mut(),
            0,
        );
        assert_eq!(s, LaicStatus::InvalidArgument);
        assert!(untouched.iter().all(|&v| v == 3.0));
        laic_context_free(ctx);
    }
}
