#!/usr/bin/env python3
"""Writes reference_scores.json: ROUGE and BLEU of the pairs in text_pairs.jsonl as the
reference implementations compute them, for any-eval's tests to agree with.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install rouge-score==0.1.2 sacrebleu==2.6.0
    /tmp/ref/bin/python any-eval/data/reference_scores.py

rouge-score: RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False).score_multi,
F-measure. sacrebleu: sentence_bleu (13a, exp smoothing, effective order) per pair, and
corpus_bleu over all pairs (references padded with None where a pair has fewer).
"""
import json
import pathlib

import sacrebleu
from rouge_score import rouge_scorer

here = pathlib.Path(__file__).parent
pairs = [json.loads(l) for l in (here / "text_pairs.jsonl").read_text().splitlines() if l.strip()]
scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
out = []
for p in pairs:
    r = scorer.score_multi(p["references"], p["prediction"])
    out.append({
        "rouge1": r["rouge1"].fmeasure,
        "rouge2": r["rouge2"].fmeasure,
        "rougeL": r["rougeL"].fmeasure,
        "bleu": sacrebleu.sentence_bleu(p["prediction"], p["references"]).score,
    })
width = max(len(p["references"]) for p in pairs)
streams = [[p["references"][i] if i < len(p["references"]) else None for p in pairs] for i in range(width)]
corpus = sacrebleu.corpus_bleu([p["prediction"] for p in pairs], streams).score
json.dump({
    "tools": {"rouge-score": "0.1.2", "sacrebleu": sacrebleu.__version__},
    "pairs": out,
    "corpus_bleu": corpus,
}, open(here / "reference_scores.json", "w"), indent=1)
print(f"{len(out)} pairs, corpus BLEU {corpus:.4f}")
