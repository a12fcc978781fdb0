#!/usr/bin/env bash
# The project's own job scripts on a real one-node Slurm:
#  1. slurm/render.sbatch with 2 tasks on the CPU, through `sbatch --wait`:
#     the job completes and writes the image (the reference);
#  2. slurm/poster.sbatch, the same render with checkpoints: midway Slurm
#     sends the batch shell the time-limit warning (what --signal=B:USR1@...
#     sends), the script has tessera checkpoint and requeues the job, and the
#     job's second start resumes from the checkpoint and ends on the same image
#     as the uninterrupted render (max abs difference 1e-4).
# Every daemon it starts is stopped by process id, also on failure.
# Usage: render_and_requeue.sh TESSERA FIXTURE_DIR SLURM_SCRIPT_DIR [srun|mpirun]
# (the scripts' LAUNCHER; srun by default).
# Exit status 77 (CTest's SKIP_RETURN_CODE): no Slurm here, or not root.
set -euo pipefail
tessera=$1 fixtures=$2 scripts=$3 launcher=${4:-srun}
here=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
source "$here/one_node_slurm.sh"

missing=$(slurm_missing_programs)
if [[ -n $missing ]]; then
  echo "SKIPPED: Slurm is not installed (missing: $missing); tools/bootstrap.sh installs it"
  exit 77
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIPPED: the one-node Slurm runs its daemons and jobs as root; run this test as root"
  exit 77
fi

work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  local status=$?
  if [[ -n ${SLURM_CONF:-} ]]; then
    # Jobs first, so that no step outlives the daemons.
    scancel --full --quiet --user=root 2> /dev/null || true
    for _ in $(seq 1 100); do
      [[ -z $(squeue -h 2> /dev/null) ]] && break
      sleep 0.1
    done
    if (( status != 0 && status != 77 )); then show_slurm_logs; fi
  fi
  stop_one_node_slurm
  if (( status == 0 || status == 77 )); then rm -rf "$work"; else echo "kept for inspection: $work"; fi
  exit $status
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAILED: $*"
  exit 1
}

started=$(date +%s.%N)
elapsed() { awk -v start="$started" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f s", now - start }'; }

start_one_node_slurm "$work/slurm" || fail "the one-node Slurm did not start"
echo "Slurm up ($(elapsed)): $(sinfo -h -o '%P %D %c %t')"

# Tiny inputs: the 2-convolution VGG-19 fixture, 96x80 noise images.
cd "$work"
"$tessera" models import "$fixtures/weights/vgg19_prefix_zip.pth" -o weights.h5 > /dev/null 2>&1
oiiotool --pattern noise 96x80 3 -d uint8 -o content.png
oiiotool --pattern noise 80x96 3 -d uint8 -o style.png
# mpirun's ranks go on rendering while the poster script waits for their
# checkpoint: give them room to still be midway when it stops them.
iterations=80
[[ $launcher == mpirun ]] && iterations=160
render_options=(--content-layers relu1_2 --style-layers relu1_1,relu1_2 --seed 3)
# One core per rank; the scripts' GPU request does not apply on this node.
job_shape=(--nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0)
export TESSERA=$tessera BACKEND=cpu LAUNCHER=$launcher WEIGHTS=$work/weights.h5 SIZE=96 ITERATIONS=$iterations
# mpirun as root, on the loopback interface only (../shared/TOOLCHAIN.md, section 3).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_tcp_if_include=lo \
       OMPI_MCA_oob_tcp_if_include=lo
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# Ranks that wait in a reduction yield the core rather than spin: CI's two
# cores may carry other tests too, and L-BFGS reduces 2 scalars per history pair.
export OMPI_MCA_mpi_yield_when_idle=1

# 1. The plain render script, 2 ranks, sbatch --wait.
status=0
# Every wait below is bounded, well inside CTest's timeout: a test killed from
# outside could not stop its daemons.
timeout 150 sbatch --wait --parsable "${job_shape[@]}" --time=00:02:00 --output="$work/render.log" \
  "$scripts/render.sbatch" content.png style.png reference.exr "${render_options[@]}" > render.jobid || status=$?
cat render.log
(( status == 0 )) || fail "sbatch --wait slurm/render.sbatch exited $status"
grep -q "2 rank(s)" render.log || fail "the render did not run on 2 ranks"
grep -q "via $launcher" render.log || fail "the script did not use $launcher"
[[ -s reference.exr ]] || fail "no image written"
info=$(oiiotool --info reference.exr)
[[ $info == *"96 x   80, 3 channel, float"* ]] || fail "unexpected image: $info"
echo "1. slurm/render.sbatch: job $(cat render.jobid) completed, 96x80 on 2 ranks through $launcher ($(elapsed))"

# 2. The requeueing poster script, interrupted midway.
checkpoint_every=10
# A time limit beyond the script's --signal=B:USR1@600, or Slurm itself would
# send the warning at once (and again after the requeue).
job=$(sbatch --parsable "${job_shape[@]}" --time=00:30:00 --output="$work/poster.log" \
  --export=ALL,CONFIG=,CHECKPOINT_EVERY=$checkpoint_every \
  "$scripts/poster.sbatch" content.png style.png poster.exr "${render_options[@]}" --log-json poster.jsonl)
job_field() { scontrol show job "$job" 2> /dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }

# Midway: at least 30 iterations done and a checkpoint written.
for _ in $(seq 1 600); do
  done_iterations=0
  [[ -f poster.jsonl ]] && done_iterations=$(wc -l < poster.jsonl)
  (( done_iterations >= 30 )) && compgen -G "poster.ckpt-*.h5" > /dev/null && break
  [[ $(job_field JobState) == @(COMPLETED|FAILED|CANCELLED) ]] && break
  sleep 0.1
done
(( done_iterations >= 30 && done_iterations < iterations )) ||
  fail "the poster job was not midway when it should be signalled ($done_iterations iterations)"
# What --signal=B:USR1@600 sends before the time limit.
scancel --batch --signal=USR1 "$job"
echo "2. signalled job $job at iteration $done_iterations ($(elapsed))"

# Slurm holds a requeued batch job for 120 s (its eligible time) before it
# starts again; once requeued, and once the node is idle, let it start now.
for _ in $(seq 1 600); do
  state=$(job_field JobState)
  restarts=$(job_field Restarts)
  (( ${restarts:-0} >= 1 )) && [[ $state == PENDING ]] && break
  [[ $state == @(COMPLETED|FAILED|CANCELLED|TIMEOUT) ]] && break
  sleep 0.1
done
[[ $state == PENDING && ${restarts:-0} -ge 1 ]] || { cat poster.log; fail "the job was not requeued (state $state)"; }
checkpoints=$(ls poster.ckpt-*.h5)
echo "   requeued; checkpoints kept: $(echo $checkpoints) ($(elapsed))"
# slurmd revokes the first run's job credential with a time stamp in seconds
# and refuses a launch whose credential is not newer ("Job credential
# revoked"): wait for the node to be idle, then for the clock to move on.
for _ in $(seq 1 100); do
  [[ $(sinfo -h -o %t) == idle ]] && break
  sleep 0.1
done
sleep 2
scontrol update jobid="$job" StartTime=now

for _ in $(seq 1 1200); do
  state=$(job_field JobState)
  [[ $state == @(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL) ]] && break
  sleep 0.1
done
cat poster.log
[[ $state == COMPLETED ]] || fail "the requeued job ended $state"
[[ $(job_field ExitCode) == 0:0 ]] || fail "the requeued job's exit code is $(job_field ExitCode)"
grep -q "start 2 " poster.log || fail "the log shows no second start"
# The second start resumed where the first stopped: tessera says so, and the
# JSON log (appended to on resume) holds every iteration exactly once, so
# nothing was redone or lost.
resumed_at=$(sed -n 's/.*resuming from poster\.ckpt-[^:]*: scale 1 of 1, \([0-9]*\) iterations done.*/\1/p' poster.log)
[[ -n $resumed_at ]] || fail "the second start did not resume from a checkpoint"
/usr/bin/python3 -c '
import json, sys
counts = [json.loads(line)["iteration"] for line in open("poster.jsonl") if line.strip()]
expected = list(range(1, int(sys.argv[1]) + 1))
if counts != expected:
    repeated = sorted({c for c in counts if counts.count(c) > 1})
    sys.exit(f"the log holds {len(counts)} iterations, not 1..{sys.argv[1]} once each (repeated: {repeated[:10]})")
' "$iterations" || fail "iterations were redone or lost"
(( resumed_at >= done_iterations )) || fail "resumed at iteration $resumed_at, before the $done_iterations done"
echo "   the second start resumed at iteration $resumed_at (signalled at $done_iterations) and ended at $iterations"

# The same image as the uninterrupted render: max abs difference <= 1e-4.
oiiotool --fail 1e-4 --failpercent 0 reference.exr poster.exr --diff ||
  fail "the resumed render differs from the uninterrupted one"
echo "PASSED: resumed render equals the uninterrupted one to 1e-4 ($(elapsed))"
