#!/usr/bin/env bash
# Runs check_deps.py on the source workspace: every C++ target depends on
# exactly the targets whose headers its files include, and exactly the
# targets listed in public_targets.txt are public (see check_deps.py).
# Like layering_test.sh it reads the BUILD files themselves, so it finds the
# workspace with source_workspace.sh and is tagged local + external.
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/build/source_workspace.sh"
if ! python3 "$workspace/tests/build/check_deps.py" "$workspace"; then
  echo "FAIL: fix the BUILD files above (a dep needed only at link time is" \
    "marked \"# keep\"; the public API is tests/build/public_targets.txt)"
  exit 1
fi
echo "PASS: every C++ target's deps match its #includes; exactly the" \
  "targets in tests/build/public_targets.txt are public"
