// net/client/smtp_client_session.cc: see smtp_client_session.h. Owned by: outbound.
// Parses untrusted input (server replies) through ReplyReader.
#include "net/client/smtp_client_session.h"

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

#include "core/log/assert.h"

namespace moat::client {
namespace {

Outcome OutcomeForClass(int reply_class) {
  return reply_class == 5 ? Outcome::kBounced : Outcome::kDeferred;
}

// A reply as it goes into results and log lines: printable and bounded (the server
// controls it).
std::string Quoted(const Reply& reply) {
  return Printable(reply.Text(), kReplyLineBytesMax);
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return absl::EqualsIgnoreCase(absl::string_view(a.data(), a.size()),
                                absl::string_view(b.data(), b.size()));
}

}  // namespace

std::string_view PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kConnecting:
      return "connecting";
    case Phase::kGreeting:
      return "greeting";
    case Phase::kHelo:
      return "helo";
    case Phase::kStartTls:
      return "starttls";
    case Phase::kTlsHandshake:
      return "tls_handshake";
    case Phase::kRset:
      return "rset";
    case Phase::kMail:
      return "mail";
    case Phase::kRcpt:
      return "rcpt";
    case Phase::kData:
      return "data";
    case Phase::kDataXfer:
      return "data_xfer";
    case Phase::kDataDone:
      return "data_done";
    case Phase::kIdle:
      return "idle";
    case Phase::kQuit:
      return "quit";
    case Phase::kClosed:
      return "closed";
  }
  return "unknown";
}

absl::Duration TimeoutFor(Phase phase, const ClientTimeouts& t) {
  switch (phase) {
    case Phase::kConnecting:
      return t.connect;
    case Phase::kGreeting:
    case Phase::kHelo:
      return t.helo;
    case Phase::kStartTls:
    case Phase::kTlsHandshake:
      return t.starttls;
    case Phase::kRset:
      return t.rset;
    case Phase::kMail:
      return t.mail;
    case Phase::kRcpt:
      return t.rcpt;
    case Phase::kData:
      return t.data_init;
    case Phase::kDataXfer:
      return t.data_xfer;
    case Phase::kDataDone:
      return t.data_done;
    case Phase::kIdle:
      return t.idle;
    case Phase::kQuit:
      return t.quit;
    case Phase::kClosed:
      return absl::ZeroDuration();
  }
  return absl::ZeroDuration();
}

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kPending:
      return "pending";
    case Outcome::kSent:
      return "sent";
    case Outcome::kDeferred:
      return "deferred";
    case Outcome::kBounced:
      return "bounced";
  }
  return "unknown";
}

SmtpClientSession::SmtpClientSession(ServerIdentity server, ClientTimeouts timeouts,
                                     ClientOptions options)
    : server_(std::move(server)), timeouts_(timeouts), options_(std::move(options)) {}

std::string SmtpClientSession::NameAddr() const {
  return absl::StrFormat("%s[%s]", server_.host, server_.address);
}

std::string SmtpClientSession::NameAddrPort() const {
  return absl::StrFormat("%s[%s]:%d", server_.host, server_.address, server_.port);
}

void SmtpClientSession::Start(ClientTransaction transaction) {
  MOAT_CHECK(!started_);
  MOAT_CHECK(!transaction.recipients.empty());
  started_ = true;
  transactions_ = 1;
  transaction_ = std::move(transaction);
  results_.assign(transaction_.recipients.size(), RecipientResult{});
  rcpt_accepted_.assign(transaction_.recipients.size(), false);
}

void SmtpClientSession::OnConnected() {
  MOAT_CHECK(started_);
  MOAT_CHECK(phase_ == Phase::kConnecting);
  expect_.push_back({Command::kGreeting});
  phase_ = Phase::kGreeting;
}

void SmtpClientSession::OnConnectFailed(std::string_view why) {
  MOAT_CHECK(phase_ == Phase::kConnecting);
  FailPending(Outcome::kDeferred, "4.4.1",
              absl::StrFormat("connect to %s: %s", NameAddrPort(), why), "", true);
  transaction_done_ = true;
  phase_ = Phase::kClosed;
}

std::string SmtpClientSession::TakeOutput() {
  std::string out;
  out.swap(output_);
  return out;
}

void SmtpClientSession::OnData(std::string_view bytes) {
  if (phase_ == Phase::kClosed || phase_ == Phase::kConnecting ||
      phase_ == Phase::kTlsHandshake) {
    return;
  }
  reader_.Feed(bytes);
  while (phase_ != Phase::kClosed && phase_ != Phase::kTlsHandshake) {
    Reply reply;
    std::string error;
    const ReplyReader::Result r = reader_.Next(&reply, &error);
    if (r == ReplyReader::Result::kNeedMore) {
      break;
    }
    if (r == ReplyReader::Result::kMalformed) {
      const std::string where = Where();
      FailPending(
          Outcome::kDeferred, "4.5.0",
          absl::StrFormat("host %s sent a malformed reply while %s: %s", NameAddr(), where, error),
          "", true);
      transaction_done_ = true;
      reusable_ = false;
      expect_.clear();
      unsent_.clear();
      phase_ = Phase::kClosed;
      break;
    }
    if (reply.code == 421) {
      reusable_ = false;  // the server is closing the connection
    }
    if (expect_.empty()) {
      // Nothing was asked: a 421 on an idle connection is a normal goodbye; anything
      // else means we no longer know where the conversation is.
      if (phase_ != Phase::kIdle || reply.code != 421) {
        const std::string where = Where();
        FailPending(Outcome::kDeferred, "4.5.0",
                    absl::StrFormat("unexpected reply from %s while %s: %s", NameAddr(), where,
                                    Quoted(reply)),
                    Quoted(reply), true);
        transaction_done_ = true;
      }
      reusable_ = false;
      unsent_.clear();
      phase_ = Phase::kClosed;
      break;
    }
    HandleReply(reply);
    UpdatePhase();
  }
}

void SmtpClientSession::HandleReply(const Reply& reply) {
  const Expect expect = expect_.front();
  expect_.pop_front();
  switch (expect.command) {
    case Command::kGreeting:
      HandleGreeting(reply);
      break;
    case Command::kEhlo:
      HandleEhlo(reply);
      break;
    case Command::kHelo:
      HandleHelo(reply);
      break;
    case Command::kStartTls:
      HandleStartTls(reply);
      break;
    case Command::kRset:
      HandleRset(reply);
      break;
    case Command::kMail:
      HandleMail(reply);
      break;
    case Command::kRcpt:
      HandleRcpt(reply, expect.recipient);
      break;
    case Command::kData:
      HandleData(reply);
      break;
    case Command::kDot:
      HandleDot(reply, "end of DATA");
      break;
    case Command::kBdat:
      HandleDot(reply, "BDAT");
      break;
    case Command::kQuit:
      expect_.clear();
      phase_ = Phase::kClosed;
      return;
  }
  if (phase_ == Phase::kClosed || phase_ == Phase::kQuit || phase_ == Phase::kTlsHandshake) {
    return;
  }
  if (!features_.pipelining && expect_.empty()) {
    SendNextLockStep();
  }
  FinishTransactionIfSettled();
}

void SmtpClientSession::HandleGreeting(const Reply& reply) {
  if (reply.Class() == 2) {
    Send(Command::kEhlo, "EHLO " + server_.helo_name);
    return;
  }
  FailPending(OutcomeForClass(reply.Class()), reply.Dsn(),
              absl::StrFormat("host %s refused to talk to me: %s", NameAddr(), Quoted(reply)),
              Quoted(reply), true);
  transaction_done_ = true;
  reusable_ = false;
}

void SmtpClientSession::HandleEhlo(const Reply& reply) {
  if (reply.Class() == 2) {
    ParseEhlo(reply);
    if (!tls_active_ && server_.tls != TlsLevel::kNone) {
      if (features_.starttls) {
        Send(Command::kStartTls, "STARTTLS");
        return;
      }
      if (server_.tls >= TlsLevel::kEncrypt) {
        RequireTls(
            absl::StrFormat("TLS is required, but was not offered by host %s", NameAddr()));
        return;
      }
    }
    BeginTransaction(false);
    return;
  }
  if (reply.code == 421) {
    FailPending(Outcome::kDeferred, reply.Dsn(),
                absl::StrFormat("host %s refused to talk to me: %s", NameAddr(), Quoted(reply)),
                Quoted(reply), true);
    transaction_done_ = true;
    return;
  }
  // Postfix: any other EHLO rejection falls back to HELO.
  Send(Command::kHelo, "HELO " + server_.helo_name);
}

void SmtpClientSession::HandleHelo(const Reply& reply) {
  if (reply.Class() == 2) {
    if (!tls_active_ && server_.tls >= TlsLevel::kEncrypt) {
      // HELO has no extensions: no STARTTLS.
      RequireTls(absl::StrFormat("TLS is required, but was not offered by host %s", NameAddr()));
      return;
    }
    BeginTransaction(false);
    return;
  }
  FailPending(OutcomeForClass(reply.Class()), reply.Dsn(),
              absl::StrFormat("host %s refused to talk to me: %s", NameAddr(), Quoted(reply)),
              Quoted(reply), true);
  transaction_done_ = true;
  reusable_ = false;
}

void SmtpClientSession::HandleStartTls(const Reply& reply) {
  if (reply.Class() == 2) {
    // Whatever else the server sent in plaintext is dropped, never read after the
    // handshake (CVE-2011-0411 on the client side).
    reader_ = ReplyReader();
    phase_ = Phase::kTlsHandshake;
    return;
  }
  if (reply.code == 421) {
    FailPending(Outcome::kDeferred, reply.Dsn(),
                absl::StrFormat("host %s refused to talk to me: %s", NameAddr(), Quoted(reply)),
                Quoted(reply), true);
    transaction_done_ = true;
    return;
  }
  if (server_.tls >= TlsLevel::kEncrypt) {
    RequireTls(absl::StrFormat("TLS is required, but host %s refused to start TLS: %s",
                               NameAddr(), Quoted(reply)));
    return;
  }
  BeginTransaction(false);  // may: on in plaintext, as Postfix
}

void SmtpClientSession::RequireTls(std::string_view why) {
  FailPending(Outcome::kDeferred, "4.7.4", why, "", true);
  transaction_done_ = true;
  reusable_ = false;  // UpdatePhase sends QUIT
}

void SmtpClientSession::OnTlsEstablished(bool verified) {
  MOAT_CHECK(phase_ == Phase::kTlsHandshake);
  tls_active_ = true;
  phase_ = Phase::kHelo;
  if (server_.tls == TlsLevel::kVerify && !verified) {
    FailPending(Outcome::kDeferred, "4.7.5", "Server certificate not verified", "", true);
    transaction_done_ = true;
    reusable_ = false;
    UpdatePhase();  // QUIT, over TLS
    return;
  }
  // RFC 3207: forget what the server said before TLS and ask again.
  features_ = ServerFeatures{};
  Send(Command::kEhlo, "EHLO " + server_.helo_name);
  UpdatePhase();
}

void SmtpClientSession::OnTlsFailed(std::string_view why) {
  MOAT_CHECK(phase_ == Phase::kTlsHandshake);
  (void)why;  // the driver logs it; the reason is Postfix's fixed text
  LoseConnection("Cannot start TLS: handshake failure", "4.7.5");
}

bool SmtpClientSession::Discarded(std::string_view keyword) const {
  for (const std::string& d : options_.discard_ehlo_keywords) {
    if (EqualsIgnoreCase(keyword, d)) {
      return true;
    }
  }
  return false;
}

void SmtpClientSession::ParseEhlo(const Reply& reply) {
  features_ = ServerFeatures{};
  features_.esmtp = true;
  // The first line is the server's name; each later line is "250-KEYWORD params".
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    std::string_view line = reply.lines[i];
    if (line.size() <= 4) {
      continue;
    }
    line.remove_prefix(4);
    const size_t end = line.find_first_of(" =");
    const std::string_view keyword = line.substr(0, end);
    const std::string_view params =
        end == std::string_view::npos ? std::string_view() : line.substr(end + 1);
    if (Discarded(keyword)) {
      continue;
    }
    if (EqualsIgnoreCase(keyword, "PIPELINING")) {
      features_.pipelining = true;
    } else if (EqualsIgnoreCase(keyword, "SIZE")) {
      features_.size = true;
      uint64_t limit = 0;
      bool digits = !params.empty() && params.size() <= 19;
      for (char c : params) {
        if (c < '0' || c > '9') {
          digits = false;
          break;
        }
        limit = limit * 10 + static_cast<uint64_t>(c - '0');
      }
      features_.size_limit = digits ? limit : 0;  // bad or absent: no limit (as Postfix)
    } else if (EqualsIgnoreCase(keyword, "8BITMIME")) {
      features_.eight_bit_mime = true;
    } else if (EqualsIgnoreCase(keyword, "SMTPUTF8")) {
      features_.smtputf8 = true;
    } else if (EqualsIgnoreCase(keyword, "DSN")) {
      features_.dsn = true;
    } else if (EqualsIgnoreCase(keyword, "STARTTLS")) {
      features_.starttls = true;
    } else if (EqualsIgnoreCase(keyword, "CHUNKING")) {
      features_.chunking = true;
    }
  }
  // Postfix: a server with SMTPUTF8 but without 8BITMIME is treated as having 8BITMIME.
  if (features_.smtputf8) {
    features_.eight_bit_mime = true;
  }
}

void SmtpClientSession::BeginTransaction(bool with_rset) {
  in_transaction_ = true;
  mail_ok_ = false;
  data_sent_ = false;
  at_line_start_ = true;
  accepted_ = 0;
  bdat_ = false;
  body_bytes_ = 0;
  const ClientTransaction& t = transaction_;
  if (features_.size && features_.size_limit > 0 && t.size_bytes > features_.size_limit) {
    FailPending(Outcome::kBounced, "5.3.4",
                absl::StrFormat("message size %d exceeds size limit %d of server %s", t.size_bytes,
                                features_.size_limit, NameAddr()),
                "", false);
    in_transaction_ = false;
    transaction_done_ = true;
    return;
  }
  if (t.smtputf8 && !features_.smtputf8) {
    FailPending(Outcome::kBounced, "5.6.7",
                absl::StrFormat("SMTPUTF8 is required, but was not offered by host %s", NameAddr()),
                "", false);
    in_transaction_ = false;
    transaction_done_ = true;
    return;
  }
  if (with_rset) {
    Send(Command::kRset, "RSET");
  }
  std::string mail = absl::StrFormat("MAIL FROM:<%s>", t.sender);
  if (features_.size) {
    absl::StrAppendFormat(&mail, " SIZE=%d", t.size_bytes);
  }
  if (t.eight_bit && features_.eight_bit_mime) {
    mail += " BODY=8BITMIME";
  }
  if (t.smtputf8 && features_.smtputf8) {
    mail += " SMTPUTF8";
  }
  if (features_.dsn) {
    if (!t.dsn_ret.empty()) {
      absl::StrAppendFormat(&mail, " RET=%s", t.dsn_ret);
    }
    if (!t.dsn_envid.empty()) {
      absl::StrAppendFormat(&mail, " ENVID=%s", t.dsn_envid);
    }
  }
  Send(Command::kMail, std::move(mail));
  for (size_t i = 0; i < t.recipients.size(); ++i) {
    const ClientRecipient& r = t.recipients[i];
    std::string rcpt = absl::StrFormat("RCPT TO:<%s>", r.address);
    if (features_.dsn) {
      if (!r.notify.empty()) {
        absl::StrAppendFormat(&rcpt, " NOTIFY=%s", r.notify);
      }
      if (!r.orcpt.empty()) {
        absl::StrAppendFormat(&rcpt, " ORCPT=%s", r.orcpt);
      }
    }
    Send(Command::kRcpt, std::move(rcpt), static_cast<int>(i));
  }
  data_sent_ = true;
  if (features_.pipelining && features_.chunking) {
    // One chunk, announced now: the content follows in the same write (AddBody/EndBody).
    bdat_ = true;
    bdat_size_ = t.size_bytes + (t.ends_in_newline ? 0 : 2);
    Send(Command::kBdat, absl::StrFormat("BDAT %d LAST", bdat_size_));
    phase_ = Phase::kDataXfer;
    return;
  }
  Send(Command::kData, "DATA");
}

void SmtpClientSession::Send(Command command, std::string line, int recipient) {
  if (features_.pipelining || (expect_.empty() && unsent_.empty())) {
    output_ += line;
    output_ += "\r\n";
    expect_.push_back({command, recipient});
  } else {
    unsent_.emplace_back(Expect{command, recipient}, std::move(line));
  }
}

void SmtpClientSession::SendNextLockStep() {
  if (unsent_.empty()) {
    return;
  }
  auto [expect, line] = std::move(unsent_.front());
  unsent_.pop_front();
  if (expect.command == Command::kData && accepted_ == 0) {
    // Every recipient was rejected: no DATA (the next transaction starts with RSET).
    unsent_.clear();
    return;
  }
  output_ += line;
  output_ += "\r\n";
  expect_.push_back(expect);
}

void SmtpClientSession::HandleRset(const Reply& reply) {
  if (reply.Class() == 2) {
    return;
  }
  // The connection is in an unknown state: give the transaction back, close.
  FailPending(Outcome::kDeferred, reply.Class() == 5 ? "4.0.0" : reply.Dsn(),
              SaidText(reply, "RSET"), Quoted(reply), true);
  transaction_done_ = true;
  reusable_ = false;
  expect_.clear();
  unsent_.clear();
}

void SmtpClientSession::HandleMail(const Reply& reply) {
  if (reply.Class() == 2) {
    mail_ok_ = true;
    return;
  }
  FailPending(OutcomeForClass(reply.Class()), reply.Dsn(), SaidText(reply, "MAIL FROM"),
              Quoted(reply), false);
  unsent_.clear();  // lock-step: no RCPT, no DATA
}

void SmtpClientSession::HandleRcpt(const Reply& reply, int recipient) {
  MOAT_CHECK(recipient >= 0 && static_cast<size_t>(recipient) < results_.size());
  RecipientResult& r = results_[recipient];
  if (r.outcome != Outcome::kPending) {
    return;  // MAIL already failed the transaction
  }
  if (reply.Class() == 2) {
    rcpt_accepted_[recipient] = true;
    ++accepted_;
    return;
  }
  r.outcome = OutcomeForClass(reply.Class());
  r.dsn = reply.Dsn();
  r.reason = SaidText(reply, "RCPT TO");
  r.reply = Quoted(reply);
}

void SmtpClientSession::HandleData(const Reply& reply) {
  if (reply.Class() == 3) {
    if (accepted_ > 0 && mail_ok_) {
      phase_ = Phase::kDataXfer;
      return;
    }
    // A server that says 354 without a valid recipient: end the empty message.
    output_ += ".\r\n";
    expect_.push_back({Command::kDot});
    return;
  }
  FailAccepted(reply, "DATA");
}

void SmtpClientSession::AddBody(std::string_view chunk) {
  MOAT_CHECK(phase_ == Phase::kDataXfer);
  if (chunk.empty()) {
    return;
  }
  body_bytes_ += chunk.size();
  if (bdat_) {
    output_.append(chunk);  // RFC 3030: no dot-stuffing inside a chunk
    at_line_start_ = chunk.back() == '\n';
    return;
  }
  // Copy the chunk in spans that end just before a line starting with '.', and double that
  // dot. at_line_start_ carries "the previous chunk ended a line" across chunks. The search
  // is for dots, not line ends: a base64 attachment has none, so a 100 KB body is one memchr
  // instead of one per line (the per-line search was 2.4% of a shard's CPU in W3).
  // One allocation up front (a little room for doubled dots) instead of regrowth copies.
  output_.reserve(output_.size() + chunk.size() + chunk.size() / 64 + 8);
  const char* data = chunk.data();
  const size_t n = chunk.size();
  size_t copied = 0;  // data[copied, n) is not in output_ yet
  for (size_t p = 0; p < n;) {
    const auto* dot = static_cast<const char*>(std::memchr(data + p, '.', n - p));
    if (dot == nullptr) {
      break;
    }
    p = static_cast<size_t>(dot - data);
    if (p == 0 ? at_line_start_ : data[p - 1] == '\n') {
      output_.append(data + copied, p - copied);
      output_ += '.';
      copied = p;
    }
    ++p;
  }
  output_.append(data + copied, n - copied);
  at_line_start_ = chunk.back() == '\n';
}

void SmtpClientSession::EndBody() {
  MOAT_CHECK(phase_ == Phase::kDataXfer);
  if (!at_line_start_) {
    output_ += "\r\n";
    body_bytes_ += 2;
  }
  if (bdat_) {
    if (body_bytes_ != bdat_size_) {
      // The driver's chunks do not add up to the announced size: the server would read
      // our next command as content. Never send that; give the recipients back.
      MOAT_DCHECK(false);
      output_.clear();
      LoseConnection(absl::StrFormat("internal error: %d bytes of content for BDAT %d",
                                     body_bytes_, bdat_size_),
                     "4.3.0");
      return;
    }
    phase_ = Phase::kDataDone;
    UpdatePhase();  // the MAIL and RCPT replies come first
    return;
  }
  output_ += ".\r\n";
  expect_.push_back({Command::kDot});
  phase_ = Phase::kDataDone;
}

void SmtpClientSession::HandleDot(const Reply& reply, std::string_view command) {
  if (reply.Class() != 2) {
    FailAccepted(reply, command);
    return;
  }
  for (size_t i = 0; i < results_.size(); ++i) {
    if (rcpt_accepted_[i] && results_[i].outcome == Outcome::kPending) {
      results_[i] =
          RecipientResult{Outcome::kSent, reply.Dsn(), Quoted(reply), Quoted(reply), false};
    }
  }
}

void SmtpClientSession::FailAccepted(const Reply& reply, std::string_view command) {
  for (size_t i = 0; i < results_.size(); ++i) {
    if (rcpt_accepted_[i] && results_[i].outcome == Outcome::kPending) {
      results_[i] = RecipientResult{OutcomeForClass(reply.Class()), reply.Dsn(),
                                    SaidText(reply, command), Quoted(reply), false};
    }
  }
}

void SmtpClientSession::FailPending(Outcome outcome, std::string_view dsn, std::string_view reason,
                                    std::string_view reply, bool site_failure) {
  for (RecipientResult& r : results_) {
    if (r.outcome == Outcome::kPending) {
      r = RecipientResult{outcome, std::string(dsn), std::string(reason), std::string(reply),
                          site_failure};
    }
  }
}

void SmtpClientSession::FinishTransactionIfSettled() {
  if (!in_transaction_ || !expect_.empty() || !unsent_.empty() || phase_ == Phase::kDataXfer) {
    return;
  }
  // Every command of the transaction has its reply, so every recipient has a result;
  // a pending one here would be a bug in this file, but it must not be lost: defer it.
  for (RecipientResult& r : results_) {
    if (r.outcome == Outcome::kPending) {
      MOAT_DCHECK(false);
      r = RecipientResult{Outcome::kDeferred, "4.3.0", "internal error in the SMTP client", "",
                          false};
    }
  }
  in_transaction_ = false;
  transaction_done_ = true;
}

void SmtpClientSession::UpdatePhase() {
  if (phase_ == Phase::kClosed || phase_ == Phase::kDataXfer || phase_ == Phase::kTlsHandshake) {
    return;
  }
  if (!expect_.empty()) {
    switch (expect_.front().command) {
      case Command::kGreeting:
        phase_ = Phase::kGreeting;
        return;
      case Command::kEhlo:
      case Command::kHelo:
        phase_ = Phase::kHelo;
        return;
      case Command::kStartTls:
        phase_ = Phase::kStartTls;
        return;
      case Command::kRset:
        phase_ = Phase::kRset;
        return;
      case Command::kMail:
        phase_ = Phase::kMail;
        return;
      case Command::kRcpt:
        phase_ = Phase::kRcpt;
        return;
      case Command::kData:
        phase_ = Phase::kData;
        return;
      case Command::kDot:
      case Command::kBdat:
        phase_ = Phase::kDataDone;
        return;
      case Command::kQuit:
        phase_ = Phase::kQuit;
        return;
    }
  }
  if (!reusable_) {
    // The server said goodbye (421) or the state is unknown: QUIT and close.
    unsent_.clear();
    output_ += "QUIT\r\n";
    expect_.push_back({Command::kQuit});
    phase_ = Phase::kQuit;
    return;
  }
  phase_ = Phase::kIdle;
}

void SmtpClientSession::NextTransaction(ClientTransaction transaction) {
  MOAT_CHECK(CanReuse());
  MOAT_CHECK(!transaction.recipients.empty());
  transaction_ = std::move(transaction);
  results_.assign(transaction_.recipients.size(), RecipientResult{});
  rcpt_accepted_.assign(transaction_.recipients.size(), false);
  transaction_done_ = false;
  ++transactions_;
  BeginTransaction(true);
  UpdatePhase();
}

void SmtpClientSession::Quit() {
  if (phase_ == Phase::kClosed || phase_ == Phase::kQuit) {
    return;
  }
  if (phase_ == Phase::kIdle) {
    reusable_ = false;
    UpdatePhase();
    return;
  }
  const std::string where = Where();
  FailPending(Outcome::kDeferred, "4.3.0",
              absl::StrFormat("delivery to %s stopped while %s", NameAddr(), where), "", false);
  transaction_done_ = true;
  reusable_ = false;
  expect_.clear();
  unsent_.clear();
  phase_ = Phase::kClosed;
}

void SmtpClientSession::OnEof() {
  if (phase_ == Phase::kClosed) {
    return;
  }
  if (phase_ == Phase::kIdle || phase_ == Phase::kQuit) {
    phase_ = Phase::kClosed;
    return;
  }
  LoseConnection(absl::StrFormat("lost connection with %s while %s", NameAddr(), Where()));
}

bool SmtpClientSession::OnTimeout(Phase armed_for) {
  if (armed_for != phase_) {
    return false;
  }
  switch (phase_) {
    case Phase::kClosed:
      return false;
    case Phase::kConnecting:
      OnConnectFailed("Connection timed out");
      return true;
    case Phase::kIdle:
      Quit();
      return true;
    case Phase::kQuit:
      phase_ = Phase::kClosed;
      return true;
    default:
      LoseConnection(
          absl::StrFormat("conversation with %s timed out while %s", NameAddr(), Where()));
      return true;
  }
}

void SmtpClientSession::LoseConnection(std::string_view reason, std::string_view dsn) {
  FailPending(Outcome::kDeferred, dsn, reason, "", true);
  transaction_done_ = true;
  in_transaction_ = false;
  reusable_ = false;
  expect_.clear();
  unsent_.clear();
  phase_ = Phase::kClosed;
}

std::string SmtpClientSession::Where() const {
  switch (phase_) {
    case Phase::kConnecting:
      return "connecting";
    case Phase::kGreeting:
      return "receiving the initial server greeting";
    case Phase::kHelo:
      if (!expect_.empty() && expect_.front().command == Command::kHelo) {
        return "performing the HELO handshake";
      }
      return "performing the EHLO handshake";
    case Phase::kStartTls:
      return "sending STARTTLS";
    case Phase::kTlsHandshake:
      return "performing the TLS handshake";
    case Phase::kRset:
      return "sending RSET";
    case Phase::kMail:
      return "sending MAIL FROM";
    case Phase::kRcpt:
      return "sending RCPT TO";
    case Phase::kData:
      return "sending DATA command";
    case Phase::kDataXfer:
      return "sending message body";
    case Phase::kDataDone:
      return "sending end of data -- message may be sent more than once";
    case Phase::kIdle:
      return "idle";
    case Phase::kQuit:
      return "sending QUIT";
    case Phase::kClosed:
      return "closed";
  }
  return "unknown";
}

std::string SmtpClientSession::SaidText(const Reply& reply, std::string_view command) const {
  return absl::StrFormat("host %s said: %s (in reply to %s command)", NameAddr(), Quoted(reply),
                         command);
}

}  // namespace moat::client
