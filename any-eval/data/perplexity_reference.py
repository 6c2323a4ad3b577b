#!/usr/bin/env python3
"""Writes perplexity_reference.json: the log-likelihood of every document of docs.jsonl under
the local default model (SmolLM2-135M-Instruct Q4_1), as llama.cpp computes it through
llama-cpp-python, for `any eval --perplexity` to agree with.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install llama-cpp-python numpy
    /tmp/ref/bin/python any-eval/data/perplexity_reference.py ~/.cache/any-suite/models/SmolLM2-135M-Instruct.Q4_1.gguf

As lm-evaluation-harness's loglikelihood_rolling scores a document: its tokens (special tokens
not parsed) after BOS if the model asks for one; every token after the first scored once, by
the log-softmax of the logits at the position before it; a window reads at most `max_len`
tokens from an empty cache. The first window scores up to `max_len` tokens, each later one
the next `max_len` given the one token before them, and the last, shorter one reads as far
back as `max_len` allows. Each document is scored with the whole document in one window and
with windows of 8 tokens.
"""
import json
import pathlib
import sys

import numpy as np
from llama_cpp import Llama, __version__

here = pathlib.Path(__file__).parent
llm = Llama(model_path=sys.argv[1], n_ctx=512, logits_all=True, verbose=False, seed=0, n_threads=2)


def windows(n, max_len):
    """(start, end, scored): read seq[start:end-1], score the last `scored` of seq[start:end]."""
    if n < 2:
        return []
    first = min(max_len, n - 1)
    out = [(0, first + 1, first)]
    done = first + 1
    while done < n:
        scored = min(max_len, n - done)
        end = done + scored
        out.append((end - max_len - 1, end, scored))
        done = end
    return out


def rolling(seq, max_len):
    total, count = 0.0, 0
    for start, end, scored in windows(len(seq), max_len):
        ids = seq[start:end]
        llm.reset()
        llm.eval(ids[:-1])
        logits = np.array(llm.scores[: len(ids) - 1], dtype=np.float64)
        for i in range(len(ids) - scored, len(ids)):
            row = logits[i - 1]
            top = row.max()
            total += row[ids[i]] - top - np.log(np.exp(row - top).sum())
            count += 1
    return total, count


docs = [json.loads(l) for l in (here / "docs.jsonl").read_text().splitlines() if l.strip()]
out = []
for d in docs:
    seq = llm.tokenize(d["text"].encode(), add_bos=True, special=False)
    whole, tokens = rolling(seq, len(seq))
    by8, tokens8 = rolling(seq, 8)
    assert tokens == tokens8
    out.append({"id": d["id"], "tokens": tokens, "log_likelihood": whole, "log_likelihood_ctx8": by8})
json.dump({"llama-cpp-python": __version__, "documents": out}, open(here / "perplexity_reference.json", "w"), indent=1)
print(f"{len(out)} documents")
