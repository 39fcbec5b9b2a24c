"""`domaintune predict`: a finished classification run labels new texts. Every input row gets the
predicted label, its probability and the top 3, in input order, in a new
`<run>/predictions/<time>/predictions.csv` (or `out=`); when the file has a label column, the
accuracy and macro-F1 of those rows go beside it in `metrics.json`."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from domaintune import verdict
from domaintune.errors import UserError
from domaintune.outputs import write_json
from domaintune.runs import load_run


def predict(run: str, path: str | None = None, text: str | None = None, out: str | None = None) -> tuple[dict, Path]:
    if (path is None) == (text is None):
        raise UserError('give data.path=<file> or text="..." (one of them)')
    finished = load_run(Path(run))
    if finished.module.pipeline_tag == "text-generation":
        raise UserError(
            f"run={run} is a causal-LM run; answer prompts with `domaintune generate run={run} prompt=...`"
        )
    target = Path(out) if out else finished.folder / "predictions" / f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}"
    if target.exists():
        raise UserError(f"out={target} already exists; nothing was overwritten; pass out=<new folder>")
    rows = (
        pd.DataFrame({"text": [text]})
        if text is not None
        else finished.datamodule.read_inputs(Path(path), finished.cfg.data)
    )
    started = time.perf_counter()
    found = finished.module.predict(rows.text.tolist(), finished.datamodule)
    seconds = time.perf_counter() - started
    table = rows.assign(
        predicted=[f["label"] for f in found],
        probability=[f["probability"] for f in found],
        top3=[json.dumps(f["top"], ensure_ascii=False) for f in found],
    )
    summary = {
        "run": str(finished.folder),
        "input": str(path) if path else "text=",
        "rows": len(table),
        "seconds": round(seconds, 2),
        "rows_per_second": round(len(table) / max(seconds, 1e-9), 1),
    }
    if text is not None:
        summary["prediction"] = found[0]
    if "label" in table:
        table["correct"] = table.label == table.predicted
        summary["metrics"] = _scores(table, finished.module.labels)
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    table.to_csv(partial / "predictions.csv", index=False)
    write_json(partial / "metrics.json", summary)
    partial.rename(target)  # the folder appears complete or not at all
    return summary, target


def _scores(table: pd.DataFrame, labels: list[str]) -> dict:
    """Accuracy and macro-F1 over the rows with a label; labels the run never saw count as wrong."""
    known = table[table.label != ""]
    index = {label: i for i, label in enumerate(labels)}
    truth = np.array([index.get(label, len(labels)) for label in known.label])
    predicted = np.array([index[label] for label in known.predicted])
    return {
        "labelled_rows": len(known),
        "unknown_labels": int((truth == len(labels)).sum()),
        "acc": round(float(verdict.accuracy(truth, predicted)), 6),
        "macro_f1": round(float(verdict.macro_f1(truth, predicted)), 6),
    }
