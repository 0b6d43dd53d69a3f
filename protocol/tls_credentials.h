// How a TLS session authenticates, in libnbd's and nbdkit's terms. The
// cores only carry this (ClientOptions::tls_credentials); the TLS layer of
// the adapters (adapters/tls, GnuTLS) acts on it. With `psk_file` set the
// session uses PSK, otherwise X.509.
#ifndef NBD_PROTOCOL_TLS_CREDENTIALS_H_
#define NBD_PROTOCOL_TLS_CREDENTIALS_H_

#include <string>

namespace nbd {

struct TlsCredentials {
  // X.509 credentials directory. Client: `ca-cert.pem` (required when the
  // directory is given; without a directory the system trust store is
  // used), optional `client-cert.pem` + `client-key.pem` and `ca-crl.pem`.
  // Server: `server-cert.pem` and `server-key.pem` (required), `ca-cert.pem`
  // (required with require_client_certificate) and optional `ca-crl.pem`.
  // Same layout as nbdkit's --tls-certificates and libnbd's
  // nbd_set_tls_certificates.
  std::string certificates_dir;
  // PSK file as written by psktool: lines `username:hexkey`. A client uses
  // the key of `username`; a server accepts every user in the file.
  std::string psk_file;
  // PSK user name (client). Empty is an error with a psk_file (the tools
  // default it to the login name, as libnbd does).
  std::string username;
  // Client: verify the server's certificate chain, and its name against
  // `hostname` when one is given (libnbd's tls-verify-peer, on by default).
  // Ignored by a server and with PSK (the key authenticates both sides).
  bool verify_peer = true;
  // Server: require a client certificate and verify it against
  // ca-cert.pem (nbdkit's --tls-verify-peer, off by default).
  bool require_client_certificate = false;
  // Client: the name the server certificate must carry (the URI's host, or
  // libnbd's tls-hostname). Empty (a Unix socket with no tls-hostname): the
  // chain is still verified, the name is not.
  std::string hostname;
  // GnuTLS priority string. PSK adds its key exchanges to it.
  std::string priority = "NORMAL";
};

}  // namespace nbd

#endif  // NBD_PROTOCOL_TLS_CREDENTIALS_H_
