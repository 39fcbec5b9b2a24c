from domaintune.outputs import best_epoch, summary_text

HISTORY = [{"epoch": 0, "val/loss": 0.9, "val/acc": 0.7}, {"epoch": 1, "val/loss": 0.5, "val/acc": 0.9},
           {"epoch": 2, "val/loss": 0.6, "val/acc": 0.8}]


def metrics(value, baseline, metric="val/acc", mode="max"):
    return {"task": "support", "mode": mode, "time_s": 12.0, "epochs_run": 3, "run_dir": "/r",
            "best": {"metric": metric, "value": value, "epoch": 1}, "test": {"test/acc": 0.91},
            "baseline": {"kind": "probe", metric: baseline}}


def test_best_epoch_follows_the_mode():
    assert best_epoch(HISTORY, "val/acc", "max")["epoch"] == 1
    assert best_epoch(HISTORY, "val/loss", "min")["epoch"] == 1
    assert best_epoch(HISTORY, "val/nope", "max") is None


def test_summary_says_plainly_when_fine_tuning_lost_to_the_base_model():
    text = summary_text(metrics(0.908, 0.930))
    assert "did NOT beat the base model" in text and "val/acc 0.9300" in text
    assert "fine-tuning improved val/acc by 0.0220" in summary_text(metrics(0.930, 0.908))
    assert "fine-tuning improved val/loss by 0.0100" in summary_text(metrics(0.30, 0.31, metric="val/loss", mode="min"))
    assert "did NOT beat" in summary_text(metrics(0.31, 0.30, metric="val/loss", mode="min"))
    assert "test (best checkpoint): acc 0.9100" in text and "outputs: /r" in text
    assert "only tied the base model" in summary_text(metrics(1.0, 1.0))
