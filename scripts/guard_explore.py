#!/usr/bin/env python3
"""The leave-one-family-out comparison behind the embedding head's design (the book's
guardrails chapter, "Sentence embeddings"): the same data, folds and thresholds as
scripts/guard_train.py, for other models. Run after `scripts/guard-train` (it reuses the
embeddings cache in .guard-eval/train), with the evaluation venv and guard-train's environment:

    .guard-eval/venv/bin/python scripts/guard_explore.py ngram emb mlp:32 concat:0.5

Each argument is a model; each prints its recall at 2% false positives (all attacks, and own
texts alone), the curve, and per family:

  ngram[:L2]     the n-gram logistic regression (guard_train), optionally another L2
  emb            a linear head over the embeddings alone (text and windows, max)
  mlp:H          a tanh layer of H units over the embeddings alone
  concat:A       n-grams and embeddings together, each window with its own vector, the
                 vectors scaled by A (L2_HEAD = 1e-4 / A²)
  whole:A        concat:A, but each window scored with its text's vector (one vector per
                 text: a sixteenth of the encoder's work on 4 KiB); the shipped model is
                 whole:0.32 (L2_HEAD = 1e-3)
  wide:H         n-grams plus a tanh layer of H units over the vectors, trained together
"""

import sys
from pathlib import Path

import numpy as np
import scipy.sparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import guard_head  # noqa: E402
import guard_train as gt  # noqa: E402


def main():
    out = Path(".guard-eval/train")
    rows = gt.load(Path(".guard-eval/packages"))
    x = gt.matrix(rows)
    xw, owner = gt.window_matrix(rows)
    e, ew = guard_head.embeddings(rows, "target/release/any", out, windows=True)
    none = scipy.sparse.csr_matrix((len(rows), 0))
    none_w = scipy.sparse.csr_matrix((len(owner), 0))
    for spec in sys.argv[1:]:
        kind, _, arg = spec.partition(":")
        gt.L2 = 1e-4
        if kind == "ngram":
            gt.L2 = float(arg or 1e-4)
            scorer = gt.ngram_scorer(x, xw, owner)
        elif kind in ("emb", "mlp"):
            hidden = int(arg) if kind == "mlp" else 0
            scorer = guard_head.scorer(none, none_w, owner, e, hidden, 1e-3 if hidden else 1e-4, ew)
        elif kind in ("concat", "whole"):
            windows = ew if kind == "concat" else None
            scorer = guard_head.scorer(x, xw, owner, e, 0, 1e-4 / float(arg) ** 2, windows)
        elif kind == "wide":
            scorer = guard_head.scorer(x, xw, owner, e, int(arg), 1e-3, ew)
        else:
            sys.exit(f"unknown model {spec!r}")
        print(f"== {spec}", file=sys.stderr)
        gt.loso(rows, scorer, out / f"explore-{spec.replace(':', '_')}.json")


if __name__ == "__main__":
    main()
