//! GPU benchmark of the fused GradNorm kernel at the sizes (M = 146,347 nouns,
//! K = 2000 and 4271 centres, and 128 for f16, D = 512; f16, bf16 and f32 input), on
//! device-resident data through `Context::gradnorm_scores_device`.
//!
//! Per case it prints one JSON line: the kernel's device time (median of CUDA-event timings
//! around the launch), the whole call's wall time (centre packing, scratch buffers, device-side
//! validation, synchronisation included), the achieved TFLOP/s, and the largest relative score
//! error against the CPU backend on a sample of nouns. Run by `scripts/gpu-check.sh`.
//!
//! `cargo run --release --example gpu_bench -- [--quick] [--f16] [--label NAME]` (`--f16`: the
//! two f16 cases only, for the diagnostic kernels of `LAIC_CUDA_GRADNORM_CONFIG=wg2nofold` /
//! `wg2nomma`); without a CUDA device it prints `SKIPPED` and exits 0 (1 when
//! `LAIC_REQUIRE_CUDA=1`).

#[path = "common/mod.rs"]
mod common;

use common::median;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use half::{bf16, f16};
use laic::{
    BackendKind, Context, DeviceGradNormOut, DeviceMatrix, Dtype, GradNormOptions, MatrixRef,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;
use std::time::Instant;

const D: usize = 512;
const WARMUP: usize = 3;
const REPS: usize = 20;
/// Nouns checked against the CPU backend per case.
const CHECK_ROWS: usize = 4096;

/// Normalised random rows (what CLIP features look like to the kernel).
fn random_unit_rows(rng: &mut StdRng, rows: usize, d: usize) -> Vec<f32> {
    let mut v = vec![0f32; rows * d];
    for row in v.chunks_exact_mut(d) {
        let mut ss = 0f32;
        for x in row.iter_mut() {
            *x = StandardNormal.sample(rng);
            ss += *x * *x;
        }
        let inv = 1.0 / ss.sqrt();
        row.iter_mut().for_each(|x| *x *= inv);
    }
    v
}

/// Host storage of one input in its dtype.
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

/// An input on the host (for the CPU check) and on the device.
struct Input {
    host: Store,
    dev: CudaSlice<u8>,
}

impl Input {
    fn new(stream: &Arc<CudaStream>, v: &[f32], dtype: Dtype) -> Self {
        let (host, bytes): (Store, Vec<u8>) = match dtype {
            Dtype::F32 => (
                Store::F32(v.to_vec()),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Dtype::F16 => {
                let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
                let b = h.iter().flat_map(|x| x.to_le_bytes()).collect();
                (Store::F16(h), b)
            }
            Dtype::Bf16 => {
                let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
                let b = h.iter().flat_map(|x| x.to_le_bytes()).collect();
                (Store::Bf16(h), b)
            }
        };
        let dev = stream.clone_htod(&bytes).expect("upload");
        Input { host, dev }
    }

    /// A host view of the first `rows` rows.
    fn view(&self, rows: usize) -> MatrixRef<'_> {
        let n = rows * D;
        match &self.host {
            Store::F32(v) => MatrixRef::from_f32(&v[..n], rows, D),
            Store::F16(v) => MatrixRef::from_f16(&v[..n], rows, D),
            Store::Bf16(v) => MatrixRef::from_bf16(&v[..n], rows, D),
        }
        .expect("valid view")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let f16_only = args.iter().any(|a| a == "--f16");
    let label = args
        .iter()
        .position(|a| a == "--label")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "default".into());
    let ctx = common::context_or_skip(Context::new(BackendKind::Cuda));
    let cpu = Context::cpu();
    let cu = CudaContext::new(0).expect("primary context");
    let stream = cu.default_stream();
    let m = if quick { 16_384 } else { 146_347 };
    let mut rng = StdRng::seed_from_u64(rand::rng().random());
    let nouns_f32 = random_unit_rows(&mut rng, m, D);
    let centres_f32 = random_unit_rows(&mut rng, 4271, D);
    let cases = [
        (Dtype::F16, 2000),
        (Dtype::F16, 4271),
        // One 128-centre tile: with the two above, the part of a kernel's time that does not
        // scale with K (noun loading, pipeline fill, tail), read off instead of fitted.
        (Dtype::F16, 128),
        (Dtype::Bf16, 2000),
        (Dtype::F32, 2000),
        (Dtype::F32, 4271),
    ];
    let opts = GradNormOptions::default();
    for (dtype, k) in cases {
        if f16_only && dtype != Dtype::F16 {
            continue;
        }
        let nouns = Input::new(&stream, &nouns_f32, dtype);
        let centres = Input::new(&stream, &centres_f32[..k * D], dtype);
        let scores: CudaSlice<f32> = stream.alloc_zeros(m).unwrap();
        let assign: CudaSlice<u32> = stream.alloc_zeros(m).unwrap();
        let conf: CudaSlice<f32> = stream.alloc_zeros(m).unwrap();
        stream.synchronize().unwrap();
        let (np, _g1) = nouns.dev.device_ptr(&stream);
        let (cp, _g2) = centres.dev.device_ptr(&stream);
        let (sp, _g3) = scores.device_ptr(&stream);
        let (ap, _g4) = assign.device_ptr(&stream);
        let (fp, _g5) = conf.device_ptr(&stream);
        let dn = DeviceMatrix {
            ptr: np,
            rows: m,
            cols: D,
            row_stride: D,
            dtype,
        };
        let dc = DeviceMatrix {
            ptr: cp,
            rows: k,
            cols: D,
            row_stride: D,
            dtype,
        };
        let out = DeviceGradNormOut {
            scores: sp,
            assignment: ap,
            confidence: fp,
            len: m,
        };
        let (mut kernel, mut call) = (Vec::new(), Vec::new());
        for rep in 0..WARMUP + REPS {
            let t0 = Instant::now();
            // SAFETY: every address is a live allocation of the described size on device 0.
            let r = unsafe { ctx.gradnorm_scores_device(&dn, &dc, &opts, &out) };
            let wall = t0.elapsed().as_secs_f64() * 1e3;
            if let Err(e) = r {
                println!(
                    "{{\"bench\":\"gradnorm\",\"label\":\"{label}\",\"dtype\":\"{dtype:?}\",\"m\":{m},\"k\":{k},\"error\":\"{}\"}}",
                    e.to_string().replace('"', "'")
                );
                break;
            }
            if rep >= WARMUP {
                call.push(wall);
                kernel.push(
                    laic::backend::cuda::last_gradnorm_kernel_ms().unwrap_or(f32::NAN) as f64,
                );
            }
        }
        if kernel.is_empty() {
            continue;
        }
        // Accuracy on a sample: the CPU backend on the first CHECK_ROWS nouns.
        let rows = CHECK_ROWS.min(m);
        let want = cpu
            .gradnorm_scores(&nouns.view(rows), &centres.view(k), &opts)
            .unwrap();
        let got_s = stream.clone_dtoh(&scores.slice(..rows)).unwrap();
        let got_a = stream.clone_dtoh(&assign.slice(..rows)).unwrap();
        stream.synchronize().unwrap();
        let mut max_rel = 0f64;
        let mut mismatched = 0;
        for i in 0..rows {
            if got_a[i] != want.assignment[i] {
                mismatched += 1;
                continue;
            }
            let c = want.scores[i] as f64;
            max_rel = max_rel.max((got_s[i] as f64 - c).abs() / c.abs().max(1e-30));
        }
        let config = laic::backend::cuda::last_gradnorm_config().unwrap_or("?");
        let kernel_ms = median(kernel);
        let tflops = 2.0 * m as f64 * k as f64 * D as f64 / (kernel_ms * 1e-3) / 1e12;
        println!(
            "{{\"bench\":\"gradnorm\",\"label\":\"{label}\",\"config\":\"{config}\",\"dtype\":\"{dtype:?}\",\"m\":{m},\"k\":{k},\"d\":{D},\"kernel_ms\":{kernel_ms:.4},\"call_ms\":{:.4},\"tflops\":{tflops:.1},\"max_rel_err\":{max_rel:.3e},\"assign_mismatch\":{mismatched},\"checked_rows\":{rows}}}",
            median(call)
        );
    }
}
