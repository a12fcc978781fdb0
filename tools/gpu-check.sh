#!/usr/bin/env bash
# The GPU path in one call, sized for a GPU machine lent for 15 minutes
# (about 2 of them to start it) with room to run it twice: the machine and
# its libraries, the CUDA backend's and NCCL's tests (each test suite in a
# process of its own, so that one fault cannot poison the rest), the
# benchmarks against PyTorch eager on the same GPU (VGG-19 at 512, 2048 and
# 7680x4320; f32 with TF32 off on both sides, and bf16), and last
# compute-sanitizer's memcheck. About 5 minutes (GPU_CHECK_BUDGET_S, default
# 300: every step gets at most what is left, and one that would get under
# 15 s is skipped, saying so).
#
# Two steps:
#
#   tools/gpu-check.sh pack      # here, on a Debian machine with nvcc (CI's kind):
#                                # builds build-gpu/ and copies into build-gpu-bundle/
#                                # the test binaries, tessera-cuda-bench, the shared
#                                # libraries they need that the GPU machine lacks
#                                # (oneDNN, libgomp) and torch_gatys.py (< 64 MiB)
#   tools/gpu-check.sh           # on the GPU machine, in a copy of the working tree
#                                # that holds build-gpu-bundle; results under $OUT
#
# The second as one call of this workplace's device tool (build-gpu-bundle
# is ignored by git, so it is carried):
#
#   run(command="tools/gpu-check.sh", carry=["build-gpu-bundle"], timeout_s=420)
#
# What comes back, under $OUT (or ./build-gpu-results when $OUT is unset),
# five files: summary.txt (each phase ok or FAILED), gpu-check.log
# (everything printed), bench.jsonl (one line per measurement),
# bench-table.txt (tessera against PyTorch, with 500 iterations projected
# from the measured s/iteration) and details.tar.gz (each test suite's log
# and XML, memcheck's logs, the machine's description, the benchmarks'
# errors). The exit status is 0 only if every phase passed.
#
# PHASES (default: info test bench sanitize): info, test, bench, sanitize;
# table re-prints the table from $OUT/bench.jsonl; study (the 2016 study's
# table: VGG-19 and NIN at 64..1024 px) needs a call of its own.
# Environment: GPU_CHECK_SIZES (default "512 2048 7680x4320"),
# GPU_CHECK_BACKEND (cuda; "cpu" runs the script's mechanics on a machine
# without a GPU), GPU_CHECK_PYTHON (the Python that has torch; python3).
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
# Everything but the five files is written here and archived at the end.
work="$out/details"
python=${GPU_CHECK_PYTHON:-python3}

say() { printf '\n=== %s\n' "$*"; }

budget_s=${GPU_CHECK_BUDGET_S:-300}
backend=${GPU_CHECK_BACKEND:-cuda}
torch_device=cuda
[ "$backend" = cpu ] && torch_device=cpu
limited() {  # seconds command...
  local want=$1
  shift
  local left=$((budget_s - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "skipped (time budget spent): $*" >&2
    return 124
  fi
  [ "$want" -gt "$left" ] && want=$left
  timeout -k 5 "$want" "$@"
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
  mkdir -p "$out" "$work"
  if [ ! -x "$bundle/test_cuda_backend" ]; then
    echo "error: $bundle/test_cuda_backend is missing: run 'tools/gpu-check.sh pack' on a Debian machine with nvcc" \
         "and carry build-gpu-bundle" >&2
    exit 1
  fi
  # cuDNN, cuBLAS (and NCCL) from the Python packages PyTorch uses.
  local python_libraries
  python_libraries=$("$python" - <<'EOF' 2>/dev/null
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
    "$python" -c 'import torch; print("torch", torch.__version__, "cuDNN", torch.backends.cudnn.version(), torch.cuda.get_device_name())' 2>&1
    ldd "$bundle/test_cuda_backend" "$bundle/test_nccl_communicator" "$bundle/tessera-cuda-bench"
  } > "$work/info.txt" 2>&1
  grep -v "=>\|ld-linux\|linux-vdso\|^/" "$work/info.txt"
  # The ceiling to measure against: a large bf16 matrix product through
  # PyTorch's cuBLAS on this GPU (random data, median of 10).
  if [ "$backend" = cuda ]; then
    limited 30 "$python" - > "$work/matmul_tflops.txt" 2>&1 <<'EOF'
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
    echo "bf16 matmul TFLOP/s: $(tail -1 "$work/matmul_tflops.txt")"
  fi
  if ldd "$bundle/test_cuda_backend" "$bundle/test_nccl_communicator" "$bundle/tessera-cuda-bench" | grep -q "not found"; then
    echo "a library is missing (details/info.txt)"
    return 1
  fi
}

# Each suite of a test binary in its own process: a crash or a sticky CUDA
# error in one suite fails that suite alone. On the GPU machine a skip means
# the GPU was not found, and counts as a failure.
run_suites() {  # binary seconds-per-suite
  local binary=$1 seconds=$2 status=0 name suites suite
  name=$(basename "$binary")
  # Suite lines end in a dot ("Cuda/CudaAgainstCpu."); tests are indented.
  suites=$("$binary" --gtest_list_tests 2>"$work/$name.list.err" | grep -v '^ ' | sed 's/ .*//' | grep '\.$')
  if [ -z "$suites" ]; then
    echo "$name: no test suites listed (details/$name.list.err)"
    return 1
  fi
  for suite in $suites; do
    local tag=${suite%.}
    tag=${tag//\//_}
    limited "$seconds" "$binary" --gtest_filter="${suite}*" --gtest_output="xml:$work/$name.$tag.xml" \
      > "$work/$name.$tag.log" 2>&1
    local code=$? verdict=ok
    if [ "$code" -ne 0 ]; then
      verdict="FAILED (exit $code)"
      [ "$code" -eq 124 ] && verdict="FAILED (timed out or skipped: budget)"
      status=1
    elif [ "$backend" = cuda ] && grep -q "SKIPPED \]" "$work/$name.$tag.log"; then
      verdict="FAILED (skipped on a GPU machine)"
      status=1
    fi
    printf '%-64s %s\n' "$name $suite" "$verdict"
    [ "$verdict" = ok ] || grep -E "Failure|FAILED|rror" "$work/$name.$tag.log" | head -5 | sed 's/^/    /'
  done
  return "$status"
}

phase_test() {
  say "tests: the CUDA backend against the CPU (ops, loss and gradient, tiles on one GPU) and NCCL"
  local status=0
  run_suites "$bundle/test_cuda_backend" 40 || status=1
  run_suites "$bundle/test_nccl_communicator" 20 || status=1
  return "$status"
}

# PyTorch's f32 with TF32 off (its default lets cuDNN use TF32 for the
# convolutions): the reference tessera's f32 is held to. A file, so that
# `timeout` can run it.
write_torch_runner() {
  cat > "$work/torch_tf32_off.py" <<'EOF'
import runpy, sys
import torch
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
EOF
}

# One benchmark's JSON line, tagged with its side, into bench.jsonl; a
# failure is a line naming what failed.
record() {  # seconds side description-json-fields command...
  local seconds=$1 side=$2 description=$3 line
  shift 3
  line=$(limited "$seconds" "$@" 2>>"$work/bench.err" | grep '^{' | tail -1)
  if [ -n "$line" ]; then
    SIDE="$side" "$python" -c 'import json, os, sys
r = json.loads(sys.stdin.read()); r["side"] = os.environ["SIDE"]; print(json.dumps(r))' <<< "$line" >> "$out/bench.jsonl"
  else
    echo "{\"side\": \"$side\", $description, \"error\": \"failed, timed out or out of memory (details/bench.err)\"}" \
      >> "$out/bench.jsonl"
  fi
  tail -1 "$out/bench.jsonl"
}

phase_bench() {
  say "benchmarks: VGG-19, tessera (f32, bf16) against PyTorch eager (float32 with TF32 off, bfloat16 channels-last)"
  write_torch_runner
  local size
  for size in ${GPU_CHECK_SIZES:-512 2048 7680x4320}; do
    [[ $size == *x* ]] || size="${size}x${size}"
    local pixels=$(( ${size%x*} * ${size#*x} ))
    local iterations=10 optimizer=lbfgs seconds=40
    if [ "$pixels" -ge $((3840 * 2160)) ]; then
      # From 4K: Adam (at 8K L-BFGS's 100 pairs alone would be 80 GB), two
      # timed iterations after the warm-up.
      iterations=2 optimizer=adam seconds=75
    elif [ "$pixels" -ge $((2048 * 2048)) ]; then
      iterations=5 seconds=50
    fi
    echo "size $size: $optimizer, $iterations timed iterations"
    local fields="\"size\": \"$size\", \"optimizer\": \"$optimizer\""
    record "$seconds" tessera "$fields, \"precision\": \"f32\"" $bench_tool --backend "$backend" --model vgg19 \
      --size "$size" --precision f32 --optimizer "$optimizer" --iterations "$iterations"
    record "$seconds" tessera "$fields, \"precision\": \"bf16\"" $bench_tool --backend "$backend" --model vgg19 \
      --size "$size" --precision bf16 --optimizer "$optimizer" --iterations "$iterations"
    if [ -f "$bundle/torch_gatys.py" ]; then
      record "$seconds" torch "$fields, \"dtype\": \"float32\"" "$python" "$work/torch_tf32_off.py" \
        "$bundle/torch_gatys.py" \
        --device "$torch_device" --model vgg19 --size "$size" --dtype float32 --optimizer "$optimizer" \
        --iters "$iterations" --json
      record "$seconds" torch "$fields, \"dtype\": \"bfloat16\"" "$python" "$work/torch_tf32_off.py" \
        "$bundle/torch_gatys.py" \
        --device "$torch_device" --model vgg19 --size "$size" --dtype bfloat16 --channels-last \
        --optimizer "$optimizer" --iters "$iterations" --json
    else
      echo "torch_gatys.py is not in the bundle: no PyTorch comparison"
    fi
  done
  phase_table
  # A measurement that failed fails the phase (the table shows the rest).
  ! grep -q '"error"' "$out/bench.jsonl"
}

phase_sanitize() {
  say "compute-sanitizer memcheck: small renders (VGG-19 64 px L-BFGS, NIN 96 px Adam on 2x2 tiles) and the op tests"
  if [ -z "$sanitizer" ]; then
    echo "compute-sanitizer not found: memcheck not run"
    return 1
  fi
  local status=0 precision
  for precision in f32 bf16; do
    limited 30 "$sanitizer" --tool memcheck --error-exitcode 99 --leak-check full \
      $bench_tool --backend "$backend" --model vgg19 --size 64 --iterations 2 --precision "$precision" \
      > "$work/memcheck-vgg19-$precision.log" 2>&1 || { status=1; echo "memcheck: VGG-19 $precision FAILED"; }
  done
  limited 30 "$sanitizer" --tool memcheck --error-exitcode 99 --leak-check full \
    $bench_tool --backend "$backend" --model nin --size 96 --iterations 2 --optimizer adam --tiles 2x2 \
    > "$work/memcheck-nin.log" 2>&1 || { status=1; echo "memcheck: NIN FAILED"; }
  limited 60 "$sanitizer" --tool memcheck --error-exitcode 99 \
    "$bundle/test_cuda_backend" --gtest_filter='Cuda/CudaAgainstCpu.*/f32' \
    > "$work/memcheck-ops.log" 2>&1 || { status=1; echo "memcheck: op tests FAILED"; }
  grep -h "ERROR SUMMARY\|LEAK SUMMARY" "$work"/memcheck-*.log 2>/dev/null | sort | uniq -c
  echo "memcheck status $status (0: clean)"
  return "$status"
}

phase_study() {
  say "the 2016 study's table on this GPU: iterations per minute by model and size (f32, L-BFGS)"
  local model size
  for model in vgg19 nin; do
    for size in 64 128 256 512 1024; do
      limited 60 $bench_tool --backend "$backend" --model "$model" --size "$size" --iterations 10 \
        2>>"$work/bench.err" | grep '^{' >> "$work/study.jsonl"
    done
  done
  [ -f "$work/study.jsonl" ] || return 1
  "$python" - "$work/study.jsonl" <<'EOF'
import json, sys
print(f"{'model':<6} {'size':>10} {'it/min':>9} {'s/it':>8} {'GFLOP/s':>9} {'GPU MiB':>9}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['model']:<6} {r['size']:>10} {r['iterations_per_minute']:>9.1f} {r['seconds_per_iteration']:>8.4f} "
          f"{r['gflops']:>9.1f} {r.get('peak_device_bytes', 0) / 2**20:>9.0f}")
EOF
}

phase_table() {
  [ -f "$out/bench.jsonl" ] || return 0
  "$python" - "$out/bench.jsonl" <<'EOF' | tee "$out/bench-table.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
import os
peak = 798.0  # bf16 matmul measured on this workplace's H100s, unless measured now
try:
    peak = float(open(os.path.join(os.path.dirname(sys.argv[1]), "details", "matmul_tflops.txt")).read().split()[-1])
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
print("# VGG-19 (L-BFGS; Adam at 8K); tessera: tessera-cuda-bench / tessera bench (it/min after one warm-up);")
print(f"# torch: torch_gatys.py, f32 with TF32 off; GFLOP/s as README defines it; % of {peak:.0f} TFLOP/s (bf16 8192^3 matmul on this GPU);")
print("# 500 it: minutes for 500 iterations at tessera's best measured s/iteration")
print(f"{'size':>10} {'tessera f32':>12} {'tessera bf16':>13} {'torch f32':>10} {'torch bf16cl':>13} {'f32 x':>6} {'best x':>7} {'bf16 TFLOP/s':>13} {'% of peak':>9} {'tessera GiB':>12} {'torch GiB':>10} {'500 it':>7}")
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
    minutes = f"{500 / rate(best_t):.1f}" if best_t else "-"
    print(f"{size:>10} {f(t32):>12} {f(t16):>13} {f(p32):>10} {f(p16):>13} {ratio(t32, p32):>6} {ratio(best_t, best_p):>7} {tflops:>13} {share:>9} {gib(best_t):>12} {gib(best_p):>10} {minutes:>7}")
errors = [r for r in rows if "error" in r]
for r in errors: print("failed:", json.dumps(r))
EOF
}

if [ "${1:-}" = "pack" ]; then
  pack
  exit $?
fi

phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(info test bench sanitize)
for phase in "${phases[@]}"; do
  case "$phase" in
    info|test|bench|sanitize|study|table) ;;
    *) echo "unknown phase '$phase' (info, test, bench, sanitize, study, table)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
rm -rf "$work" "$out/details.tar.gz"
[ "${phases[*]}" = table ] || rm -f "$out/bench.jsonl"
# Everything printed goes to the log too. Each phase's status is its
# function's own return value, never a pipeline's.
exec > >(tee "$out/gpu-check.log") 2>&1
setup_environment
summary=()
overall=0
for phase in "${phases[@]}"; do
  "phase_$phase"
  status=$?
  summary+=("$phase: $([ $status -eq 0 ] && echo ok || echo "FAILED ($status)")")
  [ $status -ne 0 ] && overall=1
done
summary+=("$SECONDS s of a budget of $budget_s s")
say "summary (results in $out)"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
tar -czf "$out/details.tar.gz" -C "$out" details && rm -rf "$work"
exit $overall
