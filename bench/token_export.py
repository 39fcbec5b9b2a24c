"""Does an exported entity-recognition run give what `predict` gives? A finished
token-classification run is exported; transformers' `pipeline("token-classification",
aggregation_strategy="first")` on the export and the run's own `predict` then tag the same test
sentences, twice: as raw text (the words joined by spaces, split into words by the tokenizer on
both sides) and pre-tokenised (the data's own words; `is_split_into_words=True` for the
pipeline). It prints how many sentences get exactly the same entities (type, character start
and end) and scores within 1e-4, separately for sentences within `max_length` sub-words and
longer ones (windowed by `predict`, read whole by the pipeline), and onnxruntime's largest
logit difference from ours.

    python bench/token_export.py <run folder> [<out folder>]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def agreement(tagger, ours: list[dict], inputs: list, too_long: list[bool], **options) -> dict[str, list[int]]:
    counts = {"within max_length": [0, 0], "longer": [0, 0]}  # [same, sentences]
    for text, found, long in zip(inputs, ours, too_long):
        theirs = tagger(list(text) if options else text, **options)
        if theirs and isinstance(theirs[0], list):  # one pre-tokenised sentence comes back as a batch of one
            theirs = theirs[0]
        same = [[e["entity_group"], e["start"], e["end"]] for e in theirs] == found["predicted"] and all(
            abs(float(e["score"]) - f["score"]) < 1e-4 for e, f in zip(theirs, found["entities"])
        )
        key = "longer" if long else "within max_length"
        counts[key][0] += same
        counts[key][1] += 1
    return counts


def main(run: Path, out: Path) -> None:
    import onnxruntime
    from transformers import AutoTokenizer, pipeline

    from domaintune.data.token_classification import Words
    from domaintune.runs import load_run

    finished = load_run(run)
    module, datamodule = finished.module, finished.datamodule
    datamodule.setup("fit")
    sentences = [Words(tokens) for tokens in datamodule.datasets["test"].words]
    raw = [str(s) for s in sentences]
    module.export(out, datamodule)
    tokenizer = AutoTokenizer.from_pretrained(out)
    too_long = [len(tokenizer(text)["input_ids"]) > datamodule.max_length for text in raw]
    tagger = pipeline("token-classification", model=str(out), aggregation_strategy="first", device=-1)
    entities = 0
    for name, inputs, options in (
        ("raw text", raw, {}),
        ("pre-tokenised", sentences, {"is_split_into_words": True}),
    ):
        ours = module.predict(inputs, datamodule)
        entities = sum(len(f["predicted"]) for f in ours)
        counts = agreement(tagger, ours, inputs, too_long, **options)
        shown = ", ".join(f"{same}/{n} {key}" for key, (same, n) in counts.items())
        print(f"{name}: the same entities and scores in {shown} sentences ({entities} entities predicted)")
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    worst = 0.0
    for start in range(0, len(raw), 64):
        batch = tokenizer(raw[start : start + 64], padding=True, truncation=True, return_tensors="np")
        logits = session.run(["logits"], {k: batch[k] for k in ("input_ids", "attention_mask")})[0]
        with torch.no_grad():
            expected = module(torch.as_tensor(batch["input_ids"]), torch.as_tensor(batch["attention_mask"])).numpy()
        worst = max(worst, float(np.abs(logits - expected)[batch["attention_mask"].astype(bool)].max()))
    print(f"onnxruntime: largest logit difference {worst:.2e} over the {len(raw)} test sentences")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp()) / "export")
