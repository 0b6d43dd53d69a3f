// nbd::Client option mode and the TLS pause: the public Opt*() calls,
// SetExportName() and TlsHandshakeDone()/TlsHandshakeFailed().
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "protocol/client/client.h"
#include "protocol/client/internal/impl.h"
#include "protocol/client/permissions.h"
#include "protocol/status.h"
#include "protocol/wire.h"

namespace nbd {

// Each checks the permission table first (only kNegotiating allows these
// but TlsHandshakeDone, which only kTlsPaused allows), then its arguments.

absl::Status Client::Impl::TlsHandshakeDone() {
  if (absl::Status s = Check(ClientCall::kTlsHandshakeDone); !s.ok()) {
    return s;
  }
  AdvanceHandshake();  // from kTlsPaused
  return absl::OkStatus();
}

absl::Status Client::Impl::SetExportName(std::string name) {
  if (absl::Status s = Check(ClientCall::kSetExportName); !s.ok()) return s;
  if (name.size() > kMaxStringLength) {
    return ErrnoStatus(ENAMETOOLONG, "export name exceeds 4096 bytes");
  }
  // The same name changes nothing (as in libnbd): what OptInfo() and
  // OptSetMetaContext() learned for it still holds.
  if (name == export_name_) return absl::OkStatus();
  // What we knew describes the old export.
  export_name_ = std::move(name);
  size_.reset();
  tflags_ = 0;
  block_size_ = {};
  contexts_.clear();
  canonical_name_.clear();
  description_.clear();
  meta_requested_ = false;
  return absl::OkStatus();
}

absl::Status Client::Impl::OptList() {
  if (absl::Status s = Check(ClientCall::kOptList); !s.ok()) return s;
  SendOption(State::kUserOptionSent, Option::kList, {});
  return absl::OkStatus();
}

absl::Status Client::Impl::OptInfo() {
  if (absl::Status s = Check(ClientCall::kOptInfo); !s.ok()) return s;
  if (export_name_.size() > kMaxStringLength) {
    return ErrnoStatus(ENAMETOOLONG, "export name exceeds 4096 bytes");
  }
  SendGo(State::kUserOptionSent, Option::kInfo);
  return absl::OkStatus();
}

absl::Status Client::Impl::OptGo() {
  if (absl::Status s = Check(ClientCall::kOptGo); !s.ok()) return s;
  if (export_name_.size() > kMaxStringLength) {
    return ErrnoStatus(ENAMETOOLONG, "export name exceeds 4096 bytes");
  }
  const bool want_meta =
      opts_.request_base_allocation || !opts_.meta_contexts.empty();
  if (structured_ && want_meta && !meta_requested_) {
    // The contexts the options ask for, unless the caller chose some.
    meta_requested_ = true;
    SendSetMeta(State::kUserGoMetaSent, {}, Option::kSetMetaContext);
  } else {
    SendGo(State::kUserOptionSent, Option::kGo);
  }
  return absl::OkStatus();
}

absl::Status Client::Impl::OptAbort() {
  if (absl::Status s = Check(ClientCall::kOptAbort); !s.ok()) return s;
  SendAbort();
  return absl::OkStatus();
}

absl::Status Client::Impl::OptStructuredReply() {
  if (absl::Status s = Check(ClientCall::kOptStructuredReply); !s.ok()) {
    return s;
  }
  SendOption(State::kUserOptionSent, Option::kStructuredReply, {});
  return absl::OkStatus();
}

absl::Status Client::Impl::OptExtendedHeaders() {
  if (absl::Status s = Check(ClientCall::kOptExtendedHeaders); !s.ok()) {
    return s;
  }
  SendOption(State::kUserOptionSent, Option::kExtendedHeaders, {});
  return absl::OkStatus();
}

absl::Status Client::Impl::OptListMetaContext(
    std::vector<std::string> queries) {
  if (absl::Status s = Check(ClientCall::kOptListMetaContext); !s.ok()) {
    return s;
  }
  SendSetMeta(State::kUserOptionSent, std::move(queries),
              Option::kListMetaContext);
  return absl::OkStatus();
}

absl::Status Client::Impl::OptSetMetaContext(std::vector<std::string> queries) {
  if (absl::Status s = Check(ClientCall::kOptSetMetaContext); !s.ok()) {
    return s;
  }
  if (!structured_) {
    return PreconditionStatus(
        EINVAL, "NBD_OPT_SET_META_CONTEXT needs structured replies first");
  }
  meta_requested_ = true;
  SendSetMeta(State::kUserOptionSent, std::move(queries),
              Option::kSetMetaContext);
  return absl::OkStatus();
}

// ---- Public wrappers ------------------------------------------------------

absl::Status Client::TlsHandshakeDone() { return impl_->TlsHandshakeDone(); }

void Client::TlsHandshakeFailed(absl::Status why) {
  if (!impl_->Allowed(ClientCall::kTlsHandshakeFailed)) return;
  impl_->Fail(why.ok() ? ErrnoStatus(EIO, "TLS handshake failed")
                       : std::move(why));
}

absl::Status Client::SetExportName(std::string name) {
  return impl_->SetExportName(std::move(name));
}
absl::Status Client::OptList() { return impl_->OptList(); }
absl::Status Client::OptInfo() { return impl_->OptInfo(); }
absl::Status Client::OptGo() { return impl_->OptGo(); }
absl::Status Client::OptAbort() { return impl_->OptAbort(); }
absl::Status Client::OptStructuredReply() {
  return impl_->OptStructuredReply();
}
absl::Status Client::OptExtendedHeaders() {
  return impl_->OptExtendedHeaders();
}
absl::Status Client::OptListMetaContext(std::vector<std::string> queries) {
  return impl_->OptListMetaContext(std::move(queries));
}
absl::Status Client::OptSetMetaContext(std::vector<std::string> queries) {
  return impl_->OptSetMetaContext(std::move(queries));
}

}  // namespace nbd
