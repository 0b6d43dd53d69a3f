"""Build macros for nbd-engine."""

_REPLAY_MAIN = "//tests/fuzz:replay_main"
_FUZZING = "//tools:fuzzing"

# Bazel links with the C driver (CC=clang), which leaves out the C++ parts of
# the sanitizer runtimes that -fsanitize=undefined (vptr) needs.
_FUZZ_LINKOPTS = ["-fsanitize-link-c++-runtime"]

def nbd_cc_fuzz_test(name, srcs, deps = [], corpus = None, tags = [], **kwargs):
    """A libFuzzer target plus a test that replays its corpus.

    Defines two targets:

      <name>         cc_test: links `srcs` (which define
                     LLVMFuzzerTestOneInput) with //tests/fuzz:replay_main and
                     feeds it every file under the `corpus` directory. It runs
                     in a plain `bazel test //...` and fails if the corpus is
                     empty or any input crashes (or trips a sanitizer under
                     --config=asan/ubsan).
      <name>_fuzzer  cc_binary, tagged manual: under --config=fuzz it links
                     libFuzzer (-fsanitize=fuzzer); otherwise it links the
                     replay main too, so `bazel build //...` still works.

    Args:
      name: what is fuzzed, e.g. "wire": gives //tests/fuzz:wire (the replay
        test) and //tests/fuzz:wire_fuzzer (the libFuzzer binary).
      srcs: sources defining LLVMFuzzerTestOneInput (and optionally
        LLVMFuzzerInitialize), conventionally ["<name>_fuzzer.cc"].
      deps: libraries the fuzz target needs.
      corpus: directory, relative to this package, holding the seed inputs
        (conventionally "<name>_corpus"). Defaults to "<name>_corpus".
      tags: extra tags for both targets.
      **kwargs: passed to the cc_test (e.g. size, timeout).
    """
    if corpus == None:
        corpus = name + "_corpus"
    corpus = corpus.rstrip("/")
    package = native.package_name()
    corpus_path = (package + "/" + corpus) if package else corpus

    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps + [_REPLAY_MAIN],
        data = native.glob([corpus + "/**"]),
        # Tests run from the workspace root of the runfiles tree.
        args = [corpus_path],
        linkopts = select({
            _FUZZING: _FUZZ_LINKOPTS,
            "//conditions:default": [],
        }),
        tags = tags + ["fuzz_replay"],
        **kwargs
    )

    native.cc_binary(
        name = name + "_fuzzer",
        srcs = srcs,
        testonly = True,
        deps = deps + select({
            _FUZZING: [],
            "//conditions:default": [_REPLAY_MAIN],
        }),
        linkopts = select({
            _FUZZING: ["-fsanitize=fuzzer"] + _FUZZ_LINKOPTS,
            "//conditions:default": [],
        }),
        tags = tags + ["manual", "fuzzer"],
    )
