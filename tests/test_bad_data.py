"""The malformed-input corpus in tests/data/bad/: every file ends in a one-line error (exit 2) or a
handled warning, never a traceback, and nothing is written outside the run's own folder. The
commands run in this process; test_cli checks that a real terminal sees the same one line."""

import json

import pytest

from helpers import ROOT, TINY, cli, error_line, finished_runs

BAD = ROOT / "tests" / "data" / "bad"
ERRORS = {
    "invalid_json_line.jsonl": "line 7 is not valid JSON",
    "missing_label_column.jsonl": "cannot tell which column holds the label",
    "missing_text_column.jsonl": "cannot tell which column holds the text",
    "empty.csv": "the file is empty",
    "header_only.csv": "no row has both a text",
    "one_class.jsonl": "has one class",
    "empty_texts.jsonl": "no row has both a text",
    "unseen_val_label": "val has labels that never occur in train: ['zzz']",
    "binary.csv": "looks like a binary file",
    "no_data_files": "no data files found",
    "ragged_row.csv": "Expected 2 fields in line 12, saw 4",
    "data.xlsx": "unknown data format",
    "corrupt.csv.gz": "not a valid gzip file",
    "not_records.json": "expected a list of objects",
    "array_line.jsonl": "line 2 is a JSON list",
    "two_train_files": "both train.csv and train.jsonl look like the train split",
    "no_train_file": "but no train file",
    "comma_in_tsv.tsv": "cannot tell which column holds the text; columns are ['text,label']",
    "corrupt.parquet": "not a readable Parquet file",
    "empty_labels.jsonl": "no row has both a text",
}
HANDLED = {  # read and prepared: (the warning printed, if any; a text the prepared rows hold, as it is written there)
    "numbers_as_text.jsonl": (None, "1007"),
    "latin1.csv": ("is not UTF-8; read it as cp1252", None),
    "utf8_bom.jsonl": (None, "the parcel arrived late and damaged"),  # the first row, without its byte-order mark
    "huge_rows.jsonl": ("8.3% of train rows exceed max_length=256", None),  # 2 of 24 (prepare prints 0.0% otherwise)
    "control_chars.jsonl": (None, "row 0 end"),  # a bell, a zero-width space and tabs removed
}


def test_the_corpus_covers_every_file():
    assert sorted(p.name for p in BAD.iterdir()) == sorted({**ERRORS, **HANDLED})
    assert len(ERRORS) + len(HANDLED) >= 20


@pytest.mark.parametrize("name", sorted({**ERRORS, **HANDLED}))
def test_bad_input_is_one_line_or_handled(tmp_path, name):
    out = tmp_path / "prepared"
    result = cli(
        "prepare",
        "task=legal",
        "model=tiny",
        f"data.path={BAD / name}",
        f"out={out}",
        cwd=tmp_path,
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "outputs")},
    )
    assert "Traceback" not in result.stderr + result.stdout
    if name in ERRORS:
        assert result.returncode == 2, result.stdout[-500:]
        line = error_line(result)
        assert ERRORS[name] in line and name in line
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere
    else:
        assert result.returncode == 0, result.stderr[-1500:]
        warning, text = HANDLED[name]
        assert warning is None or warning in result.stdout + result.stderr
        texts = {
            json.loads(line)["text"] for split in ("train", "val", "test") for line in (out / f"{split}.jsonl").open()
        }
        assert text is None or text in texts
        assert {p.name for p in out.iterdir()} >= {"train.jsonl", "val.jsonl", "test.jsonl", "report.md"}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # only the run's own folder


def test_training_on_bad_data_fails_before_any_run(tmp_path):
    result = cli(
        "train",
        "task=legal",
        *TINY,
        f"data.path={BAD / 'invalid_json_line.jsonl'}",
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)},
    )
    assert result.returncode == 2 and "line 7 is not valid JSON" in error_line(result)
    assert "Traceback" not in result.stderr and not finished_runs(tmp_path)
