#!/usr/bin/env bash
# Every check the project has: ruff, mypy --strict, and the whole pytest suite
# (which starts its own Mosquitto brokers on free ports).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash deploy/dev/setup.sh dev
echo "== ruff"
.venv/bin/ruff check agent drivers detection tests bench
echo "== mypy --strict"
.venv/bin/mypy --strict agent drivers detection
echo "== pytest"
.venv/bin/pytest "$@"
