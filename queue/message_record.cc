// queue/message_record.cc: see message_record.h and FORMAT.md. Decoding treats its input as
// possibly damaged: every read is bounds-checked.
#include "queue/message_record.h"

#include "absl/strings/str_format.h"

#include "queue/record.h"

namespace moat::queue {
namespace {

constexpr uint8_t kPayloadVersion = 1;

void PutU8(std::string* out, uint8_t v) {
  out->push_back(static_cast<char>(v));
}

void PutU32(std::string* out, uint32_t v) {
  char buf[4];
  queue::PutU32(buf, v);
  out->append(buf, 4);
}

void PutU64(std::string* out, uint64_t v) {
  char buf[8];
  queue::PutU64(buf, v);
  out->append(buf, 8);
}

void PutStr(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}

// A bounds-checked cursor over a payload.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool U8(uint8_t* v) {
    if (in_.size() < 1) {
      return false;
    }
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool U32(uint32_t* v) {
    if (in_.size() < 4) {
      return false;
    }
    *v = GetU32(in_.data());
    in_.remove_prefix(4);
    return true;
  }
  bool U64(uint64_t* v) {
    if (in_.size() < 8) {
      return false;
    }
    *v = GetU64(in_.data());
    in_.remove_prefix(8);
    return true;
  }
  bool I64(int64_t* v) {
    uint64_t u = 0;
    if (!U64(&u)) {
      return false;
    }
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool Str(std::string* s) {
    uint32_t n = 0;
    if (!U32(&n) || in_.size() < n) {
      return false;
    }
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool Bytes(uint64_t n, std::string_view* out) {
    if (in_.size() < n) {
      return false;
    }
    *out = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  size_t left() const { return in_.size(); }

 private:
  std::string_view in_;
};

absl::Status Truncated(const char* what) {
  return absl::DataLossError(absl::StrFormat("%s record: truncated or malformed payload", what));
}

}  // namespace

void EncodeEnvelope(const MessageEnvelope& e, uint64_t content_bytes, std::string* out) {
  PutU8(out, kPayloadVersion);
  PutStr(out, e.queue_id);
  PutU64(out, static_cast<uint64_t>(e.arrival_unix_us));
  PutStr(out, e.client_ip);
  PutStr(out, e.client_name);
  PutStr(out, e.helo);
  PutStr(out, e.protocol);
  PutStr(out, e.sender);
  PutU32(out, e.flags);
  PutStr(out, e.envid);
  PutU32(out, static_cast<uint32_t>(e.recipients.size()));
  for (const Recipient& r : e.recipients) {
    PutStr(out, r.address);
    PutStr(out, r.orcpt);
    PutU8(out, r.notify);
    PutStr(out, r.resolved);
    PutStr(out, r.next_hop);
  }
  PutU64(out, content_bytes);
}

absl::StatusOr<MessageEnvelope> DecodeMessage(std::string_view payload, std::string_view* content) {
  Reader r(payload);
  MessageEnvelope e;
  uint8_t version = 0;
  if (!r.U8(&version)) {
    return Truncated("message");
  }
  if (version != kPayloadVersion) {
    return absl::DataLossError(absl::StrFormat("message record: unknown version %d", version));
  }
  uint32_t nrcpt = 0;
  if (!r.Str(&e.queue_id) || !r.I64(&e.arrival_unix_us) || !r.Str(&e.client_ip) ||
      !r.Str(&e.client_name) || !r.Str(&e.helo) || !r.Str(&e.protocol) || !r.Str(&e.sender) ||
      !r.U32(&e.flags) || !r.Str(&e.envid) || !r.U32(&nrcpt)) {
    return Truncated("message");
  }
  // Each recipient takes at least 17 bytes: a bogus count cannot make us reserve much.
  if (nrcpt > r.left() / 17) {
    return Truncated("message");
  }
  e.recipients.resize(nrcpt);
  for (Recipient& rcpt : e.recipients) {
    if (!r.Str(&rcpt.address) || !r.Str(&rcpt.orcpt) || !r.U8(&rcpt.notify) ||
        !r.Str(&rcpt.resolved) || !r.Str(&rcpt.next_hop)) {
      return Truncated("message");
    }
  }
  uint64_t content_bytes = 0;
  std::string_view body;
  if (!r.U64(&content_bytes) || !r.Bytes(content_bytes, &body) || r.left() != 0) {
    return Truncated("message");
  }
  if (content != nullptr) {
    *content = body;
  }
  return e;
}

bool IsFinal(Outcome outcome) {
  return outcome == Outcome::kDelivered || outcome == Outcome::kBounced ||
         outcome == Outcome::kExpired;
}

void EncodeOutcome(const OutcomeRecord& o, std::string* out) {
  PutU8(out, kPayloadVersion);
  PutU64(out, o.message_sequence);
  PutStr(out, o.queue_id);
  PutU32(out, o.recipient_index);
  PutU8(out, static_cast<uint8_t>(o.outcome));
  PutU64(out, static_cast<uint64_t>(o.unix_us));
  PutStr(out, o.detail);
}

absl::StatusOr<OutcomeRecord> DecodeOutcome(std::string_view payload) {
  Reader r(payload);
  OutcomeRecord o;
  uint8_t version = 0;
  uint8_t outcome = 0;
  if (!r.U8(&version) || version != kPayloadVersion || !r.U64(&o.message_sequence) ||
      !r.Str(&o.queue_id) || !r.U32(&o.recipient_index) || !r.U8(&outcome) || !r.I64(&o.unix_us) ||
      !r.Str(&o.detail) || r.left() != 0) {
    return Truncated("outcome");
  }
  if (outcome < 1 || outcome > 4) {
    return absl::DataLossError(absl::StrFormat("outcome record: unknown outcome %d", outcome));
  }
  o.outcome = static_cast<Outcome>(outcome);
  return o;
}

}  // namespace moat::queue
