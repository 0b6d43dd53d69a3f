#include "tools/nbd/progress.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace nbd::tool {

constexpr int kBarWidth = 30;

Progress::Progress(bool enabled, uint64_t total, std::FILE* out)
    : enabled_(enabled),
      total_(total),
      out_(out),
      start_(absl::Now()),
      last_draw_(absl::InfinitePast()) {}

Progress::~Progress() {
  if (drawn_ && !finished_) std::fputc('\n', out_);
}

std::string Progress::Render(uint64_t done, uint64_t total,
                             absl::Duration elapsed) {
  double seconds = std::max(absl::ToDoubleSeconds(elapsed), 1e-6);
  double mib = static_cast<double>(done) / (1 << 20);
  if (total == 0) {
    return absl::StrFormat("%.1f MiB, %.1f MiB/s", mib, mib / seconds);
  }
  double fraction = std::min(1.0, static_cast<double>(done) / total);
  int filled = static_cast<int>(fraction * kBarWidth);
  return absl::StrFormat(
      "[%s%s] %5.1f%% %.1f/%.1f MiB, %.1f MiB/s", std::string(filled, '#'),
      std::string(kBarWidth - filled, '.'), fraction * 100, mib,
      static_cast<double>(total) / (1 << 20), mib / seconds);
}

void Progress::Draw(uint64_t done) {
  std::string line = Render(done, total_, absl::Now() - start_);
  std::fprintf(out_, "\r%s\033[K", line.c_str());
  std::fflush(out_);
  drawn_ = true;
}

void Progress::Update(uint64_t done) {
  if (!enabled_) return;
  absl::Time now = absl::Now();
  if (now - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = now;
  Draw(done);
}

void Progress::Finish(uint64_t done) {
  if (!enabled_ || finished_) return;
  Draw(done);
  std::fputc('\n', out_);
  finished_ = true;
}

}  // namespace nbd::tool
