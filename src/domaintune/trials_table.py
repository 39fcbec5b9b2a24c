"""`trials.csv`, the table of a sweep's or a plain multirun's trials: one row per trial (number,
state, value, params.*, epochs run, seconds, note, worker, run folder). One reader and one writer
for the Optuna sweep, the basic-sweeper multirun and `compare`."""

from __future__ import annotations

import csv
from pathlib import Path

from domaintune.outputs import write_csv

FILENAME = "trials.csv"


def write(folder: Path, rows: list[dict]) -> None:
    """The whole table, in trial order (written, then renamed: parallel workers never leave half a file)."""
    write_csv(Path(folder) / FILENAME, sorted(rows, key=lambda row: int(row["number"])))


def read(folder: Path) -> list[dict]:
    """The rows, a dict each (values as text), or [] when the folder has no table yet."""
    table = Path(folder) / FILENAME
    if not table.is_file():
        return []
    with open(table, newline="") as handle:
        return list(csv.DictReader(handle))


def holds_table(folder: Path) -> bool:
    return (Path(folder) / FILENAME).is_file()
