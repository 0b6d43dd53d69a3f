// Private to //protocol:wire: the bounds-checked reader, the error helpers
// and the big-endian appenders shared by wire_handshake.cc and
// wire_transmission.cc. Not part of the API (protocol/wire.h is); inline so
// the encoders and decoders compile as they did when they were one file.
//
// Two error conventions:
//  - Fixed-size structures read from the byte stream (greetings, headers,
//    requests, simple replies) fail with OutOfRange when the span is shorter
//    than the structure; bytes past the structure are ignored.
//  - Payloads (option data, option-reply payloads, chunk payloads) are
//    given as exactly the bytes the header announced. Any disagreement
//    between that length and the payload's own fields, including a payload
//    too short for its fixed part, is InvalidArgument.
#ifndef NBD_PROTOCOL_WIRE_CODEC_H_
#define NBD_PROTOCOL_WIRE_CODEC_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "protocol/constants.h"
#include "protocol/endian.h"
#include "protocol/wire.h"

namespace nbd::wire_internal {

// ---- Decoding helpers -------------------------------------------------------

// OutOfRange unless `in` holds at least `need` bytes.
inline absl::Status NeedFixed(ByteSpan in, size_t need, const char* what) {
  if (in.size() < need) {
    return absl::OutOfRangeError(
        absl::StrFormat("%s: need %d bytes, got %d", what, need, in.size()));
  }
  return absl::OkStatus();
}

inline absl::Status BadMagic(const char* what, uint64_t want, uint64_t got) {
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: bad magic 0x%x (expected 0x%x)", what, got, want));
}

// NeedFixed(), then InvalidArgument unless the structure starts with the
// big-endian `magic` (as wide as its type: uint32_t or uint64_t); the
// opening checks of most fixed-size decoders.
template <typename Magic>
absl::Status NeedFixedMagic(ByteSpan in, size_t need, Magic magic,
                            const char* what) {
  static_assert(sizeof(Magic) == 4 || sizeof(Magic) == 8);
  if (auto s = NeedFixed(in, need, what); !s.ok()) return s;
  const Magic m =
      sizeof(Magic) == 8 ? LoadBe64(in.data()) : LoadBe32(in.data());
  if (m != magic) return BadMagic(what, magic, m);
  return absl::OkStatus();
}

inline absl::Status BadPayloadLength(const char* what, size_t got,
                                     const char* expected) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: payload length %d is invalid (%s)", what, got, expected));
}

inline absl::Status CheckInfoType(ByteSpan in, InfoType want,
                                  const char* what) {
  // Callers have checked in.size() >= 2.
  const uint16_t got = LoadBe16(in.data());
  if (got != static_cast<uint16_t>(want)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: info type is %d, expected %d", what, got,
                        static_cast<uint16_t>(want)));
  }
  return absl::OkStatus();
}

inline absl::Status CheckStringLength(const char* what, const char* field,
                                      size_t len) {
  if (len > kMaxStringLength) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %s length %d exceeds the %d-byte string limit",
                        what, field, len, kMaxStringLength));
  }
  return absl::OkStatus();
}

inline std::string ToString(ByteSpan s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

// A bounds-checked cursor over a payload. The first failure is sticky:
// later reads return zero/empty values and do not touch the input, and
// status() reports the first error. Nothing is copied before its length
// has been checked against the remaining input.
class Reader {
 public:
  Reader(ByteSpan in, const char* what) : in_(in), what_(what) {}

  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }
  size_t remaining() const { return in_.size() - pos_; }

  uint16_t U16(const char* field) {
    if (!Need(2, field)) return 0;
    const uint16_t v = LoadBe16(in_.data() + pos_);
    pos_ += 2;
    return v;
  }
  uint32_t U32(const char* field) {
    if (!Need(4, field)) return 0;
    const uint32_t v = LoadBe32(in_.data() + pos_);
    pos_ += 4;
    return v;
  }
  uint64_t U64(const char* field) {
    if (!Need(8, field)) return 0;
    const uint64_t v = LoadBe64(in_.data() + pos_);
    pos_ += 8;
    return v;
  }
  // A string of `len` bytes, checked against kMaxStringLength and against
  // the remaining input before anything is allocated or copied.
  std::string String(uint64_t len, const char* field) {
    if (!ok()) return {};
    if (len > kMaxStringLength) {
      Fail(absl::StrFormat("%s length %d exceeds the %d-byte string limit",
                           field, len, kMaxStringLength));
      return {};
    }
    if (!Need(static_cast<size_t>(len), field)) return {};
    std::string s = ToString(in_.subspan(pos_, static_cast<size_t>(len)));
    pos_ += static_cast<size_t>(len);
    return s;
  }
  // The rest of the input as a string.
  std::string Rest(const char* field) { return String(remaining(), field); }
  // Fails unless every byte has been consumed.
  void ExpectEnd() {
    if (ok() && remaining() != 0) {
      Fail(absl::StrFormat("%d trailing bytes after offset %d", remaining(),
                           pos_));
    }
  }
  void Fail(const std::string& msg) {
    if (ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrFormat("%s (%d bytes): %s", what_, in_.size(), msg));
    }
  }

 private:
  bool Need(size_t n, const char* field) {
    if (!ok()) return false;
    if (remaining() < n) {
      Fail(absl::StrFormat("%s needs %d bytes at offset %d but only %d remain",
                           field, n, pos_, remaining()));
      return false;
    }
    return true;
  }

  ByteSpan in_;
  const char* what_;
  size_t pos_ = 0;
  absl::Status status_;
};

// ---- Encoding helpers -------------------------------------------------------

inline void Put16(Bytes& out, uint16_t v) {
  uint8_t b[2];
  StoreBe16(b, v);
  out.insert(out.end(), b, b + 2);
}
inline void Put32(Bytes& out, uint32_t v) {
  uint8_t b[4];
  StoreBe32(b, v);
  out.insert(out.end(), b, b + 4);
}
inline void Put64(Bytes& out, uint64_t v) {
  uint8_t b[8];
  StoreBe64(b, v);
  out.insert(out.end(), b, b + 8);
}
inline void PutRaw(Bytes& out, const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  out.insert(out.end(), p, p + n);
}
// A string preceded by its 32-bit length. Encoders never fail, so a string
// too long for the field is cut to fit; the frame stays self-consistent.
inline void PutString32(Bytes& out, const std::string& s) {
  const size_t n =
      std::min<size_t>(s.size(), std::numeric_limits<uint32_t>::max());
  Put32(out, static_cast<uint32_t>(n));
  PutRaw(out, s.data(), n);
}

}  // namespace nbd::wire_internal

#endif  // NBD_PROTOCOL_WIRE_CODEC_H_
