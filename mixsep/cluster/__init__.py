"""A job among many: its status.json and folder lock (status), where it ran (where), DDP inside a multirun (ddp),
re-queue on a scheduler's signal (requeue). Launching itself is Hydra's launchers' and the sweeper's."""
