#!/usr/bin/env python3
"""Compares every C++ target's deps with the headers its files #include,
and checks that nothing in our packages is public.

Usage: check_deps.py WORKSPACE_DIR

For each cc_library/cc_test/cc_binary (and nbd_cc_fuzz_test) in the
workspace's BUILD files, the quoted #includes of its srcs and hdrs are mapped
to the targets that own those headers (our own packages) or to the
//third_party wrapper (absl/, gtest/, gmock/, liburing.h, benchmark/). It
prints one line per missing dep (a header included without depending on its
target) and per superfluous dep (a dep none of whose headers is included) and
exits 1 if there is any. Header-less deps (e.g. a test's gtest_main, or
//tests/fuzz:replay_main added by the fuzz macro) are not judged, nor is a
dep whose line ends in "# keep" (one needed only at link time, e.g. the
library that defines what a header of another target declares).

It also reports any package default visibility and any target visibility of
//visibility:public under protocol/, adapters/, tools/, tests/ and docs/:
those layers export through //:protocol_and_above, //:adapters_and_above
or //tests:__subpackages__ (see the root BUILD).
"""
import os
import re
import sys

ROOTS = ("protocol", "adapters", "tools", "tests", "docs")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
ANGLE = re.compile(r'^\s*#\s*include\s+<([^>]+)>', re.M)
THIRD_PARTY = [
    ("absl/", "//third_party:absl"),
    ("gtest/", "//third_party:gtest"),
    ("gmock/", "//third_party:gtest"),
    ("liburing.h", "//third_party:liburing"),
    ("benchmark/", "//third_party:benchmark"),
]
# Deps that provide a main() or link flags rather than headers.
HEADERLESS = {"//third_party:gtest_main", "//tests/fuzz:replay_main",
              "//third_party:benchmark_main"}


class Target:
    def __init__(self, package, name, kind, srcs, hdrs, deps):
        self.label = "//%s:%s" % (package, name)
        self.package, self.kind = package, kind
        self.files = ["%s/%s" % (package, f) for f in list(srcs) + list(hdrs)
                      if isinstance(f, str) and not f.startswith(":")]
        self.deps = [self._absolute(d) for d in deps]

    def _absolute(self, dep):
        if dep.startswith(":"):
            return "//%s%s" % (self.package, dep)
        if ":" not in dep:
            return "%s:%s" % (dep, dep.rsplit("/", 1)[-1])
        return dep


# Targets and packages found public by load_targets().
public = []


def load_targets(workspace):
    targets = []
    for root in ROOTS:
        for dirpath, _, filenames in os.walk(os.path.join(workspace, root)):
            if "BUILD" not in filenames:
                continue
            package = os.path.relpath(dirpath, workspace)
            text = open(os.path.join(dirpath, "BUILD")).read()
            text = re.sub(r"^load\(.*?\)\s*$", "", text, flags=re.M | re.S)
            kept = {}  # rule name -> its deps marked "# keep"
            for rule_text in re.findall(r"^\w+\(\n.*?^\)", text,
                                        re.M | re.S):
                name = re.search(r'name = "([^"]+)"', rule_text)
                if name:
                    kept[name.group(1)] = set(
                        re.findall(r'"([^"]+)",?\s*# keep', rule_text))

            def rule(kind):
                def add(name, srcs=(), hdrs=(), deps=(), visibility=(), **_):
                    if "//visibility:public" in visibility:
                        public.append("//%s:%s" % (package, name))
                    if not isinstance(deps, (list, tuple)):
                        deps = []  # select(): judged by hand
                    t = Target(package, name, kind, srcs, hdrs, deps)
                    t.keep = {t._absolute(d) for d in kept.get(name, ())}
                    targets.append(t)
                return add

            env = {k: rule(k) for k in ("cc_library", "cc_test", "cc_binary",
                                       "nbd_cc_fuzz_test")}
            def package_rule(default_visibility=(), **_):
                if "//visibility:public" in default_visibility:
                    public.append("//%s (package default_visibility %s)" %
                                  (package, list(default_visibility)))

            env["package"] = package_rule
            for ignored in ("exports_files", "sh_test", "alias", "genrule",
                            "config_setting", "genquery", "filegroup",
                            "sh_binary", "package_group"):
                env[ignored] = lambda *a, **k: None
            env["glob"] = lambda *a, **k: []
            env["select"] = lambda d: d
            exec(compile(text, package + "/BUILD", "exec"), env)
    return targets


def needed_deps(workspace, targets):
    """{label: (needed deps, problems)} from the targets' #includes."""
    owner = {}
    for t in targets:
        for f in t.files:
            if f.endswith(".h"):
                owner.setdefault(f, t.label)
    result = {}
    for t in targets:
        problems = []
        needed = set()
        for f in t.files:
            path = os.path.join(workspace, f)
            if not os.path.exists(path):
                problems.append("%s: no such file %s" % (t.label, f))
                continue
            text = open(path).read()
            for inc in INCLUDE.findall(text) + ANGLE.findall(text):
                if inc in owner:
                    if owner[inc] != t.label:
                        needed.add(owner[inc])
                    continue
                for prefix, label in THIRD_PARTY:
                    if inc.startswith(prefix):
                        needed.add(label)
                if inc.split("/")[0] in ROOTS and inc not in t.files:
                    problems.append("%s: %s includes %s, which no target "
                                    "declares" % (t.label, f, inc))
        result[t.label] = (needed, problems)
    return result


def main():
    workspace = sys.argv[1]
    targets = load_targets(workspace)
    needs = needed_deps(workspace, targets)
    problems = []
    for t in targets:
        needed, own_problems = needs[t.label]
        problems += own_problems
        deps = set(t.deps)
        satisfied = set(deps)
        if "//third_party:gtest_main" in deps:
            satisfied.add("//third_party:gtest")
        for missing in sorted(needed - satisfied):
            problems.append("%s: missing dep %s" % (t.label, missing))
        for extra in sorted(deps - needed - HEADERLESS - t.keep):
            if extra == "//third_party:gtest" and "//third_party:gtest" in needed:
                continue
            problems.append("%s: superfluous dep %s" % (t.label, extra))
        if ("//third_party:gtest_main" in deps and
                "//third_party:gtest" in deps):
            problems.append("%s: both gtest and gtest_main" % t.label)
    for label in public:
        problems.append("%s: public; export through //:protocol_and_above, "
                        "//:adapters_and_above or //tests:__subpackages__"
                        % label)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
