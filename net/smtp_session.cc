// net/smtp_session.cc: see smtp_session.h. Parses untrusted network input.
//
//                       Start()
//                          |  220 greeting (421 too many connections, 554 connect reject)
//                          v
//   +---------------> kCommand <-------------------------------------------+
//   |   HELO/EHLO/MAIL/RCPT/RSET/NOOP/VRFY/HELP: one reply each             |
//   |   STARTTLS: 220, pause until OnTlsStarted(), back to the initial state |
//   |        | DATA: 354                     | BDAT n [LAST]                 |
//   |        v                               v                               |
//   |     kData --CRLF.CRLF-->+          kBdatChunk --n bytes--> 250 (not LAST)
//   |                         |  (kBdatSkip when the chunk is refused: n bytes, then the error)
//   |                         v              | LAST
//   |            content errors? --yes--> 5xx, transaction reset ------------+
//   |                         | no           |
//   |                         v              v
//   +-- 250 queued as ID <-- kAwaitQueue (sink.Submit; OnQueued / OnQueueFailed -> 451/452)
//
//   Any state: QUIT -> 221 and close; a 421 reply (timeout, shutdown, too many errors,
//   too many connections) closes; OnEof() closes with "lost connection after ...".
//
// Postfix references (src/smtpd/smtpd.c): smtpd_proto() for the command loop, the error
// limits and the pipelining check; helo_cmd .. quit_cmd for the verbs;
// receive_data_message() and bdat_cmd() for content; common_pre_message_handling() for
// the Received: header; log_whatsup() and smtpd_format_cmd_stats() for the log lines.
#include "net/smtp_session.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "core/log/assert.h"
#include "core/log/log.h"

namespace moat::net {
namespace {

// Command flags, after Postfix's smtpd_cmd_table.
constexpr uint8_t kFlagLimit = 1;    // counts towards smtpd_junk_command_limit
constexpr uint8_t kFlagPreTls = 2;   // allowed in plaintext when TLS is required
constexpr uint8_t kFlagLast = 4;     // RFC 2920: ends a pipelined group (client must wait)

constexpr std::string_view kAfterData = "DATA content";
constexpr std::string_view kAfterBdat = "BDAT content";
constexpr std::string_view kAfterEom = "END-OF-MESSAGE";
constexpr std::string_view kReasonLost = "lost connection";

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) {
    return false;
  }
  for (size_t i = 0; i < prefix.size(); ++i) {
    char c = text[i];
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    }
    if (c != prefix[i]) {
      return false;
    }
  }
  return true;
}

// Postfix's collapse_args(): the words of a HELO argument joined by single spaces.
std::string CollapseBlanks(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool blank = false;
  for (char c : s) {
    if (IsBlank(c)) {
      blank = true;
      continue;
    }
    if (blank && !out.empty()) {
      out.push_back(' ');
    }
    blank = false;
    out.push_back(c);
  }
  return out;
}

// Postfix printable() + neuter(): a HELO name that goes into logs and Received: carries
// no characters that could break either (NEUTER_CHARACTERS " <>()\\\";@").
std::string NeuterHelo(std::string_view helo) {
  std::string out(helo);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || std::strchr("<>()\\\";@", c) != nullptr) {
      c = '?';
    }
  }
  return out;
}

std::string_view NextWord(std::string_view* rest) {
  std::string_view s = *rest;
  size_t i = 0;
  while (i < s.size() && IsBlank(s[i])) {
    ++i;
  }
  size_t start = i;
  while (i < s.size() && !IsBlank(s[i])) {
    ++i;
  }
  *rest = s.substr(i);
  return s.substr(start, i - start);
}

// A client certificate's CN inside the Received: header's comment (untrusted: it comes
// from the client): every byte outside printable ASCII becomes '?', and the characters
// that would end the quoted string or the comment are backslash-quoted (RFC 5322 3.2.1),
// as Postfix's comment_sanitize keeps the header well formed.
std::string CommentSafe(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) {
      out += '?';
      continue;
    }
    if (c == '\\' || c == '"' || c == '(' || c == ')') {
      out += '\\';
    }
    out += c;
  }
  return out;
}

}  // namespace

const SmtpSession::Command SmtpSession::kCommands[] = {
    {SmtpVerb::kHelo, &SmtpSession::Helo, kFlagLimit | kFlagPreTls | kFlagLast},
    {SmtpVerb::kEhlo, &SmtpSession::Ehlo, kFlagLimit | kFlagPreTls | kFlagLast},
    {SmtpVerb::kStartTls, &SmtpSession::StartTls, kFlagPreTls},
    {SmtpVerb::kAuth, &SmtpSession::NotImplemented, 0},
    {SmtpVerb::kMail, &SmtpSession::Mail, 0},
    {SmtpVerb::kRcpt, &SmtpSession::Rcpt, 0},
    {SmtpVerb::kData, &SmtpSession::Data, kFlagLast},
    {SmtpVerb::kBdat, &SmtpSession::Bdat, 0},
    {SmtpVerb::kRset, &SmtpSession::Rset, kFlagLimit},
    {SmtpVerb::kNoop, &SmtpSession::Noop, kFlagLimit | kFlagPreTls | kFlagLast},
    {SmtpVerb::kVrfy, &SmtpSession::Vrfy, kFlagLimit | kFlagLast},
    {SmtpVerb::kEtrn, &SmtpSession::NotImplemented, kFlagLimit},
    {SmtpVerb::kQuit, &SmtpSession::Quit, kFlagPreTls},
    {SmtpVerb::kHelp, &SmtpSession::Help, kFlagPreTls},
};

const SmtpSession::Command* SmtpSession::FindCommand(SmtpVerb verb) {
  for (const Command& command : kCommands) {
    if (command.verb == verb) {
      return &command;
    }
  }
  return nullptr;
}

SmtpSession::SmtpSession(const SessionSettings& settings, Policy& policy, MessageSink& sink,
                         ConnectionInfo connection)
    : settings_(settings),
      policy_(policy),
      sink_(sink),
      connection_(std::move(connection)),
      namaddr_(absl::StrFormat("%s[%s]", connection_.client_name, connection_.client_ip)) {}

SmtpSession::~SmtpSession() {
  // A session may die while the sink still holds its message (the connection dropped
  // during the commit): the owner detaches it from the sink first (smtp_message.h). The
  // message stays the sink's; no Abandon().
  if (started_ && !closing_) {
    reason_ = std::string(kReasonLost);
    Close();
  }
}

// ---------------------------------------------------------------------------------------
// Connection events.

void SmtpSession::Start() {
  MOAT_CHECK(!started_);
  started_ = true;
  log::Info("connect from %s", namaddr_);
  if (!connection_.exempt_from_limits && settings_.client_connection_count_limit > 0 &&
      connection_.client_connection_count > settings_.client_connection_count_limit) {
    log::Warning("Connection concurrency limit exceeded: %d from %s for service smtp",
                 connection_.client_connection_count, namaddr_);
    Reply(absl::StrFormat("421 4.7.0 %s Error: too many connections from %s",
                          settings_.myhostname, connection_.client_ip));
    return;
  }
  if (!settings_.delay_reject) {
    std::string reject = CheckPolicy(PolicyStage::kConnect, "CONNECT");
    if (!reject.empty()) {
      // The reject replaces the greeting; every later command but QUIT gets a 503.
      access_denied_ = reject;
      Reply(reject);
      ++error_count_;
      return;
    }
  }
  if (settings_.banner.empty()) {
    Reply(absl::StrFormat("220 %s ESMTP %s", settings_.myhostname, settings_.mail_name));
  } else {
    Reply(absl::StrFormat("220 %s", settings_.banner));
  }
}

void SmtpSession::ConsumeOutput(size_t bytes) {
  output_.erase(0, bytes);
  if (started_) {
    greeting_sent_ = true;
  }
}

std::string SmtpSession::TakeOutput() {
  std::string out;
  out.swap(output_);
  if (started_) {
    greeting_sent_ = true;
  }
  return out;
}

void SmtpSession::OnData(std::string_view bytes) {
  if (closing_ || bytes.empty()) {
    return;
  }
  if (!greeting_sent_) {
    // Talk before the greeting: a client that does not wait for 220 is a spam engine
    // (or a confused peer). postscreen's PREGREET test; we always drop.
    log::Info("PREGREET %d from %s: %s", bytes.size(), namaddr_, EscapeForLog(bytes));
    output_.clear();
    Reply("554 5.5.1 Error: no SMTP service");
    Close();
    return;
  }
  if (input_.empty() && !in_run_ && !WantsPause()) {
    // Fast path: work straight from the caller's bytes; keep only the unconsumed tail.
    std::string_view in = bytes;
    Run(&in);
    if (!closing_) {
      // alloc: at most one partial command line (<= the line limit) or what arrived
      // while paused; the I/O layer stops reading while WantsPause().
      input_.assign(in.data(), in.size());
    }
    return;
  }
  input_.append(bytes.data(), bytes.size());
  Resume();
}

void SmtpSession::OnEof() {
  if (closing_) {
    return;
  }
  reason_ = std::string(kReasonLost);
  Close();
}

void SmtpSession::OnTimeout() {
  if (closing_) {
    return;
  }
  reason_ = "timeout";
  Reply(absl::StrFormat("421 4.4.2 %s Error: timeout exceeded", settings_.myhostname));
}

void SmtpSession::OnShutdown() {
  shutdown_requested_ = true;
  if (started_ && !closing_ && !in_run_ && state_ == State::kCommand && input_.empty() &&
      !skipping_long_line_ && !WantsPause()) {
    Reply("421 4.3.2 Service shutting down");
  }
}

void SmtpSession::OnDelayDone() {
  pending_delay_ = absl::ZeroDuration();
  error_sleep_done_ = true;
  Resume();
}

void SmtpSession::OnQueued(std::string_view queue_id) {
  MOAT_CHECK(awaiting_queue_);
  awaiting_queue_ = false;
  state_ = State::kCommand;
  if (!closing_) {
    if (content_verb_ == SmtpVerb::kBdat) {
      Reply(absl::StrFormat("250 2.0.0 Ok: %d bytes queued as %s", scanner_.content_bytes(),
                            queue_id));
    } else {
      Reply(absl::StrFormat("250 2.0.0 Ok: queued as %s", queue_id));
    }
  }
  FinishCommand(content_verb_, Outcome::kOk);
  // A delivered message forgives earlier client errors (Postfix).
  error_count_ = 0;
  junk_commands_ = 0;
  queue_id_.clear();  // the sink owns it now: no Abandon()
  ResetTransaction();
  Resume();
}

void SmtpSession::OnQueueFailed(QueueError error) {
  MOAT_CHECK(awaiting_queue_);
  awaiting_queue_ = false;
  state_ = State::kCommand;
  if (!closing_) {
    Reply(error == QueueError::kNoSpace ? "452 4.3.1 Insufficient system storage"
                                        : "451 4.3.0 Error: queue file write error");
  }
  FinishCommand(content_verb_, Outcome::kFailed);
  queue_id_.clear();
  ResetTransaction();
  Resume();
}

void SmtpSession::OnTlsStarted(const TlsInfo& tls) {
  MOAT_CHECK(wants_starttls_);
  wants_starttls_ = false;
  tls_active_ = true;
  tls_ = tls;
  // RFC 3207 4.2: forget everything learned before TLS.
  input_.clear();
  helo_name_.clear();
  protocol_ = "SMTP";
  ResetTransaction();
  Resume();
}

void SmtpSession::OnImplicitTls(const TlsInfo& tls) {
  tls_active_ = true;
  tls_ = tls;
}

// ---------------------------------------------------------------------------------------
// The input pump.

void SmtpSession::Resume() {
  if (in_run_ || closing_ || !started_) {
    return;
  }
  std::string_view in = input_;
  Run(&in);
  if (closing_) {
    input_.clear();
  } else {
    input_.erase(0, input_.size() - in.size());
  }
}

void SmtpSession::Run(std::string_view* input) {
  in_run_ = true;
  while (!closing_ && !WantsPause()) {
    if (state_ == State::kCommand) {
      if (!RunCommand(input)) {
        break;
      }
    } else if (state_ == State::kData) {
      if (input->empty()) {
        break;
      }
      size_t used = scanner_.Consume(*input, &content_);
      input->remove_prefix(used);
      if (!scanner_.done()) {
        break;
      }
      EndOfData();
    } else if (state_ == State::kBdatChunk || state_ == State::kBdatSkip) {
      if (chunk_remaining_ > 0) {
        if (input->empty()) {
          break;
        }
        size_t take = input->size();
        if (take > chunk_remaining_) {
          take = static_cast<size_t>(chunk_remaining_);
        }
        if (state_ == State::kBdatChunk) {
          scanner_.Consume(input->substr(0, take), &content_);
        }
        input->remove_prefix(take);
        chunk_remaining_ -= take;
        continue;
      }
      if (state_ == State::kBdatChunk) {
        EndOfBdatChunk();
      } else {
        EndOfBdatSkip();
      }
    } else {
      break;  // kAwaitQueue
    }
  }
  in_run_ = false;
}

// Reads and executes one command line. Returns false when it needs more input (or the
// session paused or closed).
bool SmtpSession::RunCommand(std::string_view* input) {
  // smtpd_hard_error_limit is checked before each command is read, as Postfix does.
  if (error_count_ >= settings_.hard_error_limit) {
    reason_ = "too many errors";
    Reply(absl::StrFormat("421 4.7.0 %s Error: too many errors", settings_.myhostname));
    return false;
  }
  const auto* lf = static_cast<const char*>(std::memchr(input->data(), '\n', input->size()));
  size_t limit = settings_.command_line_bytes_max;
  if (StartsWithIgnoreCase(*input, "MAIL ") || StartsWithIgnoreCase(*input, "RCPT ")) {
    limit += settings_.parameter_line_bytes_extra;
  }
  if (lf == nullptr) {
    if (skipping_long_line_) {
      input->remove_prefix(input->size());
    } else if (input->size() + 1 > limit) {
      // No line end within the limit: skip to the next LF without buffering, then reply.
      log::Warning("%s: request longer than %d: %s...", namaddr_, limit,
                   EscapeForLog(*input, 30));
      skipping_long_line_ = true;
      input->remove_prefix(input->size());
    }
    return false;
  }
  // smtpd_error_sleep_time: once the soft limit is reached every reply waits. The I/O
  // layer does the waiting (PendingDelay) so the shard never blocks.
  if (error_count_ >= settings_.soft_error_limit && settings_.error_sleep > absl::ZeroDuration() &&
      !error_sleep_done_) {
    pending_delay_ = settings_.error_sleep;
    return false;
  }
  error_sleep_done_ = false;
  std::string_view line(input->data(), static_cast<size_t>(lf - input->data()));
  input->remove_prefix(line.size() + 1);
  if (skipping_long_line_) {
    skipping_long_line_ = false;
    Reply(absl::StrFormat("500 5.5.2 %s Error: command too long", settings_.myhostname));
    ++error_count_;
    return true;
  }
  const bool bare_lf = line.empty() || line.back() != '\r';
  if (!bare_lf) {
    line.remove_suffix(1);
  }
  if (line.size() + 2 > limit) {
    log::Warning("%s: request longer than %d: %s...", namaddr_, limit, EscapeForLog(line, 30));
    Reply(absl::StrFormat("500 5.5.2 %s Error: command too long", settings_.myhostname));
    ++error_count_;
    return true;
  }
  if (bare_lf) {
    if (settings_.bare_newline == BareNewline::kReject) {
      LogReject(where_, "bare <LF> received");
      Reply(absl::StrFormat("%d 5.5.2 %s Error: bare <LF> received",
                            settings_.bare_newline_reject_code, settings_.myhostname));
      Close();
      return false;
    }
    if (settings_.bare_newline == BareNewline::kNote && !bare_lf_noted_) {
      bare_lf_noted_ = true;
      log::Info("%s: note: bare <LF> received from %s",
                queue_id_.empty() ? "NOQUEUE" : queue_id_, namaddr_);
    }
  }
  Dispatch(line, input);
  return true;
}

void SmtpSession::Dispatch(std::string_view line, std::string_view* input) {
  if (shutdown_requested_) {
    Reply("421 4.3.2 Service shutting down");
    return;
  }
  auto malformed = [&](std::string_view reply) {
    Reply(reply);
    ++error_count_;
    ++total_count_[static_cast<size_t>(SmtpVerb::kUnknown)];
    where_ = "UNKNOWN";
  };
  for (char c : line) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {  // NUL, bare CR, other controls
      malformed("500 5.5.2 Error: bad syntax");
      return;
    }
  }
  if (settings_.smtputf8_enable && !IsValidUtf8(line)) {
    malformed("500 5.5.2 Error: bad UTF-8 syntax");
    return;
  }
  CommandLine command;
  if (!SplitCommandLine(line, &command)) {
    malformed("500 5.5.2 Error: bad syntax");
    return;
  }
  const SmtpVerb verb = command.verb;
  ++total_count_[static_cast<size_t>(verb)];
  if (verb == SmtpVerb::kUnknown) {
    where_ = "UNKNOWN";
    if (LooksLikeHeader(command.name) || command.name == "CONNECT" || command.name == "GET" ||
        command.name == "POST") {
      log::Warning("non-SMTP command from %s: %s", namaddr_, EscapeForLog(line));
      Reply("221 2.7.0 Error: I can break rules, too. Goodbye.");
      Close();
      return;
    }
  }
  if (!access_denied_.empty() && verb != SmtpVerb::kQuit) {
    Reply(absl::StrFormat("503 5.7.0 Error: access denied for %s", namaddr_));
    ++error_count_;
    return;
  }
  if (verb == SmtpVerb::kUnknown) {
    Reply("500 5.5.2 Error: command not recognized");
    ++error_count_;
    return;
  }
  const Command* spec = FindCommand(verb);
  MOAT_CHECK(spec != nullptr);
  if (settings_.tls_required && !tls_active_ && (spec->flags & kFlagPreTls) == 0) {
    Reply("530 5.7.0 Must issue a STARTTLS command first");
    ++error_count_;
    return;
  }
  where_ = std::string(SmtpVerbName(verb));
  // RFC 2920: without EHLO nothing may be pipelined, and after a group-ending command the
  // client must wait for the reply. Postfix's smtpd_flag_ill_pipelining().
  if ((protocol_ != "ESMTP" || (spec->flags & kFlagLast) != 0) && !ill_pipelining_ &&
      !input->empty()) {
    log::Info("improper command pipelining after %s from %s: %s", where_, namaddr_,
              EscapeForLog(*input));
    ill_pipelining_ = true;
    if (settings_.forbid_unauth_pipelining) {
      Reply("554 5.5.0 Error: SMTP protocol synchronization");
      Close();
      return;
    }
  }
  Outcome outcome = (this->*spec->handler)(command.args);
  if (outcome != Outcome::kPending) {
    FinishCommand(verb, outcome);
  }
  if ((spec->flags & kFlagLimit) != 0 && junk_commands_++ > settings_.junk_command_limit) {
    ++error_count_;
  }
  if (wants_starttls_) {
    *input = {};  // plaintext pipelined after STARTTLS is discarded (DESIGN 5)
  }
  if (verb == SmtpVerb::kQuit) {
    Close();
  }
}

void SmtpSession::FinishCommand(SmtpVerb verb, Outcome outcome) {
  if (outcome == Outcome::kOk) {
    ++success_count_[static_cast<size_t>(verb)];
  } else {
    ++error_count_;
  }
}

// ---------------------------------------------------------------------------------------
// The verbs.

SmtpSession::Outcome SmtpSession::Helo(std::string_view args) { return HeloOrEhlo(args, false); }
SmtpSession::Outcome SmtpSession::Ehlo(std::string_view args) { return HeloOrEhlo(args, true); }

SmtpSession::Outcome SmtpSession::HeloOrEhlo(std::string_view args, bool ehlo) {
  if (args.empty()) {
    // RFC 2034: no enhanced status code in replies to HELO/EHLO.
    Reply(ehlo ? "501 Syntax: EHLO hostname" : "501 Syntax: HELO hostname");
    return Outcome::kFailed;
  }
  std::string helo = NeuterHelo(CollapseBlanks(args));
  if (!settings_.delay_reject) {
    std::string saved = std::move(helo_name_);
    helo_name_ = helo;
    std::string reject = CheckPolicy(PolicyStage::kHelo, ehlo ? "EHLO" : "HELO");
    helo_name_ = std::move(saved);
    if (!reject.empty()) {
      Reply(reject);
      return Outcome::kFailed;
    }
  }
  ResetTransaction();
  helo_name_ = std::move(helo);
  protocol_ = ehlo ? "ESMTP" : "SMTP";
  if (!ehlo) {
    Reply(absl::StrFormat("250 %s", settings_.myhostname));
    return Outcome::kOk;
  }
  std::vector<std::string> lines;
  lines.push_back(settings_.myhostname);
  lines.emplace_back("PIPELINING");
  lines.push_back(settings_.message_size_limit > 0
                      ? absl::StrFormat("SIZE %d", settings_.message_size_limit)
                      : std::string("SIZE"));
  if (!settings_.disable_vrfy) {
    lines.emplace_back("VRFY");
  }
  if (settings_.starttls_available && !tls_active_) {
    lines.emplace_back("STARTTLS");
  }
  lines.emplace_back("ENHANCEDSTATUSCODES");
  lines.emplace_back("8BITMIME");
  lines.emplace_back("DSN");
  if (settings_.smtputf8_enable) {
    lines.emplace_back("SMTPUTF8");
  }
  lines.emplace_back("CHUNKING");
  for (size_t i = 0; i < lines.size(); ++i) {
    Reply(absl::StrFormat("250%c%s", i + 1 < lines.size() ? '-' : ' ', lines[i]));
  }
  return Outcome::kOk;
}

SmtpSession::Outcome SmtpSession::StartTls(std::string_view args) {
  // An implicit-TLS connection is TLS without STARTTLS being offered: Postfix (wrapper
  // mode) answers that TLS is active.
  if (tls_active_ && !settings_.starttls_available && args.empty()) {
    Reply("554 5.5.1 Error: TLS already active");
    return Outcome::kFailed;
  }
  if (!settings_.starttls_available) {
    Reply("502 5.5.1 Error: command not implemented");
    return Outcome::kFailed;
  }
  if (!args.empty()) {
    Reply("501 5.5.4 Syntax: STARTTLS");
    return Outcome::kFailed;
  }
  if (tls_active_) {
    Reply("554 5.5.1 Error: TLS already active");
    return Outcome::kFailed;
  }
  Reply("220 2.0.0 Ready to start TLS");
  wants_starttls_ = true;
  return Outcome::kOk;
}

SmtpSession::Outcome SmtpSession::Mail(std::string_view args) {
  if (settings_.helo_required && helo_name_.empty()) {
    Reply("503 5.5.1 Error: send HELO/EHLO first");
    return Outcome::kFailed;
  }
  if (in_transaction_) {
    Reply("503 5.5.1 Error: nested MAIL command");
    return Outcome::kFailed;
  }
  if (bdat_state_ != BdatState::kNone) {
    Reply("503 5.5.1 Error: MAIL after BDAT");
    return Outcome::kFailed;
  }
  ParseOptions options;
  options.smtputf8_enable = settings_.smtputf8_enable;
  MailParameters mail;
  std::string error = ParseMailArguments(args, options, &mail);
  if (!error.empty()) {
    Reply(error);
    return Outcome::kFailed;
  }
  mail_ = std::move(mail);
  in_transaction_ = true;  // for the policy request and the NOQUEUE line's from=<>
  // smtpd_check_size(): the declared size against message_size_limit.
  if (mail_.has_size && settings_.message_size_limit > 0 &&
      mail_.size > settings_.message_size_limit) {
    LogReject("MAIL", "552 5.3.4 Message size exceeds fixed limit");
    ResetTransaction();
    Reply("552 5.3.4 Message size exceeds fixed limit");
    return Outcome::kFailed;
  }
  if (!settings_.delay_reject) {
    std::string reject = CheckPolicy(PolicyStage::kMail, "MAIL");
    if (!reject.empty()) {
      ResetTransaction();
      Reply(reject);
      return Outcome::kFailed;
    }
  }
  arrival_ = sink_.Now();
  Reply("250 2.1.0 Ok");
  return Outcome::kOk;
}

SmtpSession::Outcome SmtpSession::Rcpt(std::string_view args) {
  if (!in_transaction_) {
    Reply("503 5.5.1 Error: need MAIL command");
    return Outcome::kFailed;
  }
  if (bdat_state_ != BdatState::kNone) {
    Reply("503 5.5.1 Error: RCPT after BDAT");
    return Outcome::kFailed;
  }
  ParseOptions options;
  options.smtputf8_enable = settings_.smtputf8_enable;
  RcptParameters rcpt;
  std::string error = ParseRcptArguments(args, options, &rcpt);
  if (!error.empty()) {
    Reply(error);
    return Outcome::kFailed;
  }
  if (settings_.recipient_limit > 0 && recipients_.size() >= settings_.recipient_limit) {
    Reply("452 4.5.3 Error: too many recipients");
    // smtpd_recipient_overshoot_limit: only past it do these count as errors.
    return recipient_overshoot_++ < settings_.recipient_overshoot_limit ? Outcome::kOk
                                                                        : Outcome::kFailed;
  }
  std::string reject = CheckPolicy(PolicyStage::kRcpt, "RCPT", rcpt.address);
  if (!reject.empty()) {
    Reply(reject);
    return Outcome::kFailed;
  }
  PolicyDecision failure;
  std::vector<ResolvedRecipient> resolved = policy_.Resolve(rcpt.address, &failure);
  if (resolved.empty()) {
    std::string reply =
        (failure.action == PolicyAction::kReject || failure.action == PolicyAction::kDefer)
            ? DecisionReply(failure)
            : std::string("451 4.3.5 Server configuration error");
    LogReject("RCPT", reply, rcpt.address);
    Reply(reply);
    return Outcome::kFailed;
  }
  if (queue_id_.empty()) {
    // Postfix opens the queue file at the first accepted recipient
    // (smtpd_delay_open_until_valid_rcpt = yes): that is when the ID exists.
    queue_id_ = sink_.NewQueueId();
    log::Info("%s: client=%s", queue_id_, namaddr_);
  }
  AcceptedRecipient accepted;
  accepted.address = std::move(rcpt.address);
  accepted.dsn_notify = rcpt.notify;
  accepted.orcpt_type = std::move(rcpt.orcpt_type);
  accepted.orcpt = std::move(rcpt.orcpt);
  accepted.resolved = std::move(resolved);
  recipients_.push_back(std::move(accepted));
  Reply("250 2.1.5 Ok");
  return Outcome::kOk;
}

SmtpSession::Outcome SmtpSession::Data(std::string_view args) {
  if (bdat_state_ != BdatState::kNone) {
    Reply("503 5.5.1 Error: DATA after BDAT");
    return Outcome::kFailed;
  }
  if (recipients_.empty()) {
    Reply(in_transaction_ ? "554 5.5.1 Error: no valid recipients"
                          : "503 5.5.1 Error: need RCPT command");
    return Outcome::kFailed;
  }
  if (!args.empty()) {
    Reply("501 5.5.4 Syntax: DATA");
    return Outcome::kFailed;
  }
  std::string reject = CheckPolicy(PolicyStage::kData, "DATA");
  if (!reject.empty()) {
    Reply(reject);
    return Outcome::kFailed;
  }
  BeginContent(ContentScanner::Mode::kData);
  content_verb_ = SmtpVerb::kData;
  state_ = State::kData;
  where_ = std::string(kAfterData);
  Reply("354 End data with <CR><LF>.<CR><LF>");
  return Outcome::kPending;
}

SmtpSession::Outcome SmtpSession::Bdat(std::string_view args) {
  // RFC 3030: "BDAT" SP chunk-size [ SP end-marker ].
  std::string_view rest = args;
  std::string_view size_word = NextWord(&rest);
  std::string_view last_word = NextWord(&rest);
  std::string_view extra = NextWord(&rest);
  uint64_t size = 0;
  bool ok = !size_word.empty() && size_word.size() <= 18 && extra.empty();
  for (char c : size_word) {
    ok = ok && c >= '0' && c <= '9';
    size = size * 10 + static_cast<uint64_t>(c - '0');
  }
  const bool last = !last_word.empty();
  if (last && !(last_word.size() == 4 && StartsWithIgnoreCase(last_word, "LAST"))) {
    ok = false;
  }
  if (!ok) {
    // The chunk length is unknown, so the byte stream cannot be followed any further:
    // unlike Postfix we hang up rather than read chunk bytes as commands.
    log::Warning("%s: malformed BDAT command syntax from %s: %s",
                 queue_id_.empty() ? "NOQUEUE" : queue_id_, namaddr_, EscapeForLog(args));
    Reply("521 5.5.4 Syntax: BDAT count [LAST]");
    Close();
    return Outcome::kFailed;
  }
  content_verb_ = SmtpVerb::kBdat;
  if (size == 0 && !last) {
    log::Warning("%s: null BDAT request from %s", queue_id_.empty() ? "NOQUEUE" : queue_id_,
                 namaddr_);
    SkipBdat(0, false, "551 5.7.1 Null BDAT request");
    return Outcome::kPending;
  }
  if (bdat_state_ == BdatState::kError) {
    SkipBdat(size, last,
             absl::StrFormat("551 5.0.0 Discarded %d bytes after earlier error", size));
    return Outcome::kPending;
  }
  if (bdat_state_ == BdatState::kNone) {
    if (recipients_.empty()) {
      SkipBdat(size, last,
               in_transaction_ ? "554 5.5.1 Error: no valid recipients"
                               : "503 5.5.1 Error: need RCPT command");
      return Outcome::kPending;
    }
    std::string reject = CheckPolicy(PolicyStage::kData, "BDAT");
    if (!reject.empty()) {
      SkipBdat(size, last, reject);
      return Outcome::kPending;
    }
  }
  const uint64_t so_far = bdat_state_ == BdatState::kNone ? 0 : scanner_.content_bytes();
  if (settings_.message_size_limit > 0 && size > settings_.message_size_limit - so_far) {
    log::Warning("%s: BDAT request from %s exceeds message size limit",
                 queue_id_.empty() ? "NOQUEUE" : queue_id_, namaddr_);
    SkipBdat(size, last, "552 5.3.4 Chunk exceeds message size limit");
    return Outcome::kPending;
  }
  if (bdat_state_ == BdatState::kNone) {
    BeginContent(ContentScanner::Mode::kBdat);
    bdat_state_ = BdatState::kOk;
  }
  chunk_size_ = size;
  chunk_remaining_ = size;
  chunk_last_ = last;
  state_ = State::kBdatChunk;
  where_ = std::string(kAfterBdat);
  return Outcome::kPending;
}

SmtpSession::Outcome SmtpSession::Rset(std::string_view args) {
  if (!args.empty()) {
    Reply("501 5.5.4 Syntax: RSET");
    return Outcome::kFailed;
  }
  ResetTransaction();
  Reply("250 2.0.0 Ok");
  return Outcome::kOk;
}

SmtpSession::Outcome SmtpSession::Noop(std::string_view args) {
  if (!args.empty()) {
    Reply("501 5.5.4 Syntax: NOOP");
    return Outcome::kFailed;
  }
  Reply("250 2.0.0 Ok");
  return Outcome::kOk;
}

SmtpSession::Outcome SmtpSession::Vrfy(std::string_view args) {
  if (settings_.disable_vrfy) {
    Reply("502 5.5.1 VRFY command is disabled");
    return Outcome::kFailed;
  }
  std::string_view arg = args;
  if (settings_.smtputf8_enable && arg.size() >= 8) {
    std::string_view tail = arg.substr(arg.size() - 8);
    if (StartsWithIgnoreCase(tail, "SMTPUTF8") &&
        (arg.size() == 8 || IsBlank(arg[arg.size() - 9]))) {
      arg.remove_suffix(8);
      while (!arg.empty() && IsBlank(arg.back())) {
        arg.remove_suffix(1);
      }
    }
  }
  if (arg.empty()) {
    Reply(settings_.smtputf8_enable ? "501 5.5.4 Syntax: VRFY address [SMTPUTF8]"
                                    : "501 5.5.4 Syntax: VRFY address");
    return Outcome::kFailed;
  }
  std::string collapsed = CollapseBlanks(arg);
  std::string_view inner = collapsed;
  if (inner.size() >= 2 && inner.front() == '<' && inner.back() == '>') {
    inner = inner.substr(1, inner.size() - 2);
  }
  std::string address;
  if (inner.empty() || !CheckAddressSyntax(inner, &address)) {
    Reply("501 5.1.3 Bad recipient address syntax");
    return Outcome::kFailed;
  }
  std::string reject = CheckPolicy(PolicyStage::kRcpt, "VRFY", address);
  if (!reject.empty()) {
    Reply(reject);
    return Outcome::kFailed;
  }
  Reply(absl::StrFormat("252 2.0.0 %s", collapsed));
  return Outcome::kOk;
}

SmtpSession::Outcome SmtpSession::Quit(std::string_view args) {
  (void)args;
  Reply("221 2.0.0 Bye");
  return Outcome::kOk;
}

SmtpSession::Outcome SmtpSession::Help(std::string_view args) {
  (void)args;
  Reply(settings_.starttls_available
            ? "214 2.0.0 Commands: BDAT DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY"
            : "214 2.0.0 Commands: BDAT DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY");
  return Outcome::kOk;
}

SmtpSession::Outcome SmtpSession::NotImplemented(std::string_view args) {
  (void)args;
  Reply("502 5.5.1 Error: command not implemented");
  return Outcome::kFailed;
}

// ---------------------------------------------------------------------------------------
// Message content.

void SmtpSession::BeginContent(ContentScanner::Mode mode) {
  ContentScanner::Options options;
  options.mode = mode;
  options.size_limit = settings_.message_size_limit;
  options.line_bytes_max = settings_.data_line_bytes_max;
  scanner_.Reset(options);
  content_.clear();
  content_ = ReceivedHeader();
  // The client's SIZE= sizes the buffer once: no regrowth copies while a message arrives.
  // Capped (a client may announce much and send nothing; large buffers are mapped lazily, but
  // keep the promise small), so bigger messages grow as usual from there.
  constexpr uint64_t kReserveMax = uint64_t{1} << 20;
  if (mail_.has_size && mail_.size > 0) {
    content_.reserve(content_.size() + static_cast<size_t>(std::min(mail_.size, kReserveMax)) + 2);
  }
}

void SmtpSession::EndOfData() {
  state_ = State::kCommand;
  where_ = std::string(kAfterEom);
  if (RejectContent()) {
    FinishCommand(SmtpVerb::kData, Outcome::kFailed);
    ResetTransaction();
    return;
  }
  std::string reject = CheckPolicy(PolicyStage::kEndOfData, kAfterEom);
  if (!reject.empty()) {
    Reply(reject);
    FinishCommand(SmtpVerb::kData, Outcome::kFailed);
    ResetTransaction();
    return;
  }
  SubmitMessage();
}

void SmtpSession::EndOfBdatChunk() {
  state_ = State::kCommand;
  if (chunk_last_) {
    scanner_.Finish(&content_);
    where_ = std::string(kAfterEom);
    if (RejectContent()) {
      FinishCommand(SmtpVerb::kBdat, Outcome::kFailed);
      ResetTransaction();
      return;
    }
    std::string reject = CheckPolicy(PolicyStage::kEndOfData, kAfterEom);
    if (!reject.empty()) {
      Reply(reject);
      FinishCommand(SmtpVerb::kBdat, Outcome::kFailed);
      ResetTransaction();
      return;
    }
    SubmitMessage();
    return;
  }
  if (RejectContent()) {
    // Later chunks are discarded until BDAT LAST or RSET (Postfix).
    FinishCommand(SmtpVerb::kBdat, Outcome::kFailed);
    bdat_state_ = BdatState::kError;
    content_.clear();
    return;
  }
  Reply(absl::StrFormat("250 2.0.0 Ok: %d bytes", chunk_size_));
  FinishCommand(SmtpVerb::kBdat, Outcome::kOk);
}

void SmtpSession::SkipBdat(uint64_t bytes, bool last, std::string reply) {
  state_ = State::kBdatSkip;
  chunk_remaining_ = bytes;
  chunk_last_ = last;
  skip_reply_ = std::move(reply);
}

void SmtpSession::EndOfBdatSkip() {
  state_ = State::kCommand;
  Reply(skip_reply_);
  FinishCommand(SmtpVerb::kBdat, Outcome::kFailed);
  if (chunk_last_) {
    ResetTransaction();
  } else {
    bdat_state_ = BdatState::kError;
  }
}

bool SmtpSession::RejectContent() {
  const char* id = queue_id_.empty() ? "NOQUEUE" : queue_id_.c_str();
  if (scanner_.bare_lf_seen()) {
    if (settings_.bare_newline == BareNewline::kReject) {
      LogReject(kAfterEom, "bare <LF> received");
      Reply(absl::StrFormat("%d 5.5.2 %s Error: bare <LF> received",
                            settings_.bare_newline_reject_code, settings_.myhostname));
      return true;
    }
    if (settings_.bare_newline == BareNewline::kNote && !bare_lf_noted_) {
      bare_lf_noted_ = true;
      log::Info("%s: note: bare <LF> received from %s", id, namaddr_);
    }
  }
  if (scanner_.size_exceeded()) {
    log::Warning("%s: queue file size limit exceeded", id);
    Reply("552 5.3.4 Error: message file too big");
    return true;
  }
  if (scanner_.line_too_long()) {
    log::Warning("%s: message line longer than %d octets from %s", id,
                 settings_.data_line_bytes_max, namaddr_);
    Reply("554 5.6.0 Error: message line too long");
    return true;
  }
  return false;
}

void SmtpSession::SubmitMessage() {
  AcceptedMessage message;
  message.queue_id = queue_id_;
  message.sender = mail_.address;
  message.recipients = std::move(recipients_);
  recipients_.clear();
  message.dsn_ret = mail_.ret;
  message.dsn_envid = mail_.envid;
  message.body = mail_.body;
  message.smtputf8 = mail_.smtputf8;
  message.declared_size = mail_.has_size ? mail_.size : 0;
  message.client_name = connection_.client_name;
  message.client_ip = connection_.client_ip;
  message.helo_name = helo_name_;
  message.protocol = Protocol();
  message.arrival = arrival_;
  message.content = std::move(content_);
  content_.clear();
  state_ = State::kAwaitQueue;
  awaiting_queue_ = true;
  // May call OnQueued() right away; Run() is guarded by in_run_.
  sink_.Submit(std::move(message), *this);
}

// ---------------------------------------------------------------------------------------
// Policy, replies, logs.

PolicyRequest SmtpSession::MakeRequest(PolicyStage stage) const {
  PolicyRequest request;
  request.stage = stage;
  request.client_ip = connection_.client_ip;
  request.client_name = connection_.client_name;
  request.client_port = connection_.client_port;
  request.server_ip = connection_.server_ip;
  request.helo_name = helo_name_;
  if (in_transaction_) {
    request.sender = mail_.address;
  }
  request.protocol = protocol_;
  request.tls = tls_active_;
  if (tls_active_) {
    request.client_cert_fingerprint = tls_.peer_fingerprint;
    request.client_pkey_fingerprint = tls_.peer_pkey_fingerprint;
    request.client_cert_verified = tls_.peer_verified;
  }
  request.unauth_pipelining = ill_pipelining_;
  request.accepted_rcpt_count = static_cast<uint32_t>(recipients_.size());
  return request;
}

std::string SmtpSession::CheckPolicy(PolicyStage stage, std::string_view where,
                                     std::string_view recipient) {
  PolicyRequest request = MakeRequest(stage);
  request.recipient = recipient;
  PolicyDecision decision = policy_.Check(request);
  if (decision.action != PolicyAction::kReject && decision.action != PolicyAction::kDefer) {
    return "";
  }
  std::string reply = DecisionReply(decision);
  LogReject(where, reply, recipient);
  return reply;
}

std::string SmtpSession::DecisionReply(const PolicyDecision& decision) const {
  const bool defer = decision.action == PolicyAction::kDefer;
  int code = decision.code;
  // A code in the wrong class (or none) falls back to Postfix's defaults.
  if (defer ? (code < 400 || code > 499) : (code < 500 || code > 599)) {
    code = defer ? 450 : 554;
  }
  std::string enhanced = decision.enhanced;
  if (enhanced.empty() || enhanced[0] != static_cast<char>('0' + code / 100)) {
    enhanced = defer ? "4.7.1" : "5.7.1";
  }
  std::string text = decision.text.empty() ? std::string("Access denied") : decision.text;
  return absl::StrFormat("%d %s %s", code, enhanced, text);
}

void SmtpSession::LogReject(std::string_view where, std::string_view reply,
                            std::string_view recipient) const {
  std::string whatsup;
  if (in_transaction_) {
    whatsup += absl::StrFormat(" from=<%s>", mail_.address);
  }
  std::string_view to = recipient;
  if (to.empty() && !recipients_.empty()) {
    to = recipients_.front().address;
  }
  if (!to.empty()) {
    whatsup += absl::StrFormat(" to=<%s>", to);
  }
  whatsup += absl::StrFormat(" proto=%s", protocol_);
  if (!helo_name_.empty()) {
    whatsup += absl::StrFormat(" helo=<%s>", helo_name_);
  }
  log::Info("%s: reject: %s from %s: %s;%s", queue_id_.empty() ? "NOQUEUE" : queue_id_, where,
            namaddr_, reply, whatsup);
}

void SmtpSession::Reply(std::string_view line) {
  output_.append(line.data(), line.size());
  output_.append("\r\n");
  // As Postfix: any 421 reply ends the session once it is sent.
  if (line.size() >= 3 && line.substr(0, 3) == "421") {
    Close();
  }
}

void SmtpSession::Close() {
  if (closing_) {
    return;
  }
  closing_ = true;
  pending_delay_ = absl::ZeroDuration();
  if (!awaiting_queue_) {
    ResetTransaction();
  }
  if (disconnect_logged_ || !started_) {
    return;
  }
  disconnect_logged_ = true;
  if (!reason_.empty() && !(where_ == kAfterEom && reason_ == kReasonLost)) {
    if (where_ == kAfterData) {
      log::Info("%s after DATA (%d bytes) from %s", reason_, scanner_.received_bytes(),
                namaddr_);
    } else if (where_ == kAfterBdat) {
      log::Info("%s after BDAT (%d bytes) from %s", reason_, scanner_.received_bytes(),
                namaddr_);
    } else {
      log::Info("%s after %s from %s", reason_, where_, namaddr_);
    }
  }
  // Postfix 3.x: "disconnect from name[ip] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4".
  std::string stats;
  int all_success = 0;
  int all_total = 0;
  for (int i = 0; i < kSmtpVerbCount; ++i) {
    if (total_count_[i] == 0) {
      continue;
    }
    stats += absl::StrFormat(" %s=%d", SmtpVerbStatName(static_cast<SmtpVerb>(i)),
                             success_count_[i]);
    if (success_count_[i] != total_count_[i]) {
      stats += absl::StrFormat("/%d", total_count_[i]);
    }
    all_success += success_count_[i];
    all_total += total_count_[i];
  }
  stats += absl::StrFormat(" commands=%d", all_success);
  if (all_success != all_total || all_total == 0) {
    stats += absl::StrFormat("/%d", all_total);
  }
  log::Info("disconnect from %s%s", namaddr_, stats);
}

void SmtpSession::ResetTransaction() {
  if (!queue_id_.empty()) {
    sink_.Abandon(queue_id_);
    queue_id_.clear();
  }
  in_transaction_ = false;
  mail_ = MailParameters();
  recipients_.clear();
  recipient_overshoot_ = 0;
  bdat_state_ = BdatState::kNone;
  content_.clear();
}

std::string SmtpSession::Protocol() const {
  std::string protocol = mail_.smtputf8 ? "UTF8SMTP" : protocol_;
  if (tls_active_) {
    protocol += "S";  // RFC 3848
  }
  return protocol;
}

std::string SmtpSession::ReceivedHeader() const {
  const std::string& ip = connection_.client_ip;
  std::string rfc_addr = ip.find(':') != std::string::npos ? "IPv6:" + ip : ip;
  std::string header = absl::StrFormat(
      "Received: from %s (%s [%s])\r\n", helo_name_.empty() ? connection_.client_name : helo_name_,
      connection_.client_name, rfc_addr);
  if (tls_active_ && tls_.received_header) {
    // smtpd_tls_received_header = yes: Postfix's smtpd.c wording.
    header += absl::StrFormat("\t(using %s with cipher %s (%d/%d bits))\r\n", tls_.protocol,
                              tls_.cipher, tls_.cipher_bits, tls_.algorithm_bits);
    if (!tls_.peer_cn.empty()) {
      header += absl::StrFormat("\t(Client CN \"%s\", Issuer \"%s\" (%s))\r\n",
                                CommentSafe(tls_.peer_cn), CommentSafe(tls_.issuer_cn),
                                tls_.peer_verified ? "verified OK" : "not verified");
    } else if (tls_.client_cert_requested) {
      header += "\t(Client did not present a certificate)\r\n";
    } else {
      header += "\t(No client certificate requested)\r\n";
    }
  }
  std::string date =
      absl::FormatTime("%a, %d %b %Y %H:%M:%S %z (%Z)", arrival_, absl::UTCTimeZone());
  if (recipients_.size() == 1) {
    header += absl::StrFormat("\tby %s (%s) with %s id %s\r\n\tfor <%s>; %s\r\n",
                              settings_.myhostname, settings_.mail_name, Protocol(), queue_id_,
                              recipients_.front().address, date);
  } else {
    header += absl::StrFormat("\tby %s (%s) with %s id %s;\r\n\t%s\r\n", settings_.myhostname,
                              settings_.mail_name, Protocol(), queue_id_, date);
  }
  return header;
}

}  // namespace moat::net
