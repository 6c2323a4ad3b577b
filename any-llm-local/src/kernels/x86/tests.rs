//! The x86 kernels against each other where a test cannot reach them through `kernels`: the
//! AVX-512 VNNI variants of the 32-value block kernels equal the AVX2 ones bit for bit (both
//! against the scalar reference: `kernels::tests`).

use super::legacy::*;
use super::*;
use crate::kernels::ROWS;

/// Deterministic bytes, and Q8_1 activation blocks with sane scales.
fn blocks(nb: usize, block: usize, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    let mut out: Vec<u8> = (0..nb * block)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 24) as u8
        })
        .collect();
    for (i, b) in out.chunks_exact_mut(block).enumerate() {
        let scale = half::f16::from_f32(0.01 + 0.003 * (i % 5) as f32).to_bits();
        let min = half::f16::from_f32(-0.2 + 0.01 * (i % 7) as f32).to_bits();
        b[..2].copy_from_slice(&scale.to_le_bytes());
        b[2..4].copy_from_slice(&min.to_le_bytes());
        if block == 36 {
            // Activations are symmetric 8-bit values: keep them within -127..=127.
            for q in &mut b[4..] {
                if *q == 0x80 {
                    *q = 0x81;
                }
            }
        }
    }
    out
}

#[test]
fn vnni_kernels_equal_the_avx2_ones_bit_for_bit() {
    if !has_vnni() {
        eprintln!("this CPU has no AVX-512 VNNI: only the AVX2 kernels run here");
        return;
    }
    let nb = 18;
    for seed in 0..16 {
        let w = blocks(nb * TILE_ROWS, 20, seed);
        let a = blocks(nb * TILE_TOKENS, 36, seed + 1000);
        // SAFETY: both CPUs' features were checked; the rows hold `nb` whole blocks.
        let (x, y) = unsafe {
            (
                dot_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb),
                dot_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb),
            )
        };
        assert_eq!(x.to_bits(), y.to_bits(), "dot, seed {seed}");
        // Q8_0 by Q8_0: any weight bytes, activations within -127..=127.
        let w8 = blocks(nb * ROWS, 34, seed + 2000);
        let mut a8 = blocks(nb, 34, seed + 3000);
        for q in a8.chunks_exact_mut(34).flat_map(|b| &mut b[2..]) {
            if *q == 0x80 {
                *q = 0x81;
            }
        }
        let (mut r1, mut r2) = ([0.0; ROWS], [0.0; ROWS]);
        // SAFETY: as above, with `ROWS` weight rows of Q8_0.
        let (x8, y8) = unsafe {
            rows_q8_0_avx2(w8.as_ptr(), a8.as_ptr(), nb, &mut r1);
            rows_q8_0_vnni(w8.as_ptr(), a8.as_ptr(), nb, &mut r2);
            (
                dot_q8_0_avx2(w8.as_ptr(), a8.as_ptr(), nb),
                dot_q8_0_vnni(w8.as_ptr(), a8.as_ptr(), nb),
            )
        };
        assert_eq!(x8.to_bits(), y8.to_bits(), "Q8_0 dot, seed {seed}");
        assert_eq!(
            r1.map(f32::to_bits),
            r2.map(f32::to_bits),
            "Q8_0 rows, seed {seed}"
        );
        assert_eq!(
            r1[0].to_bits(),
            x8.to_bits(),
            "Q8_0 rows vs dot, seed {seed}"
        );
        let (mut t1, mut t2) = (
            [0.0; TILE_ROWS * TILE_TOKENS],
            [0.0; TILE_ROWS * TILE_TOKENS],
        );
        // SAFETY: as above, with `TILE_ROWS` and `TILE_TOKENS` rows.
        unsafe {
            tile_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb, &mut t1);
            tile_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb, &mut t2);
        }
        assert_eq!(
            t1.map(f32::to_bits),
            t2.map(f32::to_bits),
            "tile, seed {seed}"
        );
        // Q8_0 and Q4_0 tiles: any weight bytes (-128 included), activations within
        // -127..=127.
        let mut at = blocks(nb * TILE_TOKENS, 34, seed + 4000);
        for q in at.chunks_exact_mut(34).flat_map(|b| &mut b[2..]) {
            if *q == 0x80 {
                *q = 0x81;
            }
        }
        let (w8, w4) = (
            blocks(nb * TILE_ROWS, 34, seed + 5000),
            blocks(nb * TILE_ROWS, 18, seed + 6000),
        );
        let mut t = [[0.0; TILE_ROWS * TILE_TOKENS]; 4];
        // SAFETY: as above, with `TILE_ROWS` weight rows of Q8_0 and of Q4_0.
        unsafe {
            tile_q8_avx2::<34, 0>(w8.as_ptr(), at.as_ptr(), nb, &mut t[0]);
            tile_q8_vnni::<34, 0>(w8.as_ptr(), at.as_ptr(), nb, &mut t[1]);
            tile_q8_avx2::<18, 4>(w4.as_ptr(), at.as_ptr(), nb, &mut t[2]);
            tile_q8_vnni::<18, 4>(w4.as_ptr(), at.as_ptr(), nb, &mut t[3]);
        }
        assert_eq!(
            t[0].map(f32::to_bits),
            t[1].map(f32::to_bits),
            "Q8_0 tile, {seed}"
        );
        assert_eq!(
            t[2].map(f32::to_bits),
            t[3].map(f32::to_bits),
            "Q4_0 tile, {seed}"
        );
    }
}
