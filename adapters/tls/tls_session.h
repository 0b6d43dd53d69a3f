// A TLS session driven entirely through memory: ciphertext in, ciphertext
// out, plaintext handed to and taken from the caller. It wraps GnuTLS with
// push/pull functions over its own buffers, so it owns no file descriptor
// and makes no system call of its own (loading credentials in Create()
// reads files). This is the layer that sits between a transport and an
// nbd::Client or nbd::ServerSession once STARTTLS has been acknowledged:
//
//   transport --FeedCiphertext--> TlsSession --Decrypt--> core RecvBuffer()
//   transport <--PeekCiphertext-- TlsSession <--Encrypt-- core PeekOutput()
//
// Calling contract:
//   - Create() once per connection, after the core raised StartTls (client)
//     or acknowledged NBD_OPT_STARTTLS (server). Every byte the peer sends
//     from then on is ciphertext and goes to FeedCiphertext().
//   - Handshake() until it returns OK; between calls send what
//     PeekCiphertext() shows and feed what arrives. wants() says which.
//   - Then Encrypt() the core's output and Decrypt() into the core's input.
//   - After NBD_CMD_DISC (client) or at the end (server), CloseWrite()
//     queues close_notify; send it before shutting down the socket's write
//     side.
// Any error other than EAGAIN is final: the session is
// failed, failure() says why, and every later call returns that error.
// Not thread-safe; one thread at a time.
#ifndef NBD_ADAPTERS_TLS_TLS_SESSION_H_
#define NBD_ADAPTERS_TLS_TLS_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protocol/io.h"
#include "protocol/tls_credentials.h"

namespace nbd::tls {

enum class Role { kClient, kServer };

// What a session authenticates with (protocol/tls_credentials.h).
using TlsOptions = ::nbd::TlsCredentials;

// Ciphertext the session keeps before Encrypt() stops taking plaintext:
// the caller must send some first. Bounds memory per connection.
inline constexpr size_t kMaxPendingCiphertext = 256 * 1024;
// Ciphertext received and not yet processed beyond which wants_input() is
// false: four maximal TLS records.
inline constexpr size_t kMaxBufferedCiphertext = 4 * (16384 + 256);

class TlsSession {
 public:
  // Loads the credentials and sets up a session for `role`. Errors:
  // InvalidArgument (EINVAL) for inconsistent options (a client key without
  // a certificate, a PSK file without a user, a bad priority string),
  // NotFound (ENOENT) or the file's error for credentials that cannot be
  // read or parsed, with the path in the message.
  static absl::StatusOr<std::unique_ptr<TlsSession>> Create(
      Role role, const TlsOptions& options);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // ---- Ciphertext (the transport side) -----------------------------------
  // Bytes received from the peer; all are kept until the handshake or
  // Decrypt() uses them. Receive only while wants_input() is true.
  void FeedCiphertext(absl::Span<const uint8_t> bytes);
  // The same without a copy: a span of `size` bytes at the end of the
  // session's ciphertext buffer to receive into, valid until the next call
  // on the session; then CommitCiphertext(n) with the n <= size bytes
  // received (more is clamped to the span).
  absl::Span<uint8_t> CiphertextBuffer(size_t size);
  void CommitCiphertext(size_t n);
  // The peer closed its write side (recv returned 0).
  void FeedEof();
  bool wants_input() const;
  // Ciphertext to send: one slice (or none). ConsumeCiphertext(n) after
  // sending n bytes; n must not exceed pending_ciphertext() (EINVAL).
  size_t PeekCiphertext(absl::Span<IoSlice> out) const;
  size_t pending_ciphertext() const;
  absl::Status ConsumeCiphertext(size_t n);

  // ---- Handshake --------------------------------------------------------
  // Advances the handshake with the input fed so far. OK once it is done;
  // EAGAIN while it waits for the peer. Failures: EACCES when the peer's
  // certificate is not accepted or missing,
  // with GnuTLS's reason ("The certificate issuer is unknown", "The
  // certificate's owner does not match hostname 'x'"); otherwise EPROTO
  // with GnuTLS's message (e.g. the peer closed mid-handshake).
  absl::Status Handshake();
  bool handshake_done() const { return handshake_done_; }

  // ---- Plaintext --------------------------------------------------------
  // Encrypts from the gather list into pending ciphertext; returns the
  // plaintext bytes taken, fewer than offered once kMaxPendingCiphertext
  // is reached. Only after the handshake and before CloseWrite().
  absl::StatusOr<size_t> Encrypt(absl::Span<const IoSlice> plaintext);
  // Decrypts into `into`. Returns the bytes written (> 0), 0 at the peer's
  // close_notify (a clean end of the stream), or EAGAIN when
  // more ciphertext is needed. The peer's EOF without close_notify is
  // ECONNRESET, except after our own CloseWrite(): then it is a clean end
  // too (qemu-nbd closes so after NBD_CMD_DISC, and libnbd accepts it).
  absl::StatusOr<size_t> Decrypt(absl::Span<uint8_t> into);
  // Plaintext already decrypted and waiting (Decrypt() returns it without
  // new ciphertext).
  size_t pending_plaintext() const;
  // Whether Decrypt() may make progress without new ciphertext: plaintext
  // is waiting, or ciphertext (or the EOF) came after the last Decrypt()
  // that said EAGAIN.
  bool can_decrypt() const;

  // Queues close_notify (GnuTLS's bye with SHUT_WR). Encrypt() is refused
  // afterwards. Idempotent.
  absl::Status CloseWrite();
  bool write_closed() const { return write_closed_; }

  // What the session needs from the transport now: kWrite while ciphertext
  // is pending, kRead while the handshake waits for the peer (after the
  // handshake reading is the caller's decision: it reads when its core
  // wants input).
  Direction wants() const;

  // After the handshake: GnuTLS's description of the session, e.g.
  // "(TLS1.3)-(ECDHE-SECP256R1)-(ECDSA-SECP256R1-SHA256)-(AES-256-GCM)".
  std::string description() const;
  bool uses_psk() const { return psk_; }
  // The PSK user name a server session accepted ("" otherwise).
  std::string psk_username() const;
  const absl::Status& failure() const { return failure_; }

 private:
  struct Credentials;
  TlsSession() = default;
  absl::Status Fail(absl::Status why);
  static long Pull(void* self, void* data, size_t size);        // NOLINT
  static long Push(void* self, const void* data, size_t size);  // NOLINT

  void* session_ = nullptr;  // gnutls_session_t
  std::unique_ptr<Credentials> credentials_;
  Role role_ = Role::kClient;
  std::string hostname_;  // what the server certificate must name
  bool psk_ = false;
  bool handshake_done_ = false;
  bool write_closed_ = false;
  bool eof_ = false;
  bool fresh_input_ = false;  // fed since Decrypt() last said EAGAIN
  absl::Status failure_;
  std::vector<uint8_t> in_;  // ciphertext received: [in_head_, in_tail_)
  size_t in_head_ = 0;
  size_t in_tail_ = 0;
  std::vector<uint8_t> out_;  // ciphertext to send, from out_head_ on
  size_t out_head_ = 0;
};

}  // namespace nbd::tls

#endif  // NBD_ADAPTERS_TLS_TLS_SESSION_H_
