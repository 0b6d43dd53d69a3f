#include "adapters/pump/tls_stream.h"

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "adapters/pump/pump.h"
#include "protocol/status.h"

namespace nbd::adapters {
namespace {

// One receive of ciphertext: a maximal TLS record and its header.
constexpr size_t kRecvBytes = 16384 + 512;

bool Again(const absl::Status& s) { return StatusErrno(s) == EAGAIN; }

}  // namespace

absl::Status TlsStream::Start() {
  if (started()) return ErrnoStatus(EINVAL, "TLS started twice");
  absl::StatusOr<std::unique_ptr<tls::TlsSession>> s =
      tls::TlsSession::Create(role_, options_);
  if (!s.ok()) return s.status();
  session_ = std::move(*s);
  return absl::OkStatus();
}

IoResult TlsStream::Failed(absl::Status why) {
  const int e = StatusErrno(why);
  last_error_ = std::move(why);
  return IoResult{0, e != 0 ? e : EPROTO};
}

bool TlsStream::Fill(Transport& raw, IoResult* r) {
  if (!session_->wants_input()) {
    *r = IoResult{0, EAGAIN};
    return false;
  }
  // Straight into the session's buffer: no copy of the ciphertext.
  *r = raw.Recv(session_->CiphertextBuffer(kRecvBytes));
  session_->CommitCiphertext(r->error == 0 ? r->bytes : 0);
  if (r->error != 0 && r->error != EAGAIN && shutdown_pending_) {
    // After our close_notify a reset is the peer's way of closing too
    // (qemu-nbd closes at once after NBD_CMD_DISC): an end of the stream,
    // as libnbd counts GnuTLS's pull error then.
    session_->FeedEof();
    *r = IoResult{};
    return true;
  }
  if (r->error != 0) return false;
  if (r->bytes == 0) session_->FeedEof();
  return true;
}

absl::Status TlsStream::Continue(Transport& raw) {
  if (!started()) return ErrnoStatus(EINVAL, "TLS not started");
  while (true) {
    absl::Status st = session_->Handshake();
    IoResult w = Flush(raw);
    if (st.ok()) return st;
    if (!Again(st)) return st;  // the alert, if any, was flushed above
    if (w.error != 0 && w.error != EAGAIN) {
      return ErrnoStatus(w.error, absl::StrCat("TLS handshake: send failed: ",
                                               std::strerror(w.error)));
    }
    IoResult r;
    if (!Fill(raw, &r)) {
      if (r.error == EAGAIN) return ErrnoStatus(EAGAIN, "TLS handshake");
      return ErrnoStatus(r.error, absl::StrCat("TLS handshake: recv failed: ",
                                               std::strerror(r.error)));
    }
  }
}

IoResult TlsStream::Recv(Transport& raw, absl::Span<uint8_t> into) {
  while (true) {
    absl::StatusOr<size_t> n = session_->Decrypt(into);
    if (n.ok()) return IoResult{*n, 0};  // 0: the stream's clean end
    if (!Again(n.status())) return Failed(n.status());
    IoResult r;
    if (!Fill(raw, &r)) return r;
  }
}

IoResult TlsStream::Send(Transport& raw, absl::Span<const iovec> gather) {
  absl::StatusOr<size_t> n = session_->Encrypt(absl::MakeConstSpan(
      reinterpret_cast<const IoSlice*>(gather.data()), gather.size()));
  if (!n.ok()) return Failed(n.status());
  IoResult w = Flush(raw);
  if (w.error != 0 && w.error != EAGAIN) return w;
  // The plaintext is taken once it is encrypted; until its ciphertext is
  // sent the pump waits for the socket through wants().
  if (*n == 0) return IoResult{0, EAGAIN};
  return IoResult{*n, 0};
}

IoResult TlsStream::Flush(Transport& raw) {
  if (!started()) return IoResult{};
  size_t sent = 0;
  while (session_->pending_ciphertext() > 0) {
    IoSlice slice;
    session_->PeekCiphertext({&slice, 1});
    iovec v{const_cast<uint8_t*>(slice.data), slice.size};
    IoResult r = raw.Send({&v, 1});
    if (r.error != 0 && r.error != EAGAIN && shutdown_pending_) {
      // The peer is gone while we finish (NBD_CMD_DISC, close_notify):
      // like shutdown(SHUT_WR) errors in plaintext, this is no failure;
      // the peer's close decides how the connection ended (qemu-nbd closes
      // right after DISC).
      session_->ConsumeCiphertext(session_->pending_ciphertext()).IgnoreError();
      break;
    }
    if (r.error != 0) return r;
    session_->ConsumeCiphertext(r.bytes).IgnoreError();
    sent += r.bytes;
    if (r.bytes < slice.size) return IoResult{sent, EAGAIN};
  }
  if (shutdown_pending_ && !shut_down_) {
    shut_down_ = true;
    raw.ShutdownWrite();
  }
  return IoResult{sent, 0};
}

void TlsStream::ShutdownWrite(Transport& raw) {
  if (!started()) {
    raw.ShutdownWrite();
    return;
  }
  if (secure()) {
    // close_notify first (the spec: shut down TLS before the socket).
    session_->CloseWrite().IgnoreError();
  }
  shutdown_pending_ = true;
  Flush(raw);
}

bool TlsStream::has_buffered_input() const {
  return secure() && session_->can_decrypt();
}

Direction TlsStream::wants() const {
  if (!started()) return Direction::kNone;
  return session_->wants();
}

}  // namespace nbd::adapters
