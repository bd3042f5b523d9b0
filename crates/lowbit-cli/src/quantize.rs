//! `lowbit quantize`: offline round-to-nearest quantization of every Linear weight of a model on the CPU,
//! with a per-layer error and size report, written as a lowbit checkpoint.

use crate::util::{CliError, CliResult, emit, human_bytes, human_count, matches_filter, note, parse_scheme, sqnr_str};
use clap::ValueEnum;
use comfy_table::{CellAlignment, Table, presets};
use indicatif::{ProgressBar, ProgressStyle};
use lowbit_core::checkpoint::{self, Checkpoint, PassthroughTensor, QuantizedLayer};
use lowbit_core::model::{self, FloatModel, FloatTensor, ModelFormat};
use lowbit_core::{Granularity, QuantizedWeight, WeightScheme, metrics, quantize};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// Arguments of `lowbit quantize`.
#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// Model to quantize: a .safetensors (F32/F16/BF16) or .gguf file. Default: all-MiniLM-L6-v2 (fp32) as
    /// installed by scripts/setup under .tools/models (or $LOWBIT_DEFAULT_MODEL).
    pub model: Option<PathBuf>,
    /// Weight scheme, e.g. w4-int-g128, w4-int-asym-g64, w8-int-pc, w3-mixed-g128, w4-nf4-g64, w2-bipolar-g128
    /// (see `lowbit schemes`).
    #[arg(short, long, default_value = "w4-int-g128", value_parser = parse_scheme)]
    pub scheme: WeightScheme,
    /// Output checkpoint. Default: ./MODEL.SCHEME.lowbit.safetensors in the current directory.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Quantize only the Linear weights whose name contains FILTER, or matches it as a glob with * and ?
    /// (repeatable; any match selects). Other weights are stored unquantized.
    #[arg(long = "layers", value_name = "FILTER")]
    pub layers: Vec<String>,
    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Worker threads. Default: the number of available cores.
    #[arg(short = 'j', long, value_name = "N")]
    pub threads: Option<usize>,
    /// Dtype of the unquantized tensors (norms, embeddings, biases) stored in the checkpoint.
    #[arg(long, value_enum, default_value_t = PassthroughDtype::F32)]
    pub passthrough_dtype: PassthroughDtype,
    /// Store only the quantized layers, not the unquantized tensors.
    #[arg(long)]
    pub no_passthrough: bool,
}

/// Storage dtype of passthrough tensors.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PassthroughDtype {
    /// Lossless for f32 models.
    F32,
    /// Half the size; rounds to nearest even.
    F16,
}

/// One quantized layer's numbers, as printed and as emitted with `--json`.
#[derive(Debug, Clone, Serialize)]
struct LayerReport {
    name: String,
    n: usize,
    k: usize,
    source_dtype: String,
    source_bytes: usize,
    f16_bytes: usize,
    quantized_bytes: usize,
    bits_per_weight: f64,
    /// `null` when the quantization is exact (infinite SQNR).
    sqnr_db: Option<f64>,
    rel_error: f64,
    max_abs_error: f64,
    #[serde(skip)]
    signal: f64,
}

#[derive(Serialize)]
struct Skipped {
    name: String,
    reason: String,
}

#[derive(Serialize)]
struct Totals {
    layers: usize,
    weights: usize,
    source_bytes: usize,
    f16_bytes: usize,
    quantized_bytes: usize,
    bits_per_weight: f64,
    sqnr_db: Option<f64>,
    rel_error: f64,
}

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    model_format: String,
    scheme: String,
    output: String,
    output_bytes: u64,
    layers: &'a [LayerReport],
    totals: Totals,
    skipped: Vec<Skipped>,
    passthrough_tensors: usize,
    passthrough_bytes: usize,
    not_stored: Vec<String>,
}

/// Runs `lowbit quantize`.
pub fn run(args: QuantizeArgs) -> CliResult<()> {
    let started = Instant::now();
    let (model_path, is_default) = match &args.model {
        Some(p) => (p.clone(), false),
        None => (crate::util::default_model()?, true),
    };
    if !model_path.is_file() {
        return Err(CliError(format!("model file {} does not exist or is not a file", model_path.display())));
    }
    let scheme = args.scheme;
    let threads = match args.threads {
        Some(0) => return Err(CliError("--threads must be at least 1".into())),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let output = match &args.output {
        Some(o) => o.clone(),
        None => PathBuf::from(format!("{}.{scheme}.lowbit.safetensors", output_stem(&model_path, is_default))),
    };
    if same_file(&output, &model_path) {
        return Err(CliError(format!("output {} would overwrite the input model", output.display())));
    }

    note(&format!("reading {}", model_path.display()));
    let model = model::load(&model_path)?;
    if model.format == ModelFormat::Gguf
        && model.tensors.iter().any(|t| !matches!(t.source_dtype.as_str(), "F32" | "F16" | "BF16"))
    {
        note(
            "note: this GGUF file is already quantized (e.g. Q4_1); errors are measured against its dequantized \
             weights, not against the original float model",
        );
    }

    // Which tensors to quantize.
    let selection = model.linear_selection();
    let mut skipped: Vec<Skipped> =
        selection.skipped.iter().map(|s| Skipped { name: s.name.clone(), reason: s.reason.to_string() }).collect();
    let mut jobs: Vec<&FloatTensor> = Vec::new();
    for name in &selection.linear {
        let Some(t) = model.get(name) else { continue };
        let k = t.shape[1];
        if !args.layers.is_empty() && !args.layers.iter().any(|f| matches_filter(name, f)) {
            skipped.push(Skipped { name: name.clone(), reason: "excluded by --layers".into() });
        } else if let Granularity::Group(g) = scheme.granularity
            && !k.is_multiple_of(g)
        {
            skipped.push(Skipped {
                name: name.clone(),
                reason: format!("K = {k} is not a multiple of the group size {g} of {scheme}"),
            });
        } else {
            jobs.push(t);
        }
    }
    let incompatible = skipped.iter().filter(|s| s.reason.contains("group size")).count();
    if incompatible > 0 {
        note(&format!(
            "warning: {incompatible} Linear weight(s) have K not divisible by the group size of {scheme}; they are \
             stored unquantized (a smaller group, e.g. g32 or g64, fits them)"
        ));
    }
    if jobs.is_empty() {
        return Err(CliError(format!(
            "nothing to quantize in {}: no Linear weight is selected{}",
            model_path.display(),
            if args.layers.is_empty() { "" } else { " by --layers" }
        )));
    }

    let results = quantize_all(&jobs, &scheme, threads.min(jobs.len()))?;
    let (reports, weights): (Vec<LayerReport>, Vec<QuantizedWeight>) = results.into_iter().unzip();

    // Build and save the checkpoint: quantized layers in model order, every other float tensor as passthrough.
    let quantized_names: Vec<String> = reports.iter().map(|r| r.name.clone()).collect();
    let not_stored: Vec<String> = model.non_float.iter().map(|t| format!("{} ({})", t.name, t.dtype)).collect();
    let ckpt = build_checkpoint(model, &quantized_names, weights, &args, &scheme, &model_path)?;
    let passthrough_tensors = ckpt.passthrough.len();
    let passthrough_bytes: usize = ckpt
        .passthrough
        .iter()
        .map(|t| t.data.len() * if matches!(t.data, checkpoint::PassthroughData::F32(_)) { 4 } else { 2 })
        .sum();
    checkpoint::save(&output, &ckpt)?;
    let output_bytes = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);

    let totals = totals(&reports);
    let report = Report {
        model: model_path.display().to_string(),
        model_format: ckpt.source.get("model_format").cloned().unwrap_or_default(),
        scheme: scheme.to_string(),
        output: output.display().to_string(),
        output_bytes,
        layers: &reports,
        totals,
        skipped,
        passthrough_tensors,
        passthrough_bytes,
        not_stored,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| CliError(format!("JSON output: {e}")))?;
        emit(&format!("{text}\n"))?;
    } else {
        emit(&render(&report, args.passthrough_dtype, args.no_passthrough))?;
    }
    note(&format!("done in {:.1} s", started.elapsed().as_secs_f64()));
    Ok(())
}

/// `<stem>` for the default output name: the file stem, or the nearest directory name that is not `model`
/// (Hugging Face layouts are `<name>/model.safetensors`); the default model is `all-minilm-l6-v2`.
fn output_stem(model: &Path, is_default: bool) -> String {
    if is_default {
        return "all-minilm-l6-v2".into();
    }
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    if stem != "model" {
        return stem;
    }
    model
        .ancestors()
        .skip(1)
        .filter_map(|a| a.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .find(|n| n != "model")
        .unwrap_or(stem)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Quantizes every job on `threads` scoped worker threads, with a progress bar on stderr (hidden when stderr is
/// not a terminal). Results come back in job order; the first error stops the remaining work.
fn quantize_all(
    jobs: &[&FloatTensor],
    scheme: &WeightScheme,
    threads: usize,
) -> CliResult<Vec<(LayerReport, QuantizedWeight)>> {
    let bar = ProgressBar::new(jobs.len() as u64);
    let style = ProgressStyle::with_template("{spinner} quantizing [{bar:32}] {pos}/{len} layers  {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(t) = jobs.get(i) else { break };
            let r = quantize_one(t, scheme);
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            bar.set_message(t.name.clone());
            bar.inc(1);
            done.push((i, r));
        }
        done
    };
    let per_thread: Vec<std::thread::Result<Vec<_>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    bar.finish_and_clear();
    let mut slots: Vec<Option<(LayerReport, QuantizedWeight)>> = (0..jobs.len()).map(|_| None).collect();
    let mut first_error: Option<(usize, CliError)> = None;
    for done in per_thread {
        let done = done.map_err(|_| CliError("internal error: a quantization worker panicked".into()))?;
        for (i, r) in done {
            match r {
                Ok(v) => slots[i] = Some(v),
                Err(e) if first_error.as_ref().is_none_or(|(j, _)| i < *j) => first_error = Some((i, e)),
                Err(_) => {}
            }
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    slots
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| CliError("internal error: a layer was not quantized".into()))
}

fn quantize_one(t: &FloatTensor, scheme: &WeightScheme) -> CliResult<(LayerReport, QuantizedWeight)> {
    let ctx = |e: lowbit_core::LowbitError| CliError(format!("quantizing '{}': {e}", t.name));
    let w = t.matrix().map_err(ctx)?;
    let (n, k) = w.dim();
    let q = quantize(w, scheme).map_err(ctx)?;
    let deq = q.dequantize();
    let sqnr = metrics::sqnr_db(w, deq.view()).map_err(ctx)?;
    let rel_error = metrics::rel_fro_error(w, deq.view()).map_err(ctx)?;
    let max_abs_error = metrics::max_abs_error(w, deq.view()).map_err(ctx)?;
    let signal = w.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let quantized_bytes = q.storage_bytes();
    let report = LayerReport {
        name: t.name.clone(),
        n,
        k,
        source_dtype: t.source_dtype.clone(),
        source_bytes: t.source_bytes,
        f16_bytes: n * k * 2,
        quantized_bytes,
        bits_per_weight: quantized_bytes as f64 * 8.0 / (n * k) as f64,
        sqnr_db: sqnr.is_finite().then_some(sqnr),
        rel_error,
        max_abs_error,
        signal,
    };
    Ok((report, q))
}

fn build_checkpoint(
    model: FloatModel,
    quantized: &[String],
    weights: Vec<QuantizedWeight>,
    args: &QuantizeArgs,
    scheme: &WeightScheme,
    model_path: &Path,
) -> CliResult<Checkpoint> {
    let mut source = BTreeMap::new();
    source.insert("model".to_string(), model_path.display().to_string());
    source.insert("model_format".to_string(), model.format.to_string());
    source.insert("scheme".to_string(), scheme.to_string());
    source.insert("tool".to_string(), format!("lowbit-cli {}", env!("CARGO_PKG_VERSION")));
    source.insert("quantizer".to_string(), "round-to-nearest".to_string());
    if let Some(arch) = model.metadata.get("general.architecture") {
        source.insert("architecture".to_string(), arch.clone());
    }
    if !args.layers.is_empty() {
        source.insert("layers_filter".to_string(), args.layers.join(" "));
    }
    let layers = quantized.iter().cloned().zip(weights).map(|(name, weight)| QuantizedLayer { name, weight }).collect();
    let mut passthrough = Vec::new();
    if !args.no_passthrough {
        for t in model.tensors {
            if quantized.contains(&t.name) {
                continue;
            }
            passthrough.push(match args.passthrough_dtype {
                PassthroughDtype::F32 => PassthroughTensor::f32(t.name, t.shape, t.data),
                PassthroughDtype::F16 => PassthroughTensor::f16_from_f32(t.name, t.shape, &t.data),
            });
        }
    }
    Ok(Checkpoint { layers, passthrough, source })
}

fn totals(reports: &[LayerReport]) -> Totals {
    let weights: usize = reports.iter().map(|r| r.n * r.k).sum();
    let signal: f64 = reports.iter().map(|r| r.signal).sum();
    let noise: f64 = reports.iter().map(|r| r.rel_error * r.rel_error * r.signal).sum();
    let quantized_bytes: usize = reports.iter().map(|r| r.quantized_bytes).sum();
    Totals {
        layers: reports.len(),
        weights,
        source_bytes: reports.iter().map(|r| r.source_bytes).sum(),
        f16_bytes: reports.iter().map(|r| r.f16_bytes).sum(),
        quantized_bytes,
        bits_per_weight: quantized_bytes as f64 * 8.0 / weights.max(1) as f64,
        sqnr_db: (noise > 0.0).then(|| 10.0 * (signal / noise).log10()),
        rel_error: if noise > 0.0 { (noise / signal).sqrt() } else { 0.0 },
    }
}

fn render(r: &Report<'_>, pass_dtype: PassthroughDtype, no_passthrough: bool) -> String {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table.set_header(vec![
        "layer",
        "N×K",
        "scheme",
        "SQNR dB",
        "rel. error",
        "source bytes",
        "f16 bytes",
        "packed bytes",
        "bits/w",
        "vs f16",
    ]);
    let ratio = |f16: usize, q: usize| format!("{:.2}×", f16 as f64 / q.max(1) as f64);
    for l in r.layers {
        table.add_row(vec![
            l.name.clone(),
            format!("{}×{}", l.n, l.k),
            r.scheme.clone(),
            sqnr_str(l.sqnr_db.unwrap_or(f64::INFINITY)),
            format!("{:.3e}", l.rel_error),
            format!("{} ({})", human_bytes(l.source_bytes as u64), l.source_dtype),
            human_bytes(l.f16_bytes as u64),
            human_bytes(l.quantized_bytes as u64),
            format!("{:.3}", l.bits_per_weight),
            ratio(l.f16_bytes, l.quantized_bytes),
        ]);
    }
    let t = &r.totals;
    table.add_row(vec![
        format!("TOTAL ({} layers)", t.layers),
        format!("{} weights", human_count(t.weights as u64)),
        r.scheme.clone(),
        sqnr_str(t.sqnr_db.unwrap_or(f64::INFINITY)),
        format!("{:.3e}", t.rel_error),
        human_bytes(t.source_bytes as u64),
        human_bytes(t.f16_bytes as u64),
        human_bytes(t.quantized_bytes as u64),
        format!("{:.3}", t.bits_per_weight),
        ratio(t.f16_bytes, t.quantized_bytes),
    ]);
    for i in 3..10 {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = format!("{table}\n");
    out.push_str(&format!("model:       {} ({})\n", r.model, r.model_format));
    out.push_str(&format!(
        "quantized:   {} Linear weights, {} weights: {} as stored in the model, {} as f16 -> {} packed \
         ({:.3} bits/weight, {:.2}x smaller than f16)\n",
        t.layers,
        human_count(t.weights as u64),
        human_bytes(t.source_bytes as u64),
        human_bytes(t.f16_bytes as u64),
        human_bytes(t.quantized_bytes as u64),
        t.bits_per_weight,
        t.f16_bytes as f64 / t.quantized_bytes.max(1) as f64
    ));
    out.push_str("             (source bytes: the tensor's size in the input file; f16 bytes: 2 bytes per weight; packed: codes + scales + other metadata)\n");
    if !r.skipped.is_empty() {
        let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &r.skipped {
            let key = if s.reason.contains("group size") {
                "Linear, K not divisible by the group size"
            } else if s.reason.contains("--layers") {
                "Linear, excluded by --layers"
            } else {
                "not a Linear weight (embedding, norm, bias, ...)"
            };
            *by_reason.entry(key).or_default() += 1;
        }
        let parts: Vec<String> = by_reason.iter().map(|(k, v)| format!("{v} {k}")).collect();
        out.push_str(&format!("left as is:  {}\n", parts.join("; ")));
    }
    if no_passthrough {
        out.push_str("passthrough: none (--no-passthrough)\n");
    } else {
        let dtype = if pass_dtype == PassthroughDtype::F32 { "f32" } else { "f16" };
        out.push_str(&format!(
            "passthrough: {} unquantized tensors, {} ({dtype})\n",
            r.passthrough_tensors,
            human_bytes(r.passthrough_bytes as u64)
        ));
    }
    if !r.not_stored.is_empty() {
        out.push_str(&format!("not stored:  {} (integer buffers)\n", r.not_stored.join(", ")));
    }
    out.push_str(&format!("checkpoint:  {} ({})\n", r.output, human_bytes(r.output_bytes)));
    out
}
