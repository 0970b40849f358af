"""Benchmark 6: LSTM training throughput (seed preset) against measured matmul throughput; warm-start refits.

    python -m bench.bench_lstm [--quick] [--epochs 4] [--refit-preset small] [--warm-epochs 10]
    python -m bench.bench_lstm --skip-refits --full-fits 60,233   # part 3: whole seed fits, XLA vs op by op

Part 1, throughput. The ``seed`` network (the original: LSTM 1350 with recurrent dropout 0.8, LayerNorm,
Dense 1280/512/160, Dense 12) is trained for ``--epochs`` epochs on the first 185 training rows of the
real snapshot, batch 32, and the median seconds per epoch after the first (graph tracing) are reported.
Its FLOPs are counted from the layer shapes, one multiply-add = 2 FLOPs:

- LSTM per sample: ``steps x 2 x 4 x (inputs + units + 1) x units`` (four gates, input and recurrent
  kernels and bias, every time step);
- Dense per sample: ``2 x (inputs + 1) x outputs``;
- training ~ 3 x forward (the backward pass costs about twice the forward matmuls); element-wise work
  (activations, dropout masks, LayerNorm, Adam) is not counted, so the achieved figure is a lower bound.

Achieved GFLOP/s = FLOPs per epoch / seconds per epoch, compared with float32 matmul microbenchmarks run
in the same process: numpy ``A @ B`` and TensorFlow ``tf.linalg.matmul`` at 2048^3, and TensorFlow at the
LSTM's own step shape (batch 32 x (inputs + units) x 4 units).

Part 2, refit policy. A walk-forward with yearly refits over the full out-of-sample span: cold refits
(every fit from scratch, ``epochs`` with early stopping) vs warm refits (the first fit cold, then
``fit(warm_start_from=previous)`` for at most ``--warm-epochs`` epochs). Reported: total training seconds
of each, their ratio (target >= 5x) and the out-of-sample MAE of the forecasts of each (target: warm
within 2 % of cold). ``--refit-preset small`` by default: a cold seed fit is ~200 epochs x ~4.5 s, 15 of
them would take hours on this machine.

Part 3, whole seed fits (``--full-fits 60,233``: row counts; left out by default, each size takes 10-20
min). For each size, the first N training rows of the snapshot are fitted as the job fits them
(:class:`job.models.lstm.LSTMForecaster`, the settings' epochs, patience, batch and seed, early stopping)
twice, each in its own child process: op by op under TensorFlow's op determinism (how the seed preset
trained before Keras' XLA fallback was noticed) and as one XLA program (how it trains now). Reported per
fit: wall seconds of the fit, epochs run, seconds per epoch, the peak RSS of the child
(polled from /proc) and a digest of the fitted weights; then the speedup.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Report, Timing, ingested_dataset, load, parser, ratio

TARGET_SHARE = 0.5
TARGET_SPEEDUP = 5.0
TARGET_MAE = 0.02


def network_flops(n_steps: int, n_features: int, n_assets: int, preset: str) -> dict[str, int]:
    """Forward FLOPs per sample of ``preset`` by layer (multiply-add = 2), and the training estimate."""
    from job.models.lstm import PRESETS

    spec = PRESETS[preset]
    lstm = n_steps * 2 * 4 * (n_features + spec.units + 1) * spec.units
    dense, width = 0, spec.units
    for out in (*spec.dense, n_assets):
        dense += 2 * (width + 1) * out
        width = out
    forward = lstm + dense
    return {"lstm_forward": lstm, "dense_forward": dense, "forward": forward, "train_per_sample": 3 * forward}


def matmul_gflops(repeats: int = 5, n: int = 2048, step_shape: tuple[int, int, int] | None = None) -> dict[str, float]:
    """Best-of-``repeats`` float32 matmul GFLOP/s: numpy and TensorFlow at ``n^3``, TF at ``step_shape`` (m, k, n)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    out: dict[str, float] = {}

    def best(func: Any, flops: float) -> float:
        func()
        seconds = []
        for _ in range(repeats):
            began = time.perf_counter()
            func()
            seconds.append(time.perf_counter() - began)
        return flops / min(seconds) / 1e9  # the best repeat: the machine's limit, least disturbed by load

    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out["numpy_float32"] = best(lambda: a @ b, 2.0 * n**3)
    ta, tb = tf.constant(a), tf.constant(b)
    out["tf_float32"] = best(lambda: tf.linalg.matmul(ta, tb).numpy(), 2.0 * n**3)
    if step_shape is not None:
        m, k, p = step_shape
        sa = tf.constant(rng.standard_normal((m, k), dtype=np.float32))
        sb = tf.constant(rng.standard_normal((k, p), dtype=np.float32))
        inner = 50  # one small product is too short to time alone

        def steps() -> Any:
            return [tf.linalg.matmul(sa, sb) for _ in range(inner)][-1].numpy()

        out["tf_float32_lstm_step"] = best(steps, 2.0 * m * k * p * inner)
    return out


def seconds_per_epoch(X: np.ndarray, y: np.ndarray, preset: str, epochs: int, batch: int = 32) -> list[float]:
    """Wall seconds of each of ``epochs`` epochs of the compiled ``preset`` network on ``(X, y)``."""
    import keras

    from job.models.lstm import build_network

    keras.utils.set_random_seed(42)
    net = build_network(X.shape[1], X.shape[2], y.shape[1], preset)
    stamps: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            stamps.append(time.perf_counter())

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            stamps[-1] = time.perf_counter() - stamps[-1]

    net.fit(X.astype(np.float32), y.astype(np.float32), epochs=epochs, batch_size=batch, shuffle=True, verbose=0,
            callbacks=[Clock()])
    return stamps


def refit_policy(dataset: Any, settings: Any, preset: str, warm_epochs: int, *, months: Any,
                 epochs: int) -> dict[str, Any]:
    """Yearly walk-forward refits, cold vs warm: training seconds, out-of-sample MAE, epochs run."""
    from job.backtest import walk_forward_folds
    from job.models.lstm import LSTMForecaster

    lookback = int(settings.models.lookback_months)
    folds = walk_forward_folds(months, 12)
    labels = dataset.labels()
    out: dict[str, Any] = {"folds": len(folds), "preset": preset, "warm_epochs": warm_epochs}
    for policy in ("cold", "warm"):
        previous, seconds, errors, ran = None, 0.0, [], []
        for fold in folds:
            X, y, _ = dataset.training_set(lookback, as_of=fold.fit_month)
            model = LSTMForecaster(preset=preset, epochs=epochs, patience=int(settings.models.lstm_patience),
                                   batch_size=int(settings.models.lstm_batch_size), seed=int(settings.models.seed),
                                   warm_start_epochs=warm_epochs)
            began = time.perf_counter()
            model.fit(X, y, warm_start_from=previous if policy == "warm" else None)
            seconds += time.perf_counter() - began
            ran.append(len(model.history_.get("loss", [])))
            predicted = model.predict(dataset.windows(lookback, fold.decision_months))
            errors.append(np.abs(predicted - labels.loc[fold.decision_months, dataset.assets].to_numpy()))
            previous = model
        out[policy] = {"train_seconds": round(seconds, 2), "oos_mae": float(np.mean(np.vstack(errors))),
                       "epochs_run": ran, "load": load()}
    out["speedup"] = ratio(out["cold"]["train_seconds"], out["warm"]["train_seconds"])
    out["mae_change"] = out["warm"]["oos_mae"] / out["cold"]["oos_mae"] - 1.0
    return out


FIT_MODES = ("op-by-op", "xla")


def fit_child(args: Any) -> None:
    """In a child process: one whole seed fit of ``args.fit_child`` = ``"ROWS:MODE"``; prints its figures as JSON."""
    import dataclasses
    import hashlib
    import json

    from job.models import lstm

    rows, mode = args.fit_child.split(":")
    if mode == "op-by-op":  # the seed preset as it trained before: Keras' fallback, op determinism on
        lstm.PRESETS["seed"] = dataclasses.replace(lstm.PRESETS["seed"], jit_compile=False)
    with tempfile.TemporaryDirectory(prefix="bench-lstm-fit-") as tmp:
        settings, dataset = ingested_dataset(args, Path(tmp))
    m = settings.models
    X, y, _ = dataset.training_set(int(m.lookback_months), as_of=dataset.labels().dropna().index[-1])
    X, y = X[:int(rows)], y[:int(rows)]
    # --quick: the small preset for two epochs, a smoke test of the benchmark, not a measurement
    model = lstm.LSTMForecaster(preset="small" if args.quick else "seed",
                                epochs=2 if args.quick else int(m.lstm_epochs), patience=int(m.lstm_patience),
                                batch_size=int(m.lstm_batch_size), seed=int(m.seed))
    began = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - began
    epochs = len(model.history_["loss"])
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in model.network_weights_)).hexdigest()
    print(json.dumps({"rows": len(X), "mode": mode, "fit_s": round(seconds, 1), "epochs": epochs,
                      "s_per_epoch": round(seconds / epochs, 2), "best_epoch": model.best_epoch_,
                      "compiled": bool(model.network_.jit_compile), "weights_sha256": digest[:16]}))


def full_fits(args: Any, sizes: list[int]) -> dict[str, Any]:
    """Part 3: each size fitted op by op and as XLA, each in a child process; figures and the speedup."""
    import json
    import sys

    from bench.common import run_command

    out: dict[str, Any] = {}
    for rows in sizes:
        fits: dict[str, Any] = {}
        for mode in FIT_MODES:
            cmd = [sys.executable, "-m", "bench.bench_lstm", "--fit-child", f"{rows}:{mode}",
                   "--snapshot-dir", str(args.snapshot_dir)] + (["--quick"] if args.quick else [])
            res = run_command(cmd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            if res.returncode != 0:
                raise SystemExit(f"fit child {rows}:{mode} failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
            figures = json.loads(res.stdout.strip().splitlines()[-1])
            fits[mode] = {**figures, "peak_rss_mb": round(res.tree_peak_rss_mb, 1), "load": res.load}
        fits["speedup"] = ratio(fits["op-by-op"]["fit_s"], fits["xla"]["fit_s"])
        fits["speedup_per_epoch"] = ratio(fits["op-by-op"]["s_per_epoch"], fits["xla"]["s_per_epoch"])
        out[str(rows)] = fits
    return out


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4, help="Epochs timed for the throughput (the first is dropped).")
    p.add_argument("--preset", default="seed", help="Preset of the throughput part.")
    p.add_argument("--refit-preset", default="small", help="Preset of the warm/cold refit comparison.")
    p.add_argument("--warm-epochs", type=int, default=10, help="Most epochs of a warm refit.")
    p.add_argument("--skip-refits", action="store_true", help="Leave out the refit comparison (part 2).")
    p.add_argument("--full-fits", default="", help="Part 3: comma-separated training row counts of whole seed fits.")
    p.add_argument("--fit-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.fit_child:
        fit_child(args)
        return {}
    from job.backtest import decision_months

    report = Report("bench_lstm (6)", args)
    with tempfile.TemporaryDirectory(prefix="bench-lstm-") as tmp:
        settings, dataset = ingested_dataset(args, Path(tmp))
    lookback = int(settings.models.lookback_months)
    X, y, _ = dataset.training_set(lookback, as_of=dataset.labels().dropna().index[-1])
    preset = "small" if args.quick else args.preset
    epochs = 2 if args.quick else max(2, args.epochs)
    n = min(185, len(X))
    X, y = X[:n], y[:n]
    flops = network_flops(X.shape[1], X.shape[2], y.shape[1], preset)
    report.add("flops", flops, f"{preset} network, input {X.shape[1:]} -> {y.shape[1]}: forward "
               f"{flops['forward'] / 1e6:.1f} MFLOP/sample (LSTM {flops['lstm_forward'] / 1e6:.1f}), training "
               f"~{flops['train_per_sample'] / 1e6:.1f} MFLOP/sample")

    stamps = seconds_per_epoch(X, y, preset, epochs)
    epoch = Timing(f"{preset} epoch, {n} samples, batch 32", stamps[1:], load())
    achieved = flops["train_per_sample"] * n / epoch.median / 1e9
    report.add("epoch", {**epoch.as_dict(), "first_epoch_s": round(stamps[0], 3), "achieved_gflops": achieved},
               f"{preset}: {epoch.median:.2f} s/epoch (median of {len(stamps) - 1}, first with tracing "
               f"{stamps[0]:.2f} s) = {achieved:.2f} GFLOP/s counted (load {epoch.load})")
    from job.models.lstm import PRESETS

    spec = PRESETS[preset]
    mm = matmul_gflops(repeats=2 if args.quick else 5, n=512 if args.quick else 2048,
                       step_shape=(32, X.shape[2] + spec.units, 4 * spec.units))
    peak = max(mm["numpy_float32"], mm["tf_float32"])
    report.add("matmul", {**{k: round(v, 2) for k, v in mm.items()}, "load": load()},
               "float32 matmul: " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in mm.items()) + f" (load {load()})")
    share = achieved / peak
    verdict = "reached" if share >= TARGET_SHARE else "NOT reached"
    report.add("throughput", {"achieved_gflops": round(achieved, 2), "machine_matmul_gflops": round(peak, 2),
                              "share": round(share, 3), "target_share": TARGET_SHARE,
                              "target_reached": bool(share >= TARGET_SHARE)},
               f"training runs at {share:.0%} of the machine's measured matmul throughput "
               f"({achieved:.1f} / {peak:.1f} GFLOP/s); target 50 % {verdict}")

    if not args.skip_refits:
        months = decision_months(dataset, lookback, int(settings.backtest.min_train_months))
        refit_preset = "small" if args.quick else args.refit_preset
        if args.quick:
            months = months[-14:]
        policy = refit_policy(dataset, settings, refit_preset, 3 if args.quick else args.warm_epochs,
                              months=months, epochs=3 if args.quick else int(settings.models.lstm_epochs))
        ok = policy["speedup"] >= TARGET_SPEEDUP and abs(policy["mae_change"]) <= TARGET_MAE
        policy["targets_reached"] = bool(ok)
        report.add("refits", policy,
                   f"{policy['folds']} yearly refits ({refit_preset}): cold {policy['cold']['train_seconds']:.1f} s "
                   f"(MAE {policy['cold']['oos_mae']:.5f}) vs warm {policy['warm']['train_seconds']:.1f} s "
                   f"(MAE {policy['warm']['oos_mae']:.5f}): {policy['speedup']:.1f}x, MAE "
                   f"{policy['mae_change']:+.2%}; targets (>= 5x, within 2 %) {'reached' if ok else 'NOT reached'}")
    sizes = [40] if args.quick else [int(v) for v in args.full_fits.split(",") if v.strip()]
    if sizes:
        for rows, fits in full_fits(args, sizes).items():
            a, b = fits["op-by-op"], fits["xla"]
            report.add(f"full_fit_{rows}", fits,
                       f"whole seed fit, {a['rows']} rows: op by op {a['fit_s']:.1f} s ({a['epochs']} epochs, "
                       f"{a['s_per_epoch']:.2f} s each, {a['peak_rss_mb']:.0f} MB) vs XLA {b['fit_s']:.1f} s "
                       f"({b['epochs']} epochs, {b['s_per_epoch']:.2f} s each, {b['peak_rss_mb']:.0f} MB): "
                       f"{fits['speedup']:.2f}x, {fits['speedup_per_epoch']:.2f}x per epoch (load {b['load']})")
    return report.finish()


if __name__ == "__main__":
    main()
