#!/usr/bin/env python3
"""Writes mc_reference.json: the log-likelihood of every choice of mc.jsonl under the local
default model (SmolLM2-135M-Instruct Q4_1), as llama.cpp computes it through
llama-cpp-python, for any-eval's likelihood test to agree with.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install llama-cpp-python numpy
    /tmp/ref/bin/python any-eval/data/mc_reference.py ~/.cache/any-suite/models/SmolLM2-135M-Instruct.Q4_1.gguf

As lm-evaluation-harness scores a choice: the continuation is " " + choice; the context and
context + continuation are tokenized (BOS only if the model asks for it, special tokens not
parsed); the tokens past their longest common prefix (at least one) are scored, each by the
log-softmax of the logits at the position before it, and summed.
"""
import json
import pathlib
import sys

import numpy as np
from llama_cpp import Llama, __version__

here = pathlib.Path(__file__).parent
llm = Llama(model_path=sys.argv[1], n_ctx=512, logits_all=True, verbose=False, seed=0, n_threads=2)


def log_likelihood(context, continuation):
    ctx = llm.tokenize(context.encode(), add_bos=True, special=False)
    whole = llm.tokenize((context + continuation).encode(), add_bos=True, special=False)
    start = 0
    while start < min(len(ctx), len(whole)) and ctx[start] == whole[start]:
        start += 1
    start = max(start, 1)
    llm.reset()
    llm.eval(whole)
    logits = np.array(llm.scores[: len(whole)], dtype=np.float64)
    total = 0.0
    for i in range(start, len(whole)):
        row = logits[i - 1]
        top = row.max()
        total += row[whole[i]] - top - np.log(np.exp(row - top).sum())
    return total


cases = [json.loads(l) for l in (here / "mc.jsonl").read_text().splitlines() if l.strip()]
out = []
for c in cases:
    lls = [log_likelihood(c["input"], " " + choice) for choice in c["choices"]]
    out.append({"id": c["id"], "log_likelihoods": lls})
json.dump({"llama-cpp-python": __version__, "cases": out}, open(here / "mc_reference.json", "w"), indent=1)
print(f"{len(out)} cases")
