//! Scheme names (`WeightScheme`), `bits_per_weight` and the `quantize` dispatcher.

mod common;

use common::*;
use lowbit_core::{Granularity, LowbitError, QuantizedWeight, SchemeKind, WeightScheme, quantize};

/// Every valid (kind, bits, granularity) with its canonical string, built independently of `Display`.
fn all_valid() -> Vec<(String, WeightScheme)> {
    let grans = [
        ("g32", Granularity::Group(32)),
        ("g64", Granularity::Group(64)),
        ("g128", Granularity::Group(128)),
        ("pc", Granularity::PerChannel),
    ];
    let mut out = Vec::new();
    for (gs, gran) in grans {
        for bits in 2..=8 {
            out.push((
                format!("w{bits}-int-{gs}"),
                WeightScheme { kind: SchemeKind::Int { symmetric: true }, bits, granularity: gran },
            ));
            out.push((
                format!("w{bits}-int-asym-{gs}"),
                WeightScheme { kind: SchemeKind::Int { symmetric: false }, bits, granularity: gran },
            ));
        }
        for bits in 1..=8 {
            out.push((
                format!("w{bits}-bipolar-{gs}"),
                WeightScheme { kind: SchemeKind::Bipolar, bits, granularity: gran },
            ));
            out.push((format!("w{bits}-lut-{gs}"), WeightScheme { kind: SchemeKind::Lut, bits, granularity: gran }));
        }
        out.push((format!("w4-nf4-{gs}"), WeightScheme { kind: SchemeKind::Nf4, bits: 4, granularity: gran }));
        if gs != "pc" {
            for bits in [3, 4] {
                out.push((
                    format!("w{bits}-mixed-{gs}"),
                    WeightScheme { kind: SchemeKind::Mixed, bits, granularity: gran },
                ));
            }
        }
    }
    out
}

#[test]
fn every_valid_scheme_parses_and_round_trips_through_display() {
    let all = all_valid();
    assert_eq!(all.len(), 56 + 32 + 32 + 4 + 6);
    for (s, want) in &all {
        let parsed: WeightScheme = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(&parsed, want, "{s}");
        assert_eq!(&parsed.to_string(), s, "Display of {s}");
        assert_eq!(parsed.to_string().parse::<WeightScheme>().unwrap(), parsed);
        parsed.validate().unwrap();
    }
}

#[test]
fn accepted_aliases_and_defaults() {
    let cases = [
        ("W4-INT-G128", "w4-int-g128"),
        ("  w4-int-g128 ", "w4-int-g128"),
        ("w4a16-int-g128", "w4-int-g128"), // bench-style activation tag ignored
        ("w4-int", "w4-int-g128"),         // default group 128
        ("w4-int-sym-g64", "w4-int-g64"),
        ("w3-bitmod-g128", "w3-mixed-g128"),
        ("w8-int-perchannel", "w8-int-pc"),
        ("w2-bipolar", "w2-bipolar-g128"),
        ("w4a8-int-asym-g64", "w4-int-asym-g64"),
        ("w04-int-g0128", "w4-int-g128"), // leading zeros are still plain digits
    ];
    for (alias, canon) in cases {
        let a: WeightScheme = alias.parse().unwrap_or_else(|e| panic!("{alias}: {e}"));
        assert_eq!(a.to_string(), canon, "{alias}");
    }
}

#[test]
fn invalid_schemes_are_typed_errors() {
    let bad = [
        // from the brief
        "w9-int-g128",
        "w4-int-g100",
        "w4-mixed-pc",
        "w5-nf4",
        "x4-int",
        "w4-foo",
        "w4-bipolar-asym",
        "w0-bipolar",
        // more
        "",
        "w",
        "w4",
        "wx-int",
        "w-int-g128",
        "w1-int-g128",
        "w0-int",
        "w4-int-g",
        "w4-int-gx",
        "w4-int-g256",
        "w4-int-g16",
        "w4-int-g0",
        "w4-int-foo",
        "w2-mixed-g128",
        "w5-mixed-g128",
        "w4-mixed-g16",
        "w4-nf4-asym",
        "w3-nf4-g64",
        "w9-bipolar",
        "w9-lut-g32",
        "w0-lut",
        "w4-mixed-asym",
        "w4294967296-int",
        "4-int-g128",
        "w4-int-",
        "w4--int",
        // ambiguous or malformed parts that used to be silently accepted
        "w4-int-g128-pc", // two group sizes (was read as per-channel)
        "w4-int-pc-g64",
        "w4-int-g32-g64",
        "w4-int-asym-sym", // contradictory symmetry (was read as asym)
        "w4-int-sym-asym",
        "w4-int-asym-asym",
        "w4abc-int", // activation tag must be a<digits> (was read as w4)
        "w4a-int",
        "w4a16a8-int",
        "w+4-int", // sign accepted by str::parse
        "w4-int-g+128",
    ];
    for s in bad {
        match s.parse::<WeightScheme>() {
            Err(LowbitError::InvalidScheme { scheme, reason }) => {
                assert_eq!(scheme, s, "the error names the input");
                assert!(!reason.is_empty());
            }
            other => panic!("{s:?}: expected InvalidScheme, got {other:?}"),
        }
    }
}

#[test]
fn validate_rejects_bad_hand_built_schemes() {
    let bad = [
        WeightScheme { kind: SchemeKind::Int { symmetric: true }, bits: 1, granularity: Granularity::Group(128) },
        WeightScheme { kind: SchemeKind::Int { symmetric: false }, bits: 9, granularity: Granularity::Group(128) },
        WeightScheme { kind: SchemeKind::Bipolar, bits: 0, granularity: Granularity::PerChannel },
        WeightScheme { kind: SchemeKind::Mixed, bits: 4, granularity: Granularity::PerChannel },
        WeightScheme { kind: SchemeKind::Mixed, bits: 5, granularity: Granularity::Group(128) },
        WeightScheme { kind: SchemeKind::Nf4, bits: 3, granularity: Granularity::Group(64) },
        WeightScheme { kind: SchemeKind::Lut, bits: 9, granularity: Granularity::Group(64) },
        WeightScheme { kind: SchemeKind::Int { symmetric: true }, bits: 4, granularity: Granularity::Group(96) },
    ];
    for s in bad {
        assert!(matches!(s.validate(), Err(LowbitError::InvalidScheme { .. })), "{s:?}");
    }
}

#[test]
fn bits_per_weight_hand_computed() {
    let cases: [(&str, usize, f64); 9] = [
        ("w4-int-g128", 4096, 4.0 + 16.0 / 128.0),                   // 4.125: f16 scale
        ("w4-int-asym-g128", 4096, 4.0 + 24.0 / 128.0),              // 4.1875: f16 scale + u8 zero
        ("w8-int-g32", 4096, 8.5),                                   // 8 + 16/32
        ("w4-int-pc", 4096, 4.0 + 16.0 / 4096.0),                    // one scale per row
        ("w3-mixed-g128", 4096, 3.0 + 10.0 / 128.0 + 16.0 / 4096.0), // u8 q_g + 2-bit selector, f16 Δ_ch per row
        ("w4-mixed-g32", 1024, 4.0 + 10.0 / 32.0 + 16.0 / 1024.0),
        ("w2-bipolar-g128", 4096, 2.25), // f32 scale per group
        ("w1-bipolar-pc", 2048, 1.0 + 32.0 / 2048.0),
        ("w4-nf4-g64", 4096, 4.25), // f16 absmax per group
    ];
    for (s, k, want) in cases {
        let scheme: WeightScheme = s.parse().unwrap();
        assert_eq!(scheme.bits_per_weight(k), want, "{s}");
    }
}

#[test]
fn bits_per_weight_agrees_with_storage_bytes() {
    // With K·b a multiple of 32, n_groups a multiple of 4 and no act-order, the two accountings are identical
    // (LUTs additionally store their table once).
    let (n, k) = (8, 512);
    let w = gaussian_matrix(&mut rng(1), n, k, 0.1);
    for (s, _) in all_valid() {
        let scheme: WeightScheme = s.parse().unwrap();
        if scheme.kind == SchemeKind::Lut {
            continue;
        }
        let q = quantize(w.view(), &scheme).unwrap_or_else(|e| panic!("{s}: {e}"));
        let from_bpw = scheme.bits_per_weight(k) * (n * k) as f64 / 8.0;
        let extra = if scheme.kind == SchemeKind::Nf4 { 16 * 4 } else { 0 };
        assert_eq!(from_bpw, (q.storage_bytes() - extra) as f64, "{s}");
    }
}

#[test]
fn quantize_dispatches_to_the_named_format() {
    let w = gaussian_matrix(&mut rng(2), 4, 256, 0.1);
    for (s, scheme) in all_valid() {
        let r = quantize(w.view(), &scheme);
        if scheme.kind == SchemeKind::Lut {
            // A custom LUT needs its table: not constructible from the name alone.
            assert!(matches!(r, Err(LowbitError::InvalidScheme { .. })), "{s}");
            continue;
        }
        let q = r.unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(q.scheme(), scheme, "{s}");
        assert_eq!(q.shape(), (4, 256));
        q.validate().unwrap();
        let ok = match (&q, scheme.kind) {
            (QuantizedWeight::Int(x), SchemeKind::Int { symmetric }) => {
                x.symmetric == symmetric && x.bits == scheme.bits
            }
            (QuantizedWeight::Bipolar(x), SchemeKind::Bipolar) => x.bits == scheme.bits,
            (QuantizedWeight::Mixed(x), SchemeKind::Mixed) => x.bits == scheme.bits,
            (QuantizedWeight::Lut(x), SchemeKind::Nf4) => x.is_nf4(),
            _ => false,
        };
        assert!(ok, "{s}: wrong variant");
        // f16 / bf16 exports are the row-major RNE roundings of the f32 dequantization.
        let d = q.dequantize();
        let (h, b) = (q.dequantize_f16(), q.dequantize_bf16());
        assert_eq!(h.len(), 4 * 256);
        for r in 0..4 {
            for c in 0..256 {
                let v = d[[r, c]];
                assert_eq!(h[r * 256 + c], half::f16::from_f32(v));
                assert_eq!(b[r * 256 + c], half::bf16::from_f32(v));
            }
        }
    }
}
