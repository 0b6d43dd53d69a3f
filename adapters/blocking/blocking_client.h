// nbd::adapters::BlockingClient: a synchronous NBD client over one socket,
// like libnbd's sync API (nbd_pread, nbd_opt_list, nbd_shutdown, ...), except
// that every wait is bounded.
//
// Each call issues one request and poll()s until it completes. Every call
// takes a timeout. When it expires the call returns DeadlineExceeded with
// errno ETIMEDOUT and the connection is given up: the core is marked dead
// (so no buffer stays referenced by an unfinished command) and the socket is
// closed. That is deliberate: a half-finished READ would otherwise keep
// writing into a buffer the caller believes is free.
//
// Errors carry an errno (nbd::StatusErrno): the server's error for a failed
// command, ENOTCONN when the connection ended first, EINVAL/ENOTSUP/... when
// the core refused the call, ETIMEDOUT on timeout.
//
// Not thread-safe. The socket is closed (and a subprocess, if any, stopped)
// by the destructor; no NBD_CMD_DISC is sent then (call Shutdown() first, as
// with nbd_close()).
#ifndef NBD_ADAPTERS_BLOCKING_BLOCKING_CLIENT_H_
#define NBD_ADAPTERS_BLOCKING_BLOCKING_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/connect/connect.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"
#include "protocol/client/options.h"

namespace nbd::adapters {

inline constexpr absl::Duration kDefaultBlockingTimeout = absl::Seconds(30);

struct ExportEntry {
  std::string name;
  std::string description;
};

// Sees every event of the connection, in order, before the BlockingClient
// acts on it: for logging and for ClientTrace events (ClientOptions::trace). It
// runs inside the BlockingClient's calls and must not call back into it.
using EventObserver = std::function<void(const ClientEvent&)>;

class BlockingClient {
 public:
  // Takes ownership of `fd` (a connected stream socket, e.g. from
  // ConnectUnix), sets O_NONBLOCK on it (every wait is a bounded poll) and
  // runs the handshake: returns once the client is ready for commands, or
  // parked in option mode if `options.option_mode`. On failure the
  // descriptor is closed.
  static absl::StatusOr<std::unique_ptr<BlockingClient>> Connect(
      int fd, ClientOptions options,
      absl::Duration timeout = kDefaultBlockingTimeout,
      SyscallCounters* counters = nullptr, EventObserver observer = nullptr);
  // The same for a Connection from ConnectUri/ConnectCommand; its export
  // name is used unless options.export_name is set. The connection (and its
  // subprocess) belongs to the BlockingClient from now on.
  static absl::StatusOr<std::unique_ptr<BlockingClient>> Connect(
      Connection connection, ClientOptions options,
      absl::Duration timeout = kDefaultBlockingTimeout,
      SyscallCounters* counters = nullptr, EventObserver observer = nullptr);

  ~BlockingClient();
  BlockingClient(const BlockingClient&) = delete;
  BlockingClient& operator=(const BlockingClient&) = delete;

  // The core, for queries (export_size(), can_*(), phase(), ...). Issuing
  // commands on it directly is not supported.
  const Client& client() const { return client_; }

  // ---- Transmission ---------------------------------------------------------
  absl::Status Pread(absl::Span<uint8_t> buffer, uint64_t offset,
                     ReadOptions options = {},
                     absl::Duration timeout = kDefaultBlockingTimeout);
  absl::Status Pwrite(absl::Span<const uint8_t> data, uint64_t offset,
                      uint16_t flags = 0,
                      absl::Duration timeout = kDefaultBlockingTimeout);
  absl::Status Flush(uint16_t flags = 0,
                     absl::Duration timeout = kDefaultBlockingTimeout);
  absl::Status Trim(uint64_t offset, uint64_t length, uint16_t flags = 0,
                    absl::Duration timeout = kDefaultBlockingTimeout);
  absl::Status Zero(uint64_t offset, uint64_t length, uint16_t flags = 0,
                    absl::Duration timeout = kDefaultBlockingTimeout);
  absl::Status Cache(uint64_t offset, uint64_t length, uint16_t flags = 0,
                     absl::Duration timeout = kDefaultBlockingTimeout);
  // The extents of `context` (default base:allocation) for the range.
  absl::StatusOr<std::vector<Extent>> BlockStatus(
      uint64_t offset, uint64_t length, uint16_t flags = 0,
      std::string_view context = "base:allocation",
      absl::Duration timeout = kDefaultBlockingTimeout);

  // ---- Option mode (phase kNegotiating) -------------------------------------
  absl::StatusOr<std::vector<ExportEntry>> OptList(
      absl::Duration timeout = kDefaultBlockingTimeout);
  // SetExportName first to ask about another export.
  absl::Status SetExportName(std::string name);
  absl::Status OptInfo(absl::Duration timeout = kDefaultBlockingTimeout);
  absl::Status OptGo(absl::Duration timeout = kDefaultBlockingTimeout);
  absl::StatusOr<std::vector<MetaContext>> OptListMetaContext(
      std::vector<std::string> queries,
      absl::Duration timeout = kDefaultBlockingTimeout);
  absl::StatusOr<std::vector<MetaContext>> OptSetMetaContext(
      std::vector<std::string> queries,
      absl::Duration timeout = kDefaultBlockingTimeout);
  // Sends NBD_OPT_ABORT and waits (bounded) for the connection to end.
  absl::Status OptAbort(absl::Duration timeout = kDefaultBlockingTimeout);

  // ---- Lifecycle ------------------------------------------------------------
  // libnbd's nbd_shutdown with a bound: Client::Shutdown(flags), then flush
  // NBD_CMD_DISC (or NBD_OPT_ABORT), shut down the write side, and read until
  // the server closes. If it has not closed after `timeout`, gives up
  // (DeadlineExceeded, ETIMEDOUT). The socket is closed either way. OK if the
  // connection ended cleanly (kClosed).
  absl::Status Shutdown(uint32_t flags = 0,
                        absl::Duration timeout = kDefaultBlockingTimeout);

 private:
  BlockingClient(int fd, ClientOptions options, SyscallCounters* counters);

  // poll()s and pumps until `done()` or the connection ends or `timeout`.
  // On timeout gives the connection up and returns TimeoutStatus.
  template <typename Done>
  absl::Status RunUntil(Done done, absl::Duration timeout,
                        absl::string_view what);
  // Waits for the CommandCompleted of `cookie`; returns its status.
  absl::Status Wait(absl::StatusOr<Cookie> cookie, absl::Duration timeout,
                    absl::string_view what);
  // Waits for the OptionCompleted of the option just started.
  absl::Status WaitOption(absl::Status started, absl::Duration timeout,
                          absl::string_view what);
  void OnEvent(ClientEvent& event);
  absl::Status ConnectionEnded() const;

  Client client_;
  SocketTransport transport_;
  EventObserver observer_;
  std::optional<Subprocess> subprocess_;
  // Results collected by OnEvent for the call in progress.
  std::optional<absl::Status> command_status_;
  Cookie waiting_for_ = 0;
  std::optional<absl::Status> option_status_;
  bool connected_ = false;
  bool negotiating_ = false;
  std::vector<ExportEntry> exports_;
  std::vector<MetaContext> contexts_;
  std::vector<Extent> extents_;
  std::string extents_context_;
};

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_BLOCKING_BLOCKING_CLIENT_H_
