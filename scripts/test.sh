#!/usr/bin/env bash
# Run every test: unit tests, and integration tests against a real Kafka
# broker that the test session starts on a free 127.0.0.1 port and stops at
# the end. Extra arguments go to pytest (e.g. scripts/test.sh tests/unit).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
