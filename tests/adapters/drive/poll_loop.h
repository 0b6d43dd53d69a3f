// A poll() loop over any number of ClientDrive/ServerDrive objects, as an
// embedder would write it, for the drive tests. Every wait is bounded.
#ifndef NBD_TESTS_ADAPTERS_DRIVE_POLL_LOOP_H_
#define NBD_TESTS_ADAPTERS_DRIVE_POLL_LOOP_H_

#include <poll.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "adapters/drive/drive.h"

namespace nbd::test {

class PollLoop {
 public:
  // `on_event` gets every event `drive` pops, in order; it may issue
  // commands or replies (the loop Kick()s the drive afterwards).
  template <typename Session, typename OnEvent>
  void Add(adapters::Drive<Session>& drive, OnEvent on_event) {
    entries_.push_back(Entry{
        .fd = [&drive] { return drive.fd(); },
        .events = [&drive] { return drive.poll_events(); },
        .timeout_ms =
            [&drive](absl::Time now) { return drive.timeout_ms(now); },
        .done = [&drive] { return drive.done(); },
        .turn =
            [&drive, on_event](short revents) mutable {
              drive.OnReady(revents);
              drive.CheckDeadline(absl::Now());
              while (auto e = drive.PollEvent()) on_event(*e);
              drive.Kick();
            },
    });
  }

  // Turns until `until()` holds; false if `bound` passed first or every
  // drive is done without it.
  bool RunUntil(const std::function<bool()>& until,
                absl::Duration bound = absl::Seconds(20)) {
    const absl::Time give_up = absl::Now() + bound;
    // Events already queued count (e.g. raised by calls on a core).
    for (Entry& e : entries_) e.turn(0);
    while (!until()) {
      const absl::Time now = absl::Now();
      if (now >= give_up) return false;
      bool live = false;
      std::vector<pollfd> fds;
      int ms = static_cast<int>(absl::ToInt64Milliseconds(give_up - now)) + 1;
      for (Entry& e : entries_) {
        fds.push_back({e.fd(), e.events(), 0});
        live = live || !e.done();
        const int t = e.timeout_ms(now);  // 0 while events are queued
        if (t >= 0) ms = std::min(ms, t);
      }
      if (!live) return false;
      ::poll(fds.data(), fds.size(), ms);
      for (size_t i = 0; i < entries_.size(); ++i) {
        entries_[i].turn(fds[i].revents);
      }
    }
    return true;
  }

 private:
  struct Entry {
    std::function<int()> fd;
    std::function<short()> events;  // NOLINT(runtime/int)
    std::function<int(absl::Time)> timeout_ms;
    std::function<bool()> done;
    std::function<void(short)> turn;  // NOLINT(runtime/int)
  };
  std::vector<Entry> entries_;
};

}  // namespace nbd::test

#endif  // NBD_TESTS_ADAPTERS_DRIVE_POLL_LOOP_H_
