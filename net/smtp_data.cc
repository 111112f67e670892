// net/smtp_data.cc: see smtp_data.h. Parses untrusted network input.
#include "net/smtp_data.h"

#include <cstring>

namespace moat::net {

void ContentScanner::Reset(const Options& options) {
  *this = ContentScanner();
  options_ = options;
}

void ContentScanner::Emit(std::string_view bytes, std::string* content) {
  content_bytes_ += bytes.size();
  if (options_.size_limit != 0 && content_bytes_ > options_.size_limit) {
    size_exceeded_ = true;
  }
  if (!size_exceeded_) {
    content->append(bytes.data(), bytes.size());
  }
}

void ContentScanner::EndLine(bool bare_lf, std::string* content) {
  if (bare_lf) {
    bare_lf_seen_ = true;
  }
  at_line_start_ = true;
  if (options_.mode == Mode::kData && dot_line_ && line_body_bytes_ == 0) {
    if (!bare_lf && !prev_bare_lf_) {
      done_ = true;
      return;
    }
    // "." next to a bare LF: neither the end of data nor content (Postfix drops it).
    prev_bare_lf_ = bare_lf;
    return;
  }
  Emit("\r\n", content);
  prev_bare_lf_ = bare_lf;
}

size_t ContentScanner::OrdinaryLines(const char* data, size_t pos, size_t n) const {
  // Whole lines that end in CRLF, do not start with a dot (DATA) and fit the line limit are
  // content byte for byte: their bytes pass through unchanged.
  while (pos < n) {
    if (options_.mode == Mode::kData && data[pos] == '.') {
      break;
    }
    const auto* lf = static_cast<const char*>(std::memchr(data + pos, '\n', n - pos));
    if (lf == nullptr) {
      break;  // a partial line
    }
    const size_t end = static_cast<size_t>(lf - data);
    if (end == pos || data[end - 1] != '\r') {
      break;  // a bare LF
    }
    if (options_.line_bytes_max != 0 && end + 1 - pos > options_.line_bytes_max) {
      break;  // too long: flagged line by line below
    }
    pos = end + 1;
  }
  return pos;
}

size_t ContentScanner::Consume(std::string_view input, std::string* content) {
  const char* data = input.data();
  const size_t n = input.size();
  size_t pos = 0;
  while (pos < n && !done_) {
    if (at_line_start_) {
      // Fast path: a run of ordinary lines is one append instead of two per line (a 100 KB
      // message has about 1,300 lines). What ends the run goes through the line-by-line code.
      const size_t run_end = OrdinaryLines(data, pos, n);
      if (run_end > pos) {
        Emit(std::string_view(data + pos, run_end - pos), content);
        pos = run_end;
        prev_bare_lf_ = false;  // each of those lines ended in CRLF
        continue;
      }
    }
    if (at_line_start_) {
      at_line_start_ = false;
      dot_line_ = false;
      line_body_bytes_ = 0;
      line_bytes_ = 0;
      if (options_.mode == Mode::kData && data[pos] == '.') {
        dot_line_ = true;
        line_bytes_ = 1;
        ++pos;
        continue;
      }
    }
    const auto* lf = static_cast<const char*>(std::memchr(data + pos, '\n', n - pos));
    const size_t end = lf != nullptr ? static_cast<size_t>(lf - data) : n;
    if (end > pos) {
      std::string_view segment(data + pos, end - pos);
      if (pending_cr_) {  // a CR followed by something other than LF: content
        pending_cr_ = false;
        Emit("\r", content);
        ++line_body_bytes_;
        ++line_bytes_;
      }
      if (segment.back() == '\r') {
        pending_cr_ = true;
        segment.remove_suffix(1);
      }
      Emit(segment, content);
      line_body_bytes_ += segment.size();
      line_bytes_ += segment.size();
      if (options_.line_bytes_max != 0 && line_bytes_ + 2 > options_.line_bytes_max) {
        line_too_long_ = true;
      }
    }
    if (lf == nullptr) {
      pos = n;
      break;
    }
    const bool bare_lf = !pending_cr_;
    pending_cr_ = false;
    pos = end + 1;
    EndLine(bare_lf, content);
  }
  received_bytes_ += pos;
  return pos;
}

void ContentScanner::Finish(std::string* content) {
  if (!at_line_start_) {
    // An unterminated last line (a held CR included) gets its CRLF.
    pending_cr_ = false;
    Emit("\r\n", content);
    at_line_start_ = true;
  }
}

}  // namespace moat::net
