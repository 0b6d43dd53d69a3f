#include "adapters/drive/drive.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "protocol/status.h"

namespace nbd::adapters {
namespace {

// OnReady() takes poll() and epoll bits alike.
static_assert(POLLIN == EPOLLIN && POLLOUT == EPOLLOUT && POLLERR == EPOLLERR &&
              POLLHUP == EPOLLHUP && POLLRDHUP == EPOLLRDHUP);
constexpr uint32_t kReadableBits =
    POLLIN | POLLPRI | POLLERR | POLLHUP | POLLRDHUP | POLLNVAL;

template <typename Session>
struct DriveTraits;

template <>
struct DriveTraits<Client> {
  static constexpr const char* kName = "ClientDrive";
  static constexpr const char* kEndTimeout = "waiting for the server to close";
  static bool Closing(const Client&) { return false; }
};

template <>
struct DriveTraits<ServerSession> {
  static constexpr const char* kName = "ServerDrive";
  static constexpr const char* kEndTimeout =
      "waiting for the client to take the last replies";
  static bool Closing(const ServerSession& session) {
    return session.phase() == ServerPhase::kClosing;
  }
};

void MakeNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  // A bad fd is reported by the first recv/sendmsg instead.
  if (flags >= 0 && (flags & O_NONBLOCK) == 0) {
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
}

}  // namespace

template <typename Session>
Drive<Session>::Drive(int fd, Options options, DriveOptions drive_options)
    : core_(options), transport_(fd, drive_options.counters) {
  ConfigureTls(transport_, options);
  deadline_.set_default_timeout(drive_options.disconnect_timeout);
  if (fd >= 0) MakeNonBlocking(fd);
}

template <typename Session>
Drive<Session>::~Drive() = default;  // transport_ closes the fd

template <typename Session>
absl::StatusOr<std::unique_ptr<Drive<Session>>> Drive<Session>::Connect(
    std::string_view uri, ClientOptions options,
    DriveOptions drive_options) requires std::same_as<Session, Client> {
  absl::StatusOr<Connection> connection =
      ConnectUri(uri, drive_options.connect_timeout, drive_options.uri_policy);
  if (!connection.ok()) return connection.status();
  options.export_name = std::move(connection->export_name);
  if (connection->uri.has_value()) {
    bool require = false;
    if (absl::Status s =
            ApplyUriTls(*connection->uri, &require, &options.tls_credentials);
        !s.ok()) {
      ::close(connection->fd);
      return s;
    }
    if (require) options.tls = TlsPolicy::kRequire;
  }

  return std::make_unique<Drive>(connection->fd, std::move(options),
                                 drive_options);
}

template <typename Session>
Direction Drive<Session>::direction() const {
  return ended() ? Direction::kNone : CombinedWants(core_.wants(), transport_);
}

template <typename Session>
short Drive<Session>::poll_events() const {  // NOLINT(runtime/int)
  return PollEventsFor(direction());
}

template <typename Session>
uint32_t Drive<Session>::epoll_events() const {
  return static_cast<uint32_t>(PollEventsFor(direction()));
}

template <typename Session>
void Drive<Session>::OnReady(uint32_t events) {
  if (events == 0) return;
  Step((events & kReadableBits) != 0);
}

template <typename Session>
void Drive<Session>::OnReadable() {
  Step(true);
}

template <typename Session>
void Drive<Session>::OnWritable() {
  Step(false);
}

template <typename Session>
void Drive<Session>::Kick() {
  Step(false);
}

template <typename Session>
int Drive<Session>::timeout_ms(absl::Time now) const {
  if (has_events()) return 0;  // pop them first
  const std::optional<absl::Time>& d = deadline_.get();
  if (!d.has_value() || ended()) return -1;
  if (*d <= now) return 0;
  const absl::Duration left = *d - now;
  int64_t ms = absl::ToInt64Milliseconds(left);  // truncates
  if (absl::Milliseconds(ms) < left) ++ms;
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

template <typename Session>
void Drive<Session>::CheckDeadline(absl::Time now) {
  if (ended() || !deadline_.Passed(now)) return;
  const char* what = disconnecting_ || DriveTraits<Session>::Closing(core_)
                         ? DriveTraits<Session>::kEndTimeout
                         : "the drive's deadline";
  GiveUp(core_, transport_, TimeoutStatus(what), [this](Event& e) { Push(e); });
  Settle();
}

template <typename Session>
absl::Status Drive<Session>::Disconnect(
    uint32_t flags) requires std::same_as<Session, Client> {
  if (ended()) return DoneError("Disconnect");
  return AfterEndRequested(core_.Disconnect(flags));
}

template <typename Session>
absl::Status Drive<Session>::Shutdown(
    uint32_t flags) requires std::same_as<Session, Client> {
  if (ended()) return DoneError("Shutdown");
  return AfterEndRequested(core_.Shutdown(flags));
}

template <typename Session>
absl::Status Drive<Session>::AfterEndRequested(absl::Status accepted) {
  // A refused request changes nothing: no bound is armed, nothing is sent.
  if (!accepted.ok()) return accepted;
  deadline_.Arm();
  disconnecting_ = true;
  Kick();
  return accepted;
}

template <typename Session>
absl::Status Drive<Session>::Abandon(absl::Status why) {
  if (ended()) return DoneError("Abandon");
  if (why.ok()) {
    return PreconditionStatus(
        EINVAL, absl::StrCat(DriveTraits<Session>::kName,
                             "::Abandon: the reason must not be OK"));
  }
  GiveUp(core_, transport_, std::move(why), [this](Event& e) { Push(e); });
  Settle();
  return absl::OkStatus();
}

template <typename Session>
absl::StatusOr<int> Drive<Session>::Release() {
  if (ended()) return DoneError("Release");
  released_ = true;
  return transport_.Release();
}

template <typename Session>
bool Drive<Session>::ended() const {
  return released_ || IsTerminal(core_.phase());
}

template <typename Session>
bool Drive<Session>::done() const {
  return ended() && !has_events();
}

template <typename Session>
std::optional<typename Drive<Session>::Event> Drive<Session>::PollEvent() {
  if (count_ == 0) {
    // Events the core raised outside the pump (calls made on it directly)
    // go through the same handling; nothing else is queued before them.
    if (!core_.has_events()) return std::nullopt;
    DrainEvents(core_, transport_, [this](Event& e) { Push(e); });
    Settle();
  }
  Event event = std::move(ring_[head_]);
  ring_[head_] = Event{};  // frees what the moved-from value still holds
  head_ = (head_ + 1) & (ring_.size() - 1);
  --count_;
  return event;
}

template <typename Session>
void Drive<Session>::Step(bool readable) {
  if (ended()) return;
  PumpOnce(core_, transport_, readable, [this](Event& e) { Push(e); });
  Settle();
}

template <typename Session>
void Drive<Session>::Push(Event& event) {
  if constexpr (std::is_same_v<Session, Client>) {
    // ShutdownWrite: DISC is out (also when the core's own Disconnect()
    // was called), so only the server's close is awaited: bound it.
    deadline_.OnEvent(event);
    if (std::holds_alternative<ShutdownWrite>(event)) disconnecting_ = true;
  }
  if (count_ == ring_.size()) {
    std::vector<Event> bigger(ring_.empty() ? 16 : 2 * ring_.size());
    for (size_t i = 0; i < count_; ++i) {
      bigger[i] = std::move(ring_[(head_ + i) & (ring_.size() - 1)]);
    }
    ring_ = std::move(bigger);
    head_ = 0;
  }
  ring_[(head_ + count_) & (ring_.size() - 1)] = std::move(event);
  ++count_;
}

template <typename Session>
void Drive<Session>::Settle() {
  if (DriveTraits<Session>::Closing(core_)) deadline_.Arm();
  if (IsTerminal(core_.phase()) && transport_.fd() >= 0) transport_.Close();
}

template <typename Session>
absl::Status Drive<Session>::DoneError(const char* call) const {
  std::string why;
  if (released_) {
    why = "its fd was released";
  } else if (!core_.dead_reason().ok()) {
    why =
        absl::StrCat("the connection is dead: ", core_.dead_reason().message());
  } else {
    why = "the connection is closed";
  }
  return PreconditionStatus(
      EINVAL, absl::StrCat(DriveTraits<Session>::kName, "::", call,
                           ": the drive is done: ", why));
}

template class Drive<Client>;
template class Drive<ServerSession>;

}  // namespace nbd::adapters
