//! `lowbit schemes`: the weight schemes lowbit can quantize to, with their storage cost.

use crate::util::{CliError, CliResult, emit};
use comfy_table::{CellAlignment, Table, presets};
use lowbit_core::{Granularity, SchemeKind, WeightScheme};
use serde::Serialize;

/// Arguments of `lowbit schemes`.
#[derive(clap::Args)]
pub struct SchemesArgs {
    /// Row length K used for per-channel and per-row costs (metadata amortised over K weights).
    #[arg(short, long, default_value_t = 4096)]
    pub k: usize,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

struct Family {
    kind: SchemeKind,
    name: &'static str,
    bits: &'static [u32],
    per_channel: bool,
    metadata: &'static str,
    dequant: &'static str,
}

const FAMILIES: [Family; 5] = [
    Family {
        kind: SchemeKind::Int { symmetric: true },
        name: "int",
        bits: &[2, 3, 4, 5, 6, 7, 8],
        per_channel: true,
        metadata: "f16 scale per group (zero point implied)",
        dequant: "(q - 2^(b-1)) * s",
    },
    Family {
        kind: SchemeKind::Int { symmetric: false },
        name: "int-asym",
        bits: &[2, 3, 4, 5, 6, 7, 8],
        per_channel: true,
        metadata: "f16 scale + u8 zero point per group",
        dequant: "(q - z) * s",
    },
    Family {
        kind: SchemeKind::Bipolar,
        name: "bipolar",
        bits: &[1, 2, 3, 4, 5, 6, 7, 8],
        per_channel: true,
        metadata: "f32 scale per group, bit planes",
        dequant: "fma(sum (2u_i - 1) 2^i, scale, offset)",
    },
    Family {
        kind: SchemeKind::Mixed,
        name: "mixed",
        bits: &[3, 4],
        per_channel: false,
        metadata: "u8 group scale + 2-bit datatype selector per group, f16 per row",
        dequant: "grid[sel][q] * (q_g * s_ch)",
    },
    Family {
        kind: SchemeKind::Nf4,
        name: "nf4",
        bits: &[4],
        per_channel: true,
        metadata: "f16 absmax per group",
        dequant: "NF4[q] * absmax",
    },
];

#[derive(Serialize)]
struct Row {
    family: &'static str,
    bits: u32,
    example: String,
    /// Bits per weight including metadata, for g32, g64, g128 and per-channel (null where unsupported).
    bits_per_weight: [Option<f64>; 4],
    metadata: &'static str,
    dequantization: &'static str,
}

/// Runs `lowbit schemes`.
pub fn run(args: SchemesArgs) -> CliResult<()> {
    if args.k == 0 || !args.k.is_multiple_of(128) {
        return Err(CliError(format!("--k {} must be a positive multiple of 128 (the largest group)", args.k)));
    }
    let grans = [Granularity::Group(32), Granularity::Group(64), Granularity::Group(128), Granularity::PerChannel];
    let mut rows = Vec::new();
    for f in &FAMILIES {
        for &bits in f.bits {
            let bpw = grans.map(|g| {
                let s = WeightScheme { kind: f.kind, bits, granularity: g };
                (s.validate().is_ok() && (f.per_channel || g != Granularity::PerChannel))
                    .then(|| s.bits_per_weight(args.k))
            });
            let example = WeightScheme { kind: f.kind, bits, granularity: Granularity::Group(128) }.to_string();
            rows.push(Row {
                family: f.name,
                bits,
                example,
                bits_per_weight: bpw,
                metadata: f.metadata,
                dequantization: f.dequant,
            });
        }
    }
    if args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| CliError(format!("JSON output: {e}")))?;
        return emit(&format!("{text}\n"));
    }
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table.set_header(vec!["scheme (g128 shown)", "bits", "g32", "g64", "g128", "pc", "metadata", "dequantization"]);
    for r in &rows {
        let mut cells = vec![r.example.clone(), r.bits.to_string()];
        cells.extend(r.bits_per_weight.iter().map(|b| b.map_or_else(|| "-".into(), |v| format!("{v:.3}"))));
        cells.push(r.metadata.into());
        cells.push(r.dequantization.into());
        table.add_row(cells);
    }
    for i in 1..6 {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let out = format!(
        "Weight schemes: w<bits>-<family>[-asym]-g<32|64|128> or -pc (per channel). Columns g32..pc give storage \
         bits per weight including all metadata, at K = {} (per-row metadata amortised over K).\n{table}\n\
         Custom lookup tables (w<b>-lut-*) are available through the library API only (the table is not part of the \
         name).\n",
        args.k
    );
    emit(&out)
}
