"""hydra-ray-launcher, able to join a running Ray cluster (``address=auto`` or ``ray://HOST:10001``): the plugin
passes every ``hydra.launcher.ray.init`` key to ``ray.init`` (with its own ``object_store_memory``), and Ray refuses
such local-only resource arguments from a client of an existing cluster."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

try:
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
except ImportError:  # without mixsep[cluster]: no launcher here (hydra/launcher=gpus says what to install)
    RayLauncher = object

log = logging.getLogger("mixsep")

# ray.init arguments that only make sense when Ray starts a new local instance
LOCAL_ONLY_INIT_ARGS = tuple(
    "num_cpus num_gpus resources labels object_store_memory include_dashboard dashboard_host dashboard_port "
    "_system_config _temp_dir".split()
)


def ray_init_args(init: dict) -> dict:
    """``init`` as ``ray.init`` takes it: for a new local Ray with the plugin's small object store (jobs pass only
    configs), for a running cluster without the local-only arguments (said once in the log)."""
    init = {k: v for k, v in init.items() if v is not None}
    if not init.get("address"):
        return {"object_store_memory": 78643200, **init}
    dropped = sorted(k for k in init if k in LOCAL_ONLY_INIT_ARGS)
    if dropped:
        log.info(f"joining the Ray cluster at {init['address']}: its own resources apply; ignoring {dropped}")
    return {k: v for k, v in init.items() if k not in LOCAL_ONLY_INIT_ARGS}


class RayClusterLauncher(RayLauncher):
    def start(self) -> None:
        """Start (or join) Ray once, before several threads launch jobs (the plugin's own start then finds it)."""
        import ray

        if not ray.is_initialized():
            ray.init(**ray_init_args(OmegaConf.to_container(self.ray_cfg.init, resolve=True)))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        self.start()
        return super().launch(job_overrides, initial_job_idx)
