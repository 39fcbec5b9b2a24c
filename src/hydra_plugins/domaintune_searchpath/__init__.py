"""Adds the user's `./conf` to Hydra's search path, so their own tasks and experiments compose."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DomaintuneSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from domaintune.config import search_dirs

        for folder in search_dirs()[1:]:
            search_path.append(provider="domaintune-local", path=f"file://{folder}")
