//! The GEMM shape the GradNorm kernel uses, over the `gemm` crate, single-threaded (the
//! kernels parallelise over row blocks themselves).

/// Fills `out` (`rows × cols`, row-major) with `alpha · A · Bᵀ`, where `A` is `rows × d` and
/// `B` is `cols × d`, both contiguous row-major; single-threaded (callers parallelise).
pub(crate) fn gemm_abt<T: 'static + Copy>(
    alpha: T,
    a: &[T],
    b: &[T],
    rows: usize,
    cols: usize,
    d: usize,
    out: &mut [T],
) {
    assert!(a.len() >= rows * d && b.len() >= cols * d && out.len() >= rows * cols);
    // SAFETY: out is rows×cols (column stride 1, row stride cols); a is rows×d (1, d); b is
    // read as d×cols with element (i, j) at b[j·d + i] (column stride d, row stride 1). The
    // lengths are asserted above, and `out` does not alias the inputs (it is `&mut`).
    unsafe {
        gemm::gemm(
            rows,
            cols,
            d,
            out.as_mut_ptr(),
            1,
            cols as isize,
            false,
            a.as_ptr(),
            1,
            d as isize,
            b.as_ptr(),
            d as isize,
            1,
            alpha, // scales the old `out`: unused, since read_dst is false
            alpha, // scales A·Bᵀ
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
