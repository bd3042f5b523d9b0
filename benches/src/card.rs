//! Which card produced a result: a short directory name ("slug") from the device name, and the
//! per-card HBM peak bandwidth the `pct_of_hbm` figures are relative to.
//!
//! H100 and H200 results are always kept apart (`docs/results/h100-sxm/`, `docs/results/h200/`):
//! `h100-baselines.md` warns never to mix the two in one comparison.

/// Peak DRAM bandwidth of a card, with where the number comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HbmPeak {
    /// GB/s (10⁹ bytes per second).
    pub gbps: f64,
    /// Source of the number.
    pub source: &'static str,
}

/// `(slug, name fragments that must all occur (lower case), peak GB/s, source)`, most specific first.
const CARDS: &[(&str, &[&str], f64, &str)] = &[
    // GH200 first: its name also contains "h200".
    ("gh200", &["gh200"], 4000.0, "NVIDIA GH200 datasheet: 4 TB/s HBM3 (96 GB)"),
    ("h200-nvl", &["h200", "nvl"], 4800.0, "NVIDIA H200 NVL datasheet: 4.8 TB/s HBM3e"),
    ("h200", &["h200"], 4800.0, "NVIDIA H200 datasheet: 4.8 TB/s HBM3e"),
    ("h100-nvl", &["h100", "nvl"], 3900.0, "NVIDIA H100 NVL datasheet: 3.9 TB/s HBM3"),
    ("h100-pcie", &["h100", "pcie"], 2039.0, "NVIDIA H100 PCIe 80GB datasheet: 2.0 TB/s HBM2e"),
    (
        "h100-sxm",
        &["h100", "hbm3"],
        3352.0,
        "h100-baselines.md: 2 x 2619 MHz x 5120 bit / 8 = 3352 GB/s (nvidia-smi max memory clock)",
    ),
    ("h100-sxm", &["h100", "sxm"], 3352.0, "h100-baselines.md: 3352 GB/s"),
    ("a100-sxm-80gb", &["a100", "sxm", "80gb"], 2039.0, "NVIDIA A100 datasheet: 2039 GB/s (80GB SXM)"),
    ("a100-pcie-80gb", &["a100", "pcie", "80gb"], 1935.0, "NVIDIA A100 datasheet: 1935 GB/s (80GB PCIe)"),
    ("a100-40gb", &["a100"], 1555.0, "NVIDIA A100 datasheet: 1555 GB/s (40GB)"),
    ("l40s", &["l40s"], 864.0, "NVIDIA L40S datasheet: 864 GB/s GDDR6"),
    ("rtx-4090", &["4090"], 1008.0, "GeForce RTX 4090 specifications: 1008 GB/s GDDR6X"),
];

/// Lower-case ASCII words of `name` joined by `-`, without a leading "nvidia".
fn slugify(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> =
        lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty() && *w != "nvidia").collect();
    if words.is_empty() { "unknown-gpu".to_string() } else { words.join("-") }
}

fn lookup(name: &str) -> Option<&'static (&'static str, &'static [&'static str], f64, &'static str)> {
    let lower = name.to_ascii_lowercase();
    CARDS.iter().find(|(_, frags, _, _)| frags.iter().all(|f| lower.contains(f)))
}

/// Directory name for a device name: `"NVIDIA H100 80GB HBM3"` → `h100-sxm`, `"NVIDIA H200"` →
/// `h200`; an unknown card gets its name in lower-case words (`"NVIDIA RTX A6000"` → `rtx-a6000`).
pub fn card_slug(name: &str) -> String {
    lookup(name).map_or_else(|| slugify(name), |c| c.0.to_string())
}

/// Peak HBM / DRAM bandwidth of the card named `name`, when the table knows it.
pub fn hbm_peak(name: &str) -> Option<HbmPeak> {
    lookup(name).map(|c| HbmPeak { gbps: c.2, source: c.3 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_of_known_and_unknown_cards() {
        assert_eq!(card_slug("NVIDIA H100 80GB HBM3"), "h100-sxm");
        assert_eq!(card_slug("NVIDIA H100 PCIe"), "h100-pcie");
        assert_eq!(card_slug("NVIDIA H100 NVL"), "h100-nvl");
        assert_eq!(card_slug("NVIDIA H200"), "h200");
        assert_eq!(card_slug("NVIDIA H200 NVL"), "h200-nvl");
        assert_eq!(card_slug("NVIDIA GH200 480GB"), "gh200");
        assert_eq!(card_slug("NVIDIA A100-SXM4-80GB"), "a100-sxm-80gb");
        assert_eq!(card_slug("NVIDIA RTX A6000"), "rtx-a6000");
        assert_eq!(card_slug("  "), "unknown-gpu");
        assert_eq!(card_slug("Weird/GPU (rev 2)"), "weird-gpu-rev-2");
    }

    #[test]
    fn hbm_peaks() {
        assert_eq!(hbm_peak("NVIDIA H100 80GB HBM3").unwrap().gbps, 3352.0);
        assert_eq!(hbm_peak("NVIDIA H200").unwrap().gbps, 4800.0);
        assert!(hbm_peak("NVIDIA RTX A6000").is_none());
    }
}
