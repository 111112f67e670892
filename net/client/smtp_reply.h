// net/client/smtp_reply.h
//
// Splits server bytes into SMTP replies (RFC 5321 4.2): "NNN text" lines, multi-line
// replies "NNN-..." ending with "NNN ...". Owned by: outbound; one reader per client
// connection, not thread-safe. PARSES UNTRUSTED INPUT (the remote server): every line
// and every reply is bounded, and anything that is not a reply is reported as
// malformed (a value, never a crash).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace moat::client {

inline constexpr size_t kReplyLineBytesMax = 4096;  // RFC 5321 says 512; servers exceed it
inline constexpr size_t kReplyLinesMax = 128;       // a long EHLO reply has ~20

struct Reply {
  int code = 0;                    // 200..599
  std::string enhanced;            // "5.1.1" when the first line carries one, else ""
  std::vector<std::string> lines;  // as received, without CRLF ("250-PIPELINING")

  int Class() const { return code / 100; }
  // The lines joined with one space, as Postfix logs a reply ("550-5.1.1 a 550 5.1.1 b").
  std::string Text() const;
  // The enhanced code, or the class default ("2.0.0", "4.0.0", "5.0.0").
  std::string Dsn() const;
};

class ReplyReader {
 public:
  enum class Result { kNeedMore, kReply, kMalformed };

  // Appends bytes as received (any split).
  void Feed(std::string_view bytes) { buffer_.append(bytes.data(), bytes.size()); }
  // Extracts the next complete reply into *reply. kMalformed leaves a printable
  // description of the offending input in *error; the reader is then unusable.
  Result Next(Reply* reply, std::string* error);
  bool HasBufferedBytes() const { return consumed_ < buffer_.size(); }

 private:
  std::string buffer_;
  size_t consumed_ = 0;  // bytes of buffer_ already returned as replies
  bool broken_ = false;
};

// Printable form of untrusted text for logs: control and 8-bit bytes as '?', at most
// `max_bytes` bytes.
std::string Printable(std::string_view text, size_t max_bytes = 200);

}  // namespace moat::client
