// The simulation's internals (sim.h is the interface): what it knows about
// each command and connection, and the Simulation that drives them. Its
// members are defined by topic: setup.cc (configuration, failures),
// actions.cc (commands, execution, cuts, ends), options.cc (option mode),
// checks.cc (the oracle), run.cc (the action loop and the end).
#ifndef NBD_TESTS_SIM_SIMULATION_H_
#define NBD_TESTS_SIM_SIMULATION_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "adapters/server/memory_backend.h"
#include "adapters/testing/in_memory_pair.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/server/server.h"
#include "tests/sim/sim.h"
#include "tests/sim/wire_observer.h"

namespace nbd::sim::internal {

inline constexpr char kExportName[] = "sim";
inline constexpr uint8_t kPoison = 0xa5;  // read buffers start with it

// The errno a client sees for a backend errno, as the spec and the server
// map it: the NBD error values pass, EROFS is EPERM, EFBIG is ENOSPC,
// anything else EINVAL.
int WireErrno(int e);
bool Ended(const Client& c);
bool Ended(const ServerSession& s);
// Byte loops are slow in the unoptimized default build; these are not.
bool AllZero(const uint8_t* p, size_t n);
bool SameBytes(const uint8_t* a, const uint8_t* b, size_t n);
// "OK" or "errno N (message)".
std::string Str(const absl::Status& s);

// One command as the simulation issued it, and what became of it.
struct Cmd {
  Cookie cookie = 0;
  uint64_t tag = 0;
  Command type = Command::kRead;
  uint16_t flags = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool report_chunks = false;
  std::unique_ptr<std::vector<uint8_t>> buffer;  // READ
  std::vector<uint8_t> data;                     // WRITE

  // Server side.
  bool seen = false;
  bool executed = false;
  bool faulted = false;
  int fault_errno = 0;
  int rejected = 0;  // the errno the session itself must answer with
  uint64_t read_before = 0;
  std::vector<uint8_t> snapshot;  // READ/BLOCK_STATUS: the model then

  // Client side.
  bool completed = false;
  absl::Status status;
  size_t completion_event = 0;  // index in the client's event log
  uint64_t chunk_bytes = 0;     // data + hole bytes reported
  std::vector<std::pair<uint64_t, uint64_t>> chunk_ranges;
  std::vector<ReadChunk> error_chunks;
  size_t extents_events = 0;
};

// The export, its block sizes and what it advertises.
struct ExportSetup {
  uint64_t size = 0;
  size_t page_size = MemoryBackend::kDefaultPageSize;
  ExportInfo info;
};

struct Conn {
  int id = 0;
  ClientOptions copts;
  ServerOptions sopts;
  std::unique_ptr<InMemoryPair> pair;
  std::map<Cookie, Cmd> cmds;
  size_t client_seen = 0;  // events checked so far
  size_t server_seen = 0;
  ClientStreamObserver c2s;
  std::unique_ptr<ServerStreamObserver> s2c;

  // Expected negotiation.
  bool structured = false;
  bool extended = false;
  bool block_status = false;

  bool connected = false;
  bool transmission_started = false;
  bool disconnect_called = false;  // Disconnect() or Shutdown() accepted
  bool abandon_called = false;
  bool shutdown_in_handshake = false;  // or NBD_OPT_ABORT (OptAbort)

  // Option mode (ClientOptions::option_mode).
  bool parked = false;  // Opt*() calls are allowed
  std::optional<Option> pending_option;
  int options_left = 0;                   // before OptGo()
  std::string export_name = kExportName;  // as set by SetExportName()
  size_t exports_listed = 0;
  bool renegotiated = false;  // OptStructuredReply/OptExtendedHeaders OK
  bool go_ok = false;         // OptGo() completed OK
  std::set<RequestHandle> replies_sent;
  bool eshutdown = false;  // a request was failed with ESHUTDOWN
  bool shutdown_write = false;
  size_t cuts = 0;
  // Actions at which this connection is cut, or shut down (scheduled by
  // ConfigureRandom()).
  std::vector<uint64_t> cut_actions;
  std::optional<uint64_t> end_action;
  bool client_ended = false;
  bool server_ended = false;
  size_t client_end_event = 0;
  bool final_checked = false;

  Client& client() { return pair->client(); }
  ServerSession& server() { return pair->server(); }
};

class Simulation {
 public:
  Simulation(const SimOptions& options, std::optional<CutScenario> cut)
      : opts_(options), cut_(cut), rng_(options.seed) {
    log_ = options.log != nullptr ? options.log : &std::cerr;
  }

  SimResult Run();

 private:
  // ---- Randomness ----------------------------------------------------------
  uint64_t R(uint64_t n) { return n <= 1 ? 0 : rng_() % n; }
  bool P(uint64_t num, uint64_t den) { return R(den) < num; }
  template <typename T>
  T Pick(std::initializer_list<T> v) {
    return *(v.begin() + R(v.size()));
  }

  // ---- Setup ---------------------------------------------------------------
  void ConfigureRandom();
  void ConfigureCut();
  void AddConn(ClientOptions copts, ServerOptions sopts);

  // ---- Actions -------------------------------------------------------------
  void RandomAction();
  void IssueRandomCommand(Conn& c);
  void IssueInvalidCommand(Conn& c);
  void IssueRejectedCommand(Conn& c);
  // Issues a command. A valid one must be accepted while the connection
  // is up; any must be refused once it is not.
  absl::StatusOr<Cookie> Issue(Conn& c, Command type, uint16_t flags,
                               uint64_t offset, uint64_t length,
                               bool report_chunks, std::vector<uint8_t> data,
                               bool valid, int rejected = 0);
  void Execute(Conn& c, size_t index, bool allow_fault);
  void RandomCut(Conn& c);
  void RandomEnd(Conn& c);
  void EndConn(Conn& c);
  void Finish();
  Split RandomSplit();
  size_t RandomAmount();

  // ---- Checks --------------------------------------------------------------
  void Check(Conn& c);
  void CheckClientEvents(Conn& c);
  void CheckServerEvents(Conn& c);
  void OnConnected(Conn& c);
  void OnOptionCompleted(Conn& c, const OptionCompleted& e);
  void OptionStep(Conn& c);
  void OnCompleted(Conn& c, const CommandCompleted& e, size_t index);
  void CheckEnd(Conn& c);
  bool IssueExpected(Conn& c);
  void Fail(Conn* c, std::string what);
  std::string DescribeConn(Conn& c);

  void Log(const std::string& line) {
    if (opts_.verbose) *log_ << "[" << action_ << "] " << line << "\n";
  }
  bool verbose() const { return opts_.verbose; }

  SimOptions opts_;
  std::optional<CutScenario> cut_;
  std::ostream* log_;
  std::mt19937_64 rng_;
  SimResult result_;
  bool failed_ = false;
  uint64_t action_ = 0;

  ExportSetup export_;
  std::unique_ptr<MemoryBackend> backend_;
  std::vector<uint8_t> model_;
  std::vector<std::unique_ptr<Conn>> conns_;

  // Fault profile of this run.
  uint64_t fault_per_mille_ = 0;  // backend errors per executed request
  bool cuts_ = false;             // connections get cut
  uint64_t invalid_per_mille_ = 0;
  uint64_t max_commands_in_flight_ = 0;
  uint64_t actions_ = 0;
};

}  // namespace nbd::sim::internal

#endif  // NBD_TESTS_SIM_SIMULATION_H_
