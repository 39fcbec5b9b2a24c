"""`domaintune prepare`: validate, clean and split a data set (classification or instruction)
before any training, and write what was found (report.md, plots) next to the cleaned splits."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd

from domaintune.data.cleaning import CleaningReport, normalize_columns
from domaintune.data.labels import LABELS, label_sets
from domaintune.data.splits import check_labels, clean_and_carve
from domaintune.errors import DataError

IMBALANCE_SHARE = 0.5  # a majority class above this share of train rows gets a warning and a remedy
RARE_ROWS = 20  # a label with fewer train rows is listed as rare: its F1 on a test split is mostly noise


def prepare(cfg, out: Path) -> dict:
    """Normalize -> remove duplicates and leakage -> split what is missing -> check labels -> report.
    Returns the summary. The run's datamodule reads the data, as training would."""
    from omegaconf import open_dict

    from domaintune import precision
    from domaintune.runs import build_data

    with open_dict(cfg):  # prepare writes nothing outside its own folder: no token cache either
        if "cache_dir" in cfg.data:
            cfg.data.cache_dir = None
    precision.settle(cfg)  # the probe's features in the precision training would use
    data = cfg.data
    backbone, datamodule = build_data(cfg)  # the datamodule says what its rows hold, and reads them
    path = datamodule.path
    report = CleaningReport()
    raw = datamodule.read_raw(report)
    normalized = {
        s: normalize_columns(f, s, datamodule.text_columns, report, keep_lines=not datamodule.labelled)
        for s, f in raw.items()
    }
    splits, _ = clean_and_carve(
        normalized, datamodule.text_columns[0], data.val_fraction, data.test_fraction, data.seed, report=report
    )
    brought = set(raw)
    if datamodule.labelled:
        check_labels(path, splits)
    for name, frame in splits.items():
        if frame.empty:
            raise DataError(
                f"{path}: the {name} split is empty after cleaning; add rows or change data.val_fraction / "
                "data.test_fraction"
            )

    baseline = _baseline(cfg, backbone, datamodule)
    texts = splits["train"][list(datamodule.text_columns)].astype(str).agg("\n".join, axis=1)
    # before anything is written: a tokenizer that fails leaves nothing
    lengths = [len(ids) for ids in datamodule.tokenizer(texts.tolist(), add_special_tokens=True)["input_ids"]]
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        summary = _write(splits, brought, path, data, report, lengths, datamodule, partial, out, baseline)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out)  # the folder appears complete or not at all
    return summary


def _baseline(cfg, backbone, datamodule) -> dict:
    """Before any fine-tuning: what the base model with a linear head (the run's probe, chosen on
    validation) scores on validation, and, where its kind measures it, how that moves as the
    probe's train rows grow from a quarter to all. Kinds without such an opponent: nothing."""
    from domaintune import kinds, registry
    from domaintune.runs import build_module, use_variant

    if not kinds.of_module(registry.check_target("module", cfg.module._target_, "module")).base:
        return {}
    datamodule.setup("fit")
    use_variant(cfg, datamodule.module_variant())  # e.g. rows with label sets: the multi-label probe
    probe, _ = build_module(cfg, backbone, datamodule.module_inputs()).fit_probe(datamodule)
    return {"metric": cfg.optimized_metric, **{k: v for k, v in probe.report().items() if k != "grid"}}


def _write(splits, brought, path, data, report, lengths, datamodule, folder: Path, out: Path, baseline) -> dict:
    labelled = datamodule.labelled
    digest = hashlib.sha256()
    for name, frame in splits.items():
        kept = frame[["messages"]] if "messages" in frame else frame
        kept.to_json(folder / f"{name}.jsonl", orient="records", lines=True, force_ascii=False)
        digest.update((folder / f"{name}.jsonl").read_bytes())
    summary = {
        "source": str(path),
        "fingerprint": digest.hexdigest()[:16],
        "rows": {s: len(f) for s, f in splits.items()},
        "split_by_us": sorted(set(splits) - brought),
        "cleaning": report.__dict__,
        "max_length": int(data.max_length),
        "truncated_share": sum(n > data.max_length for n in lengths) / max(len(lengths), 1),
    }
    if labelled:
        summary["labels"] = {s: _label_counts(label_sets(f)).to_dict() for s, f in splits.items()}
        if LABELS in splits["train"]:
            summary["multi_label"] = label_set_report(splits["train"][LABELS])
        else:
            majority = max(summary["labels"]["train"].values()) / summary["rows"]["train"]
            summary["imbalance"] = {"majority_share": round(majority, 4), "warn": majority > IMBALANCE_SHARE}
    kind_summary, kind_lines = datamodule.prepare_report(splits)
    summary.update(kind_summary)
    if baseline:
        summary["baseline"] = baseline
    _plots(splits if labelled else {}, lengths, int(data.max_length), folder)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (folder / "report.md").write_text(report_markdown(summary, out, kind_lines))
    return summary


def _label_counts(sets: pd.Series) -> pd.Series:
    """Rows per label (a row with a label set counts for each of its labels), most frequent first."""
    return sets.explode().dropna().value_counts()


def label_set_report(sets: pd.Series) -> dict:
    """What multi-label train rows look like: labels per row, how many rows have several or none,
    the label pairs that occur together most, and the labels too rare to learn or judge well."""
    from collections import Counter
    from itertools import combinations

    sizes = sets.map(len)
    pairs = Counter(pair for labels in sets for pair in combinations(sorted(labels), 2))
    counts = _label_counts(sets)
    return {
        "labels_per_row": round(float(sizes.mean()), 3),
        "rows_with_two_or_more": round(float((sizes >= 2).mean()), 4),
        "rows_with_none": round(float((sizes == 0).mean()), 4),
        "co_occurrence": [[a, b, n] for (a, b), n in pairs.most_common(10)],
        "rare_labels": {label: int(n) for label, n in counts.items() if n < RARE_ROWS},
    }


def _plots(splits: dict[str, pd.DataFrame], lengths: list[int], max_length: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if splits:  # classification: rows per label and split
        counts = pd.DataFrame({s: _label_counts(label_sets(f)) for s, f in splits.items()}).fillna(0)
        counts = counts.sort_values("train", ascending=False)
        figure, axis = plt.subplots(figsize=(max(6, 0.25 * len(counts)), 4))
        counts.plot.bar(ax=axis, width=0.8)
        axis.set(title="rows per label and split", ylabel="rows")
        figure.tight_layout()
        figure.savefig(out / "labels.png", dpi=100)
        plt.close(figure)
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.hist(lengths, bins=50)
    axis.axvline(max_length, color="tab:red", label=f"max_length {max_length}")
    axis.set(title="train token lengths", xlabel="tokens", ylabel="rows")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "token_lengths.png", dpi=100)
    plt.close(figure)


def report_markdown(summary: dict, out: Path, kind_lines: list[str] = ()) -> str:
    cleaning = summary["cleaning"]
    lines = [
        f"# Data report: {summary['source']}",
        "",
        f"Prepared {datetime.now():%Y-%m-%d %H:%M}; fingerprint `{summary['fingerprint']}`.",
        "",
        "| split | rows | empty dropped | exact duplicates | near duplicates | leaked from an earlier split |",
        "|---|---|---|---|---|---|",
    ]
    for split, rows in summary["rows"].items():
        lines.append(
            f"| {split}{' (split by us)' if split in summary['split_by_us'] else ''} | {rows} | "
            f"{cleaning['empty'].get(split, 0)} | {cleaning['exact_duplicates'].get(split, 0)} | "
            f"{cleaning['near_duplicates'].get(split, 0)} | {cleaning['leaked'].get(split, 0)} |"
        )
    for kind, texts in cleaning["examples"].items():
        if texts:
            lines += ["", f"Examples ({kind}):"] + [f"- {t[:200]}" for t in texts]
    if cleaning["conflicting_labels"]:
        lines += [
            "",
            f"**{cleaning['conflicting_labels']} texts appear with more than one label**: the model cannot learn "
            "both.",
        ]
    sets = summary.get("multi_label")
    if sets:
        lines += [
            "",
            "## Label sets",
            "",
            f"Multi-label: {sets['labels_per_row']:.2f} labels per train row; "
            f"{sets['rows_with_two_or_more']:.1%} of rows have two or more, {sets['rows_with_none']:.1%} none.",
        ]
        if sets["co_occurrence"]:
            lines += ["", "Most frequent pairs: " + ", ".join(f"{a} + {b} ({n})" for a, b, n in sets["co_occurrence"])]
        if sets["rare_labels"]:
            rare = ", ".join(f"{label} ({n})" for label, n in sets["rare_labels"].items())
            lines += ["", f"**Rare labels** (fewer than {RARE_ROWS} train rows): {rare}; their F1 is noisy."]
        lines += ["", "![labels](labels.png)"]
    imbalance = summary.get("imbalance")
    if imbalance:
        lines += ["", "## Balance", "", f"The largest class holds {imbalance['majority_share']:.0%} of train."]
        if imbalance["warn"]:
            lines.append(
                "**Imbalanced**: judge by macro-F1, not accuracy, and train with `module.class_weights=balanced`."
            )
        lines += ["", "![labels](labels.png)"]
    if kind_lines:
        lines += ["", *kind_lines]
    baseline = summary.get("baseline")
    if baseline:
        scores = ", ".join(f"{k.removeprefix('val/')} {v:.3f}" for k, v in baseline.items() if k.startswith("val/"))
        lines += [
            "",
            "## The base model",
            "",
            f"Before any fine-tuning, {baseline['kind']} scores on the validation split: {scores} "
            f"({baseline['features']} features, C={baseline['C']:g}). Fine-tuning has to beat this.",
        ]
        if baseline.get("curve"):
            from domaintune.modules.shared import curve_line

            lines += [
                "",
                f"As its train rows grow: {curve_line(baseline['curve'], baseline['metric'])} (95% "
                "intervals over validation rows). "
                "A curve still rising says more data is likely to help the base model; a flat one, that it has "
                "what it can get from this encoder.",
            ]
    lines += [
        "",
        "## Length",
        "",
        f"{summary['truncated_share']:.1%} of train rows are longer than max_length={summary['max_length']} tokens "
        "and would be cut.",
        "",
        "![token lengths](token_lengths.png)",
        "",
        f"Train on it: `domaintune train ... data.path={out}`",
        "",
    ]
    return "\n".join(lines)
