#!/usr/bin/env bash
# Serve a real data set: start a Kafka broker (data in .demo/broker), load
# ggplot2's diamonds table (53,940 rows, from the plotnine wheel on PyPI) into
# the namespace `diamonds` once, then run `hevlayer serve` on port 8080
# (HEVLAYER_PORT to change it). Ctrl-C stops the server and the broker.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh

demo=.demo
mkdir -p "$demo"
bootstrap=$(scripts/kafka/broker.sh start "$demo/broker")
trap 'scripts/kafka/broker.sh stop "$demo/broker"' EXIT

export HEVLAYER_BOOTSTRAP_SERVERS=$bootstrap
export HEVLAYER_DATA_DIR=${HEVLAYER_DATA_DIR:-$demo/data}
export HEVLAYER_PORT=${HEVLAYER_PORT:-8080}

if [ ! -f "$demo/broker/diamonds.loaded" ]; then
  .venv/bin/python scripts/fetch_dataset.py --dataset diamonds "$demo/diamonds.csv"
  .venv/bin/hevlayer load diamonds "$demo/diamonds.csv"
  touch "$demo/broker/diamonds.loaded"
fi

echo "hevlayer: serving http://127.0.0.1:$HEVLAYER_PORT (Kafka at $bootstrap); Ctrl-C stops" >&2
.venv/bin/hevlayer serve
