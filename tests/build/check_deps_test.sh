#!/usr/bin/env bash
# Runs check_deps_test.py: check_deps.py passes on the source workspace and
# fails, naming the target, for each way of breaking the public API (an
# internal target made public, a listed target not public, ...), each tried
# on a copy of the workspace in a temporary directory.
# Like build_files_test.sh it finds the workspace with source_workspace.sh
# and is tagged local + external.
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/build/source_workspace.sh"
python3 "$workspace/tests/build/check_deps_test.py" "$workspace"
