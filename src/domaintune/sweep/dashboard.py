"""`domaintune dashboard`: optuna-dashboard, Optuna's own web UI, on a sweep's storage."""

from __future__ import annotations

from pathlib import Path

from domaintune.errors import UserError
from domaintune.sweep.secrets import masked
from domaintune.sweep.study import open_storage, storage_url


def serve(study: str, host: str, port: int) -> None:
    """`study` is a sweep folder (its SQLite file), a journal file, or a storage URL."""
    folder = Path(study)
    if folder.is_dir() and not (folder / "study.db").is_file():
        raise UserError(f"{folder}: no study.db; pass the storage URL or journal file the sweep used")
    url = storage_url(None, folder) if folder.is_dir() else storage_url(study, Path("."))
    from optuna_dashboard import run_server

    print(f"optuna-dashboard on {masked(url)}: http://{host}:{port}", flush=True)
    run_server(open_storage(url), host=host, port=port)
