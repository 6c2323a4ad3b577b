"""Sentence embeddings for scripts/guard_train.py, from the project's own encoder.

The embedding head of the injection detector reads the vectors of all-MiniLM-L6-v2 as
any-llm-local computes them, so the training script asks the same code for them: it starts
`any serve` on a free loopback port and posts to /v1/embeddings. Vectors are kept in an
append-only cache (`<dir>/embeddings.bin`: per text, the sha256 of its UTF-8 bytes and its
384 float32 values), so a second run, and `--check`, embed nothing twice.
"""

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

DIMS = 384
BATCH = 32
RECORD = 32 + 4 * DIMS


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class Embeddings:
    """`embed(texts)` -> float32 array (len(texts), DIMS), unit rows, cached on disk."""

    def __init__(self, any_bin: str, cache_dir: Path, threads: int | None = None):
        self.any_bin = any_bin
        self.threads = threads
        self.path = Path(cache_dir) / "embeddings.bin"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.known = {}
        if self.path.exists():
            blob = self.path.read_bytes()
            whole = len(blob) - len(blob) % RECORD  # an interrupted write leaves a tail
            for at in range(0, whole, RECORD):
                self.known[blob[at:at + 32]] = np.frombuffer(blob[at + 32:at + RECORD], dtype="<f4")
            if whole != len(blob):
                with self.path.open("r+b") as f:
                    f.truncate(whole)
        self.server = None
        self.url = None

    def _start(self):
        cmd = [self.any_bin, "serve", "--addr", "127.0.0.1:0", "--embedder", "local"]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        self.server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.server.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"`any serve` did not start: {line!r}")
        self.url = line.split("listening on ")[1].split()[0] + "/embeddings"

    def close(self):
        if self.server is not None:
            self.server.terminate()
            self.server.wait()
            self.server = None

    def _post(self, texts: list[str]) -> list[np.ndarray]:
        body = json.dumps({"model": "local", "input": texts}).encode()
        req = urllib.request.Request(self.url, body, {"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as resp:
            data = json.load(resp)["data"]
        return [np.array(d["embedding"], dtype="<f4") for d in sorted(data, key=lambda d: d["index"])]

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if _key(t) not in self.known))
        if missing:
            if self.server is None:
                self._start()
            t0 = time.time()
            with self.path.open("ab") as f:
                for s in range(0, len(missing), BATCH):
                    batch = missing[s:s + BATCH]
                    for t, v in zip(batch, self._post(batch)):
                        if v.shape != (DIMS,):
                            raise RuntimeError(f"expected {DIMS} dimensions, got {v.shape}")
                        self.known[_key(t)] = v
                        f.write(_key(t) + v.tobytes())
                    f.flush()
                    if s // BATCH % 50 == 0:
                        print(f"  embedded {s + len(batch)}/{len(missing)} ({time.time() - t0:.0f} s)",
                              file=sys.stderr, flush=True)
        out = np.zeros((len(texts), DIMS), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self.known[_key(t)]
        return out
