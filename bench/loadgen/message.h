// bench/loadgen/message.h
//
// Builds the messages moat-loadgen sends: a small header (From, To, Subject, Message-ID,
// X-Loadgen-Timestamp in nanoseconds since the epoch, CLOCK_REALTIME) and a body of 80-octet
// lines, every seventh of which starts with '.', so every message exercises dot-stuffing. The
// stuffed body is generated once; Build() only prepends the header and appends ".\r\n".
//
// Not thread-safe (one per sender thread). Parses no untrusted input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/loadgen/smtp_client.h"

namespace moat::loadgen {

class MessageFactory {
 public:
  // `size`: total unstuffed octets per message (header + body), approximately (the header
  // alone may be longer).
  MessageFactory(uint64_t size, std::string from);

  // Fills message->payload and message->size for message number `seq` to `to` (the To: header).
  void Build(uint64_t seq, const std::string& to, uint64_t timestamp_ns,
             ClientMessage* message) const;

  // Dot-stuffs `text` (lines end in CRLF) and appends the final ".\r\n": for tests.
  static std::string StuffForTest(const std::string& text);

 private:
  static constexpr size_t kLineBytes = 80;  // including CRLF
  uint64_t size_;
  std::string from_;
  std::string stuffed_;                 // all full body lines, stuffed
  std::vector<size_t> stuffed_offset_;  // stuffed offset of line i (size lines + 1)
  std::string tag_;                     // per-process part of the Message-ID
};

}  // namespace moat::loadgen
