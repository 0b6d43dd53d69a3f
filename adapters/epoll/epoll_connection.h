// nbd::adapters::EpollConnection: one NBD connection driven from an epoll
// loop that the caller owns.
//
//   EpollConnection conn(fd, options, [&](ClientEvent& e) { ... });
//   conn.Register(epfd, {.ptr = &conn});      // interest from wants()
//   ... in the caller's loop, for each epoll_event of conn's fd:
//   conn.OnReady(ev.events);                   // moves bytes, re-arms
//   ... after issuing commands on conn.client():
//   conn.Kick();                               // sends now, re-arms
//
// Registration is level-triggered. Interest follows Client::wants() and is
// changed with EPOLL_CTL_MOD only when it differs from what is registered.
// Every event the core queues goes to the callback, in order, from inside
// OnReady()/Kick()/CheckDeadline() (ShutdownWrite has already been acted on
// when the callback sees it). Once the connection is closed or dead the fd
// is removed from the epoll set and closed; `finished()` turns true.
//
// Disconnecting: Disconnect()/Shutdown() here (or the core's, then Kick()),
// and optionally SetDeadline(now + bound); the loop's CheckDeadline(now)
// gives the connection up (dead, ETIMEDOUT) if the server has not closed by
// then. If no deadline was set, a default one (kDefaultDisconnectTimeout,
// 30 s; see SetDefaultDisconnectTimeout) is armed when the disconnect
// starts: at this class's Disconnect()/Shutdown(), or, if the core's were
// called directly, once NBD_CMD_DISC/NBD_OPT_ABORT has been sent
// (ShutdownWrite). So forgetting SetDeadline never hangs forever.
// next_deadline() helps the caller size its epoll_wait timeout.
#ifndef NBD_ADAPTERS_EPOLL_EPOLL_CONNECTION_H_
#define NBD_ADAPTERS_EPOLL_EPOLL_CONNECTION_H_

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"
#include "protocol/client/options.h"

namespace nbd::adapters {

class EpollLoop;

class EpollConnection {
 public:
  using Callback = std::function<void(ClientEvent&)>;

  // Takes ownership of `fd` (connected, non-blocking). `counters` may be
  // null; otherwise it must outlive this object.
  EpollConnection(int fd, ClientOptions options, Callback on_event,
                  SyscallCounters* counters = nullptr);
  // Removes the fd from the epoll set and closes it; if an EpollLoop has
  // it (EpollLoop::Add), also leaves that loop, which then never touches
  // it again (also not in the batch of events it is dispatching). Not
  // from inside this connection's own callback.
  ~EpollConnection();
  EpollConnection(const EpollConnection&) = delete;
  EpollConnection& operator=(const EpollConnection&) = delete;

  Client& client() { return client_; }
  const Client& client() const { return client_; }
  int fd() const { return transport_.fd(); }

  // Adds the fd to `epfd` with `data` as its epoll_data and the interest the
  // core wants now, then sends the handshake's first bytes if any.
  absl::Status Register(int epfd, epoll_data_t data);

  // The caller's loop saw `events` (EPOLLIN/OUT/HUP/ERR) for fd().
  void OnReady(uint32_t events);

  // Call after issuing commands (or Disconnect/Shutdown) outside OnReady:
  // sends what it can now and re-arms interest.
  void Kick();

  // client().Disconnect()/Shutdown(flags), then Kick(); arms the default
  // disconnect deadline unless one is set.
  absl::Status Disconnect(uint32_t flags = 0);
  absl::Status Shutdown(uint32_t flags = 0);

  // Bound for the end of the connection (see above).
  void SetDeadline(absl::Time deadline) { deadline_.Set(deadline); }
  // The bound armed when a disconnect starts without a deadline.
  void SetDefaultDisconnectTimeout(absl::Duration timeout) {
    deadline_.set_default_timeout(timeout);
  }
  std::optional<absl::Time> next_deadline() const { return deadline_.get(); }
  // Gives the connection up if `now` is past the deadline.
  void CheckDeadline(absl::Time now);

  // Closed or dead, fd released.
  bool finished() const { return finished_; }

 private:
  void Step(bool readable);
  void Deliver(ClientEvent& event);
  void Rearm();
  void Finish();

  friend class EpollLoop;
  // The EpollLoop that has this connection (Add), told on destruction;
  // the loop clears it when it lets go first.
  EpollLoop* loop_ = nullptr;
  Client client_;
  SocketTransport transport_;
  Callback on_event_;
  int epfd_ = -1;
  epoll_data_t data_ = {};
  uint32_t registered_ = 0;  // interest currently in the epoll set
  DisconnectDeadline deadline_;
  bool finished_ = false;
};

// epoll interest bits for what the core wants.
uint32_t EpollEventsFor(Direction direction);

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_EPOLL_EPOLL_CONNECTION_H_
