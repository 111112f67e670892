// queue/message_record.h
//
// The payloads of spool records (queue/FORMAT.md): a message's envelope (queue ID, arrival, client,
// sender, ESMTP/DSN flags, recipients with ORCPT, NOTIFY, resolved address and next hop) followed
// by its content, and delivery outcomes (the journal). Encoding is done on the shard when a message
// is staged; decoding runs at recovery and when the outbound side re-reads a message, on bytes
// whose checksum already matched, but it still bounds-checks everything and returns a Status
// rather than trusting a length. Pure functions and plain structs; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moat::queue {

// Envelope flags (ESMTP BODY=, SMTPUTF8, DSN RET=).
inline constexpr uint32_t kBody8BitMime = 1u << 0;
inline constexpr uint32_t kSmtpUtf8 = 1u << 1;
inline constexpr uint32_t kRetFull = 1u << 2;
inline constexpr uint32_t kRetHdrs = 1u << 3;

// DSN NOTIFY= bits of a recipient; 0 means "not given" (the server's default applies).
inline constexpr uint8_t kNotifySuccess = 1u << 0;
inline constexpr uint8_t kNotifyFailure = 1u << 1;
inline constexpr uint8_t kNotifyDelay = 1u << 2;
inline constexpr uint8_t kNotifyNever = 1u << 3;

struct Recipient {
  std::string address;   // as given in RCPT TO (without <>)
  std::string orcpt;     // DSN ORCPT= (e.g. "rfc822;x@y"), empty if not given
  uint8_t notify = 0;    // kNotify* bits
  std::string resolved;  // address after virtual_alias_maps etc.
  std::string next_hop;  // e.g. "smtp:[10.0.0.5]:25"; empty = decide at delivery time

  bool operator==(const Recipient&) const = default;
};

struct MessageEnvelope {
  std::string queue_id;
  int64_t arrival_unix_us = 0;
  std::string client_ip;
  std::string client_name;
  std::string helo;
  std::string protocol;  // ESMTP, ESMTPS, UTF8SMTPS, SMTP, ...
  std::string sender;    // empty for the null sender <>
  uint32_t flags = 0;    // kBody8BitMime | kSmtpUtf8 | kRetFull | kRetHdrs
  std::string envid;
  std::vector<Recipient> recipients;

  bool operator==(const MessageEnvelope&) const = default;
};

// Appends the message payload minus the content bytes (everything up to and including the u64
// content length) to `out`. The content follows it on disk unchanged.
void EncodeEnvelope(const MessageEnvelope& envelope, uint64_t content_bytes, std::string* out);

// Decodes a whole message payload. `content` (if not null) is set to the content bytes inside
// `payload` (a view: valid as long as `payload` is).
absl::StatusOr<MessageEnvelope> DecodeMessage(std::string_view payload, std::string_view* content);

enum class Outcome : uint8_t {
  kDelivered = 1,
  kBounced = 2,
  kExpired = 3,
  kDeferred = 4,  // not final: informational
};
bool IsFinal(Outcome outcome);

struct OutcomeRecord {
  uint64_t message_sequence = 0;  // the record sequence of the message it refers to
  std::string queue_id;
  uint32_t recipient_index = 0;
  Outcome outcome = Outcome::kDelivered;
  int64_t unix_us = 0;
  std::string detail;  // e.g. the remote reply, for logs and bounces

  bool operator==(const OutcomeRecord&) const = default;
};

void EncodeOutcome(const OutcomeRecord& outcome, std::string* out);
absl::StatusOr<OutcomeRecord> DecodeOutcome(std::string_view payload);

}  // namespace moat::queue
