"""The five earlier reports on this experiment (reports 000 to 004; docs/results.md, "Reproducing earlier
reports"): what each published, why it cannot be ranked beside a mixsep score, and the table of each rerun
(``experiment=prior/...``) next to it."""

from __future__ import annotations

from mixsep.report.tables import fmt, markdown_table, minutes

# Published figures of the earlier reports, the preset that reruns each system,
# and why the published number cannot be compared with a mixsep score.
REPORTED_ELSEWHERE = [
    {
        "system": "conv dual-decoder (report 000)",
        "preset": "prior/conv_dual",
        "reported": {
            "test/mnist_ssim": 0.8998,
            "test/mnist_psnr": 22.54,
            "test/cifar_ssim": 0.3735,
            "test/cifar_psnr": 17.01,
            "test/loss": 0.0284,
        },
        "why": "comparable definitions, but measured on the report's own random test pairs",
    },
    {
        "system": "mean-image autoencoder + subtraction (report 001)",
        "preset": "prior/mean_ae_subtract",
        "reported": {
            "oracle/mnist_psnr": 44.55,
            "oracle/cifar_psnr": 44.55,
            "oracle/mnist_ssim": 0.995,
            "oracle/cifar_ssim": 0.999,
        },
        "why": "ORACLE: 'separates' with 2·recon − (ground truth of the other image), i.e. uses the answer; "
        "not a separation score",
    },
    {
        "system": "ResNet18 dual-decoder + subtraction (report 002)",
        "preset": "prior/resnet_dual",
        "reported": {"test/mnist_psnr": 62.79, "test/cifar_psnr": 65.22},
        "why": "PSNR with data range 255 on [0, 1] images adds 20·log10(255) = +48.13 dB",
        "data_range_255": True,  # its PSNRs are compared after taking the 48.13 dB off
        "post_hoc": ("test/cifar_sub_psnr", "test/cifar_sub_ssim"),  # CIFAR := clamp(2·mix − MNIST estimate)
    },
    {
        "system": "mean-image autoencoder, normalised (report 003)",
        "preset": "prior/mean_ae_norm",
        "reported": {"test/mix_ssim": 0.2322, "test/mix_psnr": 15.62},
        "why": "reconstructs the mean image: separates nothing",
    },
    {
        "system": "CIFAR-10 autoencoder (report 004)",
        "preset": "prior/cifar_ae",
        "reported": {},
        "why": "CIFAR-10 reconstruction, another task; the report gives no number",
    },
    {
        "system": "CIFAR-10 denoiser (report 004)",
        "preset": "prior/cifar_denoise",
        "reported": {"test/psnr": 26.78, "test/ssim": 0.92},
        "why": "CIFAR-10 denoising, another task; same metric definitions",
    },
]


DATA_RANGE_255_DB = 48.13
POST_HOC = "post-hoc CIFAR := clamp(2·mix − predicted MNIST)"


def reported_block() -> str:
    rows = [
        [r["system"], ", ".join(f"{k} {v}" for k, v in r["reported"].items()) or "-", r["why"]]
        for r in REPORTED_ELSEWHERE
    ]
    return (
        "As reported elsewhere (not ranked: not measured by mixsep on the fixed test pairs, and each has a reason it "
        "cannot be compared):\n\n" + markdown_table(["system", "reported", "why not comparable"], rows)
    )


def prior_table(runs: list[dict]) -> str:
    """Each earlier system: reported vs mixsep with the same settings, with the difference."""
    rows = []
    for r in REPORTED_ELSEWHERE:
        run = next((run for run in reversed(runs) if run.get("experiment") == r["preset"]), {})
        keys = list(r["reported"]) or sorted(k for k in run if k.startswith("test/") and k != "test/loss")
        budget = f"{run.get('global_step', '?')} steps, {minutes(run.get('train_seconds'))}" if run else "not run"
        for key in keys:
            reported, measured = r["reported"].get(key), run.get(key)
            comparable, note, label = reported, r["why"], key
            if key.startswith("oracle/"):
                note, label = "uses ground truth (oracle), never a separation score", f"{key} (ORACLE)"
            elif r.get("data_range_255") and reported is not None:
                comparable = reported - DATA_RANGE_255_DB
                note = f"reported at data range 255; {comparable:.2f} dB at range 1, the difference is against that"
            diff = measured - comparable if isinstance(measured, (int, float)) and comparable is not None else None
            rows.append([r["preset"], budget, label, fmt(reported, 4), fmt(measured, 4), fmt(diff, 4, "+"), note])
        if run:
            rows += [
                [r["preset"], budget, key, "-", fmt(run.get(key), 4), "-", POST_HOC] for key in r.get("post_hoc", ())
            ]
    head = ["preset", "mixsep run", "score", "reported", "mixsep, same settings", "difference", "note"]
    return markdown_table(head, rows, "lllrrrl")
