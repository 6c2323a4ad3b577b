#!/usr/bin/env python3
"""The llama.cpp anchor: prefill and decode speed of a GGUF model on this CPU, as JSON.

Needs the `llama-cpp-python` package (PyPI; it compiles llama.cpp from source, ~10 minutes on
2 cores):  python3 -m venv .venv-anchor && CMAKE_ARGS="-DGGML_NATIVE=ON" \
           .venv-anchor/bin/pip install llama-cpp-python
Run:       .venv-anchor/bin/python llamacpp_bench.py MODEL.gguf [--threads 2] [--prefill 512] [--decode 128]

Kept in the repository from the project's shared bench folder (same measurement), reading the
text from the repository's own copy: any-llm-local/tests/data/reference/gpl-3.txt.

Prefill: the first PREFILL tokens of gpl-3.txt evaluated in one batch from an empty cache.
Decode: greedy generation of DECODE tokens after a 4-token prompt, one token per step.
Each figure is the best of 3 runs. Decode includes the binding's per-token overhead (~0.1 ms).
"""
import argparse, json, os, time
from llama_cpp import Llama

p = argparse.ArgumentParser()
p.add_argument("model"); p.add_argument("--threads", type=int, default=2)
p.add_argument("--prefill", type=int, default=512); p.add_argument("--decode", type=int, default=128)
a = p.parse_args()
m = Llama(model_path=a.model, n_threads=a.threads, n_threads_batch=a.threads, n_batch=a.prefill,
          n_ctx=max(2048, a.prefill + a.decode + 16), verbose=False)
text = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "any-llm-local", "tests",
                         "data", "reference", "gpl-3.txt")).read()
ids = m.tokenize(text.encode(), add_bos=False)[: a.prefill]
best = 1e9
for _ in range(3):
    m.reset(); t = time.perf_counter(); m.eval(ids); best = min(best, time.perf_counter() - t)
prefill = len(ids) / best
prompt = m.tokenize(b"Once upon a time", add_bos=False)
best = 1e9
for _ in range(3):
    m.reset(); m.eval(prompt); t = time.perf_counter()
    for _ in range(a.decode):
        tok = m.sample(temp=0.0); m.eval([tok])
    best = min(best, time.perf_counter() - t)
print(json.dumps({"engine": "llama.cpp", "model": os.path.basename(a.model), "threads": a.threads,
                  "prefill_tokens": len(ids), "prefill_tok_s": round(prefill, 1),
                  "decode_tokens": a.decode, "decode_tok_s": round(a.decode / best, 1)}))
