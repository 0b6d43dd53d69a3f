// A one-line progress bar on stderr for long-running subcommands.
#ifndef NBD_TOOLS_NBD_PROGRESS_H_
#define NBD_TOOLS_NBD_PROGRESS_H_

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/time/time.h"

namespace nbd::tool {

class Progress {
 public:
  // `total` 0: unknown (a stream); then only bytes and rate are shown.
  // Disabled progress bars print nothing.
  Progress(bool enabled, uint64_t total, std::FILE* out = stderr);
  ~Progress();  // ends the line if anything was drawn

  // Redraws at most every 100 ms, so calling it per request is cheap.
  void Update(uint64_t done);
  // Draws the final state and ends the line.
  void Finish(uint64_t done);

  // The text of the bar, without the leading '\r' (for tests).
  static std::string Render(uint64_t done, uint64_t total,
                            absl::Duration elapsed);

 private:
  void Draw(uint64_t done);

  bool enabled_;
  uint64_t total_;
  std::FILE* out_;
  absl::Time start_;
  absl::Time last_draw_;
  bool drawn_ = false;
  bool finished_ = false;
};

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_PROGRESS_H_
