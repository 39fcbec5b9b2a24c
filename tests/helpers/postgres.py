"""A throwaway PostgreSQL server on loopback that a test starts, stops and starts again: the
shared-study tests' server, and the one the storage-outage test takes down under a sweep."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PASSWORD = "pg-s3cret-9173"  # what no file or console line of a sweep may show


def installed() -> Path | None:
    """initdb/pg_ctl of a PostgreSQL server installed on this machine (`.ci/run` installs Debian's)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


class Postgres:
    """A server in a fresh folder (not under pytest's root-only folder) that asks TCP clients for a
    password (scram-sha-256); `url` is its SQLAlchemy URL, password included."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="domaintune-pg-"))
        self.as_user = []
        if os.geteuid() == 0:  # the server refuses to run as root
            shutil.chown(self.folder, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.data, secret = self.folder / "data", self.folder / "password"
        secret.write_text(PASSWORD + "\n")
        if self.as_user:
            shutil.chown(secret, "postgres")
        self._pg(
            "initdb", "-D", str(self.data), "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={secret}",
            "-U", "postgres",
        )  # fmt: skip
        self.start()
        self.url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _pg(self, program: str, *args: str, check: bool = True) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / program), *args], check=check, capture_output=True)

    def start(self) -> None:
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "start",
            "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
