//! Borrowed, row-major matrix views over f32, f16 or bf16 data with any row stride.
//!
//! A [`MatrixRef`] is validated once when it is made (the slice covers every row, sizes do not
//! overflow); the kernels then read rows without further checks.

use crate::error::{Error, Result};
use half::{bf16, f16};

/// Element type of a matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16.
    Bf16,
}

impl Dtype {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

/// The element storage of a [`MatrixRef`].
#[derive(Debug, Clone, Copy)]
pub enum MatrixData<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// f16 elements.
    F16(&'a [f16]),
    /// bf16 elements.
    Bf16(&'a [bf16]),
}

/// A borrowed row-major matrix: row `i` starts at element `i * row_stride`.
#[derive(Debug, Clone, Copy)]
pub struct MatrixRef<'a> {
    data: MatrixData<'a>,
    rows: usize,
    cols: usize,
    row_stride: usize,
}

/// Number of elements a `rows × cols` matrix with `row_stride` spans, or an error on overflow.
pub(crate) fn span_len(rows: usize, cols: usize, row_stride: usize) -> Result<usize> {
    if rows == 0 {
        return Ok(0);
    }
    (rows - 1)
        .checked_mul(row_stride)
        .and_then(|n| n.checked_add(cols))
        .ok_or_else(|| {
            Error::invalid(format!(
                "matrix of {rows} rows with row stride {row_stride} overflows the address space"
            ))
        })
}

impl<'a> MatrixRef<'a> {
    /// A view of `rows × cols` elements with rows `row_stride` elements apart.
    ///
    /// Errors when `rows` or `cols` is zero, `row_stride < cols`, or `data` is too short.
    pub fn new(data: MatrixData<'a>, rows: usize, cols: usize, row_stride: usize) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(Error::invalid(format!(
                "matrix must have at least one row and one column, got {rows}×{cols}"
            )));
        }
        if row_stride < cols {
            return Err(Error::invalid(format!(
                "row stride {row_stride} is smaller than the number of columns {cols}"
            )));
        }
        let needed = span_len(rows, cols, row_stride)?;
        needed
            .checked_mul(data.dtype().size())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| Error::invalid("matrix byte size overflows the address space"))?;
        if data.len() < needed {
            return Err(Error::invalid(format!(
                "matrix data holds {} elements, {rows}×{cols} with stride {row_stride} needs {needed}",
                data.len()
            )));
        }
        Ok(MatrixRef {
            data,
            rows,
            cols,
            row_stride,
        })
    }

    /// A contiguous f32 view (`row_stride == cols`).
    pub fn from_f32(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(MatrixData::F32(data), rows, cols, cols)
    }

    /// A contiguous f16 view.
    pub fn from_f16(data: &'a [f16], rows: usize, cols: usize) -> Result<Self> {
        Self::new(MatrixData::F16(data), rows, cols, cols)
    }

    /// A contiguous bf16 view.
    pub fn from_bf16(data: &'a [bf16], rows: usize, cols: usize) -> Result<Self> {
        Self::new(MatrixData::Bf16(data), rows, cols, cols)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Distance between the starts of consecutive rows, in elements.
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.data.dtype()
    }

    /// The underlying storage.
    pub fn data(&self) -> MatrixData<'a> {
        self.data
    }

    /// The view of rows `start..start + len`.
    ///
    /// # Panics
    /// When the range is empty or leaves the matrix.
    pub fn row_range(&self, start: usize, len: usize) -> MatrixRef<'a> {
        assert!(
            len > 0 && start + len <= self.rows,
            "row range out of bounds"
        );
        let off = start * self.row_stride;
        let end = off + span_len(len, self.cols, self.row_stride).expect("validated at creation");
        let data = match self.data {
            MatrixData::F32(s) => MatrixData::F32(&s[off..end]),
            MatrixData::F16(s) => MatrixData::F16(&s[off..end]),
            MatrixData::Bf16(s) => MatrixData::Bf16(&s[off..end]),
        };
        MatrixRef {
            data,
            rows: len,
            cols: self.cols,
            row_stride: self.row_stride,
        }
    }

    /// Converts row `i` to f32 into `out` (length `cols`).
    #[inline]
    pub fn row_to_f32(&self, i: usize, out: &mut [f32]) {
        let start = i * self.row_stride;
        let end = start + self.cols;
        match self.data {
            MatrixData::F32(s) => out.copy_from_slice(&s[start..end]),
            MatrixData::F16(s) => {
                half::slice::HalfFloatSliceExt::convert_to_f32_slice(&s[start..end], out)
            }
            MatrixData::Bf16(s) => {
                half::slice::HalfFloatSliceExt::convert_to_f32_slice(&s[start..end], out)
            }
        }
    }

    /// Copies the rows `start..start + out.len() / cols` into a contiguous f32 buffer.
    pub fn rows_to_f32(&self, start: usize, out: &mut [f32]) {
        let c = self.cols;
        for (r, dst) in out.chunks_exact_mut(c).enumerate() {
            self.row_to_f32(start + r, dst);
        }
    }

    /// The whole matrix as a contiguous f32 `Vec` (rows × cols).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        self.rows_to_f32(0, &mut out);
        out
    }

    /// Checks every row: all elements finite and, when `require_nonzero`, a non-zero norm (a
    /// zero row cannot be L2-normalised). Returns the largest row L2 norm. Errors name the
    /// first offending row.
    pub fn check_rows(&self, what: &str, require_nonzero: bool) -> Result<f64> {
        use rayon::prelude::*;
        fn row_norm<T: Copy + Into<f64>>(row: &[T]) -> Option<f64> {
            let mut ss = 0f64;
            for &v in row {
                let v: f64 = v.into();
                if !v.is_finite() {
                    return None;
                }
                ss += v * v;
            }
            Some(ss.sqrt())
        }
        let norm = |i: usize| -> Option<f64> {
            let (s, c) = (i * self.row_stride, self.cols);
            match self.data {
                MatrixData::F32(d) => row_norm(&d[s..s + c]),
                MatrixData::F16(d) => row_norm(&d[s..s + c]),
                MatrixData::Bf16(d) => row_norm(&d[s..s + c]),
            }
        };
        let norms: Vec<Option<f64>> = (0..self.rows).into_par_iter().map(norm).collect();
        let mut max = 0f64;
        for (i, n) in norms.into_iter().enumerate() {
            match n {
                None => {
                    return Err(Error::invalid(format!(
                        "{what} row {i} contains NaN or Inf"
                    )));
                }
                Some(n) if require_nonzero && n == 0.0 => {
                    return Err(Error::invalid(format!(
                        "{what} row {i} is all zeros and cannot be normalised"
                    )));
                }
                Some(n) => max = max.max(n),
            }
        }
        Ok(max)
    }
}

/// A row-major matrix in device (GPU) memory: element (i, j) is at byte address
/// `ptr + (i * row_stride + j) * dtype.size()`. laic cannot see the memory behind it: whoever
/// makes one vouches that the span it describes is allocated on the device in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMatrix {
    /// Device address of the first element (a CUDA `CUdeviceptr`).
    pub ptr: u64,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Elements between the starts of consecutive rows.
    pub row_stride: usize,
    /// Element type.
    pub dtype: Dtype,
}

impl DeviceMatrix {
    /// Checks what can be checked without reading the memory: a non-null address aligned to
    /// the element size, non-zero sizes, `row_stride >= cols`, a byte span that fits in the
    /// address space. `what` names the argument in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.ptr == 0 {
            return Err(Error::invalid(format!("{what}: device pointer is NULL")));
        }
        if !self.ptr.is_multiple_of(self.dtype.size() as u64) {
            return Err(Error::invalid(format!(
                "{what}: device pointer is not aligned to {} bytes",
                self.dtype.size()
            )));
        }
        if self.rows == 0 || self.cols == 0 {
            return Err(Error::invalid(format!(
                "{what}: matrix must have at least one row and one column, got {}×{}",
                self.rows, self.cols
            )));
        }
        if self.row_stride < self.cols {
            return Err(Error::invalid(format!(
                "{what}: row stride {} is smaller than the number of columns {}",
                self.row_stride, self.cols
            )));
        }
        span_len(self.rows, self.cols, self.row_stride)
            .map_err(|e| e.in_arg(what))?
            .checked_mul(self.dtype.size())
            .and_then(|b| self.ptr.checked_add(b as u64))
            .ok_or_else(|| {
                Error::invalid(format!("{what}: byte span overflows the address space"))
            })?;
        Ok(())
    }
}

/// Device-memory outputs of a GradNorm scoring: addresses of `len` elements each (f32 scores,
/// u32 assignments, f32 confidences). `assignment` and `confidence` may be 0 (not wanted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceGradNormOut {
    /// Device address of the scores (f32), never 0.
    pub scores: u64,
    /// Device address of the assigned centres (u32), or 0.
    pub assignment: u64,
    /// Device address of the confidences (f32), or 0.
    pub confidence: u64,
    /// Elements each output holds.
    pub len: usize,
}

impl MatrixData<'_> {
    /// Element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            MatrixData::F32(_) => Dtype::F32,
            MatrixData::F16(_) => Dtype::F16,
            MatrixData::Bf16(_) => Dtype::Bf16,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MatrixData::F32(s) => s.len(),
            MatrixData::F16(s) => s.len(),
            MatrixData::Bf16(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_rows_convert_from_every_dtype() {
        let v: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        let b: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
        for m in [
            MatrixRef::new(MatrixData::F32(&v), 3, 3, 4).unwrap(),
            MatrixRef::new(MatrixData::F16(&h), 3, 3, 4).unwrap(),
            MatrixRef::new(MatrixData::Bf16(&b), 3, 3, 4).unwrap(),
        ] {
            assert_eq!(m.to_f32_vec(), vec![0., 1., 2., 4., 5., 6., 8., 9., 10.]);
            assert_eq!(
                m.row_range(1, 2).to_f32_vec(),
                vec![4., 5., 6., 8., 9., 10.]
            );
        }
    }

    #[test]
    fn short_data_zero_sizes_and_small_stride_are_rejected() {
        let v = [0f32; 10];
        assert!(MatrixRef::new(MatrixData::F32(&v), 3, 3, 4).is_err()); // needs 11
        assert!(MatrixRef::new(MatrixData::F32(&v), 0, 3, 3).is_err());
        assert!(MatrixRef::new(MatrixData::F32(&v), 2, 0, 3).is_err());
        assert!(MatrixRef::new(MatrixData::F32(&v), 2, 3, 2).is_err());
        assert!(MatrixRef::new(MatrixData::F32(&v), usize::MAX, 3, usize::MAX).is_err());
    }

    #[test]
    fn non_finite_values_and_zero_rows_are_found() {
        let mut v = [1f32; 9];
        let m = MatrixRef::from_f32(&v, 3, 3).unwrap();
        assert!((m.check_rows("x", true).unwrap() - 3f64.sqrt()).abs() < 1e-12);
        v[3..6].fill(0.0);
        let m = MatrixRef::from_f32(&v, 3, 3).unwrap();
        assert!(m.check_rows("x", false).is_ok());
        let e = m.check_rows("x", true).unwrap_err().to_string();
        assert!(e.contains("x row 1 is all zeros"), "{e}");
        v[7] = f32::NAN;
        let m = MatrixRef::from_f32(&v, 3, 3).unwrap();
        let e = m.check_rows("nouns", false).unwrap_err().to_string();
        assert!(e.contains("nouns row 2"), "{e}");
    }
}
