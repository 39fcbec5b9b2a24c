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

import pandas as pd

from domaintune.errors import UserError
from domaintune.outputs import write_json
from domaintune.runs import load_run, refuse_unless_served

CHUNK_ROWS = 50_000  # rows read, predicted and written at a time: memory stays flat for any file size


def predict(
    run: str, path: str | None = None, text: str | None = None, out: str | None = None, chunk_rows: int = CHUNK_ROWS
) -> tuple[dict, Path]:
    if (path is None) == (text is None):
        raise UserError('give data.path=<file> or text="..." (one of them)')
    finished = load_run(Path(run))
    refuse_unless_served(finished, "predict")
    target = Path(out) if out else finished.folder / "predictions" / f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}"
    if target.exists():
        raise UserError(f"out={target} already exists; nothing was overwritten; pass out=<new folder>")
    chunks = (
        [pd.DataFrame({"text": [text]})]
        if text is not None
        else finished.datamodule.read_inputs(Path(path), finished.cfg.data, chunk_rows)
    )
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        summary = _predict_chunks(finished, chunks, partial / "predictions.csv")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    summary = {"run": str(finished.folder), "input": str(path) if path else "text=", **summary}
    write_json(partial / "metrics.json", summary)
    partial.rename(target)  # the folder appears complete or not at all
    return summary, target


def _predict_chunks(finished, chunks, table: Path) -> dict:
    """Predict chunk by chunk, appending to `table` in input order; the labelled rows' answers are
    kept for the module to score (`score_predictions`)."""
    rows, seconds, first, truth, predicted = 0, 0.0, None, [], []
    for chunk in chunks:
        started = time.perf_counter()
        found = finished.module.predict(chunk.text.tolist(), finished.datamodule)
        seconds += time.perf_counter() - started
        part = chunk.assign(
            predicted=[f["label"] for f in found],
            probability=[f["probability"] for f in found],
            top3=[json.dumps(f["top"], ensure_ascii=False) for f in found],
        )
        if "label" in part:
            part["correct"] = part.label == part.predicted
            known = part[part.label != ""]
            truth += known.label.tolist()
            predicted += known.predicted.tolist()
        part.to_csv(table, mode="a", header=rows == 0, index=False)
        rows, first = rows + len(part), first or found[0]
    summary = {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / max(seconds, 1e-9), 1)}
    if rows == 1:
        summary["prediction"] = first
    if truth and (scores := finished.module.score_predictions(truth, predicted)):
        summary["metrics"] = scores
    return summary
