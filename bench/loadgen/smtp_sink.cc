// bench/loadgen/smtp_sink.cc: see smtp_sink.h.
#include "bench/loadgen/smtp_sink.h"

#include <cctype>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moat::loadgen {
namespace {

// Case-insensitive "line starts with prefix".
bool StartsWithNoCase(std::string_view line, std::string_view prefix) {
  if (line.size() < prefix.size()) {
    return false;
  }
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (toupper(static_cast<unsigned char>(line[i])) != prefix[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

SinkSession::SinkSession(std::string hostname, SinkListener* listener)
    : hostname_(std::move(hostname)), listener_(listener) {}

void SinkSession::Greet() {
  absl::StrAppend(&out_, "220 ", hostname_, " ESMTP moat-loadgen sink\r\n");
}

void SinkSession::OnBytes(const char* data, size_t size) {
  if (state_ == State::kClosed || state_ == State::kStartTls) {
    return;
  }
  // Drop what was consumed before appending, so in_ holds only unprocessed input.
  if (in_pos_ > 0) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
  in_.append(data, size);
  Process();
}

void SinkSession::Process() {
  while (state_ == State::kCommand || state_ == State::kData || state_ == State::kBdat) {
    if (state_ == State::kBdat) {
      if (!TakeChunk()) {
        return;
      }
      if (chunk_refused_) {
        out_.append(chunk_reply_);
        if (chunk_last_) {
          Reset();
        }
        state_ = State::kCommand;
        continue;
      }
      if (!chunk_last_) {
        absl::StrAppend(&out_, "250 2.0.0 Ok: ", data_.size(), " bytes\r\n");
        state_ = State::kCommand;
        continue;
      }
      state_ = State::kWaitFinish;
      uint32_t rcpts = rcpts_;
      listener_->OnMessage(data_, rcpts);
      return;
    }
    if (state_ == State::kData) {
      if (!ScanData()) {
        return;
      }
      state_ = State::kWaitFinish;
      uint32_t rcpts = rcpts_;
      listener_->OnMessage(data_, rcpts);
      return;
    }
    size_t lf = in_.find('\n', in_pos_);
    if (lf == std::string::npos) {
      if (in_.size() - in_pos_ > kCommandLineMax) {
        out_.append("500 5.5.0 Error: line too long\r\n");
        close_after_flush_ = true;
        state_ = State::kClosed;
      }
      return;
    }
    std::string_view line(in_.data() + in_pos_, lf - in_pos_);
    in_pos_ = lf + 1;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    HandleCommand(line);
  }
}

void SinkSession::HandleCommand(std::string_view line) {
  if (StartsWithNoCase(line, "EHLO ") || StartsWithNoCase(line, "HELO ")) {
    Reset();
    greeted_ = true;
    if (StartsWithNoCase(line, "HELO")) {
      absl::StrAppend(&out_, "250 ", hostname_, "\r\n");
    } else {
      absl::StrAppend(&out_, "250-", hostname_, "\r\n250-PIPELINING\r\n250-SIZE ", kSizeLimit,
                      "\r\n250-8BITMIME\r\n",
                      tls_offered_ && !tls_active_ ? "250-STARTTLS\r\n" : "",
                      chunking_offered_ ? "250-CHUNKING\r\n" : "",
                      "250 ENHANCEDSTATUSCODES\r\n");
    }
  } else if (StartsWithNoCase(line, "MAIL FROM:")) {
    if (!greeted_) {
      out_.append("503 5.5.1 Error: send HELO/EHLO first\r\n");
    } else if (have_mail_) {
      out_.append("503 5.5.1 Error: nested MAIL command\r\n");
    } else {
      have_mail_ = true;
      out_.append("250 2.1.0 Ok\r\n");
    }
  } else if (StartsWithNoCase(line, "RCPT TO:")) {
    if (!have_mail_) {
      out_.append("503 5.5.1 Error: need MAIL command\r\n");
      return;
    }
    int code = listener_->RcptReply();
    if (code == 250) {
      ++rcpts_;
      out_.append("250 2.1.5 Ok\r\n");
    } else if (code >= 500) {
      absl::StrAppend(&out_, code, " 5.1.1 Recipient address rejected by sink\r\n");
    } else {
      absl::StrAppend(&out_, code, " 4.3.0 Recipient address deferred by sink\r\n");
    }
  } else if (chunking_offered_ && StartsWithNoCase(line, "BDAT ")) {
    HandleBdat(line.substr(5));
  } else if (StartsWithNoCase(line, "DATA") && line.size() == 4) {
    if (in_bdat_) {
      out_.append("503 5.5.1 Error: DATA after BDAT\r\n");
    } else if (!have_mail_) {
      out_.append("503 5.5.1 Error: need MAIL command\r\n");
    } else if (rcpts_ == 0) {
      out_.append("554 5.5.1 Error: no valid recipients\r\n");
    } else {
      out_.append("354 End data with <CR><LF>.<CR><LF>\r\n");
      state_ = State::kData;
      at_line_start_ = true;
      data_.clear();
    }
  } else if (StartsWithNoCase(line, "RSET") && line.size() == 4) {
    Reset();
    out_.append("250 2.0.0 Ok\r\n");
  } else if (StartsWithNoCase(line, "STARTTLS") && line.size() == 8) {
    if (!tls_offered_) {
      out_.append("502 5.5.1 Error: command not implemented\r\n");
    } else if (tls_active_) {
      out_.append("554 5.5.1 Error: TLS already active\r\n");
    } else {
      out_.append("220 2.0.0 Ready to start TLS\r\n");
      state_ = State::kStartTls;
      start_tls_ = true;
      in_.clear();  // pipelined plaintext after STARTTLS is never processed
      in_pos_ = 0;
    }
  } else if (StartsWithNoCase(line, "NOOP")) {
    out_.append("250 2.0.0 Ok\r\n");
  } else if (StartsWithNoCase(line, "QUIT") && line.size() == 4) {
    out_.append("221 2.0.0 Bye\r\n");
    close_after_flush_ = true;
    state_ = State::kClosed;
  } else {
    out_.append("502 5.5.2 Error: command not recognized\r\n");
  }
}

bool SinkSession::ScanData() {
  while (in_pos_ < in_.size()) {
    std::string_view rest(in_.data() + in_pos_, in_.size() - in_pos_);
    if (at_line_start_ && rest[0] == '.') {
      if (rest.size() < 3) {
        if (rest.size() == 1 || rest[1] == '\r') {
          return false;  // ".", ".\r": may be the final dot; wait for more
        }
      } else if (rest[1] == '\r' && rest[2] == '\n') {
        in_pos_ += 3;
        return true;
      }
      ++in_pos_;  // dot-unstuffing: drop the leading dot of the line
      at_line_start_ = false;
      continue;
    }
    size_t crlf = rest.find("\r\n");
    if (crlf != std::string_view::npos) {
      data_.append(rest.data(), crlf + 2);
      in_pos_ += crlf + 2;
      at_line_start_ = true;
      continue;
    }
    // No line end yet: take everything but a trailing CR (it may start the CRLF).
    size_t take = rest.back() == '\r' ? rest.size() - 1 : rest.size();
    data_.append(rest.data(), take);
    in_pos_ += take;
    at_line_start_ = false;
    return false;
  }
  return false;
}

void SinkSession::HandleBdat(std::string_view args) {
  // "BDAT" SP chunk-size [SP "LAST"]
  size_t digits = 0;
  uint64_t size = 0;
  while (digits < args.size() && args[digits] >= '0' && args[digits] <= '9' && digits < 18) {
    size = size * 10 + static_cast<uint64_t>(args[digits] - '0');
    ++digits;
  }
  std::string_view rest = args.substr(digits);
  bool last = false;
  if (rest.size() == 5 && StartsWithNoCase(rest, " LAST")) {
    last = true;
  } else if (!rest.empty() || digits == 0) {
    // The chunk's length is unknown: the rest of the stream cannot be read as commands.
    out_.append("521 5.5.4 Syntax: BDAT count [LAST]\r\n");
    close_after_flush_ = true;
    state_ = State::kClosed;
    return;
  }
  chunk_left_ = size;
  chunk_last_ = last;
  chunk_refused_ = true;
  if (!have_mail_) {
    chunk_reply_ = "503 5.5.1 Error: need MAIL command\r\n";
  } else if (rcpts_ == 0) {
    chunk_reply_ = "554 5.5.1 Error: no valid recipients\r\n";
  } else if (size > kSizeLimit - (in_bdat_ ? data_.size() : 0)) {
    chunk_reply_ = "552 5.3.4 Error: message file too big\r\n";
  } else {
    chunk_refused_ = false;
    if (!in_bdat_) {
      data_.clear();
      in_bdat_ = true;
    }
  }
  state_ = State::kBdat;
}

bool SinkSession::TakeChunk() {
  const uint64_t have = in_.size() - in_pos_;
  const size_t take = static_cast<size_t>(have < chunk_left_ ? have : chunk_left_);
  if (!chunk_refused_) {
    data_.append(in_, in_pos_, take);
  }
  in_pos_ += take;
  chunk_left_ -= take;
  return chunk_left_ == 0;
}

void SinkSession::FinishMessage(int code, uint64_t queue_number) {
  if (code == 250) {
    absl::StrAppend(&out_, "250 2.0.0 Ok: queued as ", queue_number, "\r\n");
  } else if (code >= 500) {
    absl::StrAppend(&out_, code, " 5.6.0 Message rejected by sink\r\n");
  } else {
    absl::StrAppend(&out_, code, " 4.3.0 Message deferred by sink\r\n");
  }
  Reset();
  data_.clear();
  state_ = State::kCommand;
  Process();
}

bool SinkSession::TakeStartTls() {
  const bool start = start_tls_;
  start_tls_ = false;
  return start;
}

void SinkSession::OnTlsStarted() {
  tls_active_ = true;
  greeted_ = false;
  Reset();
  in_.clear();
  in_pos_ = 0;
  state_ = State::kCommand;
}

void SinkSession::Reset() {
  have_mail_ = false;
  rcpts_ = 0;
  in_bdat_ = false;
}

bool FindTimestampHeader(std::string_view message, uint64_t* ns) {
  constexpr std::string_view kName = "X-LOADGEN-TIMESTAMP:";
  size_t pos = 0;
  while (pos < message.size()) {
    size_t end = message.find("\r\n", pos);
    if (end == std::string_view::npos) {
      end = message.size();
    }
    std::string_view line = message.substr(pos, end - pos);
    if (line.empty()) {
      return false;  // end of the header
    }
    if (StartsWithNoCase(line, kName)) {
      std::string_view v = line.substr(kName.size());
      while (!v.empty() && (v[0] == ' ' || v[0] == '\t')) {
        v.remove_prefix(1);
      }
      uint64_t n = 0;
      if (v.empty()) {
        return false;
      }
      for (char c : v) {
        if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10) {
          return false;
        }
        n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      *ns = n;
      return true;
    }
    pos = end + 2;
  }
  return false;
}

}  // namespace moat::loadgen
