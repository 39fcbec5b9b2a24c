"""Puts the user's `./conf` before the packaged configs on Hydra's search path: a project's own
tasks and experiments compose, and its file of the same name as ours wins."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DomaintuneSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from domaintune.config import search_dirs

        for folder in reversed(search_dirs()[1:]):
            search_path.prepend(provider="domaintune-local", path=f"file://{folder}")
