//! Bad input through the C ABI: each case gets the right status, a message in
//! `laic_last_error()`, and leaves every output as it was.

use laic::LaicStatus;
use laic::ffi::*;
use std::ffi::CStr;
use std::ptr::{null, null_mut};

const M: usize = 9;
const K: usize = 4;
const D: usize = 6;
const POISON: f32 = -3.25;

fn last_error() -> String {
    // SAFETY: laic_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(laic_last_error()) }
        .to_string_lossy()
        .into_owned()
}

struct Case {
    nouns: Vec<f32>,
    centres: Vec<f32>,
    opts: LaicGradNormOptions,
    scores: Vec<f32>,
    assign: Vec<u32>,
    conf: Vec<f32>,
    ctx: *mut LaicContext,
}

impl Case {
    fn new() -> Self {
        let nouns = (0..M * D).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let centres = (0..K * D).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
        let mut opts = LaicGradNormOptions {
            struct_size: 0,
            tau: 0.0,
            q: 0.0,
            target: 0,
            normalize: 0,
        };
        // SAFETY: opts is a valid struct of the given size.
        assert_eq!(
            unsafe { laic_gradnorm_options_default(&mut opts, size_of::<LaicGradNormOptions>()) },
            LaicStatus::Ok
        );
        let mut ctx = null_mut();
        // SAFETY: valid out pointer.
        assert_eq!(
            unsafe { laic_context_create(null(), &mut ctx) },
            LaicStatus::Ok
        );
        Case {
            nouns,
            centres,
            opts,
            scores: vec![POISON; M],
            assign: vec![7; M],
            conf: vec![POISON; M],
            ctx,
        }
    }

    fn nouns(&self) -> LaicMatrix {
        LaicMatrix {
            data: self.nouns.as_ptr().cast(),
            rows: M,
            cols: D,
            row_stride: D,
            dtype: LAIC_DTYPE_F32,
        }
    }

    fn centres(&self) -> LaicMatrix {
        LaicMatrix {
            data: self.centres.as_ptr().cast(),
            rows: K,
            cols: D,
            row_stride: D,
            dtype: LAIC_DTYPE_F32,
        }
    }

    fn score(
        &mut self,
        nouns: &LaicMatrix,
        centres: &LaicMatrix,
        opts: *const LaicGradNormOptions,
        out_len: usize,
    ) -> LaicStatus {
        // SAFETY: the buffers hold M elements; matrices describe their buffers (or are the
        // malformed descriptions under test, which the library must reject before reading).
        unsafe {
            laic_gradnorm_scores(
                self.ctx,
                nouns,
                centres,
                opts,
                self.scores.as_mut_ptr(),
                self.assign.as_mut_ptr(),
                self.conf.as_mut_ptr(),
                out_len,
            )
        }
    }

    fn expect(&mut self, status: LaicStatus, want: LaicStatus, needle: &str, what: &str) {
        assert_eq!(status, want, "{what}: status (message: {})", last_error());
        let msg = last_error();
        assert!(
            msg.contains(needle),
            "{what}: message {msg:?} should mention {needle:?}"
        );
        assert!(
            self.scores.iter().all(|&s| s == POISON),
            "{what}: scores written"
        );
        assert!(
            self.conf.iter().all(|&s| s == POISON),
            "{what}: confidence written"
        );
        assert!(
            self.assign.iter().all(|&a| a == 7),
            "{what}: assignment written"
        );
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        // SAFETY: ctx came from laic_context_create.
        unsafe { laic_context_free(self.ctx) };
    }
}

#[test]
fn null_pointers_are_rejected() {
    let mut c = Case::new();
    let (n, w, o) = (c.nouns(), c.centres(), c.opts);
    let s = c.score(&n, &w, &o, M);
    assert_eq!(s, LaicStatus::Ok, "the valid call works: {}", last_error());
    let mut c = Case::new();
    let st = unsafe {
        laic_gradnorm_scores(
            null(),
            &n,
            &w,
            &o,
            c.scores.as_mut_ptr(),
            null_mut(),
            null_mut(),
            M,
        )
    };
    c.expect(st, LaicStatus::InvalidArgument, "ctx is NULL", "NULL ctx");
    let st = c.score(&n, &w, &o, M);
    assert_eq!(st, LaicStatus::Ok);
    let mut c = Case::new();
    let st = unsafe {
        laic_gradnorm_scores(
            c.ctx,
            null(),
            &w,
            &o,
            c.scores.as_mut_ptr(),
            null_mut(),
            null_mut(),
            M,
        )
    };
    c.expect(
        st,
        LaicStatus::InvalidArgument,
        "nouns is NULL",
        "NULL nouns",
    );
    let st = unsafe {
        laic_gradnorm_scores(
            c.ctx,
            &n,
            null(),
            &o,
            c.scores.as_mut_ptr(),
            null_mut(),
            null_mut(),
            M,
        )
    };
    c.expect(
        st,
        LaicStatus::InvalidArgument,
        "centres is NULL",
        "NULL centres",
    );
    let st = unsafe {
        laic_gradnorm_scores(
            c.ctx,
            &n,
            &w,
            &o,
            null_mut(),
            c.assign.as_mut_ptr(),
            c.conf.as_mut_ptr(),
            M,
        )
    };
    c.expect(
        st,
        LaicStatus::InvalidArgument,
        "out_scores is NULL",
        "NULL scores",
    );
    let nd = LaicMatrix { data: null(), ..n };
    let st = c.score(&nd, &w, &o, M);
    c.expect(
        st,
        LaicStatus::InvalidArgument,
        "nouns.data is NULL",
        "NULL data",
    );
    let st = unsafe { laic_context_create(null(), null_mut()) };
    assert_eq!(st, LaicStatus::InvalidArgument);
    let st = unsafe { laic_gradnorm_options_default(null_mut(), 64) };
    assert_eq!(st, LaicStatus::InvalidArgument);
}

#[test]
fn shapes_strides_dtypes_and_sizes_are_checked() {
    let mut c = Case::new();
    let (n, w, o) = (c.nouns(), c.centres(), c.opts);
    let cases: Vec<(LaicMatrix, LaicMatrix, &str, &str)> = vec![
        (LaicMatrix { rows: 0, ..n }, w, "nouns has 0×6", "zero rows"),
        (
            n,
            LaicMatrix { cols: 0, ..w },
            "centres has 4×0",
            "zero cols",
        ),
        (
            n,
            LaicMatrix {
                cols: D - 1,
                row_stride: D,
                ..w
            },
            "columns",
            "D mismatch",
        ),
        (
            LaicMatrix {
                row_stride: D - 1,
                ..n
            },
            w,
            "row stride 5 is smaller",
            "stride < cols",
        ),
        (LaicMatrix { dtype: 9, ..n }, w, "unknown dtype 9", "dtype"),
        (
            LaicMatrix {
                rows: usize::MAX / 2,
                row_stride: usize::MAX / 4,
                ..n
            },
            w,
            "overflow",
            "span overflow",
        ),
        (
            LaicMatrix {
                rows: usize::MAX / 16,
                row_stride: 8,
                cols: 8,
                ..n
            },
            LaicMatrix {
                cols: 8,
                row_stride: 8,
                ..w
            },
            "overflow",
            "byte overflow",
        ),
        (
            LaicMatrix {
                data: n.data.wrapping_byte_add(1),
                ..n
            },
            w,
            "not aligned",
            "misaligned",
        ),
    ];
    for (nm, wm, needle, what) in cases {
        let st = c.score(&nm, &wm, &o, M);
        c.expect(st, LaicStatus::InvalidArgument, needle, what);
    }
    let st = c.score(&n, &w, &o, M - 1);
    c.expect(st, LaicStatus::BufferTooSmall, "needs 9", "short outputs");
}

#[test]
fn non_finite_inputs_and_bad_options_are_rejected() {
    let mut c = Case::new();
    let o = c.opts;
    c.nouns[2 * D + 1] = f32::NAN;
    let (n, w) = (c.nouns(), c.centres());
    let st = c.score(&n, &w, &o, M);
    c.expect(
        st,
        LaicStatus::InvalidArgument,
        "nouns row 2 contains NaN",
        "NaN noun",
    );
    let mut c = Case::new();
    c.centres[3] = f32::INFINITY;
    let (n, w) = (c.nouns(), c.centres());
    let st = c.score(&n, &w, &o, M);
    c.expect(
        st,
        LaicStatus::InvalidArgument,
        "centres row 0 contains NaN or Inf",
        "Inf centre",
    );
    let mut c = Case::new();
    c.nouns[D..2 * D].fill(0.0);
    let (n, w) = (c.nouns(), c.centres());
    let st = c.score(&n, &w, &o, M);
    c.expect(
        st,
        LaicStatus::InvalidArgument,
        "nouns row 1 is all zeros",
        "zero row with normalise",
    );
    let mut c = Case::new();
    let (n, w) = (c.nouns(), c.centres());
    for (opts, needle, what) in [
        (LaicGradNormOptions { tau: 0.0, ..o }, "tau", "tau 0"),
        (LaicGradNormOptions { tau: -1.0, ..o }, "tau", "tau < 0"),
        (LaicGradNormOptions { tau: f64::NAN, ..o }, "tau", "tau NaN"),
        (
            LaicGradNormOptions { tau: 1e-300, ..o },
            "tau",
            "tau rounds to 0 in f32",
        ),
        (LaicGradNormOptions { q: 0.99, ..o }, "q must be", "q < 1"),
        (
            LaicGradNormOptions { q: f64::NAN, ..o },
            "q must be",
            "q NaN",
        ),
        (
            LaicGradNormOptions { target: 5, ..o },
            "unknown target 5",
            "target",
        ),
        (
            LaicGradNormOptions {
                struct_size: 3,
                ..o
            },
            "struct_size",
            "struct_size garbage",
        ),
        (
            LaicGradNormOptions {
                normalize: 0,
                tau: 1e-35,
                ..o
            },
            "overflow",
            "logits overflow",
        ),
    ] {
        let st = c.score(&n, &w, &opts, M);
        c.expect(st, LaicStatus::InvalidArgument, needle, what);
    }
}

#[test]
fn selection_errors_write_nothing() {
    let values = [0.3f32, 0.1, 0.2, 0.5];
    let assign = [0u32, 0, 1, 1];
    let mut out = [99u32; 4];
    let mut count = 123usize;
    let call = |values: *const f32,
                assign: *const u32,
                len,
                k,
                top_k,
                order,
                out: &mut [u32; 4],
                cap,
                count: &mut usize| {
        // SAFETY: pointers are valid for `len` elements or NULL (rejected).
        unsafe {
            laic_select_nouns(
                values,
                assign,
                len,
                k,
                top_k,
                order,
                out.as_mut_ptr(),
                cap,
                count,
            )
        }
    };
    type Args = (
        *const f32,
        *const u32,
        usize,
        usize,
        usize,
        u32,
        &'static str,
    );
    let cases: [Args; 6] = [
        (
            null(),
            assign.as_ptr(),
            4,
            2,
            1,
            LAIC_ORDER_SMALLEST,
            "values is NULL",
        ),
        (
            values.as_ptr(),
            null(),
            4,
            2,
            1,
            LAIC_ORDER_SMALLEST,
            "assignment is NULL",
        ),
        (
            values.as_ptr(),
            assign.as_ptr(),
            0,
            2,
            1,
            LAIC_ORDER_SMALLEST,
            "len is 0",
        ),
        (
            values.as_ptr(),
            assign.as_ptr(),
            4,
            1,
            1,
            LAIC_ORDER_SMALLEST,
            "only 1 centres",
        ),
        (
            values.as_ptr(),
            assign.as_ptr(),
            4,
            2,
            0,
            LAIC_ORDER_SMALLEST,
            "top_k",
        ),
        (
            values.as_ptr(),
            assign.as_ptr(),
            4,
            2,
            1,
            3,
            "unknown order 3",
        ),
    ];
    for (v, a, len, k, top_k, order, needle) in cases {
        let st = call(v, a, len, k, top_k, order, &mut out, 4, &mut count);
        assert_eq!(st, LaicStatus::InvalidArgument, "{needle}");
        assert!(
            last_error().contains(needle),
            "{:?} should mention {needle:?}",
            last_error()
        );
        assert_eq!((out, count), ([99; 4], 123), "{needle}: nothing written");
    }
    let st = call(
        values.as_ptr(),
        assign.as_ptr(),
        4,
        2,
        2,
        LAIC_ORDER_SMALLEST,
        &mut out,
        3,
        &mut count,
    );
    assert_eq!(st, LaicStatus::BufferTooSmall);
    assert!(last_error().contains("needs 4"), "{}", last_error());
    assert_eq!((out, count), ([99; 4], 123), "nothing written");
    let st = call(
        values.as_ptr(),
        assign.as_ptr(),
        4,
        2,
        1,
        LAIC_ORDER_LARGEST,
        &mut out,
        4,
        &mut count,
    );
    assert_eq!(st, LaicStatus::Ok);
    assert_eq!((&out[..count], count), (&[0, 3][..], 2));
}
