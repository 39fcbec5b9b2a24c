"""A run's folder, and the one place that knows its layout: the resolved config, `metrics.json`
(written last: its presence is what "finished" means), `outcome.json` (how a run that did not
finish ended), `checkpoints/` while it trains and `evaluations/` afterwards. Commands, sweeps and
tables ask a RunFolder instead of looking for files themselves."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from domaintune.errors import UserError
from domaintune.outputs import write_json

METRICS, CONFIG, OUTCOME = "metrics.json", "config.yaml", "outcome.json"


class RunFolder:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def finished(self) -> bool:
        """metrics.json, written after the config and weights (a predictions folder has a
        metrics.json of its own but no config.yaml: it is not a run)."""
        return (self.path / METRICS).is_file() and (self.path / CONFIG).is_file()

    @property
    def ended(self) -> bool:
        """Finished, or ended with a recorded outcome (pruned or failed): not running, not dead."""
        return self.finished or self.outcome() is not None

    def metrics(self) -> dict:
        """metrics.json, or {} while the run has not finished."""
        return json.loads((self.path / METRICS).read_text()) if self.finished else {}

    def read(self, key: str = "run") -> tuple[dict, dict]:
        """The config and metrics of a finished run; a one-line error naming `key=` otherwise."""
        if not self.finished:
            raise UserError(
                f"{key}={self.path}: not a finished run folder (no {METRICS} / {CONFIG}); pass "
                "outputs/runs/<date>/<run>"
            )
        import yaml

        return yaml.safe_load((self.path / CONFIG).read_text()), self.metrics()

    def write_metrics(self, metrics: dict) -> None:
        """The last write of a run: from here on the folder is finished."""
        write_json(self.path / METRICS, metrics)

    def outcome(self) -> dict | None:
        """How an unfinished run ended (`state`: pruned or failed, `error`, `reason`, `bad_input`: a
        one-line error of the data or config), or None: it finished, still runs, or its process
        died."""
        path = self.path / OUTCOME
        return json.loads(path.read_text()) if path.is_file() else None

    @contextmanager
    def recording_outcome(self):
        """A run that ends with an error says so in its own folder before its process exits: a
        sweeper whose launcher lost the job's batch (a batch-mate's process died) reads it, so only
        a job that left no outcome counts as dead. Ctrl-C and kills leave none."""
        (self.path / OUTCOME).unlink(missing_ok=True)  # a resumed run's earlier ending is not its own
        try:
            yield
        except Exception as error:
            if self.path.is_dir() and not self.finished and int(os.environ.get("RANK", 0)) == 0:
                state = "pruned" if getattr(error, "outcome", None) == "pruned" else "failed"
                outcome = {"state": state, "error": type(error).__name__, "reason": str(error)[:1000]}
                write_json(self.path / OUTCOME, {**outcome, "bad_input": isinstance(error, UserError)})
            raise

    @staticmethod
    def finished_under(folder: Path | str) -> list[RunFolder]:
        """Every finished run folder at or below `folder`, in path order."""
        found = (RunFolder(p.parent) for p in sorted(Path(folder).glob(f"**/{METRICS}")))
        return [run for run in found if run.finished]
