//! Every public entry point turns bad input into the right typed `LowbitError` (never a panic or a silently
//! wrong answer).

mod common;

use common::*;
use half::f16;
use lowbit_core::bipolar::encode;
use lowbit_core::lut::NF4;
use lowbit_core::metrics::{max_abs_error, rel_fro_error, report, sqnr_db};
use lowbit_core::reference::{self, Activations, bipolar_gemm_exact, bipolar_gemm_popcount, gemm_f64, int8_gemm_exact};
use lowbit_core::{
    BipolarMatrix, Granularity, Int8Activations, IntAffineWeight, LowbitError, LutWeight, MixedWeight, QuantizedWeight,
    SchemeKind, WeightScheme, quantize,
};
use ndarray::Array2;

macro_rules! assert_err {
    ($e:expr, $p:pat) => {{
        let r = $e;
        assert!(matches!(r, Err($p)), "{}: expected {}, got {:?}", stringify!($e), stringify!($p), r.map(|_| ()));
    }};
}

fn w(n: usize, k: usize) -> Array2<f32> {
    gaussian_matrix(&mut rng(1), n, k, 0.1)
}

/// Matrices that every float quantizer must reject, with the variant they must produce.
fn non_finite_inputs() -> Vec<Array2<f32>> {
    let mut v = Vec::new();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for (r, c) in [(0, 0), (1, 63), (0, 40)] {
            let mut m = w(2, 64);
            m[[r, c]] = bad;
            v.push(m);
        }
    }
    v
}

fn empty_inputs() -> Vec<Array2<f32>> {
    vec![Array2::zeros((0, 64)), Array2::zeros((4, 0)), Array2::zeros((0, 0))]
}

// ---------------------------------------------------------------------------------------------------------------
// Quantizers: bits, groups, K divisibility, NaN/Inf, empty, unrepresentable magnitudes.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn int_affine_quantize_errors() {
    let m = w(2, 64);
    for bits in [0, 1, 9, 16, 32] {
        for sym in [true, false] {
            assert_err!(
                IntAffineWeight::quantize(m.view(), bits, sym, Granularity::Group(32)),
                LowbitError::UnsupportedBits { .. }
            );
        }
    }
    for g in [0, 1, 16, 48, 96, 256] {
        assert_err!(
            IntAffineWeight::quantize(m.view(), 4, true, Granularity::Group(g)),
            LowbitError::InvalidGroupSize { .. }
        );
    }
    assert_err!(
        IntAffineWeight::quantize(w(2, 96).view(), 4, true, Granularity::Group(64)),
        LowbitError::KNotDivisible { k: 96, group: 64 }
    );
    assert_err!(
        IntAffineWeight::quantize(w(2, 33).view(), 4, false, Granularity::Group(32)),
        LowbitError::KNotDivisible { .. }
    );
    for bad in non_finite_inputs() {
        assert_err!(
            IntAffineWeight::quantize(bad.view(), 4, true, Granularity::Group(32)),
            LowbitError::NonFinite { .. }
        );
        assert_err!(
            IntAffineWeight::quantize(bad.view(), 4, false, Granularity::PerChannel),
            LowbitError::NonFinite { .. }
        );
    }
    for e in empty_inputs() {
        assert_err!(IntAffineWeight::quantize(e.view(), 4, true, Granularity::PerChannel), LowbitError::Empty { .. });
    }
    // A scale beyond f16's 65504 cannot be stored: a typed error, not an infinite scale.
    let mut huge = w(1, 32);
    huge[[0, 3]] = 1e7;
    assert_err!(
        IntAffineWeight::quantize(huge.view(), 8, true, Granularity::Group(32)),
        LowbitError::InvalidValue { .. }
    );
    assert!(IntAffineWeight::quantize(huge.view(), 8, false, Granularity::Group(32)).is_ok(), "1e7 / 255 fits f16");
    huge[[0, 3]] = 1e8;
    assert_err!(
        IntAffineWeight::quantize(huge.view(), 8, false, Granularity::Group(32)),
        LowbitError::InvalidValue { .. }
    );
    // f32::MAX range (hi − lo overflows to +inf in f32).
    huge[[0, 4]] = -f32::MAX;
    huge[[0, 5]] = f32::MAX;
    assert_err!(
        IntAffineWeight::quantize(huge.view(), 4, false, Granularity::Group(32)),
        LowbitError::InvalidValue { .. }
    );
}

#[test]
fn act_order_permutation_errors() {
    let m = w(2, 64);
    let g = Granularity::Group(32);
    let ident: Vec<usize> = (0..64).collect();
    assert_err!(
        IntAffineWeight::quantize_act_order(m.view(), 4, true, g, &ident[..63]),
        LowbitError::InvalidPermutation { .. }
    );
    let mut long = ident.clone();
    long.push(0);
    assert_err!(
        IntAffineWeight::quantize_act_order(m.view(), 4, true, g, &long),
        LowbitError::InvalidPermutation { .. }
    );
    let mut dup = ident.clone();
    dup[10] = 11;
    assert_err!(
        IntAffineWeight::quantize_act_order(m.view(), 4, true, g, &dup),
        LowbitError::InvalidPermutation { .. }
    );
    let mut oob = ident.clone();
    oob[5] = 64;
    assert_err!(
        IntAffineWeight::quantize_act_order(m.view(), 4, false, g, &oob),
        LowbitError::InvalidPermutation { .. }
    );
    assert_err!(IntAffineWeight::quantize_act_order(m.view(), 4, true, g, &[]), LowbitError::InvalidPermutation { .. });
    // The other checks still apply with act-order.
    assert_err!(IntAffineWeight::quantize_act_order(m.view(), 1, true, g, &ident), LowbitError::UnsupportedBits { .. });
    assert_err!(
        IntAffineWeight::quantize_act_order(m.view(), 4, true, Granularity::Group(48), &ident),
        LowbitError::InvalidGroupSize { .. }
    );
    assert_err!(
        IntAffineWeight::quantize_act_order(
            w(2, 96).view(),
            4,
            true,
            Granularity::Group(64),
            &(0..96).collect::<Vec<_>>()
        ),
        LowbitError::KNotDivisible { .. }
    );
    let mut bad = m.clone();
    bad[[1, 1]] = f32::NAN;
    assert_err!(IntAffineWeight::quantize_act_order(bad.view(), 4, true, g, &ident), LowbitError::NonFinite { .. });
    assert_err!(
        IntAffineWeight::quantize_act_order(Array2::<f32>::zeros((0, 64)).view(), 4, true, g, &ident),
        LowbitError::Empty { .. }
    );
}

#[test]
fn bipolar_quantize_errors() {
    let m = w(2, 64);
    for bits in [0, 9, 33] {
        assert_err!(
            BipolarMatrix::quantize(m.view(), bits, Granularity::Group(32)),
            LowbitError::UnsupportedBits { .. }
        );
    }
    assert_err!(BipolarMatrix::quantize(m.view(), 2, Granularity::Group(16)), LowbitError::InvalidGroupSize { .. });
    assert_err!(
        BipolarMatrix::quantize(w(2, 96).view(), 2, Granularity::Group(128)),
        LowbitError::KNotDivisible { .. }
    );
    for bad in non_finite_inputs() {
        assert_err!(BipolarMatrix::quantize(bad.view(), 2, Granularity::Group(32)), LowbitError::NonFinite { .. });
    }
    for e in empty_inputs() {
        assert_err!(BipolarMatrix::quantize(e.view(), 2, Granularity::PerChannel), LowbitError::Empty { .. });
    }
}

#[test]
fn mixed_quantize_errors() {
    let m = w(2, 128);
    for bits in [0, 1, 2, 5, 8] {
        assert_err!(MixedWeight::quantize(m.view(), bits, 32), LowbitError::UnsupportedBits { .. });
    }
    for g in [0, 16, 48, 256, 128 * 2] {
        assert_err!(MixedWeight::quantize(m.view(), 4, g), LowbitError::InvalidGroupSize { .. });
    }
    assert_err!(MixedWeight::quantize(w(2, 96).view(), 3, 64), LowbitError::KNotDivisible { .. });
    for bad in non_finite_inputs() {
        assert_err!(MixedWeight::quantize(bad.view(), 3, 32), LowbitError::NonFinite { .. });
    }
    for e in empty_inputs() {
        assert_err!(MixedWeight::quantize(e.view(), 4, 32), LowbitError::Empty { .. });
    }
    let mut huge = w(1, 32);
    huge[[0, 0]] = 1e12; // Δ_ch = 1e12 / 4 / 255 overflows f16
    assert_err!(MixedWeight::quantize(huge.view(), 3, 32), LowbitError::InvalidValue { .. });
}

#[test]
fn lut_quantize_errors_and_invalid_tables() {
    let m = w(2, 64);
    let g = Granularity::Group(32);
    let bad_luts: Vec<Vec<f32>> = vec![
        vec![],
        vec![0.0],
        vec![-1.0, 0.0, 1.0],                 // not a power of two
        (0..512).map(|i| i as f32).collect(), // 9 bits
        vec![-1.0, 1.0, 0.5, 0.75],           // not ascending
        vec![-1.0, 0.0, 0.0, 1.0],            // duplicate (not strictly ascending)
        vec![-1.0, f32::NAN, 0.5, 1.0],
        vec![-1.0, 0.0, 0.5, f32::INFINITY],
        vec![f32::NEG_INFINITY, 0.0, 0.5, 1.0],
    ];
    for lut in &bad_luts {
        assert_err!(LutWeight::quantize(m.view(), lut, g), LowbitError::InvalidValue { .. });
    }
    assert_err!(LutWeight::quantize(m.view(), &NF4, Granularity::Group(100)), LowbitError::InvalidGroupSize { .. });
    assert_err!(LutWeight::quantize_nf4(w(2, 96).view(), Granularity::Group(64)), LowbitError::KNotDivisible { .. });
    for bad in non_finite_inputs() {
        assert_err!(LutWeight::quantize_nf4(bad.view(), g), LowbitError::NonFinite { .. });
    }
    for e in empty_inputs() {
        assert_err!(LutWeight::quantize_nf4(e.view(), Granularity::PerChannel), LowbitError::Empty { .. });
    }
    let mut huge = w(1, 32);
    huge[[0, 0]] = 1e6; // absmax beyond f16
    assert_err!(LutWeight::quantize_nf4(huge.view(), g), LowbitError::InvalidValue { .. });
}

#[test]
fn activation_quantize_errors() {
    let x = w(3, 16);
    for s in [0.0, -0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_err!(Int8Activations::quantize_per_tensor(x.view(), s), LowbitError::InvalidValue { .. });
    }
    for bad in non_finite_inputs() {
        assert_err!(Int8Activations::quantize_per_token(bad.view()), LowbitError::NonFinite { .. });
        assert_err!(Int8Activations::quantize_per_tensor(bad.view(), 0.1), LowbitError::NonFinite { .. });
        assert_err!(Int8Activations::calibrate_per_tensor(bad.view()), LowbitError::NonFinite { .. });
    }
    for e in empty_inputs() {
        assert_err!(Int8Activations::quantize_per_token(e.view()), LowbitError::Empty { .. });
        assert_err!(Int8Activations::quantize_per_tensor(e.view(), 0.1), LowbitError::Empty { .. });
        assert_err!(Int8Activations::calibrate_per_tensor(e.view()), LowbitError::Empty { .. });
    }
}

#[test]
fn scheme_quantize_errors() {
    let m = w(2, 64);
    let lut: WeightScheme = "w4-lut-g32".parse().unwrap();
    assert_err!(quantize(m.view(), &lut), LowbitError::InvalidScheme { .. });
    let bad = WeightScheme { kind: SchemeKind::Int { symmetric: true }, bits: 9, granularity: Granularity::Group(32) };
    assert_err!(quantize(m.view(), &bad), LowbitError::InvalidScheme { .. });
    let bad = WeightScheme { kind: SchemeKind::Mixed, bits: 4, granularity: Granularity::PerChannel };
    assert_err!(quantize(m.view(), &bad), LowbitError::InvalidScheme { .. });
    let bad = WeightScheme { kind: SchemeKind::Nf4, bits: 4, granularity: Granularity::Group(16) };
    assert_err!(quantize(m.view(), &bad), LowbitError::InvalidScheme { .. });
    // Valid schemes pass the format's own errors through.
    for s in ["w4-int-g128", "w2-bipolar-g128", "w3-mixed-g128", "w4-nf4-g128"] {
        let scheme: WeightScheme = s.parse().unwrap();
        assert_err!(quantize(m.view(), &scheme), LowbitError::KNotDivisible { .. }); // K = 64 < 128
        let mut nan = w(2, 128);
        nan[[1, 100]] = f32::NAN;
        assert_err!(quantize(nan.view(), &scheme), LowbitError::NonFinite { .. });
        assert_err!(quantize(Array2::<f32>::zeros((0, 128)).view(), &scheme), LowbitError::Empty { .. });
    }
}

#[test]
fn granularity_check_errors() {
    for g in [0, 1, 8, 16, 100, 256, 4096] {
        assert_err!(Granularity::Group(g).check(4096, "test"), LowbitError::InvalidGroupSize { .. });
    }
    assert_err!(Granularity::Group(128).check(4160, "test"), LowbitError::KNotDivisible { k: 4160, group: 128 });
    assert!(Granularity::PerChannel.check(7, "test").is_ok());
}

// ---------------------------------------------------------------------------------------------------------------
// Constructors from codes.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn int_affine_from_codes_errors() {
    let (n, k) = (2, 64);
    let g = Granularity::Group(32);
    let codes = vec![3u8; n * k];
    let sc = || vec![f16::ONE; n * 2];
    let z8 = || vec![8u8; n * 2];
    let f = IntAffineWeight::from_codes;
    assert!(f(n, k, 4, true, g, &codes, sc(), z8(), None).is_ok());
    for bits in [0, 1, 9] {
        assert_err!(f(n, k, bits, true, g, &codes, sc(), z8(), None), LowbitError::UnsupportedBits { .. });
    }
    assert_err!(f(n, k, 4, true, g, &codes[1..], sc(), z8(), None), LowbitError::ShapeMismatch { .. });
    assert_err!(f(n + 1, k, 4, true, g, &codes, sc(), z8(), None), LowbitError::ShapeMismatch { .. });
    let mut big = codes.clone();
    big[77] = 16; // does not fit 4 bits
    assert_err!(f(n, k, 4, true, g, &big, sc(), z8(), None), LowbitError::InvalidValue { .. });
    assert_err!(f(n, k, 4, true, g, &codes, vec![f16::ONE; 3], z8(), None), LowbitError::ShapeMismatch { .. });
    assert_err!(f(n, k, 4, true, g, &codes, sc(), vec![8; 5], None), LowbitError::ShapeMismatch { .. });
    assert_err!(
        f(n, k, 4, true, Granularity::Group(48), &codes, sc(), z8(), None),
        LowbitError::InvalidGroupSize { .. }
    );
    assert_err!(f(2, 48, 4, true, g, &[0; 96], vec![f16::ONE; 2], vec![8; 2], None), LowbitError::KNotDivisible { .. });
    assert_err!(f(0, k, 4, true, g, &[], vec![], vec![], None), LowbitError::Empty { .. });
    assert_err!(f(n, 0, 4, true, g, &[], vec![], vec![], None), LowbitError::Empty { .. });
    // Metadata values.
    assert_err!(f(n, k, 4, true, g, &codes, sc(), vec![7; 4], None), LowbitError::InvalidValue { .. }); // sym zero ≠ 8
    assert_err!(f(n, k, 4, false, g, &codes, sc(), vec![16; 4], None), LowbitError::InvalidValue { .. }); // zero ≥ 2^b
    for s in [f16::ZERO, f16::NEG_ZERO, f16::NAN, f16::INFINITY, f16::from_f32(-1.0)] {
        let mut scales = sc();
        scales[3] = s;
        assert_err!(f(n, k, 4, true, g, &codes, scales, z8(), None), LowbitError::InvalidValue { .. });
    }
    // g_idx.
    assert_err!(f(n, k, 4, true, g, &codes, sc(), z8(), Some(vec![0; k - 1])), LowbitError::ShapeMismatch { .. });
    let mut gi = vec![0u32; k];
    gi[9] = 2; // n_groups = 2
    assert_err!(f(n, k, 4, true, g, &codes, sc(), z8(), Some(gi)), LowbitError::InvalidValue { .. });
    assert_err!(
        f(n, k, 4, true, Granularity::PerChannel, &codes, vec![f16::ONE; n], vec![8; n], Some(vec![1; k])),
        LowbitError::InvalidValue { .. }
    );
}

#[test]
fn bipolar_from_codes_and_conversions_errors() {
    let (n, k) = (2, 40);
    let pc = Granularity::PerChannel;
    let codes = vec![1u8; n * k];
    let f = BipolarMatrix::from_codes;
    assert!(f(n, k, 2, pc, &codes, vec![1.0; n], None).is_ok());
    for bits in [0, 9] {
        assert_err!(f(n, k, bits, pc, &codes, vec![1.0; n], None), LowbitError::UnsupportedBits { .. });
        assert_err!(encode(1, bits), LowbitError::UnsupportedBits { .. });
    }
    assert_err!(f(n, k, 2, pc, &codes[..79], vec![1.0; n], None), LowbitError::ShapeMismatch { .. });
    let mut big = codes.clone();
    big[0] = 4;
    assert_err!(f(n, k, 2, pc, &big, vec![1.0; n], None), LowbitError::InvalidValue { .. });
    assert_err!(f(n, k, 2, pc, &codes, vec![1.0; n + 1], None), LowbitError::ShapeMismatch { .. });
    assert_err!(f(n, k, 2, pc, &codes, vec![1.0; n], Some(vec![0.0; 1])), LowbitError::ShapeMismatch { .. });
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_err!(f(n, k, 2, pc, &codes, vec![1.0, bad], None), LowbitError::InvalidValue { .. });
        assert_err!(f(n, k, 2, pc, &codes, vec![1.0; n], Some(vec![bad, 0.0])), LowbitError::InvalidValue { .. });
    }
    assert_err!(f(n, k, 2, Granularity::Group(32), &codes, vec![1.0; n], None), LowbitError::KNotDivisible { .. });
    assert_err!(
        f(n, 64, 2, Granularity::Group(8), &[0; 128], vec![1.0; 16], None),
        LowbitError::InvalidGroupSize { .. }
    );
    assert_err!(f(0, k, 2, pc, &[], vec![], None), LowbitError::Empty { .. });
    assert_err!(f(n, 0, 2, pc, &[], vec![1.0; n], None), LowbitError::Empty { .. });

    // from_signed_int.
    let xs = Array2::from_shape_fn((2, 32), |(r, c)| ((r + c) % 4) as i8 - 2);
    let g = Granularity::Group(32);
    assert!(BipolarMatrix::from_signed_int(xs.view(), 2, g, &[1.0; 2], &[0.0; 2]).is_ok());
    for bits in [0, 9] {
        assert_err!(
            BipolarMatrix::from_signed_int(xs.view(), bits, g, &[1.0; 2], &[0.0; 2]),
            LowbitError::UnsupportedBits { .. }
        );
    }
    // 2-bit two's complement is [−2, 1]: a 2 (or −3) does not fit.
    let mut out = xs.clone();
    out[[1, 5]] = 2;
    assert_err!(
        BipolarMatrix::from_signed_int(out.view(), 2, g, &[1.0; 2], &[0.0; 2]),
        LowbitError::InvalidValue { .. }
    );
    out[[1, 5]] = -3;
    assert_err!(
        BipolarMatrix::from_signed_int(out.view(), 2, g, &[1.0; 2], &[0.0; 2]),
        LowbitError::InvalidValue { .. }
    );
    assert_err!(
        BipolarMatrix::from_signed_int(xs.view(), 2, g, &[1.0; 3], &[0.0; 2]),
        LowbitError::ShapeMismatch { .. }
    );
    assert_err!(
        BipolarMatrix::from_signed_int(xs.view(), 2, g, &[1.0; 2], &[0.0; 1]),
        LowbitError::ShapeMismatch { .. }
    );
    assert_err!(
        BipolarMatrix::from_signed_int(xs.view(), 2, Granularity::Group(64), &[1.0; 2], &[0.0; 2]),
        LowbitError::KNotDivisible { .. }
    );
    assert_err!(
        BipolarMatrix::from_signed_int(xs.view(), 2, Granularity::Group(20), &[1.0; 2], &[0.0; 2]),
        LowbitError::InvalidGroupSize { .. }
    );
    assert_err!(
        BipolarMatrix::from_signed_int(xs.view(), 2, g, &[f32::NAN, 1.0], &[0.0; 2]),
        LowbitError::InvalidValue { .. }
    );
    assert_err!(
        BipolarMatrix::from_signed_int(xs.view(), 2, g, &[1.0; 2], &[f32::INFINITY, 0.0]),
        LowbitError::InvalidValue { .. }
    );
    let empty = Array2::<i8>::zeros((0, 32));
    assert_err!(BipolarMatrix::from_signed_int(empty.view(), 2, g, &[], &[]), LowbitError::Empty { .. });

    // from_int_affine: a corrupt INT weight is rejected by its own validation; act-order is unsupported.
    let mut iw = IntAffineWeight::quantize(w(2, 64).view(), 4, false, Granularity::Group(32)).unwrap();
    iw.scales[0] = f16::NAN;
    assert_err!(BipolarMatrix::from_int_affine(&iw), LowbitError::InvalidValue { .. });
    iw.scales[0] = f16::ONE;
    iw.g_idx = Some(vec![0; 64]);
    assert_err!(BipolarMatrix::from_int_affine(&iw), LowbitError::Unsupported(_));
    iw.g_idx = None;
    iw.codes.pop();
    assert_err!(BipolarMatrix::from_int_affine(&iw), LowbitError::ShapeMismatch { .. });
}

// ---------------------------------------------------------------------------------------------------------------
// validate(): corrupted fields of otherwise valid objects.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn int_affine_validate_catches_corruption() {
    let good = IntAffineWeight::quantize(w(3, 128).view(), 3, true, Granularity::Group(32)).unwrap();
    good.validate().unwrap();
    let asym = IntAffineWeight::quantize(w(3, 128).view(), 3, false, Granularity::Group(32)).unwrap();
    type Corrupt = Box<dyn Fn(&mut IntAffineWeight)>;
    type Case = (&'static str, IntAffineWeight, Corrupt, fn(&LowbitError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "codes short",
            good.clone(),
            Box::new(|w| {
                w.codes.pop();
            }),
            |e| matches!(e, LowbitError::ShapeMismatch { .. }),
        ),
        ("codes long", good.clone(), Box::new(|w| w.codes.push(0)), |e| matches!(e, LowbitError::ShapeMismatch { .. })),
        (
            "scales short",
            good.clone(),
            Box::new(|w| {
                w.scales.pop();
            }),
            |e| matches!(e, LowbitError::ShapeMismatch { .. }),
        ),
        ("zeros long", good.clone(), Box::new(|w| w.zeros.push(4)), |e| matches!(e, LowbitError::ShapeMismatch { .. })),
        ("zero scale", good.clone(), Box::new(|w| w.scales[5] = f16::ZERO), |e| {
            matches!(e, LowbitError::InvalidValue { .. })
        }),
        ("NaN scale", good.clone(), Box::new(|w| w.scales[0] = f16::NAN), |e| {
            matches!(e, LowbitError::InvalidValue { .. })
        }),
        ("inf scale", good.clone(), Box::new(|w| w.scales[1] = f16::INFINITY), |e| {
            matches!(e, LowbitError::InvalidValue { .. })
        }),
        ("negative scale", good.clone(), Box::new(|w| w.scales[2] = f16::from_f32(-0.5)), |e| {
            matches!(e, LowbitError::InvalidValue { .. })
        }),
        ("sym wrong zero", good.clone(), Box::new(|w| w.zeros[4] = 3), |e| {
            matches!(e, LowbitError::InvalidValue { .. })
        }),
        ("asym zero >= 2^b", asym.clone(), Box::new(|w| w.zeros[4] = 8), |e| {
            matches!(e, LowbitError::InvalidValue { .. })
        }),
        ("g_idx out of range", good.clone(), Box::new(|w| w.g_idx = Some(vec![4; 128])), |e| {
            matches!(e, LowbitError::InvalidValue { .. })
        }),
        ("g_idx length", good.clone(), Box::new(|w| w.g_idx = Some(vec![0; 127])), |e| {
            matches!(e, LowbitError::ShapeMismatch { .. })
        }),
        ("bits 9", good.clone(), Box::new(|w| w.bits = 9), |e| matches!(e, LowbitError::UnsupportedBits { .. })),
        ("bits 1", good.clone(), Box::new(|w| w.bits = 1), |e| matches!(e, LowbitError::UnsupportedBits { .. })),
        ("bits 4 (codes too short)", good.clone(), Box::new(|w| w.bits = 4), |e| {
            matches!(e, LowbitError::ShapeMismatch { .. } | LowbitError::InvalidValue { .. })
        }),
        ("n = 0", good.clone(), Box::new(|w| w.n = 0), |e| matches!(e, LowbitError::Empty { .. })),
        ("k = 0", good.clone(), Box::new(|w| w.k = 0), |e| matches!(e, LowbitError::Empty { .. })),
        ("bad group", good.clone(), Box::new(|w| w.granularity = Granularity::Group(48)), |e| {
            matches!(e, LowbitError::InvalidGroupSize { .. })
        }),
        ("k not divisible", good.clone(), Box::new(|w| w.k = 96 + 16), |e| {
            matches!(e, LowbitError::KNotDivisible { .. })
        }),
    ];
    for (name, mut obj, corrupt, ok) in cases {
        corrupt(&mut obj);
        let e = obj.validate().expect_err(name);
        assert!(ok(&e), "{name}: wrong variant {e:?}");
        // The same corruption is caught through the QuantizedWeight wrapper and by the reference GEMM.
        let q = QuantizedWeight::Int(obj);
        assert!(q.validate().is_err(), "{name}");
        assert!(reference::gemm(&Activations::F32(Array2::zeros((1, 128))), &q).is_err(), "{name}");
    }
}

#[test]
fn bipolar_validate_catches_corruption() {
    let good = BipolarMatrix::quantize(w(3, 40).view(), 3, Granularity::PerChannel).unwrap();
    good.validate().unwrap();
    let mut padded = good.clone();
    padded.planes[1] |= 1 << 31; // plane 0, row 0, word 1: column 63 >= K = 40
    assert_err!(padded.validate(), LowbitError::InvalidValue { .. });
    let mut padded = good.clone();
    let last = padded.planes.len() - 1;
    padded.planes[last] |= 1 << 8; // last plane, last row, column 40
    assert_err!(padded.validate(), LowbitError::InvalidValue { .. });
    let mut c = good.clone();
    c.planes.pop();
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    let mut c = good.clone();
    c.scales.push(1.0);
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    let mut c = good.clone();
    c.scales[2] = f32::NAN;
    assert_err!(c.validate(), LowbitError::InvalidValue { .. });
    let mut c = good.clone();
    c.offsets = Some(vec![0.0; 2]);
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    let mut c = good.clone();
    c.offsets = Some(vec![0.0, f32::NEG_INFINITY, 0.0]);
    assert_err!(c.validate(), LowbitError::InvalidValue { .. });
    let mut c = good.clone();
    c.bits = 9;
    assert_err!(c.validate(), LowbitError::UnsupportedBits { .. });
    let mut c = good.clone();
    c.n = 0;
    assert_err!(c.validate(), LowbitError::Empty { .. });
    let mut c = good.clone();
    c.granularity = Granularity::Group(32);
    assert_err!(c.validate(), LowbitError::KNotDivisible { .. });

    // The integer GEMMs refuse corrupt operands instead of counting padding bits or panicking.
    let x = BipolarMatrix::quantize(w(2, 40).view(), 2, Granularity::PerChannel).unwrap();
    assert_err!(bipolar_gemm_popcount(&x, &padded), LowbitError::InvalidValue { .. });
    assert_err!(bipolar_gemm_exact(&padded, &x), LowbitError::InvalidValue { .. });
    let mut short = good.clone();
    short.planes.truncate(3);
    assert_err!(bipolar_gemm_popcount(&x, &short), LowbitError::ShapeMismatch { .. });
    assert_err!(bipolar_gemm_exact(&short, &x), LowbitError::ShapeMismatch { .. });
    assert_err!(
        reference::gemm(&Activations::Bipolar(padded.clone()), &QuantizedWeight::Bipolar(x.clone())),
        LowbitError::InvalidValue { .. }
    );
    assert_err!(
        reference::gemm(&Activations::Bipolar(short), &QuantizedWeight::Bipolar(x)),
        LowbitError::ShapeMismatch { .. }
    );
}

#[test]
fn mixed_validate_catches_corruption() {
    let good = MixedWeight::quantize(w(2, 160).view(), 4, 32).unwrap();
    good.validate().unwrap();
    let mut c = good.clone();
    c.codes.pop();
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    let mut c = good.clone();
    c.group_scales.pop();
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    let mut c = good.clone();
    c.selectors.pop(); // 5 groups -> 2 selector bytes per row
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    let mut c = good.clone();
    c.channel_scales.push(f16::ONE);
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    for s in [f16::ZERO, f16::NAN, f16::INFINITY, f16::from_f32(-1.0)] {
        let mut c = good.clone();
        c.channel_scales[1] = s;
        assert_err!(c.validate(), LowbitError::InvalidValue { .. });
    }
    let mut c = good.clone();
    c.bits = 5;
    assert_err!(c.validate(), LowbitError::UnsupportedBits { .. });
    let mut c = good.clone();
    c.group = 48;
    assert_err!(c.validate(), LowbitError::InvalidGroupSize { .. });
    let mut c = good.clone();
    c.group = 64; // 160 % 64 != 0
    assert_err!(c.validate(), LowbitError::KNotDivisible { .. });
    let mut c = good.clone();
    c.k = 0;
    assert_err!(c.validate(), LowbitError::Empty { .. });
}

#[test]
fn lut_validate_catches_corruption() {
    let good = LutWeight::quantize_nf4(w(2, 64).view(), Granularity::Group(32)).unwrap();
    good.validate().unwrap();
    let mut c = good.clone();
    c.bits = 3; // table has 16 entries
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    let mut c = good.clone();
    c.lut.swap(3, 4);
    assert_err!(c.validate(), LowbitError::InvalidValue { .. });
    let mut c = good.clone();
    c.lut.pop();
    assert_err!(c.validate(), LowbitError::InvalidValue { .. });
    let mut c = good.clone();
    c.codes.push(0);
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    let mut c = good.clone();
    c.scales.pop();
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    for s in [f16::ZERO, f16::NAN, f16::NEG_INFINITY, f16::from_f32(-2.0)] {
        let mut c = good.clone();
        c.scales[0] = s;
        assert_err!(c.validate(), LowbitError::InvalidValue { .. });
    }
    let mut c = good.clone();
    c.n = 0;
    assert_err!(c.validate(), LowbitError::Empty { .. });
    let mut c = good.clone();
    c.granularity = Granularity::Group(128);
    assert_err!(c.validate(), LowbitError::KNotDivisible { .. });
}

#[test]
fn activation_validate_catches_corruption() {
    let good = Int8Activations::quantize_per_token(w(3, 16).view()).unwrap();
    good.validate().unwrap();
    let mut c = good.clone();
    c.codes[5] = i8::MIN;
    assert_err!(c.validate(), LowbitError::InvalidValue { .. });
    let mut c = good.clone();
    c.codes.pop();
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    let mut c = good.clone();
    c.scales.pop();
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let mut c = good.clone();
        c.scales[1] = s;
        assert_err!(c.validate(), LowbitError::InvalidValue { .. });
        // ...and the GEMMs refuse it.
        assert_err!(int8_gemm_exact(&c, Array2::<i32>::zeros((2, 16)).view()), LowbitError::InvalidValue { .. });
    }
    let mut c = Int8Activations::quantize_per_tensor(w(3, 16).view(), 0.01).unwrap();
    c.scales.push(0.01); // per-tensor has exactly one scale
    assert_err!(c.validate(), LowbitError::ShapeMismatch { .. });
    // reference::gemm validates int8 activations (a short scale vector would otherwise index out of bounds).
    let wq =
        QuantizedWeight::Int(IntAffineWeight::quantize(w(2, 16 * 2).view(), 4, true, Granularity::PerChannel).unwrap());
    let mut a = Int8Activations::quantize_per_token(w(3, 32).view()).unwrap();
    a.scales.truncate(1);
    assert_err!(reference::gemm(&Activations::Int8(a), &wq), LowbitError::ShapeMismatch { .. });
}

// ---------------------------------------------------------------------------------------------------------------
// GEMMs and metrics: mismatched shapes.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn gemm_and_metric_shape_errors() {
    let x = Array2::<f64>::zeros((2, 3));
    let y = Array2::<f64>::zeros((4, 5));
    assert_err!(gemm_f64(x.view(), y.view()), LowbitError::ShapeMismatch { .. });
    let wq = QuantizedWeight::Int(IntAffineWeight::quantize(w(2, 64).view(), 4, true, Granularity::Group(32)).unwrap());
    for k in [32, 65, 128] {
        let xf = Array2::<f32>::zeros((1, k));
        assert_err!(reference::gemm(&Activations::F32(xf.clone()), &wq), LowbitError::ShapeMismatch { .. });
        let a = Int8Activations::quantize_per_token(xf.view()).unwrap();
        assert_err!(int8_gemm_exact(&a, Array2::<i32>::zeros((2, 64)).view()), LowbitError::ShapeMismatch { .. });
        assert_err!(reference::gemm(&Activations::Int8(a), &wq), LowbitError::ShapeMismatch { .. });
    }
    let b1 = BipolarMatrix::quantize(w(2, 64).view(), 2, Granularity::PerChannel).unwrap();
    let b2 = BipolarMatrix::quantize(w(2, 65).view(), 2, Granularity::PerChannel).unwrap();
    assert_err!(bipolar_gemm_exact(&b1, &b2), LowbitError::ShapeMismatch { .. });
    assert_err!(bipolar_gemm_popcount(&b2, &b1), LowbitError::ShapeMismatch { .. });
    assert_err!(
        reference::gemm(&Activations::Bipolar(b2), &QuantizedWeight::Bipolar(b1)),
        LowbitError::ShapeMismatch { .. }
    );

    let a = Array2::<f32>::zeros((2, 3));
    for b in [Array2::<f32>::zeros((3, 2)), Array2::<f32>::zeros((2, 4)), Array2::<f32>::zeros((0, 0))] {
        assert_err!(sqnr_db(a.view(), b.view()), LowbitError::ShapeMismatch { .. });
        assert_err!(rel_fro_error(a.view(), b.view()), LowbitError::ShapeMismatch { .. });
        assert_err!(max_abs_error(a.view(), b.view()), LowbitError::ShapeMismatch { .. });
        assert_err!(report(a.view(), b.view()), LowbitError::ShapeMismatch { .. });
    }
}

#[test]
fn error_messages_name_the_problem() {
    // Display is part of the contract ("every message names the problem and the offending value").
    let e = IntAffineWeight::quantize(w(2, 96).view(), 4, true, Granularity::Group(64)).unwrap_err();
    assert_eq!(e.to_string(), "K = 96 is not divisible by the group size 64");
    let e = IntAffineWeight::quantize(w(2, 64).view(), 9, true, Granularity::Group(32)).unwrap_err();
    assert!(e.to_string().contains('9') && e.to_string().contains("INT affine"), "{e}");
    let mut m = w(2, 64);
    m[[1, 7]] = f32::NAN;
    let e = MixedWeight::quantize(m.view(), 4, 32).unwrap_err();
    assert!(e.to_string().contains("[1, 7]") && e.to_string().contains("NaN"), "{e}");
    let e = "w4-int-g100".parse::<WeightScheme>().unwrap_err();
    assert!(e.to_string().contains("w4-int-g100"), "{e}");
}

#[test]
fn dirty_row_padding_bits_are_rejected() {
    use lowbit_core::{Granularity, IntAffineWeight, LowbitError, LutWeight, MixedWeight};
    // K = 100 at 3 bits = 300 bits per row: 10 words, the last 20 bits are padding.
    let w = ndarray::Array2::from_shape_fn((3, 100), |(r, c)| ((r * 100 + c) as f32 * 0.37).sin());
    let mut q = IntAffineWeight::quantize(w.view(), 3, true, Granularity::PerChannel).unwrap();
    q.validate().unwrap();
    let wpr = q.codes.len() / 3;
    q.codes[3 * wpr - 1] |= 1 << 31;
    assert!(matches!(q.validate(), Err(LowbitError::InvalidValue { .. })));
    let t = [-1.0f32, -0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1.0];
    let mut l3 = LutWeight::quantize(w.view(), &t, Granularity::PerChannel).unwrap();
    l3.validate().unwrap();
    l3.codes[wpr - 1] |= 1 << 30;
    assert!(matches!(l3.validate(), Err(LowbitError::InvalidValue { .. })));
    // K = 96 at 3 bits = 288 bits = exactly 9 words: the top bit belongs to a real code, so flipping it is
    // a different (valid) weight, not corrupt padding.
    let w = ndarray::Array2::from_shape_fn((2, 96), |(r, c)| ((r * 96 + c) as f32 * 0.71).cos());
    let mut m = MixedWeight::quantize(w.view(), 3, 32).unwrap();
    let wpr = m.codes.len() / 2;
    m.codes[wpr - 1] ^= 1 << 31;
    assert!(m.validate().is_ok());
}
