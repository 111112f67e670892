// net/client/smtp_reply.cc: see smtp_reply.h. Owned by: outbound. Parses untrusted input.
#include "net/client/smtp_reply.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_format.h"

namespace moat::client {
namespace {

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// "c.d.d" at the start of `text` with class `klass`, followed by space or end.
std::string EnhancedCode(std::string_view text, char klass) {
  if (text.size() < 5 || text[0] != klass || text[1] != '.') {
    return "";
  }
  size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    const size_t start = i;
    while (i < text.size() && IsDigit(text[i]) && i - start < 3) {
      ++i;
    }
    if (i == start) {
      return "";
    }
    if (part == 0) {
      if (i >= text.size() || text[i] != '.') {
        return "";
      }
      ++i;
    }
  }
  if (i < text.size() && text[i] != ' ') {
    return "";
  }
  return std::string(text.substr(0, i));
}

}  // namespace

std::string Reply::Text() const {
  std::string out;
  for (const std::string& line : lines) {
    if (!out.empty()) {
      out += ' ';
    }
    out += line;
  }
  return out;
}

std::string Reply::Dsn() const {
  if (!enhanced.empty()) {
    return enhanced;
  }
  return absl::StrFormat("%d.0.0", Class());
}

std::string Printable(std::string_view text, size_t max_bytes) {
  std::string out;
  for (char c : text.substr(0, std::min(text.size(), max_bytes))) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f) ? '?' : c;
  }
  return out;
}

ReplyReader::Result ReplyReader::Next(Reply* reply, std::string* error) {
  if (broken_) {
    *error = "reader already failed";
    return Result::kMalformed;
  }
  // Scan lines from consumed_ without consuming until a full reply is present.
  Reply r;
  size_t pos = consumed_;
  while (true) {
    const size_t nl = buffer_.find('\n', pos);
    if (nl == std::string::npos) {
      if (buffer_.size() - pos > kReplyLineBytesMax) {
        broken_ = true;
        *error = absl::StrFormat("reply line longer than %d bytes", kReplyLineBytesMax);
        return Result::kMalformed;
      }
      return Result::kNeedMore;
    }
    std::string_view line(buffer_.data() + pos, nl - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.size() > kReplyLineBytesMax) {
      broken_ = true;
      *error = absl::StrFormat("reply line longer than %d bytes", kReplyLineBytesMax);
      return Result::kMalformed;
    }
    const bool code_ok = line.size() >= 3 && line[0] >= '2' && line[0] <= '5' && IsDigit(line[1]) &&
                         IsDigit(line[2]) && (line.size() == 3 || line[3] == ' ' || line[3] == '-');
    if (!code_ok) {
      broken_ = true;
      *error = absl::StrFormat("malformed reply line \"%s\"", Printable(line));
      return Result::kMalformed;
    }
    const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (r.lines.empty()) {
      r.code = code;
      r.enhanced = EnhancedCode(line.size() > 4 ? line.substr(4) : std::string_view(), line[0]);
    } else if (code != r.code) {
      broken_ = true;
      *error =
          absl::StrFormat("reply code changed within a multi-line reply: \"%s\"", Printable(line));
      return Result::kMalformed;
    }
    if (r.lines.size() >= kReplyLinesMax) {
      broken_ = true;
      *error = absl::StrFormat("reply longer than %d lines", kReplyLinesMax);
      return Result::kMalformed;
    }
    r.lines.emplace_back(line);
    pos = nl + 1;
    if (line.size() == 3 || line[3] == ' ') {
      break;
    }
  }
  consumed_ = pos;
  // Compact once the consumed prefix dominates, so the buffer stays bounded.
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > 4096) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  *reply = std::move(r);
  return Result::kReply;
}

}  // namespace moat::client
