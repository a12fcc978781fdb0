#!/usr/bin/env python3
"""Write tests/golden/lbfgs.json: PyTorch's L-BFGS trajectory on a fixed function.

tessera's Lbfgs (src/optim/lbfgs.cpp) claims to follow torch.optim.LBFGS step
for step with neural-style's settings: no line search, lr 1, tolerances off
(-1), one closure evaluation per iteration, first step scaled by
min(1, 1/|g|_1). This script runs torch.optim.LBFGS in float64 on a smooth,
non-quadratic function of N variables and records x and f at every closure
evaluation, plus x after the last update; test_optimizers.cpp replays the same
function in C++ and compares the trajectory.

The function (u = x - t):
    f(x) = sum_i c_i u_i^2 + 0.2 * sum_i u_i^4 + 2 * sum_i (u_i - u_{i+1})^2
with c_i = uniform_at(301, i, 0.01, 4), t_i = uniform_at(302, i, -1, 1) and
x0_i = uniform_at(303, i, -2, 2) (the float32 values, used as float64).
The quartic term makes the Hessian change along the path, so the test checks
the history update rules, not only a quadratic's exact recurrence. The
neighbour coupling makes the Hessian non-diagonal; the small c_i make it
ill-conditioned enough that all 20 iterations take real steps (f falls from
about 3e3 to 5e-6, the last step still moves x by 3e-4).

Settings: history_size 5, max_iter 20 (so the history is full after 6
evaluations and recycles for the remaining 14), one optimizer.step() call.
With max_iter K, torch evaluates the closure K times and updates x K times
(the last update is not followed by an evaluation).

Usage (from the repository root; needs PyTorch, e.g. Debian's python3-torch):
    /usr/bin/python3 tests/golden/make_lbfgs_golden.py [--out tests/golden/lbfgs.json]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_golden import uniform_at  # noqa: E402  (the numpy twin of the C++ generator)

VARIABLES = 256
HISTORY = 5
ITERATIONS = 20
QUARTIC = 0.2
COUPLING = 2.0
SEEDS = {"c": (301, 0.01, 4.0), "t": (302, -1.0, 1.0), "x0": (303, -2.0, 2.0)}


def inputs(dtype):
    index = np.arange(VARIABLES, dtype=np.uint64)
    return {name: torch.tensor(uniform_at(seed, index, lo, hi).astype(np.float64), dtype=dtype)
            for name, (seed, lo, hi) in SEEDS.items()}


def energy(x, c, t):
    u = x - t
    coupling = u[:-1] - u[1:]
    return (c * u * u).sum() + QUARTIC * (u ** 4).sum() + COUPLING * (coupling * coupling).sum()


def run(dtype):
    v = inputs(dtype)
    x = v["x0"].clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([x], lr=1, max_iter=ITERATIONS, history_size=HISTORY, tolerance_grad=-1,
                                  tolerance_change=-1, line_search_fn=None)
    xs, fs = [], []

    def closure():
        optimizer.zero_grad()
        loss = energy(x, v["c"], v["t"])
        loss.backward()
        xs.append(x.detach().clone().double().numpy())
        fs.append(float(loss))
        return loss

    optimizer.step(closure)
    xs.append(x.detach().clone().double().numpy())
    return np.array(xs), np.array(fs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "lbfgs.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    xs, fs = run(torch.float64)
    if len(fs) != ITERATIONS or len(xs) != ITERATIONS + 1:
        sys.exit(f"expected {ITERATIONS} evaluations, torch made {len(fs)}")
    # Informational: how far torch's own float32 run drifts from float64 (a
    # float32 implementation should land near this, not far beyond it).
    xs32, fs32 = run(torch.float32)
    drift = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(xs32, xs))
    step_drift = [float(np.abs(np.diff(xs32, axis=0)[k] - np.diff(xs, axis=0)[k]).max() /
                        np.abs(np.diff(xs, axis=0)[k]).max()) for k in range(ITERATIONS)]
    f_drift = float(np.max(np.abs(fs32 - fs) / np.abs(fs)))

    golden = {
        "description": "torch.optim.LBFGS (float64) trajectory; see make_lbfgs_golden.py for the function",
        "torch_version": torch.__version__,
        "variables": VARIABLES,
        "history_size": HISTORY,
        "max_iter": ITERATIONS,
        "lr": 1.0,
        "quartic": QUARTIC,
        "coupling": COUPLING,
        "seeds": {name: {"seed": s, "lo": lo, "hi": hi} for name, (s, lo, hi) in SEEDS.items()},
        # f[k] and x[k] at closure evaluation k (x[0] = x0); x has one more
        # entry, the point after the last update.
        "f": [float(f) for f in fs],
        "x": [[float("%.12g" % value) for value in row] for row in xs],
        "float32_torch_max_rel_drift": {"x": drift, "f": f_drift, "step": max(step_drift)},
    }
    Path(args.out).write_text(json.dumps(golden, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: f {fs[0]:.6g} -> {fs[-1]:.6g}, |x_K - x_(K-1)|_max "
          f"{np.abs(xs[-1] - xs[-2]).max():.3g}, float32 torch drift x {drift:.2e} f {f_drift:.2e} "
          f"step {max(step_drift):.2e}")


if __name__ == "__main__":
    main()
