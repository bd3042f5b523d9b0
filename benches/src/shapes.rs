//! Layer shapes: `benches/shapes/*.csv` (columns `model,layer,n,k`; `n` = output features = rows
//! of W, `k` = input features), embedded in the binary so it runs from any directory.
//!
//! Selection ([`select`]): `acceptance` (the four shapes every kernel family reports), `all`
//! (every distinct shape of every file), or a comma-separated list whose items are `NxK`
//! (e.g. `4096x11008`) or a model name from the files (e.g. `llama-2-70b`, all its shapes).
//! Layers of equal `(n, k)` are merged into one [`Shape`] that remembers every layer it stands for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// The shape files compiled into the binary: `(file name, contents)`.
pub const BUILTIN_FILES: &[(&str, &str)] =
    &[("llama.csv", include_str!("../shapes/llama.csv")), ("mamba2.csv", include_str!("../shapes/mamba2.csv"))];

/// The default "acceptance" set `(n, k)`: Llama-2-70B gate/up and down, Llama-2-7B gate/up, and
/// 4096².
pub const ACCEPTANCE: [(usize, usize); 4] = [(28672, 8192), (8192, 28672), (11008, 4096), (4096, 4096)];

/// The two shapes of `--quick` (smoke tests): 4096² and Llama-2-7B gate/up.
pub const QUICK: [(usize, usize); 2] = [(4096, 4096), (11008, 4096)];

/// One line of a shape file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeRow {
    /// Model, e.g. `llama-2-7b`.
    pub model: String,
    /// Layer, e.g. `gate_proj`.
    pub layer: String,
    /// Output features (rows of W).
    pub n: usize,
    /// Input features (columns of W).
    pub k: usize,
}

/// A distinct GEMM weight shape `W[N, K]` and the layers that have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// `model: layer/layer` labels of the layers with this shape (empty for ad-hoc shapes).
    pub layers: Vec<String>,
}

impl Shape {
    /// `NxK`.
    pub fn id(&self) -> String {
        format!("{}x{}", self.n, self.k)
    }

    /// `NxK` followed by its layers, for headings.
    pub fn label(&self) -> String {
        if self.layers.is_empty() { self.id() } else { format!("{} ({})", self.id(), self.layers.join("; ")) }
    }
}

/// Parses one shape file: a `model,layer,n,k` header, then one layer per line; blank lines and
/// lines starting with `#` are skipped. `source` names the file in errors.
pub fn parse_csv(text: &str, source: &str) -> Result<Vec<ShapeRow>> {
    let mut lines =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (hl, header) = lines.next().ok_or_else(|| BenchError::invalid(format!("{source}: empty shape file")))?;
    let cols: Vec<String> = header.split(',').map(|c| c.trim().to_ascii_lowercase()).collect();
    if cols != ["model", "layer", "n", "k"] {
        return Err(BenchError::invalid(format!("{source}:{hl}: header must be 'model,layer,n,k', got '{header}'")));
    }
    let mut rows = Vec::new();
    for (ln, line) in lines {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 4 {
            return Err(BenchError::invalid(format!("{source}:{ln}: expected 4 fields, got {}: '{line}'", f.len())));
        }
        let num = |s: &str, what: &str| -> Result<usize> {
            s.parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| BenchError::invalid(format!("{source}:{ln}: {what} '{s}' is not a positive integer")))
        };
        if f[0].is_empty() || f[1].is_empty() {
            return Err(BenchError::invalid(format!("{source}:{ln}: empty model or layer")));
        }
        rows.push(ShapeRow {
            model: f[0].to_string(),
            layer: f[1].to_string(),
            n: num(f[2], "n")?,
            k: num(f[3], "k")?,
        });
    }
    Ok(rows)
}

/// Every row of the built-in shape files.
pub fn builtin_rows() -> Result<Vec<ShapeRow>> {
    let mut out = Vec::new();
    for (name, text) in BUILTIN_FILES {
        out.extend(parse_csv(text, name)?);
    }
    Ok(out)
}

/// Merges rows of equal `(n, k)` into shapes, in order of first appearance; labels group the
/// layers by model (`llama-2-7b: q_proj/k_proj/v_proj/o_proj`).
pub fn dedup(rows: &[ShapeRow]) -> Vec<Shape> {
    let mut order: Vec<(usize, usize)> = Vec::new();
    // (n, k) -> [(model, [layers])], models in order of appearance.
    type Layers = Vec<(String, Vec<String>)>;
    let mut by_shape: BTreeMap<(usize, usize), Layers> = BTreeMap::new();
    for r in rows {
        let key = (r.n, r.k);
        let models = by_shape.entry(key).or_insert_with(|| {
            order.push(key);
            Vec::new()
        });
        match models.iter_mut().find(|(m, _)| *m == r.model) {
            Some((_, layers)) => {
                if !layers.contains(&r.layer) {
                    layers.push(r.layer.clone());
                }
            }
            None => models.push((r.model.clone(), vec![r.layer.clone()])),
        }
    }
    order
        .into_iter()
        .map(|(n, k)| Shape {
            n,
            k,
            layers: by_shape[&(n, k)].iter().map(|(m, l)| format!("{m}: {}", l.join("/"))).collect(),
        })
        .collect()
}

/// Parses `NxK` (also `N×K`, `N,K` is not accepted: commas separate list items).
pub fn parse_nxk(s: &str) -> Option<(usize, usize)> {
    let lower = s.trim().to_ascii_lowercase().replace('×', "x");
    let (n, k) = lower.split_once('x')?;
    let (n, k) = (n.trim().parse().ok()?, k.trim().parse().ok()?);
    (n > 0 && k > 0).then_some((n, k))
}

/// The shapes `spec` names (see the module documentation), labelled from `rows`.
pub fn select(spec: &str, rows: &[ShapeRow]) -> Result<Vec<Shape>> {
    let all = dedup(rows);
    let find = |n: usize, k: usize| {
        all.iter().find(|s| s.n == n && s.k == k).cloned().unwrap_or(Shape { n, k, layers: Vec::new() })
    };
    let mut out: Vec<Shape> = Vec::new();
    let mut push = |s: Shape| {
        if !out.iter().any(|o| o.n == s.n && o.k == s.k) {
            out.push(s);
        }
    };
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let lower = item.to_ascii_lowercase();
        if lower == "acceptance" {
            ACCEPTANCE.iter().for_each(|&(n, k)| push(find(n, k)));
        } else if lower == "quick" {
            QUICK.iter().for_each(|&(n, k)| push(find(n, k)));
        } else if lower == "all" {
            all.iter().cloned().for_each(&mut push);
        } else if let Some((n, k)) = parse_nxk(&lower) {
            push(find(n, k));
        } else if rows.iter().any(|r| r.model.eq_ignore_ascii_case(&lower)) {
            let model_rows: Vec<ShapeRow> =
                rows.iter().filter(|r| r.model.eq_ignore_ascii_case(&lower)).cloned().collect();
            dedup(&model_rows).into_iter().map(|s| find(s.n, s.k)).for_each(&mut push);
        } else {
            let mut models: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
            models.dedup();
            return Err(BenchError::invalid(format!(
                "shape '{item}': use acceptance, all, quick, NxK (e.g. 4096x11008) or a model ({})",
                models.join(", ")
            )));
        }
    }
    if out.is_empty() {
        return Err(BenchError::invalid("no shapes selected"));
    }
    Ok(out)
}

/// Parses a comma-separated list of positive integers (`--m 1,16,256`).
pub fn parse_usize_list(s: &str, what: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v: usize = p
            .parse()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| BenchError::invalid(format!("{what}: '{p}' is not a positive integer")))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(BenchError::invalid(format!("{what}: empty list")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_files_parse_with_the_documented_shapes() {
        let rows = builtin_rows().unwrap();
        let has = |model: &str, layer: &str, n: usize, k: usize| {
            rows.iter().any(|r| r.model == model && r.layer == layer && r.n == n && r.k == k)
        };
        assert!(has("llama-2-7b", "gate_proj", 11008, 4096));
        assert!(has("llama-2-7b", "down_proj", 4096, 11008));
        assert!(has("llama-2-13b", "up_proj", 13824, 5120));
        assert!(has("llama-2-70b", "k_proj", 1024, 8192));
        assert!(has("llama-2-70b", "down_proj", 8192, 28672));
        assert!(has("llama-3-8b", "gate_proj", 14336, 4096));
        assert!(has("llama-3-8b", "v_proj", 1024, 4096));
        // Mamba-2 in_proj = 2 d_inner + 2 ngroups d_state + nheads.
        assert!(has("mamba2-2.7b", "in_proj", 2 * 5120 + 2 * 128 + 80, 2560));
        assert!(has("mamba2-2.7b", "out_proj", 2560, 5120));
        assert!(has("mamba2-8b", "in_proj", 2 * 8192 + 2 * 8 * 128 + 128, 4096));
        assert!(has("mamba2-8b", "out_proj", 4096, 8192));
        // Every K is a multiple of 128 (group size) in the built-in files.
        assert!(rows.iter().all(|r| r.k % 128 == 0 && r.n % 16 == 0), "{rows:?}");
    }

    #[test]
    fn csv_errors_name_the_line() {
        assert!(parse_csv("", "x.csv").is_err());
        assert!(parse_csv("model,layer,k,n\n", "x.csv").unwrap_err().to_string().contains("header"));
        let e = parse_csv("model,layer,n,k\n# c\nm,l,12,abc\n", "x.csv").unwrap_err().to_string();
        assert!(e.contains("x.csv:3") && e.contains("abc"), "{e}");
        assert!(parse_csv("model,layer,n,k\nm,l,12\n", "x.csv").is_err());
        assert!(parse_csv("model,layer,n,k\nm,l,0,8\n", "x.csv").is_err());
        assert!(parse_csv("model,layer,n,k\n,l,4,8\n", "x.csv").is_err());
        let ok = parse_csv(" model , layer , n , k \n\n m , l , 16 , 32 \n", "x.csv").unwrap();
        assert_eq!(ok, vec![ShapeRow { model: "m".into(), layer: "l".into(), n: 16, k: 32 }]);
    }

    #[test]
    fn dedup_merges_layers_by_model() {
        let rows = builtin_rows().unwrap();
        let shapes = dedup(&rows);
        let sq = shapes.iter().find(|s| s.n == 4096 && s.k == 4096).unwrap();
        assert_eq!(sq.layers, vec!["llama-2-7b: q_proj/k_proj/v_proj/o_proj", "llama-3-8b: q_proj/o_proj"]);
        let mut ids: Vec<String> = shapes.iter().map(Shape::id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicates after dedup");
    }

    #[test]
    fn selection_specs() {
        let rows = builtin_rows().unwrap();
        let acc = select("acceptance", &rows).unwrap();
        assert_eq!(acc.iter().map(|s| (s.n, s.k)).collect::<Vec<_>>(), ACCEPTANCE.to_vec());
        assert!(acc[0].layers[0].starts_with("llama-2-70b"));
        let mixed = select("4096x11008, llama-3-8b ,4096X4096", &rows).unwrap();
        assert_eq!(
            mixed.iter().map(|s| (s.n, s.k)).collect::<Vec<_>>(),
            vec![(4096, 11008), (4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336)]
        );
        let adhoc = select("100x256", &rows).unwrap();
        assert_eq!(adhoc, vec![Shape { n: 100, k: 256, layers: vec![] }]);
        assert_eq!(adhoc[0].label(), "100x256");
        let all = select("all", &rows).unwrap();
        assert_eq!(all.len(), dedup(&rows).len());
        assert!(select("gpt-5", &rows).unwrap_err().to_string().contains("llama-2-7b"));
        assert!(select(" , ", &rows).is_err());
        assert_eq!(select("quick", &rows).unwrap().len(), 2);
    }

    #[test]
    fn nxk_and_lists() {
        assert_eq!(parse_nxk("28672x8192"), Some((28672, 8192)));
        assert_eq!(parse_nxk("8×16"), Some((8, 16)));
        assert_eq!(parse_nxk("0x16"), None);
        assert_eq!(parse_nxk("x16"), None);
        assert_eq!(parse_usize_list("1, 16,256,16", "--m").unwrap(), vec![1, 16, 256]);
        assert!(parse_usize_list("1,0", "--m").is_err());
        assert!(parse_usize_list("", "--m").is_err());
    }
}
