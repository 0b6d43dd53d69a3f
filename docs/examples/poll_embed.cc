// An NBD client in a poll() loop of the program's own, through the drive
// layer (adapters/drive): connect, handshake, write, flush, read back and
// compare, block status, disconnect, wait for the closed state.
// Usage: poll_embed NBD-URI (e.g. 'nbd+unix:///?socket=/tmp/s').
#include <poll.h>

#include <cstdio>
#include <vector>

#include "absl/time/clock.h"
#include "adapters/drive/drive.h"
#include "protocol/visit.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  // [START connect]
  auto drive = nbd::adapters::ClientDrive::Connect(argv[1]);
  if (!drive.ok()) {
    std::fprintf(stderr, "%s\n", drive.status().ToString().c_str());
    return 1;
  }
  nbd::adapters::ClientDrive& d = **drive;
  nbd::Client& client = d.client();
  // [END connect]

  std::vector<uint8_t> data(65536, 0xa5), back(65536);
  int step = 0;  // what to issue next, once nothing is in flight
  bool failed = false;
  auto issue = [&](const absl::StatusOr<nbd::Cookie>& c) {
    failed = failed || !c.ok();
  };
  size_t extents = 0;
  // [START poll_loop]
  d.SetDeadline(absl::Now() + absl::Seconds(30));  // bounds the whole run
  while (!d.done()) {
    pollfd pfd = {d.fd(), d.poll_events(), 0};
    poll(&pfd, 1, d.timeout_ms(absl::Now()));
    d.OnReady(pfd.revents);  // POLLHUP/POLLERR included
    d.CheckDeadline(absl::Now());
    while (auto event = d.PollEvent()) {
      nbd::Visit(
          *event,
          [&](const nbd::CommandCompleted& c) {
            if (c.status.ok()) return;
            std::fprintf(stderr, "step %d: %s\n", static_cast<int>(c.tag),
                         c.status.ToString().c_str());
            failed = true;
          },
          [&](const nbd::BlockStatusExtents& b) {
            extents += b.extents.size();
          },
          [](const nbd::ClientDead& dead) {
            std::fprintf(stderr, "dead: %s\n", dead.reason.ToString().c_str());
          },
          [](const auto&) {});  // every other event
    }
    // kReady: connected, nothing in flight. One step at a time, since NBD
    // orders nothing between commands in flight.
    if (client.phase() != nbd::ClientPhase::kReady) continue;
    switch (step++) {
      // Each command carries its step as its tag; its events hand it back.
      case 0:
        issue(client.Write(0, data, 0, /*tag=*/0));
        break;
      case 1:
        issue(client.Flush(0, /*tag=*/1));
        break;
      case 2:
        issue(client.Read(0, absl::MakeSpan(back), {.tag = 2}));
        issue(client.BlockStatus(0, 1 << 20, 0, /*tag=*/2));
        break;
      case 3:
        d.Disconnect().IgnoreError();  // DISC; the close is awaited, bounded
        break;
    }
    d.Kick();  // send now rather than after the next poll()
  }
  // [END poll_loop]
  std::printf("%s, %zu extents, data %s\n",
              nbd::ClientPhaseName(client.phase()), extents,
              back == data ? "matches" : "differs");
  bool ok = client.phase() == nbd::ClientPhase::kClosed && back == data;
  return ok && !failed ? 0 : 1;
}
