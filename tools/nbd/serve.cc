// `nbd serve`: the embedded epoll server in the foreground until SIGINT or
// SIGTERM, with the server's bounds (EpollServerOptions) as options:
// --max-connections, --handshake-timeout, --max-queued-replies, and TLS with
// nbdkit's --tls, --tls-certificates, --tls-psk, --tls-verify-peer. With
// --debug,
// every connection's protocol trace goes to stderr as "nbd: debug: [conn N]:
// <line>" (N counts accepted connections from 1).
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "adapters/server/backend.h"
#include "adapters/server/epoll_server.h"
#include "adapters/server/file_backend.h"
#include "adapters/server/memory_backend.h"
#include "adapters/server/null_backend.h"
#include "adapters/tls/tls_session.h"
#include "protocol/status.h"
#include "tools/nbd/args.h"
#include "tools/nbd/command.h"
#include "tools/nbd/diag.h"
#include "tools/nbd/usage.h"

namespace nbd::tool {
namespace {

// --read-only for a backend that has no such mode of its own (null): the
// export is advertised read-only, so the session refuses write-like
// commands with EPERM before they get here; the checks below only guard
// against a bypass.
class ReadOnlyBackend : public Backend {
 public:
  explicit ReadOnlyBackend(std::shared_ptr<Backend> inner)
      : inner_(std::move(inner)) {}
  uint64_t Size() const override { return inner_->Size(); }
  BackendCapabilities Capabilities() const override {
    BackendCapabilities c = inner_->Capabilities();
    c.read_only = true;
    return c;
  }
  absl::Status Read(uint64_t offset, absl::Span<uint8_t> buffer,
                    std::vector<ReadRun>* runs) override {
    return inner_->Read(offset, buffer, runs);
  }
  absl::Status Write(uint64_t, absl::Span<const uint8_t>, bool) override {
    return Refused();
  }
  absl::Status Flush() override { return inner_->Flush(); }
  absl::Status Trim(uint64_t, uint64_t, bool) override { return Refused(); }
  absl::Status Zero(uint64_t, uint64_t, uint32_t) override { return Refused(); }
  absl::Status Cache(uint64_t offset, uint64_t length) override {
    return inner_->Cache(offset, length);
  }
  absl::Status BlockStatus(uint64_t offset, uint64_t length, size_t max_extents,
                           std::vector<Extent>* extents) override {
    return inner_->BlockStatus(offset, length, max_extents, extents);
  }

 private:
  static absl::Status Refused() {
    return ErrnoStatus(EPERM, "read-only export");
  }
  std::shared_ptr<Backend> inner_;
};

// The backend the options ask for, or a usage error (kInvalidArgument) /
// an error opening the file.
absl::StatusOr<std::shared_ptr<Backend>> MakeBackend(const ParsedArgs& a,
                                                     std::string* what) {
  const bool read_only = a.Has("--read-only");
  int kinds = (a.Value("--memory") != nullptr) +
              (a.Value("--file") != nullptr) + (a.Value("--null") != nullptr);
  if (kinds != 1) {
    return absl::InvalidArgumentError(
        "serve: give exactly one of --memory SIZE, --file PATH, --null SIZE");
  }
  if (const std::string* path = a.Value("--file")) {
    absl::StatusOr<std::unique_ptr<FileBackend>> file =
        FileBackend::Open(*path, read_only);
    if (!file.ok()) {
      return absl::Status(absl::StatusCode::kUnavailable,
                          absl::StrCat("serve: --file ", *path, ": ",
                                       StatusText(file.status())));
    }
    *what = absl::StrCat("file ", *path);
    return std::shared_ptr<Backend>(std::move(*file));
  }
  const bool memory = a.Value("--memory") != nullptr;
  const std::string& size_text =
      memory ? *a.Value("--memory") : *a.Value("--null");
  absl::StatusOr<uint64_t> size = ParseSize(size_text);
  if (!size.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("serve: ", size.status().message()));
  }
  if (*size > static_cast<uint64_t>(INT64_MAX)) {
    return absl::InvalidArgumentError("serve: size too large");
  }
  if (memory) {
    *what = absl::StrCat("memory ", *size, " bytes");
    return std::shared_ptr<Backend>(std::make_shared<MemoryBackend>(
        *size, MemoryBackend::kDefaultPageSize, read_only));
  }
  *what = absl::StrCat("null ", *size, " bytes");
  auto null = std::make_shared<NullBackend>(*size);
  if (read_only) return std::make_shared<ReadOnlyBackend>(std::move(null));
  return std::shared_ptr<Backend>(std::move(null));
}

// The bounds of --max-connections, --handshake-timeout and
// --max-queued-replies (EpollServerOptions has the defaults), or a usage
// error message.
absl::Status ParseBounds(const ParsedArgs& a, EpollServerOptions* o) {
  if (const std::string* v = a.Value("--max-connections")) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(*v, &n) || n == 0 || n > (1u << 20)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "serve: invalid --max-connections '", *v, "' (1 to 1048576)"));
    }
    o->max_connections = static_cast<size_t>(n);
  }
  if (const std::string* v = a.Value("--handshake-timeout")) {
    absl::StatusOr<absl::Duration> d = ParseSeconds(*v);
    if (!d.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("serve: --handshake-timeout: ", d.status().message()));
    }
    o->handshake_timeout = *d;
  }
  if (const std::string* v = a.Value("--max-queued-replies")) {
    absl::StatusOr<uint64_t> n = ParseSize(*v);
    if (!n.ok() || *n == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("serve: invalid --max-queued-replies '", *v, "'"));
    }
    o->session.output_high_water = static_cast<size_t>(
        std::min<uint64_t>(*n, std::numeric_limits<size_t>::max()));
  }
  return absl::OkStatus();
}

// --tls, --tls-certificates, --tls-psk and --tls-verify-peer (nbdkit's
// spelling) into `session`, or a usage error. The credentials are loaded
// once here, so a bad directory or key file fails at startup rather than on
// every connection.
absl::Status ParseTls(const ParsedArgs& a, ServerOptions* session) {
  const std::string* mode = a.Value("--tls");
  const std::string* certs = a.Value("--tls-certificates");
  const std::string* psk = a.Value("--tls-psk");
  const bool verify = a.Has("--tls-verify-peer");
  if (mode == nullptr || *mode == "off") {
    if (certs != nullptr || psk != nullptr || verify) {
      return absl::InvalidArgumentError(
          "serve: TLS credentials need --tls=on or --tls=require");
    }
    return absl::OkStatus();
  }
  if (*mode == "on") {
    session->tls = ServerTlsMode::kOn;
  } else if (*mode == "require") {
    session->tls = ServerTlsMode::kRequire;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "serve: invalid --tls '", *mode, "' (off, on or require)"));
  }
  if ((certs == nullptr) == (psk == nullptr)) {
    return absl::InvalidArgumentError(
        "serve: --tls needs exactly one of --tls-certificates DIR, "
        "--tls-psk FILE");
  }
  if (verify && certs == nullptr) {
    return absl::InvalidArgumentError(
        "serve: --tls-verify-peer checks client certificates: it needs "
        "--tls-certificates");
  }
  TlsCredentials& c = session->tls_credentials;
  if (certs != nullptr) c.certificates_dir = *certs;
  if (psk != nullptr) c.psk_file = *psk;
  c.require_client_certificate = verify;
  absl::StatusOr<std::unique_ptr<tls::TlsSession>> probe =
      tls::TlsSession::Create(tls::Role::kServer, c);
  if (!probe.ok()) {
    return absl::Status(
        absl::StatusCode::kUnavailable,
        absl::StrCat("serve: TLS credentials: ", StatusText(probe.status())));
  }
  return absl::OkStatus();
}

// Raises the soft open-file limit towards the hard one so that
// `connections` fit (EpollServer::Create lowers max_connections to what the
// limit allows; this makes that rare).
void RaiseDescriptorLimit(size_t connections) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  const rlim_t want = static_cast<rlim_t>(connections) + 64;
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want) return;
  rl.rlim_cur =
      rl.rlim_max == RLIM_INFINITY ? want : std::min(want, rl.rlim_max);
  setrlimit(RLIMIT_NOFILE, &rl);
}

}  // namespace

int ServeCommand(const std::vector<std::string>& args, const GlobalOptions& g) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, "serve");
  if (!parsed.ok()) {
    return UsageError(parsed.status().message(), UsageFor("serve"));
  }
  if (!parsed->positional.empty()) {
    return UsageError(absl::StrCat("serve: unexpected argument '",
                                   parsed->positional[0], "'"),
                      UsageFor("serve"));
  }
  const std::string* socket = parsed->Value("--socket");
  const std::string* port_text = parsed->Value("--port");
  if ((socket == nullptr) == (port_text == nullptr)) {
    return UsageError("serve: give exactly one of --socket PATH, --port N",
                      UsageFor("serve"));
  }
  EpollServerOptions options;
  if (socket != nullptr) {
    if (socket->empty()) {
      return UsageError("serve: --socket needs a path", UsageFor("serve"));
    }
    options.unix_path = *socket;
  } else {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(*port_text, &port) || port > 65535) {
      return UsageError(absl::StrCat("serve: invalid port '", *port_text, "'"),
                        UsageFor("serve"));
    }
    options.tcp_port = static_cast<uint16_t>(port);
  }
  if (absl::Status s = ParseBounds(*parsed, &options); !s.ok()) {
    return UsageError(s.message(), UsageFor("serve"));
  }
  if (absl::Status s = ParseTls(*parsed, &options.session); !s.ok()) {
    if (s.code() == absl::StatusCode::kInvalidArgument) {
      return UsageError(s.message(), UsageFor("serve"));
    }
    return Fail(s.message());
  }
  std::string what;
  absl::StatusOr<std::shared_ptr<Backend>> backend =
      MakeBackend(*parsed, &what);
  if (!backend.ok()) {
    if (backend.status().code() == absl::StatusCode::kInvalidArgument) {
      return UsageError(backend.status().message(), UsageFor("serve"));
    }
    return Fail(backend.status().message());
  }
  ServedExport exp;
  if (const std::string* name = parsed->Value("--name")) exp.name = *name;
  if (const std::string* d = parsed->Value("--description")) {
    exp.description = *d;
  }
  exp.backend = std::move(*backend);
  options.exports.push_back(std::move(exp));
  if (g.debug) {
    // Called on the server's loop thread; Debug() writes each line with one
    // stdio call, so lines from the two threads do not interleave. `g`
    // outlives the server, which is stopped before this function returns.
    options.on_trace = [&g](uint64_t connection, absl::string_view message) {
      Debug(g, absl::StrCat("[conn ", connection, "]: ", message));
    };
  }

  // Block the signals before any thread starts, so every thread inherits
  // the mask and only sigwait() below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const std::string where = socket != nullptr
                                ? absl::StrCat("socket ", *socket)
                                : absl::StrCat("port ", *port_text);
  const size_t wanted_connections = options.max_connections;
  const absl::Duration hs_timeout = options.handshake_timeout;
  const size_t queued_bound = options.session.output_high_water;
  const ServerTlsMode tls_mode = options.session.tls;
  RaiseDescriptorLimit(wanted_connections);
  absl::StatusOr<std::unique_ptr<EpollServer>> server =
      EpollServer::Create(std::move(options));
  if (!server.ok()) {
    return Fail(
        absl::StrCat("serve on ", where, ": ", StatusText(server.status())));
  }
  if (absl::Status s = (*server)->Start(); !s.ok()) {
    return Fail(absl::StrCat("serve on ", where, ": ", StatusText(s)));
  }
  if ((*server)->max_connections() < wanted_connections) {
    std::fprintf(stderr,
                 "nbd: warning: serving at most %zu connections, not %zu: "
                 "the open-file limit allows no more (ulimit -n)\n",
                 (*server)->max_connections(), wanted_connections);
  }
  std::printf("%s\n", (*server)->uri().c_str());
  std::fflush(stdout);
  Debug(g, absl::StrCat("serving ", what, " at ", (*server)->uri()));
  if (tls_mode != ServerTlsMode::kOff) {
    Debug(g, absl::StrCat("TLS ", ServerTlsModeName(tls_mode)));
  }
  Debug(g, absl::StrFormat(
               "bounds: %d connections, handshake timeout %s, %d bytes of "
               "queued replies per connection",
               (*server)->max_connections(), absl::FormatDuration(hs_timeout),
               queued_bound));

  int sig = 0;
  sigwait(&signals, &sig);
  Debug(g, absl::StrCat("got signal ", sig, "; stopping after ",
                        (*server)->connections_accepted(), " connections"));
  (*server)->Stop();
  return kExitOk;
}

}  // namespace nbd::tool
