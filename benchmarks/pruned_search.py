"""One Optuna search on the real data with and without the median pruner, side by side in one run: the same
sampler seed, the same search space (the hparams_search=optuna preset's), the same budget per trial. Prints each
search's wall time, how many trials were pruned, and the best validation objective.

    python benchmarks/pruned_search.py                  # 12 trials each (about 15 minutes on a 2-core CPU)
    python benchmarks/pruned_search.py --trials 4 --epochs 2 --train-pairs 256   # a smoke test
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def search(name: str, pruned: bool, args) -> dict:
    import optuna

    sweep = Path(args.out) / name
    command = [
        sys.executable,
        "-m",
        "mixsep.run",
        "-m",
        "hparams_search=optuna",
        f"experiment_name={name}",
        f"hydra.sweep.dir={sweep}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.sampler.seed={args.seed}",
        f"trainer.max_epochs={args.epochs}",
        f"data.train_pairs={args.train_pairs}",
        f"data.val_pairs={args.val_pairs}",
        f"data.test_pairs={args.test_pairs}",
        "model.net.width=choice(8,16,24)",  # the preset's widths up to 64 cost minutes per trial on a CPU
        *([] if pruned else ["hydra.sweeper.pruner=null"]),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"mixsep: the search {name} failed:\n{done.stderr[-3000:]}")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna.journal")))
    study = optuna.load_study(study_name=name, storage=storage)
    states = [t.state.name for t in study.trials]
    return {
        "search": name,
        "seconds": seconds,
        "trials": len(states),
        "pruned": states.count("PRUNED"),
        "complete": states.count("COMPLETE"),
        "best": study.best_value,
        "best_params": study.best_params,
        "epochs_trained": sum(_epochs(sweep / str(t.number)) for t in study.trials),
    }


def _epochs(job: Path) -> int:
    """Epochs a trial's job trained: metrics.json's count, or a pruned job's last epoch + 1."""
    import json

    if (job / "metrics.json").is_file():
        return int(json.loads((job / "metrics.json").read_text())["epochs"])
    status = json.loads((job / "status.json").read_text())
    return int(status.get("epoch") or 0) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-pairs", type=int, default=2048)
    parser.add_argument("--val-pairs", type=int, default=500)
    parser.add_argument("--test-pairs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/pruned_search")
    args = parser.parse_args()
    rows = [search("search_pruned", True, args), search("search_unpruned", False, args)]
    print("| search | wall time | trials | pruned | completed | epochs trained | best val/psnr | best trial's params |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['search']} | {r['seconds'] / 60:.1f} min | {r['trials']} | {r['pruned']} | {r['complete']} "
            f"| {r['epochs_trained']} | {r['best']:.3f} | {r['best_params']} |"
        )
    pruned, full = rows
    print(
        f"time ratio pruned/unpruned = {pruned['seconds'] / full['seconds']:.2f}; "
        f"best objective difference = {pruned['best'] - full['best']:+.3f} dB"
    )


if __name__ == "__main__":
    main()
