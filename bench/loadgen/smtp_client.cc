// bench/loadgen/smtp_client.cc: see smtp_client.h.
#include "bench/loadgen/smtp_client.h"

#include <cctype>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moat::loadgen {

ReplyParser::Result ReplyParser::Feed(const char* data, size_t size, size_t* used, Reply* reply) {
  size_t i = *used;
  while (i < size) {
    char c = data[i++];
    if (c != '\n') {
      if (line_.size() >= kReplyLineMax) {
        *used = i;
        return Result::kError;
      }
      line_.push_back(c);
      continue;
    }
    if (!line_.empty() && line_.back() == '\r') {
      line_.pop_back();
    }
    // "NNN", "NNN text" or "NNN-text".
    if (line_.size() < 3 || !isdigit(static_cast<unsigned char>(line_[0])) ||
        !isdigit(static_cast<unsigned char>(line_[1])) ||
        !isdigit(static_cast<unsigned char>(line_[2])) ||
        (line_.size() > 3 && line_[3] != ' ' && line_[3] != '-')) {
      *used = i;
      return Result::kError;
    }
    int code = (line_[0] - '0') * 100 + (line_[1] - '0') * 10 + (line_[2] - '0');
    if (!partial_.lines.empty() && code != partial_.code) {
      *used = i;
      return Result::kError;
    }
    partial_.code = code;
    partial_.lines.push_back(line_.size() > 4 ? line_.substr(4) : std::string());
    bool last = line_.size() == 3 || line_[3] == ' ';
    line_.clear();
    if (last) {
      *reply = std::move(partial_);
      partial_ = Reply();
      *used = i;
      return Result::kReply;
    }
  }
  *used = i;
  return Result::kNeedMore;
}

ClientSession::ClientSession(std::string helo, std::string from, bool want_pipelining,
                             ClientListener* listener, bool want_starttls)
    : helo_(std::move(helo)),
      from_(std::move(from)),
      want_pipelining_(want_pipelining),
      listener_(listener),
      want_starttls_(want_starttls) {
  pending_.push_back({Cmd::kGreeting, 0});
}

void ClientSession::OnBytes(const char* data, size_t size) {
  size_t used = 0;
  while (used < size && state_ != State::kFailed && state_ != State::kClosed) {
    ReplyParser::Reply reply;
    switch (parser_.Feed(data, size, &used, &reply)) {
      case ReplyParser::Result::kNeedMore:
        return;
      case ReplyParser::Result::kError:
        Fail("malformed reply");
        return;
      case ReplyParser::Result::kReply:
        HandleReply(reply);
        if (state_ == State::kTlsHandshake) {
          return;  // the rest arrived in plaintext after the 220: dropped
        }
        break;
    }
  }
}

void ClientSession::OnTlsEstablished() {
  tls_active_ = true;
  pipelining_ = false;  // the new EHLO reply decides
  parser_ = ReplyParser();
  state_ = State::kEhlo;
  absl::StrAppend(&out_, "EHLO ", helo_, "\r\n");
  pending_.push_back({Cmd::kEhlo, 0});
}

void ClientSession::Fail(std::string why) {
  error_ = std::move(why);
  state_ = State::kFailed;
  pending_.clear();
  if (message_ != nullptr) {
    Finish(Outcome::kError, last_failure_code_);
  }
}

void ClientSession::HandleReply(const ReplyParser::Reply& reply) {
  if (pending_.empty()) {
    Fail(absl::StrFormat("unexpected reply %d", reply.code));
    return;
  }
  const Pending p = pending_.front();
  pending_.pop_front();
  const int code = reply.code;
  const bool ok = code >= 200 && code < 300;
  switch (p.cmd) {
    case Cmd::kGreeting:
      if (code != 220) {
        Fail(absl::StrFormat("greeting %d %s", code, reply.lines[0]));
        return;
      }
      state_ = State::kEhlo;
      absl::StrAppend(&out_, "EHLO ", helo_, "\r\n");
      pending_.push_back({Cmd::kEhlo, 0});
      return;
    case Cmd::kEhlo: {
      if (!ok) {
        Fail(absl::StrFormat("EHLO %d %s", code, reply.lines[0]));
        return;
      }
      bool starttls_offered = false;
      for (size_t i = 1; i < reply.lines.size(); ++i) {
        std::string word = reply.lines[i].substr(0, reply.lines[i].find(' '));
        for (char& c : word) {
          c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
        }
        if (word == "PIPELINING") {
          pipelining_ = want_pipelining_;
        } else if (word == "STARTTLS") {
          starttls_offered = true;
        }
      }
      if (want_starttls_ && !tls_active_) {
        if (!starttls_offered) {
          starttls_not_offered_ = true;
          Fail("STARTTLS not offered by the server");
          return;
        }
        out_.append("STARTTLS\r\n");
        pending_.push_back({Cmd::kStartTls, 0});
        return;
      }
      state_ = State::kReady;
      listener_->OnReady();
      return;
    }
    case Cmd::kStartTls:
      if (code != 220) {
        starttls_not_offered_ = true;
        Fail(absl::StrFormat("STARTTLS %d %s", code, reply.lines[0]));
        return;
      }
      state_ = State::kTlsHandshake;
      return;
    case Cmd::kMail:
      listener_->OnReply(Stage::kMail, code);
      mail_ok_ = ok;
      if (!ok) {
        last_failure_code_ = code;
        if (!pipelining_) {
          FinishWithoutData();
        }
        return;
      }
      if (!pipelining_) {
        SendRcpt(0);
      }
      return;
    case Cmd::kRcpt: {
      listener_->OnReply(Stage::kRcpt, code);
      const bool unknown = message_->unknown[p.index];
      if (ok && mail_ok_) {
        ++result_.rcpts_accepted;
        if (unknown) {
          ++result_.rcpts_unexpected;
        }
      } else if (unknown && code >= 500 && code < 600) {
        ++result_.rcpts_rejected_expected;
      } else {
        ++result_.rcpts_unexpected;
        last_failure_code_ = code;
      }
      if (!pipelining_) {
        if (p.index + 1 < message_->rcpts.size()) {
          SendRcpt(p.index + 1);
        } else if (result_.rcpts_accepted > 0) {
          SendData();
        } else {
          FinishWithoutData();
        }
      }
      return;
    }
    case Cmd::kData:
      listener_->OnReply(Stage::kData, code);
      if (code == 354) {
        if (mail_ok_ && result_.rcpts_accepted > 0) {
          out_.append(message_->payload);
        } else {
          out_.append(".\r\n");  // the server took DATA without recipients: end it empty
        }
        pending_.push_back({Cmd::kBody, 0});
        return;
      }
      if (mail_ok_ && result_.rcpts_accepted > 0) {
        last_failure_code_ = code;  // DATA refused although recipients were accepted
      }
      FinishWithoutData();
      return;
    case Cmd::kBody:
      listener_->OnReply(Stage::kEnd, code);
      if (mail_ok_ && result_.rcpts_accepted > 0) {
        Finish(ok && result_.rcpts_unexpected == 0 ? Outcome::kAccepted : Outcome::kError, code);
      } else {
        FinishWithoutData();
      }
      return;
    case Cmd::kRset: {
      // The transaction was already decided; RSET only cleans up.
      if (!ok) {
        Fail(absl::StrFormat("RSET %d", code));
        return;
      }
      const bool expected = mail_ok_ && result_.rcpts_unexpected == 0 &&
                            result_.rcpts_rejected_expected > 0 && result_.rcpts_accepted == 0;
      Finish(expected ? Outcome::kRejected : Outcome::kError, last_failure_code_);
      return;
    }
    case Cmd::kQuit:
      state_ = State::kClosed;
      return;
  }
}

void ClientSession::BeginMessage(const ClientMessage* message) {
  message_ = message;
  mail_ok_ = false;
  result_ = TransactionResult();
  last_failure_code_ = 0;
  state_ = State::kBusy;
  absl::StrAppend(&out_, "MAIL FROM:<", from_, "> SIZE=", message->size, "\r\n");
  pending_.push_back({Cmd::kMail, 0});
  if (pipelining_) {
    for (size_t i = 0; i < message->rcpts.size(); ++i) {
      SendRcpt(i);
    }
    SendData();
  }
}

void ClientSession::SendRcpt(size_t index) {
  absl::StrAppend(&out_, "RCPT TO:<", message_->rcpts[index], ">\r\n");
  pending_.push_back({Cmd::kRcpt, index});
}

void ClientSession::SendData() {
  out_.append("DATA\r\n");
  pending_.push_back({Cmd::kData, 0});
}

void ClientSession::FinishWithoutData() {
  // With PIPELINING the remaining replies of the group are still owed; wait for them.
  if (!pending_.empty()) {
    return;
  }
  out_.append("RSET\r\n");
  pending_.push_back({Cmd::kRset, 0});
}

void ClientSession::Finish(Outcome outcome, int code) {
  result_.outcome = outcome;
  result_.final_code = code;
  message_ = nullptr;
  if (state_ == State::kBusy) {
    state_ = State::kReady;
  }
  TransactionResult r = result_;
  listener_->OnTransactionDone(r);
  if (state_ == State::kReady && pending_.empty()) {
    listener_->OnReady();
  }
}

void ClientSession::Quit() {
  if (state_ == State::kReady && pending_.empty()) {
    out_.append("QUIT\r\n");
    pending_.push_back({Cmd::kQuit, 0});
    state_ = State::kQuit;
  } else if (state_ != State::kFailed) {
    state_ = State::kClosed;
  }
}

}  // namespace moat::loadgen
