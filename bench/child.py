"""A bench side in a process of its own (its own peak memory, no caches shared with the other
side): the script runs itself with arguments, and the child prints one `RESULT <json>` line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def report(result: dict) -> None:
    """In the child: the one line the parent reads."""
    print("RESULT " + json.dumps(result), flush=True)


def run(script: str, arguments: list[str], label: str, cwd: Path | None = None) -> dict:
    """In the parent: `python <script> <arguments>` with W&B off; its RESULT, or exit with its error."""
    done = subprocess.run(
        [sys.executable, script, *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
    if done.returncode or line is None:
        sys.exit(f"{label} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))
