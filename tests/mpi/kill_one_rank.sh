#!/usr/bin/env bash
# A rank killed mid-render must end the whole job, non-zero, within seconds:
# never a hang. Usage: kill_one_rank.sh TESSERA FIXTURE_DIR MPIRUN [mpirun options...]
set -euo pipefail
tessera=$1 fixtures=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$tessera" models import "$fixtures/weights/vgg19_prefix_zip.pth" -o weights.h5 > /dev/null
oiiotool --pattern noise 96x80 3 -d uint8 -o content.png
oiiotool --pattern noise 80x96 3 -d uint8 -o style.png

"$@" -np 2 "$tessera" render --content content.png --style style.png --weights weights.h5 \
  --content-layers relu1_2 --style-layers relu1_1,relu1_2 --iterations 1000000 --log-json log.jsonl \
  -q -o out.png > mpirun.log 2>&1 &
launcher=$!

# Wait until it iterates, then kill one rank (a child of the launcher's tree).
for _ in $(seq 1 300); do
  [[ -s log.jsonl ]] && break
  sleep 0.1
done
[[ -s log.jsonl ]] || { echo "the render never started"; cat mpirun.log; exit 1; }
# Only this job's ranks: other tests may be rendering at the same time.
ranks=$(pgrep -P "$launcher" -x tessera || true)
victim=$(echo "$ranks" | tail -n 1)
[[ -n $victim ]] || { echo "no rank process found"; exit 1; }
start=$(date +%s)
kill -9 "$victim"

# The launcher must end by itself, non-zero, within 20 s.
for _ in $(seq 1 200); do
  kill -0 "$launcher" 2> /dev/null || break
  sleep 0.1
done
if kill -0 "$launcher" 2> /dev/null; then
  echo "the job still runs 20 s after a rank was killed"
  kill -9 "$launcher"
  exit 1
fi
status=0
wait "$launcher" || status=$?
elapsed=$(( $(date +%s) - start ))
echo "job ended ${elapsed} s after rank ${victim} was killed, exit status ${status}"
[[ $status -ne 0 ]] || { echo "the job exited 0"; exit 1; }
# A rank that has ended may linger a moment as a zombie until it is reaped.
running() { for pid in $ranks; do
  state=$(ps -o stat= -p "$pid" 2> /dev/null || true)
  if [[ -n $state && $state != Z* ]]; then echo "$pid"; fi
done; }
for _ in $(seq 1 50); do
  [[ -z $(running) ]] && break
  sleep 0.1
done
if [[ -n $(running) ]]; then
  echo "ranks left running"
  exit 1
fi
