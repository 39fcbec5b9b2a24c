"""`domaintune learning-curve`: the task's defaults and the base model's probe on nested shares of
the train rows, scored on the same validation rows with intervals, in ordinary run folders that
never touch the test split; a second call reuses the finished runs."""

import json

from helpers import TINY, cli, read_wandb


def test_learning_curve_scores_both_models_on_validation_and_says_where_fine_tuning_overtakes(tmp_path):
    out = tmp_path / "curve"
    args = ("learning-curve", "task=legal", *TINY, "logger=wandb", "fractions=0.25,0.5,1", f"out={out}")
    result = cli(*args, env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    curve = json.loads((out / "data_curve.json").read_text())
    rows = [p["train_rows"] for p in curve["points"]]
    assert [p["fraction"] for p in curve["points"]] == [0.25, 0.5, 1.0] and rows == sorted(rows) and rows[0] < rows[-1]
    for point in curve["points"]:
        for model in ("fine_tuned", "probe"):
            low, high = point[f"{model}_ci95"]
            assert low <= point[model] <= high
        run = json.loads((out / f"fraction-{point['fraction']:g}" / "metrics.json").read_text())
        assert run["test"] == {} and "verdict" not in run  # no test row touched
        assert run["data"]["train_rows"] == point["train_rows"] and run["baseline"]["val/macro_f1"] >= 0
    assert "overtake" in curve["line"] and curve["line"] in result.stdout
    assert (out / "data_curve.png").is_file() and (out / "data_curve.html").is_file()
    recorded = read_wandb(out)  # the curve as a W&B run of its own, in the runs' group
    summary = recorded.get("summary", recorded)
    assert summary["curve/line"] == curve["line"] and f"curve/{rows[-1]}/probe" in summary
    stamp = (out / "fraction-1" / "metrics.json").stat().st_mtime_ns
    again = cli(*args, env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)})
    assert again.returncode == 0 and (out / "fraction-1" / "metrics.json").stat().st_mtime_ns == stamp
    bad = cli("learning-curve", "task=legal", *TINY, "fractions=0.5,0.25", f"out={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "increasing shares" in bad.stderr
