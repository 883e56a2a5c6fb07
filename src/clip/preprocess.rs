//! Image preprocessing of CLIP, as transformers' `CLIPImageProcessor` does it with PIL: decode,
//! RGB, resize the shortest side to the input size with PIL's bicubic filter (bit-exact: see
//! the `resample` module), centre crop (offsets rounded down), scale to [0, 1],
//! normalise with CLIP's mean and std, channels first.
//!
//! JPEG, PNG and WebP decode to the RGB pixels PIL decodes (JPEG with libjpeg-turbo's
//! algorithms; CMYK JPEGs excepted, whose conversion PIL does its own way), so the result is
//! PIL's exactly.
//!
//! Only the crop window of the resized image is computed: the resampling of each output pixel
//! depends only on its own position in the full resized image, so this equals resize-then-crop
//! and keeps very elongated images cheap.

use super::{exif, jpeg, resample};
use crate::error::{Error, Result};
use std::path::Path;

/// CLIP's per-channel mean (RGB).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel standard deviation (RGB).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// A borrowed 8-bit RGB image: pixel (x, y) is at `data[y * row_stride + 3 * x ..][..3]`.
#[derive(Debug, Clone, Copy)]
pub struct Rgb8Image<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// Width in pixels (> 0).
    pub width: usize,
    /// Height in pixels (> 0).
    pub height: usize,
    /// Bytes between the starts of consecutive rows (>= 3 · width).
    pub row_stride: usize,
}

impl<'a> Rgb8Image<'a> {
    /// A tightly packed image (`row_stride = 3 · width`).
    pub fn packed(data: &'a [u8], width: usize, height: usize) -> Result<Self> {
        let img = Rgb8Image {
            data,
            width,
            height,
            row_stride: width.saturating_mul(3),
        };
        img.validate()?;
        Ok(img)
    }

    /// Checks sizes: non-empty, stride wide enough, data long enough, sides below 2^24.
    pub fn validate(&self) -> Result<()> {
        let need = Self::required_len(self.width, self.height, self.row_stride)?;
        if self.data.len() < need {
            return Err(Error::invalid(format!(
                "image data has {} bytes, a {}×{} image with row stride {} needs {need}",
                self.data.len(),
                self.width,
                self.height,
                self.row_stride
            )));
        }
        Ok(())
    }

    /// The bytes a `width × height` image with `row_stride` spans, after checking the sizes
    /// (non-zero sides below 2^24, `row_stride >= 3 · width`).
    pub fn required_len(width: usize, height: usize, row_stride: usize) -> Result<usize> {
        if width == 0 || height == 0 {
            return Err(Error::invalid(format!(
                "image is {width}×{height} pixels: both sides must be > 0"
            )));
        }
        if width >= 1 << 24 || height >= 1 << 24 {
            return Err(Error::invalid(format!(
                "image of {width}×{height} pixels is too large"
            )));
        }
        let row = width * 3;
        if row_stride < row {
            return Err(Error::invalid(format!(
                "image row stride {row_stride} is smaller than 3 × width = {row}"
            )));
        }
        (height - 1)
            .checked_mul(row_stride)
            .and_then(|n| n.checked_add(row))
            .ok_or_else(|| Error::invalid("image size overflows"))
    }
}

/// An owned, packed 8-bit RGB image.
#[derive(Debug, Clone)]
pub struct Rgb8Buf {
    /// `3 · width · height` bytes, row-major.
    pub data: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl Rgb8Buf {
    /// A view of this image.
    pub fn as_ref(&self) -> Rgb8Image<'_> {
        Rgb8Image {
            data: &self.data,
            width: self.width,
            height: self.height,
            row_stride: self.width * 3,
        }
    }
}

/// How encoded images are decoded before preprocessing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ImageDecode {
    /// Every pixel, as PIL's `Image.open(..).convert("RGB")` (what transformers' preprocessing
    /// sees).
    #[default]
    Full,
    /// JPEGs at least twice the input size on both sides decode at 1/2, 1/4 or 1/8 scale inside
    /// libjpeg's IDCT, as PIL does after `Image.draft("RGB", (size, size))`: several times
    /// faster on camera photos, and both sides stay ≥ the input size, but the pixels (hence
    /// the embeddings) differ slightly from [`ImageDecode::Full`]'s. Other formats, CMYK
    /// JPEGs and smaller JPEGs decode in full.
    Draft,
}

impl ImageDecode {
    /// Its name in the bindings and on command lines: "full" or "draft".
    pub fn name(self) -> &'static str {
        match self {
            ImageDecode::Full => "full",
            ImageDecode::Draft => "draft",
        }
    }

    /// The decoding called `name` ([`ImageDecode::name`]), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [ImageDecode::Full, ImageDecode::Draft]
            .into_iter()
            .find(|d| d.name() == name)
    }
}

/// How image files are read ([`load_rgb8_with`], `ClipModel::encode_image_files_with`). The
/// default is transformers' preprocessing exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ImageFileOptions {
    /// Full decoding (the default) or JPEG drafts (faster on large photos, slightly different
    /// pixels).
    pub decode: ImageDecode,
    /// Turn JPEGs upright by their EXIF orientation tag, as PIL's `ImageOps.exif_transpose`
    /// (default false: PIL's `Image.open`, and so transformers, ignores the tag; phone photos
    /// held sideways are then embedded sideways).
    pub exif_orientation: bool,
}

/// Decodes a JPEG, PNG or WebP file to RGB (grayscale is replicated, alpha is dropped as PIL's
/// `convert("RGB")` drops it).
pub fn load_rgb8(path: &Path) -> Result<Rgb8Buf> {
    load_rgb8_with(path, &ImageFileOptions::default(), 0)
}

/// [`load_rgb8`] with [`ImageFileOptions`]; `size` is the input size a draft keeps (both sides
/// stay ≥ `size`; ignored by [`ImageDecode::Full`]).
pub fn load_rgb8_with(path: &Path, opts: &ImageFileOptions, size: usize) -> Result<Rgb8Buf> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        context: path.display().to_string(),
        source,
    })?;
    decode_rgb8_with(&bytes, opts, size).map_err(|e| match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// Decodes an encoded JPEG, PNG or WebP image to RGB. JPEGs decode with libjpeg-turbo's
/// algorithms, as PIL decodes them (the `jpeg` module); CMYK JPEGs, PNG and WebP with the
/// `image` crate.
pub fn decode_rgb8(bytes: &[u8]) -> Result<Rgb8Buf> {
    decode_rgb8_with(bytes, &ImageFileOptions::default(), 0)
}

/// [`decode_rgb8`] with [`ImageFileOptions`] (`size` as in [`load_rgb8_with`]).
pub fn decode_rgb8_with(bytes: &[u8], opts: &ImageFileOptions, size: usize) -> Result<Rgb8Buf> {
    let img = decode_stored(bytes, opts.decode, size)?;
    Ok(match opts.exif_orientation {
        true => match exif::jpeg_orientation(bytes) {
            Some(o) => exif::apply_orientation(img, o),
            None => img,
        },
        false => img,
    })
}

/// The pixels as stored (no EXIF orientation applied).
fn decode_stored(bytes: &[u8], decode: ImageDecode, size: usize) -> Result<Rgb8Buf> {
    let draft = match decode {
        ImageDecode::Full => None,
        ImageDecode::Draft => Some(size),
    };
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        && let Some(img) = jpeg::decode(bytes, draft)?
    {
        return Ok(img);
    }
    let img = image::load_from_memory(bytes)
        .map_err(|e| Error::Format(format!("cannot decode image: {e}")))?;
    let rgb = img.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Ok(Rgb8Buf {
        data: rgb.into_raw(),
        width,
        height,
    })
}

/// The size of the image after resizing its shortest side to `size`, as transformers'
/// `get_resize_output_image_size(default_to_square=False)`: the long side is
/// `int(size · long / short)`.
pub fn resized_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    if width <= height {
        (size, size * height / width)
    } else {
        (size * width / height, size)
    }
}

/// Preprocesses `img` into `out` (`3 × size × size` floats, channels first, normalised).
pub fn preprocess_rgb8(img: &Rgb8Image<'_>, size: usize, out: &mut [f32]) -> Result<()> {
    img.validate()?;
    if size == 0 || out.len() < 3 * size * size {
        return Err(Error::invalid(format!(
            "output holds {} floats, 3 × {size} × {size} are needed",
            out.len()
        )));
    }
    let crop = resize_crop(img, size)?;
    let plane = size * size;
    for (i, px) in crop.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 * (1.0 / 255.0) - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    Ok(())
}

/// The `size × size` centre crop (packed RGB) of the image resized so its shortest side is
/// `size`.
pub fn resize_crop(img: &Rgb8Image<'_>, size: usize) -> Result<Vec<u8>> {
    img.validate()?;
    let (rw, rh) = resized_size(img.width, img.height, size);
    // transformers' center_crop: top = (h − size) // 2, left = (w − size) // 2.
    let (left, top) = ((rw - size) / 2, (rh - size) / 2);
    Ok(resample::resize_window(
        img,
        (rw, rh),
        (left, top, size, size),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodings_are_found_by_their_names() {
        for d in [ImageDecode::Full, ImageDecode::Draft] {
            assert_eq!(ImageDecode::from_name(d.name()), Some(d));
        }
        assert_eq!(ImageDecode::from_name("fast"), None);
    }

    #[test]
    fn odd_shapes_and_strides_work() {
        let mut out = vec![f32::NAN; 3 * 224 * 224];
        // 1×1, very elongated both ways, a padded stride.
        for &(w, h, stride) in &[(1, 1, 3), (5000, 2, 15000), (2, 3000, 6), (7, 9, 32)] {
            let data = vec![200u8; stride * h];
            let img = Rgb8Image {
                data: &data,
                width: w,
                height: h,
                row_stride: stride,
            };
            preprocess_rgb8(&img, 224, &mut out).unwrap();
            let want = (200.0 / 255.0 - CLIP_MEAN[1]) / CLIP_STD[1];
            assert!(out.iter().all(|v| v.is_finite()));
            assert!((out[224 * 224 + 100] - want).abs() < 1e-5, "{w}×{h}");
        }
    }

    #[test]
    fn bad_images_are_errors() {
        let mut out = vec![0f32; 3 * 224 * 224];
        let data = [0u8; 12];
        for (w, h, s) in [(0, 1, 3), (2, 2, 5), (2, 3, 6), (1 << 24, 1, 3 << 24)] {
            let img = Rgb8Image {
                data: &data,
                width: w,
                height: h,
                row_stride: s,
            };
            assert!(matches!(
                preprocess_rgb8(&img, 224, &mut out),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            decode_rgb8(b"GIF89a nonsense"),
            Err(Error::Format(_))
        ));
        assert!(matches!(
            decode_rgb8(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]),
            Err(Error::Format(_))
        ));
        assert!(matches!(
            load_rgb8(Path::new("/nonexistent/laic.png")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn cmyk_jpegs_decode_through_the_image_crate() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/clip/preprocess/cmyk.jpg"
        );
        let img = load_rgb8(Path::new(path)).unwrap();
        assert_eq!(
            (img.width, img.height, img.data.len()),
            (16, 12, 16 * 12 * 3)
        );
    }

    #[test]
    fn grayscale_and_rgba_decode_to_rgb() {
        use image::{ImageBuffer, Luma, Rgba};
        let mut png = Vec::new();
        let g: ImageBuffer<Luma<u8>, _> =
            ImageBuffer::from_fn(3, 2, |x, y| Luma([(x * 10 + y) as u8]));
        g.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let d = decode_rgb8(&png).unwrap();
        assert_eq!((d.width, d.height), (3, 2));
        assert_eq!(&d.data[3 * 4..3 * 5], &[11, 11, 11]);
        let mut png = Vec::new();
        let a: ImageBuffer<Rgba<u8>, _> =
            ImageBuffer::from_fn(2, 2, |x, _| Rgba([x as u8, 5, 9, 0]));
        a.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let d = decode_rgb8(&png).unwrap();
        assert_eq!(
            &d.data[3..6],
            &[1, 5, 9],
            "alpha is dropped, not composited"
        );
    }
}
