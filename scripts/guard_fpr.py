#!/usr/bin/env python3
"""The default input stack's false-positive rate on ordinary texts.

    scripts/guard_fpr.py .guard-eval/train/injection-all.jsonl target/release/any
    scripts/guard_fpr.py DATA.jsonl ANY --show 5 -- --guards pii,secrets

Reads the benign rows (`"label": 0`) of a JSONL file of `{"text", "label", "family"}` objects
(what `scripts/guard-train` writes to `.guard-eval/train/injection-all.jsonl`), runs
`any guard --stage input` over their texts (the default guards unless other `any guard`
arguments follow `--`), and prints, overall and per family, how many texts were blocked (the
false positives), redacted, warned about, or passed untouched, and which guardrails blocked.

Standard library only. A binary that predates the `"action"` field is read by its `"valid"`:
an invalid verdict counts as blocked.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile

ACTIONS = ("block", "redact", "warn", "pass")


def benign_rows(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}: line {n} is not JSON: {e}")
            if not isinstance(row.get("text"), str):
                sys.exit(f'{path}: line {n} has no string "text"')
            if row.get("label") == 0:
                rows.append(row)
    return rows


def verdicts(any_bin, texts, extra):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
        name = f.name
    try:
        done = subprocess.run(
            [any_bin, "guard", "--stage", "input", "--jsonl", name, *extra],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(name)
    if done.returncode != 0:
        sys.exit(f"any guard failed ({done.returncode}): {done.stderr.strip()}")
    out = [json.loads(l) for l in done.stdout.splitlines() if l.strip()]
    if len(out) != len(texts):
        sys.exit(f"any guard wrote {len(out)} verdicts for {len(texts)} texts")
    return out


def action(v):
    return v.get("action") or ("pass" if v["valid"] else "block")


def blockers(v):
    """The guardrails whose failing verdict blocked the text."""
    names = [
        o["guardrail"]
        for o in v.get("verdicts", [])
        if not o["valid"] and o.get("action", "block") == "block"
    ]
    return names or ["?"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="JSONL with text, label (0 = benign) and family")
    p.add_argument("any", help="the `any` binary")
    p.add_argument("--show", type=int, default=0, metavar="N", help="print N blocked texts per family")
    p.add_argument("extra", nargs="*", help="more `any guard` arguments, after --")
    args = p.parse_args()

    rows = benign_rows(args.data)
    if not rows:
        sys.exit(f"{args.data}: no benign rows (label 0)")
    out = verdicts(args.any, [r["text"] for r in rows], args.extra)

    counts = collections.defaultdict(collections.Counter)
    by_guard = collections.Counter()
    shown = collections.Counter()
    for row, v in zip(rows, out):
        family = row.get("family", "?")
        a = action(v)
        counts[family][a] += 1
        counts["(all)"][a] += 1
        if a == "block":
            for g in blockers(v):
                by_guard[g] += 1
            if shown[family] < args.show:
                shown[family] += 1
                raw = row["text"].encode("utf-8")  # spans are byte ranges
                spans = [
                    (s.get("guardrail"), s["label"], raw[s["start"] : s["end"]].decode("utf-8", "replace"))
                    for s in v.get("spans", [])
                ]
                print(f"[{family}] blocked by {blockers(v)} {spans[:4]}: {row['text'][:160]!r}", file=sys.stderr)

    print(f"{'family':<22}{'texts':>7}{'blocked':>9}{'rate':>8}{'redacted':>10}{'warned':>8}")
    for family in sorted(counts, key=lambda f: (f == "(all)", f)):
        c = counts[family]
        n = sum(c.values())
        print(
            f"{family:<22}{n:>7}{c['block']:>9}{c['block'] / n:>8.2%}{c['redact']:>10}{c['warn']:>8}"
        )
    if by_guard:
        print("blocked by: " + ", ".join(f"{g} {n}" for g, n in by_guard.most_common()))


if __name__ == "__main__":
    main()
