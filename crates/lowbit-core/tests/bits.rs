//! Bit packing: row bitstreams and bit planes (docs/formats.md, "Code bitstreams" and "Bit planes").

mod common;

use common::*;
use lowbit_core::bits::{
    get_code, get_plane_code, pack_planes, pack_rows, plane_popcounts, unpack_planes, unpack_rows, words_per_row,
};
use rand::Rng;

const KS: [usize; 6] = [1, 3, 31, 33, 97, 4096 + 5];
const ROWS: usize = 3;

fn random_codes(seed: u64, n: usize, bits: u32) -> Vec<u8> {
    let mut r = rng(seed);
    (0..n).map(|_| r.random_range(0..(1u32 << bits)) as u8).collect()
}

#[test]
fn words_per_row_is_ceil_k_bits_over_32() {
    // Hand-computed: ceil(K·b/32).
    let cases = [
        (1, 1, 1),
        (32, 1, 1),
        (33, 1, 2),
        (11, 3, 2), // 33 bits
        (32, 3, 3), // 96 bits
        (7, 5, 2),  // 35 bits
        (16, 6, 3), // 96 bits
        (5, 7, 2),  // 35 bits
        (4, 8, 1),
        (5, 8, 2),
        (4101, 3, 385), // 12303 bits -> 384.47 -> 385
        (97, 7, 22),    // 679 bits -> 21.2 -> 22
    ];
    for (k, b, want) in cases {
        assert_eq!(words_per_row(k, b), want, "K={k} b={b}");
    }
}

#[test]
fn rows_round_trip_bit_exact_all_bits_odd_k() {
    for bits in 1..=8u32 {
        for (i, &k) in KS.iter().enumerate() {
            let codes = random_codes(1000 + 10 * bits as u64 + i as u64, ROWS * k, bits);
            let words = pack_rows(&codes, k, bits);
            assert_eq!(words.len(), ROWS * stream_words(k, bits), "bits={bits} K={k}: word count");
            // Identical to a bit-by-bit packer written from the contract.
            assert_eq!(words, spec_pack_rows(&codes, k, bits), "bits={bits} K={k}: layout");
            assert_eq!(unpack_rows(&words, ROWS, k, bits), codes, "bits={bits} K={k}: round trip");
            for r in 0..ROWS {
                for c in (0..k).step_by(1 + k / 50) {
                    assert_eq!(get_code(&words, k, bits, r, c), codes[r * k + c]);
                    assert_eq!(stream_code(&words, k, bits, r, c), codes[r * k + c] as u32);
                }
            }
        }
    }
}

#[test]
fn rows_tail_bits_are_zero_even_with_all_ones_codes() {
    for bits in 1..=8u32 {
        for &k in &KS {
            let max = ((1u32 << bits) - 1) as u8;
            let codes = vec![max; ROWS * k];
            let words = pack_rows(&codes, k, bits);
            let wpr = stream_words(k, bits);
            for r in 0..ROWS {
                for j in 0..wpr * 32 {
                    let want = u32::from(j < k * bits as usize);
                    assert_eq!(stream_bit(&words, wpr, r, j), want, "bits={bits} K={k} row {r} stream bit {j}");
                }
            }
            let ones: u32 = words.iter().map(|w| w.count_ones()).sum();
            assert_eq!(ones as usize, ROWS * k * bits as usize);
        }
    }
}

#[test]
fn rows_out_of_range_code_bits_are_masked_not_leaked() {
    // pack_rows documents "each < 2^bits"; a larger byte must not corrupt neighbouring codes.
    let words = pack_rows(&[0xFF, 0x00, 0x00], 3, 2);
    assert_eq!(words, vec![0b11]);
}

#[test]
fn rows_hand_worked_examples() {
    // 4-bit codes 1..=9: nibbles LSB first.
    assert_eq!(pack_rows(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 9, 4), vec![0x8765_4321, 0x9]);
    // 2-bit codes [3, 0, 1] -> 0b01_00_11.
    assert_eq!(pack_rows(&[3, 0, 1], 3, 2), vec![0x13]);
    // 1-bit, K = 33 all ones -> one full word and bit 0 of the next.
    assert_eq!(pack_rows(&[1; 33], 33, 1), vec![0xFFFF_FFFF, 1]);
    // 8-bit: bytes little-endian within a word.
    assert_eq!(pack_rows(&[0x11, 0x22, 0x33, 0x44, 0x55], 5, 8), vec![0x4433_2211, 0x55]);
    // Two rows of 3-bit codes, K = 11 (33 bits): the second row starts on word 2, not at bit 33.
    let mut codes = vec![0u8; 22];
    codes[11] = 0b111; // row 1, column 0
    assert_eq!(pack_rows(&codes, 11, 3), vec![0, 0, 0b111, 0]);
}

#[test]
fn rows_straddling_codes_hand_worked() {
    // (bits, K, column, code, word0, word1): the code sits at stream bits [col·b, col·b + b), crossing bit 32.
    let cases: [(u32, usize, usize, u8, u32, u32); 4] = [
        // 3 bits at column 10: stream bits 30..33; 0b101 -> bit30 = 1, bit31 = 0, bit32 = 1.
        (3, 11, 10, 0b101, 0x4000_0000, 0b1),
        // 5 bits at column 6: bits 30..35; 0b10111 -> 30,31 set; next word bits 0 (1), 1 (0), 2 (1).
        (5, 7, 6, 0b10111, 0xC000_0000, 0b101),
        // 6 bits at column 5: bits 30..36; 0b110101 -> bit30 = 1, bit31 = 0; next word 0b1101.
        (6, 6, 5, 0b110101, 0x4000_0000, 0b1101),
        // 7 bits at column 4: bits 28..35; 0b1011001 -> bits 28, 31 set; next word 0b101.
        (7, 5, 4, 0b1011001, 0x9000_0000, 0b101),
    ];
    for (bits, k, col, code, w0, w1) in cases {
        let mut codes = vec![0u8; k];
        codes[col] = code;
        let words = pack_rows(&codes, k, bits);
        assert_eq!(words, vec![w0, w1], "bits={bits}");
        assert_eq!(get_code(&words, k, bits, 0, col), code, "bits={bits} read back");
        // Surround the straddling code with all-ones neighbours: still read back exactly.
        let mut codes = vec![((1u32 << bits) - 1) as u8; k];
        codes[col] = code;
        let words = pack_rows(&codes, k, bits);
        assert_eq!(unpack_rows(&words, 1, k, bits), codes, "bits={bits} with neighbours");
    }
}

#[test]
fn rows_every_straddle_position_round_trips() {
    // For 3/5/6/7 bits, every column whose code crosses a word boundary, for every code value.
    for bits in [3u32, 5, 6, 7] {
        let k = 64; // 64·b bits: several boundaries
        let straddlers: Vec<usize> = (0..k).filter(|&c| (c * bits as usize) % 32 + bits as usize > 32).collect();
        assert!(!straddlers.is_empty());
        for &col in &straddlers {
            for code in 0..(1u32 << bits) {
                let mut codes = random_codes(7 + col as u64, k, bits);
                codes[col] = code as u8;
                let words = pack_rows(&codes, k, bits);
                assert_eq!(get_code(&words, k, bits, 0, col) as u32, code, "bits={bits} col={col}");
                assert_eq!(stream_code(&words, k, bits, 0, col), code);
            }
        }
    }
}

#[test]
fn planes_round_trip_and_layout_all_bits_odd_k() {
    for bits in 1..=8u32 {
        for (i, &k) in KS.iter().enumerate() {
            let codes = random_codes(2000 + 10 * bits as u64 + i as u64, ROWS * k, bits);
            let planes = pack_planes(&codes, k, bits);
            assert_eq!(planes.len(), bits as usize * ROWS * k.div_ceil(32), "bits={bits} K={k}");
            assert_eq!(planes, spec_pack_planes(&codes, k, bits), "bits={bits} K={k}: layout");
            assert_eq!(unpack_planes(&planes, ROWS, k, bits), codes, "bits={bits} K={k}: round trip");
            for r in 0..ROWS {
                for c in (0..k).step_by(1 + k / 50) {
                    assert_eq!(get_plane_code(&planes, ROWS, k, bits, r, c), codes[r * k + c]);
                }
            }
            // Padding bits beyond K in the last word of every plane row are zero, even for all-ones codes.
            let ones = vec![((1u32 << bits) - 1) as u8; ROWS * k];
            let planes = pack_planes(&ones, k, bits);
            let wpr = k.div_ceil(32);
            for (pr, chunk) in planes.chunks(wpr).enumerate() {
                for c in 0..wpr * 32 {
                    let bit = (chunk[c / 32] >> (c % 32)) & 1;
                    assert_eq!(bit, u32::from(c < k), "bits={bits} K={k} plane-row {pr} col {c}");
                }
            }
        }
    }
}

#[test]
fn planes_hand_worked_example() {
    // codes [1, 2, 3] (2 bits): plane 0 = columns {0, 2} -> 0b101, plane 1 = columns {1, 2} -> 0b110.
    assert_eq!(pack_planes(&[1, 2, 3], 3, 2), vec![0b101, 0b110]);
    // Two rows, K = 33: layout [plane][row][word]; row 1 column 32, bit 1 -> plane 1, row 1, word 1, bit 0.
    let mut codes = vec![0u8; 66];
    codes[33 + 32] = 0b10;
    codes[5] = 0b01; // row 0 column 5, bit 0
    let planes = pack_planes(&codes, 33, 2);
    // index = (plane·rows + row)·wpr + word
    let mut want = vec![0u32; 2 * 2 * 2];
    want[0] = 1 << 5; // plane 0, row 0, word 0
    want[7] = 1; // plane 1, row 1, word 1: (1·2 + 1)·2 + 1
    assert_eq!(planes, want);
}

#[test]
fn plane_popcounts_match_brute_count() {
    for bits in 1..=8u32 {
        for (i, &k) in KS.iter().enumerate() {
            let codes = random_codes(3000 + 10 * bits as u64 + i as u64, ROWS * k, bits);
            let planes = pack_planes(&codes, k, bits);
            let pc = plane_popcounts(&planes, ROWS, k, bits);
            assert_eq!(pc.len(), bits as usize * ROWS);
            for p in 0..bits as usize {
                for r in 0..ROWS {
                    let brute = (0..k).filter(|&c| (codes[r * k + c] >> p) & 1 == 1).count();
                    assert_eq!(pc[p * ROWS + r] as usize, brute, "bits={bits} K={k} plane {p} row {r}");
                }
            }
        }
    }
}

#[test]
#[should_panic]
fn pack_rows_rejects_zero_bits_by_panicking() {
    // Documented: callers validate first; a bad width is a programming error, not silent garbage.
    let _ = pack_rows(&[0, 0], 2, 0);
}

#[test]
#[should_panic]
fn pack_rows_rejects_nine_bits_by_panicking() {
    let _ = pack_rows(&[0, 0], 2, 9);
}

#[test]
#[should_panic]
fn pack_planes_rejects_ragged_length_by_panicking() {
    let _ = pack_planes(&[0, 0, 0], 2, 3);
}
