"""`domaintune predict`: a finished classification run labels new texts. Every input row gets its
answer (the predicted label, its probability and the top 3; or, multi-label, the labels above
their thresholds and every label's probability), in input order, in a new
`<run>/predictions/<time>/predictions.csv` (or `out=`); when the file has labels, the scores of
those rows go beside it in `metrics.json`."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from domaintune.data.labels import target_of
from domaintune.errors import UserError
from domaintune.outputs import write_json
from domaintune.runs import choose_model, load_run, refuse_unless_served

CHUNK_ROWS = 50_000  # rows read, predicted and written at a time: memory stays flat for any file size


def predict(
    run: str,
    path: str | None = None,
    text: str | None = None,
    out: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    use: str = "fine_tuned",
) -> tuple[dict, Path]:
    """`use=base`: the run's base model with its probe, the cheaper model its verdict compares with."""
    if (path is None) == (text is None):
        raise UserError('give data.path=<file> or text="..." (one of them)')
    finished = load_run(Path(run))
    refuse_unless_served(finished, "predict")
    choose_model(finished, use)
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
    summary = {"run": str(finished.folder), "use": use, "input": str(path) if path else "text=", **summary}
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
        answers = [f["predicted"] for f in found]
        part = chunk.assign(**{column: [_cell(f[column]) for f in found] for column in found[0]})
        target = target_of(chunk)
        if target:
            given = [_given(value) for value in chunk[target]]
            part[target] = [_cell(value) for value in chunk[target]]
            part["correct"] = [_same(t, a) if t is not None else "" for t, a in zip(given, answers)]
            truth += [t for t in given if t is not None]
            predicted += [a for t, a in zip(given, answers) if t is not None]
        part.to_csv(table, mode="a", header=rows == 0, index=False)
        rows, first = rows + len(part), first or found[0]
    summary = {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / max(seconds, 1e-9), 1)}
    if rows == 1:
        summary["prediction"] = first
    if truth and (scores := finished.module.score_predictions(truth, predicted)):
        summary["metrics"] = scores
    return summary


def _cell(value) -> str | float:
    """A CSV cell: lists and mappings (top labels, label sets, probabilities) as JSON."""
    return (
        json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)
        if isinstance(value, (list, tuple, dict))
        else value
    )


def _given(value):
    """A row's true answer, or None where the file leaves it empty."""
    return None if value is None or (isinstance(value, str) and not value) else value


def _same(truth, answer) -> bool:
    return sorted(truth) == sorted(answer) if isinstance(truth, (list, tuple)) else truth == answer
