"""The monitoring loop with alerts, in plain Python (no MLflow, no server).

Calibrates ODIN for a small digits classifier, then streams production batches
(the last ones with an injected spike of real-photo crops) through the durable
score log, Evidently reports and alert rules. Run:

    python examples/monitoring_loop.py --out /tmp/odin-loop [--webhook http://127.0.0.1:9000/hook]

Then: `evidently ui --workspace /tmp/odin-loop/workspace`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from odin_monitor import calibrate
from odin_monitor.demo_data import digits_splits, photo_crops, train_classifier
from odin_monitor.models import small_cnn_digits
from odin_monitor.monitoring import (
    BinomialSpikeRule,
    CusumRule,
    JsonlNotifier,
    LogNotifier,
    ModelRef,
    MonitorConfig,
    ScoreLog,
    WebhookNotifier,
    process_batch,
)
from odin_monitor.monitoring.stats import choose_cusum_h, cusum_reference_value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("odin-loop"))
    parser.add_argument("--webhook", help="POST alerts as JSON to this URL")
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    # 1. A classifier and its ODIN calibration (validation OOD: noise + photo crops).
    torch.manual_seed(0)
    data = digits_splits()
    model = train_classifier(small_cnn_digits(), data.x_train, data.y_train, epochs=10)
    result = calibrate(
        model,
        data.x_val,
        {"photos": photo_crops(300, seed=2)},
        normalization=None,
        temperatures=[1, 10, 100, 1000],
        epsilons=[0.0, 0.001, 0.002],
    )
    det, rec = result.detector, result.record
    print(f"calibrated: T={rec.temperature:g} eps={rec.epsilon:g} delta={rec.threshold:.6g}")

    # 2. Who the monitored model is, and how alerts are raised and sent.
    ref = ModelRef(
        "digits-example",
        "1",
        rec.sha256(),
        rec.threshold,
        rec.threshold_spread,
        rec.tpr_target,
        temperature=rec.temperature,
        n_classes=rec.n_classes,
    )
    batch_size = 64
    k = cusum_reference_value(0.05, 0.15)  # tuned to catch 5% -> 15% OOD
    h = choose_cusum_h(0.05, n=batch_size, k=k, target_arl0=200, n_sims=300)
    notifiers = [LogNotifier(), JsonlNotifier(args.out / "alerts.jsonl")]
    if args.webhook:
        notifiers.append(WebhookNotifier(args.webhook, timeout=2.0, retries=2))
    config = MonitorConfig(
        log=ScoreLog(args.out / "scores.db"),
        quarantine_dir=args.out / "quarantine",
        report_dir=args.out / "reports",
        workspace_dir=args.out / "workspace",
        rules=(BinomialSpikeRule(alpha=0.01), CusumRule(h=h, k=k)),
        notifiers=notifiers,
    )

    # 3. Production: in-distribution batches, then a spike of real-photo crops.
    rng = np.random.default_rng(1)
    spike = photo_crops(400, seed=99)
    reference = det.reference_.to_frame()
    fired = 0
    for b in range(args.batches):
        batch = data.x_prod[rng.choice(len(data.x_prod), batch_size)]
        if b >= args.batches - 2:
            batch[: batch_size // 2] = spike[rng.choice(len(spike), batch_size // 2)]
        res = process_batch(
            ref,
            config,
            images=batch,
            batch_id=f"b{b:03d}",
            scorer=lambda x: det.score_batch(x).to_frame(),
            reference=reference,
        )
        fired += len(res.alerts)
        print(
            f"batch {res.batch_id}: OOD rate {res.record.ood_rate:.3f}, "
            f"{len(res.alerts)} alert(s), report {res.html_path}"
        )
    print(f"{fired} alert(s); see {args.out / 'alerts.jsonl'}")
    return 0 if fired else 1


if __name__ == "__main__":
    raise SystemExit(main())
