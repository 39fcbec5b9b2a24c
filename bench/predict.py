"""Prediction throughput: `domaintune predict`'s path against sentence-transformers `encode` plus
the same head, on the same rows, weights, batch size, truncation and threads, in one process.

- domaintune: the run loaded as `predict` loads it, `module.predict(texts, datamodule)`
  (tokenize, length-grouped batches, forward, softmax, top 3).
- sentence-transformers: the run exported by `domaintune export` (merged encoder, our pooling
  and max_length), `SentenceTransformer(folder).encode(texts, batch_size=<run's eval batch size>)`,
  then the exported head and a softmax/top 3 in torch.

Both sides run `--repeats` times, alternating; the medians and their ratio are printed, with the
two sides' agreement (same label per row, largest probability difference).

    python bench/predict.py <classification run> <data file> [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from domaintune.inference import export
    from domaintune.predict import CHUNK_ROWS
    from domaintune.runs import load_run

    finished = load_run(args.run)
    datamodule = finished.datamodule
    texts = [t for chunk in datamodule.read_inputs(args.data, finished.cfg.data, CHUNK_ROWS) for t in chunk.text]
    folder = export(str(args.run), str(Path(tempfile.mkdtemp()) / "export"), onnx=False)
    encoder = SentenceTransformer(str(folder), device="cpu")
    head = load_file(folder / "classifier.safetensors")

    def ours():
        return finished.module.predict(texts, datamodule)

    def theirs():
        with torch.no_grad():
            vectors = encoder.encode(texts, batch_size=datamodule.eval_batch_size, convert_to_tensor=True)
            probabilities = (vectors @ head["weight"].T + head["bias"]).softmax(-1)
            return probabilities.topk(3, dim=-1)

    seconds = {"domaintune": [], "sentence-transformers": []}
    for _ in range(args.repeats):
        for name, side in (("domaintune", ours), ("sentence-transformers", theirs)):
            started = time.perf_counter()
            result = side()
            seconds[name].append(time.perf_counter() - started)
            if name == "domaintune":
                found = result
            else:
                values, indices = result

    same = sum(f["label"] == finished.module.labels[i] for f, i in zip(found, indices[:, 0].tolist()))
    gap = max(abs(f["probability"] - v) for f, v in zip(found, values[:, 0].tolist()))
    print(
        f"{len(texts)} rows of {args.data}; batch {datamodule.eval_batch_size}, max_length {datamodule.max_length}, "
        f"{torch.get_num_threads()} threads, {args.repeats} repeats (median)"
    )
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"  {name:22s} {median:7.2f} s  {len(texts) / median:8.1f} rows/s")
    ratio = statistics.median(seconds["sentence-transformers"]) / statistics.median(seconds["domaintune"])
    print(f"  speed, domaintune / sentence-transformers: {ratio:.2f}x")
    print(f"  agreement: same label on {same}/{len(texts)} rows; largest probability difference {gap:.2e}")


if __name__ == "__main__":
    main()
