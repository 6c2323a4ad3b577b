//! Throughput of the local backend's dot-product kernels, in bytes of weights per second,
//! beside this machine's memory read bandwidth.
//!
//! Run with `cargo bench -p any-llm --bench kernels`. Each `dot/*` benchmark dots one weight
//! row of 4096 values with one quantized activation row, through the kernel the matrix
//! multiplications use on this CPU (`fast`) and through the scalar reference (`reference`):
//! the row stays in the L1 cache, so this is the kernel's arithmetic speed. `stream/*` dots
//! every row of a 64 MiB matrix (the size of the default model's weights, beyond the L2
//! cache) with the same activations, as a one-token step does. `memory/read` sums a 1 GiB
//! buffer: the bandwidth a kernel streaming weights from memory could at most reach on one
//! thread; `memory/read_N_threads` the same with every core summing its share. Floating-point work is two operations per weight (multiply, add): GFLOP/s =
//! 2 × bytes/s × weights per byte (32 per 20 bytes for Q4_1, 32 per 34 for Q8_0).

use std::hint::black_box;

use any_llm_local::kernels;
use any_llm_local::quant::{self, GgmlType};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N: usize = 4096;

/// Deterministic values in (-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f32 / u32::MAX as f32 * 2.0 - 1.0
        })
        .collect()
}

/// A weight row of `ty`: quantized where the type has a quantizer, else random bytes with
/// small f16 scales written over the super-block scale fields.
fn weight_row(ty: GgmlType) -> Vec<u8> {
    let size = ty.row_size(N).expect("whole blocks");
    let mut w = vec![0; size];
    if quant::quantize_row(ty, &values(N, 1), &mut w).is_ok() {
        return w;
    }
    let mut s = 7u32;
    for b in w.iter_mut() {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        *b = (s >> 24) as u8;
    }
    let block = ty.row_size(256).expect("one super-block");
    let scale_at: &[usize] = match ty {
        GgmlType::Q6_K => &[208],
        _ => &[0, 2],
    };
    let scale = half::f16::from_f32(0.002).to_bits().to_le_bytes();
    for blk in w.chunks_exact_mut(block) {
        for &at in scale_at {
            blk[at..at + 2].copy_from_slice(&scale);
        }
    }
    w
}

fn dots(c: &mut Criterion) {
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        let act_ty = ty.vec_dot_type().expect("a paired type");
        let w = weight_row(ty);
        let mut a = vec![0; act_ty.row_size(N).expect("whole blocks")];
        kernels::quantize_row(act_ty, &values(N, 2), &mut a).expect("quantizes");
        let mut group = c.benchmark_group(format!("dot/{ty:?}"));
        group.throughput(Throughput::Bytes(w.len() as u64));
        group.bench_function("fast", |b| {
            b.iter(|| kernels::vec_dot(ty, black_box(&w), black_box(&a), N))
        });
        group.bench_function("reference", |b| {
            b.iter(|| quant::vec_dot(ty, black_box(&w), black_box(&a), N))
        });
        group.finish();
    }
}

fn activations(c: &mut Criterion) {
    let x = values(N, 3);
    let mut group = c.benchmark_group("quantize_activations");
    group.throughput(Throughput::Bytes((N * 4) as u64));
    for ty in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
        let mut out = vec![0; ty.row_size(N).expect("whole blocks")];
        group.bench_function(format!("{ty:?}"), |b| {
            b.iter(|| kernels::quantize_row(ty, black_box(&x), &mut out))
        });
    }
    group.finish();
}

fn streams(c: &mut Criterion) {
    const MATRIX: usize = 64 << 20;
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
        let row = weight_row(ty);
        let rows = MATRIX / row.len();
        let w: Vec<u8> = row.iter().copied().cycle().take(rows * row.len()).collect();
        let act_ty = ty.vec_dot_type().expect("a paired type");
        let mut a = vec![0; act_ty.row_size(N).expect("whole blocks")];
        kernels::quantize_row(act_ty, &values(N, 2), &mut a).expect("quantizes");
        let mut group = c.benchmark_group(format!("stream/{ty:?}"));
        group.sample_size(10);
        group.throughput(Throughput::Bytes(w.len() as u64));
        group.bench_function("fast", |b| {
            b.iter(|| {
                w.chunks_exact(row.len())
                    .map(|r| kernels::vec_dot(ty, r, black_box(&a), N).expect("sizes match"))
                    .sum::<f32>()
            })
        });
        group.finish();
    }
}

fn memory(c: &mut Criterion) {
    let buf: Vec<u64> = (0..(1u64 << 27)).collect();
    let mut group = c.benchmark_group("memory");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((buf.len() * 8) as u64));
    group.bench_function("read", |b| b.iter(|| sum(black_box(&buf))));
    // The same on every core at once, each summing its share: what a decode step that keeps
    // all threads streaming could at most reach.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    group.bench_function(format!("read_{threads}_threads"), |b| {
        b.iter(|| {
            let share = buf.len().div_ceil(threads);
            std::thread::scope(|s| {
                let parts: Vec<_> = black_box(&buf)
                    .chunks(share)
                    .map(|part| s.spawn(move || sum(part)))
                    .collect();
                parts
                    .into_iter()
                    .map(|h| h.join().expect("a summing thread"))
                    .fold(0u64, u64::wrapping_add)
            })
        })
    });
    group.finish();
}

/// Sums `buf` in eight independent sums, so the loop is bound by loads, not by one add chain.
fn sum(buf: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for chunk in buf.chunks_exact(8) {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(v);
        }
    }
    acc.iter().fold(0u64, |x, &y| x.wrapping_add(y))
}

criterion_group!(benches, dots, activations, streams, memory);
criterion_main!(benches);
