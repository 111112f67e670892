// net/smtp_data.h
//
// ContentScanner: turns the bytes a client sends after DATA (or inside BDAT chunks) into
// message content with CRLF line ends, incrementally, for any split of the input. Owner:
// the "session" engineer; one per session, used on the session's shard only (not
// thread-safe). Parses untrusted input; never asserts on it.
//
// DATA rules (RFC 5321 4.1.1.4, 4.5.2; Postfix smtpd receive_data_message):
//   - Only <CR><LF>.<CR><LF> ends DATA: the "." line must end in CRLF and so must the line
//     before it (the DATA command counts as one). A bare LF, a bare CR or a NUL never ends
//     DATA, so no SMTP smuggling variant (<LF>.<LF>, <CR><LF>.<LF>, <LF>.<CR><LF>,
//     <CR>.<CR>, <CR><LF>.<CR>, NUL forms) splits one message into two.
//   - A "." line next to a bare LF is not an end: as Postfix, it is dropped (not stored).
//   - Lines that start with "." lose that first "." (dot-unstuffing).
//   - A line ending in bare LF is stored with CRLF (normalize); with BareNewline::kReject
//     the message is marked and the session rejects it after the end of data.
//   - A bare CR is ordinary content; so is NUL.
//   - Size: content beyond `size_limit` bytes is not stored but still consumed up to the
//     end, so the session can answer "552 5.3.4 Error: message file too big" in sync.
//   - Lines longer than `line_bytes_max` (including CRLF) are noted (DESIGN 5: rejected).
// BDAT mode: no end marker and no dot-unstuffing (RFC 3030); line ends are still
// normalized and checked the same way. Finish() closes an unterminated last line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moat::net {

// smtpd_forbid_bare_newline (Postfix 3.9 names; "yes" is an alias of normalize).
enum class BareNewline : uint8_t {
  kNo,         // accepted as a line end (the end of DATA still needs CRLF.CRLF: see README)
  kNormalize,  // accepted as a line end for commands and content, never for end of DATA
  kNote,       // as normalize, and the session logs a note
  kReject,     // the command or message is rejected: "550 5.5.2 <host> Error: bare <LF> received"
};

class ContentScanner {
 public:
  enum class Mode : uint8_t { kData, kBdat };
  struct Options {
    Mode mode = Mode::kData;
    uint64_t size_limit = 0;     // 0: no limit
    size_t line_bytes_max = 0;   // 0: no limit; else the longest line including CRLF
  };

  ContentScanner() = default;
  // Starts a new message. Content already stored in *content (e.g. a Received: header)
  // is not counted against the size limit.
  void Reset(const Options& options);

  // Consumes bytes, appending content to *content. In DATA mode stops right after the
  // end-of-data line and returns the number of bytes consumed (the rest belongs to the
  // next command); otherwise returns input.size().
  size_t Consume(std::string_view input, std::string* content);
  // BDAT LAST: ends an unterminated last line with CRLF.
  void Finish(std::string* content);

  bool done() const { return done_; }
  bool size_exceeded() const { return size_exceeded_; }
  bool bare_lf_seen() const { return bare_lf_seen_; }
  bool line_too_long() const { return line_too_long_; }
  // Bytes of content produced so far (stored or not), for logs and BDAT replies.
  uint64_t content_bytes() const { return content_bytes_; }
  // Bytes received from the client so far (for "lost connection after DATA (N bytes)").
  uint64_t received_bytes() const { return received_bytes_; }

 private:
  // Where the run of ordinary lines that starts at line start `pos` ends (see Consume()).
  size_t OrdinaryLines(const char* data, size_t pos, size_t n) const;
  void Emit(std::string_view bytes, std::string* content);
  void EndLine(bool bare_lf, std::string* content);

  Options options_;
  bool done_ = false;
  bool at_line_start_ = true;
  bool dot_line_ = false;        // this line began with "." (already dropped)
  bool pending_cr_ = false;      // a CR not yet known to be followed by LF
  bool prev_bare_lf_ = false;    // the previous line ended with a bare LF
  bool size_exceeded_ = false;
  bool bare_lf_seen_ = false;
  bool line_too_long_ = false;
  size_t line_body_bytes_ = 0;   // bytes of this line emitted as content (after the dot)
  size_t line_bytes_ = 0;        // raw bytes of this line so far, terminator excluded
  uint64_t content_bytes_ = 0;
  uint64_t received_bytes_ = 0;
};

}  // namespace moat::net
