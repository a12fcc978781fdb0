#!/usr/bin/env bash
# The GPU path in one call: the CUDA backend's tests, compute-sanitizer's
# memcheck on a small render, and the GPU benchmarks (tessera against
# PyTorch eager on the same GPU), with every result under $OUT (or
# ./build-gpu-results, which git ignores, when $OUT is unset).
#
# Two steps, for a GPU machine that has nvcc, cuDNN, cuBLAS and NCCL
# only inside its PyTorch and none of Debian's -dev packages (oneDNN,
# OpenImageIO, HDF5, MPI, GoogleTest), and no package registry:
#
#   tools/gpu-check.sh pack          # here, on a Debian machine with nvcc (CI's kind):
#                                    # builds build-gpu/ and copies into build-gpu-bundle/
#                                    # the test binary, tessera-cuda-bench, the shared
#                                    # libraries they need that the GPU machine lacks
#                                    # (oneDNN, libgomp) and torch_gatys.py (< 64 MiB)
#   tools/gpu-check.sh [PHASES...]   # on the GPU machine, in a copy of the working tree
#                                    # that includes build-gpu-bundle
#
# PHASES (default: info test sanitize bench): info, test, sanitize, bench
# (VGG-19 at 512, 1024, 2048, 4096 px, f32 and each side's fastest form),
# bench-8k (one 7680x4320 VGG-19 measurement, Adam, bf16), study (the 2016
# study's table: VGG-19 and NIN at 64..1024 px), table (re-print the table
# from $OUT/bench.jsonl). One remote job may run for at most 10 minutes: the
# default phases are sized for one call; bench-8k and study need a second:
#   tools/gpu-check.sh info bench-8k study
# Environment: GPU_CHECK_ITERATIONS (timed iterations per benchmark,
# default 10; 5 at 2048 px and above),
# GPU_CHECK_SIZES (default "512 1024 2048 4096"), GPU_CHECK_BACKEND (cuda;
# "cpu" dry-runs the script's mechanics on a machine without a GPU).
#
# Where the tessera command itself runs (a GPU node with the Debian
# libraries, built with `cmake -DTESSERA_WITH_CUDA=ON`), set
# TESSERA_BINARY=path/to/tessera and the benchmarks use `tessera bench
# --backend cuda`; tessera-cuda-bench runs the same Renderer with the same
# measurement and prints the same JSON keys.
set -uo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bundle="$here/build-gpu-bundle"
out="${OUT:-$here/build-gpu-results}"

say() { printf '\n=== %s\n' "$*"; }

# A remote GPU job may be stopped at 10 minutes: every step gets at most
# what is left of GPU_CHECK_BUDGET_S (default 570 s from the start), and a
# step that would get under 20 s is skipped, saying so, so that the summary
# and the table always come back.
budget_s=${GPU_CHECK_BUDGET_S:-570}
backend=${GPU_CHECK_BACKEND:-cuda}
torch_device=cuda
[ "$backend" = cpu ] && torch_device=cpu
limited() {  # seconds command...
  local want=$1
  shift
  local left=$((budget_s - SECONDS))
  if [ "$left" -lt 20 ]; then
    echo "skipped (time budget spent): $*" >&2
    return 124
  fi
  [ "$want" -gt "$left" ] && want=$left
  timeout "$want" "$@"
}

pack() {
  local build="$here/build-gpu"
  set -e
  cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTESSERA_WITH_CUDA=ON
  cmake --build "$build" -j "${GPU_CHECK_JOBS:-2}" --target test_cuda_backend test_nccl_communicator tessera-cuda-bench
  rm -rf "$bundle"
  mkdir -p "$bundle/lib" "$bundle/lib-fallback"
  cp "$build/tests/unit/test_cuda_backend" "$build/tests/unit/test_nccl_communicator" \
     "$build/tools/tessera-cuda-bench" "$bundle/"
  strip --strip-unneeded "$bundle/test_cuda_backend" "$bundle/test_nccl_communicator" "$bundle/tessera-cuda-bench"
  # The CUDA libraries come from the GPU machine's PyTorch (same major
  # versions: cuBLAS 13, cuDNN 9); the C library and the loader are the
  # system's. Everything else the binaries name is carried.
  ldd "$bundle/test_cuda_backend" "$bundle/test_nccl_communicator" "$bundle/tessera-cuda-bench" | awk '/=> \//{print $3}' | sort -u |
    while read -r library; do
      case "$(basename "$library")" in
        libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libcudnn*|libcublas*|libcudart*|libnccl*|libcuda.so*) ;;
        libstdc++.so*|libgcc_s.so*) cp -L "$library" "$bundle/lib-fallback/" ;;  # only if the machine's are older
        *) cp -L "$library" "$bundle/lib/" ;;
      esac
    done
  local torch_script="$here/../shared/bench/torch_gatys.py"
  [ -f "$here/shared/bench/torch_gatys.py" ] && torch_script="$here/shared/bench/torch_gatys.py"
  if [ -f "$torch_script" ]; then cp "$torch_script" "$bundle/"; else echo "warning: torch_gatys.py not found: no PyTorch comparison" >&2; fi
  git -C "$here" rev-parse HEAD > "$bundle/commit" 2>/dev/null || true
  git -C "$here" status --short > "$bundle/worktree-status" 2>/dev/null || true
  du -sh "$bundle"
  local bytes
  bytes=$(du -sb "$bundle" | cut -f1)
  if [ "$bytes" -gt $((60 * 1024 * 1024)) ]; then
    echo "error: the bundle is $((bytes / 1024 / 1024)) MiB; keep it under 64 MiB so that it travels with the working tree" >&2
    exit 1
  fi
  echo "ready: carry build-gpu-bundle and run tools/gpu-check.sh on the GPU machine"
}

# --- on the GPU machine

setup_environment() {
  mkdir -p "$out"
  if [ ! -x "$bundle/test_cuda_backend" ]; then
    echo "error: $bundle/test_cuda_backend is missing: run 'tools/gpu-check.sh pack' on a Debian machine with nvcc" \
         "and carry build-gpu-bundle" >&2
    exit 1
  fi
  # cuDNN, cuBLAS (and NCCL) from the Python packages PyTorch uses.
  local python_libraries
  python_libraries=$(python3 - <<'EOF' 2>/dev/null
import glob, os
roots = []
try:
    import nvidia
    roots += list(nvidia.__path__)
except Exception:
    pass
try:
    import torch
    roots.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except Exception:
    pass
folders = set()
for root in roots:
    for pattern in ("libcudnn.so*", "libcublas.so*", "libcublasLt.so*", "libnccl.so*", "libcudart.so*"):
        for path in glob.glob(os.path.join(root, "**", pattern), recursive=True):
            folders.add(os.path.dirname(path))
print(":".join(sorted(folders)))
EOF
)
  export LD_LIBRARY_PATH="$bundle/lib${python_libraries:+:$python_libraries}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # Debian 12's libstdc++ only where the machine's is older than the one
  # the binaries were built against.
  if ldd "$bundle/test_cuda_backend" 2>&1 | grep -q "version .* not found"; then
    export LD_LIBRARY_PATH="$bundle/lib-fallback:$LD_LIBRARY_PATH"
  fi
  export PATH="$PATH:/usr/local/cuda/bin"
  sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1 || true)
  [ -z "$sanitizer" ] && sanitizer=$(find / -name compute-sanitizer -type f -perm -u+x 2>/dev/null | head -1)
  bench_tool="$bundle/tessera-cuda-bench"
  if [ -n "${TESSERA_BINARY:-}" ] && "$TESSERA_BINARY" --help > /dev/null 2>&1; then
    bench_tool="$TESSERA_BINARY bench --json"
  fi
  export PYTHONUNBUFFERED=1
}

phase_info() {
  say "machine"
  {
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
    echo "bundle built from: $(cat "$bundle/commit" 2>/dev/null)"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "compute-sanitizer: ${sanitizer:-not found}"
    echo "benchmark tool: $bench_tool"
    ldd "$bundle/test_cuda_backend" "$bundle/test_nccl_communicator" "$bundle/tessera-cuda-bench"
    python3 -c 'import torch; print("torch", torch.__version__, "cuDNN", torch.backends.cudnn.version(), torch.cuda.get_device_name())' 2>&1
  } 2>&1 | tee "$out/info.txt"
  # The ceiling to measure against: a large bf16 matrix product
  # through PyTorch's cuBLAS on this GPU (random data, median of 10).
  [ "$backend" = cuda ] && limited 60 python3 - <<'EOF' 2>&1 | tee "$out/matmul_tflops.txt"
import torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(3): a @ b
times = []
for _ in range(10):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(); a @ b; end.record(); torch.cuda.synchronize()
    times.append(start.elapsed_time(end) / 1e3)
times.sort()
print(f"{2 * 8192**3 / times[len(times) // 2] / 1e12:.1f}")
EOF
  if ldd "$bundle/test_cuda_backend" "$bundle/test_nccl_communicator" "$bundle/tessera-cuda-bench" | grep -q "not found"; then
    echo "error: a library is missing (see above)" >&2
    return 1
  fi
}

phase_test() {
  say "CUDA backend tests (every op, the whole loss and gradient, tiles on one GPU, against the CPU)"
  limited 240 "$bundle/test_cuda_backend" --gtest_output="xml:$out/test_cuda_backend.xml" 2>&1 | tee "$out/test.log"
  local status=${PIPESTATUS[0]}
  limited 60 "$bundle/test_nccl_communicator" --gtest_output="xml:$out/test_nccl_communicator.xml" 2>&1 | tee -a "$out/test.log"
  [ "${PIPESTATUS[0]}" -ne 0 ] && status=1
  echo "tests exit status $status" | tee -a "$out/test.log"
  # On the GPU machine a skip means the GPU was not found: a failure here.
  if [ "$backend" = cuda ] && grep -q "SKIPPED \]" "$out/test.log"; then
    echo "FAILED: tests skipped on a machine that should have a GPU (see above)" | tee -a "$out/test.log"
    status=1
  fi
  return "$status"
}

phase_sanitize() {
  say "compute-sanitizer memcheck: a small render (VGG-19 to relu5_1, 64 px, 2 iterations, f32 and bf16) and the op tests"
  if [ -z "$sanitizer" ]; then
    echo "compute-sanitizer not found: memcheck not run" | tee "$out/memcheck.log"
    return 1
  fi
  # The block runs in a subshell (it feeds tee): its status is its last
  # command's, read from PIPESTATUS, not a variable set inside it.
  {
    local status=0
    for precision in f32 bf16; do
      limited 90 "$sanitizer" --tool memcheck --error-exitcode 99 --leak-check full \
        $bench_tool --backend "$backend" --model vgg19 --size 64 --iterations 2 --precision "$precision" || status=1
      limited 90 "$sanitizer" --tool memcheck --error-exitcode 99 --leak-check full \
        $bench_tool --backend "$backend" --model nin --size 96 --iterations 2 --optimizer adam --precision "$precision" --tiles 2x2 || status=1
    done
    limited 120 "$sanitizer" --tool memcheck --error-exitcode 99 \
      "$bundle/test_cuda_backend" --gtest_filter='Cuda/CudaAgainstCpu.*/f32' || status=1
    echo "memcheck status $status (0: clean)"
    [ "$status" -eq 0 ]
  } 2>&1 | tee "$out/memcheck.log"
  return "${PIPESTATUS[0]}"
}

bench_tessera() {  # size precision iterations
  limited 120 $bench_tool --backend "$backend" --model vgg19 --size "$1" --precision "$2" --iterations "$3" 2>>"$out/bench.err" |
    grep '^{' | python3 -c 'import json,sys
for line in sys.stdin:
    r = json.loads(line); r["side"] = "tessera"; print(json.dumps(r))' >> "$out/bench.jsonl" ||
    echo "{\"side\": \"tessera\", \"size\": \"$1x$1\", \"precision\": \"$2\", \"error\": \"failed (bench.err)\"}" >> "$out/bench.jsonl"
}

bench_torch() {  # size dtype iterations [--channels-last]
  [ -f "$bundle/torch_gatys.py" ] || return 0
  limited 120 python3 "$bundle/torch_gatys.py" --device "$torch_device" --model vgg19 --size "$1" --dtype "$2" --iters "$3" ${4:-} \
    --json 2>>"$out/bench.err" | grep '^{' | python3 -c 'import json,sys
for line in sys.stdin:
    r = json.loads(line); r["side"] = "torch"; print(json.dumps(r))' >> "$out/bench.jsonl" ||
    echo "{\"side\": \"torch\", \"size\": \"$1x$1\", \"dtype\": \"$2\", \"error\": \"failed or out of memory (bench.err)\"}" >> "$out/bench.jsonl"
}

phase_bench() {
  say "benchmarks: VGG-19, L-BFGS, tessera (f32, bf16) against PyTorch eager (float32, bfloat16 channels-last)"
  for size in ${GPU_CHECK_SIZES:-512 1024 2048 4096}; do
    local iterations=${GPU_CHECK_ITERATIONS:-10}
    [ "$size" -ge 2048 ] && iterations=${GPU_CHECK_ITERATIONS:-5}
    echo "size $size, $iterations timed iterations"
    bench_tessera "$size" f32 "$iterations"
    bench_tessera "$size" bf16 "$iterations"
    bench_torch "$size" float32 "$iterations"
    bench_torch "$size" bfloat16 "$iterations" --channels-last
  done
  phase_table
}

phase_bench_8k() {
  say "8K: VGG-19 at 7680x4320, Adam (L-BFGS's 100 pairs would be 80 GB), bf16, 3 timed iterations"
  limited 400 $bench_tool --backend "$backend" --model vgg19 --size 7680x4320 --precision bf16 --optimizer adam \
    --iterations 3 2>>"$out/bench.err" | grep '^{' | tee -a "$out/bench-8k.jsonl"
  [ -f "$bundle/torch_gatys.py" ] && limited 150 python3 "$bundle/torch_gatys.py" --device "$torch_device" --model vgg19 \
    --size 7680x4320 --dtype bfloat16 --channels-last --optimizer adam --iters 2 --json 2>&1 | tail -3 |
    tee -a "$out/bench-8k-torch.txt"
  return 0
}

phase_study() {
  say "the 2016 study's table on this GPU: iterations per minute by model and size (f32, L-BFGS)"
  for model in vgg19 nin; do
    for size in 64 128 256 512 1024; do
      limited 120 $bench_tool --backend "$backend" --model "$model" --size "$size" --iterations 10 2>>"$out/bench.err" |
        grep '^{' >> "$out/study.jsonl"
    done
  done
  [ -f "$out/study.jsonl" ] && python3 - "$out/study.jsonl" <<'EOF' | tee "$out/study-table.txt"
import json, sys
print(f"{'model':<6} {'size':>10} {'it/min':>9} {'s/it':>8} {'GFLOP/s':>9} {'GPU MiB':>9}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['model']:<6} {r['size']:>10} {r['iterations_per_minute']:>9.1f} {r['seconds_per_iteration']:>8.4f} "
          f"{r['gflops']:>9.1f} {r.get('peak_device_bytes', 0) / 2**20:>9.0f}")
EOF
  return 0
}

phase_table() {
  [ -f "$out/bench.jsonl" ] || return 0
  python3 - "$out/bench.jsonl" <<'EOF' | tee "$out/bench-table.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
import os
peak = 798.0  # bf16 matmul measured on this workplace's H100s, unless measured now
try:
    peak = float(open(os.path.join(os.path.dirname(sys.argv[1]), "matmul_tflops.txt")).read().split()[-1])
except Exception:
    pass
def key(r):
    size = r.get("size", "?")
    if isinstance(size, int): size = f"{size}x{size}"
    return size
def rate(r): return r.get("iterations_per_minute")
sizes = []
for r in rows:
    if key(r) not in sizes: sizes.append(key(r))
print("# VGG-19, L-BFGS; tessera: tessera-cuda-bench / tessera bench (it/min after one warm-up);")
print(f"# torch: torch_gatys.py; GFLOP/s as README defines it; % of {peak:.0f} TFLOP/s (bf16 8192^3 matmul on this GPU)")
print(f"{'size':>10} {'tessera f32':>12} {'tessera bf16':>13} {'torch f32':>10} {'torch bf16cl':>13} {'f32 x':>6} {'best x':>7} {'bf16 TFLOP/s':>13} {'% of peak':>9} {'tessera GiB':>12} {'torch GiB':>10}")
for size in sizes:
    pick = lambda side, prec: next((r for r in rows if key(r) == size and r.get("side") == side and
                                   (r.get("precision") == prec or r.get("dtype") == prec) and "error" not in r), None)
    t32, t16 = pick("tessera", "f32"), pick("tessera", "bf16")
    p32, p16 = pick("torch", "float32"), pick("torch", "bfloat16")
    f = lambda r: f"{rate(r):.1f}" if r else "-"
    ratio = lambda a, b: f"{rate(a) / rate(b):.2f}" if a and b else "-"
    best_t = max([r for r in (t32, t16) if r], key=rate, default=None)
    best_p = max([r for r in (p32, p16) if r], key=rate, default=None)
    tflops = f"{t16['gflops'] / 1e3:.1f}" if t16 and "gflops" in t16 else "-"
    share = f"{t16['gflops'] / 1e3 / peak * 100:.0f}" if t16 and "gflops" in t16 else "-"
    gib = lambda r: f"{r.get('peak_device_bytes', 0) / 2**30:.1f}" if r else "-"
    print(f"{size:>10} {f(t32):>12} {f(t16):>13} {f(p32):>10} {f(p16):>13} {ratio(t32, p32):>6} {ratio(best_t, best_p):>7} {tflops:>13} {share:>9} {gib(best_t):>12} {gib(best_p):>10}")
errors = [r for r in rows if "error" in r]
for r in errors: print("failed:", json.dumps(r))
EOF
}

if [ "${1:-}" = "pack" ]; then
  pack
  exit $?
fi

setup_environment
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(info test sanitize bench)
summary=()
overall=0
for phase in "${phases[@]}"; do
  case "$phase" in
    info) phase_info ;;
    test) phase_test ;;
    sanitize) phase_sanitize ;;
    bench) phase_bench ;;
    bench-8k) phase_bench_8k ;;
    study) phase_study ;;
    table) phase_table ;;
    *) echo "unknown phase '$phase' (info, test, sanitize, bench, bench-8k, study, table)" >&2; exit 2 ;;
  esac
  status=$?
  summary+=("$phase: $([ $status -eq 0 ] && echo ok || echo "FAILED ($status)")")
  [ $status -ne 0 ] && overall=1
done
say "summary (results in $out)"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
exit $overall
