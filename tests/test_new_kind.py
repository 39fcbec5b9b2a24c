"""A third module kind, added the way the contract (`domaintune.api`) says: its own plugin folder,
one registration (the folder's MODULES / DATAMODULES dicts) and its task file; no core file.
It trains and evaluates through the same commands as the built-in kinds."""

from __future__ import annotations

import importlib.util
import json
import random

import pytest

from domaintune import kinds
from helpers import WORDS, check_kind, domaintune

REGRESSION = '''"""Regression: a text in, a number out, judged against predicting the train mean."""

import hashlib
import json

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from domaintune import verdict
from domaintune.api import TaskDataModule, TaskModule
from domaintune.data.cleaning import CleaningReport
from domaintune.kinds import Kind, register_kind
from domaintune.data.splits import clean_and_carve


class ScoreData(TaskDataModule):
    labelled = False

    def __init__(self, tokenizer, path=None, max_length=16, batch_size=16, eval_batch_size=64, val_fraction=0.2,
                 test_fraction=0.2, seed=0, dedupe=True):
        super().__init__(tokenizer, path, batch_size, eval_batch_size, val_fraction, test_fraction, seed, 0, dedupe)
        self.max_length = max_length

    def cache_key(self):
        return (self.max_length,)

    def read_raw(self, report):
        report.empty["train"] = 0
        return {"train": pd.read_csv(self.path)}

    def load(self):
        report = CleaningReport()
        splits, _ = clean_and_carve(self.read_raw(report), "text", self.val_fraction,
                                    self.test_fraction, self.seed, self.dedupe, report)
        digest = hashlib.sha256(pd.concat(splits).to_csv().encode()).hexdigest()[:16]
        return {"datasets": {s: self._rows(f) for s, f in splits.items()}, "fingerprint": digest,
                "cleaning": report.counts(), "train_mean": float(splits["train"].target.mean())}

    def _rows(self, frame):
        ids = self.tokenizer(frame.text.tolist(), truncation=True, max_length=self.max_length)["input_ids"]
        return list(zip(ids, frame.target.astype(float)))

    def loader(self, split, shuffle):
        def collate(rows):
            width = max(len(ids) for ids, _ in rows)
            input_ids = torch.zeros(len(rows), width, dtype=torch.long)
            for r, (ids, _) in enumerate(rows):
                input_ids[r, :len(ids)] = torch.as_tensor(ids)
            return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(),
                    "target": torch.tensor([t for _, t in rows], dtype=torch.float)}

        size = self.batch_size if shuffle else self.eval_batch_size
        return DataLoader(self.datasets[split], batch_size=size, shuffle=shuffle, collate_fn=collate)

    def module_inputs(self):
        return {"train_mean": self.train_mean}

    def inputs_from_run(self, folder):
        return json.loads((folder / "train_mean.json").read_text())

    def save_artifacts(self, folder):
        (folder / "train_mean.json").write_text(json.dumps(self.module_inputs()))

    def use_as_test(self, path, data):
        self.datasets = {**self.datasets, "test": self._rows(pd.read_csv(path))}


class ScoreRegression(TaskModule):
    def __init__(self, backbone, train_mean, peft_config=None, lr=3e-3):
        super().__init__(peft_config)
        self.save_hyperparameters(ignore=["backbone", "peft_config"], logger=False)
        self.encoder = self.adapt(backbone.load_model(), peft_config)
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)
        self.errors, self.test_verdict = [], {}

    def forward(self, batch):
        hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return self.head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self(batch), batch["target"])
        self.log("train/loss", loss, on_epoch=True, batch_size=len(batch["target"]))
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/mse", nn.functional.mse_loss(self(batch), batch["target"]), batch_size=len(batch["target"]))

    def on_test_start(self):
        self.errors = []

    def test_step(self, batch, batch_idx):
        error = (self(batch) - batch["target"]) ** 2
        self.log("test/mse", error.mean(), batch_size=len(error))
        self.errors.append(torch.stack([error, (self.hparams.train_mean - batch["target"]) ** 2], 1).detach())

    def on_test_epoch_end(self):
        tuned, base = torch.cat(self.errors).numpy().T
        compared = verdict.compare("mse", verdict.mean, (tuned,), (base,), mode="min")
        self.test_verdict = verdict.verdict([compared], "the train mean for every row", "predicting the train mean")

    def report(self):
        return {"verdict": self.test_verdict} if self.test_verdict else {}


register_kind(Kind(name="score_regression", module=ScoreRegression, datamodule=ScoreData,
                   metrics={"loss": "min", "mse": "min"}, opponent="the train mean for every row"))
'''

TASK = """# @package _global_
defaults:                  # a kind of its own: none of the built-in data and module settings
  - override /data: null
  - override /module: null
task_name: scores
optimized_metric: val/mse
data:
  _target_: plugins.scores.ScoreData
  path: null
module:
  _target_: plugins.scores.ScoreRegression
  lr: 3e-3
"""


def rows(count: int, seed: int) -> str:
    """Texts whose target is the share of their words that start with 'k': learnable from tokens."""
    rng = random.Random(seed)
    lines = ["text,target"]
    for _ in range(count):
        words = rng.sample(WORDS, 6)
        lines.append(f"{' '.join(words)},{sum(w.startswith('k') for w in words) / 6:.4f}")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_a_third_module_kind_trains_and_evaluates_through_the_same_commands(tmp_path):
    plugin = tmp_path / "plugins" / "scores"
    plugin.mkdir(parents=True)
    (plugin / "regression.py").write_text(REGRESSION)
    (plugin / "__init__.py").write_text(
        "from .regression import ScoreData, ScoreRegression\n\n"
        "MODULES = {'score_regression': ScoreRegression}\nDATAMODULES = {'scores': ScoreData}\n"
    )
    (tmp_path / "conf" / "task").mkdir(parents=True)
    (tmp_path / "conf" / "task" / "scores.yaml").write_text(TASK)
    (tmp_path / "scores.csv").write_text(rows(200, 0))
    (tmp_path / "new.csv").write_text(rows(37, 1))
    env = {"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "outputs")}

    listed = domaintune("plugins", cwd=tmp_path)
    assert "score_regression" in listed.stdout and "scores" in listed.stdout, listed.stderr[-2000:]
    trained = domaintune(
        "train",
        "task=scores",
        "data.path=scores.csv",
        "model=tiny",
        "logger=none",
        "peft=none",
        "trainer.max_epochs=2",
        cwd=tmp_path,
        env=env,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = [p.parent for p in (tmp_path / "outputs").glob("runs/*/*/metrics.json")]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"]["metric"] == "val/mse" and metrics["best"]["value"] is not None
    # the contract's default save
    assert metrics["data"]["test_rows"] == 40 and (run / "weights.safetensors").is_file()
    assert metrics["verdict"]["base"] == "the train mean for every row"
    assert f"verdict on the test split: {metrics['verdict']['line']}" in trained.stdout

    # the common tester (which evaluates the run first), with the registration the project's plugin
    # file makes, loaded here under its own name
    spec = importlib.util.spec_from_file_location("scores_regression_plugin", plugin / "regression.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    kind = kinds.registered()["score_regression"]
    # one refusal: the others run the same code, and each costs this project a process start
    project = lambda *args: domaintune(*args, cwd=tmp_path, env=env)  # noqa: E731
    assert check_kind(run, project, kind, tries=("export",)) == "score_regression"
    (report,) = run.glob("evaluations/*/evaluation.json")
    evaluation = json.loads(report.read_text())
    # the saved weights, loaded back by the contract's default, give the run's own test figures
    assert evaluation["test"]["test/mse"] == metrics["test"]["test/mse"]
    assert evaluation["verdict"]["metrics"]["mse"] == metrics["verdict"]["metrics"]["mse"]

    new = domaintune("evaluate", f"run={run}", "data.path=new.csv", cwd=tmp_path, env=env)
    assert new.returncode == 0, new.stderr[-3000:]
    assert "on 37 test rows of new.csv" in new.stdout
