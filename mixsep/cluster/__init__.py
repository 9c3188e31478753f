"""A job among many: its status.json and folder lock (status), where it ran (where), where its code came from
(provenance), DDP inside a multirun (ddp), re-queue on a scheduler's signal (requeue), a trial of an Optuna search
(search). Launching itself is Hydra's launchers' and the sweeper's."""
