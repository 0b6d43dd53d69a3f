// The TLS half of a SocketTransport (pump.h): a TlsSession stacked on the
// raw socket once the core asked for TLS. Plaintext goes in and out through
// the Transport calls the pump already makes (Recv decrypts straight into
// the core's receive span, Send encrypts the core's gather list); the
// handshake and the ciphertext that is still to be sent are driven by the
// pump through the extra Transport calls (ContinueTls, Flush, wants,
// has_buffered_input). Internal to the pump: users configure TLS with
// SocketTransport::ConfigureTls().
#ifndef NBD_ADAPTERS_PUMP_TLS_STREAM_H_
#define NBD_ADAPTERS_PUMP_TLS_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "adapters/tls/tls_session.h"
#include "protocol/io.h"

namespace nbd::adapters {

struct IoResult;
class Transport;

class TlsStream {
 public:
  TlsStream(tls::Role role, tls::TlsOptions options)
      : role_(role), options_(std::move(options)) {}

  // Creates the session: every byte from now on is TLS. Errors are the
  // credential errors of TlsSession::Create().
  absl::Status Start();
  bool started() const { return session_ != nullptr; }
  bool handshaking() const { return started() && !session_->handshake_done(); }
  bool secure() const { return started() && session_->handshake_done(); }

  // Moves handshake bytes over `raw`. OK once the handshake is done, EAGAIN
  // while it waits for the socket, else why it failed.
  absl::Status Continue(Transport& raw);

  IoResult Recv(Transport& raw, absl::Span<uint8_t> into);
  IoResult Send(Transport& raw, absl::Span<const iovec> gather);
  // Sends pending ciphertext; shuts down the write side of `raw` once the
  // close_notify of ShutdownWrite() is out.
  IoResult Flush(Transport& raw);
  void ShutdownWrite(Transport& raw);

  bool has_pending_output() const {
    return started() && session_->pending_ciphertext() > 0;
  }
  // Plaintext or ciphertext already received and not yet handed on: the
  // pump must receive again even if the socket has nothing new.
  bool has_buffered_input() const;
  Direction wants() const;
  // Why the last Recv/Send failed with EPROTO/ECONNRESET/EACCES, for the
  // connection's dead reason.
  const absl::Status& last_error() const { return last_error_; }
  const tls::TlsSession* session() const { return session_.get(); }

 private:
  // Reads ciphertext from `raw` into the session; false when the socket
  // has nothing (r says why).
  bool Fill(Transport& raw, IoResult* r);
  IoResult Failed(absl::Status why);

  tls::Role role_;
  tls::TlsOptions options_;
  std::unique_ptr<tls::TlsSession> session_;
  bool shutdown_pending_ = false;
  bool shut_down_ = false;
  absl::Status last_error_;
};

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_PUMP_TLS_STREAM_H_
