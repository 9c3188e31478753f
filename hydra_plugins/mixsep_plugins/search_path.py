"""Hydra's way for a package to add config folders to an application's search path: mixsep's apps also read
the per-user config folder (``mixsep.training.config.user_config_dir``), after the package's own ``conf/``."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class MixsepSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from mixsep.conf import CONF_DIR
        from mixsep.training.config import user_config_dir

        if any(entry.path in (f"file://{CONF_DIR}", CONF_DIR) for entry in search_path.get_path()):
            search_path.append(provider="mixsep-user", path=f"file://{user_config_dir()}")
