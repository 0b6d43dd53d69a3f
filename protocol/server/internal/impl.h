// Private state of nbd::ServerSession. Split by concern across:
//   server.cc             public wrappers, queries, input plumbing, lifecycle
//   handshake.cc          greeting and option haggling
//   requests.cc           request headers, validation, payloads
//   replies.cc            simple/structured/extended reply encoding
//   trace.cc              protocol trace lines (ServerOptions::trace)
#ifndef NBD_PROTOCOL_SERVER_INTERNAL_IMPL_H_
#define NBD_PROTOCOL_SERVER_INTERNAL_IMPL_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "protocol/internal/output_queue.h"
#include "protocol/internal/receiver.h"
#include "protocol/server/permissions.h"
#include "protocol/server/server.h"

namespace nbd {
namespace server_internal {

// The option's name; an unknown one keeps its number ("NBD_OPT_? (99)").
std::string OptionLabel(uint32_t option);

// Tag kind of a reply's last output segment (its id is the RequestHandle).
inline constexpr uint8_t kReplyEndTag = 1;

}  // namespace server_internal

class ServerSession::Impl {
 public:
  explicit Impl(ServerOptions options);

  // ---- What the receive side is waiting for -----------------------------
  enum class Unit {
    kNone,
    kClientFlags,    // 4
    kOptionHeader,   // 16
    kOptionData,     // header.length, bounded
    kSkip,           // discarded bytes (oversized option or payload)
    kRequestHeader,  // 28 or 32
    kPayload,        // WRITE data, into the request's own buffer
  };
  // What to do once a kSkip run ends.
  enum class AfterSkip { kNothing, kOptionTooBig, kRequestError };

  struct InFlight {
    ServerRequest request;
    std::unique_ptr<uint8_t[]> payload;  // WRITE data
    size_t payload_capacity = 0;
  };

  // ---- Input plumbing (server.cc) ------------------------------------------
  void Expect(Unit unit, size_t n);
  void ExpectInto(Unit unit, uint8_t* dst, size_t n);
  void ExpectSkip(uint64_t n, AfterSkip after);
  absl::Span<uint8_t> RecvBuffer();
  absl::Status CommitRecv(size_t n);
  void OnUnitComplete();
  bool input_paused() const;
  // Input is wanted now: not ended, not closing, not paused.
  bool accepts_input() const;
  bool at_boundary() const;

  // ---- Handshake (handshake.cc) ------------------------------------
  void OnClientFlags();
  void OnOptionHeader();
  void OnOptionData();
  void HandleOption(uint32_t option, absl::Span<const uint8_t> data);
  void HandleExportName(absl::Span<const uint8_t> data);
  void HandleStartTls(absl::Span<const uint8_t> data);
  // After the STARTTLS acknowledgement has been consumed.
  void OnStartTlsAckSent();
  // kRequire and TLS not up yet.
  bool tls_required() const {
    return opts_.tls == ServerTlsMode::kRequire && tls_ != Tls::kSecure;
  }
  void HandleInfoOrGo(Option option, absl::Span<const uint8_t> data);
  void HandleList(absl::Span<const uint8_t> data);
  void HandleMetaContext(Option option, absl::Span<const uint8_t> data);
  void SendOptionReply(uint32_t option, OptionReplyType type,
                       absl::Span<const uint8_t> payload = {});
  void SendOptionError(uint32_t option, OptionReplyType type,
                       absl::string_view message);
  std::optional<size_t> FindExport(std::string_view name) const;
  // `name` is the export name the client asked for (GO or EXPORT_NAME).
  void StartTransmission(size_t export_index, absl::string_view name);

  // ---- Requests (requests.cc) --------------------------------------
  void OnRequestHeader();
  void OnPayload();
  void AcceptRequest(const ServerRequest& request,
                     std::unique_ptr<uint8_t[]> payload, size_t capacity);
  // 0, or the errno the session answers `request` with by itself.
  int Validate(const ServerRequest& request) const;
  void FinishSkippedRequest();

  // ---- Replies (replies.cc) ------------------------------------------
  // Looks up an outstanding request for a Reply*() call.
  absl::StatusOr<InFlight*> FindForReply(RequestHandle handle);
  void Release(RequestHandle handle);
  // `detail` is appended to the chunk's trace line (callers build it only
  // when tracing).
  void PushChunkHeader(const ServerRequest& r, uint16_t flags, ChunkType type,
                       uint64_t length, absl::string_view detail = {});
  // `data_length` bytes of READ data follow (for the trace only).
  void PushSimpleReply(uint64_t cookie, uint32_t nbd_error,
                       uint64_t data_length = 0);
  // Queues a complete error reply for `r` (embedder or session generated).
  void QueueError(const ServerRequest& r, int errno_value,
                  absl::string_view message);
  void QueueOk(const ServerRequest& r);
  // Data/hole chunks (or simple reply + data) for `pieces`, which tile the
  // request from its offset on. `last` flags the final chunk DONE; without
  // it more chunks follow (an ERROR_OFFSET).
  void QueueRead(const ServerRequest& r, absl::Span<const ReadPiece> pieces,
                 bool last = true);
  // A DONE-flagged ERROR_OFFSET chunk (structured/extended only).
  void QueueErrorOffset(const ServerRequest& r, int errno_value,
                        absl::string_view message, uint64_t error_offset);
  void QueueBlockStatus(const ServerRequest& r,
                        absl::Span<const Extent> extents);
  void EndReply(RequestHandle handle, std::shared_ptr<const void> keepalive);

  // ---- Lifecycle (server.cc) ------------------------------------------------
  void Fail(absl::Status reason);  // -> kDead
  // -> kClosing; `why` is for the trace.
  void StartClosing(absl::string_view why);
  void MaybeClose();  // kClosing -> kClosed when drained
  bool terminal() const { return closed_ || dead_; }
  ServerPhase phase() const;

  // ---- Permissions (server.cc) ---------------------------------------------
  // OK if the table allows `call` in this phase; else FailedPrecondition
  // (EINVAL) naming the call and the phase.
  absl::Status Check(ServerCall call) const;
  bool Allowed(ServerCall call) const {
    return ServerCallAllowed(call, phase());
  }

  // ---- Trace (trace.cc) -----------------------------------------------------
  // Callers test tracing() first, so nothing is formatted when it is off.
  bool tracing() const { return opts_.trace && !terminal(); }
  void TraceLine(std::string line);
  // "<- NBD_OPT_GO export=... info=[...]": the option and what it asks.
  void TraceOption(uint32_t option, absl::Span<const uint8_t> data);
  // "-> NBD_REP_INFO to NBD_OPT_GO, 12 bytes".
  void TraceOptionReply(uint32_t option, OptionReplyType type, size_t length);
  void TraceRequest(const ServerRequest& r);
  void TraceTransmission();

  // Payload buffers of completed writes, reused to avoid allocations.
  std::unique_ptr<uint8_t[]> TakeBuffer(size_t n, size_t* capacity);
  void ReturnBuffer(std::unique_ptr<uint8_t[]> buffer, size_t capacity);

  ServerOptions opts_;

  // Receive state.
  internal::Receiver<Unit> rx_;
  AfterSkip after_skip_ = AfterSkip::kNothing;

  internal::OutputQueue out_;
  std::deque<ServerEvent> events_;

  // Lifecycle.
  bool closing_ = false;
  bool closed_ = false;
  bool dead_ = false;
  absl::Status dead_reason_;

  // Handshake.
  // Where STARTTLS stands: acknowledged and queued, acknowledgement sent
  // (ServerStartTls raised, input stopped until the handshake is done),
  // done.
  enum class Tls { kPlain, kAckQueued, kHandshaking, kSecure };
  Tls tls_ = Tls::kPlain;
  bool client_fixed_ = false;
  bool client_no_zeroes_ = false;
  uint32_t options_seen_ = 0;
  OptionRequestHeader option_;  // the option being received
  bool structured_ = false;
  bool extended_ = false;
  // base:allocation selected by SET_META_CONTEXT, for the export named
  // `meta_export_name_` (the name as the client sent it).
  bool meta_base_allocation_ = false;
  std::optional<std::string> meta_export_name_;

  // Transmission.
  std::optional<size_t> export_;
  uint16_t tflags_ = 0;
  RequestHandle next_handle_ = 1;
  absl::flat_hash_map<RequestHandle, InFlight> in_flight_;
  ServerRequest current_;  // request whose payload is arriving/skipped
  std::unique_ptr<uint8_t[]> current_payload_;
  size_t current_capacity_ = 0;
  int skipped_error_ = 0;  // errno for a request whose payload is skipped
  std::vector<std::pair<std::unique_ptr<uint8_t[]>, size_t>> buffer_pool_;
};

}  // namespace nbd

#endif  // NBD_PROTOCOL_SERVER_INTERNAL_IMPL_H_
