#include "tests/testing/tls_certs.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testing/servers.h"

namespace nbd::test {
namespace {

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// Runs a shell command line, keeping its output for the error.
absl::Status Run(const std::string& command) {
  const std::string line = command + " 2>&1";
  FILE* p = popen(line.c_str(), "r");
  if (p == nullptr) return absl::InternalError("popen failed");
  std::string out;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int rc = pclose(p);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("`", command, "` failed (", rc, "): ", out));
  }
  return absl::OkStatus();
}

absl::Status Write(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return f.good() ? absl::OkStatus()
                  : absl::InternalError(absl::StrCat("cannot write ", path));
}

absl::Status Key(const std::string& path) {
  return Run(
      absl::StrCat("certtool --generate-privkey --key-type=ecdsa "
                   "--outfile ",
                   Quote(path)));
}

absl::Status Ca(const std::string& dir, const std::string& name) {
  const std::string tmpl = dir + "/ca.tmpl";
  if (auto s = Write(tmpl, absl::StrCat("cn = \"", name,
                                        "\"\nca\ncert_signing_key\n"
                                        "crl_signing_key\n"
                                        "expiration_days = 3650\n"));
      !s.ok()) {
    return s;
  }
  if (auto s = Key(dir + "/ca-key.pem"); !s.ok()) return s;
  return Run(absl::StrCat("certtool --generate-self-signed --load-privkey ",
                          Quote(dir + "/ca-key.pem"), " --template ",
                          Quote(tmpl), " --outfile ",
                          Quote(dir + "/ca-cert.pem")));
}

// A certificate signed by the CA whose files are in `ca_dir`.
absl::Status Signed(const std::string& ca_dir, const std::string& dir,
                    const std::string& who, const std::string& tmpl_text) {
  const std::string tmpl = dir + "/" + who + ".tmpl";
  if (auto s = Write(tmpl, tmpl_text); !s.ok()) return s;
  if (auto s = Key(dir + "/" + who + "-key.pem"); !s.ok()) return s;
  return Run(absl::StrCat(
      "certtool --generate-certificate --load-privkey ",
      Quote(dir + "/" + who + "-key.pem"), " --load-ca-certificate ",
      Quote(ca_dir + "/ca-cert.pem"), " --load-ca-privkey ",
      Quote(ca_dir + "/ca-key.pem"), " --template ", Quote(tmpl), " --outfile ",
      Quote(dir + "/" + who + "-cert.pem")));
}

std::string ServerTemplate(const std::string& name, bool expired) {
  std::string t = absl::StrCat(
      "organization = \"nbd-engine tests\"\ncn = \"", name, "\"\ndns_name = \"",
      name, "\"\n", name == "localhost" ? "ip_address = \"127.0.0.1\"\n" : "",
      "tls_www_server\nencryption_key\nsigning_key\n");
  if (expired) {
    absl::StrAppend(&t,
                    "activation_date = \"2000-01-01 00:00:00 UTC\"\n"
                    "expiration_date = \"2001-01-01 00:00:00 UTC\"\n");
  } else {
    absl::StrAppend(&t, "expiration_days = 3650\n");
  }
  return t;
}

constexpr const char* kClientTemplate =
    "organization = \"nbd-engine tests\"\ncn = \"client\"\n"
    "tls_www_client\nencryption_key\nsigning_key\nexpiration_days = 3650\n";

absl::Status Directory(const std::string& dir) {
  return Run(absl::StrCat("mkdir -p ", Quote(dir)));
}

// Copies the CA certificate (not its key) into a credentials directory.
absl::Status CopyCa(const std::string& from, const std::string& to) {
  return Run(absl::StrCat("cp ", Quote(from + "/ca-cert.pem"), " ",
                          Quote(to + "/ca-cert.pem")));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsCredentials>> TlsCredentials::Make() {
  if (!HaveProgram("certtool") || !HaveProgram("psktool")) {
    return absl::FailedPreconditionError(
        "certtool/psktool not found (Debian package gnutls-bin)");
  }
  absl::StatusOr<std::string> root = MakeTempDir();
  if (!root.ok()) return root.status();
  std::unique_ptr<TlsCredentials> c(new TlsCredentials());
  c->root_ = *root;
  const std::string ca_a = *root + "/ca-a", ca_b = *root + "/ca-b";
  for (const std::string& d :
       {ca_a, ca_b, c->good(), c->other_ca(), c->expired(), c->wrong_name()}) {
    if (auto s = Directory(d); !s.ok()) return s;
  }
  std::vector<absl::Status> steps;
  steps.push_back(Ca(ca_a, "nbd-engine test CA A"));
  steps.push_back(Ca(ca_b, "nbd-engine test CA B"));
  for (const auto& [ca, dir, name, expired] :
       std::vector<std::tuple<std::string, std::string, std::string, bool>>{
           {ca_a, c->good(), "localhost", false},
           {ca_b, c->other_ca(), "localhost", false},
           {ca_a, c->expired(), "localhost", true},
           {ca_a, c->wrong_name(), "nbd.example.com", false}}) {
    steps.push_back(CopyCa(ca, dir));
    steps.push_back(Signed(ca, dir, "server", ServerTemplate(name, expired)));
    steps.push_back(Signed(ca, dir, "client", kClientTemplate));
    for (const absl::Status& s : steps) {
      if (!s.ok()) return s;
    }
  }
  for (const auto& [file, users] :
       std::vector<std::pair<std::string, std::vector<std::string>>>{
           {c->good_psk(), {"alice", "bob"}}, {c->wrong_psk(), {"alice"}}}) {
    for (const std::string& u : users) {
      if (auto s = Run(absl::StrCat("psktool -u ", u, " -p ", Quote(file)));
          !s.ok()) {
        return s;
      }
    }
  }
  return c;
}

TlsCredentials::~TlsCredentials() {
  if (!root_.empty()) {
    std::string cmd = absl::StrCat("rm -rf ", Quote(root_));
    (void)std::system(cmd.c_str());
  }
}

absl::StatusOr<const TlsCredentials*> SharedTlsCredentials() {
  // Destroyed at exit, which removes the directory tree.
  static const absl::StatusOr<std::unique_ptr<TlsCredentials>> made =
      TlsCredentials::Make();
  if (!made.ok()) return made.status();
  return made->get();
}

}  // namespace nbd::test
