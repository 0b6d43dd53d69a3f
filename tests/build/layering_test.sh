#!/usr/bin/env bash
# Proves the layers' dependency rule (DEVELOPERS.md, "Dependencies and
# visibility") with `bazel query`:
#
#   //protocol/...  depends only on //protocol/... and //third_party:absl
#                   (abseil and the standard library; nothing under
#                   //adapters, //tools, //tests or //docs);
#   //adapters/...  depends on nothing under //tools, //tests or //docs;
#   //tools/...     depends on nothing under //tests or //docs;
#   //protocol/client and //protocol/server never depend on each other;
#   only //tests/... depend on //third_party:gtest, :gtest_main, :benchmark
#   and :benchmark_main (gtest is public for other workspaces' tests, so its
#   visibility no longer keeps it out of our libraries), except that the
#   test kits, testonly targets under //protocol/testing, may use
#   //third_party:gtest (they report failures through it), and testonly
#   targets under //docs (the compiled examples of docs/testing.md) may use
#   :gtest and :gtest_main. A library that is not testonly may use neither,
#   wherever it is.
#
# Checking every direct edge of the rule graph is enough: every allowed edge
# leads down the layers or into //third_party (whose wrappers depend on
# nothing), so if no edge breaks the rule, no path does.
#
# How: a test cannot run `bazel query` on its own runfiles, so this one
# (tagged "local": no sandbox) finds the source workspace
# (source_workspace.sh) and runs a second, --batch Bazel there with a
# throw-away --output_base, so it neither waits for nor disturbs the Bazel
# running the test. Every repository in WORKSPACE is local, so the query
# works offline. Tagged "external" too: its inputs are all the BUILD files,
# which Bazel does not know, so its result must never be cached.
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/build/source_workspace.sh"

scratch="$(mktemp -d /tmp/nbd-query.XXXXXX)"
cleanup() {
  chmod -R u+w "$scratch" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# Rules only (source files are not edges between layers); implicit deps
# (toolchains, test runners) are Bazel's, not ours. Not //...: this Bazel
# does not know that the bazel-* links in the workspace are another Bazel's
# output and would walk into them.
query='kind(rule, deps(//protocol/... + //adapters/... + //tools/... + //tests/... + //docs/...))'
if ! (cd "$workspace" && bazel --output_user_root="$scratch/root" \
  --output_base="$scratch/output_base" --batch \
  query --noimplicit_deps --output=graph --nograph:factored "$query") \
  >"$scratch/graph" 2>"$scratch/log"; then
  echo "FAIL: bazel query '$query' failed in $workspace:"
  cat "$scratch/log"
  exit 1
fi

# The testonly targets (test rules are testonly by default).
testonly_query='attr(testonly, 1, //protocol/... + //docs/...)'
if ! (cd "$workspace" && bazel --output_user_root="$scratch/root" \
  --output_base="$scratch/output_base" --batch \
  query --noimplicit_deps "$testonly_query") \
  >"$scratch/testonly" 2>"$scratch/log"; then
  echo "FAIL: bazel query '$testonly_query' failed in $workspace:"
  cat "$scratch/log"
  exit 1
fi

# Each edge line of the graph is: "//from:target" -> "//to:target"
violations="$(awk -v testonly_file="$scratch/testonly" '
  BEGIN { while ((getline line < testonly_file) > 0) testonly[line] = 1 }
  function layer(label) {
    if (label ~ /^\/\/protocol[\/:]/) return "protocol"
    if (label ~ /^\/\/adapters[\/:]/) return "adapters"
    if (label ~ /^\/\/tools[\/:]/) return "tools"
    if (label ~ /^\/\/tests[\/:]/) return "tests"
    if (label ~ /^\/\/docs[\/:]/) return "docs"
    return label
  }
  function core(label) {
    if (label ~ /^\/\/protocol\/client[\/:]/) return "client"
    if (label ~ /^\/\/protocol\/server[\/:]/) return "server"
    return ""
  }
  / -> / {
    from = $1; to = $3
    gsub(/"/, "", from); gsub(/"/, "", to)
    f = layer(from); t = layer(to)
    kit = from ~ /^\/\/protocol\/testing[\/:]/ && (from in testonly)
    doc_test = f == "docs" && (from in testonly)
    if (to ~ /^\/\/third_party:(gtest|gtest_main|benchmark|benchmark_main)$/) {
      if (f != "tests" && !(kit && to == "//third_party:gtest") &&
          !(doc_test && to ~ /:gtest(_main)?$/))
        print from " -> " to ": only //tests/... may use GoogleTest and Google Benchmark, besides testonly targets under //protocol/testing (:gtest) and //docs (:gtest, :gtest_main)"
    } else if (core(from) != "" && core(to) != "" && core(from) != core(to))
      print from " -> " to ": the client and server cores may not depend on each other"
    else if (f == "protocol" && t != "protocol" && to != "//third_party:absl")
      print from " -> " to ": //protocol/... may depend only on //protocol/... and //third_party:absl"
    else if (f == "adapters" && (t == "tools" || t == "tests" || t == "docs"))
      print from " -> " to ": //adapters/... may not depend on //" t "/..."
    else if (f == "tools" && (t == "tests" || t == "docs"))
      print from " -> " to ": //tools/... may not depend on //" t "/..."
  }' "$scratch/graph")"

edges="$(grep -c ' -> ' "$scratch/graph" || true)"
if [[ -n "$violations" ]]; then
  echo "FAIL: dependencies that point the wrong way (DEVELOPERS.md, \"Dependencies and visibility\"):"
  echo "$violations"
  exit 1
fi
if [[ "$edges" -lt 10 ]]; then
  echo "FAIL: the query returned only $edges edges; expected the whole graph"
  cat "$scratch/graph"
  exit 1
fi
echo "PASS: $edges dependency edges checked, none points the wrong way"
