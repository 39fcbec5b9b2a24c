"""A storage URL's password never reaches a file, a log or a console: the sweep hands trials the
URL without it and the password through the environment (inherited by joblib, submitit and SLURM
jobs), and every URL it prints is masked."""

from __future__ import annotations

import os

PASSWORD_ENV = "DOMAINTUNE_STORAGE_PASSWORD"


def _parse(url: str):
    from sqlalchemy.engine import make_url

    return make_url(url) if "://" in url else None


def without_password(url: str) -> tuple[str, str | None]:
    """The URL with its password taken out, and the password (None when it has none)."""
    parsed = _parse(url)
    if parsed is None or parsed.password is None:
        return url, None
    bare = parsed._replace(password=None)  # URL.set(password=None) would keep it: set() skips None
    return bare.render_as_string(hide_password=False), str(parsed.password)


def hand_over(url: str) -> str:
    """The URL for trials and records: its password goes to this process's environment instead."""
    url, password = without_password(url)
    if password is not None:
        os.environ[PASSWORD_ENV] = password
    return url


def with_password(url: str) -> str:
    """A URL that arrived without its password, completed from the environment when it names a user."""
    password = os.environ.get(PASSWORD_ENV)
    parsed = _parse(url)
    if not password or parsed is None or parsed.username is None or parsed.password is not None:
        return url
    return parsed.set(password=password).render_as_string(hide_password=False)


def strip_storage_password(overrides: list[str]) -> list[str]:
    """A password in `hydra.sweeper.storage=` on the command line goes to the environment before
    Hydra sees the line: Hydra records its overrides in every folder it writes."""
    stripped = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and key.lstrip("+~") == "hydra.sweeper.storage":
            quote = value[0] if value[:1] in ("'", '"') and value.endswith(value[0]) else ""
            override = f"{key}={quote}{hand_over(value.strip(quote) if quote else value)}{quote}"
        stripped.append(override)
    return stripped


def masked(url: str) -> str:
    """The URL as it may be shown: postgresql+psycopg://user:***@host/db."""
    parsed = _parse(url)
    return url if parsed is None else parsed.render_as_string(hide_password=True)
