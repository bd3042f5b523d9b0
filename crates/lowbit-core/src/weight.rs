//! [`QuantizedWeight`], the sum of every weight format, and [`WeightScheme`], its textual name.
//!
//! Scheme strings: `w{bits}-{kind}[-asym][-g{32|64|128}|-pc]`, for example `w4-int-g128`,
//! `w4-int-asym-g64`, `w8-int-pc`, `w3-mixed-g128`, `w4-nf4-g64`, `w2-bipolar-g128`. A bench-style
//! activation tag is accepted and ignored (`w4a16-int-g128`). The group defaults to 128 when omitted.

use crate::affine::IntAffineWeight;
use crate::bipolar::BipolarMatrix;
use crate::bitmod::MixedWeight;
use crate::error::{LowbitError, Result};
use crate::granularity::Granularity;
use crate::lut::{LutWeight, NF4};
use half::{bf16, f16};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The family of a weight scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SchemeKind {
    /// INT affine, symmetric or not.
    Int {
        /// Symmetric (no zero point) when true.
        symmetric: bool,
    },
    /// bipolar-INT (APT-LLM), symmetric.
    Bipolar,
    /// BitMoD mixed FP3/FP4 datatypes.
    Mixed,
    /// NF4 lookup table.
    Nf4,
    /// Any other `2^b`-entry table (only from data: the table is not part of the name).
    Lut,
}

/// A weight quantization scheme: kind, bits and granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WeightScheme {
    /// Family.
    pub kind: SchemeKind,
    /// Bits per weight code.
    pub bits: u32,
    /// Group size along K.
    pub granularity: Granularity,
}

impl WeightScheme {
    /// Checks that the combination is supported (bits per kind, group sizes).
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &str| LowbitError::InvalidScheme { scheme: self.to_string(), reason: reason.into() };
        match self.kind {
            SchemeKind::Int { .. } if !(2..=8).contains(&self.bits) => {
                return Err(bad("INT needs 2..=8 bits"));
            }
            SchemeKind::Bipolar if !(1..=8).contains(&self.bits) => {
                return Err(bad("bipolar needs 1..=8 bits"));
            }
            SchemeKind::Mixed if self.bits != 3 && self.bits != 4 => {
                return Err(bad("mixed needs 3 or 4 bits"));
            }
            SchemeKind::Mixed if self.granularity == Granularity::PerChannel => {
                return Err(bad("mixed needs a group size (32, 64 or 128)"));
            }
            SchemeKind::Nf4 if self.bits != 4 => return Err(bad("nf4 is 4 bits")),
            SchemeKind::Lut if !(1..=8).contains(&self.bits) => {
                return Err(bad("lut needs 1..=8 bits"));
            }
            _ => {}
        }
        if let Granularity::Group(g) = self.granularity
            && !crate::granularity::SUPPORTED_GROUPS.contains(&g)
        {
            return Err(bad("group size must be 32, 64, 128 or pc"));
        }
        Ok(())
    }

    /// Effective storage bits per weight for rows of `k` columns, metadata included.
    pub fn bits_per_weight(&self, k: usize) -> f64 {
        let g = self.granularity.group_len(k) as f64;
        let meta_per_group = match self.kind {
            SchemeKind::Int { symmetric: true } => 16.0,
            SchemeKind::Int { symmetric: false } => 24.0,
            SchemeKind::Bipolar => 32.0,
            SchemeKind::Mixed => 10.0,
            SchemeKind::Nf4 | SchemeKind::Lut => 16.0,
        };
        let per_row = if self.kind == SchemeKind::Mixed { 16.0 / k as f64 } else { 0.0 };
        self.bits as f64 + meta_per_group / g + per_row
    }
}

impl fmt::Display for WeightScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            SchemeKind::Int { symmetric: true } => "int",
            SchemeKind::Int { symmetric: false } => "int-asym",
            SchemeKind::Bipolar => "bipolar",
            SchemeKind::Mixed => "mixed",
            SchemeKind::Nf4 => "nf4",
            SchemeKind::Lut => "lut",
        };
        write!(f, "w{}-{}-{}", self.bits, kind, self.granularity.suffix())
    }
}

impl FromStr for WeightScheme {
    type Err = LowbitError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| LowbitError::InvalidScheme { scheme: s.to_string(), reason: reason.into() };
        let lower = s.trim().to_ascii_lowercase();
        let mut parts = lower.split('-');
        let head = parts.next().unwrap_or_default();
        let digits = head.strip_prefix('w').ok_or_else(|| bad("must start with w<bits>, e.g. w4-int-g128"))?;
        let (digits, act) = digits.split_once('a').map_or((digits, None), |(w, a)| (w, Some(a))); // "w4a16"
        if act.is_some_and(|a| parse_digits::<u32>(a).is_none()) {
            return Err(bad("activation tag must be a<bits>, e.g. w4a16"));
        }
        let bits: u32 = parse_digits(digits).ok_or_else(|| bad("bits after 'w' must be a number"))?;
        let kind_str = parts.next().ok_or_else(|| bad("missing kind (int, bipolar, mixed, nf4)"))?;
        let mut kind = match kind_str {
            "int" => SchemeKind::Int { symmetric: true },
            "bipolar" => SchemeKind::Bipolar,
            "mixed" | "bitmod" => SchemeKind::Mixed,
            "nf4" => SchemeKind::Nf4,
            "lut" => SchemeKind::Lut,
            other => {
                return Err(bad(&format!("unknown kind '{other}' (int, bipolar, mixed, nf4, lut)")));
            }
        };
        let mut granularity = None;
        let mut symmetry_given = false;
        for p in parts {
            // Each of symmetry and group may be given once: "w4-int-g128-pc" or "w4-int-asym-sym" is ambiguous.
            let repeated = match p {
                "asym" | "sym" => std::mem::replace(&mut symmetry_given, true),
                _ => granularity.is_some() && (p == "pc" || p == "perchannel" || p.starts_with('g')),
            };
            if repeated {
                return Err(bad(&format!("'{p}' repeats or contradicts an earlier part")));
            }
            match p {
                "asym" => match kind {
                    SchemeKind::Int { .. } => kind = SchemeKind::Int { symmetric: false },
                    _ => return Err(bad("'asym' applies to int only")),
                },
                "sym" => {}
                "pc" | "perchannel" => granularity = Some(Granularity::PerChannel),
                g if g.starts_with('g') => {
                    let v: usize = parse_digits(&g[1..]).ok_or_else(|| bad("group must be g32, g64, g128 or pc"))?;
                    granularity = Some(Granularity::Group(v));
                }
                other => return Err(bad(&format!("unexpected part '{other}'"))),
            }
        }
        let scheme = WeightScheme { kind, bits, granularity: granularity.unwrap_or(Granularity::Group(128)) };
        scheme.validate().map_err(|e| match e {
            LowbitError::InvalidScheme { reason, .. } => bad(&reason),
            other => other,
        })?;
        Ok(scheme)
    }
}

/// A non-empty run of ASCII digits as a number (`str::parse` alone would also take a leading `+`).
fn parse_digits<T: FromStr>(t: &str) -> Option<T> {
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// A quantized weight matrix in any lowbit format.
#[derive(Debug, Clone, PartialEq)]
pub enum QuantizedWeight {
    /// INT affine.
    Int(IntAffineWeight),
    /// bipolar-INT.
    Bipolar(BipolarMatrix),
    /// BitMoD mixed datatypes.
    Mixed(MixedWeight),
    /// NF4 or another lookup table.
    Lut(LutWeight),
}

/// Quantizes `w[N, K]` (rows = output features) with `scheme` (round-to-nearest; GPTQ lives in lowbit-calib).
pub fn quantize(w: ArrayView2<f32>, scheme: &WeightScheme) -> Result<QuantizedWeight> {
    scheme.validate()?;
    Ok(match scheme.kind {
        SchemeKind::Int { symmetric } => {
            QuantizedWeight::Int(IntAffineWeight::quantize(w, scheme.bits, symmetric, scheme.granularity)?)
        }
        SchemeKind::Bipolar => QuantizedWeight::Bipolar(BipolarMatrix::quantize(w, scheme.bits, scheme.granularity)?),
        SchemeKind::Mixed => {
            let g = scheme.granularity.group_len(w.ncols());
            QuantizedWeight::Mixed(MixedWeight::quantize(w, scheme.bits, g)?)
        }
        SchemeKind::Nf4 => QuantizedWeight::Lut(LutWeight::quantize(w, &NF4, scheme.granularity)?),
        SchemeKind::Lut => {
            return Err(LowbitError::InvalidScheme {
                scheme: scheme.to_string(),
                reason: "a custom LUT needs its table: use LutWeight::quantize".into(),
            });
        }
    })
}

impl QuantizedWeight {
    /// `(N, K)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Self::Int(w) => (w.n, w.k),
            Self::Bipolar(w) => (w.n, w.k),
            Self::Mixed(w) => (w.n, w.k),
            Self::Lut(w) => (w.n, w.k),
        }
    }

    /// The scheme this weight is stored in.
    pub fn scheme(&self) -> WeightScheme {
        match self {
            Self::Int(w) => WeightScheme {
                kind: SchemeKind::Int { symmetric: w.symmetric },
                bits: w.bits,
                granularity: w.granularity,
            },
            Self::Bipolar(w) => WeightScheme { kind: SchemeKind::Bipolar, bits: w.bits, granularity: w.granularity },
            Self::Mixed(w) => {
                WeightScheme { kind: SchemeKind::Mixed, bits: w.bits, granularity: Granularity::Group(w.group) }
            }
            Self::Lut(w) => WeightScheme {
                kind: if w.is_nf4() { SchemeKind::Nf4 } else { SchemeKind::Lut },
                bits: w.bits,
                granularity: w.granularity,
            },
        }
    }

    /// Checks every field (see each format's `validate`).
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Int(w) => w.validate(),
            Self::Bipolar(w) => w.validate(),
            Self::Mixed(w) => w.validate(),
            Self::Lut(w) => w.validate(),
        }
    }

    /// Dequantized f32 weights `[N, K]` (the exact f32 values every kernel reproduces).
    pub fn dequantize(&self) -> Array2<f32> {
        match self {
            Self::Int(w) => w.dequantize(),
            Self::Bipolar(w) => w.dequantize(),
            Self::Mixed(w) => w.dequantize(),
            Self::Lut(w) => w.dequantize(),
        }
    }

    /// Dequantized and rounded (RNE) to f16, row-major `[N, K]`.
    pub fn dequantize_f16(&self) -> Vec<f16> {
        self.dequantize().iter().map(|&v| f16::from_f32(v)).collect()
    }

    /// Dequantized and rounded (RNE) to bf16, row-major `[N, K]`.
    pub fn dequantize_bf16(&self) -> Vec<bf16> {
        self.dequantize().iter().map(|&v| bf16::from_f32(v)).collect()
    }

    /// Bytes of storage, metadata included.
    pub fn storage_bytes(&self) -> usize {
        match self {
            Self::Int(w) => w.storage_bytes(),
            Self::Bipolar(w) => w.storage_bytes(),
            Self::Mixed(w) => w.storage_bytes(),
            Self::Lut(w) => w.storage_bytes(),
        }
    }
}
