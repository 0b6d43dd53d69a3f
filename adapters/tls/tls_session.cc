// nbd::tls::TlsSession over GnuTLS. The push function appends to out_ and
// never blocks; the pull function serves in_ and says EAGAIN when it is
// empty, so every GnuTLS call returns at once and the caller's loop decides
// when bytes move.
#include "adapters/tls/tls_session.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "protocol/status.h"

namespace nbd::tls {
namespace {

gnutls_session_t S(void* p) { return static_cast<gnutls_session_t>(p); }

std::string GnutlsText(int rc) { return gnutls_strerror(rc); }

bool Exists(const std::string& path) {
  std::ifstream f(path);
  return f.good();
}

// A PSK file is local configuration, but still bounded: nothing we read
// grows without limit.
constexpr size_t kMaxPskFileBytes = 1 << 20;

absl::StatusOr<std::string> PskKeyFor(const std::string& path,
                                      const std::string& username) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return ErrnoStatus(ENOENT,
                       absl::StrCat("TLS: cannot read PSK file ", path));
  }
  std::string text(kMaxPskFileBytes + 1, '\0');
  f.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(f.gcount()));
  if (text.size() > kMaxPskFileBytes) {
    return ErrnoStatus(
        EFBIG, absl::StrCat("TLS: PSK file ", path, " is larger than 1 MiB"));
  }
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripTrailingAsciiWhitespace(line);
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (line.substr(0, colon) == username) {
      return std::string(line.substr(colon + 1));
    }
  }
  return ErrnoStatus(
      ENOENT, absl::StrCat("TLS: PSK file ", path, " has no key for user '",
                           username, "'"));
}

absl::Status LoadError(int rc, const std::string& path) {
  return ErrnoStatus(
      rc == GNUTLS_E_FILE_ERROR ? ENOENT : EINVAL,
      absl::StrCat("TLS: cannot load ", path, ": ", GnutlsText(rc)));
}

}  // namespace

// The GnuTLS credential objects, freed after the session.
struct TlsSession::Credentials {
  gnutls_certificate_credentials_t x509 = nullptr;
  gnutls_psk_client_credentials_t psk_client = nullptr;
  gnutls_psk_server_credentials_t psk_server = nullptr;
  ~Credentials() {
    if (x509 != nullptr) gnutls_certificate_free_credentials(x509);
    if (psk_client != nullptr) gnutls_psk_free_client_credentials(psk_client);
    if (psk_server != nullptr) gnutls_psk_free_server_credentials(psk_server);
  }
};

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::Create(
    Role role, const TlsOptions& options) {
  std::unique_ptr<TlsSession> t(new TlsSession());
  t->role_ = role;
  t->hostname_ = options.hostname;
  t->credentials_ = std::make_unique<Credentials>();
  Credentials& c = *t->credentials_;
  t->psk_ = !options.psk_file.empty();
  const bool client = role == Role::kClient;
  gnutls_session_t s = nullptr;
  int rc = gnutls_init(&s, (client ? GNUTLS_CLIENT : GNUTLS_SERVER) |
                               GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
  if (rc != GNUTLS_E_SUCCESS) {
    return ErrnoStatus(ENOMEM,
                       absl::StrCat("TLS: gnutls_init: ", GnutlsText(rc)));
  }
  t->session_ = s;

  std::string priority = options.priority.empty() ? "NORMAL" : options.priority;
  if (t->psk_) {
    // The PSK key exchanges are not in NORMAL; add them as nbdkit does.
    absl::StrAppend(&priority, ":+ECDHE-PSK:+DHE-PSK:+PSK");
    if (client) {
      if (options.username.empty()) {
        return ErrnoStatus(EINVAL, "TLS: a PSK file needs a user name");
      }
      absl::StatusOr<std::string> key =
          PskKeyFor(options.psk_file, options.username);
      if (!key.ok()) return key.status();
      rc = gnutls_psk_allocate_client_credentials(&c.psk_client);
      if (rc != GNUTLS_E_SUCCESS) return LoadError(rc, options.psk_file);
      gnutls_datum_t datum;
      datum.data = reinterpret_cast<unsigned char*>(key->data());
      datum.size = static_cast<unsigned>(key->size());
      rc = gnutls_psk_set_client_credentials(
          c.psk_client, options.username.c_str(), &datum, GNUTLS_PSK_KEY_HEX);
      if (rc != GNUTLS_E_SUCCESS) return LoadError(rc, options.psk_file);
      rc = gnutls_credentials_set(s, GNUTLS_CRD_PSK, c.psk_client);
    } else {
      if (!Exists(options.psk_file)) {
        return ErrnoStatus(ENOENT, absl::StrCat("TLS: cannot read PSK file ",
                                                options.psk_file));
      }
      rc = gnutls_psk_allocate_server_credentials(&c.psk_server);
      if (rc != GNUTLS_E_SUCCESS) return LoadError(rc, options.psk_file);
      rc = gnutls_psk_set_server_credentials_file(c.psk_server,
                                                  options.psk_file.c_str());
      if (rc != GNUTLS_E_SUCCESS) return LoadError(rc, options.psk_file);
      gnutls_psk_set_server_known_dh_params(c.psk_server,
                                            GNUTLS_SEC_PARAM_MEDIUM);
      rc = gnutls_credentials_set(s, GNUTLS_CRD_PSK, c.psk_server);
    }
    if (rc != GNUTLS_E_SUCCESS) return LoadError(rc, options.psk_file);
  } else {
    rc = gnutls_certificate_allocate_credentials(&c.x509);
    if (rc != GNUTLS_E_SUCCESS) {
      return ErrnoStatus(ENOMEM, absl::StrCat("TLS: ", GnutlsText(rc)));
    }
    const std::string& dir = options.certificates_dir;
    const std::string ca = absl::StrCat(dir, "/ca-cert.pem");
    const std::string crl = absl::StrCat(dir, "/ca-crl.pem");
    const std::string cert =
        absl::StrCat(dir, client ? "/client-cert.pem" : "/server-cert.pem");
    const std::string key =
        absl::StrCat(dir, client ? "/client-key.pem" : "/server-key.pem");
    const bool need_ca = client || options.require_client_certificate;
    if (dir.empty()) {
      if (!client) {
        return ErrnoStatus(EINVAL,
                           "TLS: a server needs a certificates directory or "
                           "a PSK file");
      }
      rc = gnutls_certificate_set_x509_system_trust(c.x509);
      if (rc < 0) {
        return ErrnoStatus(ENOENT, absl::StrCat("TLS: no system trust store: ",
                                                GnutlsText(rc)));
      }
    } else if (Exists(ca)) {
      rc = gnutls_certificate_set_x509_trust_file(c.x509, ca.c_str(),
                                                  GNUTLS_X509_FMT_PEM);
      if (rc < 0) return LoadError(rc, ca);
    } else if (need_ca) {
      return ErrnoStatus(ENOENT, absl::StrCat("TLS: cannot read ", ca));
    }
    if (!dir.empty() && Exists(crl)) {
      rc = gnutls_certificate_set_x509_crl_file(c.x509, crl.c_str(),
                                                GNUTLS_X509_FMT_PEM);
      if (rc < 0) return LoadError(rc, crl);
    }
    if (!dir.empty()) {
      const bool have_cert = Exists(cert), have_key = Exists(key);
      if (!client && !(have_cert && have_key)) {
        return ErrnoStatus(
            ENOENT, absl::StrCat("TLS: a server needs ", cert, " and ", key));
      }
      if (have_cert != have_key) {
        return ErrnoStatus(
            EINVAL, absl::StrCat("TLS: ", have_cert ? cert : key, " without ",
                                 have_cert ? key : cert));
      }
      if (have_cert) {
        rc = gnutls_certificate_set_x509_key_file(
            c.x509, cert.c_str(), key.c_str(), GNUTLS_X509_FMT_PEM);
        if (rc < 0) return LoadError(rc, cert);
      }
    }
    rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c.x509);
    if (rc != GNUTLS_E_SUCCESS) return LoadError(rc, dir);
    if (client && options.verify_peer) {
      // Chain (and name, when known) are checked inside the handshake,
      // which fails on a mismatch: never skipped for a missing hostname
      // (the CVE-2024-7383 class).
      // GnuTLS keeps the pointer, not a copy: the session's own string.
      gnutls_session_set_verify_cert(
          s, t->hostname_.empty() ? nullptr : t->hostname_.c_str(), 0);
    } else if (!client && options.require_client_certificate) {
      gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
      gnutls_session_set_verify_cert(s, nullptr, 0);
    }
    if (client && !options.hostname.empty()) {
      // SNI, as libnbd sends it.
      gnutls_server_name_set(s, GNUTLS_NAME_DNS, options.hostname.data(),
                             options.hostname.size());
    }
  }
  const char* where = nullptr;
  rc = gnutls_priority_set_direct(s, priority.c_str(), &where);
  if (rc != GNUTLS_E_SUCCESS) {
    return ErrnoStatus(
        EINVAL, absl::StrCat("TLS: bad priority string '", options.priority,
                             "': ", GnutlsText(rc)));
  }
  gnutls_transport_set_ptr(s, t.get());
  gnutls_transport_set_pull_function(s, &TlsSession::Pull);
  gnutls_transport_set_push_function(s, &TlsSession::Push);
  return t;
}

TlsSession::~TlsSession() {
  if (session_ != nullptr) gnutls_deinit(S(session_));
}

long TlsSession::Pull(void* self, void* data, size_t size) {  // NOLINT
  TlsSession* t = static_cast<TlsSession*>(self);
  const size_t avail = t->in_tail_ - t->in_head_;
  if (avail == 0) {
    if (t->eof_) return 0;
    gnutls_transport_set_errno(S(t->session_), EAGAIN);
    return -1;
  }
  const size_t n = std::min(avail, size);
  std::memcpy(data, t->in_.data() + t->in_head_, n);
  t->in_head_ += n;
  if (t->in_head_ == t->in_tail_) t->in_head_ = t->in_tail_ = 0;
  return static_cast<long>(n);  // NOLINT
}

long TlsSession::Push(void* self, const void* data, size_t size) {  // NOLINT
  TlsSession* t = static_cast<TlsSession*>(self);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  // Copied: GnuTLS hands over one record (at most 16 KiB) at a time, and
  // queueing them lets one sendmsg take many; sending each from GnuTLS's
  // buffer at once would save this copy but cost a system call per record.
  t->out_.insert(t->out_.end(), p, p + size);
  return static_cast<long>(size);  // NOLINT
}

absl::Status TlsSession::Fail(absl::Status why) {
  if (failure_.ok()) failure_ = std::move(why);
  return failure_;
}

void TlsSession::FeedCiphertext(absl::Span<const uint8_t> bytes) {
  absl::Span<uint8_t> into = CiphertextBuffer(bytes.size());
  if (!bytes.empty()) std::memcpy(into.data(), bytes.data(), bytes.size());
  CommitCiphertext(bytes.size());
}

absl::Span<uint8_t> TlsSession::CiphertextBuffer(size_t size) {
  if (in_tail_ + size > in_.size()) {
    // Move the unread bytes to the front first (they are few: GnuTLS pulls
    // whole records as soon as they are complete), then grow if that is
    // not enough. Not value-initialized beyond what is needed: a receive
    // overwrites it.
    if (in_head_ > 0) {
      std::memmove(in_.data(), in_.data() + in_head_, in_tail_ - in_head_);
      in_tail_ -= in_head_;
      in_head_ = 0;
    }
    if (in_tail_ + size > in_.size()) in_.resize(in_tail_ + size);
  }
  return absl::MakeSpan(in_.data() + in_tail_, size);
}

void TlsSession::CommitCiphertext(size_t n) {
  n = std::min(n, in_.size() - in_tail_);
  in_tail_ += n;
  if (n > 0) fresh_input_ = true;
}

void TlsSession::FeedEof() {
  eof_ = true;
  fresh_input_ = true;
}

bool TlsSession::wants_input() const {
  return failure_.ok() && !eof_ && in_tail_ - in_head_ < kMaxBufferedCiphertext;
}

size_t TlsSession::PeekCiphertext(absl::Span<IoSlice> out) const {
  if (out.empty() || out_head_ == out_.size()) return 0;
  out[0] = IoSlice{out_.data() + out_head_, out_.size() - out_head_};
  return 1;
}

size_t TlsSession::pending_ciphertext() const {
  return out_.size() - out_head_;
}

absl::Status TlsSession::ConsumeCiphertext(size_t n) {
  if (n > pending_ciphertext()) {
    return ErrnoStatus(EINVAL,
                       absl::StrCat("ConsumeCiphertext(", n, ") with ",
                                    pending_ciphertext(), " bytes pending"));
  }
  out_head_ += n;
  if (out_head_ == out_.size()) {
    out_.clear();
    out_head_ = 0;
  } else if (out_head_ >= out_.size() / 2) {
    out_.erase(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(out_head_));
    out_head_ = 0;
  }
  return absl::OkStatus();
}

absl::Status TlsSession::Handshake() {
  if (!failure_.ok()) return failure_;
  if (handshake_done_) return absl::OkStatus();
  const int rc = gnutls_handshake(S(session_));
  if (rc == GNUTLS_E_SUCCESS) {
    handshake_done_ = true;
    return absl::OkStatus();
  }
  if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED ||
      (!gnutls_error_is_fatal(rc) && rc != GNUTLS_E_PREMATURE_TERMINATION)) {
    if (eof_ && in_head_ == in_tail_) {
      return Fail(ErrnoStatus(
          EPROTO, "TLS handshake failed: the peer closed the connection"));
    }
    return ErrnoStatus(EAGAIN, "TLS handshake in progress");
  }
  // Tell a peer that is still there why, so it fails with a reason
  // instead of an EOF.
  if (rc != GNUTLS_E_FATAL_ALERT_RECEIVED &&
      rc != GNUTLS_E_PREMATURE_TERMINATION && rc != GNUTLS_E_PULL_ERROR) {
    (void)gnutls_alert_send_appropriate(S(session_), rc);
  }
  if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
    const unsigned status = gnutls_session_get_verify_cert_status(S(session_));
    gnutls_datum_t text{};
    std::string reason = "not trusted";
    if (gnutls_certificate_verification_status_print(
            status, gnutls_certificate_type_get(S(session_)), &text, 0) ==
        GNUTLS_E_SUCCESS) {
      reason.assign(reinterpret_cast<const char*>(text.data), text.size);
      gnutls_free(text.data);
    }
    absl::StripTrailingAsciiWhitespace(&reason);
    if ((status & GNUTLS_CERT_UNEXPECTED_OWNER) != 0) {
      absl::StrAppend(&reason, " (expected '", hostname_, "')");
    }
    return Fail(ErrnoStatus(
        EACCES,
        absl::StrCat("TLS: the ", role_ == Role::kClient ? "server" : "client",
                     "'s certificate was rejected: ", reason)));
  }
  if (rc == GNUTLS_E_PREMATURE_TERMINATION || rc == GNUTLS_E_PULL_ERROR) {
    return Fail(ErrnoStatus(
        EPROTO, "TLS handshake failed: the peer closed the connection"));
  }
  if (rc == GNUTLS_E_CERTIFICATE_REQUIRED ||
      rc == GNUTLS_E_NO_CERTIFICATE_FOUND) {
    return Fail(ErrnoStatus(
        EACCES, "TLS: the client sent no certificate, and one is required"));
  }
  if (psk_ &&
      (rc == GNUTLS_E_DECRYPTION_FAILED ||
       rc == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER ||
       rc == GNUTLS_E_KEYFILE_ERROR || rc == GNUTLS_E_FATAL_ALERT_RECEIVED)) {
    return Fail(ErrnoStatus(
        EACCES, absl::StrCat("TLS: PSK authentication failed (wrong key or "
                             "unknown user?): ",
                             GnutlsText(rc))));
  }
  std::string alert;
  if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
    alert = absl::StrCat(
        " (alert: ", gnutls_alert_get_name(gnutls_alert_get(S(session_))), ")");
  }
  return Fail(ErrnoStatus(
      EPROTO, absl::StrCat("TLS handshake failed: ", GnutlsText(rc), alert)));
}

absl::StatusOr<size_t> TlsSession::Encrypt(
    absl::Span<const IoSlice> plaintext) {
  if (!failure_.ok()) return failure_;
  if (!handshake_done_ || write_closed_) {
    return ErrnoStatus(EINVAL, handshake_done_
                                   ? "Encrypt() after CloseWrite()"
                                   : "Encrypt() before the TLS handshake");
  }
  size_t taken = 0;
  for (const IoSlice& slice : plaintext) {
    size_t done = 0;
    while (done < slice.size && pending_ciphertext() < kMaxPendingCiphertext) {
      const ssize_t n =
          gnutls_record_send(S(session_), slice.data + done, slice.size - done);
      if (n < 0) {
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) break;
        return Fail(
            ErrnoStatus(EPROTO, absl::StrCat("TLS send: ", GnutlsText(n))));
      }
      done += static_cast<size_t>(n);
    }
    taken += done;
    if (done < slice.size) break;
  }
  return taken;
}

absl::StatusOr<size_t> TlsSession::Decrypt(absl::Span<uint8_t> into) {
  if (!failure_.ok()) return failure_;
  if (!handshake_done_) {
    return ErrnoStatus(EINVAL, "Decrypt() before the TLS handshake");
  }
  if (into.empty()) return ErrnoStatus(EINVAL, "Decrypt() into no bytes");
  for (int tries = 0; tries < 16; ++tries) {
    const ssize_t n = gnutls_record_recv(S(session_), into.data(), into.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
      fresh_input_ = false;
      return ErrnoStatus(EAGAIN, "TLS: waiting for ciphertext");
    }
    if (n == GNUTLS_E_PREMATURE_TERMINATION || n == GNUTLS_E_PULL_ERROR) {
      if (write_closed_) return size_t{0};
      return Fail(ErrnoStatus(ECONNRESET,
                              "TLS: the peer closed the connection without "
                              "close_notify"));
    }
    if (!gnutls_error_is_fatal(static_cast<int>(n)))
      continue;  // e.g. rehandshake asked
    return Fail(
        ErrnoStatus(EPROTO, absl::StrCat("TLS receive: ", GnutlsText(n))));
  }
  return ErrnoStatus(EAGAIN, "TLS: waiting for ciphertext");
}

size_t TlsSession::pending_plaintext() const {
  return handshake_done_ ? gnutls_record_check_pending(S(session_)) : 0;
}

bool TlsSession::can_decrypt() const {
  return handshake_done_ && failure_.ok() &&
         (fresh_input_ || pending_plaintext() > 0);
}

absl::Status TlsSession::CloseWrite() {
  if (!failure_.ok()) return failure_;
  if (write_closed_) return absl::OkStatus();
  if (!handshake_done_) {
    return ErrnoStatus(EINVAL, "CloseWrite() before the TLS handshake");
  }
  const int rc = gnutls_bye(S(session_), GNUTLS_SHUT_WR);
  if (rc != GNUTLS_E_SUCCESS && rc != GNUTLS_E_AGAIN &&
      rc != GNUTLS_E_INTERRUPTED) {
    return Fail(ErrnoStatus(
        EPROTO, absl::StrCat("TLS close_notify: ", GnutlsText(rc))));
  }
  write_closed_ = true;
  return absl::OkStatus();
}

Direction TlsSession::wants() const {
  if (!failure_.ok()) {
    return pending_ciphertext() > 0 ? Direction::kWrite : Direction::kNone;
  }
  const bool write = pending_ciphertext() > 0;
  const bool read = !handshake_done_ && wants_input();
  if (read && write) return Direction::kBoth;
  if (write) return Direction::kWrite;
  if (read) return Direction::kRead;
  return Direction::kNone;
}

std::string TlsSession::description() const {
  if (!handshake_done_) return "";
  char* d = gnutls_session_get_desc(S(session_));
  if (d == nullptr) return "";
  std::string out(d);
  gnutls_free(d);
  return out;
}

std::string TlsSession::psk_username() const {
  if (!psk_ || role_ != Role::kServer || !handshake_done_) return "";
  const char* u = gnutls_psk_server_get_username(S(session_));
  return u != nullptr ? u : "";
}

}  // namespace nbd::tls
