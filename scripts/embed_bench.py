"""Sentences per second of sentence-transformers on the CPU, at batch 1 and batch 32.

The texts are the user and assistant turns of examples/memory-chat/data/recall.jsonl (what
the memory example embeds), the same texts `cargo bench -p any-llm-local --bench embed`
times our encoder on. torch uses as many threads as the machine has cores, as our encoder
does, unless --threads says otherwise (ANY_BENCH_THREADS through scripts/embed-reference). Run through scripts/embed-reference --bench.
"""

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--seconds", type=float, default=15.0, help="time per batch size, at least")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in open(args.texts)]
    texts = [r["text"] for r in rows if r["kind"] == "turn"]
    model = SentenceTransformer(args.model, device="cpu")
    print(f"{len(texts)} texts, torch {torch.__version__}, {torch.get_num_threads()} threads")
    model.encode(texts[:64], batch_size=32)  # warm-up
    for batch in (1, 32):
        done = 0
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < args.seconds:
            chunk = [texts[(i + j) % len(texts)] for j in range(batch)]
            model.encode(chunk, batch_size=batch)
            i += batch
            done += batch
        elapsed = time.perf_counter() - start
        print(f"batch {batch}: {done / elapsed:.1f} sentences/s ({done} in {elapsed:.1f} s)")


if __name__ == "__main__":
    main()
