//! Bit packing shared by every format (layouts in `docs/formats.md`).
//!
//! - **Row bitstreams**: each row of `b`-bit codes is an LSB-first stream; code `k` occupies stream bits
//!   `[k·b, k·b + b)`, stream bit `j` is bit `j % 32` of word `j / 32`, and every row starts on a fresh `u32`.
//! - **Bit planes**: plane `i` of a `[rows, k]` code matrix holds bit `i` of every code, 32 consecutive
//!   columns per word (column `k` → bit `k % 32` of word `k / 32`), laid out `[bits][rows][ceil(k/32)]`.

/// `u32` words per row of `k` codes of `bits` bits in a row bitstream.
pub fn words_per_row(k: usize, bits: u32) -> usize {
    (k * bits as usize).div_ceil(32)
}

/// Packs a row-major `[rows, k]` matrix of codes (each `< 2^bits`) into row bitstreams.
///
/// # Panics
/// If `codes.len()` is not a multiple of `k` or `bits` is not in 1..=8; callers validate first.
pub fn pack_rows(codes: &[u8], k: usize, bits: u32) -> Vec<u32> {
    assert!((1..=8).contains(&bits) && k > 0 && codes.len().is_multiple_of(k));
    let rows = codes.len() / k;
    let wpr = words_per_row(k, bits);
    let mut out = vec![0u32; rows * wpr];
    let mask = (1u32 << bits) - 1;
    for (r, row) in codes.chunks_exact(k).enumerate() {
        let dst = &mut out[r * wpr..(r + 1) * wpr];
        for (i, &c) in row.iter().enumerate() {
            let c = c as u32 & mask;
            let bit = i * bits as usize;
            let (w, s) = (bit / 32, bit % 32);
            dst[w] |= c << s;
            if s + bits as usize > 32 {
                dst[w + 1] |= c >> (32 - s);
            }
        }
    }
    out
}

/// Extracts code `col` of row `row` from row bitstreams (the inverse of [`pack_rows`] for one element).
#[inline]
pub fn get_code(words: &[u32], k: usize, bits: u32, row: usize, col: usize) -> u8 {
    let wpr = words_per_row(k, bits);
    let bit = col * bits as usize;
    let (w, s) = (row * wpr + bit / 32, bit % 32);
    let mut v = words[w] >> s;
    if s + bits as usize > 32 {
        v |= words[w + 1] << (32 - s);
    }
    (v & ((1u32 << bits) - 1)) as u8
}

/// Unpacks row bitstreams back to one code per byte, row-major `[rows, k]`.
pub fn unpack_rows(words: &[u32], rows: usize, k: usize, bits: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * k);
    for r in 0..rows {
        for c in 0..k {
            out.push(get_code(words, k, bits, r, c));
        }
    }
    out
}

/// Packs `[rows, k]` codes (each `< 2^bits`) into bit planes `[bits][rows][ceil(k/32)]`.
///
/// # Panics
/// If `codes.len()` is not a multiple of `k` or `bits` is not in 1..=8; callers validate first.
pub fn pack_planes(codes: &[u8], k: usize, bits: u32) -> Vec<u32> {
    assert!((1..=8).contains(&bits) && k > 0 && codes.len().is_multiple_of(k));
    let rows = codes.len() / k;
    let wpr = k.div_ceil(32);
    let mut out = vec![0u32; bits as usize * rows * wpr];
    for (r, row) in codes.chunks_exact(k).enumerate() {
        for (c, &code) in row.iter().enumerate() {
            for p in 0..bits as usize {
                if (code >> p) & 1 == 1 {
                    out[(p * rows + r) * wpr + c / 32] |= 1 << (c % 32);
                }
            }
        }
    }
    out
}

/// Code of element `(row, col)` read back from bit planes.
#[inline]
pub fn get_plane_code(planes: &[u32], rows: usize, k: usize, bits: u32, row: usize, col: usize) -> u8 {
    let wpr = k.div_ceil(32);
    let mut u = 0u8;
    for p in 0..bits as usize {
        u |= (((planes[(p * rows + row) * wpr + col / 32] >> (col % 32)) & 1) as u8) << p;
    }
    u
}

/// Unpacks bit planes to one code per byte, row-major `[rows, k]`.
pub fn unpack_planes(planes: &[u32], rows: usize, k: usize, bits: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * k);
    for r in 0..rows {
        for c in 0..k {
            out.push(get_plane_code(planes, rows, k, bits, r, c));
        }
    }
    out
}

/// Per-row popcount of every plane, `[bits][rows]`: the `r` terms of the AND-popcount bipolar dot product
/// (`±1·±1` dot = `4·popc(a∧b) − 2·popc(a) − 2·popc(b) + K`).
pub fn plane_popcounts(planes: &[u32], rows: usize, k: usize, bits: u32) -> Vec<u32> {
    let wpr = k.div_ceil(32);
    (0..bits as usize * rows).map(|pr| planes[pr * wpr..(pr + 1) * wpr].iter().map(|w| w.count_ones()).sum()).collect()
}

/// Index of the first row whose bitstream has a set bit past its last code (`None` if every row's tail
/// padding is zero). Kernels never read those bits, but a checkpoint or hand-built weight with garbage
/// there is corrupt, and comparing weights field by field must not depend on it.
pub fn first_dirty_row_tail(words: &[u32], rows: usize, k: usize, bits: u32) -> Option<usize> {
    let wpr = words_per_row(k, bits);
    let used = k * bits as usize - (wpr - 1) * 32; // bits used in the last word, 1..=32
    if used == 32 || wpr == 0 {
        return None;
    }
    let mask = !0u32 << used;
    (0..rows).find(|&r| words.get(r * wpr + wpr - 1).is_some_and(|w| w & mask != 0))
}
