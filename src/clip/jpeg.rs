//! JPEG decoding as PIL does it: libjpeg-turbo's decoder (the one inside mozjpeg, compiled from
//! source by the `mozjpeg-sys` crate, plain C), with libjpeg's defaults that Pillow keeps:
//! the accurate integer IDCT (`JDCT_ISLOW`), fancy (triangle) chroma upsampling and its
//! fixed-point YCbCr → RGB conversion. Pillow's wheels decode with libjpeg-turbo, whose SIMD
//! paths are bit-exact with these C paths, so the RGB pixels are PIL's exactly.
//!
//! With a draft size, large images decode at 1/2, 1/4 or 1/8 scale inside libjpeg's IDCT, as
//! PIL's `Image.draft("RGB", (size, size))` asks for ([`draft_scale`]).
//!
//! libjpeg reports fatal errors through a callback that must not return: it unwinds (the C
//! code is built with unwind tables, `mozjpeg-sys`'s `unwinding` feature) up to
//! [`decode`], which turns it into [`Error::Format`] with libjpeg's message.

use super::preprocess::Rgb8Buf;
use crate::error::{Error, Result};
use mozjpeg_sys::{
    J_COLOR_SPACE, JPEG_LIB_VERSION, JWRN_JPEG_EOF, jpeg_CreateDecompress, jpeg_common_struct,
    jpeg_decompress_struct, jpeg_destroy_decompress, jpeg_error_mgr, jpeg_finish_decompress,
    jpeg_mem_src, jpeg_read_header, jpeg_read_scanlines, jpeg_start_decompress, jpeg_std_error,
};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// The largest decoded image accepted, in bytes of RGB (the `image` crate's default limit).
const MAX_BYTES: usize = 512 << 20;

/// What a libjpeg error unwinds with.
struct JpegError(String);

/// libjpeg's message for the error or warning `err` holds.
///
/// # Safety
/// `cinfo` is a live libjpeg object whose `err` manager is set up by `jpeg_std_error`.
unsafe fn message(cinfo: &mut jpeg_common_struct) -> String {
    let mut buf = [0u8; 80];
    // SAFETY: `err` points to the manager `decode` owns; `format_message` is libjpeg's.
    let format = unsafe { (*cinfo.err).format_message };
    if let Some(format) = format {
        // SAFETY: libjpeg writes a NUL-terminated message of at most 80 bytes.
        unsafe { format(cinfo, &buf) };
        buf[79] = 0;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// libjpeg's fatal-error callback: unwinds to [`decode`] (it must not return).
unsafe extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
    // SAFETY: called by libjpeg on its live object.
    let msg = unsafe { message(cinfo) };
    resume_unwind(Box::new(JpegError(msg)));
}

/// libjpeg's message callback: warnings about corrupt data are ignored (as PIL ignores
/// them), except that the data ended before the image did, which PIL refuses
/// ("image file is truncated"). Trace messages (level ≥ 0) are dropped.
unsafe extern "C-unwind" fn emit_message(cinfo: &mut jpeg_common_struct, level: i32) {
    // SAFETY: `err` points to the manager `decode` owns.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 && code == JWRN_JPEG_EOF && cinfo.is_decompressor != 0 {
        // SAFETY: a decompressor's common fields start its `jpeg_decompress_struct`.
        let d = unsafe { &*(cinfo as *mut jpeg_common_struct as *const jpeg_decompress_struct) };
        if d.output_height == 0 || d.output_scanline < d.output_height {
            resume_unwind(Box::new(JpegError("the JPEG data is truncated".into())));
        }
    }
}

/// The IDCT scale denominator PIL's `draft` picks for a `width × height` JPEG asked to keep
/// at least `size × size`: the largest of 8, 4, 2, 1 not above `min(width / size, height /
/// size)`, so that both decoded sides, ⌈side / s⌉, stay ≥ `size` (1 when `size` is 0).
pub(crate) fn draft_scale(width: usize, height: usize, size: usize) -> u32 {
    if size == 0 {
        return 1;
    }
    let fit = (width / size).min(height / size);
    [8, 4, 2].into_iter().find(|&s| fit >= s).unwrap_or(1) as u32
}

/// Decodes a JPEG to RGB as PIL's `Image.open(..).convert("RGB")` does, or `Ok(None)` when
/// its colour space is one libjpeg does not convert to RGB (CMYK, YCCK: the caller falls
/// back to another decoder). With `draft = Some(size)`, as PIL does after
/// `Image.draft("RGB", (size, size))`: scaled by [`draft_scale`] in the IDCT.
pub(crate) fn decode(bytes: &[u8], draft: Option<usize>) -> Result<Option<Rgb8Buf>> {
    let mut err: Box<jpeg_error_mgr> = Box::new(
        // SAFETY: a plain C struct of integers, pointers and nullable function pointers:
        // all zeroes is a valid value, and `jpeg_std_error` fills it in next.
        unsafe { std::mem::zeroed() },
    );
    // SAFETY: `err` is a valid, exclusively borrowed manager.
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    // SAFETY: as above; `jpeg_CreateDecompress` initialises it (after `err` is set).
    let mut cinfo: Box<jpeg_decompress_struct> = Box::new(unsafe { std::mem::zeroed() });
    cinfo.common.err = &mut *err;
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `cinfo` is zeroed with `err` set, as `jpeg_create_decompress` expects;
        // `bytes` outlives every use of the source (`cinfo` is destroyed below).
        unsafe {
            jpeg_CreateDecompress(
                &mut *cinfo,
                JPEG_LIB_VERSION,
                std::mem::size_of::<jpeg_decompress_struct>(),
            );
            jpeg_mem_src(&mut cinfo, bytes.as_ptr(), bytes.len() as _);
            jpeg_read_header(&mut cinfo, 1);
        }
        match cinfo.jpeg_color_space {
            J_COLOR_SPACE::JCS_GRAYSCALE | J_COLOR_SPACE::JCS_YCbCr | J_COLOR_SPACE::JCS_RGB => {}
            _ => return Ok(None),
        }
        // Pillow's settings are libjpeg's defaults (ISLOW IDCT, fancy upsampling): only the
        // output colour space is set (grayscale is replicated to RGB, as `convert("RGB")`).
        cinfo.out_color_space = J_COLOR_SPACE::JCS_RGB;
        if let Some(size) = draft {
            // PIL's draft changes only the scale (its `draft` flag, which would also pick the
            // fast IDCT and plain upsampling, stays off).
            cinfo.scale_num = 1;
            cinfo.scale_denom = draft_scale(
                cinfo.image_width as usize,
                cinfo.image_height as usize,
                size,
            );
        }
        // SAFETY: after a successful `jpeg_read_header`.
        unsafe { jpeg_start_decompress(&mut cinfo) };
        let (width, height) = (cinfo.output_width as usize, cinfo.output_height as usize);
        if cinfo.output_components != 3 {
            return Err(Error::Internal(format!(
                "libjpeg gave {} components for RGB output",
                cinfo.output_components
            )));
        }
        let len = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(3))
            .filter(|&n| n <= MAX_BYTES)
            .ok_or_else(|| {
                Error::Format(format!(
                    "a {width}×{height} JPEG is larger than {MAX_BYTES} bytes decoded"
                ))
            })?;
        let mut data = vec![0u8; len];
        let mut rows: Vec<*mut u8> = data
            .chunks_exact_mut(width * 3)
            .map(|r| r.as_mut_ptr())
            .collect();
        while (cinfo.output_scanline as usize) < height {
            let done = cinfo.output_scanline as usize;
            // SAFETY: `rows[done..]` point to distinct rows of `width · 3` bytes in `data`,
            // which outlives the call; libjpeg writes at most `height − done` of them.
            let n = unsafe {
                jpeg_read_scanlines(
                    &mut cinfo,
                    rows[done..].as_mut_ptr(),
                    (height - done) as u32,
                )
            };
            if n == 0 {
                return Err(Error::Format("libjpeg returned no scanlines".into()));
            }
        }
        // SAFETY: every scanline was read.
        unsafe { jpeg_finish_decompress(&mut cinfo) };
        Ok(Some(Rgb8Buf {
            data,
            width,
            height,
        }))
    }));
    // SAFETY: `cinfo` was created (or is still zeroed with a NULL memory manager, which
    // `jpeg_destroy` checks) and is not used again.
    unsafe { jpeg_destroy_decompress(&mut cinfo) };
    match result {
        Ok(r) => r,
        Err(payload) => match payload.downcast::<JpegError>() {
            Ok(e) => Err(Error::Format(format!("cannot decode JPEG: {}", e.0))),
            Err(other) => resume_unwind(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/clip/preprocess/"
        );
        std::fs::read(format!("{dir}{name}")).unwrap()
    }

    #[test]
    fn truncated_and_corrupt_jpegs_are_format_errors() {
        let bytes = fixture("landscape.jpg");
        for cut in [2, 20, bytes.len() / 2, bytes.len() - 200] {
            let e = decode(&bytes[..cut], None).unwrap_err();
            assert!(matches!(e, Error::Format(_)), "{cut}: {e}");
        }
        let e = decode(&bytes[..bytes.len() / 2], None).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // A broken frame header (sample precision 3) names libjpeg's complaint.
        let mut bad = bytes.clone();
        let sof = bad.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bad[sof + 4] = 3;
        let e = decode(&bad, None).unwrap_err();
        assert!(
            matches!(e, Error::Format(_)) && e.to_string().contains("precision"),
            "{e}"
        );
        // The decoder is left usable: a good image still decodes after the failures.
        let img = decode(&bytes, None).unwrap().unwrap();
        assert_eq!((img.width, img.height), (403, 301));
    }

    #[test]
    fn grayscale_is_replicated_and_cmyk_is_left_to_the_caller() {
        let img = decode(&fixture("mono.jpg"), None).unwrap().unwrap();
        assert_eq!((img.width, img.height), (177, 260));
        assert!(
            img.data
                .chunks_exact(3)
                .all(|p| p[0] == p[1] && p[1] == p[2])
        );
        assert!(decode(&fixture("cmyk.jpg"), Some(1)).unwrap().is_none());
    }

    #[test]
    fn draft_scale_is_pils_choice() {
        // PIL: scale = min(w // size, h // size), then the largest of 8, 4, 2, 1 not above it.
        for (w, h, s) in [
            (447, 5000, 1),
            (448, 448, 2),
            (5000, 895, 2),
            (896, 896, 4),
            (1791, 4000, 4),
            (1792, 1792, 8),
            (40000, 30000, 8),
            (100, 100, 1),
        ] {
            assert_eq!(draft_scale(w, h, 224), s, "{w}×{h}");
            assert!(w.div_ceil(s as usize) >= 224 || s == 1);
        }
        assert_eq!(draft_scale(3000, 3000, 0), 1);
    }

    #[test]
    fn a_draft_decodes_at_the_scaled_size() {
        // landscape.jpg is 403×301: asked to keep 100×100 it decodes at 1/2 (⌈403/2⌉ × ⌈301/2⌉),
        // 50×50 at 1/4 and 37×37 at 1/8.
        let bytes = fixture("landscape.jpg");
        for (size, w, h) in [
            (200, 403, 301),
            (100, 202, 151),
            (50, 101, 76),
            (37, 51, 38),
        ] {
            let img = decode(&bytes, Some(size)).unwrap().unwrap();
            assert_eq!((img.width, img.height), (w, h), "draft {size}");
            assert_eq!(img.data.len(), w * h * 3);
        }
    }

    #[test]
    fn decoding_from_several_threads_at_once_works() {
        let bytes = fixture("progressive.jpg");
        let want = decode(&bytes, None).unwrap().unwrap().data;
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| assert_eq!(decode(&bytes, None).unwrap().unwrap().data, want));
            }
        });
    }
}
