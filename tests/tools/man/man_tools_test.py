#!/usr/bin/env python3
"""Unit tests of tools/man/md2man.py and tools/man/cxx_api.py."""
import os
import subprocess
import sys
import tempfile
import unittest

RUNFILES = os.path.join(os.environ.get("TEST_SRCDIR", "."),
                        os.environ.get("TEST_WORKSPACE", "nbd_engine"))
sys.path.insert(0, os.path.join(RUNFILES, "tools/man"))

import cxx_api  # noqa: E402
import md2man  # noqa: E402

GOOD = """\
---
name: nbd::Client::Disconnect
summary: ask the server to end the connection
header: protocol/client/client.h
target: //protocol/client
---
# SYNOPSIS
```cpp
absl::Status nbd::Client::Disconnect(uint32_t flags = 0);
```
# DESCRIPTION
Text with `code`, **bold** and *italic*, a reference nbd_shutdown(3),
2 * 3 and a \\backslash.

.A line starting with a dot and 'one with a quote.

- **Term** (`Code`): a tagged item
  over two lines.
- a plain item
# PHASES
1. first
2. second
# RETURN VALUE
OK.
# ERRORS
- **EINVAL** (`FailedPrecondition`): wrong phase.
# NOTES
A note.
# SEE ALSO
nbd::Client::Shutdown(3), nbd_aio_disconnect(3)
# EXAMPLE
```cpp
.starts with a dot
'starts with a quote
a \\n b - c ~d ^e `f`
```
"""


def render(text, path="nbd_Client_Disconnect.3.md"):
    return md2man.render(md2man.parse(text, path))


class ConverterTest(unittest.TestCase):

    def error(self, text, path="nbd_Client_Disconnect.3.md"):
        with self.assertRaises(md2man.SourceError) as e:
            render(text, path)
        return str(e.exception)

    def test_renders_sections_in_order(self):
        troff = render(GOOD)
        sections = [l for l in troff.splitlines() if l.startswith(".SH")]
        self.assertEqual(sections, [
            ".SH NAME", '.SH "SYNOPSIS"', '.SH "DESCRIPTION"',
            '.SH "PHASES"', '.SH "RETURN VALUE"', '.SH "ERRORS"',
            '.SH "NOTES"', '.SH "SEE ALSO"', '.SH "EXAMPLE"'])
        self.assertIn('.TH "nbd::Client::Disconnect" 3 "" "nbd-engine"',
                      troff)
        self.assertIn("nbd::Client::Disconnect \\- ask the server", troff)

    def test_output_is_reproducible_and_dateless(self):
        self.assertEqual(render(GOOD), render(GOOD))
        self.assertNotRegex(render(GOOD), r"\d{4}-\d\d-\d\d")

    def test_escapes(self):
        troff = render(GOOD)
        self.assertIn("a \\ebackslash", troff)
        self.assertIn("\\&.A line starting with a dot", troff)
        self.assertIn("\\&.starts with a dot", troff)
        self.assertIn("\n\\(aqstarts with a quote", troff)
        self.assertIn("a \\en b \\- c \\(tid \\(hae \\(gaf\\(ga", troff)
        self.assertIn("\\fBnbd_shutdown\\fR(3)", troff)
        self.assertIn("2 * 3", troff)
        self.assertIn("\\[u2192]", render(GOOD.replace("OK.", "OK \u2192.")))

    def test_inline_and_lists(self):
        troff = render(GOOD)
        self.assertIn("\\fBcode\\fR, \\fBbold\\fR and \\fIitalic\\fR", troff)
        self.assertIn(".TP 7\n\\fBTerm\\fR (\\fBCode\\fR)\na tagged item "
                      "over two lines.", troff)
        self.assertIn(".IP \\(bu 2\na plain item", troff)
        self.assertIn(".IP 1. 4\nfirst", troff)
        self.assertIn(".BR nbd::Client::Shutdown (3),\n"
                      ".BR nbd_aio_disconnect (3)\n", troff)

    def test_code_spans_with_backquotes_and_placeholders(self):
        troff = render(GOOD.replace(
            "A note.", "A ``a`b`` span, `` `x` `` and dead: <reason>."))
        self.assertIn("A \\fBa\\(gab\\fR span, \\fB\\(gax\\(ga\\fR and "
                      "dead: <reason>.", troff)

    def test_terms_several_errnos_and_long_terms(self):
        troff = render(GOOD.replace(
            "- **EINVAL** (`FailedPrecondition`): wrong phase.",
            "- **EIO**, **ENOSPC**: the server's error.\n"
            "- **E1**, **E2**, **E3**, **E4**, **E5**, **E6**, **E7**, **E8**,"
            " **E9**, **E10**, **E11**, **E12**, **E13**, **E14**, **E15**,"
            " **E16**, **E17**, **E18**: too long for a tag.\n"
            "- **EINVAL**, **ENOSPC**, **ENOTSUP**, **EOVERFLOW**, "
            "**EPERM**: one line."))
        self.assertIn(".TP 7\n\\fBEIO\\fR, \\fBENOSPC\\fR\nthe server's",
                      troff)
        self.assertIn(".IP \\(bu 2\n\\fBE1\\fR", troff)
        self.assertIn(".TP 7\n\\fBEINVAL\\fR, \\fBENOSPC\\fR, "
                      "\\fBENOTSUP\\fR, \\fBEOVERFLOW\\fR, \\fBEPERM\\fR\n"
                      "one line.", troff)

    def test_missing_front_matter_field(self):
        msg = self.error(GOOD.replace("header: protocol/client/client.h\n",
                                      ""))
        self.assertIn("front matter lacks the 'header' field", msg)
        self.assertIn("missing front matter",
                      self.error(GOOD[GOOD.index("# SYNOPSIS"):]))
        self.assertIn("unknown front matter field 'author'",
                      self.error(GOOD.replace("---\n#", "author: x\n---\n#",
                                              1)))

    def test_name_must_match_file(self):
        self.assertIn("belongs in nbd_Client_Disconnect.3.md",
                      self.error(GOOD, "nbd_Client_Shutdown.3.md"))

    def test_missing_and_misordered_sections(self):
        no_phases = GOOD.replace("# PHASES\n1. first\n2. second\n", "")
        self.assertIn("missing required section 'PHASES'",
                      self.error(no_phases))
        swapped = GOOD.replace("# RETURN VALUE\nOK.\n", "").replace(
            "# SYNOPSIS", "# RETURN VALUE\nOK.\n# SYNOPSIS")
        self.assertIn("sections out of order", self.error(swapped))
        plural = GOOD.replace("RETURN VALUE", "RETURN VALUES")
        self.assertIn("unknown section 'RETURN VALUES'", self.error(plural))
        late_note = GOOD.replace("# NOTES\nA note.\n", "") + "# NOTES\nx\n"
        self.assertIn("between ERRORS and SEE ALSO", self.error(late_note))
        self.assertIn("section 'PHASES' is empty",
                      self.error(GOOD.replace("1. first\n2. second\n", "")))

    def test_unknown_markup(self):
        cases = {
            "## Sub": "subheadings",
            "| a | b |": "tables",
            "> quoted": "block quotes",
            "see [this](http://x)": "links",
            "a <b>tag</b>": "HTML is not supported",
            "<!-- comment -->": "HTML is not supported",
            "- item\n  - nested": "nested lists",
            "* star item": "bullet lists use '- '",
            "an `unclosed span": "unclosed `code` span",
            "**never closed": "unclosed **bold**",
            "    indented code": "indented code blocks",
        }
        for markup, expected in cases.items():
            text = GOOD.replace("A note.", "A note.\n\n" + markup)
            self.assertIn(expected, self.error(text), markup)
        self.assertIn("unknown code block language 'rust'",
                      self.error(GOOD.replace("```cpp\n.starts",
                                              "```rust\n.starts")))
        self.assertIn("not closed", self.error(GOOD[:GOOD.rindex("```")]))

    def test_see_also_syntax(self):
        self.assertIn("is not a reference", self.error(
            GOOD.replace("nbd_aio_disconnect(3)", "**nbd_shutdown**(3)")))

    def test_error_names_file_and_line(self):
        text = GOOD.replace("A note.", "A note.\n\n| x |")
        line = text.split("\n").index("| x |") + 1
        self.assertTrue(self.error(text).startswith(
            "nbd_Client_Disconnect.3.md:%d: " % line))

    def test_long_names_shorten_the_header_only(self):
        self.assertEqual(md2man.header_title("nbd::Client::Disconnect"),
                         ("nbd::Client::Disconnect", "nbd-engine"))
        title, manual = md2man.header_title(
            "nbd::engine::Export::OptListMetaContext")
        self.assertEqual((title, manual),
                         ("engine::Export::OptListMetaContext", ""))

    def test_command_line_and_groff(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "nbd_Client_Disconnect.3.md")
            with open(src, "w") as f:
                f.write(GOOD)
            tool = os.path.join(RUNFILES, "tools/man/md2man.py")
            run = subprocess.run([sys.executable, tool, "--out-dir", d, src],
                                 capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            page = os.path.join(d, "nbd_Client_Disconnect.3")
            groff = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                                    page], capture_output=True, text=True)
            self.assertEqual((groff.returncode, groff.stderr), (0, ""))
            with open(src, "w") as f:
                f.write(GOOD.replace("# PHASES", "# PHASE"))
            run = subprocess.run([sys.executable, tool, src, page],
                                 capture_output=True, text=True)
            self.assertEqual(run.returncode, 1)
            self.assertIn("md2man: %s:" % src, run.stderr)
            self.assertIn("unknown section 'PHASE'", run.stderr)


HEADER = r"""
// A comment with a fake(declaration);
#include "x.h"
#define MACRO(x) \
  void NotAFunction(x)
namespace nbd {
namespace internal { void Hidden(); }
namespace { void AlsoHidden(); }
const char* FreeName(int v);
inline constexpr int kValue = Compute(3);
using Callback = std::function<void(int)>;
/* block comment: void Commented(); */
struct Options {
  std::function<void(std::string_view line)> debug = nullptr;
  int fields{0};
  bool operator==(const Options&) const = default;
};
class Thing final : public Base {
 public:
  explicit Thing(Options options);
  ~Thing();
  Thing(const Thing&) = delete;
  Thing& operator=(const Thing&) = delete;
  explicit operator bool() const;
  static absl::StatusOr<std::unique_ptr<Thing>> Create(
      int fd, Options options = {},
      absl::Duration timeout = absl::Seconds(30));
  absl::Status Read(uint64_t offset, absl::Span<uint8_t> buffer,
                    ReadOptions options = {}, uint64_t tag = 0);
  const std::string& uri() const { return uri_; }
  absl::Status Shutdown(uint32_t flags, absl::Duration timeout);
  absl::Status Shutdown() { return Shutdown(0, absl::Seconds(1)); }
  template <typename F>
  void Visit(F&& f) const;
  [[nodiscard]] bool Attributed() const;
  void Deleted() = delete;
  struct Nested {
    void NestedMethod();
  };
  friend class Other;
  friend void FriendFunction(Thing&);
 protected:
  void Protected();
 private:
  class Impl;
  void Private();
  std::unique_ptr<Impl> impl_;
  io_uring ring_ = {};
};
class WithInit {
 public:
  WithInit() : a_(1), b_{2} {}
  int value() const { return a_; }
 private:
  int a_;
  int b_;
};
class Handle {
 public:
  Handle() = default;
  void Post() const;
};
class Sealed {
 public:
  Sealed() = delete;
  Sealed(const Sealed&) = default;
  static Sealed Make();
};
inline std::vector<int> Thing::Out() { return {}; }
enum class Kind { kA, kB };
}  // namespace nbd
namespace nbd::adapters {
absl::StatusOr<int> ConnectUri(std::string_view uri);
absl::StatusOr<int> ConnectUri(const NbdUri& uri);
}
"""


class HeaderParserTest(unittest.TestCase):

    def setUp(self):
        self.api = cxx_api.parse_header(HEADER)

    def test_finds_exactly_the_public_functions(self):
        self.assertEqual(sorted(self.api.functions), [
            "nbd::FreeName",
            "nbd::Handle::Post",
            "nbd::Sealed::Make",
            "nbd::Thing::Attributed",
            "nbd::Thing::Create",
            "nbd::Thing::Nested::NestedMethod",
            "nbd::Thing::Read",
            "nbd::Thing::Shutdown",
            "nbd::Thing::Visit",
            "nbd::Thing::uri",
            "nbd::WithInit::value",
            "nbd::adapters::ConnectUri",
        ])

    def test_methods_overloads_and_statics(self):
        self.assertEqual(self.api.methods_of("nbd::Thing"), [
            "nbd::Thing::Attributed", "nbd::Thing::Create", "nbd::Thing::Read",
            "nbd::Thing::Shutdown", "nbd::Thing::Visit", "nbd::Thing::uri"])
        self.assertEqual(self.api.functions["nbd::Thing::Shutdown"].overloads,
                         2)
        self.assertEqual(
            self.api.functions["nbd::adapters::ConnectUri"].overloads, 2)
        self.assertTrue(self.api.functions["nbd::Thing::Create"].static)
        self.assertFalse(self.api.functions["nbd::Thing::Read"].static)

    def test_classes_and_constructors(self):
        self.assertIn("nbd::Thing", self.api.classes)
        self.assertIn("nbd::Options", self.api.classes)
        # A defaulted constructor counts, a deleted one does not (Sealed's
        # copy constructor is one, though: any public non-deleted one).
        self.assertEqual(self.api.constructible, {"nbd::Handle",
                                                  "nbd::Sealed",
                                                  "nbd::Thing",
                                                  "nbd::WithInit"})


class CheckPagesTest(unittest.TestCase):
    """check_pages.py on a tiny tree: one header, pages made from GOOD."""

    HEADER = """namespace nbd {
class Client {
 public:
  explicit Client(int options);
  absl::Status Disconnect(uint32_t flags = 0);
  absl::Status Shutdown(uint32_t flags = 0);
};
}  // namespace nbd
"""

    def run_check(self, pages, extra_args=(), width="max"):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "protocol/client"))
            with open(os.path.join(d, "protocol/client/client.h"), "w") as f:
                f.write(self.HEADER)
            files = []
            for name, text in pages.items():
                src = os.path.join(d, md2man.page_stem(name) + ".3.md")
                with open(src, "w") as f:
                    f.write(text)
                troff = src[:-len(".md")]
                with open(troff, "w") as f:
                    f.write(md2man.render(md2man.parse(text, src)))
                files += [src, troff]
            tool = os.path.join(RUNFILES, "tools/man/check_pages.py")
            run = subprocess.run(
                [sys.executable, tool, "--root=" + d,
                 "--header=protocol/client/client.h",
                 "--class=nbd::Client", "--%s-width=80" % width] +
                list(extra_args) + files,
                capture_output=True, text=True)
            return run.returncode, run.stdout + run.stderr

    def page(self, name, see_also="nbd_aio_disconnect(3)"):
        text = GOOD.replace("nbd::Client::Disconnect", name)
        return text.replace("nbd::Client::Shutdown(3), nbd_aio_disconnect(3)",
                            see_also)

    def test_complete_pages_pass(self):
        rc, out = self.run_check({
            "nbd::Client::Disconnect": self.page(
                "nbd::Client::Disconnect", "nbd::Client::Shutdown(3)"),
            "nbd::Client::Shutdown": self.page("nbd::Client::Shutdown"),
        })
        self.assertEqual(rc, 0, out)
        self.assertIn("2 page(s), 2 required name(s), 0 problem(s)", out)

    def test_missing_stale_and_bad_references_fail(self):
        rc, out = self.run_check({
            "nbd::Client::Disconnect": self.page(
                "nbd::Client::Disconnect", "nbd::Client::Gone(3)"),
            "nbd::Client::Removed": self.page("nbd::Client::Removed"),
        })
        self.assertEqual(rc, 1, out)
        self.assertIn("missing page: nbd::Client::Shutdown", out)
        self.assertIn("stale page: nbd::Client::Removed", out)
        self.assertIn("SEE ALSO nbd::Client::Gone(3) is neither", out)

    def test_only_limits_the_missing_check(self):
        rc, out = self.run_check(
            {"nbd::Client::Shutdown": self.page("nbd::Client::Shutdown")},
            ["--only=nbd::Client::S"])
        self.assertEqual(rc, 0, out)

    def test_wrong_header_and_errors_form_fail(self):
        text = self.page("nbd::Client::Shutdown").replace(
            "header: protocol/client/client.h", "header: protocol/wire.h")
        text = text.replace("- **EINVAL** (`FailedPrecondition`)",
                            "- EINVAL (`FailedPrecondition`)")
        assert "- EINVAL (`FailedPrecondition`)" in text
        rc, out = self.run_check({"nbd::Client::Shutdown": text},
                                 ["--only=nbd::Client::S"])
        self.assertEqual(rc, 1, out)
        self.assertIn("header: says protocol/wire.h", out)
        self.assertIn("ERRORS names no errno in bold", out)

    def test_overwide_code_fails_or_is_noted(self):
        text = self.page("nbd::Client::Shutdown").replace(
            "a \\n b", "a" * 75)
        rc, out = self.run_check({"nbd::Client::Shutdown": text},
                                 ["--only=nbd::Client::S"])
        self.assertEqual(rc, 1, out)
        self.assertIn("columns wide", out)
        rc, out = self.run_check({"nbd::Client::Shutdown": text},
                                 ["--only=nbd::Client::S"], width="warn")
        self.assertEqual(rc, 0, out)
        self.assertIn("note: ", out)


if __name__ == "__main__":
    unittest.main()
