//! Context handles.

use super::types::LaicContextOptions;
use super::{guard, read_options, try_ref, write_options};
use crate::error::{Error, LaicStatus};
use crate::{BackendKind, Context};

/// An opaque compute context: a backend (CPU or CUDA) and a CPU thread pool. Create with
/// `laic_context_create()`, free with `laic_context_free()`. Thread safety: a context is
/// immutable; any number of threads may use one context at the same time.
pub struct LaicContext {
    pub(crate) inner: Context,
}

/// Fills `options` with the defaults (AUTO backend, all cores, device 0). Pass
/// `sizeof(LaicContextOptions)` as `struct_size`; nothing past it is written.
///
/// # Safety
/// `options` is valid for writes of `struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_context_options_default(
    options: *mut LaicContextOptions,
    struct_size: usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller.
    guard(|| unsafe {
        write_options(
            options,
            struct_size,
            LaicContextOptions::defaults(),
            "options",
        )
    })
}

/// Creates a context. `options` may be NULL (defaults). On success `*out` holds a new handle
/// that the caller frees with `laic_context_free()`; on failure `*out` is left unchanged.
/// Asking for `LAIC_BACKEND_CUDA` without a usable device gives `LAIC_STATUS_NO_DEVICE`.
///
/// # Safety
/// `options` is NULL or a valid options struct; `out` is valid for one pointer write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_context_create(
    options: *const LaicContextOptions,
    out: *mut *mut LaicContext,
) -> LaicStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let opts = unsafe { read_options(options, LaicContextOptions::defaults(), "options") }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let ctx = Context::with_options(&opts.to_rust()?)?;
        // SAFETY: `out` is non-null and valid for a write (caller contract).
        unsafe { *out = Box::into_raw(Box::new(LaicContext { inner: ctx })) };
        Ok(())
    })
}

/// Frees a context made by `laic_context_create()`. NULL is allowed and does nothing.
///
/// # Safety
/// `ctx` is NULL or a live handle from `laic_context_create()`, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_context_free(ctx: *mut LaicContext) {
    if !ctx.is_null() {
        // SAFETY: `ctx` came from Box::into_raw in laic_context_create (caller contract).
        let _ = guard(|| {
            drop(unsafe { Box::from_raw(ctx) });
            Ok(())
        });
    }
}

/// Writes the backend a context runs on (`LAIC_BACKEND_CPU` or `LAIC_BACKEND_CUDA`, never
/// AUTO) into `*out`.
///
/// # Safety
/// `ctx` is a live context; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_context_backend(
    ctx: *const LaicContext,
    out: *mut u32,
) -> LaicStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let ctx = unsafe { try_ref(ctx, "ctx") }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let code = match ctx.inner.backend().kind() {
            BackendKind::Cuda => super::LAIC_BACKEND_CUDA,
            _ => super::LAIC_BACKEND_CPU,
        };
        // SAFETY: non-null, valid for a write (caller contract).
        unsafe { *out = code };
        Ok(())
    })
}
