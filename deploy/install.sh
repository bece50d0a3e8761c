#!/bin/sh
# Install p1evse from a source tree into the Python environment that `python` runs, as
# `pip install .` does. The Docker image installs with this script, and CI runs the same
# script (tests/test_install.py), so what the image gets is what CI tested.
#
#   sh deploy/install.sh [SOURCE_DIR]
set -eu
src="${1:-.}"
python -m pip install --disable-pip-version-check "$src"
python -c "import p1evse; print('installed p1evse', p1evse.__version__)"
