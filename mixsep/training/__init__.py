"""A training run: its config (config), every check before fit (checks), building it from its config nodes (build),
the machine and precision (hardware), callbacks, checkpoints, loggers, and its outputs and plots (artifacts)."""
