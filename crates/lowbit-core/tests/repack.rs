//! The tiled GEMM layout: every code is where `code_at` (written independently of the packer, from the
//! fragment-position formula) finds it, padding is zero, metadata is where the kernels read it, and bad
//! weights are refused.

use half::f16;
use lowbit_core::bipolar::BipolarMatrix;
use lowbit_core::lut::NF4;
use lowbit_core::repack::{TiledFormat, TiledWeight};
use lowbit_core::{Granularity, IntAffineWeight, LowbitError, LutWeight, MixedWeight, QuantizedWeight};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn weights(n: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((n, k), |_| rng.random_range(-1.0f32..1.0))
}

/// Codes of the plain weight in kernel column order.
fn plain_codes(w: &QuantizedWeight) -> (Vec<u8>, usize) {
    match w {
        QuantizedWeight::Int(q) => (q.unpacked_codes(), q.k),
        QuantizedWeight::Mixed(q) => (q.unpacked_codes(), q.k),
        QuantizedWeight::Lut(q) => (q.unpacked_codes(), q.k),
        QuantizedWeight::Bipolar(_) => unreachable!(),
    }
}

fn check_roundtrip(w: &QuantizedWeight, expect: TiledFormat) {
    let t = TiledWeight::from_weight(w).expect("repack");
    assert_eq!(t.format, expect);
    let (codes, k) = plain_codes(w);
    let n = codes.len() / k;
    assert_eq!(t.n_pad % 16, 0);
    assert_eq!(t.k_pad % (t.format.tiles_per_step() * 16), 0);
    assert!(t.k_pad >= k && t.k_pad - k < t.format.tiles_per_step() * 16);
    for r in 0..t.n_pad {
        for c in 0..t.k_pad {
            let col = t.perm.as_ref().map_or(c, |p| if c < k { p[c] as usize } else { c });
            let want = if r < n && c < k { codes[r * k + col] } else { 0 };
            assert_eq!(t.code_at(r, c), want, "{:?} n={n} k={k} at ({r}, {c})", t.format);
        }
    }
}

#[test]
fn int_codes_land_where_the_fragment_formula_says() {
    for bits in [2u32, 3, 4, 8] {
        for g in [Granularity::Group(32), Granularity::Group(128), Granularity::PerChannel] {
            for (n, k) in [(17, 128), (33, 384)] {
                let q =
                    IntAffineWeight::quantize(weights(n, k, bits as u64 + k as u64).view(), bits, false, g).unwrap();
                let expect = match bits {
                    2 => TiledFormat::Int2,
                    3 => TiledFormat::Int3,
                    4 => TiledFormat::Int4,
                    _ => TiledFormat::Int8,
                };
                check_roundtrip(&QuantizedWeight::Int(q), expect);
            }
        }
    }
}

#[test]
fn per_channel_with_odd_k_is_padded() {
    let q = IntAffineWeight::quantize(weights(5, 200, 3).view(), 4, true, Granularity::PerChannel).unwrap();
    let w = QuantizedWeight::Int(q);
    check_roundtrip(&w, TiledFormat::Int4);
    let t = TiledWeight::from_weight(&w).unwrap();
    assert_eq!((t.k_pad, t.group_len, t.groups()), (256, 256, 1));
}

#[test]
fn act_order_sorts_columns_by_group() {
    let (n, k, g) = (16, 256, 64);
    let mut perm: Vec<usize> = (0..k).collect();
    perm.shuffle(&mut StdRng::seed_from_u64(9));
    let q =
        IntAffineWeight::quantize_act_order(weights(n, k, 1).view(), 4, false, Granularity::Group(g), &perm).unwrap();
    let gi = q.g_idx.clone().unwrap();
    let w = QuantizedWeight::Int(q);
    let t = TiledWeight::from_weight(&w).unwrap();
    let p = t.perm.clone().expect("act-order keeps a permutation");
    for (j, &c) in p.iter().enumerate() {
        assert_eq!(gi[c as usize] as usize, j / g, "kernel column {j} (source {c}) is in the wrong group");
    }
    check_roundtrip(&w, TiledFormat::Int4);
}

#[test]
fn table_formats_roundtrip() {
    let m = MixedWeight::quantize(weights(20, 256, 5).view(), 4, 128).unwrap();
    check_roundtrip(&QuantizedWeight::Mixed(m), TiledFormat::Mix4);
    let m3 = MixedWeight::quantize(weights(20, 384, 6).view(), 3, 64).unwrap();
    check_roundtrip(&QuantizedWeight::Mixed(m3), TiledFormat::Mix3);
    // K not a multiple of the 128-column k-step: padding codes are zero in the spare-bit tiles too.
    let m3 = MixedWeight::quantize(weights(19, 320, 16).view(), 3, 32).unwrap();
    check_roundtrip(&QuantizedWeight::Mixed(m3), TiledFormat::Mix3);
    let lut3 = LutWeight::quantize(
        weights(18, 256, 9).view(),
        &[-1.0, -0.6, -0.3, -0.1, 0.1, 0.3, 0.6, 1.0],
        Granularity::Group(64),
    )
    .unwrap();
    check_roundtrip(&QuantizedWeight::Lut(lut3), TiledFormat::Lut3);
    let nf4 = LutWeight::quantize(weights(18, 192, 7).view(), &NF4, Granularity::Group(64)).unwrap();
    check_roundtrip(&QuantizedWeight::Lut(nf4), TiledFormat::Lut4);
    let lut2 =
        LutWeight::quantize(weights(18, 160, 8).view(), &[-1.0, -0.3, 0.2, 1.0], Granularity::Group(32)).unwrap();
    check_roundtrip(&QuantizedWeight::Lut(lut2), TiledFormat::Lut2);
}

#[test]
fn metadata_sits_at_strip_group_row() {
    let (n, k) = (40, 256);
    let q = IntAffineWeight::quantize(weights(n, k, 11).view(), 4, false, Granularity::Group(64)).unwrap();
    let t = TiledWeight::from_weight(&QuantizedWeight::Int(q.clone())).unwrap();
    let groups = t.groups();
    for r in 0..t.n_pad {
        for gi in 0..groups {
            let (s, rr) = (r / 16, r % 16);
            let i = ((s * groups + gi) * 8 + rr % 8) * 2;
            let half = if rr >= 8 { 1 } else { 0 };
            let scale = f16::from_bits((t.meta[i] >> (16 * half)) as u16);
            let zero = (t.meta[i + 1] >> (8 * half)) & 0xFF;
            if r < n {
                assert_eq!(scale, q.scales[r * 4 + gi]);
                assert_eq!(zero, q.zeros[r * 4 + gi] as u32);
            } else {
                assert_eq!((scale.to_bits(), zero), (0, 0), "padding rows carry zero metadata");
            }
        }
    }
}

#[test]
fn mixed_channel_scales() {
    let m = MixedWeight::quantize(weights(20, 128, 12).view(), 3, 32).unwrap();
    let t = TiledWeight::from_weight(&QuantizedWeight::Mixed(m.clone())).unwrap();
    assert_eq!(t.format, TiledFormat::Mix3);
    assert!(t.lut.is_empty(), "BitMoD FP3 decodes without tables (Mix3)");
    assert_eq!(t.channel_scales.len(), t.n_pad);
    assert_eq!(t.channel_scales[3], m.channel_scales[3].to_f32());
    assert_eq!(t.channel_scales[t.n_pad - 1], 0.0);
}

#[test]
fn unsupported_weights_are_typed_errors() {
    let b = BipolarMatrix::quantize(weights(4, 64, 1).view(), 2, Granularity::Group(32)).unwrap();
    assert!(matches!(TiledWeight::from_weight(&QuantizedWeight::Bipolar(b)), Err(LowbitError::Unsupported(_))));
    for bits in [5u32, 6, 7] {
        let q = IntAffineWeight::quantize(weights(4, 64, 2).view(), bits, true, Granularity::Group(32)).unwrap();
        assert!(matches!(
            TiledWeight::from_weight(&QuantizedWeight::Int(q)),
            Err(LowbitError::UnsupportedBits { bits: b, .. }) if b == bits
        ));
    }
    let mut q = IntAffineWeight::quantize(weights(4, 64, 2).view(), 4, true, Granularity::Group(32)).unwrap();
    q.scales.pop();
    assert!(matches!(TiledWeight::from_weight(&QuantizedWeight::Int(q)), Err(LowbitError::ShapeMismatch { .. })));
}

/// The kernel's Mix4 decoder (`kernels/include/lowbit/wo_decode.cuh`), emulated: the shifts and masks that place
/// each register's two codes at f16 bits 9..11 (magnitude) and 15 (sign) must find exactly the codes `code_at`
/// reads, and the f16 patch (relu(~p x 2^13 - 2) x SV + p) must give every BitMoD grid value times 2^-15.
#[test]
fn mix4_decoder_emulation_matches_the_grid() {
    use lowbit_core::bitmod::grid_value;
    let m = MixedWeight::quantize(weights(37, 384, 12).view(), 4, 128).unwrap();
    let t = TiledWeight::from_weight(&QuantizedWeight::Mixed(m.clone())).unwrap();
    assert_eq!(t.format, TiledFormat::Mix4);
    assert!(t.lut.is_empty(), "Mix4 needs no value tables");
    for r in 0..m.n {
        assert_eq!(t.channel_scales[r], m.channel_scales[r].to_f32() * 32768.0, "row {r}: channel scale x 2^15");
    }
    let ksteps = t.k_pad / 64;
    for s in 0..t.n_pad / 16 {
        for ks in 0..ksteps {
            for lane in 0..32 {
                for j in 0..4 {
                    let q = t.words[((s * ksteps + ks) * 32 + lane) * 4 + j];
                    let regs = [
                        q & 0x8E00_8E00,
                        (q << 9) & 0x8E00_8E00,
                        ((q << 6) & 0x0E00_0E00) | ((q << 8) & 0x8000_8000),
                        ((q >> 3) & 0x0E00_0E00) | ((q << 7) & 0x8000_8000),
                    ];
                    let (g, tt) = (lane / 4, lane % 4);
                    for (ri, &p) in regs.iter().enumerate() {
                        for h in 0..2 {
                            let e = 2 * ri + h; // fragment element a_e
                            let row = s * 16 + g + 8 * ((e >> 1) & 1);
                            let col = (ks * 4 + j) * 16 + 2 * tt + (e & 1) + 8 * (e >> 2);
                            let half = (p >> (16 * h)) & 0xFFFF;
                            let code = ((half >> 9) & 7) | (half >> 15) << 3;
                            assert_eq!(
                                code as u8,
                                t.code_at(row, col),
                                "strip {s} step {ks} lane {lane} tile {j} a{e}"
                            );
                        }
                    }
                }
            }
        }
    }
    // Every code under every selector: p, then the special-value patch in f16 arithmetic (each step is exact).
    for sel in 0..4u8 {
        let sv = f16::from_f32(f32::from(grid_value(4, sel, 8)) / 32768.0);
        for code in 0..16u8 {
            let p = f16::from_bits(u16::from(code & 7) << 9 | u16::from(code >> 3) << 15);
            let v = f16::from_bits(!p.to_bits() & 0x8E00);
            let ind = (v.to_f32() * 8192.0 - 2.0).max(0.0);
            let a = f16::from_f32(ind * sv.to_f32() + p.to_f32());
            assert_eq!(a.to_f32() * 32768.0, f32::from(grid_value(4, sel, code)), "selector {sel} code {code}");
        }
    }
}

/// PTX `prmt.b32` (default mode): byte `i` of the result is byte `c[4i+2..4i]` of `{b, a}`, or that byte's sign
/// replicated when bit `4i + 3` of `c` is set; only `c[15:0]` is read.
fn prmt(a: u32, b: u32, c: u32) -> u32 {
    let bytes = (u64::from(b) << 32 | u64::from(a)).to_le_bytes();
    (0..4).fold(0u32, |r, i| {
        let nib = (c >> (4 * i)) & 15;
        let v = bytes[(nib & 7) as usize];
        let v = if nib & 8 != 0 { if v & 0x80 != 0 { 0xFF } else { 0 } } else { v };
        r | u32::from(v) << (8 * i)
    })
}

/// The kernel's Mix3 decoder (`kernels/include/lowbit/wo_decode.cuh`, `Mix3`), emulated instruction by instruction
/// (selector words, table PRMTs, spreading PRMTs, per-group table words from the selector), must give every element's
/// BitMoD grid value in f16 and in bf16, read against the plain weight's codes and selectors (not the packer's).
#[test]
fn mix3_decoder_emulation_matches_the_grid() {
    use half::bf16;
    use lowbit_core::bitmod::grid_value;
    for (n, k, group) in [(37usize, 384usize, 128usize), (21, 320, 32)] {
        let m = MixedWeight::quantize(weights(n, k, 17 + k as u64).view(), 3, group).unwrap();
        let t = TiledWeight::from_weight(&QuantizedWeight::Mixed(m.clone())).unwrap();
        assert_eq!(t.format, TiledFormat::Mix3);
        assert!(t.lut.is_empty(), "Mix3 needs no value tables");
        for r in 0..m.n {
            assert_eq!(t.channel_scales[r], m.channel_scales[r].to_f32(), "row {r}: channel scale unchanged");
        }
        let codes = m.unpacked_codes();
        let ksteps = t.k_pad / 128;
        let ng = t.groups();
        for s in 0..t.n_pad / 16 {
            for ks in 0..ksteps {
                for lane in 0..32 {
                    let base = ((s * ksteps + ks) * 32 + lane) * 4;
                    let hbase = ((s * ksteps + ks) * 32 + lane) * 2;
                    let (w, h) = (&t.words[base..base + 4], &t.hi_words[hbase..hbase + 2]);
                    let (g, tt) = (lane / 4, lane % 4);
                    for j in 0..8 {
                        let sel = if j < 6 {
                            (if j < 4 { w[j] } else { h[j - 4] }) & 0x7777_7777
                        } else {
                            let (x0, x1, x2) = if j == 6 { (w[0], w[1], w[2]) } else { (w[3], h[0], h[1]) };
                            ((x0 >> 3) & 0x1111_1111) | ((x1 >> 2) & 0x2222_2222) | ((x2 >> 1) & 0x4444_4444)
                        };
                        let col0 = (ks * 8 + j) * 16;
                        let gi = col0 / t.group_len;
                        let aux = t.meta[((s * ng + gi) * 8 + g) * 2 + 1];
                        let (sg, sg8) = (aux & 3, (aux >> 8) & 3);
                        // f16: table words, then the four fragment registers.
                        let sv = |x: u32| 0x42 + (x & 2) * 2 + (x & 1) * 0x80;
                        let (tg, tg8) = (
                            prmt(0x4440_3C00, 0xC4C0_BC00 | sv(sg), sel),
                            prmt(0x4440_3C00, 0xC4C0_BC00 | sv(sg8), sel >> 16),
                        );
                        let f = [prmt(tg, 0, 0x1404), prmt(tg8, 0, 0x1404), prmt(tg, 0, 0x3424), prmt(tg8, 0, 0x3424)];
                        // bf16: high- and low-byte tables.
                        let (svh, svl) = (|x: u32| 0x40 + (x & 1) * 0x80, |x: u32| 0x40 + (x & 2) * 0x40);
                        let (hg, hg8) = (
                            prmt(0x4040_3F00, 0xC0C0_BF00 | svh(sg), sel),
                            prmt(0x4040_3F00, 0xC0C0_BF00 | svh(sg8), sel >> 16),
                        );
                        let (lg, lg8) = (
                            prmt(0x8000_8000, 0x8000_8000 | svl(sg), sel),
                            prmt(0x8000_8000, 0x8000_8000 | svl(sg8), sel >> 16),
                        );
                        let b = [
                            prmt(lg, hg, 0x5140),
                            prmt(lg8, hg8, 0x5140),
                            prmt(lg, hg, 0x7362),
                            prmt(lg8, hg8, 0x7362),
                        ];
                        for reg in 0..4 {
                            for half in 0..2 {
                                let e = 2 * reg + half; // fragment element a_e
                                let row = s * 16 + g + 8 * ((e >> 1) & 1);
                                let col = col0 + 2 * tt + (e & 1) + 8 * (e >> 2);
                                let want = if row < n && col < k {
                                    f32::from(grid_value(3, m.selector(row, col / group), codes[row * k + col]))
                                } else {
                                    0.0
                                };
                                let vf = f16::from_bits((f[reg] >> (16 * half)) as u16).to_f32();
                                let vb = bf16::from_bits((b[reg] >> (16 * half)) as u16).to_f32();
                                assert_eq!(vf, want, "f16 strip {s} step {ks} lane {lane} tile {j} a{e}");
                                assert_eq!(vb, want, "bf16 strip {s} step {ks} lane {lane} tile {j} a{e}");
                            }
                        }
                    }
                }
            }
        }
    }
}
