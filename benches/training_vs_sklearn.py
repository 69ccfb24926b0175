#!/usr/bin/env python3
"""Training benchmark: Propensity's linfa-logistic path against scikit-learn's
LogisticRegression(solver="lbfgs") on the very same rows, in the same run.

What it does, per round:
1. runs `propensity bench --training --rounds 1 --export DIR --json`, which
   generates traffic, collects examples with the engine and times the whole
   training path (split, standardization, matrix, l2 grid on the validation
   split, warm-started refit, holdout evaluation), the preparation (split,
   standardization, matrix) separately; it also writes the exact standardized
   f64 matrices and labels of the final fit (.npy) and a manifest;
2. fits those matrices with scikit-learn doing the same steps: one fit per
   grid value on the grid rows (strongest penalty first, each warm-started
   from the previous one), validation AUC, refit on all rows at the best value
   warm-started from that grid fit, holdout AUC.

What is compared (the same work on both sides): the **fit stage**, from
standardized matrices in memory to the holdout AUC: grid fits, validation
AUCs, refit, holdout scoring. Data preparation is left out on both sides:
Propensity's `prepare_secs` is subtracted from its training path, and
scikit-learn gets its matrices C-contiguous before its clock starts
(`LogisticRegression.fit` copies any other layout to C order on every fit,
about 0.4 s per fit of the largest outcome; those copies are timed apart and
printed). Propensity's fit stage does include building the f64 matrix of its
final polish. Both use the 2 cores: Propensity fits outcomes in parallel,
scikit-learn's numpy products run on OpenBLAS threads.

linfa's `alpha` penalizes a summed loss, scikit-learn's C divides the
penalty of the same sum, so C = 1 / l2 is the same objective. Both stop by the
same rule: every component of the mean loss's gradient at most 1e-4
(scikit-learn's tol; Propensity checks it itself around linfa, whose own test
is on an L2 norm: see crates/propensity-training/src/fit/stopping.rs), with
the same iteration cap. The script computes that largest component at both
final models on the same matrix and prints it. Rounds alternate between the
two; medians are printed.

Usage: python3 benches/training_vs_sklearn.py [--propensity target/release/propensity]
       [--visitors 50000] [--rounds 3] [--threads 0] [--keep DIR]
Needs: pip install scikit-learn numpy
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def load(directory, prefix, part):
    x = np.load(directory / f"{prefix}.{part}.x.npy")
    y = np.load(directory / f"{prefix}.{part}.y.npy")
    return x, y


def largest_mean_gradient(x, y, weights, intercept, l2):
    """The largest component of the gradient of the mean loss (1/n Σ log loss +
    l2·||w||²/(2n), intercept not penalized): what scikit-learn's lbfgs stops on, and
    Propensity's fits too."""
    r = 1.0 / (1.0 + np.exp(-(x @ weights + intercept))) - y
    g = x.T @ r + l2 * weights
    return max(np.abs(g).max(), abs(r.sum())) / len(y)


def sklearn_outcome(directory, entry, grid, max_iter, tol):
    """scikit-learn through the same steps as Propensity; returns timings and AUCs."""
    prefix = entry["prefix"]
    x, y = load(directory, prefix, "fit")
    xv, yv = load(directory, prefix, "validation")
    xh, yh = load(directory, prefix, "holdout")
    g = entry["grid_rows"]
    # C-contiguous copies, made before the clock starts: LogisticRegression
    # would otherwise copy the Fortran-order file (and the grid rows' slice) to
    # C order inside every fit. Timed apart, to show what that was.
    start = time.perf_counter()
    xg, yg = np.ascontiguousarray(x[:g]), y[:g]
    grid_copy = time.perf_counter() - start
    x = np.ascontiguousarray(x)
    # The grid fits copied the grid rows once each, the refit all rows once.
    layout_secs = len(grid) * grid_copy + (time.perf_counter() - start - grid_copy)
    start = time.perf_counter()
    # The same regularization path as Propensity: strongest penalty first,
    # each fit warm-started from the previous one.
    grid_models = []
    iterations = []
    previous = None
    for l2 in sorted(grid, reverse=True):
        model = LogisticRegression(
            C=1.0 / l2, solver="lbfgs", tol=tol, max_iter=max_iter, warm_start=True)
        if previous is not None:
            model.coef_ = previous.coef_.copy()
            model.intercept_ = previous.intercept_.copy()
        model.fit(xg, yg)
        iterations.append(int(model.n_iter_[0]))
        auc = roc_auc_score(yv, model.decision_function(xv))
        grid_models.append((auc, l2, model))
        previous = model
    # Best validation AUC, ties to the larger penalty (as Propensity).
    best_auc, best_l2, best = max(grid_models, key=lambda t: (t[0], t[1]))
    final = LogisticRegression(
        C=1.0 / best_l2, solver="lbfgs", tol=tol, max_iter=max_iter, warm_start=True
    )
    final.coef_ = best.coef_.copy()
    final.intercept_ = best.intercept_.copy()
    final.fit(x, y)
    iterations.append(int(final.n_iter_[0]))
    holdout_auc = roc_auc_score(yh, final.decision_function(xh))
    pipeline_secs = time.perf_counter() - start
    yf = y.astype(np.float64)
    gradient = largest_mean_gradient(x, yf, final.coef_[0], final.intercept_[0], best_l2)
    ours = largest_mean_gradient(
        x, yf, np.asarray(entry["weights"]), entry["intercept"], entry["l2"])

    # The fitter alone: one cold fit of the whole matrix at the chosen l2.
    start = time.perf_counter()
    single = LogisticRegression(C=1.0 / best_l2, solver="lbfgs", tol=tol, max_iter=max_iter)
    single.fit(x, y)
    single_secs = time.perf_counter() - start
    return {
        "outcome": entry["outcome"],
        "l2": best_l2,
        "grid_auc": {l2: round(a, 5) for a, l2, _ in grid_models},
        "iterations": iterations,
        "single_iterations": int(single.n_iter_[0]),
        "holdout_auc": holdout_auc,
        "final_gradient": gradient,
        "our_final_gradient": ours,
        "pipeline_secs": pipeline_secs,
        "layout_copy_secs": layout_secs,
        "single_fit_secs": single_secs,
    }


def run_propensity(binary, visitors, threads, directory):
    cmd = [
        binary, "bench", "--training", "--visitors", str(visitors), "--rounds", "1",
        "--threads", str(threads), "--export", str(directory), "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--propensity", default="target/release/propensity")
    ap.add_argument("--visitors", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="Propensity's fit threads (0: all)")
    ap.add_argument("--keep", type=Path, help="keep the exported matrices here")
    args = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)

    # The matrices are large (about 0.5 GB at 50,000 visitors): RAM-backed
    # /dev/shm when there is one, so the disk is neither filled nor timed.
    shm = Path("/dev/shm")
    scratch = str(shm) if shm.is_dir() else None
    directory = args.keep or Path(
        tempfile.mkdtemp(prefix="propensity-training-bench-", dir=scratch))
    rust_rounds, sk_rounds = [], []
    for r in range(args.rounds):
        rust = run_propensity(args.propensity, args.visitors, args.threads, directory)
        manifest = json.loads((directory / "manifest.json").read_text())
        sk = [
            sklearn_outcome(directory, e, manifest["l2_grid"], manifest["max_iterations"],
                            manifest["tolerance_per_row"])
            for e in manifest["outcomes"]
        ]
        sk_secs = sum(o["pipeline_secs"] for o in sk)
        ours = rust["train_secs"] - rust["prepare_secs"]
        print(f"round {r + 1}: fit stage propensity {ours:.2f} s, "
              f"scikit-learn {sk_secs:.2f} s, ratio {sk_secs / ours:.2f}", file=sys.stderr)
        rust_rounds.append(rust)
        sk_rounds.append(sk)
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)

    rows = rust_rounds[-1]["train_rows"]
    rust_path = statistics.median(r["train_secs"] for r in rust_rounds)
    rust_prepare = statistics.median(r["prepare_secs"] for r in rust_rounds)
    rust_secs = statistics.median(r["train_secs"] - r["prepare_secs"] for r in rust_rounds)
    sk_secs = statistics.median(sum(o["pipeline_secs"] for o in s) for s in sk_rounds)
    sk_copies = statistics.median(sum(o["layout_copy_secs"] for o in s) for s in sk_rounds)
    rust_single = statistics.median(
        sum(o["single_fit_secs"] for o in r["outcomes"]) for r in rust_rounds)
    sk_single = statistics.median(sum(o["single_fit_secs"] for o in s) for s in sk_rounds)

    print(f"{'outcome':<22} {'fit rows':>9} {'l2 (ours/sk)':>14} {'AUC ours':>9} "
          f"{'AUC sk':>9} {'diff':>8} {'1 fit ours':>11} {'1 fit sk':>9}  sk iterations")
    for ours, sk in zip(rust_rounds[-1]["outcomes"], sk_rounds[-1]):
        diff = ours["holdout_auc"] - sk["holdout_auc"]
        print(f"{ours['outcome']:<22} {ours['fit_rows']:>9} "
              f"{ours['l2']:>6g}/{sk['l2']:<7g} {ours['holdout_auc']:>9.4f} "
              f"{sk['holdout_auc']:>9.4f} {diff:>+8.4f} {ours['single_fit_secs']:>10.2f}s "
              f"{sk['single_fit_secs']:>8.2f}s  {sk['iterations']} (cold {sk['single_iterations']})")
    print("(scikit-learn iterations: the grid from the strongest penalty down, then the refit)")
    print(f"fit stage (grid, validation AUCs, refit, holdout scoring; no data "
          f"preparation), {rows} training rows, medians of {args.rounds} round(s):")
    print(f"  propensity   {rust_secs:8.2f} s  {rows * 60 / rust_secs:>12,.0f} rows/min "
          f"({rust_rounds[-1]['threads']} thread(s), outcomes in parallel)")
    print(f"  scikit-learn {sk_secs:8.2f} s  {rows * 60 / sk_secs:>12,.0f} rows/min "
          f"(C-contiguous matrices, OpenBLAS threads)")
    print(f"  ratio (scikit-learn time / propensity time): {sk_secs / rust_secs:.2f}")
    print(f"propensity's whole training path (preparation {rust_prepare:.2f} s included): "
          f"{rust_path:.2f} s = {rows * 60 / rust_path:,.0f} rows/min")
    print(f"left out of scikit-learn's time: the C-order copies its fits would make of "
          f"the Fortran-order matrices, {sk_copies:.2f} s (earlier versions of this "
          f"script timed them in, and Propensity's preparation too: ratio "
          f"{(sk_secs + sk_copies) / rust_path:.2f} that way)")
    print(f"one cold fit per outcome at the chosen l2, summed: propensity {rust_single:.2f} s "
          f"(1 thread each), scikit-learn {sk_single:.2f} s, ratio {sk_single / rust_single:.2f}")
    print(f"largest gradient component of the mean loss at the final model (both stop at "
          f"{manifest['tolerance_per_row']:g}):")
    for sk in sk_rounds[-1]:
        print(f"  {sk['outcome']:<22} propensity {sk['our_final_gradient']:.2e}  "
              f"scikit-learn {sk['final_gradient']:.2e}")
    worst = max(abs(o["holdout_auc"] - s["holdout_auc"])
                for o, s in zip(rust_rounds[-1]["outcomes"], sk_rounds[-1]))
    print(f"largest holdout AUC difference: {worst:.4f} (target <= 0.005)")


if __name__ == "__main__":
    main()
