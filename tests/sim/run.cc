// The simulation's action loop, the end of every connection and Run().
#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "tests/sim/simulation.h"

namespace nbd::sim::internal {

void Simulation::RandomAction() {
  Conn& c = *conns_[R(conns_.size())];
  InMemoryPair& p = *c.pair;
  const uint64_t pick = R(100);
  if (pick < 22) {
    if (c.copts.option_mode && !c.connected && !c.disconnect_called) {
      OptionStep(c);
    } else if (P(invalid_per_mille_, 1000)) {
      if ((c.copts.strict & ~kStrictAutoFlag) == 0) {
        IssueRejectedCommand(c);
      } else {
        IssueInvalidCommand(c);
      }
    } else if (c.client().in_flight() < max_commands_in_flight_ ||
               !IssueExpected(c)) {
      IssueRandomCommand(c);
    }
  } else if (pick < 23) {
    // Some bytes handed to an asynchronous send, sent by a later action.
    const size_t n = p.PinClientOutput(1 + R(256));
    if (verbose() && n > 0) Log(absl::StrFormat("conn%d: c2s pin %d", c.id, n));
  } else if (pick < 33) {
    const size_t n = p.SendClientOutput(RandomAmount());
    if (verbose() && n > 0)
      Log(absl::StrFormat("conn%d: c2s send %d", c.id, n));
  } else if (pick < 42) {
    const Split s = RandomSplit();
    size_t max = RandomAmount();
    if (s.piece < 64) max = std::min<size_t>(max, 1 + R(512));
    const size_t n = p.DeliverToServer(s, max);
    if (verbose()) {
      Log(absl::StrFormat("conn%d: c2s deliver %d (piece %d, %s)", c.id, n,
                          s.piece, s.path == InputPath::kFeed ? "feed" : "zc"));
    }
  } else if (pick < 50) {
    p.PollServer();
  } else if (pick < 64) {
    if (!p.held_requests().empty()) {
      Execute(c, R(p.held_requests().size()), true);
    }
  } else if (pick < 74) {
    const size_t n = p.SendServerOutput(RandomAmount());
    if (verbose() && n > 0)
      Log(absl::StrFormat("conn%d: s2c send %d", c.id, n));
  } else if (pick < 84) {
    const Split s = RandomSplit();
    size_t max = RandomAmount();
    if (s.piece < 64) max = std::min<size_t>(max, 1 + R(512));
    const size_t n = p.DeliverToClient(s, max);
    if (verbose()) {
      Log(absl::StrFormat("conn%d: s2c deliver %d (piece %d, %s)", c.id, n,
                          s.piece, s.path == InputPath::kFeed ? "feed" : "zc"));
    }
  } else if (pick < 92) {
    p.PollClient();
  } else {
    p.Step(RandomSplit(), RandomSplit());
  }
  Check(c);
  for (auto& other : conns_) {
    for (uint64_t at : other->cut_actions) {
      if (at == action_) RandomCut(*other);
    }
    if (other->end_action == action_) EndConn(*other);
  }
}

void Simulation::Finish() {
  for (auto& c : conns_) {
    Check(*c);
    EndConn(*c);
  }
  for (int round = 0; round < 100000 && !failed_; ++round) {
    bool all_done = true;
    bool moved = false;
    for (auto& cp : conns_) {
      Conn& c = *cp;
      InMemoryPair& p = *c.pair;
      ++action_;
      while (!p.held_requests().empty() && !failed_) {
        Execute(c, cut_ ? 0 : R(p.held_requests().size()), !cut_);
        moved = true;
      }
      const Split a = cut_ ? Split::All() : RandomSplit();
      const Split b = cut_ ? Split::All() : RandomSplit();
      moved |= p.Step(a, b);
      Check(c);
      if (!c.client_ended || !c.server_ended || !p.held_requests().empty()) {
        all_done = false;
      }
    }
    if (all_done) {
      for (auto& c : conns_) CheckEnd(*c);
      return;
    }
    if (!moved) {
      Fail(nullptr, "stuck: nothing moves, and a connection has not ended");
      return;
    }
  }
  Fail(nullptr, "did not finish");
}

SimResult Simulation::Run() {
  if (cut_) {
    ConfigureCut();
  } else {
    ConfigureRandom();
  }
  result_.connections = conns_.size();
  if (cut_) {
    // Handshake, then every kind of command at once, executed in order,
    // the third failing part-way; then Disconnect().
    Conn& c = *conns_[0];
    c.pair->RunUntilQuiet();
    Check(c);
    if (c.connected && IssueExpected(c)) {
      // Pages are 4096 bytes: the READs see a hole, data, a hole.
      std::vector<uint8_t> data(3000);
      for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 13 + 1);
      Issue(c, Command::kWrite, 0, 4096, 3000, false, data, true).IgnoreError();
      Issue(c, Command::kRead, 0, 0, 12288, true, {}, true).IgnoreError();
      Issue(c, Command::kRead, 0, 0, 9000, true, {}, true).IgnoreError();
      Issue(c, Command::kBlockStatus, 0, 0, 65536, false, {}, c.block_status)
          .IgnoreError();
      Issue(c, Command::kTrim, 0, 4096, 4096, false, {}, true).IgnoreError();
      Issue(c, Command::kWriteZeroes, kCmdFlagNoHole, 8192, 100, false, {},
            true)
          .IgnoreError();
      Issue(c, Command::kFlush, 0, 0, 0, false, {}, true).IgnoreError();
      Issue(c, Command::kCache, 0, 0, 4096, false, {}, true).IgnoreError();
      Issue(c, Command::kRead, c.structured ? kCmdFlagDf : 0, 0, 10000, true,
            {}, true)
          .IgnoreError();
      for (int i = 0; i < 100 && !failed_; ++i) {
        c.pair->SendClientOutput();
        c.pair->DeliverToServer();
        c.pair->PollServer();
        Check(c);
        InMemoryPair& p = *c.pair;
        while (!p.held_requests().empty() && !failed_) {
          const ServerRequest& r = p.held_requests()[0];
          if (r.cookie == 3) {
            Cmd& cmd = c.cmds[3];
            cmd.executed = cmd.faulted = true;
            cmd.fault_errno = EIO;
            cmd.read_before = 5000;
            cmd.snapshot.assign(model_.begin(), model_.begin() + cmd.length);
            BackendFault f;
            f.read_before = 5000;
            p.ExecuteWithFault(r.handle, f).IgnoreError();
          } else {
            Execute(c, 0, false);
          }
        }
        if (!p.Step()) break;
        Check(c);
      }
      EndConn(c);
    }
    Finish();
    result_.bytes_c2s = c.pair->sent(Stream::kClientToServer);
    result_.bytes_s2c = c.pair->sent(Stream::kServerToClient);
    result_.c2s_message_ends = c.c2s.boundaries();
    result_.s2c_message_ends = c.s2c->boundaries();
    return result_;
  }
  for (action_ = 0; action_ < actions_ && !failed_; ++action_) {
    RandomAction();
  }
  result_.actions = action_;
  if (!failed_) Finish();
  return result_;
}

}  // namespace nbd::sim::internal
