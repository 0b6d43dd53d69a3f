// `nbd serve`: the embedded epoll server in the foreground until SIGINT or
// SIGTERM.
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "adapters/server/backend.h"
#include "adapters/server/epoll_server.h"
#include "adapters/server/file_backend.h"
#include "adapters/server/memory_backend.h"
#include "adapters/server/null_backend.h"
#include "tools/nbd/args.h"
#include "tools/nbd/command.h"
#include "tools/nbd/diag.h"
#include "tools/nbd/usage.h"

namespace nbd::tool {
namespace {

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
  if (read_only) {
    return absl::InvalidArgumentError(
        "serve: --read-only is not supported with --null");
  }
  *what = absl::StrCat("null ", *size, " bytes");
  return std::shared_ptr<Backend>(std::make_shared<NullBackend>(*size));
}

}  // namespace

int ServeCommand(const std::vector<std::string>& args, const GlobalOptions& g) {
  absl::StatusOr<ParsedArgs> parsed =
      ParseArgs(args, {"--read-only"},
                {"--memory", "--file", "--null", "--socket", "--port", "--name",
                 "--description"});
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
  absl::StatusOr<std::unique_ptr<EpollServer>> server =
      EpollServer::Create(std::move(options));
  if (!server.ok()) {
    return Fail(
        absl::StrCat("serve on ", where, ": ", StatusText(server.status())));
  }
  if (absl::Status s = (*server)->Start(); !s.ok()) {
    return Fail(absl::StrCat("serve on ", where, ": ", StatusText(s)));
  }
  std::printf("%s\n", (*server)->uri().c_str());
  std::fflush(stdout);
  Debug(g, absl::StrCat("serving ", what, " at ", (*server)->uri()));

  int sig = 0;
  sigwait(&signals, &sig);
  Debug(g, absl::StrCat("got signal ", sig, "; stopping after ",
                        (*server)->connections_accepted(), " connections"));
  (*server)->Stop();
  return kExitOk;
}

}  // namespace nbd::tool
