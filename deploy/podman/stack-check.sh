#!/usr/bin/env bash
# `make stack-check`: deploy/compose.yaml run with podman and checked end to end (stack_check.py
# says what is checked). Needs the images of `make image` and podman-compose (the Makefile
# installs it into the project's venv); PYTHON is that venv's python.
set -euo pipefail
# shellcheck source=deploy/podman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_root
ensure_tools
PYTHON="${PYTHON:-python3}"
# podman-compose sits beside the venv's python.
PATH="$(dirname "$PYTHON"):$PATH"
export PATH
exec "$PYTHON" "$PODMAN_DIR/stack_check.py"
