//! Checkpoint tests: bit-exact round trips of every format, and every kind of damage (truncation, flipped
//! bytes in data and header, missing fields, wrong version, wrong sizes, garbage, empty file) as a typed error;
//! atomic saves.

mod common;

use common::Raw;
use lowbit_core::checkpoint::{
    self, Checkpoint, FORMAT_VERSION, KEY_LAYERS, KEY_METADATA_CRC, KEY_PASSTHROUGH, KEY_VERSION, PassthroughData,
    PassthroughTensor, QuantizedLayer, metadata_crc32,
};
use lowbit_core::lut::NF4;
use lowbit_core::{
    BipolarMatrix, Granularity, IntAffineWeight, LowbitError, LutWeight, QuantizedWeight, WeightScheme, quantize,
};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A fresh empty directory under the target dir (no tempfile dependency), unique per test.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("checkpoint-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Gaussian-ish weights with a few outliers, seeded.
fn weights(n: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((n, k), |_| {
        let u: f32 = (0..4).map(|_| rng.random::<f32>()).sum::<f32>() - 2.0;
        if rng.random::<f32>() < 0.01 { u * 8.0 } else { u * 0.05 }
    })
}

/// One layer per format and option: every scheme family, odd shapes, act-order, bipolar offsets, custom LUT.
fn all_layers() -> Vec<QuantizedLayer> {
    let schemes = [
        ("int4.g128", "w4-int-g128", 5, 256),
        ("int4asym.g64", "w4-int-asym-g64", 3, 192),
        ("int8.pc", "w8-int-pc", 4, 96),
        ("int3asym.g32", "w3-int-asym-g32", 7, 96),
        ("int2.g128", "w2-int-g128", 2, 128),
        ("int5.g32", "w5-int-g32", 3, 160),
        ("int6asym.pc", "w6-int-asym-pc", 3, 40),
        ("int7.g64", "w7-int-g64", 2, 64),
        ("mixed3.g128", "w3-mixed-g128", 3, 384),
        ("mixed4.g32", "w4-mixed-g32", 5, 96),
        ("mixed4.g64", "w4-mixed-g64", 2, 320),
        ("nf4.g64", "w4-nf4-g64", 4, 128),
        ("nf4.pc", "w4-nf4-pc", 3, 72),
        ("bip2.g128", "w2-bipolar-g128", 3, 256),
        ("bip1.pc", "w1-bipolar-pc", 5, 40),
        ("bip3.g32", "w3-bipolar-g32", 4, 96),
        ("bip8.g64", "w8-bipolar-g64", 2, 64),
    ];
    let mut layers: Vec<QuantizedLayer> = schemes
        .iter()
        .enumerate()
        .map(|(i, (name, scheme, n, k))| {
            let scheme: WeightScheme = scheme.parse().unwrap();
            let w = weights(*n, *k, i as u64);
            QuantizedLayer { name: format!("model.{name}.weight"), weight: quantize(w.view(), &scheme).unwrap() }
        })
        .collect();
    // Act-order INT (g_idx present).
    let w = weights(4, 128, 100);
    let perm: Vec<usize> = (0..128).rev().collect();
    let act = IntAffineWeight::quantize_act_order(w.view(), 4, false, Granularity::Group(32), &perm).unwrap();
    assert!(act.g_idx.is_some());
    layers.push(QuantizedLayer { name: "act_order.weight".into(), weight: QuantizedWeight::Int(act) });
    // Bipolar with offsets (from unsigned INT affine).
    let int = IntAffineWeight::quantize(weights(3, 64, 101).view(), 3, false, Granularity::Group(32)).unwrap();
    let bip = BipolarMatrix::from_int_affine(&int).unwrap();
    assert!(bip.offsets.is_some());
    layers.push(QuantizedLayer { name: "bipolar_offsets.weight".into(), weight: QuantizedWeight::Bipolar(bip) });
    // A custom 3-bit table.
    let lut = [-1.0, -0.6, -0.3, -0.1, 0.0, 0.2, 0.5, 1.0];
    let lw = LutWeight::quantize(weights(3, 64, 102).view(), &lut, Granularity::Group(32)).unwrap();
    layers.push(QuantizedLayer { name: "lut3.weight".into(), weight: QuantizedWeight::Lut(lw) });
    layers
}

fn full_checkpoint() -> Checkpoint {
    let mut source = BTreeMap::new();
    source.insert("model".to_string(), "synthetic".to_string());
    source.insert("tool".to_string(), "lowbit tests".to_string());
    Checkpoint {
        layers: all_layers(),
        passthrough: vec![
            PassthroughTensor::f32("embeddings.weight", vec![6, 4], (0..24).map(|i| i as f32 * 0.5 - 3.0).collect()),
            PassthroughTensor::f16_from_f32("norm.weight", vec![4], &[1.0, 0.5, -0.25, 3.0e-5]),
            PassthroughTensor::f32("cube", vec![2, 1, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            PassthroughTensor::f32("scalar", vec![], vec![42.0]),
            PassthroughTensor::f32("empty", vec![0, 3], vec![]),
        ],
        source,
    }
}

/// A small checkpoint for the exhaustive corruption tests.
fn small_checkpoint() -> Checkpoint {
    let layers = all_layers()
        .into_iter()
        .filter(|l| {
            ["model.int4asym.g64.weight", "model.bip1.pc.weight", "model.mixed4.g32.weight"].contains(&l.name.as_str())
        })
        .collect();
    Checkpoint {
        layers,
        passthrough: vec![PassthroughTensor::f32("norm.weight", vec![3], vec![1.0, 2.0, 3.0])],
        source: BTreeMap::new(),
    }
}

#[test]
fn every_format_round_trips_bit_exactly() {
    let dir = scratch_dir("round_trip");
    let path = dir.join("all.lowbit.safetensors");
    let ckpt = full_checkpoint();
    checkpoint::save(&path, &ckpt).unwrap();
    let back = checkpoint::load(&path).unwrap();
    assert_eq!(back, ckpt, "every field equal");
    for (a, b) in ckpt.layers.iter().zip(&back.layers) {
        assert_eq!(a.name, b.name);
        let (da, db) = (a.weight.dequantize(), b.weight.dequantize());
        assert!(
            da.iter().zip(db.iter()).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{} dequantizes identically",
            a.name
        );
        assert_eq!(a.weight.scheme(), b.weight.scheme());
    }
    assert_eq!(back.passthrough_tensor("scalar").unwrap().data, PassthroughData::F32(vec![42.0]));
    assert_eq!(back.passthrough_tensor("norm.weight").unwrap().data.to_f32()[3], half::f16::from_f32(3.0e-5).to_f32());
    assert_eq!(back.source["model"], "synthetic");
    // Saving what was loaded gives the same bytes (deterministic output).
    let again = dir.join("again.lowbit.safetensors");
    checkpoint::save(&again, &back).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn empty_checkpoint_round_trips() {
    let dir = scratch_dir("empty_ckpt");
    let path = dir.join("empty.lowbit.safetensors");
    checkpoint::save(&path, &Checkpoint::new()).unwrap();
    assert_eq!(checkpoint::load(&path).unwrap(), Checkpoint::new());
    assert!(checkpoint::is_checkpoint(&path));
}

#[test]
fn inspect_describes_without_reading_data() {
    let dir = scratch_dir("inspect");
    let path = dir.join("x.lowbit.safetensors");
    let ckpt = full_checkpoint();
    checkpoint::save(&path, &ckpt).unwrap();
    let s = checkpoint::inspect(&path).unwrap();
    assert_eq!(s.version, FORMAT_VERSION);
    assert_eq!(s.layers.len(), ckpt.layers.len());
    assert_eq!(s.passthrough.len(), ckpt.passthrough.len());
    assert_eq!(s.file_bytes, std::fs::metadata(&path).unwrap().len());
    for (l, sl) in ckpt.layers.iter().zip(&s.layers) {
        assert_eq!(sl.name, l.name);
        assert_eq!(sl.scheme, l.weight.scheme().to_string());
        assert_eq!((sl.n, sl.k), l.weight.shape());
        assert_eq!(sl.bytes, l.weight.storage_bytes(), "{}: stored bytes = storage_bytes()", l.name);
    }
    assert_eq!(s.quantized_bytes(), ckpt.quantized_bytes());
    assert_eq!(s.passthrough_bytes(), 24 * 4 + 4 * 2 + 6 * 4 + 4);
    let int = s.layers.iter().find(|l| l.name == "model.int4.g128.weight").unwrap();
    let fields: Vec<&str> = int.tensors.iter().map(|t| t.field.as_str()).collect();
    assert_eq!(fields, vec!["codes", "scales"], "symmetric INT stores no zeros");
    let asym = s.layers.iter().find(|l| l.name == "model.int4asym.g64.weight").unwrap();
    assert!(!asym.symmetric && asym.tensors.iter().any(|t| t.field == "zeros"));

    // inspect does not checksum data: a flipped data byte is only caught by load.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    assert!(checkpoint::inspect(&path).is_ok());
    assert!(matches!(checkpoint::load(&path), Err(LowbitError::ChecksumMismatch { .. })));
}

fn header_len(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

fn assert_typed_load_error(path: &Path, what: &str) -> LowbitError {
    match checkpoint::load(path) {
        Ok(_) => panic!("{what}: damaged checkpoint loaded"),
        Err(
            e @ (LowbitError::CorruptCheckpoint { .. }
            | LowbitError::ChecksumMismatch { .. }
            | LowbitError::UnsupportedCheckpointVersion { .. }),
        ) => e,
        Err(other) => panic!("{what}: unexpected error variant {other:?}"),
    }
}

#[test]
fn truncated_files_are_corrupt() {
    let dir = scratch_dir("truncated");
    let path = dir.join("t.lowbit.safetensors");
    let good = small_checkpoint().to_bytes().unwrap();
    let hl = header_len(&good);
    // Every length through the header, then every 7th byte of the data section.
    let lens: Vec<usize> = (0..hl + 8).chain((hl + 8..good.len()).step_by(7)).collect();
    for len in lens {
        std::fs::write(&path, &good[..len]).unwrap();
        let e = assert_typed_load_error(&path, &format!("truncated to {len}"));
        assert!(matches!(e, LowbitError::CorruptCheckpoint { .. }), "truncated to {len}: {e:?}");
        assert!(checkpoint::inspect(&path).is_err(), "inspect of truncated file ({len} bytes)");
    }
}

#[test]
fn every_flipped_data_byte_fails_its_checksum() {
    let good = small_checkpoint().to_bytes().unwrap();
    let hl = header_len(&good);
    let label = Path::new("flip.lowbit.safetensors");
    for i in hl..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x01;
        match Checkpoint::from_bytes(&b, label) {
            Err(LowbitError::ChecksumMismatch { what, .. }) => assert!(what.starts_with("tensor '"), "{what}"),
            other => panic!("flipped data byte {i}: {other:?}"),
        }
    }
}

#[test]
fn every_flipped_header_byte_is_a_typed_error() {
    let good = small_checkpoint().to_bytes().unwrap();
    let hl = header_len(&good);
    let label = Path::new("flip.lowbit.safetensors");
    for i in 0..hl {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut b = good.clone();
            b[i] ^= flip;
            match Checkpoint::from_bytes(&b, label) {
                Err(
                    LowbitError::CorruptCheckpoint { .. }
                    | LowbitError::ChecksumMismatch { .. }
                    | LowbitError::UnsupportedCheckpointVersion { .. },
                ) => {}
                Ok(_) => panic!("flipping header byte {i} ({:?}) by {flip:#x} went unnoticed", good[i] as char),
                Err(other) => panic!("header byte {i}: unexpected variant {other:?}"),
            }
        }
    }
}

#[test]
fn garbage_empty_and_foreign_files_are_corrupt() {
    let dir = scratch_dir("garbage");
    let path = dir.join("g.lowbit.safetensors");
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(checkpoint::load(&path), Err(LowbitError::CorruptCheckpoint { .. })));
    assert!(matches!(checkpoint::inspect(&path), Err(LowbitError::CorruptCheckpoint { .. })));
    let mut rng = StdRng::seed_from_u64(7);
    for len in [1usize, 7, 8, 100, 5000] {
        let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        std::fs::write(&path, &junk).unwrap();
        assert!(matches!(checkpoint::load(&path), Err(LowbitError::CorruptCheckpoint { .. })), "{len} random bytes");
    }
    // A header length that claims the whole 64-bit range.
    std::fs::write(&path, [0xFFu8; 16]).unwrap();
    assert!(matches!(checkpoint::load(&path), Err(LowbitError::CorruptCheckpoint { .. })));
    // A valid safetensors file without lowbit metadata (a plain model).
    let plain = safetensors::serialize([("w", Raw::new(Dtype::F32, vec![2], vec![0; 8]))], None).unwrap();
    std::fs::write(&path, plain).unwrap();
    match checkpoint::load(&path) {
        Err(LowbitError::CorruptCheckpoint { reason, .. }) => {
            assert!(reason.contains("not a lowbit checkpoint"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!checkpoint::is_checkpoint(&path));
    // A missing file is an I/O error naming the path.
    match checkpoint::load(dir.join("missing.safetensors")) {
        Err(LowbitError::Io { path, .. }) => assert!(path.ends_with("missing.safetensors")),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------------------
// Well-formed files with inconsistent contents: rewritten with valid checksums so that only the inconsistency
// itself can be caught.

type Tensors = BTreeMap<String, Raw>;

/// Reads a checkpoint file, lets `edit` change its metadata (with `lowbit.layers` parsed as JSON) and
/// tensors, then re-seals it: tensor CRCs in the JSON and the metadata CRC are recomputed.
fn rewrite(
    bytes: &[u8],
    edit: impl FnOnce(&mut HashMap<String, String>, &mut serde_json::Value, &mut Tensors),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut layers: serde_json::Value = serde_json::from_str(&meta[KEY_LAYERS]).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, Raw::new(v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut meta, &mut layers, &mut tensors);
    // Re-seal: CRCs of whatever tensors are referenced, then the metadata CRC.
    for layer in layers.as_array_mut().unwrap() {
        for (_, t) in layer["tensors"].as_object_mut().unwrap() {
            if let Some(raw) = tensors.get(t["name"].as_str().unwrap()) {
                t["crc32"] = crc32fast::hash(&raw.bytes).into();
            }
        }
    }
    meta.insert(KEY_LAYERS.into(), layers.to_string());
    meta.insert(KEY_METADATA_CRC.into(), metadata_crc32(&meta).to_string());
    safetensors::serialize(tensors, Some(meta)).unwrap()
}

fn corrupt_reason(bytes: &[u8]) -> String {
    match Checkpoint::from_bytes(bytes, Path::new("x.lowbit.safetensors")) {
        Err(LowbitError::CorruptCheckpoint { reason, .. }) => reason,
        other => panic!("expected CorruptCheckpoint, got {other:?}"),
    }
}

fn layer_index(layers: &serde_json::Value, name: &str) -> usize {
    layers.as_array().unwrap().iter().position(|l| l["name"] == name).unwrap()
}

#[test]
fn rewrite_without_edits_still_loads() {
    let good = small_checkpoint().to_bytes().unwrap();
    let same = rewrite(&good, |_, _, _| {});
    assert_eq!(Checkpoint::from_bytes(&same, Path::new("x")).unwrap(), small_checkpoint());
}

#[test]
fn missing_field_is_corrupt() {
    let good = small_checkpoint().to_bytes().unwrap();
    // Tensor and its record both removed.
    let b = rewrite(&good, |_, layers, tensors| {
        let i = layer_index(layers, "model.int4asym.g64.weight");
        layers[i]["tensors"].as_object_mut().unwrap().remove("scales");
        tensors.remove("model.int4asym.g64.weight.scales");
    });
    let r = corrupt_reason(&b);
    assert!(r.contains("missing its 'scales'"), "{r}");
    // Only the tensor removed (record still there).
    let b = rewrite(&good, |_, _, tensors| {
        tensors.remove("model.mixed4.g32.weight.selectors");
    });
    assert!(corrupt_reason(&b).contains("missing from the file"));
    // Asymmetric INT without zeros.
    let b = rewrite(&good, |_, layers, tensors| {
        let i = layer_index(layers, "model.int4asym.g64.weight");
        layers[i]["tensors"].as_object_mut().unwrap().remove("zeros");
        tensors.remove("model.int4asym.g64.weight.zeros");
    });
    assert!(corrupt_reason(&b).contains("missing its 'zeros'"));
    // A metadata table removed.
    let b = rewrite(&good, |meta, _, _| {
        meta.remove(KEY_PASSTHROUGH);
    });
    assert!(corrupt_reason(&b).contains(KEY_PASSTHROUGH));
}

#[test]
fn wrong_version_is_unsupported() {
    let good = small_checkpoint().to_bytes().unwrap();
    for v in ["2", "0", "", "1.0"] {
        let b = rewrite(&good, |meta, _, _| {
            meta.insert(KEY_VERSION.into(), v.into());
        });
        match Checkpoint::from_bytes(&b, Path::new("x")) {
            Err(LowbitError::UnsupportedCheckpointVersion { found, supported, .. }) => {
                assert_eq!(found, v);
                assert_eq!(supported, "1");
            }
            other => panic!("version {v:?}: {other:?}"),
        }
    }
}

#[test]
fn wrong_element_counts_and_dtypes_are_corrupt() {
    let good = small_checkpoint().to_bytes().unwrap();
    let name = "model.int4asym.g64.weight";
    // codes with one word too few per row (file shape and record agree with each other, not with n, k, bits).
    let b = rewrite(&good, |_, layers, tensors| {
        let i = layer_index(layers, name);
        let codes = tensors.get_mut(&format!("{name}.codes")).unwrap();
        let (n, wpr) = (codes.shape[0], codes.shape[1]);
        codes.shape = vec![n, wpr - 1];
        codes.bytes.truncate(n * (wpr - 1) * 4);
        layers[i]["tensors"]["codes"]["shape"] = serde_json::json!([n, wpr - 1]);
    });
    let r = corrupt_reason(&b);
    assert!(r.contains("codes") && r.contains("expected"), "{r}");
    // Same element count, different shape.
    let b = rewrite(&good, |_, layers, tensors| {
        let i = layer_index(layers, name);
        let s = tensors.get_mut(&format!("{name}.scales")).unwrap();
        let count: usize = s.shape.iter().product();
        s.shape = vec![count];
        layers[i]["tensors"]["scales"]["shape"] = serde_json::json!([count]);
    });
    assert!(corrupt_reason(&b).contains("shape"));
    // Recorded n changed: every field is now the wrong size.
    let b = rewrite(&good, |_, layers, _| {
        let i = layer_index(layers, name);
        layers[i]["n"] = (layers[i]["n"].as_u64().unwrap() + 1).into();
    });
    assert!(corrupt_reason(&b).contains("expected"));
    // Wrong dtype: scales stored as F32 bytes of the same count.
    let b = rewrite(&good, |_, layers, tensors| {
        let i = layer_index(layers, name);
        let s = tensors.get_mut(&format!("{name}.scales")).unwrap();
        s.dtype = Dtype::F32;
        s.bytes = s
            .bytes
            .chunks_exact(2)
            .flat_map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes())
            .collect();
        layers[i]["tensors"]["scales"]["dtype"] = "F32".into();
    });
    assert!(corrupt_reason(&b).contains("dtype"));
    // Absurd records.
    for (key, value) in [
        ("bits", serde_json::json!(0)),
        ("bits", serde_json::json!(40)),
        ("granularity", serde_json::json!("g0")),
        ("granularity", serde_json::json!("g48")),
        ("k", serde_json::json!(100)),
        ("k", serde_json::json!(0)),
        ("format", serde_json::json!("float")),
        ("scheme", serde_json::json!("w4-int-g64")),
        ("n", serde_json::json!(u64::MAX)),
        ("k", serde_json::json!(-1)),
        ("extra", serde_json::json!(1)),
    ] {
        let b = rewrite(&good, |_, layers, _| {
            let i = layer_index(layers, name);
            layers[i][key] = value.clone();
        });
        let _ = corrupt_reason(&b);
    }
    // A stray tensor that the metadata does not describe.
    let b = rewrite(&good, |_, _, tensors| {
        tensors.insert("stray".into(), Raw::new(Dtype::U8, vec![1], vec![0]));
    });
    assert!(corrupt_reason(&b).contains("stray"));
}

#[test]
fn invalid_weights_with_valid_checksums_are_corrupt() {
    let good = small_checkpoint().to_bytes().unwrap();
    // A zero scale (validate() rejects it).
    let name = "model.int4asym.g64.weight";
    let b = rewrite(&good, |_, _, tensors| {
        let s = tensors.get_mut(&format!("{name}.scales")).unwrap();
        s.bytes[0] = 0;
        s.bytes[1] = 0;
    });
    assert!(corrupt_reason(&b).contains("invalid"));
    // Non-zero padding bits after the last code of a row (K = 96, 4 bits: rows end on a word boundary, so use
    // the mixed layer: K = 96, 4 bits is also aligned; the bipolar K = 40 checks plane padding).
    let b = rewrite(&good, |_, _, tensors| {
        let p = tensors.get_mut("model.bip1.pc.weight.planes").unwrap();
        p.bytes[7] |= 0x80; // word 1 of row 0 holds columns 32..39 in bits 0..7; bit 31 is padding
    });
    assert!(corrupt_reason(&b).contains("padding"));
}

#[test]
fn code_padding_bits_are_checked() {
    // 3-bit codes, K = 32: 96 bits = exactly 3 words; K = 64 with 3 bits = 192 bits = 6 words. Use 5 bits, K = 32:
    // 160 bits = 5 words, aligned. INT 3-bit per-channel with K = 40: 120 bits -> 4 words, 8 padding bits.
    let w = weights(2, 40, 9);
    let int = IntAffineWeight::quantize(w.view(), 3, true, Granularity::PerChannel).unwrap();
    let ckpt = Checkpoint {
        layers: vec![QuantizedLayer { name: "pad.weight".into(), weight: QuantizedWeight::Int(int) }],
        ..Default::default()
    };
    let good = ckpt.to_bytes().unwrap();
    assert_eq!(Checkpoint::from_bytes(&good, Path::new("x")).unwrap(), ckpt);
    let b = rewrite(&good, |_, _, tensors| {
        let c = tensors.get_mut("pad.weight.codes").unwrap();
        c.bytes[15] |= 0x80; // last word of row 0, bit 31
    });
    assert!(corrupt_reason(&b).contains("padding"));
}

// ------------------------------------------------------------------------------------------------------------

#[test]
fn failed_save_keeps_the_existing_checkpoint() {
    let dir = scratch_dir("atomic");
    let path = dir.join("model.lowbit.safetensors");
    let old = small_checkpoint();
    checkpoint::save(&path, &old).unwrap();
    let old_bytes = std::fs::read(&path).unwrap();
    let new = full_checkpoint();
    for fail_after in [0usize, 1, 100, 5000] {
        match checkpoint::save_with_injected_write_failure(&path, &new, fail_after) {
            Err(LowbitError::Io { .. }) => {}
            other => panic!("injected failure after {fail_after} bytes: {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), old_bytes, "old file intact after failing at {fail_after}");
        assert_eq!(checkpoint::load(&path).unwrap(), old);
    }
    // An invalid checkpoint is refused before anything is written.
    let mut dup = small_checkpoint();
    dup.layers.push(dup.layers[0].clone());
    assert!(matches!(checkpoint::save(&path, &dup), Err(LowbitError::InvalidValue { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), old_bytes);
    // No temporary files are left behind.
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["model.lowbit.safetensors".to_string()]);
    // A successful save replaces it.
    checkpoint::save(&path, &new).unwrap();
    assert_eq!(checkpoint::load(&path).unwrap(), new);
    // A save into a directory that does not exist is an I/O error.
    assert!(matches!(checkpoint::save(dir.join("no/such/dir/x.safetensors"), &new), Err(LowbitError::Io { .. })));
}

#[test]
fn validate_rejects_name_collisions_and_bad_passthrough() {
    let mut c = small_checkpoint();
    c.passthrough.push(PassthroughTensor::f32(format!("{}.codes", c.layers[0].name), vec![1], vec![0.0]));
    assert!(matches!(c.validate(), Err(LowbitError::InvalidValue { .. })));
    let mut c = small_checkpoint();
    c.passthrough.push(PassthroughTensor::f32("bad", vec![2, 2], vec![0.0; 3]));
    assert!(matches!(c.validate(), Err(LowbitError::ShapeMismatch { .. })));
    let mut c = small_checkpoint();
    c.layers[0].name = String::new();
    assert!(c.validate().is_err());
    let mut c = small_checkpoint();
    if let QuantizedWeight::Int(w) = &mut c.layers[0].weight {
        w.scales.pop();
    }
    assert!(c.to_bytes().is_err(), "an invalid weight is not serialized");
}

#[test]
fn nf4_layers_keep_the_nf4_table() {
    let c = full_checkpoint();
    let back = Checkpoint::from_bytes(&c.to_bytes().unwrap(), Path::new("x")).unwrap();
    match back.layer("model.nf4.g64.weight").unwrap() {
        QuantizedWeight::Lut(w) => assert_eq!(w.lut, NF4.to_vec()),
        other => panic!("{other:?}"),
    }
    assert_eq!(back.layer("model.nf4.g64.weight").unwrap().scheme().to_string(), "w4-nf4-g64");
}
