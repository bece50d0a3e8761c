#!/bin/sh
# Install p1evse from its source tree into the Python environment that `python` runs:
# first the pinned, hash-checked runtime requirements (deploy/requirements.txt), then
# p1evse itself from the tree, without dependencies, so that the package index is never
# asked for p1evse. The Docker image installs with this script, and the tests run the same
# script into a fresh venv (tests/test_deployment.py), so what the image gets was tested.
#
#   sh deploy/install.sh [SOURCE_DIR]    default: the source tree this script belongs to
set -eu
here=$(dirname -- "$0")/..
if ! tree=$(CDPATH='' cd -- "${1:-$here}" 2>/dev/null && pwd -P); then
    echo "install.sh: no such directory: ${1:-$here}" >&2
    exit 2
fi
if [ ! -f "$tree/src/p1evse/__init__.py" ] || [ ! -f "$tree/deploy/requirements.txt" ] \
    || ! grep -qx 'name = "p1evse"' "$tree/pyproject.toml" 2>/dev/null; then
    echo "install.sh: $tree is not a p1evse source tree (pyproject.toml, src/p1evse/, deploy/requirements.txt)" >&2
    exit 2
fi
python -m pip install --disable-pip-version-check --require-hashes -r "$tree/deploy/requirements.txt"
python -m pip install --disable-pip-version-check --no-deps "$tree"
python -c "import sys, p1evse; print('installed p1evse', p1evse.__version__, 'into', sys.prefix)"
