#!/usr/bin/env bash
# Create .venv with hevlayer and its test dependencies, and fetch the pinned
# Kafka broker's jars. Safe to run again: each step is skipped when done.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup.sh: hevlayer needs Python 3.11 or newer; set PYTHON to one" >&2
  exit 1
fi

# The broker needs a JDK 17+ and Maven; install them from Debian when absent.
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q && apt-get install -y -q openjdk-17-jre-headless maven
  else
    echo "setup.sh: install a JDK 17+ and Apache Maven for the Kafka broker" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.hevlayer-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi

scripts/kafka/broker.sh provision
