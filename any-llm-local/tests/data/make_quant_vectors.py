#!/usr/bin/env python3
"""Writes quant_vectors.json: reference data for any-llm's block formats (tests/quant.rs).

Run from anywhere:  python3 -m pip install gguf numpy && python3 make_quant_vectors.py

With llama.cpp's ggml at hand (llama-cpp-python installed, or GGML_LIB_DIR naming a
directory with libggml-base.so and libggml-cpu.so from a llama.cpp build) the script also
asserts, through ctypes, that ggml's own dequantizers, reference quantizers (Q8_K: the CPU
quantizer, ggml exposes no reference one) and type sizes agree with the data byte for byte,
and records ggml's CPU vec_dot as `dot_llama`. The committed file was made that way.

The data is deterministic (fixed seed). For every supported ggml type it holds:

* `weight`: a few blocks of quantized bytes. For types the `gguf` package can quantize
  (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, BF16, F16, F32) they come from its quantizer applied to
  `weight_source` (so our quantize_row must reproduce them byte for byte); for the K-quants
  and the i-quants (IQ4_NL, IQ4_XS) they are random bytes with sane f16 scales (some
  negative).
* `weight_dequant`: the `gguf` package's dequantization of `weight` (f32, little-endian hex).
  Q8_1 and Q8_K are activation-only formats that `gguf` does not implement; for them the
  bytes and values come from the numpy reference quantizers in this script, written from
  ggml's `quantize_row_q8_1_ref` / `quantize_row_q8_K_ref` rounding rules.
* `act_source`, `act_type`, `act`, `act_dequant`: a random activation row and its
  quantization into the paired format (gguf for Q8_0/BF16, numpy astype for F16, this
  script for Q8_1/Q8_K).
* `dot`: the float64 dot product of the dequantized weight and activation, written so that
  it equals llama.cpp's integer formula up to rounding (for the Q8_1 pairing the minimum
  term uses the stored `s`, as llama.cpp does), and `norm` = sum |w_i * a_i| to scale the
  tolerance; tests accept |ours - dot| <= 1e-6 * norm.
* `dot_llama` (only with ggml at hand): llama.cpp's own CPU vec_dot.
* `act_matches_ggml_cpu_quantizer` (only with ggml at hand): whether the quantizer ggml's
  CPU backend runs on activations gives the same bytes. On x86 its SIMD Q8_0/Q8_1 paths
  round exact ties to even, unlike the reference, so the planted ties make this false there.
"""

import ctypes
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 20251129
QK_K = 256

TYPES = [
    # (type, values per row, act type)
    ("F32", 64, "F32"),
    ("F16", 64, "F16"),
    ("BF16", 64, "BF16"),
    ("Q4_0", 128, "Q8_0"),
    ("Q4_1", 128, "Q8_1"),
    ("Q5_0", 128, "Q8_0"),
    ("Q5_1", 128, "Q8_1"),
    ("Q8_0", 128, "Q8_0"),
    ("Q8_1", 128, "Q8_1"),
    ("Q2_K", 512, "Q8_K"),
    ("Q3_K", 512, "Q8_K"),
    ("Q4_K", 512, "Q8_K"),
    ("Q5_K", 512, "Q8_K"),
    ("Q6_K", 512, "Q8_K"),
    ("Q8_K", 512, "Q8_K"),
    # Appended last, so the random draws of the cases above are unchanged.
    ("IQ4_NL", 128, "Q8_0"),
    ("IQ4_XS", 512, "Q8_K"),
]

GGUF_QUANTIZES = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "BF16"}

# Block sizes in bytes and values, and byte offsets of the f16 scale fields inside each
# block, of the types written as random blocks (the `gguf` package has no quantizer for them).
K_LAYOUT = {
    "Q2_K": (84, QK_K, [80, 82]),
    "Q3_K": (110, QK_K, [108]),
    "Q4_K": (144, QK_K, [0, 2]),
    "Q5_K": (176, QK_K, [0, 2]),
    "Q6_K": (210, QK_K, [208]),
    "IQ4_NL": (18, 32, [0]),
    "IQ4_XS": (136, QK_K, [0]),
}


def hexf32(a):
    return np.asarray(a, dtype="<f4").tobytes().hex()


def round_away(v):
    """C roundf on float32: ties away from zero, computed exactly."""
    a = np.abs(v)
    f = np.floor(a)
    r = f + (a - f >= np.float32(0.5)).astype(np.float32)
    return np.sign(v) * r


def q8_1_quantize(x):
    out = bytearray()
    for blk in x.reshape(-1, 32).astype(np.float32):
        amax = np.max(np.abs(blk))
        d = np.float32(amax / np.float32(127))
        idd = np.float32(1) / d if d != 0 else np.float32(0)
        q = round_away(blk * idd).astype(np.int8)
        s = np.float32(np.float32(int(q.astype(np.int32).sum())) * d)
        out += np.float16(d).tobytes() + np.float16(s).tobytes() + q.tobytes()
    return bytes(out)


def q8_1_dequantize(b):
    blocks = np.frombuffer(b, dtype=np.uint8).reshape(-1, 36)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 4:].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(-1)


def q8_k_quantize(x):
    out = bytearray()
    for blk in x.reshape(-1, QK_K).astype(np.float32):
        i = int(np.argmax(np.abs(blk)))  # first index on ties, as ggml's strict '>'
        amax, mx = np.abs(blk[i]), blk[i]
        if amax == 0:
            out += np.float32(0).tobytes() + bytes(QK_K) + bytes(32)
            continue
        iscale = np.float32(np.float32(-127) / mx)
        q = np.minimum(np.rint(np.float32(iscale) * blk), 127).astype(np.int8)
        bsums = q.astype(np.int16).reshape(16, 16).sum(axis=1).astype("<i2")
        d = np.float32(np.float32(1) / iscale)
        out += d.tobytes() + q.tobytes() + bsums.tobytes()
    return bytes(out)


def q8_k_dequantize(b):
    blocks = np.frombuffer(b, dtype=np.uint8).reshape(-1, 292)
    d = blocks[:, 0:4].copy().view("<f4")
    q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(-1)


def quantize(name, x):
    x = np.asarray(x, dtype=np.float32)
    if name == "F32":
        return x.astype("<f4").tobytes()
    if name == "F16":
        return x.astype("<f2").tobytes()
    if name == "Q8_1":
        return q8_1_quantize(x)
    if name == "Q8_K":
        return q8_k_quantize(x)
    return quants.quantize(x.reshape(1, -1), T[name]).tobytes()


def dequantize(name, b, n):
    if name == "Q8_1":
        return q8_1_dequantize(b)
    if name == "Q8_K":
        return q8_k_dequantize(b)
    raw = np.frombuffer(b, dtype=np.uint8)
    if name == "F32":
        return raw.view("<f4").astype(np.float32)
    if name == "F16":
        return raw.view("<f2").astype(np.float32)
    return quants.dequantize(raw.reshape(1, -1), T[name]).reshape(-1).astype(np.float32)


def random_k_blocks(rng, name, n):
    size, values, scale_fields = K_LAYOUT[name]
    blocks = bytearray(rng.integers(0, 256, size * (n // values), dtype=np.uint8).tobytes())
    for b in range(n // values):
        for f in scale_fields:
            v = np.float16(rng.uniform(-0.05, 0.05))
            blocks[b * size + f : b * size + f + 2] = v.tobytes()
    return bytes(blocks)


def with_ties(name, x):
    """Plants values whose rounding is a tie, so the tie rule is tested, not assumed."""
    x = x.copy()
    if name in ("Q8_0", "Q8_1", "Q8_K"):
        # With 127 the block extreme, the scale is exactly 1 (Q8_K: -1), so these land on
        # .5 after scaling: ggml rounds Q8_0/Q8_1 ties away from zero, Q8_K ties to even.
        x[:6] = [127.0, 2.5, -3.5, 0.5, -0.5, 1.5]
    elif name == "F16":
        x[:3] = [1 + 2.0**-11, 1 + 3 * 2.0**-11, -(1 + 2.0**-11)]
    elif name == "BF16":
        x[:3] = np.array([0x3F808000, 0x3F818000, 0xBF808000], dtype=np.uint32).view(np.float32)
    return x


def reference_dot(wname, aname, w_bytes, w_deq, a_bytes, a_deq):
    w = w_deq.astype(np.float64)
    a = a_deq.astype(np.float64)
    norm = float(np.sum(np.abs(w * a)))
    if aname == "Q8_1" and wname in ("Q4_1", "Q5_1"):
        # llama.cpp: sum_blocks d_w d_a sum(q_w q_a) + m_w * s_a, with s_a as stored.
        bw = {"Q4_1": 20, "Q5_1": 24}[wname]
        wb = np.frombuffer(w_bytes, dtype=np.uint8).reshape(-1, bw)
        ab = np.frombuffer(a_bytes, dtype=np.uint8).reshape(-1, 36)
        m = wb[:, 2:4].copy().view(np.float16).astype(np.float64).reshape(-1)
        s = ab[:, 2:4].copy().view(np.float16).astype(np.float64).reshape(-1)
        body = (w.reshape(-1, 32) - m[:, None]) * a.reshape(-1, 32)
        return float(body.sum() + (m * s).sum()), norm
    return float(np.dot(w, a)), norm


def llama_cpp_hooks():
    """llama.cpp's own ggml through ctypes, or None.

    The ggml shared libraries come from `GGML_LIB_DIR` if set (a directory holding
    libggml-base.so and libggml-cpu.so, e.g. from a llama.cpp build), else from an installed
    llama-cpp-python.
    """
    libdir = os.environ.get("GGML_LIB_DIR")
    if not libdir:
        try:
            import llama_cpp
        except ImportError:
            return None
        libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")

    def load(prefix):
        for f in sorted(os.listdir(libdir)):
            if f.startswith(prefix) and ".so" in f:
                return ctypes.CDLL(os.path.join(libdir, f), mode=ctypes.RTLD_GLOBAL)
        raise SystemExit(f"no {prefix}*.so in {libdir}")

    base = load("libggml-base")
    cpu = load("libggml-cpu")

    row_fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)

    class Traits(ctypes.Structure):  # struct ggml_type_traits
        _fields_ = [
            ("type_name", ctypes.c_char_p),
            ("blck_size", ctypes.c_int64),
            ("blck_size_interleave", ctypes.c_int64),
            ("type_size", ctypes.c_size_t),
            ("is_quantized", ctypes.c_bool),
            ("to_float", row_fn),
            ("from_float_ref", row_fn),
        ]

    vec_dot_t = ctypes.CFUNCTYPE(
        None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
        ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
    )

    class CpuTraits(ctypes.Structure):  # struct ggml_type_traits_cpu
        _fields_ = [
            ("from_float", row_fn),
            ("vec_dot", vec_dot_t),
            ("vec_dot_type", ctypes.c_int),
            ("nrows", ctypes.c_int64),
        ]

    base.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
    base.ggml_get_type_traits.argtypes = [ctypes.c_int]
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(CpuTraits)
    cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
    cpu.ggml_cpu_init()

    class Ggml:
        def traits(self, name):
            return base.ggml_get_type_traits(int(T[name])).contents

        def cpu(self, name):
            return cpu.ggml_get_type_traits_cpu(int(T[name])).contents

        def _quantize(self, fn, name, x):
            if not fn:
                return None
            t = self.traits(name)
            x = np.ascontiguousarray(x, dtype=np.float32)
            out = ctypes.create_string_buffer(len(x) // t.blck_size * t.type_size)
            fn(x.ctypes.data, ctypes.addressof(out), len(x))
            return out.raw

        def quantize_ref(self, name, x):
            return self._quantize(self.traits(name).from_float_ref, name, x)

        def quantize_cpu(self, name, x):
            return self._quantize(self.cpu(name).from_float, name, x)

        def dequantize(self, name, b, n):
            fn = self.traits(name).to_float
            if not fn:
                return None
            src = ctypes.create_string_buffer(b, len(b))
            out = np.zeros(n, dtype=np.float32)
            fn(ctypes.addressof(src), out.ctypes.data, n)
            return out

        def vec_dot(self, name, w, a, n):
            fn = self.cpu(name).vec_dot
            if not fn:
                return None
            res = ctypes.c_float(0)
            wb = ctypes.create_string_buffer(w, len(w))
            ab = ctypes.create_string_buffer(a, len(a))
            fn(n, ctypes.addressof(res), 0, ctypes.addressof(wb), 0, ctypes.addressof(ab), 0, 1)
            return float(res.value)

    return Ggml()


def main():
    rng = np.random.default_rng(SEED)
    ggml = llama_cpp_hooks()
    checked = []
    cases = []
    for name, n, act in TYPES:
        case = {"type": name, "n": n, "act_type": act}
        if name in K_LAYOUT:
            w = random_k_blocks(rng, name, n)
        else:
            src = rng.normal(0, 1, n).astype(np.float32)
            src[rng.integers(0, n)] = np.float32(-3.5)  # a negative extreme
            if name == "Q8_K":
                src[QK_K:] = 0  # one all-zero block
            src = with_ties(name, src)
            w = quantize(name, src)
            case["weight_source"] = hexf32(src)
            if ggml and name not in ("F32", "F16"):
                theirs = ggml.quantize_ref(name, src) or ggml.quantize_cpu(name, src)
                assert theirs == w, f"{name}: quantizer differs from ggml's"
        w_deq = dequantize(name, w, n)
        if ggml:
            t = ggml.traits(name)
            assert n % t.blck_size == 0 and n // t.blck_size * t.type_size == len(w), name
            theirs = ggml.dequantize(name, w, n)
            if theirs is not None:
                assert theirs.tobytes() == w_deq.tobytes(), f"{name}: dequantize differs from ggml's"
                checked.append(name)
        case["weight"] = w.hex()
        case["weight_dequant"] = hexf32(w_deq)

        x = with_ties(act, rng.uniform(-2, 2, n).astype(np.float32))
        a = quantize(act, x)
        if ggml and act not in ("F32", "F16"):
            ref = ggml.quantize_ref(act, x)
            if ref is not None:
                assert ref == a, f"{act}: quantizer differs from ggml's reference"
            # The quantizer ggml's CPU backend actually runs on activations (SIMD where it
            # has one): record whether it agrees, rather than assume.
            case["act_matches_ggml_cpu_quantizer"] = ggml.quantize_cpu(act, x) == a
        a_deq = dequantize(act, a, n)
        case["act_source"] = hexf32(x)
        case["act"] = a.hex()
        case["act_dequant"] = hexf32(a_deq)
        case["dot"], case["norm"] = reference_dot(name, act, w, w_deq, a, a_deq)
        if ggml:
            dot = ggml.vec_dot(name, w, a, n)
            if dot is not None:
                case["dot_llama"] = dot
        cases.append(case)

    out = {
        "generator": "make_quant_vectors.py",
        "seed": SEED,
        "llama_cpp": ggml is not None,
        "dequantize_checked_against_ggml": checked,
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant_vectors.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=0)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases, llama.cpp {'used' if ggml else 'not available'}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
