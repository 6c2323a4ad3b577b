//! Every block format against reference data from an independent implementation.
//!
//! `tests/data/quant_vectors.json` is written by `tests/data/make_quant_vectors.py` from the
//! `gguf` Python package, and was checked when written against llama.cpp's ggml itself
//! (dequantizers, quantizers, type sizes) with ggml's CPU `vec_dot` results recorded as
//! `dot_llama`; see that script for where each value comes from.
//!
//! Tolerances: dequantized values must be bit-identical (they are one f32 multiply-add from
//! the same f16 inputs); quantized bytes must be identical; dot products must agree within
//! `1e-6 * sum |w_i * a_i|`, which leaves room only for float summation order.

mod support;

use any_llm_local::quant::{self, GgmlType};
use serde_json::Value;

const DOT_TOLERANCE: f64 = 1e-6;

struct Case {
    ty: GgmlType,
    act_ty: GgmlType,
    n: usize,
    raw: Value,
}

impl Case {
    fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        let s = self.raw.get(key)?.as_str()?;
        Some(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex in test data"))
                .collect(),
        )
    }

    fn f32s(&self, key: &str) -> Option<Vec<f32>> {
        let b = self.bytes(key)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    fn f64(&self, key: &str) -> Option<f64> {
        self.raw.get(key)?.as_f64()
    }
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/quant_vectors.json");
    let text = std::fs::read_to_string(path).expect("test data present");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            ty: GgmlType::from_name(c["type"].as_str().unwrap()).unwrap(),
            act_ty: GgmlType::from_name(c["act_type"].as_str().unwrap()).unwrap(),
            n: c["n"].as_u64().unwrap() as usize,
            raw: c.clone(),
        })
        .collect()
}

#[test]
fn the_data_covers_every_supported_type() {
    let cases = cases();
    for ty in GgmlType::SUPPORTED {
        let c = cases.iter().find(|c| c.ty == ty);
        let c = c.unwrap_or_else(|| panic!("no reference case for {ty}"));
        assert_eq!(Some(c.act_ty), ty.vec_dot_type(), "{ty}");
    }
}

fn assert_same_f32(ty: GgmlType, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g - w).abs() <= 1e-6 * w.abs(),
            "{ty} {what}: value {i} is {g}, reference {w}"
        );
    }
}

#[test]
fn dequantize_matches_the_reference_bit_for_bit() {
    for c in cases() {
        let w = c.bytes("weight").unwrap();
        let mut out = vec![0.0; c.n];
        quant::dequantize_row(c.ty, &w, &mut out).unwrap();
        assert_same_f32(c.ty, "weight", &out, &c.f32s("weight_dequant").unwrap());

        let a = c.bytes("act").unwrap();
        quant::dequantize_row(c.act_ty, &a, &mut out).unwrap();
        assert_same_f32(
            c.act_ty,
            "activation",
            &out,
            &c.f32s("act_dequant").unwrap(),
        );
    }
}

#[test]
fn quantize_reproduces_the_reference_bytes() {
    let mut checked = Vec::new();
    for c in cases() {
        // Activations: every pairing's activation type.
        let x = c.f32s("act_source").unwrap();
        let mut a = vec![0u8; c.act_ty.row_size(c.n).unwrap()];
        quant::quantize_row(c.act_ty, &x, &mut a).unwrap();
        assert_eq!(a, c.bytes("act").unwrap(), "{} activation bytes", c.act_ty);
        checked.push(c.act_ty);

        // Weights made by a reference quantizer.
        if let Some(src) = c.f32s("weight_source") {
            let mut w = vec![0u8; c.ty.row_size(c.n).unwrap()];
            quant::quantize_row(c.ty, &src, &mut w).unwrap();
            assert_eq!(w, c.bytes("weight").unwrap(), "{} weight bytes", c.ty);
            checked.push(c.ty);
        }
    }
    for ty in [
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q8_K",
    ] {
        assert!(
            checked.contains(&GgmlType::from_name(ty).unwrap()),
            "{ty} not checked"
        );
    }
}

#[test]
fn vec_dot_matches_the_reference_within_tolerance() {
    for c in cases() {
        let w = c.bytes("weight").unwrap();
        let a = c.bytes("act").unwrap();
        let got = f64::from(quant::vec_dot(c.ty, &w, &a, c.n).unwrap());
        let norm = c.f64("norm").unwrap();
        let want = c.f64("dot").unwrap();
        assert!(
            (got - want).abs() <= DOT_TOLERANCE * norm,
            "{}: vec_dot {got}, reference {want} (norm {norm})",
            c.ty
        );
        if let Some(llama) = c.f64("dot_llama") {
            assert!(
                (got - llama).abs() <= DOT_TOLERANCE * norm,
                "{}: vec_dot {got}, llama.cpp {llama} (norm {norm})",
                c.ty
            );
        }
    }
}

/// The real model's weights through every type it uses: vec_dot against a quantized
/// activation agrees with the float64 product of the dequantized rows.
#[test]
fn real_model_rows_dot_like_their_dequantized_values() {
    use any_llm_local::gguf::GgufFile;
    let f = GgufFile::open(support::default_model_path()).unwrap();
    let mut seen = Vec::new();
    for t in f.tensors() {
        if seen.contains(&t.ty) || t.dims.len() != 2 {
            continue;
        }
        seen.push(t.ty);
        let n = t.row_len() as usize;
        let row_bytes = t.ty.row_size(n).unwrap();
        let data = f.tensor_data(t);
        let act_ty = t.ty.vec_dot_type().unwrap();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let mut a = vec![0u8; act_ty.row_size(n).unwrap()];
        quant::quantize_row(act_ty, &x, &mut a).unwrap();
        let mut af = vec![0.0; n];
        quant::dequantize_row(act_ty, &a, &mut af).unwrap();
        for row in data.chunks_exact(row_bytes).take(8) {
            let mut wf = vec![0.0; n];
            quant::dequantize_row(t.ty, row, &mut wf).unwrap();
            let exact: f64 = wf
                .iter()
                .zip(&af)
                .map(|(&w, &a)| f64::from(w) * f64::from(a))
                .sum();
            let norm: f64 = wf
                .iter()
                .zip(&af)
                .map(|(&w, &a)| (f64::from(w) * f64::from(a)).abs())
                .sum();
            let got = f64::from(quant::vec_dot(t.ty, row, &a, n).unwrap());
            // Q8_1's stored sum is an f16, so Q4_1/Q5_1 carry its rounding on top.
            let tol = if act_ty == GgmlType::Q8_1 {
                1e-3
            } else {
                DOT_TOLERANCE
            };
            assert!(
                (got - exact).abs() <= tol * norm,
                "{} ({}): {got} vs {exact}",
                t.name,
                t.ty
            );
        }
    }
    assert!(
        seen.contains(&GgmlType::Q4_1) && seen.contains(&GgmlType::Q8_0),
        "{seen:?}"
    );
}

/// Every reference row stored as a tensor in a generated GGUF file reads back and dequantizes
/// to the reference values.
#[test]
fn reference_rows_survive_a_gguf_round_trip() {
    use any_llm_local::gguf::{GgufFile, GgufWriter};
    let cases = cases();
    let mut w = GgufWriter::new();
    for c in &cases {
        let name = format!("{}.weight", c.ty);
        // Two rows where the row still fills whole blocks, else one.
        let dims = if (c.n / 2) % c.ty.block_size() == 0 {
            vec![c.n as u64 / 2, 2]
        } else {
            vec![c.n as u64]
        };
        w.add_tensor(name, &dims, c.ty, c.bytes("weight").unwrap())
            .unwrap();
    }
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    for c in &cases {
        let t = f.tensor(&format!("{}.weight", c.ty)).unwrap();
        assert_eq!(t.ty, c.ty);
        let mut out = vec![0.0; c.n];
        quant::dequantize_row(t.ty, f.tensor_data(t), &mut out).unwrap();
        assert_same_f32(
            c.ty,
            "weight from GGUF",
            &out,
            &c.f32s("weight_dequant").unwrap(),
        );
    }
}

/// The kernels the matrix products run on an x86 CPU with AVX2, against llama.cpp's CPU
/// `vec_dot` (recorded on such a CPU) on the same bytes: equal to the bit for the types whose
/// kernels sum in llama.cpp's order.
#[test]
#[cfg(target_arch = "x86_64")]
fn fast_kernels_equal_llama_cpp_bit_for_bit() {
    if !std::arch::is_x86_feature_detected!("avx2") || !std::arch::is_x86_feature_detected!("fma") {
        return;
    }
    let same_order = [
        "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL",
        "IQ4_XS",
    ];
    let mut compared = 0;
    for c in cases() {
        if !same_order.contains(&c.ty.name()) {
            continue;
        }
        let llama = c
            .f64("dot_llama")
            .expect("the committed data has llama.cpp's dots") as f32;
        let (w, a) = (c.bytes("weight").unwrap(), c.bytes("act").unwrap());
        let got = any_llm_local::kernels::vec_dot(c.ty, &w, &a, c.n).unwrap();
        assert_eq!(
            got.to_bits(),
            llama.to_bits(),
            "{}: {got} vs llama.cpp {llama}",
            c.ty
        );
        compared += 1;
    }
    assert_eq!(compared, same_order.len());
}
