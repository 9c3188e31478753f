"""A job among many: its life (job), DDP inside a multirun (ddp), re-queue on a scheduler's signal (requeue), a
trial of an Optuna search (search). Launching itself is Hydra's launchers' and the sweeper's."""
