// The simulation's command line:
//   sim --seed=N [--verbose]   one seed; --verbose logs every action/event
//   sim --seeds=A-B            seeds A..B inclusive; prints failing seeds
//                              and a summary (the long-run mode)
// Exits 1 if any seed failed.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

#include "tests/sim/sim.h"

namespace {

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + static_cast<uint64_t>(ch - '0');
  }
  *out = v;
  return true;
}

int Usage() {
  std::cerr << "usage: sim --seed=N [--verbose] | sim --seeds=A-B\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t first = 1, last = 1;
  bool verbose = false;
  bool range = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--verbose") {
      verbose = true;
    } else if (a.substr(0, 7) == "--seed=") {
      if (!ParseU64(a.substr(7), &first)) return Usage();
      last = first;
    } else if (a.substr(0, 8) == "--seeds=") {
      std::string_view r = a.substr(8);
      const size_t dash = r.find('-');
      if (dash == std::string_view::npos ||
          !ParseU64(r.substr(0, dash), &first) ||
          !ParseU64(r.substr(dash + 1), &last) || last < first) {
        return Usage();
      }
      range = true;
    } else {
      return Usage();
    }
  }
  const auto start = std::chrono::steady_clock::now();
  nbd::sim::SimResult total;
  uint64_t failures = 0;
  uint64_t done = 0;
  // The summary line, also printed every 1000 seeds of a range so that a
  // long run stopped early still says how far it got.
  auto summary = [&] {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    std::printf(
        "%llu seed(s) in %.1f s, %llu failed: %llu connections, %llu "
        "actions, %llu commands (%llu ok, %llu failed), %llu backend faults, "
        "%llu cuts, clients closed %llu / dead %llu\n",
        static_cast<unsigned long long>(done), secs,
        static_cast<unsigned long long>(failures),
        static_cast<unsigned long long>(total.connections),
        static_cast<unsigned long long>(total.actions),
        static_cast<unsigned long long>(total.commands),
        static_cast<unsigned long long>(total.completed_ok),
        static_cast<unsigned long long>(total.completed_error),
        static_cast<unsigned long long>(total.backend_faults),
        static_cast<unsigned long long>(total.cuts),
        static_cast<unsigned long long>(total.closed),
        static_cast<unsigned long long>(total.dead));
    std::fflush(stdout);
  };
  for (uint64_t seed = first; seed <= last; ++seed) {
    nbd::sim::SimOptions o;
    o.seed = seed;
    o.verbose = verbose;
    const nbd::sim::SimResult r = nbd::sim::Simulate(o);
    ++done;
    total.connections += r.connections;
    total.actions += r.actions;
    total.commands += r.commands;
    total.completed_ok += r.completed_ok;
    total.completed_error += r.completed_error;
    total.backend_faults += r.backend_faults;
    total.cuts += r.cuts;
    total.closed += r.closed;
    total.dead += r.dead;
    if (!r.ok) {
      ++failures;
      std::cout << "seed " << seed << " FAILED: " << r.failure << "\n"
                << "  reproduce: " << nbd::sim::ReproCommand(seed) << std::endl;
    } else if (!range) {
      std::cout << "seed " << seed << " ok\n";
    }
    if (range && done % 1000 == 0 && seed != last) {
      std::cout << "... through seed " << seed << ": ";
      std::cout.flush();
      summary();
    }
  }
  summary();
  return failures == 0 ? 0 : 1;
}
