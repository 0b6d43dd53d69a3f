#include "protocol/testing/run_compare.h"

#include <algorithm>
#include <cstddef>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace nbd::testing {
namespace {

std::string FirstDifference(const std::vector<std::string>& a,
                            const std::vector<std::string>& b) {
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string x = i < a.size() ? a[i] : "<end>";
    const std::string y = i < b.size() ? b[i] : "<end>";
    if (x != y) return absl::StrCat("line ", i, ": \"", x, "\" vs \"", y, "\"");
  }
  return "";
}

std::string ByteDifference(const Bytes& a, const Bytes& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  const std::string x = i < a.size() ? absl::StrFormat("0x%02x", a[i]) : "end";
  const std::string y = i < b.size() ? absl::StrFormat("0x%02x", b[i]) : "end";
  return absl::StrFormat("at byte %d (%s vs %s; %d vs %d bytes)", i, x, y,
                         a.size(), b.size());
}

}  // namespace

bool ReportRuns(const std::vector<RunSummary>& runs) {
  bool clean = true;
  // Each distinct failure once, with the modes that hit it.
  std::map<std::string, std::vector<std::string>> failures;
  std::vector<std::string> order;
  for (const RunSummary& r : runs) {
    for (const std::string& f : r.failures) {
      if (failures[f].empty()) order.push_back(f);
      failures[f].push_back(r.mode);
    }
  }
  for (const std::string& f : order) {
    ADD_FAILURE() << f << "  [modes: " << absl::StrJoin(failures[f], ", ")
                  << "]";
    clean = false;
  }
  const RunSummary& first = runs.front();
  for (size_t i = 1; i < runs.size(); ++i) {
    const RunSummary& r = runs[i];
    if (r.log != first.log) {
      ADD_FAILURE() << "log of " << r.mode << " differs from " << first.mode
                    << " at " << FirstDifference(first.log, r.log) << "\n"
                    << first.mode << ":\n  " << absl::StrJoin(first.log, "\n  ")
                    << "\n"
                    << r.mode << ":\n  " << absl::StrJoin(r.log, "\n  ");
      clean = false;
    } else if (r.messages != first.messages) {
      ADD_FAILURE() << "messages of " << r.mode << " differ from " << first.mode
                    << " at " << FirstDifference(first.messages, r.messages);
      clean = false;
    }
    for (const auto& [name, bytes] : first.outputs) {
      auto it = r.outputs.find(name);
      if (it == r.outputs.end()) {
        ADD_FAILURE() << name << " is missing from " << r.mode;
        clean = false;
      } else if (it->second != bytes) {
        ADD_FAILURE() << name << " of " << r.mode << " differ from "
                      << first.mode << " " << ByteDifference(bytes, it->second);
        clean = false;
      }
    }
    for (const auto& [name, bytes] : r.outputs) {
      if (!first.outputs.contains(name)) {
        ADD_FAILURE() << name << " of " << r.mode << " is missing from "
                      << first.mode;
        clean = false;
      }
    }
  }
  return clean;
}

std::vector<std::string> LinesStartingWith(const std::vector<std::string>& log,
                                           std::string_view prefix) {
  std::vector<std::string> out;
  for (const std::string& line : log) {
    if (line.starts_with(prefix)) out.push_back(line);
  }
  return out;
}

}  // namespace nbd::testing
