//! CLIP model handles: load, embedding width, text and image encoders.

use super::context::LaicContext;
use super::types::{LaicClipLoadOptions, LaicImageFileOptions, LaicProgressFn, progress_from_c};
use super::{guard, read_options, try_mut_slice, try_ref, try_slice, write_options};
use crate::clip::{ClipModel, Rgb8Image};
use crate::error::{Error, LaicStatus, Result};
use crate::progress::Progress;
use std::ffi::{CStr, c_char, c_void};
use std::path::{Path, PathBuf};

/// An opaque CLIP model (weights, tokenizer, towers). Load with `laic_clip_load()`, free with
/// `laic_clip_free()`. Thread safety: a model is immutable once loaded; any number of threads
/// may call the `laic_clip_encode_*` functions on one model at the same time (each call uses
/// the threads of the context it is given).
pub struct LaicClipModel {
    inner: ClipModel,
}

/// A borrowed 8-bit RGB image: pixel (x, y) is the 3 bytes at `data + y * row_stride + 3 * x`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicImageRgb8 {
    /// First byte of the first row.
    pub data: *const u8,
    /// Width in pixels (> 0).
    pub width: usize,
    /// Height in pixels (> 0).
    pub height: usize,
    /// Bytes between the starts of consecutive rows (>= 3 * width).
    pub row_stride: usize,
}

/// A path from a NUL-terminated C string (bytes as the OS gives them on Unix, UTF-8 elsewhere).
///
/// # Safety
/// `p` is NULL or a valid NUL-terminated string.
unsafe fn path_from_c(p: *const c_char, what: &str) -> Result<PathBuf> {
    // SAFETY: forwarded from the caller.
    let s = unsafe { cstr(p, what) }?;
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(s.to_bytes())))
    }
    #[cfg(not(unix))]
    {
        let s = s
            .to_str()
            .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))?;
        Ok(PathBuf::from(s))
    }
}

/// # Safety
/// `p` is NULL or a valid NUL-terminated string.
unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a CStr> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-null and NUL-terminated (caller contract).
    Ok(unsafe { CStr::from_ptr(p) })
}

/// Calls `f` with the Rust progress of a C callback (or none).
fn with_progress<R>(cb: LaicProgressFn, user: *mut c_void, f: impl FnOnce(Progress<'_>) -> R) -> R {
    match progress_from_c(cb, user) {
        None => f(Progress::none()),
        Some(p) => f(Progress::new(&p)),
    }
}

/// Checks `out_len` against `n * dim` and copies `result` into `out`.
///
/// # Safety
/// `out` is valid for writes of `out_len` floats.
unsafe fn write_out(result: &[f32], out: *mut f32, out_len: usize) -> Result<()> {
    if out_len < result.len() {
        return Err(Error::BufferTooSmall {
            what: "out",
            needed: result.len(),
            got: out_len,
        });
    }
    // SAFETY: forwarded from the caller.
    let dst = unsafe { try_mut_slice(out, result.len(), "out") }?;
    dst.copy_from_slice(result);
    Ok(())
}

fn check_out(model: &ClipModel, n: usize, out: *mut f32, out_len: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid("n is 0: nothing to encode"));
    }
    if out.is_null() {
        return Err(Error::invalid("out is NULL"));
    }
    let needed = n
        .checked_mul(model.embed_dim())
        .ok_or_else(|| Error::invalid(format!("n = {n} overflows")))?;
    if out_len < needed {
        return Err(Error::BufferTooSmall {
            what: "out",
            needed,
            got: out_len,
        });
    }
    Ok(())
}

/// Loads a CLIP model. `path` is a folder holding `model.safetensors` (or a single
/// `*.safetensors` file), or the `.safetensors` file itself; `config.json` beside it is used
/// when present (else the config is inferred from the tensor shapes) and so is
/// `tokenizer.json` (else the built-in CLIP tokenizer). Both the Hugging Face layout
/// (`openai/clip-vit-base-patch32` and the like) and the OpenAI layout load; weights may be
/// f32, f16 or bf16. On success `*out` is a new handle to free with `laic_clip_free()`; on
/// failure it is unchanged (`LAIC_STATUS_IO` for an unreadable file, `LAIC_STATUS_FORMAT` for
/// a malformed one: the message names the tensor).
///
/// # Safety
/// `ctx` is a live context; `path` is a NUL-terminated string; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_clip_load(
    ctx: *const LaicContext,
    path: *const c_char,
    out: *mut *mut LaicClipModel,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): pointers are valid per the caller contract.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let path = path_from_c(path, "path")?;
            if out.is_null() {
                return Err(Error::invalid("out is NULL"));
            }
            let model = ClipModel::load(ctx, &path)?;
            *out = Box::into_raw(Box::new(LaicClipModel { inner: model }));
            Ok(())
        }
    })
}

/// Writes the default CLIP load options (precision AUTO, device CONTEXT) into `*options`;
/// pass `sizeof(LaicClipLoadOptions)` as `struct_size`; nothing past it is written.
///
/// # Safety
/// `options` is valid for writes of `struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_clip_load_options_default(
    options: *mut LaicClipLoadOptions,
    struct_size: usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller.
    guard(|| unsafe {
        write_options(
            options,
            struct_size,
            LaicClipLoadOptions::defaults(),
            "options",
        )
    })
}

/// `laic_clip_load()` with a choice of device and GPU precision (`options` may be NULL: the
/// defaults, which is `laic_clip_load()`). On a CUDA device the weights are uploaded once,
/// converted to the precision asked for; `LAIC_CLIP_DEVICE_CUDA` without a usable device gives
/// `LAIC_STATUS_NO_DEVICE`. On failure `*out` is unchanged.
///
/// # Safety
/// As `laic_clip_load()`; `options` is NULL or points to `struct_size` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_clip_load_with_options(
    ctx: *const LaicContext,
    path: *const c_char,
    options: *const LaicClipLoadOptions,
    out: *mut *mut LaicClipModel,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): pointers are valid per the caller contract.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let path = path_from_c(path, "path")?;
            let opts =
                read_options(options, LaicClipLoadOptions::defaults(), "options")?.to_rust()?;
            if out.is_null() {
                return Err(Error::invalid("out is NULL"));
            }
            let model = ClipModel::load_with_options(ctx, &path, &opts)?;
            *out = Box::into_raw(Box::new(LaicClipModel { inner: model }));
            Ok(())
        }
    })
}

/// Frees a model made by `laic_clip_load()`. NULL is allowed and does nothing.
///
/// # Safety
/// `model` is NULL or a live handle, not used by any thread afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_clip_free(model: *mut LaicClipModel) {
    if !model.is_null() {
        let _ = guard(|| {
            // SAFETY: `model` came from Box::into_raw in laic_clip_load (caller contract).
            drop(unsafe { Box::from_raw(model) });
            Ok(())
        });
    }
}

/// Writes the embedding width of `model` (512 for ViT-B/32) into `*out`.
///
/// # Safety
/// `model` is a live handle; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_clip_embed_dim(
    model: *const LaicClipModel,
    out: *mut usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let model = unsafe { try_ref(model, "model") }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        // SAFETY: non-null and valid for a write (caller contract).
        unsafe { *out = model.inner.embed_dim() };
        Ok(())
    })
}

/// Embeds `n` NUL-terminated UTF-8 strings `texts[0..n]` into `out` (`n * embed_dim` floats,
/// row i = text i, L2-normalised). Prompts are tokenised with CLIP's tokenizer and cut at 77
/// tokens (the end-of-text token kept); an empty string is a valid prompt. `progress` (may be
/// NULL) is called after each batch with `LAIC_STAGE_TEXT_ENCODING` and the fraction done. Errors (nothing written): NULL arguments, `n == 0`, a string that is not valid UTF-8
/// (the message gives its index), `out_len < n * embed_dim` (`LAIC_STATUS_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `texts` holds `n` valid NUL-terminated strings; `out` is valid for `out_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_clip_encode_texts(
    ctx: *const LaicContext,
    model: *const LaicClipModel,
    texts: *const *const c_char,
    n: usize,
    progress: LaicProgressFn,
    user: *mut c_void,
    out: *mut f32,
    out_len: usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): pointers are valid per the caller contract.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let model = &try_ref(model, "model")?.inner;
            check_out(model, n, out, out_len)?;
            let ptrs = try_slice(texts, n, "texts")?;
            let strs = ptrs
                .iter()
                .enumerate()
                .map(|(i, &p)| {
                    cstr(p, &format!("texts[{i}]"))?
                        .to_str()
                        .map_err(|e| Error::invalid(format!("texts[{i}] is not valid UTF-8: {e}")))
                })
                .collect::<Result<Vec<&str>>>()?;
            let emb = with_progress(progress, user, |p| model.encode_texts(ctx, &strs, p))?;
            write_out(&emb, out, out_len)
        }
    })
}

/// Embeds `n` image files (JPEG, PNG or WebP; paths as NUL-terminated strings) into `out`
/// (`n * embed_dim` floats, L2-normalised). Each image is converted to RGB, resized so its
/// shortest side is 224 (bicubic, as PIL), centre-cropped and normalised as CLIP's
/// preprocessing; files are decoded in parallel. `progress` (may be NULL) is called after
/// each batch with `LAIC_STAGE_IMAGE_ENCODING` and the fraction done. Errors (nothing
/// written): as `laic_clip_encode_texts()`, plus `LAIC_STATUS_IO` for a file that cannot be
/// read and `LAIC_STATUS_FORMAT` for one that cannot be decoded (the message names the file).
///
/// # Safety
/// `paths` holds `n` valid NUL-terminated strings; `out` is valid for `out_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_clip_encode_image_files(
    ctx: *const LaicContext,
    model: *const LaicClipModel,
    paths: *const *const c_char,
    n: usize,
    progress: LaicProgressFn,
    user: *mut c_void,
    out: *mut f32,
    out_len: usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller; NULL options are the defaults.
    unsafe {
        laic_clip_encode_image_files_with_options(
            ctx,
            model,
            paths,
            n,
            std::ptr::null(),
            std::ptr::null_mut(),
            progress,
            user,
            out,
            out_len,
        )
    }
}

/// Writes the default image file options (decode FULL, EXIF orientation ignored) into
/// `*options`; pass
/// `sizeof(LaicImageFileOptions)` as `struct_size`; nothing past it is written.
///
/// # Safety
/// `options` is valid for writes of `struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_image_file_options_default(
    options: *mut LaicImageFileOptions,
    struct_size: usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller.
    guard(|| unsafe {
        write_options(
            options,
            struct_size,
            LaicImageFileOptions::defaults(),
            "options",
        )
    })
}

/// `laic_clip_encode_image_files()` with a choice of decoding, and of what an unreadable file
/// does. `options` may be NULL (the defaults); `LAIC_IMAGE_DECODE_DRAFT` decodes large JPEGs
/// at a reduced scale as PIL's `Image.draft()` does, `exif_orientation` turns JPEGs upright as
/// PIL's `ImageOps.exif_transpose()` does. `file_status` is NULL (a file that cannot
/// be read or decoded fails the call: `laic_clip_encode_image_files()`) or holds `n` entries:
/// then such files do not fail the call; their statuses (`LAIC_STATUS_IO`,
/// `LAIC_STATUS_FORMAT`) are written there and their rows of `out` are zeros, and the other
/// files get `LAIC_STATUS_OK` and their embeddings. An unknown `decode` value is
/// `LAIC_STATUS_INVALID_ARGUMENT`. When the call fails, neither `out` nor `file_status` is
/// written.
///
/// # Safety
/// As `laic_clip_encode_image_files()`; `options` is NULL or points to `struct_size` readable
/// bytes; `file_status` is NULL or valid for `n` writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_clip_encode_image_files_with_options(
    ctx: *const LaicContext,
    model: *const LaicClipModel,
    paths: *const *const c_char,
    n: usize,
    options: *const LaicImageFileOptions,
    file_status: *mut LaicStatus,
    progress: LaicProgressFn,
    user: *mut c_void,
    out: *mut f32,
    out_len: usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): pointers are valid per the caller contract.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let model = &try_ref(model, "model")?.inner;
            let opts =
                read_options(options, LaicImageFileOptions::defaults(), "options")?.to_rust()?;
            check_out(model, n, out, out_len)?;
            let ptrs = try_slice(paths, n, "paths")?;
            let owned = ptrs
                .iter()
                .enumerate()
                .map(|(i, &p)| path_from_c(p, &format!("paths[{i}]")))
                .collect::<Result<Vec<PathBuf>>>()?;
            let refs: Vec<&Path> = owned.iter().map(|p| p.as_path()).collect();
            if file_status.is_null() {
                let emb = with_progress(progress, user, |p| {
                    model.encode_image_files_with(ctx, &refs, &opts, p)
                })?;
                return write_out(&emb, out, out_len);
            }
            let statuses = try_mut_slice(file_status, n, "file_status")?;
            let emb = with_progress(progress, user, |p| {
                model.encode_image_files_skipping(ctx, &refs, &opts, p)
            })?;
            write_out(&emb.values, out, out_len)?;
            statuses.fill(LaicStatus::Ok);
            for (i, e) in &emb.failed {
                statuses[*i] = e.status();
            }
            Ok(())
        }
    })
}

/// Embeds `n` decoded RGB images into `out` (`n * embed_dim` floats, L2-normalised), with
/// the same resize, crop and normalisation as `laic_clip_encode_image_files()`. Errors
/// (nothing written): as `laic_clip_encode_texts()`, plus an image with a zero side, a row
/// stride below `3 * width`, or a NULL `data` (the message gives its index).
///
/// # Safety
/// `images` holds `n` descriptors, each `data` valid for `(height - 1) * row_stride + 3 *
/// width` bytes; `out` is valid for `out_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_clip_encode_images_rgb8(
    ctx: *const LaicContext,
    model: *const LaicClipModel,
    images: *const LaicImageRgb8,
    n: usize,
    progress: LaicProgressFn,
    user: *mut c_void,
    out: *mut f32,
    out_len: usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): pointers are valid per the caller contract.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let model = &try_ref(model, "model")?.inner;
            check_out(model, n, out, out_len)?;
            let descs = try_slice(images, n, "images")?;
            let views = descs
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let what = format!("images[{i}]");
                    let need = Rgb8Image::required_len(d.width, d.height, d.row_stride)
                        .map_err(|e| e.in_arg(&what))?;
                    let data = try_slice(d.data, need, &format!("{what}.data"))?;
                    Ok(Rgb8Image {
                        data,
                        width: d.width,
                        height: d.height,
                        row_stride: d.row_stride,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let emb = with_progress(progress, user, |p| model.encode_images_rgb8(ctx, &views, p))?;
            write_out(&emb, out, out_len)
        }
    })
}
