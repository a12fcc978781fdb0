#!/usr/bin/env python3
"""Runs tessera bench and PyTorch eager (../shared/bench/torch_gatys.py) on the
same loop, sizes, iterations and threads, one after the other in this one run,
and prints the table: iterations per minute for both, their ratio, tessera's
achieved GFLOP/s against oneDNN's one-convolution peak, peak memory, and
tessera's bf16 loop beside its f32 one (speed-up, and the relative difference
of the loss both evaluate at the same seeded initial image).

Run it with Debian's python3 (it has torch):
    /usr/bin/python3 tools/compare-pytorch.py [--sizes 128,256,512] [--iterations 10] [--threads 2]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_json(command):
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--model", default="vgg19")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--optimizer", default="lbfgs")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tessera", default=str(ROOT / "build" / "src" / "cli" / "tessera"))
    ap.add_argument("--torch-script", default=str(ROOT.parent / "shared" / "bench" / "torch_gatys.py"))
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args()
    if not Path(a.torch_script).exists():
        sys.exit(f"no PyTorch reference at {a.torch_script}")

    common = ["--iterations", str(a.iterations), "--optimizer", a.optimizer, "--threads", str(a.threads)]
    peak = run_json([a.tessera, "bench", "--conv-peak", "--json", "--threads", str(a.threads)])[0]
    import torch  # only for its version in the preamble
    print(f"# tessera vs PyTorch {torch.__version__} eager, {a.model}, {a.optimizer}, {a.iterations} timed "
          f"iterations after 1 warm-up, {a.threads} threads, f32")
    print(f"# CPU: {cpu_model()}, {os.cpu_count()} cores; oneDNN one-convolution peak ({peak['convolution']}): "
          f"forward {peak['forward_gflops']:.0f}, backward-to-input {peak['backward_data_gflops']:.0f} GFLOP/s")
    print(f"# command: /usr/bin/python3 tools/compare-pytorch.py --sizes {a.sizes} --iterations {a.iterations} "
          f"--threads {a.threads}")
    header = ("size", "torch it/min", "tessera it/min", "ratio", "GFLOP/s", "% of peak", "torch MiB", "tessera MiB",
              "bf16 it/min", "bf16/f32", "bf16 loss")
    units = ("px", "1/min", "1/min", "x", "1e9/s", "%", "peak RSS", "peak RSS", "1/min", "x", "rel. diff")
    fmt = "{:>9} {:>13} {:>15} {:>7} {:>9} {:>10} {:>10} {:>12} {:>12} {:>9} {:>10}"
    print(fmt.format(*header))
    print(fmt.format(*units))
    rows = []
    for size in a.sizes.split(","):
        torch_row = run_json(["/usr/bin/python3", a.torch_script, "--model", a.model, "--size", size, "--iters",
                              str(a.iterations), "--optimizer", a.optimizer, "--threads", str(a.threads), "--json"])[0]
        ours = run_json([a.tessera, "bench", "--model", a.model, "--size", size, "--json"] + common)[0]
        bf16 = run_json([a.tessera, "bench", "--model", a.model, "--size", size, "--json", "--precision", "bf16"]
                        + common)[0]
        ratio = ours["iterations_per_minute"] / torch_row["iterations_per_minute"]
        share = 100.0 * ours["gflops"] / peak["forward_gflops"]
        speedup = bf16["iterations_per_minute"] / ours["iterations_per_minute"]
        loss_diff = abs(bf16["initial_loss"] - ours["initial_loss"]) / abs(ours["initial_loss"])
        print(fmt.format(ours["size"], f"{torch_row['iterations_per_minute']:.1f}",
                         f"{ours['iterations_per_minute']:.1f}", f"{ratio:.2f}", f"{ours['gflops']:.0f}",
                         f"{share:.0f}", f"{torch_row['peak_rss_bytes'] / 2**20:.0f}",
                         f"{ours['peak_rss_bytes'] / 2**20:.0f}", f"{bf16['iterations_per_minute']:.1f}",
                         f"{speedup:.2f}", f"{loss_diff:.1e}"), flush=True)
        rows.append({"size": ours["size"], "torch": torch_row, "tessera": ours, "tessera_bf16": bf16,
                     "ratio": ratio, "percent_of_conv_peak": share, "bf16_speedup": speedup,
                     "bf16_loss_relative_difference": loss_diff})
    if a.json:
        Path(a.json).write_text(json.dumps({"conv_peak": peak, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
