"""Read one data file (CSV, TSV, JSONL, JSON, Parquet, text lines; optionally gzipped) into a DataFrame."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from domaintune.errors import DataError

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".txt": "txt"}
FORMATS |= dict.fromkeys((".conll", ".iob", ".bio", ".iobes"), "conll")  # one token and its tag a line
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
SEPARATORS = (",", ";", "\t", "|")


def files_stamp(path: Path) -> tuple:
    """Name, size and mtime of the data file(s): in-process caches read an edited file again."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def data_format(path: Path) -> str | None:
    """Format from the name: `x.csv`, `x.csv.gz`; a bare `x.gz` holds text lines."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        if not suffixes or suffixes[-1] not in FORMATS:
            return "txt"
    return FORMATS.get(suffixes[-1]) if suffixes else None


def _decode(path: Path, raw: bytes, final: bool = True) -> tuple[str, str]:
    """The first of ENCODINGS that decodes `raw`, and the text; `final=False`: `raw` is the start of
    a longer file and may end inside a character."""
    if b"\x00" in raw[:8192]:
        raise DataError(f"{path}: looks like a binary file, not {data_format(path)} text")
    for encoding in ENCODINGS:
        try:
            text = codecs.getincrementaldecoder(encoding)().decode(raw, final=final)
        except UnicodeDecodeError:
            continue
        if encoding != ENCODINGS[0]:
            log.warning("%s is not UTF-8; read it as %s", path, encoding)
        return encoding, text
    raise DataError(f"{path}: cannot decode the bytes as text; save it as UTF-8")  # latin-1 decodes anything


def _checked_format(path: Path) -> str:
    fmt = data_format(path)
    if fmt is None:
        raise DataError(
            f"{path}: unknown data format; use .csv, .tsv, .jsonl, .json, .parquet or .txt (optionally .gz)"
        )
    if not path.is_file():
        raise DataError(f"{path}: no such file; set data.path to an existing file or folder")
    return fmt


def _file_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in .gz; an empty file is an error."""
    raw = path.read_bytes()
    if path.suffix.lower() == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; it needs rows of text and labels")
    return raw


def read_text(path: Path) -> str:
    """A text file's contents (gunzipped, decoded as read_table decodes), for formats read line by
    line elsewhere (CoNLL token files)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file; set data.path to an existing file or folder")
    return _decode(path, _file_bytes(path))[1]


def read_table(path: Path, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The file's rows as a DataFrame; a `txt` file gives one `text` row per non-blank line.
    `names` (`data.column_names`): a CSV or TSV file has no header row, these are its columns."""
    fmt = _checked_format(path)
    raw = _file_bytes(path)
    if fmt == "parquet":
        try:
            return pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    if fmt == "conll":
        raise DataError(
            f"{path}: a CoNLL token file (a token and its tag a line); entity recognition reads it "
            "(data=token_classification, as task=medical uses)"
        )
    _, text = _decode(path, raw)
    try:
        if fmt in ("csv", "tsv"):
            return _checked_names(path, pd.read_csv(io.StringIO(text), **delimited(fmt, text, names)), names)
        if fmt == "txt":
            return pd.DataFrame({"text": [line for line in text.splitlines() if line.strip()]})
        if fmt == "jsonl":
            return pd.DataFrame(_json_lines(path, text.splitlines()))
        return pd.DataFrame(_json_records(path, text))
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{path}: {str(exc).strip()}; fix the row or quote fields that contain the separator"
        ) from None


def delimited(fmt: str, head: str, names: tuple[str, ...] | None) -> dict:
    """pandas.read_csv's settings for a CSV or TSV file that starts with `head`."""
    options = {"dtype": str, "keep_default_na": False}
    if names is not None:
        options.update(header=None, names=list(names))
    if fmt == "csv":
        return {**options, "sep": csv_separator(head)}
    return {**options, "sep": "\t", "quoting": tsv_quoting(head)}


def _checked_names(path: Path, frame: pd.DataFrame, names: tuple[str, ...] | None) -> pd.DataFrame:
    """A header-less file whose rows have more fields than `data.column_names` names is one line."""
    if names is None:
        return frame
    if not isinstance(frame.index, pd.RangeIndex):  # pandas makes the surplus leading fields an index
        raise DataError(f"{path}: rows have more fields than data.column_names={list(names)}; name every column")
    if len(names) > 1 and len(frame) and frame[names[-1]].fillna("").eq("").all():
        raise DataError(f"{path}: rows have fewer fields than data.column_names={list(names)}; name only those")
    return frame


def tsv_quoting(head: str) -> int:
    """How a TSV file quotes: as CSV writers do (a field that starts with `"` ends with one, inner
    quotes doubled; Python's csv and pandas write TSV so) when every such field in `head` is
    quoted so, else not at all: a stray quote in plain TSV text must not swallow the lines after it."""
    quoted = [f for line in head.splitlines()[:-1] for f in line.split("\t") if f.startswith('"')]
    if quoted and all(len(f) >= 2 and f.endswith('"') and f[1:-1].replace('""', "").count('"') == 0 for f in quoted):
        return csv.QUOTE_MINIMAL
    return csv.QUOTE_NONE


def csv_separator(text: str) -> str:
    """A CSV file's separator: comma, or the semicolon, tab or pipe that spreadsheets in many
    locales write. Read from the header line (column names hold no separators); when it holds
    more than one candidate, Python's csv.Sniffer decides on the first rows."""
    header = text.lstrip("\ufeff").split("\n", 1)[0]
    found = [sep for sep in SEPARATORS if sep in header]
    if len(found) <= 1:
        return found[0] if found else ","
    try:
        return csv.Sniffer().sniff("\n".join(text.splitlines()[:50]), delimiters="".join(found)).delimiter
    except csv.Error:
        return ","


def _json_lines(path: Path, lines: Iterable[str], first: int = 1) -> list[dict]:
    rows = []
    for number, line in enumerate(lines, start=first):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg}); one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is a JSON {type(row).__name__}, not an object with named fields")
        rows.append(row)
    return rows


def _json_records(path: Path, text: str) -> list[dict]:
    """A JSON list of records, or an object whose values are records (keyed by id)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    records = list(data.values()) if isinstance(data, dict) else data
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: expected a list of objects (or an object of objects), one per example")
    return records


def read_chunks(path: Path, rows: int, names: tuple[str, ...] | None = None) -> Iterator[pd.DataFrame]:
    """The file's rows, `rows` at a time, in order: a file larger than memory is never read whole.
    A JSON document and a gzipped Parquet file cannot be streamed and are read whole. `names`:
    as read_table's."""
    fmt = _checked_format(path)
    gzipped = path.suffix.lower() == ".gz"
    if fmt == "json" or (fmt == "parquet" and gzipped):
        yield read_table(path, names)
        return
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                yield batch.to_pandas()
        except Exception as exc:
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
        return
    try:
        with (gzip.open if gzipped else open)(path, "rb") as handle:
            encoding, head = _decode(path, handle.read(1 << 20), final=False)  # judged on the first megabyte
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    if not head.strip():
        raise DataError(f"{path}: the file is empty; it needs rows of text and labels")
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding=encoding, newline="" if fmt in ("csv", "tsv") else None) as handle:
            if fmt in ("csv", "tsv"):
                for chunk in pd.read_csv(handle, chunksize=rows, **delimited(fmt, head, names)):
                    yield _checked_names(path, chunk, names)
                return
            lines, first = [], 1
            for number, line in enumerate(handle, start=1):
                lines.append(line.rstrip("\n"))
                if len(lines) == rows:
                    yield _lines_frame(path, fmt, lines, first)
                    lines, first = [], number + 1
            if lines:
                yield _lines_frame(path, fmt, lines, first)
    except UnicodeDecodeError:
        raise DataError(f"{path}: bytes further in are not {encoding}; save the file as UTF-8") from None
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{path}: {str(exc).strip()}; fix the row or quote fields that contain the separator"
        ) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read to the end ({exc})") from None


def _lines_frame(path: Path, fmt: str, lines: list[str], first: int) -> pd.DataFrame:
    if fmt == "jsonl":
        return pd.DataFrame(_json_lines(path, lines, first))
    return pd.DataFrame({"text": [line for line in lines if line.strip()]})


def find_column(
    frame: pd.DataFrame, wanted: str | None, candidates: tuple[str, ...], role: str, source: Path, hint: str = ""
) -> str:
    """The column named by `data.<role>_column`, else the first of `candidates` (any case)."""
    if wanted is not None:
        if wanted not in frame.columns:
            raise DataError(f"{source}: no column '{wanted}' (data.{role}_column); columns are {list(frame.columns)}")
        return wanted
    by_lower = {str(c).lower(): c for c in frame.columns}
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    raise DataError(
        f"{source}: cannot tell which column holds the {role}; columns are {list(frame.columns)}; "
        f"set data.{role}_column=<name>{hint}"
    )
