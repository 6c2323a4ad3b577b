#!/usr/bin/env python3
"""Random-weight GGUF models of each decoder architecture, and llama.cpp's outputs on them.

Run through `scripts/gen-test-models`, which installs the pinned packages into .venv-models.

    gen_test_models.py [--shape tiny|small|qwen2.5-0.5b|llama-3.2-1b] [--arch NAME ...]
                       [--dtype f32|f16] [--quant Q8_0 ...] [--out DIR] [--no-reference]

The committed test models and vectors (any-llm-local/tests/data/arch/) are
`scripts/gen-test-models --quant Q8_0`.

For every architecture asked for (default: all) it writes `{arch}.gguf` with the `gguf`
package: weights drawn from a normal distribution seeded by the architecture's name (so a
file is the same on every run and machine), scaled by 1/sqrt(fan-in) so activations stay of
order one and the greedy choice is not a near-tie; F32 matrices in the tiny test models
(F16 in the large ones), F32 norms, biases and RoPE factors; a tiny byte-level BPE
vocabulary (the 256 byte tokens, a few merges, an end-of-text token), since the model is
driven by token ids and the tokenizer only has to load. `--quant TYPE` also writes `{arch}.{type}.gguf` through llama.cpp's own quantizer.

Unless `--no-reference`, it then runs each file through llama.cpp (the `llama-cpp-python`
package) and writes `{arch}.llamacpp.json`: the prompt ids, the logits after every prefix of
the prompt (one batch, `logits_all`), and a greedy continuation computed by argmax over
llama.cpp's logits one token at a time (so no sampler is involved), with the package
versions, the seed and this command line as provenance.

`--shape` picks the transformer's size: `tiny` (the committed test models: two layers,
width 64, a few hundred KB each), `small` (width 256, so that the 256-value super-block
formats quantize every matrix: the committed K-quant and i-quant test models are
`--shape small --arch llama --dtype f32 --quant Q4_K_M Q5_K_M IQ4_NL IQ4_XS --batch 1`) or a real
model's shape (benchmarks: Qwen2.5-0.5B,
Llama-3.2-1B; same tiny vocabulary, so the output head is small and the layers dominate).
"""
import argparse
import importlib.metadata
import json
import math
import os
import sys
import zlib

import numpy as np
import gguf

SHAPES = {
    "tiny": dict(n_embd=64, n_head=4, n_head_kv=2, head_dim=16, n_ff=128, n_layer=2, n_ctx=512),
    # Rows of 256, so the super-block formats (K-quants, IQ4_XS) quantize every matrix.
    "small": dict(n_embd=256, n_head=4, n_head_kv=2, head_dim=64, n_ff=512, n_layer=2, n_ctx=512),
    "qwen2.5-0.5b": dict(n_embd=896, n_head=14, n_head_kv=2, head_dim=64, n_ff=4864, n_layer=24,
                         n_ctx=32768),
    "llama-3.2-1b": dict(n_embd=2048, n_head=32, n_head_kv=8, head_dim=64, n_ff=8192, n_layer=16,
                         n_ctx=131072),
    # The other architectures' smallest real models, for their speed beside llama.cpp's.
    "qwen3-0.6b": dict(n_embd=1024, n_head=16, n_head_kv=8, head_dim=128, n_ff=3072, n_layer=28,
                       n_ctx=40960),
    "gemma3-1b": dict(n_embd=1152, n_head=4, n_head_kv=1, head_dim=256, n_ff=6912, n_layer=26,
                      n_ctx=32768),
    "gemma2-2b": dict(n_embd=2304, n_head=8, n_head_kv=4, head_dim=256, n_ff=9216, n_layer=26,
                      n_ctx=8192),
    # Not "phi3-mini": llama.cpp keys vocabulary quirks on names with "phi3" in them.
    "phi-mini-3.8b": dict(n_embd=3072, n_head=32, n_head_kv=32, head_dim=96, n_ff=8192, n_layer=32,
                      n_ctx=4096),
}

# What each generated model exercises beyond the llama baseline.
ARCHS = {
    "llama": "llama (normal RoPE, SwiGLU, tied output head)",
    "llama3": "llama with Llama 3.1 RoPE frequency factors (rope_freqs.weight), base 500000",
    "qwen2": "qwen2: Q/K/V biases, NeoX RoPE, separate output head",
    "qwen3": "qwen3: per-head Q/K RMSNorm before RoPE, head width != n_embd / n_head",
    "phi3": "phi3: fused QKV and gate/up tensors, NeoX RoPE on part of each head, LongRoPE, "
            "a sliding window llama.cpp does not apply",
    "gemma2": "gemma2: embedding scale, GELU, post-norms, soft-capping, sliding window",
    "gemma3": "gemma3: Q/K norms, post-norms, local/global layers with their own RoPE bases",
    "qwen2-yarn": "qwen2 with YaRN RoPE scaling: factor 4, original context 256",
}

PROMPT_LEN = 12
GREEDY = 16


def vocabulary():
    """The 256 byte-level tokens in GPT-2's printable mapping, some merges, <|endoftext|>."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    tokens = [byte_char[b] for b in range(256)]
    merges = []
    for word in ["the", "and", "ing", "ion", "model", "token", "weight", "layer"]:
        sp = byte_char[ord(" ")]
        pieces = [sp] + list(word)
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            if pieces[0] not in tokens:
                tokens.append(pieces[0])
    types = [gguf.TokenType.NORMAL] * len(tokens)
    tokens.append("<|endoftext|>")
    types.append(gguf.TokenType.CONTROL)
    return tokens, types, merges


def llama3_rope_factors(base, dim, factor=8.0, low=1.0, high=4.0, original=8192):
    """Llama 3.1's per-frequency divisors, as its GGUF conversion writes rope_freqs.weight."""
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / base ** (i / dim)
        wavelen = 2 * math.pi / freq
        if wavelen < original / high:
            out.append(1.0)
        elif wavelen > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_model(arch, shape, path, seed, dtype):
    s = SHAPES[shape]
    rng = np.random.default_rng(seed)
    tokens, types, merges = vocabulary()
    n_vocab = len(tokens)
    d, hd, nh, nkv, ff, nl = s["n_embd"], s["head_dim"], s["n_head"], s["n_head_kv"], s["n_ff"], s["n_layer"]
    if shape == "tiny" and arch in ("qwen3", "gemma3"):
        hd *= 2  # head width independent of n_embd / n_head, as these models have it
    q, kv = nh * hd, nkv * hd
    gguf_arch = {"llama3": "llama", "qwen2-yarn": "qwen2"}.get(arch, arch)
    yarn = arch.endswith("-yarn")
    # A variant is its architecture's model with one thing added (rope scaling).
    arch = arch.removesuffix("-yarn")

    w = gguf.GGUFWriter(path, gguf_arch)
    # Not the architecture's name: llama.cpp keys vocabulary quirks on names like "phi3".
    w.add_name(f"random-weight test model ({shape})")
    w.add_context_length(s["n_ctx"])
    w.add_embedding_length(d)
    w.add_block_count(nl)
    w.add_feed_forward_length(ff)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    if hd != d // nh or arch.startswith("gemma"):
        w.add_key_length(hd)
        w.add_value_length(hd)
    w.add_layer_norm_rms_eps(1e-6 if arch != "llama" else 1e-5)
    rope_dim = hd
    if arch == "phi3":
        rope_dim = hd * 3 // 4
    w.add_rope_dimension_count(rope_dim)
    rope_base = {"llama3": 500000.0, "qwen2": 1000000.0, "qwen3": 1000000.0, "gemma3": 1000000.0}.get(arch, 10000.0)
    w.add_rope_freq_base(rope_base)
    if arch == "phi3":
        # LongRoPE as Phi-3.5 and Phi-4 mini ship it: the reference runs at a context of 128,
        # past this original one, so the long factors are the ones used.
        w.add_float32("phi3.rope.scaling.attn_factor", 1.19)
        w.add_uint32("phi3.rope.scaling.original_context_length", 64)
        # Phi-3 mini's conversion writes its window (2047); llama.cpp does not apply it. At
        # 4 positions, under the prompt's length, the reference shows that it is ignored.
        w.add_sliding_window(4)
    if yarn:
        # Qwen2.5's long-context setting, at a scale where YaRN's ramp spans several of the
        # rotated pairs (pairs 0 to 3 of 8 with base 1e6).
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(4.0)
        w.add_rope_scaling_orig_ctx_len(256)
    if arch == "gemma2":
        w.add_sliding_window(4)
        w.add_attn_logit_softcapping(50.0)
        w.add_final_logit_softcapping(30.0)
    if arch == "gemma3":
        w.add_sliding_window(4)
        w.add_float32("gemma3.rope.freq_base_swa", 10000.0)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == np.float32 else gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(n_vocab - 1)
    w.add_eos_token_id(n_vocab - 1)
    w.add_add_bos_token(False)

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / math.sqrt(cols)).astype(dtype)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    def bias(n):
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    # numpy's shape is (rows, cols); GGUF's dims come out as [cols, rows].
    # Small, so that with a tied output head the blocks' work, not the last token's own
    # embedding, decides the next token.
    w.add_tensor("token_embd.weight", (0.1 * rng.standard_normal((n_vocab, d))).astype(dtype))
    if arch == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(rope_base, rope_dim))
    if arch == "phi3":
        w.add_tensor("rope_factors_long.weight", rng.uniform(1.0, 8.0, rope_dim // 2).astype(np.float32))
        w.add_tensor("rope_factors_short.weight", rng.uniform(1.0, 1.5, rope_dim // 2).astype(np.float32))
    for i in range(nl):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", norm(d))
        if arch == "phi3":
            w.add_tensor(b + "attn_qkv.weight", mat(q + 2 * kv, d))
        else:
            w.add_tensor(b + "attn_q.weight", mat(q, d))
            w.add_tensor(b + "attn_k.weight", mat(kv, d))
            w.add_tensor(b + "attn_v.weight", mat(kv, d))
        if arch == "qwen2":
            w.add_tensor(b + "attn_q.bias", bias(q))
            w.add_tensor(b + "attn_k.bias", bias(kv))
            w.add_tensor(b + "attn_v.bias", bias(kv))
        if arch in ("qwen3", "gemma3"):
            w.add_tensor(b + "attn_q_norm.weight", norm(hd))
            w.add_tensor(b + "attn_k_norm.weight", norm(hd))
        w.add_tensor(b + "attn_output.weight", mat(d, q))
        if arch.startswith("gemma"):
            w.add_tensor(b + "post_attention_norm.weight", norm(d))
        w.add_tensor(b + "ffn_norm.weight", norm(d))
        if arch == "phi3":
            w.add_tensor(b + "ffn_up.weight", mat(2 * ff, d))
        else:
            w.add_tensor(b + "ffn_gate.weight", mat(ff, d))
            w.add_tensor(b + "ffn_up.weight", mat(ff, d))
        w.add_tensor(b + "ffn_down.weight", mat(d, ff))
        if arch.startswith("gemma"):
            w.add_tensor(b + "post_ffw_norm.weight", norm(d))
    w.add_tensor("output_norm.weight", norm(d))
    if arch not in ("llama", "gemma2", "gemma3"):  # those three tie it to the embedding
        w.add_tensor("output.weight", mat(n_vocab, d))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n_vocab


def quantize(src, dst, type_name):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{type_name.upper()}")
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        sys.exit(f"llama.cpp could not quantize {src} to {type_name}: return code {rc}")


def reference(path, n_vocab, seed, n_batch):
    """llama.cpp's logits after each prefix of a prompt, and its greedy continuation."""
    from llama_cpp import Llama
    rng = np.random.default_rng(seed + 1)
    # Ids below the end-of-text token, so the prompt is ordinary text.
    prompt = [int(t) for t in rng.integers(0, n_vocab - 1, PROMPT_LEN)]
    m = Llama(model_path=path, n_ctx=128, n_batch=n_batch, n_ubatch=n_batch, n_threads=2,
              n_threads_batch=2, logits_all=True, verbose=False, seed=seed)
    m.eval(prompt)
    prefix_logits = [[float(f"{x:.9g}") for x in m.scores[i]] for i in range(len(prompt))]
    greedy = []
    for _ in range(GREEDY):
        tok = int(np.argmax(m.scores[m.n_tokens - 1]))
        greedy.append(tok)
        m.eval([tok])
    return {"prompt": prompt, "prefix_logits": prefix_logits, "greedy": greedy}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    p.add_argument("--arch", nargs="*", choices=sorted(ARCHS), default=list(ARCHS))
    p.add_argument("--quant", nargs="*", default=[], help="llama.cpp types, e.g. Q8_0 Q4_K_M")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "..", "any-llm-local", "tests", "data", "arch"))
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--batch", type=int, default=128,
                   help="llama.cpp's batch size for the prompt (1: every token its own step, "
                   "llama.cpp's one-token kernels, which for the K-quants and i-quants sum in "
                   "another order than its batched ones; the small models' references use 1)")
    p.add_argument("--dtype", choices=["f32", "f16"], help="matrices' type (default: f32 for "
                   "tiny, whose references should not depend on f16 rounding; f16 otherwise)")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for arch in a.arch:
        seed = zlib.crc32(f"{arch}/{a.shape}".encode())
        stem = arch if a.shape == "tiny" else f"{arch}-{a.shape}"
        path = os.path.join(a.out, f"{stem}.gguf")
        dtype = a.dtype or ("f32" if a.shape == "tiny" else "f16")
        n_vocab = write_model(arch, a.shape, path, seed, np.float32 if dtype == "f32" else np.float16)
        files = [(path, dtype.upper())]
        for t in a.quant:
            dst = os.path.join(a.out, f"{stem}.{t.lower()}.gguf")
            quantize(path, dst, t)
            files.append((dst, t.upper()))
        for f, ty in files:
            print(f"wrote {f} ({os.path.getsize(f)} bytes)", file=sys.stderr)
        if a.no_reference:
            continue
        import llama_cpp
        out = {
            "provenance": {
                "script": "scripts/gen_test_models.py",
                "command": " ".join(["gen_test_models.py"] + sys.argv[1:]),
                "what": ARCHS[arch],
                "seed": seed,
                "gguf": importlib.metadata.version("gguf"),
                "llama_cpp_python": llama_cpp.__version__,
                "numpy": np.__version__,
                "threads": 2,
                "n_batch": a.batch,
            },
            "files": {},
        }
        for f, ty in files:
            out["files"][os.path.basename(f)] = {"type": ty, **reference(f, n_vocab, seed, a.batch)}
        ref = os.path.join(a.out, f"{stem}.llamacpp.json")
        with open(ref, "w") as fh:
            json.dump(out, fh, separators=(",", ":"))
            fh.write("\n")
        print(f"wrote {ref}", file=sys.stderr)


if __name__ == "__main__":
    main()
