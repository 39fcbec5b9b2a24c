from domaintune import verdict
from domaintune.outputs import best_epoch, summary_text, verdict_summary

HISTORY = [
    {"epoch": 0, "val/loss": 0.9, "val/acc": 0.7},
    {"epoch": 1, "val/loss": 0.5, "val/acc": 0.9},
    {"epoch": 2, "val/loss": 0.6, "val/acc": 0.8},
]


def metrics(value, baseline, tuned_right, base_right, metric="val/acc", mode="max", removed=None):
    import numpy as np

    truth = np.zeros(100, dtype=int)
    tuned, base = (np.arange(100) >= tuned_right).astype(int), (np.arange(100) >= base_right).astype(int)
    result = verdict.compare("acc", verdict.accuracy, (truth, tuned), (truth, base))
    return {
        "task": "support",
        "mode": mode,
        "time_s": 12.0,
        "epochs_run": 3,
        "run_dir": "/r",
        "best": {"metric": metric, "value": value, "epoch": 1},
        "test": {"test/acc": tuned_right / 100},
        "baseline": {"kind": "probe", metric: baseline},
        "data": {"removed": removed or {}},
        "verdict": verdict.verdict([result], "probe", "the frozen encoder with a linear head"),
    }


def test_best_epoch_follows_the_mode():
    assert best_epoch(HISTORY, "val/acc", "max")["epoch"] == 1
    assert best_epoch(HISTORY, "val/loss", "min")["epoch"] == 1
    assert best_epoch(HISTORY, "val/nope", "max") is None


def test_the_verdict_comes_from_the_test_split_whatever_validation_said():
    # validation favours fine-tuning (a maximum over epochs), the test rows do not: the test decides
    text = summary_text(metrics(0.95, 0.90, tuned_right=80, base_right=92))
    assert "selected on validation: val/acc 0.9500 at epoch 1 (base model 0.9000)" in text
    assert "verdict on the test split: the base model is better: fine-tuning made acc worse by 0.12" in text
    assert "test (best checkpoint): acc 0.8000" in text and "outputs: /r" in text
    assert "verdict on the test split: fine-tuning improved acc by 0.30" in summary_text(metrics(0.9, 0.9, 90, 60))
    assert "no significant difference in acc" in summary_text(metrics(0.9, 0.9, 90, 89))


def test_the_summary_says_what_cleaning_removed():
    text = summary_text(
        metrics(
            0.9,
            0.9,
            90,
            89,
            removed={"exact_duplicates": 3, "leaked": 2, "conflicting_labels": 1, "near_duplicates": 0},
        )
    )
    assert "data: removed 3 exact duplicates, 2 leaked before training; 1 texts appear under two labels (kept)" in text
    assert "data:" not in summary_text(metrics(0.9, 0.9, 90, 89, removed={"leaked": 0}))


def test_wandb_summary_holds_the_verdict_figures():
    flat = verdict_summary(metrics(0.9, 0.9, 90, 60)["verdict"])
    assert flat["verdict/acc/fine_tuned"] == 0.9 and flat["verdict/acc/base"] == 0.6
    assert flat["verdict/acc/ci95_low"] > 0 and flat["verdict/line"].startswith("fine-tuning improved acc")
    assert verdict_summary(None) == {}


def test_a_failed_weights_write_fails_the_run_folder_after_the_curve_is_drawn(tmp_path):
    """The weights are written on a thread while the learning curve is drawn: an error there must
    reach the run, not die with the thread (the folder would then look complete without weights)."""
    import pytest
    from omegaconf import OmegaConf

    from domaintune.outputs import save_artifacts

    class NoRoom:
        def save_artifacts(self, folder):
            raise OSError(28, "No space left on device")

    class Data:
        def save_artifacts(self, folder):
            pass

    run = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        save_artifacts(run, OmegaConf.create({"optimized_metric": "val/acc"}), Data(), NoRoom(), HISTORY, [])
    assert (run / "config.yaml").is_file() and (run / "learning_curve.png").is_file()
