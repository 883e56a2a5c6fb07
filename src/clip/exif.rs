//! EXIF orientation of JPEGs, applied as PIL's `ImageOps.exif_transpose` applies it.
//!
//! Cameras and phones store the sensor's pixels and say in the EXIF `Orientation` tag (0x0112)
//! how to turn them upright. PIL's `Image.open`, and so transformers' preprocessing, ignores the
//! tag; `ImageOps.exif_transpose` applies it, which is what a photo library wants. Only the tag
//! of a JPEG's first `Exif` APP1 segment is read; every offset is bounds-checked, and a
//! malformed or missing tag means "as stored".

use super::preprocess::Rgb8Buf;

/// The EXIF orientation (2–8) of a JPEG, or `None` when it has none, it is 1 (as stored) or
/// anything in the way is malformed.
pub(crate) fn jpeg_orientation(bytes: &[u8]) -> Option<u16> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    // Marker segments up to the start of scan: FF xx, then a big-endian length that counts
    // itself.
    while at + 4 <= bytes.len() && bytes[at] == 0xFF {
        let marker = bytes[at + 1];
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        let body = bytes.get(at + 4..at + 2 + len.max(2))?;
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            return tiff_orientation(&body[6..]);
        }
        at += 2 + len;
    }
    None
}

/// The orientation tag of IFD0 of a TIFF structure (EXIF's payload).
fn tiff_orientation(tiff: &[u8]) -> Option<u16> {
    let big = match tiff.get(..4)? {
        [b'I', b'I', 42, 0] => false,
        [b'M', b'M', 0, 42] => true,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u16> {
        let b = tiff.get(o..o + 2)?;
        Some(if big {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |o: usize| -> Option<usize> {
        let b: [u8; 4] = tiff.get(o..o + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        } as usize)
    };
    let ifd = u32_at(4)?;
    let entries = u16_at(ifd)? as usize;
    for e in 0..entries {
        let entry = ifd.checked_add(2 + 12 * e)?;
        // Tag 0x0112, type SHORT (3), one value, stored in the entry itself.
        if u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3 && u32_at(entry + 4)? >= 1 {
            return u16_at(entry + 8).filter(|o| (2..=8).contains(o));
        }
    }
    None
}

/// `img` turned upright for EXIF orientation `orientation` (PIL's `exif_transpose`: 2 mirror,
/// 3 rotate 180°, 4 flip, 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 90°
/// counter-clockwise); other values leave it as it is.
pub(crate) fn apply_orientation(mut img: Rgb8Buf, orientation: u16) -> Rgb8Buf {
    // Mirrors and flips keep the shape: in place (a second buffer of a 12 MP photo costs more
    // in first-touch page faults than the move itself).
    let row = 3 * img.width;
    match orientation {
        2 => {
            img.data
                .chunks_exact_mut(row)
                .for_each(|r| r.as_chunks_mut::<3>().0.reverse());
            return img;
        }
        3 => {
            img.data.as_chunks_mut::<3>().0.reverse();
            return img;
        }
        4 => {
            let half = img.height / 2;
            let (top, rest) = img.data.split_at_mut(half * row);
            let bottom = &mut rest[(img.height - 2 * half) * row..];
            for (a, b) in top
                .chunks_exact_mut(row)
                .zip(bottom.chunks_exact_mut(row).rev())
            {
                a.swap_with_slice(b);
            }
            return img;
        }
        _ => {}
    }
    let (w, h) = (img.width as isize, img.height as isize);
    // Output pixel (x, y) reads input pixel base + x·dx + y·dy (in pixels, row-major).
    let (base, dx, dy) = match orientation {
        5 => (0, w, 1),
        6 => ((h - 1) * w, -w, 1),
        7 => ((h - 1) * w + w - 1, -w, -1),
        8 => (w - 1, w, -1),
        _ => return img,
    };
    let (ow, oh) = (img.height, img.width);
    // Whole pixels: one bounds check and one 3-byte move each.
    let (src, _) = img.data.as_chunks::<3>();
    let mut data = vec![0u8; img.data.len()];
    let (dst, _) = data.as_chunks_mut::<3>();
    // The turns swap the sides: square tiles of the output, so that the input rows a tile
    // reads stay in cache.
    const TILE: usize = 32;
    for ty in (0..oh).step_by(TILE) {
        for tx in (0..ow).step_by(TILE) {
            let tw = TILE.min(ow - tx);
            for y in ty..(ty + TILE).min(oh) {
                // In bounds: the map sends [0, ow) × [0, oh) onto the input's pixels.
                let mut s = base + y as isize * dy + tx as isize * dx;
                for px in &mut dst[y * ow + tx..y * ow + tx + tw] {
                    *px = src[s as usize];
                    s += dx;
                }
            }
        }
    }
    Rgb8Buf {
        data,
        width: ow,
        height: oh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG prefix: SOI, an APP0, then an Exif APP1 whose IFD0 holds `entries`
    /// (tag, type, count, value) in the byte order `big`.
    fn jpeg_with_exif(big: bool, entries: &[(u16, u16, u32, u16)]) -> Vec<u8> {
        let w16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut tiff = Vec::new();
        tiff.extend_from_slice(if big { b"MM\0*" } else { b"II*\0" });
        tiff.extend_from_slice(&w32(8));
        tiff.extend_from_slice(&w16(entries.len() as u16));
        for &(tag, ty, count, value) in entries {
            tiff.extend_from_slice(&w16(tag));
            tiff.extend_from_slice(&w16(ty));
            tiff.extend_from_slice(&w32(count));
            tiff.extend_from_slice(&w16(value));
            tiff.extend_from_slice(&[0, 0]);
        }
        tiff.extend_from_slice(&[0; 4]); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0xAB, 0xCD];
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        out
    }

    #[test]
    fn the_orientation_tag_is_read_in_either_byte_order() {
        for big in [false, true] {
            let other = (0x010F, 2, 4, 0); // Make, before the orientation
            for o in 2..=8 {
                let j = jpeg_with_exif(big, &[other, (0x0112, 3, 1, o)]);
                assert_eq!(jpeg_orientation(&j), Some(o), "big {big}, {o}");
            }
            // 1 (as stored), 0 and 9 (invalid), a LONG, no tag: as stored.
            for entries in [
                vec![(0x0112, 3, 1, 1)],
                vec![(0x0112, 3, 1, 0)],
                vec![(0x0112, 3, 1, 9)],
                vec![(0x0112, 4, 1, 6)],
                vec![other],
            ] {
                assert_eq!(jpeg_orientation(&jpeg_with_exif(big, &entries)), None);
            }
        }
    }

    #[test]
    fn malformed_exif_is_ignored_without_reading_out_of_bounds() {
        let good = jpeg_with_exif(false, &[(0x0112, 3, 1, 6)]);
        // Every truncation, and every single corrupted byte: no panic, and no orientation
        // invented where the tag was cut away.
        for cut in 0..good.len() {
            let got = jpeg_orientation(&good[..cut]);
            assert!(got.is_none() || got == Some(6), "{cut}");
        }
        for i in 0..good.len() {
            for v in [0x00, 0xFF, 0x7F] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = jpeg_orientation(&bad);
            }
        }
        assert_eq!(jpeg_orientation(b"\x89PNG"), None);
        // An IFD offset far past the end.
        let mut far = good.clone();
        let tiff = far.windows(4).position(|w| w == b"II*\0").unwrap();
        far[tiff + 4..tiff + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(jpeg_orientation(&far), None);
    }

    #[test]
    fn tiled_turns_equal_the_pixel_by_pixel_definition_at_awkward_sizes() {
        // Sides that leave partial 64-pixel tiles; distinct bytes everywhere.
        let (w, h) = (130usize, 67usize);
        let img = Rgb8Buf {
            data: (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect(),
            width: w,
            height: h,
        };
        for o in 2..=8u16 {
            let got = apply_orientation(img.clone(), o);
            let (ow, oh) = if o >= 5 { (h, w) } else { (w, h) };
            assert_eq!((got.width, got.height), (ow, oh));
            for y in 0..oh {
                for x in 0..ow {
                    let (sx, sy) = match o {
                        2 => (w - 1 - x, y),
                        3 => (w - 1 - x, h - 1 - y),
                        4 => (x, h - 1 - y),
                        5 => (y, x),
                        6 => (y, h - 1 - x),
                        7 => (w - 1 - y, h - 1 - x),
                        _ => (w - 1 - y, x),
                    };
                    let (d, s) = (3 * (y * ow + x), 3 * (sy * w + sx));
                    assert_eq!(got.data[d..d + 3], img.data[s..s + 3], "{o}: ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn orientations_move_each_corner_where_exif_says() {
        // A 3×2 image whose pixels are numbered 0..6 row by row.
        let img = Rgb8Buf {
            data: (0..6u8).flat_map(|v| [v, v, v]).collect(),
            width: 3,
            height: 2,
        };
        let grid = |o: u16| {
            let r = apply_orientation(img.clone(), o);
            let v: Vec<u8> = r.data.chunks_exact(3).map(|p| p[0]).collect();
            (r.width, r.height, v)
        };
        // Stored:  0 1 2 / 3 4 5.
        assert_eq!(grid(1), (3, 2, vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(grid(2), (3, 2, vec![2, 1, 0, 5, 4, 3]));
        assert_eq!(grid(3), (3, 2, vec![5, 4, 3, 2, 1, 0]));
        assert_eq!(grid(4), (3, 2, vec![3, 4, 5, 0, 1, 2]));
        assert_eq!(grid(5), (2, 3, vec![0, 3, 1, 4, 2, 5]));
        // 6: turned 90° clockwise, the bottom-left pixel comes to the top left.
        assert_eq!(grid(6), (2, 3, vec![3, 0, 4, 1, 5, 2]));
        assert_eq!(grid(7), (2, 3, vec![5, 2, 4, 1, 3, 0]));
        assert_eq!(grid(8), (2, 3, vec![2, 5, 1, 4, 0, 3]));
    }
}
