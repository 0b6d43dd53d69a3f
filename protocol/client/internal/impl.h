// Private state of nbd::Client. Split by concern across:
//   client.cc            public wrappers, queries, input plumbing, lifecycle
//   handshake.cc         greeting, option sequencing, option replies
//   option_mode.cc       the public Opt*() and TLS calls
//   permissions.cc       (permissions.h) the table every public call checks
//   commands.cc          command validation and request encoding
//   replies.cc           simple/structured/extended reply decoding
#ifndef NBD_PROTOCOL_CLIENT_INTERNAL_IMPL_H_
#define NBD_PROTOCOL_CLIENT_INTERNAL_IMPL_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "protocol/client/client.h"
#include "protocol/client/internal/client_output.h"
#include "protocol/client/permissions.h"
#include "protocol/internal/receiver.h"

namespace nbd {

class Client::Impl {
 public:
  explicit Impl(ClientOptions options);

  // ---- Where the connection is ---------------------------------------------
  // The one state every control decision reads; phase() and call_state()
  // are switches over it. The automatic handshake walks the *Sent states
  // in declaration order (AdvanceHandshake), skipping the steps the options
  // do not ask for.
  enum class State {
    kAwaitingGreeting,     // greeting, handshake flags or the oldstyle rest
    kStartTlsSent,         // automatic NBD_OPT_STARTTLS in flight
    kTlsPaused,            // STARTTLS acknowledged; the caller's TLS starts
    kExtendedHeadersSent,  // automatic NBD_OPT_EXTENDED_HEADERS in flight
    kStructuredReplySent,  // automatic NBD_OPT_STRUCTURED_REPLY in flight
    kSetMetaSent,          // automatic NBD_OPT_SET_META_CONTEXT in flight
    kGoSent,               // automatic NBD_OPT_GO in flight
    kExportNameSent,       // automatic NBD_OPT_EXPORT_NAME in flight
    kParked,               // option mode: waiting for an Opt*() call
    // The option of an Opt*() call is in flight; it ends in OptionCompleted.
    // For OptGo() this includes its NBD_OPT_EXPORT_NAME fallback.
    kUserOptionSent,
    kUserGoMetaSent,    // OptGo()'s own SET_META_CONTEXT, before its GO
    kAbortSent,         // NBD_OPT_ABORT sent; its reply or EOF ends it
    kTransmission,      // commands flow
    kDisconnectLater,   // NBD_CMD_DISC goes out once commands drain
    kDisconnectQueued,  // NBD_CMD_DISC queued (or sent); nothing follows
    kClosed,
    kDead,
  };
  static const char* StateName(State state);

  // ---- What the receive side is waiting for -----------------------------
  enum class Unit {
    kNone,
    kGreeting,           // 16: NBDMAGIC + second magic
    kOldstyleRest,       // 136
    kHandshakeFlags,     // 2
    kOptReplyHeader,     // 20
    kOptReplyPayload,    // header.length
    kExportNameReply,    // 10
    kExportNamePadding,  // 124
    kReplyHeader,        // 16 (compact) or 32 (extended)
    kStructuredLength,   // 4 more bytes of a 20-byte chunk header
    kSimpleReadPayload,  // into the caller's buffer
    kChunkPayload,       // a non-data chunk payload, bounded
    kDataOffset,         // 8-byte offset of OFFSET_DATA
    kDataPayload,        // OFFSET_DATA bytes into the caller's buffer
  };

  struct PendingCommand {
    Cookie cookie = 0;
    Command type = Command::kRead;
    uint16_t flags = 0;
    // The caller's opaque value, copied into this command's events; never
    // interpreted.
    uint64_t tag = 0;
    uint64_t offset = 0;
    uint64_t length = 0;
    uint8_t* read_buffer = nullptr;
    bool report_chunks = false;
    absl::Status error;  // first error seen; OK otherwise
    uint64_t data_seen = 0;
    bool reply_started = false;  // a chunk without DONE has arrived
    // READ: the byte ranges (start -> end, merged) that data and hole
    // chunks already filled. Chunks must not overlap (proto.md), and a
    // byte count alone cannot tell a gap from a double write.
    // The common case, chunks that extend one run, stays in `run_*` and
    // allocates nothing; `covered` takes over at the first gap.
    bool has_run = false;
    uint64_t run_start = 0;
    uint64_t run_end = 0;
    std::map<uint64_t, uint64_t> covered;
    // WRITE: part of the payload is still in the output queue, so the
    // caller's buffer is still referenced. A reply that arrives before it
    // was all sent (an eager server) is parked in `reply_status` and the
    // completion waits until the payload left the queue: completing earlier
    // would let the caller free memory the transport is about to send.
    bool payload_pending = false;
    std::optional<absl::Status> reply_status;
  };

  // An option in flight (one at a time, as the spec requires). Whether it
  // reports an OptionCompleted is the state's business (kUserOptionSent).
  struct OptionInFlight {
    Option option = Option::kAbort;
    absl::Status error;  // deferred failure reported at the final reply
    bool saw_export = false;
    std::vector<MetaContext> contexts;  // SET_META_CONTEXT replies so far
  };

  // ---- Input ----------------------------------------------------------------
  absl::StatusOr<size_t> Feed(absl::Span<const uint8_t> bytes);
  void FeedEof();
  absl::Span<uint8_t> RecvBuffer();
  absl::Status CommitRecv(size_t n);
  void Expect(Unit unit, size_t n);                    // into scratch
  void ExpectInto(Unit unit, uint8_t* dst, size_t n);  // into caller memory
  void OnUnitComplete();
  bool input_blocked() const;

  // ---- Handshake (handshake.cc) ----------------------------------
  void OnGreeting();
  void OnOldstyleRest();
  void OnHandshakeFlags();
  void OnOptReplyHeader();
  void OnOptReply();
  void OnExportNameReply();
  void AdvanceHandshake();
  // Sends `option` and moves to `next` (a *Sent state). `detail` follows
  // the option's name in the trace.
  void SendOption(State next, Option option, absl::Span<const uint8_t> data,
                  absl::string_view detail = {});
  void SendGo(State next, Option option);
  // `queries` are the user's (kUserOptionSent) or, for the automatic
  // request, replaced by base:allocation and ClientOptions::meta_contexts.
  void SendSetMeta(State next, std::vector<std::string> queries, Option option);
  void SendExportName();
  void SendAbort();
  void FinishOption(absl::Status status);
  // Whether the option in flight ends in an OptionCompleted event.
  bool user_option_in_flight() const {
    return state_ == State::kUserOptionSent;
  }
  // The user's Opt* call that the option in flight is part of, if any: the
  // option itself, or OptGo() while its automatic SET_META_CONTEXT runs.
  std::optional<Option> PendingUserOption() const;
  void EnterTransmission(uint64_t size, uint16_t flags);
  void Park();
  absl::Status HandleInfo(absl::Span<const uint8_t> payload);
  void ResetNegotiatedState();

  // ---- Public option-mode and TLS calls (option_mode.cc) -------------------
  absl::Status TlsHandshakeDone();
  absl::Status SetExportName(std::string name);
  absl::Status OptList();
  absl::Status OptInfo();
  absl::Status OptGo();
  absl::Status OptAbort();
  absl::Status OptStructuredReply();
  absl::Status OptExtendedHeaders();
  absl::Status OptListMetaContext(std::vector<std::string> queries);
  absl::Status OptSetMetaContext(std::vector<std::string> queries);

  // ---- Commands (commands.cc) ---------------------------------------
  // The permission table's entry for each command.
  static ClientCall CallOf(Command type);
  absl::Status Validate(Command type, uint16_t flags, uint64_t offset,
                        uint64_t length) const;
  Cookie Queue(Command type, uint16_t flags, uint64_t offset, uint64_t length,
               uint8_t* read_buffer, absl::Span<const uint8_t> write_payload,
               bool report_chunks, uint64_t tag);
  absl::StatusOr<Cookie> Issue(Command type, uint16_t flags, uint64_t offset,
                               uint64_t length, uint64_t tag);
  absl::StatusOr<Cookie> Read(uint64_t offset, absl::Span<uint8_t> buffer,
                              ReadOptions options);
  absl::StatusOr<Cookie> Write(uint64_t offset, absl::Span<const uint8_t> data,
                               uint16_t flags, uint64_t tag);
  // NBD_CMD_DISC once nothing else is in flight (Shutdown(0), ESHUTDOWN):
  // only the state changes; MaybeSendDisc() sends it when due.
  void DisconnectWhenDrained();
  void QueueDisc();
  void MaybeSendDisc();
  void AbandonUnsent();

  // ---- Replies (replies.cc) -----------------------------------------
  void OnReplyHeader();
  void OnStructuredLength();
  void OnChunkHeader(uint16_t flags, uint16_t type, Cookie cookie,
                     uint64_t length);
  void OnChunkPayload();
  void OnDataOffset();
  void OnDataPayload();
  void OnSimpleReadPayload();
  PendingCommand* CurrentCommand();  // Fails the connection if gone
  void HandleBlockStatus(PendingCommand& cmd, const BlockStatusChunk& chunk);
  void SetCommandError(PendingCommand& cmd, absl::Status error);
  void FinishChunk();
  // Records that [offset, +length) of `cmd`'s buffer was filled; false (and
  // nothing recorded) if it overlaps a range filled before.
  bool AddCoverage(PendingCommand& cmd, uint64_t offset, uint64_t length);
  void CompleteCommand(Cookie cookie, absl::Status status);
  void ExpectReplyHeader();

  // ---- ClientTrace (client.cc) ----------------------------------------------
  // Callers test tracing() first, so nothing is formatted when it is off.
  bool tracing() const { return opts_.trace; }
  void TraceLine(std::string line);

  // ---- Lifecycle (client.cc) ------------------------------------------------
  void Fail(absl::Status reason);  // -> kDead
  void Close();                    // -> kClosed
  void FailAllCommands(const absl::Status& why);
  void OnSegmentSent(client_internal::SegmentKind kind, Cookie cookie);
  // After ConsumeOutput(): a fatal refusal dies once NBD_OPT_ABORT is out.
  void OnOutputConsumed();
  absl::Status Disconnect(uint32_t flags);
  absl::Status Shutdown(uint32_t flags);
  bool dead() const { return state_ == State::kDead; }
  bool terminal() const {
    return state_ == State::kClosed || state_ == State::kDead;
  }
  bool in_transmission() const {
    return state_ == State::kTransmission ||
           state_ == State::kDisconnectLater ||
           state_ == State::kDisconnectQueued;
  }
  ClientPhase phase() const;
  size_t in_flight() const;

  // ---- Entry points of the public calls (client.cc) ------------------------
  // What Client's public methods forward to, permission check included.
  Direction wants() const;
  uint32_t max_payload() const;
  std::optional<uint32_t> meta_context_id(std::string_view name) const;
  absl::StatusOr<size_t> ApiFeed(absl::Span<const uint8_t> bytes);
  void ApiFeedEof();
  void ApiFeedTransportError(absl::Status error);
  absl::Span<uint8_t> ApiRecvBuffer();
  absl::Status ApiCommitRecv(size_t n);
  absl::Status ConsumeOutput(size_t n);
  absl::Status PinOutput(size_t n);
  std::optional<ClientEvent> PollEvent();

  // ---- Permissions (client.cc) ---------------------------------------------
  ClientCallState call_state() const;
  // OK if the table allows `call` now; else FailedPrecondition (EINVAL)
  // naming the call and the state.
  absl::Status Check(ClientCall call) const;
  bool Allowed(ClientCall call) const {
    return ClientCallAllowed(call, call_state());
  }

  ClientOptions opts_;

  // Receive state: read-ahead (ClientOptions::recv_readahead) at reply
  // headers, and a 1-byte probe while parked with nothing expected.
  internal::Receiver<Unit> rx_;

  client_internal::ClientOutputQueue out_;
  std::deque<ClientEvent> events_;

  State state_ = State::kAwaitingGreeting;
  absl::Status dead_reason_;

  // Handshake.
  ProtocolVariant protocol_ = ProtocolVariant::kUnknown;
  uint16_t handshake_flags_ = 0;
  bool no_zeroes_ = false;
  // Shutdown() during the handshake, with a step in flight (or the TLS
  // pause): honoured at the next boundary, whichever state that is:
  // NBD_OPT_ABORT instead of the next option, or NBD_CMD_DISC if the step
  // was a successful GO. A request, not a place, so not part of state_.
  bool abort_pending_ = false;
  // A SET_META_CONTEXT was sent for this export (by OptSetMetaContext() or
  // OptGo()), so OptGo() does not send its own.
  bool meta_requested_ = false;
  absl::Status fail_after_abort_;  // die once NBD_OPT_ABORT is flushed
  std::optional<OptionInFlight> option_;
  OptionReplyHeader opt_reply_;
  std::string export_name_;
  std::string canonical_name_;
  std::string description_;

  // Negotiated.
  bool tls_negotiated_ = false;
  bool structured_ = false;
  bool extended_ = false;
  std::vector<MetaContext> contexts_;
  std::optional<uint64_t> size_;
  uint16_t tflags_ = 0;
  BlockSizeConstraints block_size_;
  bool block_size_committed_ = false;  // sent by GO, which we must obey

  // Transmission.
  Cookie next_cookie_ = 1;
  std::map<Cookie, PendingCommand> commands_;
  // Current reply.
  StructuredReplyHeader chunk_;  // flags/type/cookie (length in chunk_len_)
  uint64_t chunk_len_ = 0;
  uint64_t data_offset_ = 0;  // OFFSET_DATA absolute offset
};

}  // namespace nbd

#endif  // NBD_PROTOCOL_CLIENT_INTERNAL_IMPL_H_
