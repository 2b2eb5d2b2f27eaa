#!/usr/bin/env bash
# The main job, end to end: a private Mosquitto on a free port, a simulated fortnight of a
# home with an incident replayed at full speed through `hub`, and the alerts as a
# subscriber at the centre receives them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash deploy/dev/setup.sh
exec .venv/bin/hub demo "$@"
