#!/usr/bin/env bash
# Reproduces the Celery 5.7.0 crash that made imageq pin celery 5.6.3 (see the README):
# a worker holding unacknowledged countdown messages exits with
#   Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")
# when Redis goes down. Runs the same experiment with celery 5.7.0 (in a throwaway venv) and
# with the version in this project's .venv, on a Redis of its own. Needs redis-server on PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/c570"
"$work/c570/bin/pip" install --quiet 'celery[redis]==5.7.0' 'kombu==5.7.0'

cat > "$work/app.py" <<'PY'
import os
from celery import Celery
app = Celery("repro", broker=os.environ["BROKER"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1,
                broker_connection_retry_on_startup=True)

@app.task
def noop(i):
    return i
PY

run() {  # $1: a venv; prints whether its worker survived Redis going away
  local venv=$1 port dir pid
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  dir=$(mktemp -d -p "$work")
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" >/dev/null
  sleep 0.5
  export BROKER="redis://127.0.0.1:$port/0"
  (cd "$work" && "$venv/bin/celery" -A app worker --pool threads -c 4 --without-mingle \
    --without-gossip --loglevel=INFO >"$dir/worker.log" 2>&1) &
  pid=$!
  sleep 4
  (cd "$work" && "$venv/bin/python" -c 'from app import noop
for i in range(20): noop.apply_async((i,), countdown=60)')
  sleep 3
  kill "$(cat "$dir/redis.pid")"
  sleep 15
  local version
  version=$("$venv/bin/python" -c 'import celery; print(celery.__version__)')
  if kill -0 "$pid" 2>/dev/null; then
    echo "celery $version: worker survived Redis going down (reconnecting)"
    kill -9 "$pid"
  else
    echo "celery $version: worker EXITED:"
    grep -m1 "Unrecoverable" "$dir/worker.log" || true
  fi
}

run "$work/c570"
run "$here/.venv"
