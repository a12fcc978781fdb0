#!/usr/bin/env bash
# tools/scaling-study on a small real sweep: 1, 2 and 4 ranks under mpirun on
# the CPU, a tiny image and the 2-convolution VGG-19 fixture. Checks the CSV
# (one row per configuration, every column, every run succeeded) and that
# each plot is a non-empty PNG. Times are not checked: they never fail a test.
# Usage: scaling_study_small_sweep.sh SCALING_STUDY TESSERA FIXTURE_DIR
set -euo pipefail
study=$1 tessera=$2 fixtures=$3
if ! /usr/bin/python3 -c "import matplotlib" 2> /dev/null; then
  echo "SKIPPED: Debian's python3-matplotlib is not installed (tools/bootstrap.sh installs it)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$tessera" models import "$fixtures/weights/vgg19_prefix_zip.pth" -o weights.h5 > /dev/null 2>&1

"$study" run --out study --tessera "$tessera" --ranks 1,2,4 --strong-sizes 64x48 --weak-size-per-rank 32x24 \
  --iterations 4 --warmup-iterations 1 --gpus 8,64,512 \
  -- --weights weights.h5 --content-layers relu1_2 --style-layers relu1_1,relu1_2

/usr/bin/python3 - << 'PYTHON'
import csv, struct, sys
from pathlib import Path
rows = list(csv.DictReader(open("study/scaling.csv")))
expected_columns = ["mode", "backend", "size", "ranks", "tiles", "seconds_per_iteration", "iterations_per_minute",
                    "compute_seconds", "halo_seconds", "allreduce_seconds", "optimizer_seconds",
                    "parallel_efficiency", "speedup", "peak_rss_max_mib", "peak_rss_mean_mib",
                    "collectives_per_iteration", "messages_per_iteration"]
missing = [c for c in expected_columns if c not in rows[0]]
assert not missing, f"columns missing: {missing}"
assert len(rows) == 6, f"{len(rows)} rows, expected 6 (strong and weak, 1, 2, 4 ranks)"
for mode in ("strong", "weak"):
    ranks = sorted(int(r["ranks"]) for r in rows if r["mode"] == mode)
    assert ranks == [1, 2, 4], f"{mode}: ranks {ranks}"
for r in rows:
    assert r["exit_status"] == "0", f"run {r['run']} failed"
    assert int(r["iterations_timed"]) == 4, f"run {r['run']}: {r['iterations_timed']} timed iterations"
    for column in ("seconds_per_iteration", "iterations_per_minute", "compute_seconds", "peak_rss_max_mib"):
        assert float(r[column]) > 0, f"run {r['run']}: {column} = {r[column]}"
    assert int(r["tile_rows"]) * int(r["tile_columns"]) == int(r["ranks"]), f"run {r['run']}: tiles"
    assert float(r["collectives_per_iteration"]) >= 1, f"run {r['run']}: no collectives counted"
    if r["ranks"] != "1":
        assert float(r["messages_per_iteration"]) >= 1, f"run {r['run']}: no halo messages counted"
    if r["ranks"] == "1":
        assert float(r["parallel_efficiency"]) == 1.0
weak4 = next(r for r in rows if r["mode"] == "weak" and r["ranks"] == "4")
assert weak4["size"] == "64x48", f"weak scaling on 4 ranks rendered {weak4['size']}"
projection = list(csv.DictReader(open("study/projection.csv")))
assert [int(r["gpus"]) for r in projection] == [8, 64, 512] * 2, "projection rows"
for name in ("scaling_throughput.png", "time_split.png", "memory_per_rank.png", "projection.png"):
    data = Path("study", name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, f"{name}: not a PNG, or empty"
    width, height = struct.unpack(">II", data[16:24])
    print(f"{name}: {len(data)} bytes, {width}x{height}")
print(f"scaling.csv: {len(rows)} rows, {len(rows[0])} columns; projection.csv: {len(projection)} rows")
PYTHON
echo PASSED
