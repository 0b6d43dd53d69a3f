#include "tests/adapters/interop/harness.h"

#include <thread>
#include <utility>

#include "absl/time/clock.h"

namespace nbd::test {

Op ReadOp(uint64_t offset, std::vector<uint8_t>& into, uint16_t flags) {
  Op op;
  op.kind = Op::kRead;
  op.offset = offset;
  op.length = into.size();
  op.flags = flags;
  op.read_into = into.data();
  return op;
}

Op WriteOp(uint64_t offset, const std::vector<uint8_t>& from, uint16_t flags) {
  Op op;
  op.kind = Op::kWrite;
  op.offset = offset;
  op.length = from.size();
  op.flags = flags;
  op.write_from = from.data();
  return op;
}

Op SimpleOp(Op::Kind kind, uint64_t offset, uint64_t length, uint16_t flags) {
  Op op;
  op.kind = kind;
  op.offset = offset;
  op.length = length;
  op.flags = flags;
  return op;
}

namespace {

bool AllDone(const std::vector<Op>& ops) {
  for (const Op& op : ops) {
    if (op.issued && op.completions == 0) return false;
  }
  return true;
}

}  // namespace

std::unique_ptr<Harness> Harness::Create(AdapterKind kind,
                                         adapters::SyscallCounters* counters) {
  return std::unique_ptr<Harness>(new Harness(kind, counters));
}

absl::Status Harness::Connect(int fd, ClientOptions options,
                              absl::Duration timeout) {
  auto engine = engine::Engine::Create(
      {.adapter = kind_, .timeout = timeout, .counters = counters_});
  if (!engine.ok()) return engine.status();
  engine_ = std::move(*engine);
  absl::StatusOr<engine::Export*> exp = engine_->Attach(fd, std::move(options));
  if (!exp.ok()) return exp.status();
  exp_ = *exp;
  return absl::OkStatus();
}

void Harness::IssueOne(Op& op) {
  auto done = [&op](const absl::Status& s) {
    ++op.completions;
    op.status = s;
  };
  absl::Status s;
  switch (op.kind) {
    case Op::kRead:
      s = exp_->Read(0, op.offset, absl::MakeSpan(op.read_into, op.length),
                     done, op.flags);
      break;
    case Op::kWrite:
      s = exp_->Write(0, op.offset,
                      absl::MakeConstSpan(op.write_from, op.length), op.flags,
                      done);
      break;
    case Op::kFlush:
      s = exp_->Flush(0, done, op.flags);
      break;
    case Op::kTrim:
      s = exp_->Trim(0, op.offset, op.length, op.flags, done);
      break;
    case Op::kZero:
      s = exp_->WriteZeroes(0, op.offset, op.length, op.flags, done);
      break;
    case Op::kCache:
      s = exp_->Cache(0, op.offset, op.length, op.flags, done);
      break;
    case Op::kBlockStatus:
      s = exp_->BlockStatus(
          0, op.offset, op.length,
          [&op](const absl::Status& st, uint64_t,
                const std::vector<Extent>& extents) {
            ++op.completions;
            op.status = st;
            op.extents = extents;
          },
          op.flags);
      break;
  }
  op.issued = s.ok();
  if (!s.ok()) op.status = s;
}

void Harness::IssueAll(std::vector<Op>& ops) {
  for (Op& op : ops) IssueOne(op);
}

void Harness::RunInTurn(std::vector<Op>& ops, absl::Duration timeout) {
  for (Op& op : ops) {
    IssueOne(op);
    if (!op.issued) continue;
    engine_->RunUntil([&] { return op.completions > 0; }, timeout)
        .IgnoreError();
  }
}

absl::Status Harness::Run(std::vector<Op>& ops, absl::Duration timeout) {
  if (sequential()) {
    RunInTurn(ops, timeout);
    return absl::OkStatus();
  }
  IssueAll(ops);
  return engine_->RunUntil([&] { return finished() || AllDone(ops); }, timeout);
}

absl::Status Harness::RunThenDisconnect(std::vector<Op>& ops,
                                        absl::Duration timeout) {
  if (sequential()) {
    RunInTurn(ops, timeout);
  } else {
    IssueAll(ops);
  }
  return engine_->Disconnect(timeout);
}

absl::Status Harness::RunWithInterruption(std::vector<Op>& ops,
                                          std::function<void()> midway,
                                          absl::Duration midway_delay,
                                          absl::Duration timeout) {
  if (sequential()) {
    std::thread interrupter([&] {
      absl::SleepFor(midway_delay);
      midway();
    });
    RunInTurn(ops, timeout);
    interrupter.join();
    return absl::OkStatus();
  }
  IssueAll(ops);
  // Get the requests onto the wire before interrupting.
  engine_->RunUntil([] { return false; }, midway_delay).IgnoreError();
  midway();
  return engine_->RunUntil([&] { return finished() || AllDone(ops); }, timeout);
}

absl::Status Harness::Shutdown(uint32_t flags, absl::Duration timeout) {
  return engine_->Shutdown(flags, timeout);
}

absl::StatusOr<std::vector<std::string>> Harness::OptList(
    absl::Duration timeout) {
  return exp_->OptList(timeout);
}

absl::Status Harness::OptInfo(const std::string& name, absl::Duration timeout) {
  return exp_->OptInfo(name, timeout);
}

absl::Status Harness::OptGo(absl::Duration timeout) {
  return exp_->OptGo(timeout);
}

absl::StatusOr<std::vector<MetaContext>> Harness::OptListMetaContext(
    std::vector<std::string> queries, absl::Duration timeout) {
  return exp_->OptListMetaContext(std::move(queries), timeout);
}

absl::Status Harness::OptAbort(absl::Duration timeout) {
  return exp_->OptAbort(timeout);
}

bool Harness::finished() const { return exp_ == nullptr || exp_->finished(0); }

absl::Status Harness::DriveUntilFinished(absl::Duration timeout) {
  return engine_->RunUntil([&] { return finished(); }, timeout);
}

}  // namespace nbd::test
