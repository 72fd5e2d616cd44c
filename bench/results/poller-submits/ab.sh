#!/bin/bash
# Interleaved before/after pairs: poller mode, imageq only, same seed per pair.
PY=/work/wt-submits/.venv/bin/python
run() { # side seed pair
  local dir=/work/wt-submits; [ "$1" = before ] && dir=/work/wt-submits-base
  echo "$(date +%T) $1 pair $3 load $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd $dir && PYTHONPATH=$dir $PY -m bench.run --n 300 --reps 1 --designs imageq --polling-mode poller --floor-calls 0 --seed $2 --out /tmp/submits-bench/ab2/$1-$3 2>&1 | grep "CPU/job")
  echo "$(date +%T) end load $(cut -d' ' -f1-3 /proc/loadavg)"
}
for pair in ${PAIRS:-1 2 3}; do
  seed=$((710 + pair))
  if [ $((pair % 2)) = 1 ]; then run before $seed $pair; run after $seed $pair; else run after $seed $pair; run before $seed $pair; fi
done
