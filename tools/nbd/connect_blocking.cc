#include "tools/nbd/connect_blocking.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "adapters/connect/connect.h"
#include "tools/nbd/diag.h"

namespace nbd::tool {

absl::StatusOr<std::unique_ptr<adapters::BlockingClient>> ConnectBlocking(
    const std::string& uri, ClientOptions options, const GlobalOptions& g) {
  Debug(g, absl::StrCat("connecting to ", uri));
  absl::StatusOr<adapters::Connection> conn =
      adapters::ConnectUri(uri, g.timeout, adapters::UriPolicy::Trusted());
  if (!conn.ok()) return conn.status();
  Debug(g, absl::StrCat("connected; handshake (export \"", conn->export_name,
                        "\"", options.option_mode ? ", option mode" : "", ")"));
  adapters::EventObserver observer;
  if (g.debug) {
    // Every protocol message both ways, from the core's trace.
    options.trace = true;
    observer = [g](const ClientEvent& e) {
      if (auto* t = std::get_if<ClientTrace>(&e)) Debug(g, t->message);
    };
  }
  absl::StatusOr<std::unique_ptr<adapters::BlockingClient>> client =
      adapters::BlockingClient::Connect(std::move(*conn), std::move(options),
                                        g.timeout, nullptr,
                                        std::move(observer));
  if (!client.ok()) {
    // The adapter's own wait errors already say "handshake: ...".
    std::string reason = StatusText(client.status());
    if (absl::StartsWith(reason, "handshake")) return client.status();
    return absl::Status(client.status().code(),
                        absl::StrCat("handshake: ", reason));
  }
  const Client& c = (*client)->client();
  Debug(g, absl::StrCat("handshake done: protocol ",
                        ProtocolVariantName(c.protocol()),
                        ", structured replies ", c.structured_replies(),
                        ", extended headers ", c.extended_headers(), ", phase ",
                        ClientPhaseName(c.phase())));
  return client;
}

void DisconnectBlocking(adapters::BlockingClient& client,
                        const GlobalOptions& g) {
  absl::Status s = client.Shutdown(0, g.timeout);
  if (s.ok()) {
    Debug(g, "server closed the connection");
  } else {
    Debug(g, absl::StrCat("disconnect: ", StatusText(s),
                          " (connection closed by us)"));
  }
}

}  // namespace nbd::tool
