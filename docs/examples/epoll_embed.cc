// Embedding an NBD connection in an epoll loop the program already owns.
// The loop also watches stdin (its "own" work); the NBD connection reads
// 16 blocks with all requests in flight at once, then disconnects with a
// bounded wait.
#include <sys/epoll.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "absl/time/clock.h"
#include "adapters/connect/connect.h"
#include "adapters/epoll/epoll_connection.h"

namespace {

constexpr uint64_t kStdinTag = 1;
constexpr uint64_t kNbdTag = 2;

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s NBD-URI\n", argv[0]);
    return 2;
  }
  auto conn = nbd::adapters::ConnectUri(argv[1]);
  if (!conn.ok()) {
    std::fprintf(stderr, "%s\n", conn.status().ToString().c_str());
    return 1;
  }

  // The application's loop and its own descriptor.
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = kStdinTag;
  epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev);

  // The NBD connection: events arrive through the callback.
  std::vector<std::vector<uint8_t>> blocks(16, std::vector<uint8_t>(4096));
  int completed = 0;
  bool connected = false;
  // [START epoll_register]
  nbd::ClientOptions options;
  options.export_name = conn->export_name;
  nbd::adapters::EpollConnection nbd_conn(
      conn->fd, options, [&](nbd::ClientEvent& e) {
        if (std::holds_alternative<nbd::Connected>(e)) connected = true;
        if (auto* done = std::get_if<nbd::CommandCompleted>(&e)) {
          ++completed;
          if (!done->status.ok()) {
            std::fprintf(stderr, "command %llu: %s\n",
                         static_cast<unsigned long long>(done->cookie),
                         done->status.ToString().c_str());
          }
        }
      });
  epoll_data_t tag;
  tag.u64 = kNbdTag;
  if (!nbd_conn.Register(epfd, tag).ok()) return 1;
  // [END epoll_register]

  bool issued = false;
  bool disconnecting = false;
  // [START epoll_loop]
  while (!nbd_conn.finished()) {
    // Size the wait by the connection's deadline, if any.
    int timeout_ms = 1000;
    if (auto d = nbd_conn.next_deadline()) {
      timeout_ms = static_cast<int>(std::max<int64_t>(
          0, absl::ToInt64Milliseconds(*d - absl::Now()) + 1));
    }
    epoll_event events[8];
    int n = epoll_wait(epfd, events, 8, timeout_ms);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kNbdTag) {
        nbd_conn.OnReady(events[i].events);
      } else {
        char line[256];
        if (read(STDIN_FILENO, line, sizeof line) <= 0) {
          epoll_ctl(epfd, EPOLL_CTL_DEL, STDIN_FILENO, nullptr);
        }
      }
    }
    nbd_conn.CheckDeadline(absl::Now());

    nbd::Client& client = nbd_conn.client();
    if (connected && !issued) {
      issued = true;
      for (size_t i = 0; i < blocks.size(); ++i) {
        if (!client.Read(i * 4096, absl::MakeSpan(blocks[i])).ok()) break;
      }
      nbd_conn.Kick();  // send now, and re-arm for EPOLLOUT if needed
    }
    if (issued && !disconnecting &&
        completed == static_cast<int>(blocks.size())) {
      disconnecting = true;
      // The connection's Disconnect() also arms its default bound (30 s);
      // a tighter deadline of our own replaces it.
      nbd_conn.SetDeadline(absl::Now() + absl::Seconds(5));
      nbd_conn.Disconnect().IgnoreError();  // kicks, too
    }
  }
  // [END epoll_loop]
  std::printf("%d reads completed; connection %s\n", completed,
              nbd::ClientPhaseName(nbd_conn.client().phase()));
  close(epfd);
  return nbd_conn.client().phase() == nbd::ClientPhase::kClosed ? 0 : 1;
}
