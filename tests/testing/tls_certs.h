// Throw-away TLS credentials for tests, made with GnuTLS's certtool and
// psktool (Debian gnutls-bin) in a fresh /tmp directory:
//
//   auto creds = TlsCredentials::Make();
//   options.certificates_dir = (*creds)->good();
//
// Every directory uses the layout libnbd and nbdkit read (ca-cert.pem,
// server-cert.pem, server-key.pem, client-cert.pem, client-key.pem). ECDSA
// keys keep generation to a few tens of milliseconds. The directory tree is
// removed when the object is destroyed.
#ifndef NBD_TESTS_TESTING_TLS_CERTS_H_
#define NBD_TESTS_TESTING_TLS_CERTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace nbd::test {

class TlsCredentials {
 public:
  // Fails (with certtool's output) if certtool or psktool is missing or
  // fails.
  static absl::StatusOr<std::unique_ptr<TlsCredentials>> Make();
  ~TlsCredentials();
  TlsCredentials(const TlsCredentials&) = delete;
  TlsCredentials& operator=(const TlsCredentials&) = delete;

  const std::string& root() const { return root_; }
  // CA A; server certificate for "localhost" / 127.0.0.1; a client
  // certificate; all valid.
  std::string good() const { return root_ + "/good"; }
  // CA B (a different CA) with its own server and client certificates:
  // as a client's directory it distrusts good()'s server, as a server's it
  // presents a certificate good()'s clients reject.
  std::string other_ca() const { return root_ + "/other"; }
  // CA A, but the server certificate expired in 2001.
  std::string expired() const { return root_ + "/expired"; }
  // CA A, a valid server certificate for "nbd.example.com" only.
  std::string wrong_name() const { return root_ + "/wrongname"; }
  // PSK files: user "alice" (and "bob" in good_psk()); wrong_psk() has
  // another key for "alice".
  std::string good_psk() const { return root_ + "/keys.psk"; }
  std::string wrong_psk() const { return root_ + "/wrong.psk"; }

 private:
  TlsCredentials() = default;
  std::string root_;
};

// One set of credentials for the whole test binary, made on first use and
// removed when the binary exits: what a suite's SetUpTestSuite() takes
// instead of making (and deleting) its own. The error of Make() if that
// failed (every later call returns it too).
absl::StatusOr<const TlsCredentials*> SharedTlsCredentials();

}  // namespace nbd::test

#endif  // NBD_TESTS_TESTING_TLS_CERTS_H_
