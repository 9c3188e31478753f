"""mixsep's Hydra plugins (Hydra loads plugins only from the ``hydra_plugins`` namespace): a Ray launcher
that can join a running cluster, and an Optuna sweeper on Optuna's current ask-and-tell API."""
