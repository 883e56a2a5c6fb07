//! `report.html` of `laic cluster`: one section per cluster with its names, size and
//! thumbnails (small JPEGs in `thumbs/`, referenced relatively; no external resources).

use crate::cluster::{Outcome, members, names};
use crate::files;
use laic::Result;
use laic::clip::preprocess::{self, ImageDecode, ImageFileOptions};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Longest side of a thumbnail in pixels.
const THUMB_SIZE: u32 = 160;

/// Writes `out/thumbs/NNNNN.jpg` for each image; returns each one's path relative to `out`
/// (`None` where the thumbnail could not be made, reported on stderr).
pub fn write_thumbnails(out: &Path, images: &[PathBuf]) -> Result<Vec<Option<String>>> {
    let dir = out.join("thumbs");
    std::fs::create_dir_all(&dir).map_err(files::io_error(&dir))?;
    let width = images.len().to_string().len().max(5);
    Ok(images
        .par_iter()
        .enumerate()
        .map(|(i, p)| {
            let rel = format!("thumbs/{i:0width$}.jpg");
            // Upright (the original shows upright in a browser), and large JPEGs decoded at a
            // reduced scale that still covers the thumbnail.
            let opts = ImageFileOptions {
                decode: ImageDecode::Draft,
                exif_orientation: true,
            };
            let made = preprocess::load_rgb8_with(p, &opts, THUMB_SIZE as usize)
                .map_err(|e| e.to_string())
                .and_then(|rgb| {
                    let (w, h) = (rgb.width as u32, rgb.height as u32);
                    let img = image::RgbImage::from_raw(w, h, rgb.data)
                        .ok_or_else(|| format!("a {w}×{h} image with the wrong byte count"))?;
                    image::DynamicImage::ImageRgb8(img)
                        .thumbnail(THUMB_SIZE, THUMB_SIZE)
                        .to_rgb8()
                        .save_with_format(out.join(&rel), image::ImageFormat::Jpeg)
                        .map_err(|e| e.to_string())
                });
            match made {
                Ok(()) => Some(rel),
                Err(e) => {
                    eprintln!("no thumbnail for {}: {e}", p.display());
                    None
                }
            }
        })
        .collect())
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fafafa}\
h1{font-size:1.6em}section.cluster{background:#fff;border:1px solid #ddd;border-radius:8px;\
padding:1em;margin:1em 0}section.cluster h2{margin:0 0 .2em;font-size:1.25em}\
.size{color:#666;margin:0 0 .6em}.thumbs{display:flex;flex-wrap:wrap;gap:6px}\
.thumbs figure{margin:0;width:120px}.thumbs img{width:120px;height:120px;object-fit:cover;\
border-radius:4px;display:block}.thumbs figcaption{font-size:.7em;color:#555;overflow:hidden;\
text-overflow:ellipsis;white-space:nowrap}.nouns{color:#444;font-size:.9em}\
table{border-collapse:collapse}td{padding:.1em .6em;font-size:.85em}";

/// The report page.
pub fn html(o: &Outcome<'_>, thumbs: &[Option<String>]) -> String {
    let m = members(o.result);
    let mut order: Vec<usize> = (0..m.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(m[c].len()));
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str(&format!(
        "<title>laic: {} clusters of {}</title><style>{STYLE}</style></head><body>\n",
        m.len(),
        escape(&o.args.images.display().to_string())
    ));
    s.push_str(&format!(
        "<h1>{} images of {} in {} clusters</h1>\n",
        o.images.paths.len(),
        escape(&o.args.images.display().to_string()),
        m.len()
    ));
    let selected: Vec<&str> = o
        .result
        .selected
        .iter()
        .map(|&i| o.nouns[i as usize].as_str())
        .collect();
    s.push_str(&format!(
        "<p class=\"nouns\">Model {}; {} of {} nouns selected by GradNorm: {}</p>\n",
        escape(&o.args.model.display().to_string()),
        selected.len(),
        o.nouns.len(),
        escape(&selected.join(", "))
    ));
    for c in order {
        let title = names(o.result, c).join(", ");
        let title = if title.is_empty() {
            format!("cluster {c}")
        } else {
            title
        };
        s.push_str(&format!(
            "<section class=\"cluster\" id=\"cluster-{c}\" data-cluster=\"{c}\"><h2>{}</h2>\
             <p class=\"size\">cluster {c} · {} images</p><div class=\"thumbs\">\n",
            escape(&title),
            m[c].len()
        ));
        for &i in &m[c] {
            let path = o.images.paths[i].display().to_string();
            let name = o.images.paths[i]
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match &thumbs[i] {
                Some(rel) => s.push_str(&format!(
                    "<figure title=\"{p}\"><img src=\"{rel}\" alt=\"{p}\"><figcaption>{n}</figcaption></figure>\n",
                    p = escape(&path),
                    n = escape(&name)
                )),
                None => s.push_str(&format!(
                    "<figure title=\"{p}\"><figcaption>{n} (no thumbnail)</figcaption></figure>\n",
                    p = escape(&path),
                    n = escape(&name)
                )),
            }
        }
        s.push_str("</div></section>\n");
    }
    if !o.images.skipped.is_empty() {
        s.push_str(&format!(
            "<section class=\"skipped\"><h2>Skipped files ({})</h2><table>\n",
            o.images.skipped.len()
        ));
        for (p, r) in &o.images.skipped {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>\n",
                escape(&p.display().to_string()),
                escape(r)
            ));
        }
        s.push_str("</table></section>\n");
    }
    s.push_str("</body></html>\n");
    s
}
