//! End-to-end tests of the `laic` command: `cluster` on generated images with the small random
//! CLIP fixture (outputs, skipped files, errors, the noun cache), `embed` shapes, and the demo's
//! metrics against the reference.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn laic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_laic"))
}

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip/hf")
}

/// A fresh empty folder under the target dir (no tempfile dependency).
fn temp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// xorshift noise, deterministic.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 56) as u8
    }
}

/// 36 images in three colour groups (red / green / blue with noise; PNG and JPEG, varied sizes),
/// plus a corrupt JPEG and a text file. Returns the good image paths.
fn make_images(dir: &Path) -> Vec<PathBuf> {
    let mut noise = Noise(0x9E3779B97F4A7C15);
    let mut good = Vec::new();
    let colours = [
        ("red", [220u8, 30, 30]),
        ("green", [30, 200, 40]),
        ("blue", [30, 40, 220]),
    ];
    for (g, (name, rgb)) in colours.iter().enumerate() {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..12 {
            let (w, h) = (40 + 4 * i as u32, 36 + 3 * g as u32);
            let img = image::RgbImage::from_fn(w, h, |_, _| {
                let mut px = [0u8; 3];
                for c in 0..3 {
                    px[c] = rgb[c].saturating_add(noise.next() / 8).saturating_sub(16);
                }
                image::Rgb(px)
            });
            let path = if i % 2 == 0 {
                sub.join(format!("{name}-{i:02}.png"))
            } else {
                sub.join(format!("{name}-{i:02}.JPG"))
            };
            let fmt = if i % 2 == 0 {
                image::ImageFormat::Png
            } else {
                image::ImageFormat::Jpeg
            };
            img.save_with_format(&path, fmt).unwrap();
            good.push(path);
        }
    }
    std::fs::write(dir.join("broken.jpg"), b"this is not a jpeg").unwrap();
    std::fs::write(dir.join("notes.txt"), b"not an image").unwrap();
    good.sort();
    good
}

fn nouns_file(dir: &Path) -> PathBuf {
    let words = "cat dog tomato apple sky ocean grass tree leaf car truck bicycle house \
        window door chair table lamp book pen cup bottle flower rose tulip strawberry cherry \
        lemon banana orange lime frog parrot whale fish river lake cloud fire brick";
    let p = dir.join("nouns.txt");
    std::fs::write(
        &p,
        words
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    p
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn cluster_cmd(images: &Path, out: &Path, cache: &Path, nouns: &Path, k: &str) -> Command {
    cluster_with(&model(), images, out, cache, nouns, k)
}

fn cluster_with(
    model: &Path,
    images: &Path,
    out: &Path,
    cache: &Path,
    nouns: &Path,
    k: &str,
) -> Command {
    let mut c = laic();
    c.args(["cluster", "--model"])
        .arg(model)
        .arg("--images")
        .arg(images)
        .args(["--clusters", k, "--nouns"])
        .arg(nouns)
        .arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .args(["--backend", "cpu", "--threads", "2"]);
    c
}

/// Parses the CSV written by `cluster` (fields without quotes in this test's data).
fn read_csv(path: &Path) -> Vec<(String, usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("path,cluster,names"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, ',').collect();
            (f[0].to_string(), f[1].parse().unwrap(), f[2].to_string())
        })
        .collect()
}

#[test]
fn cluster_writes_all_outputs_skips_bad_files_and_reuses_the_noun_cache() {
    let root = temp_dir("cluster");
    let images = root.join("photos");
    let good = make_images(&images);
    let nouns = nouns_file(&root);
    let cache = root.join("cache");
    let out = root.join("out");

    let o = run(&mut cluster_cmd(&images, &out, &cache, &nouns, "3"));
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    let broken = images.join("broken.jpg");
    assert!(
        stderr.contains(&format!("skipping {}:", broken.display())),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("skipping {}:", images.join("notes.txt").display())));
    assert!(stderr.contains("cached noun embeddings in"), "{stderr}");
    assert!(!stderr.contains("using cached"));

    // CSV: every good image exactly once, nothing else; three clusters used.
    let rows = read_csv(&out.join("clusters.csv"));
    let mut paths: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    paths.sort();
    let want: Vec<String> = good.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(paths, want);
    assert!(rows.iter().all(|r| r.1 < 3 && !r.2.is_empty()));

    // JSON: clusters partition the images, sizes agree, names and selected nouns are strings.
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("clusters.json")).unwrap()).unwrap();
    let clusters = j["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 3);
    let mut members = Vec::new();
    for c in clusters {
        let m = c["members"].as_array().unwrap();
        assert_eq!(c["size"].as_u64().unwrap() as usize, m.len());
        assert!(!m.is_empty());
        assert_eq!(c["names"].as_array().unwrap().len(), 3);
        members.extend(m.iter().map(|v| v.as_str().unwrap().to_string()));
    }
    members.sort();
    assert_eq!(members, want);
    let selected = j["selected_nouns"].as_array().unwrap();
    assert!(!selected.is_empty());
    assert!(selected.iter().all(|s| s["noun"].is_string()));
    assert_eq!(j["options"]["clusters"], 3);
    assert_eq!(j["options"]["templates"].as_array().unwrap().len(), 7);
    assert_eq!(j["options"]["decode"], "full");
    assert_eq!(j["options"]["exif_orientation"], false);
    let skipped: Vec<&str> = j["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 2);

    // The colour groups are separated (random CLIP still sees mean colour): each cluster is
    // one colour.
    let mut by_cluster: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (p, c, _) in &rows {
        let colour = Path::new(p)
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        by_cluster.entry(*c).or_default().push(colour);
    }
    for (c, colours) in &by_cluster {
        assert!(
            colours.iter().all(|x| x == &colours[0]),
            "cluster {c} mixes {colours:?}"
        );
    }

    // HTML: one section per cluster, one thumbnail per image, all thumbnails on disk.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<section class=\"cluster\"").count(), 3);
    let srcs: Vec<&str> = html
        .split("<img src=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(srcs.len(), good.len());
    for s in &srcs {
        assert!(s.starts_with("thumbs/"));
        let img = image::open(out.join(s)).unwrap();
        assert!(img.width() <= 160 && img.height() <= 160);
    }
    assert!(!html.contains("http://") && !html.contains("https://"));

    // Second run: the cache is reused, same clusters.
    let out2 = root.join("out2");
    let o = run(&mut cluster_cmd(&images, &out2, &cache, &nouns, "3"));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("using cached noun embeddings"));
    assert_eq!(read_csv(&out2.join("clusters.csv")), rows);

    // A different template set does not match the cache.
    let out3 = root.join("out3");
    let o = run(cluster_cmd(&images, &out3, &cache, &nouns, "3").args(["--templates", "1"]));
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("using cached"), "{stderr}");
    assert!(stderr.contains("cached noun embeddings in"));

    // A different model file (the same fixture stored as f16: same shapes, other bytes)
    // does not match.
    let out4 = root.join("out4");
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip/hf-f16");
    let o = run(&mut cluster_with(
        &other, &images, &out4, &cache, &nouns, "3",
    ));
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("using cached"), "{stderr}");
    assert!(stderr.contains("cached noun embeddings in"));
}

#[test]
fn embed_nouns_writes_a_cache_that_cluster_reuses() {
    let root = temp_dir("embed-nouns");
    let images = root.join("photos");
    make_images(&images);
    let nouns = nouns_file(&root);
    let cache = root.join("cache");
    let o = run(laic()
        .args(["embed-nouns", "--model"])
        .arg(model())
        .arg("--nouns")
        .arg(&nouns)
        .args(["--templates", "1", "--out"])
        .arg(cache.join("mine.safetensors")));
    assert!(o.status.success());
    let o = run(
        cluster_cmd(&images, &root.join("out"), &cache, &nouns, "2").args([
            "--templates",
            "1",
            "--json",
        ]),
    );
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "using cached noun embeddings {}",
            cache.join("mine.safetensors").display()
        )),
        "{stderr}"
    );
    // --json prints clusters.json's object on stdout.
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["clusters"].as_array().unwrap().len(), 2);
    assert_eq!(j["noun_cache"]["reused"], true);
}

/// One line on stderr, starting "laic: error:", exit code 1.
fn assert_error(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("laic: error:"), "{stderr}");
    assert!(lines[0].contains(needle), "{stderr}");
}

#[test]
fn cluster_errors_are_one_line_and_exit_1() {
    let root = temp_dir("errors");
    let nouns = nouns_file(&root);
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(&mut cluster_cmd(
        &empty,
        &root.join("o1"),
        &root.join("c"),
        &nouns,
        "2",
    ));
    assert_error(&o, "no image files");

    let images = root.join("photos");
    let good = make_images(&images);
    let missing = Path::new("/nonexistent/clip");
    let o = run(&mut cluster_with(
        missing,
        &images,
        &root.join("o2"),
        &root.join("c"),
        &nouns,
        "2",
    ));
    assert_error(&o, "/nonexistent/clip");

    // 36 good images and one corrupt .jpg: K = 38 is more than the image files.
    let k = (good.len() + 2).to_string();
    let o = run(&mut cluster_cmd(
        &images,
        &root.join("o3"),
        &root.join("c"),
        &nouns,
        &k,
    ));
    assert_error(&o, &format!("--clusters {k}"));
    // 36 good images plus one corrupt .jpg: K = 37 passes the file count but not the good count.
    let o = run(&mut cluster_cmd(
        &images,
        &root.join("o4"),
        &root.join("c"),
        &nouns,
        "37",
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("laic: error: invalid argument: --clusters 37 is more than the 36 images")
    );

    let o = run(laic().args(["cluster", "--images"]).arg(&images));
    assert_eq!(o.status.code(), Some(2));
}

fn read_header(path: &Path) -> Value {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    assert_eq!(
        b.len(),
        8 + n + {
            let h: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
            let s = h["embeddings"]["shape"].as_array().unwrap();
            (s[0].as_u64().unwrap() * s[1].as_u64().unwrap() * 4) as usize
        }
    );
    serde_json::from_slice(&b[8..8 + n]).unwrap()
}

fn load(path: &Path) -> laic::Embeddings {
    laic::data::load_matrix(path, "embeddings").unwrap()
}

#[test]
fn embed_writes_normalised_rows_for_texts_and_images() {
    let root = temp_dir("embed");
    let texts = root.join("t.txt");
    std::fs::write(&texts, "a photo of a cat.\n\nthird line\r\nfourth\n").unwrap();
    let out = root.join("t.safetensors");
    let o = run(laic()
        .args(["embed", "--model"])
        .arg(model())
        .arg("--texts")
        .arg(&texts)
        .arg("--out")
        .arg(&out));
    assert!(o.status.success());
    let h = read_header(&out);
    let d = h["embeddings"]["shape"][1].as_u64().unwrap() as usize;
    assert_eq!(h["embeddings"]["shape"][0], 4);
    assert_eq!(h["embeddings"]["dtype"], "F32");
    let inputs: Vec<String> =
        serde_json::from_str(h["__metadata__"]["inputs"].as_str().unwrap()).unwrap();
    assert_eq!(inputs, ["a photo of a cat.", "", "third line", "fourth"]);
    let e = load(&out);
    for r in e.values.chunks(d) {
        let n: f32 = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4);
    }

    let images = root.join("photos");
    let good = make_images(&images);
    std::fs::remove_file(images.join("broken.jpg")).unwrap();
    let single = root.join("single.png");
    std::fs::copy(&good[5], &single).unwrap();
    let out = root.join("i.safetensors");
    let o = run(laic()
        .args(["embed", "--model"])
        .arg(model())
        .arg("--images")
        .arg(&single)
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .arg("--json"));
    assert!(o.status.success());
    let h = read_header(&out);
    assert_eq!(
        h["embeddings"]["shape"][0].as_u64().unwrap() as usize,
        good.len() + 1
    );
    assert_eq!(h["embeddings"]["shape"][1].as_u64().unwrap() as usize, d);
    let inputs: Vec<String> =
        serde_json::from_str(h["__metadata__"]["inputs"].as_str().unwrap()).unwrap();
    let mut want = vec![single.display().to_string()];
    want.extend(good.iter().map(|p| p.display().to_string()));
    assert_eq!(inputs, want);
    let e = load(&out);
    // The copy of good[5] embeds like good[5].
    let diff: f32 = e.values[..d]
        .iter()
        .zip(&e.values[6 * d..7 * d])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-5);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["rows"].as_u64().unwrap() as usize, good.len() + 1);
}

#[test]
fn embed_decodes_large_jpegs_as_drafts_when_asked() {
    let root = temp_dir("embed-draft");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip/preprocess");
    // 1803×2011 (drafted at 1/8) and 403×301 (too small to draft).
    let files = [dir.join("draft8.jpg"), dir.join("landscape.jpg")];
    let embed = |decode: &str| {
        let out = root.join(format!("{decode}.safetensors"));
        let o = run(laic()
            .args(["embed", "--model"])
            .arg(model())
            .arg("--images")
            .args(&files)
            .args(["--decode", decode, "--threads", "2", "--out"])
            .arg(&out));
        assert!(o.status.success());
        load(&out).values
    };
    let (full, draft) = (embed("full"), embed("draft"));
    let ctx = laic::Context::cpu();
    let m = laic::clip::ClipModel::load(&ctx, &model()).unwrap();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let opts = laic::clip::ImageFileOptions {
        decode: laic::clip::ImageDecode::Draft,
        ..Default::default()
    };
    let want = m
        .encode_image_files_with(&ctx, &refs, &opts, laic::Progress::none())
        .unwrap();
    assert_eq!(draft, want);
    let d = full.len() / 2;
    assert_ne!(full[..d], draft[..d]);
    assert_eq!(full[d..], draft[d..]);
    let o = run(laic()
        .args(["embed", "--model"])
        .arg(model())
        .arg("--images")
        .args(&files)
        .args(["--decode", "fast", "--out"])
        .arg(root.join("x.safetensors")));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--decode"));
}

#[test]
fn embed_turns_jpegs_upright_by_exif_when_asked() {
    let root = temp_dir("embed-exif");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip/preprocess");
    // orient6.jpg is stored sideways (EXIF: turn 90° clockwise); orient1.jpg upright.
    let files = [dir.join("orient6.jpg"), dir.join("orient1.jpg")];
    let embed = |extra: &[&str], name: &str| {
        let out = root.join(name);
        let o = run(laic()
            .args(["embed", "--model"])
            .arg(model())
            .arg("--images")
            .args(&files)
            .args(extra)
            .args(["--threads", "2", "--out"])
            .arg(&out));
        assert!(o.status.success());
        load(&out).values
    };
    let (plain, upright) = (
        embed(&[], "plain.safetensors"),
        embed(&["--exif-orientation"], "upright.safetensors"),
    );
    let d = plain.len() / 2;
    // Stored pixels are the same in both files: without the flag both embed alike.
    assert_eq!(plain[..d], plain[d..]);
    assert_ne!(upright[..d], plain[..d]);
    assert_eq!(upright[d..], plain[d..]);
}

#[test]
fn demo_json_matches_the_reference_within_tolerance() {
    let o = run(laic().args(["demo", "--json"]));
    assert!(o.status.success());
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    // Reference NMI (data/README.md, numpy/scikit-learn): none 67.6, TAC / GradNorm from
    // laic::eval::reference.
    for r in j["results"].as_array().unwrap() {
        let filter = match r["filter"].as_str().unwrap() {
            "none" => laic::Filter::None,
            "tac" => laic::Filter::Tac,
            "gradnorm" => laic::Filter::GradNorm,
            f => panic!("filter {f}"),
        };
        let want = laic::eval::reference("oxford_pets", filter).unwrap().nmi;
        let tol = if filter == laic::Filter::None {
            0.04
        } else {
            0.02
        };
        let got = r["nmi"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= tol,
            "{filter:?}: NMI {got} vs {want} ± {tol}"
        );
    }
    assert_eq!(j["results"].as_array().unwrap().len(), 3);
    let clusters = j["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 37);
    assert!(
        clusters
            .iter()
            .all(|c| c["names"].as_array().unwrap().len() == 3)
    );
    let total: u64 = clusters.iter().map(|c| c["size"].as_u64().unwrap()).sum();
    assert_eq!(total, 3669);
}

/// The chromium binary, if any (`LAIC_REQUIRE_CHROMIUM=1` turns its absence into a failure).
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var_os("LAIC_REQUIRE_CHROMIUM").is_none(),
            "LAIC_REQUIRE_CHROMIUM is set but no chromium is on PATH"
        );
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium)");
    }
    found
}

#[test]
fn report_html_loads_every_thumbnail_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let root = temp_dir("report");
    let images = root.join("photos");
    let good = make_images(&images);
    let nouns = nouns_file(&root);
    let out = root.join("out");
    let o = run(&mut cluster_cmd(
        &images,
        &out,
        &root.join("cache"),
        &nouns,
        "3",
    ));
    assert!(o.status.success());
    // A copy of the report with a check that runs after load and writes its verdict into
    // the DOM, which chromium then dumps.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let check = r#"<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const ids = [...document.querySelectorAll('section.cluster')].map(s => s.id).join(' ');
  const p = document.createElement('pre'); p.id = 'laic-check';
  p.textContent = `LAIC-CHECK images=${imgs.length} loaded=${ok} sections=${ids} END`;
  document.body.appendChild(p);
});</script></body>"#;
    std::fs::write(out.join("check.html"), html.replace("</body>", check)).unwrap();
    let profile = root.join("chromium-profile");
    let o = run(Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", out.join("check.html").display())));
    assert!(o.status.success());
    let dom = String::from_utf8_lossy(&o.stdout);
    let line = dom
        .split("<pre id=\"laic-check\">LAIC-CHECK ")
        .nth(1)
        .and_then(|s| s.split(" END").next())
        .unwrap_or_else(|| panic!("no check marker in the dumped DOM:\n{dom}"));
    let n = good.len();
    assert!(
        line.starts_with(&format!("images={n} loaded={n} ")),
        "{line}"
    );
    let mut ids: Vec<&str> = line.split("sections=").nth(1).unwrap().split(' ').collect();
    ids.sort();
    assert_eq!(ids, ["cluster-0", "cluster-1", "cluster-2"]);
}
