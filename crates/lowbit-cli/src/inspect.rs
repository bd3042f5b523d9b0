//! `lowbit inspect`: describes a lowbit checkpoint (verifying every checksum) or a plain safetensors / GGUF
//! model (tensor list, dtypes, and which tensors `lowbit quantize` would quantize).

use crate::util::{CliError, CliResult, emit, human_bytes, human_count, shape_str};
use comfy_table::{CellAlignment, Table, presets};
use lowbit_core::checkpoint::{self, CheckpointSummary};
use lowbit_core::model::{self, ModelDescription, ModelFormat};
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `lowbit inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// A lowbit checkpoint (*.lowbit.safetensors), or a .safetensors / .gguf model.
    pub file: PathBuf,
    /// Print the description as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not verify the checkpoint's tensor checksums (the header is still validated).
    #[arg(long)]
    pub no_verify: bool,
}

/// Runs `lowbit inspect`.
pub fn run(args: InspectArgs) -> CliResult<()> {
    let path = &args.file;
    if !path.is_file() {
        return Err(CliError(format!("{} does not exist or is not a file", path.display())));
    }
    let format = model::detect_format(path)?;
    if format == ModelFormat::Safetensors && checkpoint::is_checkpoint(path) {
        inspect_checkpoint(&args)
    } else {
        inspect_model(&args)
    }
}

#[derive(Serialize)]
struct CheckpointJson<'a> {
    kind: &'static str,
    #[serde(flatten)]
    summary: &'a CheckpointSummary,
    checksums: &'static str,
}

fn inspect_checkpoint(args: &InspectArgs) -> CliResult<()> {
    let summary = checkpoint::inspect(&args.file)?;
    // Full validation: every tensor's CRC-32, dtypes, sizes and the weights themselves.
    let checksums = if args.no_verify {
        "not verified (--no-verify)"
    } else {
        checkpoint::load(&args.file)?;
        "ok"
    };
    if args.json {
        let j = CheckpointJson { kind: "lowbit checkpoint", summary: &summary, checksums };
        let text = serde_json::to_string_pretty(&j).map_err(|e| CliError(format!("JSON output: {e}")))?;
        return emit(&format!("{text}\n"));
    }
    let s = &summary;
    let mut out = format!(
        "lowbit checkpoint {} ({})\nformat version:  {}\n",
        s.path.display(),
        human_bytes(s.file_bytes),
        s.version
    );
    for (k, v) in &s.source {
        out.push_str(&format!("source.{k}: {v}\n"));
    }
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table.set_header(vec!["layer", "scheme", "N×K", "tensors", "bytes", "bits/w", "vs f16"]);
    for l in &s.layers {
        let fields: Vec<&str> = l.tensors.iter().map(|t| t.field.as_str()).collect();
        let weights = (l.n * l.k) as f64;
        table.add_row(vec![
            l.name.clone(),
            l.scheme.clone(),
            format!("{}×{}", l.n, l.k),
            fields.join(", "),
            human_bytes(l.bytes as u64),
            format!("{:.3}", l.bytes as f64 * 8.0 / weights),
            format!("{:.2}×", weights * 2.0 / l.bytes.max(1) as f64),
        ]);
    }
    let weights = s.quantized_weights();
    let qbytes = s.quantized_bytes();
    table.add_row(vec![
        format!("TOTAL ({} layers)", s.layers.len()),
        String::new(),
        format!("{} weights", human_count(weights as u64)),
        String::new(),
        human_bytes(qbytes as u64),
        format!("{:.3}", qbytes as f64 * 8.0 / weights.max(1) as f64),
        format!("{:.2}×", weights as f64 * 2.0 / qbytes.max(1) as f64),
    ]);
    for i in 4..7 {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    if !s.layers.is_empty() {
        out.push_str(&format!("{table}\n"));
    }
    let mut dtypes: std::collections::BTreeMap<&str, usize> = Default::default();
    for t in &s.passthrough {
        *dtypes.entry(t.dtype.as_str()).or_default() += 1;
    }
    let dt: Vec<String> = dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
    out.push_str(&format!(
        "quantized:   {} layers, {} weights, {}\n",
        s.layers.len(),
        human_count(weights as u64),
        human_bytes(qbytes as u64)
    ));
    out.push_str(&format!(
        "passthrough: {} tensors, {} elements, {}{}\n",
        s.passthrough.len(),
        human_count(s.passthrough.iter().map(|t| t.shape.iter().product::<usize>() as u64).sum()),
        human_bytes(s.passthrough_bytes() as u64),
        if dt.is_empty() { String::new() } else { format!(" ({})", dt.join(", ")) }
    ));
    let n_tensors = s.layers.iter().map(|l| l.tensors.len()).sum::<usize>() + s.passthrough.len();
    out.push_str(&format!(
        "checksums:   {checksums}{}\n",
        if checksums == "ok" {
            format!(" (CRC-32 of all {n_tensors} tensors and of the header verified)")
        } else {
            String::new()
        }
    ));
    emit(&out)
}

#[derive(Serialize)]
struct TensorJson<'a> {
    name: &'a str,
    dtype: &'a str,
    shape: &'a [usize],
    bytes: Option<usize>,
    quantize: bool,
    skip_reason: Option<String>,
}

#[derive(Serialize)]
struct ModelJson<'a> {
    kind: &'static str,
    path: String,
    format: String,
    file_bytes: u64,
    metadata: &'a std::collections::BTreeMap<String, String>,
    tensors: Vec<TensorJson<'a>>,
    linear_weights: usize,
    linear_params: usize,
    params: usize,
}

fn inspect_model(args: &InspectArgs) -> CliResult<()> {
    let d: ModelDescription = model::describe(&args.file).map_err(|e| match e {
        lowbit_core::LowbitError::InvalidModel { path, reason } => CliError(format!(
            "{} is neither a lowbit checkpoint nor a readable safetensors / GGUF model: {reason}",
            path.display()
        )),
        other => other.into(),
    })?;
    let sel = d.linear_selection();
    let reason = |name: &str| sel.skipped.iter().find(|s| s.name == name).map(|s| s.reason.to_string());
    let numel = |shape: &[usize]| shape.iter().product::<usize>();
    let params: usize = d.tensors.iter().map(|t| numel(&t.shape)).sum();
    let linear_params: usize = d.tensors.iter().filter(|t| sel.linear.contains(&t.name)).map(|t| numel(&t.shape)).sum();
    if args.json {
        let j = ModelJson {
            kind: "model",
            path: d.path.display().to_string(),
            format: d.format.to_string(),
            file_bytes: d.file_bytes,
            metadata: &d.metadata,
            tensors: d
                .tensors
                .iter()
                .map(|t| TensorJson {
                    name: &t.name,
                    dtype: &t.dtype,
                    shape: &t.shape,
                    bytes: t.bytes,
                    quantize: sel.linear.contains(&t.name),
                    skip_reason: reason(&t.name),
                })
                .collect(),
            linear_weights: sel.linear.len(),
            linear_params,
            params,
        };
        let text = serde_json::to_string_pretty(&j).map_err(|e| CliError(format!("JSON output: {e}")))?;
        return emit(&format!("{text}\n"));
    }
    let mut out = format!(
        "{} model {} ({}): {} tensors, {} parameters\n",
        d.format,
        d.path.display(),
        human_bytes(d.file_bytes),
        d.tensors.len(),
        human_count(params as u64)
    );
    if d.format == ModelFormat::Gguf {
        for key in ["gguf.version", "general.architecture", "general.name", "general.alignment"] {
            if let Some(v) = d.metadata.get(key) {
                out.push_str(&format!("{key}: {v}\n"));
            }
        }
        out.push_str(&format!("({} metadata entries; `--json` lists them all)\n", d.metadata.len()));
    } else if !d.metadata.is_empty() {
        let kv: Vec<String> = d.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("metadata: {}\n", kv.join(", ")));
    }
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table.set_header(vec!["tensor", "dtype", "shape", "bytes", "lowbit quantize"]);
    for t in &d.tensors {
        let q = if sel.linear.contains(&t.name) {
            "yes (Linear)".to_string()
        } else {
            format!("no: {}", reason(&t.name).unwrap_or_default())
        };
        let q = if t.loadable { q } else { format!("no: dtype {} is not converted", t.dtype) };
        table.add_row(vec![
            t.name.clone(),
            t.dtype.clone(),
            shape_str(&t.shape),
            t.bytes.map_or_else(|| "?".into(), |b| human_bytes(b as u64)),
            q,
        ]);
    }
    if let Some(c) = table.column_mut(3) {
        c.set_cell_alignment(CellAlignment::Right);
    }
    out.push_str(&format!("{table}\n"));
    out.push_str(&format!(
        "Linear weights to quantize: {} ({} parameters); other tensors: {}\n",
        sel.linear.len(),
        human_count(linear_params as u64),
        d.tensors.len() - sel.linear.len()
    ));
    emit(&out)
}
