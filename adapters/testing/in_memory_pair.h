// nbd::InMemoryPair: an nbd::Client and an nbd::ServerSession connected
// through memory, stepped by the caller: no sockets, no threads, no clock,
// so every run is reproducible and a test decides exactly when which bytes
// move, when the server executes a request and where the connection breaks.
//
// The connection is two byte streams ("wires"), client to server and server
// to client, each with a sender and a receiver:
//
//   client output --SendClientOutput--> c2s wire --DeliverToServer--> server
//   client <--DeliverToClient-- s2c wire <--SendServerOutput-- server output
//
// Sending takes bytes out of a core's output queue (ConsumeOutput), as a
// socket's send buffer would; delivering hands wire bytes to the other core
// (Feed or RecvBuffer/CommitRecv) in pieces chosen by a Split. The wire
// buffer has no limit. Server requests are executed on a Backend through
// ServeRequest() (adapters/server/serve.h), at once (auto-serve, the
// default) or when the test says (Execute), in any order, optionally with
// an injected backend error.
//
// Ends of the connection, as a socket would see them:
//  - ShutdownWrite from the client (after NBD_CMD_DISC or NBD_OPT_ABORT)
//    closes the c2s wire for writing: the server gets EOF (FeedEof) once it
//    has taken every byte before it.
//  - A core that is closed or dead has closed its socket: its input wire
//    is dropped (its sender's later output is discarded, like writes to a
//    peer that no longer reads), and its output wire ends with EOF after
//    the bytes already in it.
//  - BreakAt() cuts a wire at an absolute stream offset: the receiver gets
//    the bytes before it, then EOF (FeedEof) or a transport error
//    (FeedTransportError); nothing after the cut is ever delivered.
// EOF and errors are delivered by DeliverTo*() calls (and so by Step()).
//
// Typical use:
//
//   nbd::InMemoryPair pair(client_options);        // a 1 MiB memory export
//   pair.RunUntilQuiet();                          // handshake
//   std::vector<uint8_t> buf(4096);
//   absl::Status s = pair.Wait(pair.client().Read(0, absl::MakeSpan(buf)));
//
// Not thread-safe; one thread drives a pair. Several pairs may share one
// Backend (multi-conn); the caller interleaves their steps.
#ifndef NBD_ADAPTERS_TESTING_IN_MEMORY_PAIR_H_
#define NBD_ADAPTERS_TESTING_IN_MEMORY_PAIR_H_

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "adapters/server/backend.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/client/options.h"
#include "protocol/server/events.h"
#include "protocol/server/options.h"
#include "protocol/server/server.h"

namespace nbd {

// The receiving core's input path for a delivery.
enum class InputPath {
  kFeed,      // Feed(bytes)
  kZeroCopy,  // RecvBuffer(), copy into it, CommitRecv(n)
};

// How one delivery hands bytes to the receiving core: `piece` bytes per
// Feed()/CommitRecv() call at most (1 for one byte at a time; SIZE_MAX for
// everything at once, which on the zero-copy path means as much as each
// RecvBuffer() span takes), through `path`.
struct Split {
  size_t piece = SIZE_MAX;  // >= 1; 0 is treated as 1
  InputPath path = InputPath::kFeed;

  static Split All(InputPath path = InputPath::kFeed) {
    return {SIZE_MAX, path};
  }
  static Split Bytes(size_t n, InputPath path = InputPath::kFeed) {
    return {n, path};
  }
  static Split OneByte(InputPath path = InputPath::kFeed) { return {1, path}; }
};

// The two directions of the connection.
enum class Stream { kClientToServer, kServerToClient };

// An error a backend call returns instead of doing its work (see
// InMemoryPair::ExecuteWithFault). A READ of length 0 never reaches the
// backend (ServeRequest answers it OK), so it cannot fail.
struct BackendFault {
  int errno_value = EIO;  // ESHUTDOWN, ENOSPC, ...: what the client gets
  std::string message = "injected backend error";
  // READ only: the bytes read before the failure. The backend reads them
  // and reports them as runs, so the reply carries that data and then an
  // error at request offset + read_before (Backend::Read's contract).
  // Clamped to the request length minus one, so the error is inside it.
  uint64_t read_before = 0;
};

class InMemoryPair {
 public:
  static constexpr size_t kAll = SIZE_MAX;
  static constexpr uint64_t kDefaultSize = 1u << 20;

  // A pair over its own MemoryBackend of `size` bytes, exported under
  // `client.export_name` (ServerOptions defaults otherwise).
  explicit InMemoryPair(ClientOptions client = {},
                        uint64_t size = kDefaultSize);
  // A pair serving `server` from `backend`, which is borrowed and must
  // outlive the pair. If `server.exports` is empty, one export named
  // `client.export_name` describing `backend` (MakeExportInfo) is added.
  // Every export is served from `backend`.
  InMemoryPair(ClientOptions client, ServerOptions server, Backend& backend);
  ~InMemoryPair();
  InMemoryPair(const InMemoryPair&) = delete;
  InMemoryPair& operator=(const InMemoryPair&) = delete;

  // The two cores and the backend. A test may call anything on the cores
  // (commands, Disconnect, Shutdown, ...); it should leave input, output and
  // PollEvent() to the pair, which otherwise loses track of the streams.
  Client& client() { return *client_; }
  ServerSession& server() { return *server_; }
  Backend& backend() { return *backend_; }

  // ---- Moving bytes ---------------------------------------------------------
  // Each returns the number of bytes moved.
  //
  // Moves up to `max` bytes of the client's pending output into the c2s
  // wire (ConsumeOutput). Once the server's side is closed the bytes are
  // consumed and discarded.
  size_t SendClientOutput(size_t max = kAll);
  // Pins the first `n` bytes of the client's pending output
  // (Client::PinOutput), as an asynchronous sender (io_uring) does while a
  // send is in the kernel: Shutdown(kShutdownAbandonPending) may no longer
  // withdraw their commands. The next SendClientOutput() sends them.
  // Returns the bytes pinned (at most what is pending).
  size_t PinClientOutput(size_t n);
  // Hands up to `max` bytes of the c2s wire to the server, `split` at a
  // time, stopping early when the server takes less (its in-flight or
  // output limit paused it, or it stopped reading). Then delivers EOF or a
  // cut if the wire has reached one. Pops no events.
  size_t DeliverToServer(Split split = {}, size_t max = kAll);
  // The mirror images for the server's output and the client's input.
  size_t SendServerOutput(size_t max = kAll);
  size_t DeliverToClient(Split split = {}, size_t max = kAll);

  // Bytes in a wire: sent and not yet delivered.
  size_t wire_bytes(Stream stream) const;
  // Stream offsets: bytes ever sent into, and delivered out of, a wire.
  uint64_t sent(Stream stream) const;
  uint64_t delivered(Stream stream) const;
  // Whether the receiver of `stream` has been given EOF or an error.
  bool ended(Stream stream) const;
  // What ended `stream` for its receiver: nullopt while it has not ended,
  // OK for EOF, else the transport error of a cut.
  std::optional<absl::Status> end(Stream stream) const;

  // Calls `tap` with every byte sent into either stream, in order, before
  // any cut or discard (so offsets match sent()). For tests that decode
  // the wire on their own. Replaces an earlier tap; empty to remove.
  using Tap = std::function<void(Stream, absl::Span<const uint8_t>)>;
  void set_tap(Tap tap) { tap_ = std::move(tap); }

  // ---- Events
  // ----------------------------------------------------------------- Pops the
  // client's events into client_events() (a ShutdownWrite also closes the c2s
  // wire for writing). Returns how many.
  size_t PollClient();
  // Pops the server's events into server_events(). A ServerRequest is
  // executed at once with auto-serve, else appended to held_requests().
  size_t PollServer();

  // Every event popped so far, in order. ServerRequest events are logged
  // as they are popped, whether executed or held.
  const std::vector<ClientEvent>& client_events() const {
    return client_events_;
  }
  const std::vector<ServerEvent>& server_events() const {
    return server_events_;
  }
  // Client events of type T, in order.
  template <typename T>
  std::vector<T> ClientEventsOf() const {
    std::vector<T> out;
    for (const ClientEvent& e : client_events_) {
      if (const T* t = std::get_if<T>(&e)) out.push_back(*t);
    }
    return out;
  }
  // The CommandCompleted of `cookie`, if it has been popped.
  std::optional<CommandCompleted> CompletionOf(Cookie cookie) const;

  // ---- Executing requests
  // ----------------------------------------------------- With auto-serve off,
  // PollServer() holds requests until one of the calls below executes them, in
  // any order (replies are then reordered and delayed as the test likes).
  // Switching it on executes nothing already held.
  void set_auto_serve(bool on) { auto_serve_ = on; }
  bool auto_serve() const { return auto_serve_; }
  // Requests popped and not yet executed, in arrival order. A ServerRequest
  // stays valid (also its payload) until it is executed.
  const std::deque<ServerRequest>& held_requests() const { return held_; }
  // Executes the held request `handle` on the backend (ServeRequest) and
  // queues its reply. NotFound if no such request is held. Once the
  // session has closed or died the reply is dropped (the request still
  // leaves the held list).
  absl::Status Execute(RequestHandle handle);
  // As Execute, but the backend call fails with `fault` (the request's
  // range is not touched, apart from READ's read_before prefix, which is
  // read), so the client gets that errno.
  absl::Status ExecuteWithFault(RequestHandle handle, BackendFault fault);
  // Executes every held request in arrival order; returns how many.
  size_t ExecuteAll();

  // ---- Faults
  // ------------------------------------------------------------------- Cuts
  // `stream` at absolute offset `offset` (a count of bytes from the start of
  // the connection, see sent()/delivered()): the receiver gets the bytes before
  // it, then EOF if `error` is OK, else FeedTransportError( error). An offset
  // already delivered cuts at the current position. A later cut replaces an
  // earlier one that has not been reached. If the sender closes its side before
  // the offset, the receiver gets that EOF instead.
  void BreakAt(Stream stream, uint64_t offset,
               absl::Status error = absl::OkStatus());

  // ---- Running
  // ------------------------------------------------------------------ One
  // round: send all client output, deliver it with `to_server`, poll the
  // server, send all server output, deliver it with `to_client`, poll the
  // client. Returns whether anything moved or happened.
  bool Step(Split to_server = {}, Split to_client = {});
  // Steps until a round moves nothing (at most `max_rounds`); returns
  // whether it got quiet. Held requests stay held.
  bool RunUntilQuiet(Split to_server = {}, Split to_client = {},
                     size_t max_rounds = 1000000);
  // Runs until quiet and returns the status of the command `cookie`
  // (executing held requests if nothing else moves); `cookie`'s own error
  // if it is one, and Internal if the command did not complete.
  absl::Status Wait(absl::StatusOr<Cookie> cookie, Split to_server = {},
                    Split to_client = {});

  // Both cores are closed or dead.
  bool finished() const;

  // Calls on the cores that failed where they must not (ConsumeOutput or
  // CommitRecv beyond what was offered, Feed refusing input on a live
  // core, ...): each a line of text. Empty unless a core broke its
  // contract.
  const std::vector<std::string>& anomalies() const { return anomalies_; }

 private:
  struct Wire {
    // Bytes in flight are bytes[head, bytes.size()).
    std::vector<uint8_t> bytes;
    size_t head = 0;
    size_t size() const { return bytes.size() - head; }
    const uint8_t* front() const { return bytes.data() + head; }
    void Pop(size_t n);
    void Clear() {
      bytes.clear();
      head = 0;
    }
    uint64_t sent = 0;
    uint64_t delivered = 0;
    bool writer_closed = false;  // EOF once drained
    bool reader_closed = false;  // the receiver is gone: drop everything
    std::optional<uint64_t> cut_at;
    absl::Status cut_error;  // OK: EOF
    bool ended = false;      // EOF or an error was delivered
    absl::Status end;        // what was delivered, once ended
  };

  Wire& wire(Stream s) { return s == Stream::kClientToServer ? c2s_ : s2c_; }
  const Wire& wire(Stream s) const {
    return s == Stream::kClientToServer ? c2s_ : s2c_;
  }
  // Hands up to `max` bytes to a receiver through `feed`/`zero_copy`.
  template <typename Core>
  size_t Deliver(Wire& w, Core& core, Split split, size_t max);
  template <typename Core>
  size_t Send(Wire& w, Core& core, size_t max);
  // Closes wires after a core became terminal.
  void Propagate();
  absl::Status Run(RequestHandle handle, Backend& backend);

  std::unique_ptr<Backend> owned_backend_;
  Backend* backend_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<ServerSession> server_;
  Wire c2s_;
  Wire s2c_;
  Tap tap_;
  bool auto_serve_ = true;
  std::deque<ServerRequest> held_;
  std::vector<ClientEvent> client_events_;
  std::vector<ServerEvent> server_events_;
  std::vector<std::string> anomalies_;
};

}  // namespace nbd

#endif  // NBD_ADAPTERS_TESTING_IN_MEMORY_PAIR_H_
