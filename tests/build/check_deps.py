#!/usr/bin/env python3
"""Compares every C++ target's deps with the headers its files #include,
and checks that exactly the public API is public.

Usage: check_deps.py WORKSPACE_DIR

For each cc_library/cc_test/cc_binary (and nbd_cc_fuzz_test) in the
workspace's BUILD files, the quoted #includes of its srcs and hdrs are mapped
to the targets that own those headers (our own packages) or to the
//third_party wrapper (absl/, gtest/, gmock/, liburing.h, benchmark/, gnutls/). It
prints one line per missing dep (a header included without depending on its
target) and per superfluous dep (a dep none of whose headers is included) and
exits 1 if there is any. Header-less deps (e.g. a test's gtest_main, or
//tests/fuzz:replay_main added by the fuzz macro) are not judged, nor is a
dep whose line ends in "# keep" (one needed only at link time, e.g. the
library that defines what a header of another target declares).

Visibility is checked against the allow-list tests/build/public_targets.txt
(PUBLIC_LIST), the engine's public API for other workspaces:
- a target of any rule in protocol/, adapters/, tools/, tests/, docs/ or
  third_party/ may be //visibility:public only if the list names it;
- every listed target must exist, be public and be named in README.md;
- the list may not name a target in an "internal" package or under //tests
  or //tools;
- no package may set a public default visibility.
Everything else exports through //:protocol_and_above, //:adapters_and_above
or //tests:__subpackages__, or names its users. Directories with their own
WORKSPACE (the stand-in repositories under third_party/) are other
repositories and are skipped.
"""
import os
import re
import sys

ROOTS = ("protocol", "adapters", "tools", "tests", "docs")
# Read for visibility only: its wrappers have no sources of their own.
VISIBILITY_ROOTS = ROOTS + ("third_party",)
PUBLIC_LIST = "tests/build/public_targets.txt"
# Packages whose targets may never be public, whatever the list says.
NEVER_PUBLIC = re.compile(r"^//(tests|tools)(/|:)|/internal(/|:)")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
ANGLE = re.compile(r'^\s*#\s*include\s+<([^>]+)>', re.M)
THIRD_PARTY = [
    ("absl/", "//third_party:absl"),
    ("gtest/", "//third_party:gtest"),
    ("gmock/", "//third_party:gtest"),
    ("liburing.h", "//third_party:liburing"),
    ("benchmark/", "//third_party:benchmark"),
    ("gnutls/", "//third_party:gnutls"),
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


# Labels of the targets found public by load_targets(), every target label
# it saw, and the packages with a public default visibility.
public = []
seen = set()
public_packages = []


def load_public_list(workspace):
    """The labels in PUBLIC_LIST (comments and blank lines skipped)."""
    labels = []
    with open(os.path.join(workspace, PUBLIC_LIST)) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                if ":" not in line:  # //a/b means //a/b:b
                    line += ":" + line.rsplit("/", 1)[-1]
                labels.append(line)
    return labels

def load_targets(workspace):
    targets = []
    for root in VISIBILITY_ROOTS:
        for dirpath, dirnames, filenames in os.walk(
                os.path.join(workspace, root)):
            # Another repository (a local_repository stand-in): not ours.
            dirnames[:] = [d for d in dirnames if not os.path.exists(
                os.path.join(dirpath, d, "WORKSPACE"))]
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

            def note(name, visibility):
                label = "//%s:%s" % (package, name)
                seen.add(label)
                if "//visibility:public" in visibility:
                    public.append(label)

            def rule(kind):
                def add(name, srcs=(), hdrs=(), deps=(), visibility=(), **_):
                    note(name, visibility)
                    if root not in ROOTS:
                        return  # visibility only
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
                    public_packages.append(package)

            def other_rule(name, visibility=(), **_):
                note(name, visibility)

            env["package"] = package_rule
            for other in ("sh_test", "sh_binary", "sh_library", "alias",
                          "config_setting", "genquery", "genrule",
                          "filegroup", "test_suite", "py_binary", "py_test",
                          "py_library", "cc_import"):
                env[other] = other_rule
            # Files, not targets of ours; package groups have no visibility.
            for ignored in ("exports_files", "package_group"):
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


def visibility_problems(allowed):
    """Public targets against the allow-list `allowed` (see the docstring)."""
    problems = []
    listed = set(allowed)
    for package in public_packages:
        problems.append("//%s: package default_visibility is public; make "
                        "each public API target public by itself (%s)"
                        % (package, PUBLIC_LIST))
    for label in sorted(set(public) - listed):
        problems.append("%s: public, but not in the public API (%s); export "
                        "through //:protocol_and_above, //:adapters_and_above "
                        "or //tests:__subpackages__, or name its users"
                        % (label, PUBLIC_LIST))
    for label in allowed:
        if NEVER_PUBLIC.search(label):
            problems.append("%s: listed in %s, but internal packages, //tests "
                            "and //tools are never public" % (label,
                                                              PUBLIC_LIST))
        elif label not in seen:
            problems.append("%s: listed in %s, but no such target"
                            % (label, PUBLIC_LIST))
        elif label not in public:
            problems.append("%s: listed in %s, but not "
                            "visibility = [\"//visibility:public\"]"
                            % (label, PUBLIC_LIST))
    return problems


def readme_problems(workspace, allowed):
    """Each listed target must be named in README.md (as //a/b:c, or //a/b
    for //a/b:b), so the README's list of public targets stays complete."""
    with open(os.path.join(workspace, "README.md")) as f:
        readme = f.read()
    problems = []
    for label in allowed:
        package, name = label.split(":")
        forms = [re.escape(label)]
        if name == package.rsplit("/", 1)[-1]:
            forms.append(re.escape(package))
        if not re.search(r"(%s)(?![\w/:])" % "|".join(forms), readme):
            problems.append("%s: listed in %s, but README.md does not "
                            "describe it" % (label, PUBLIC_LIST))
    return problems


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
    allowed = load_public_list(workspace)
    problems += visibility_problems(allowed)
    problems += readme_problems(workspace, allowed)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
