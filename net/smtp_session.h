// net/smtp_session.h
//
// SmtpSession: the RFC 5321 server side of one SMTP connection as a pure state machine,
// with Postfix smtpd's replies, limits and log lines. No I/O and no clock: the I/O layer
// (core/reactor, wired by integration code) feeds received bytes in, sends what the
// session staged, arms the timers the session asks for, and closes when told. A byte
// stream transform (STARTTLS) sits below the session in the I/O layer; the session only
// says when to start it (WantsStartTls) and learns when it is up (OnTlsStarted).
// Owner: the "session" engineer. One object per connection, used on its shard thread
// only: not thread-safe. Parses untrusted input (everything in OnData).
//
// Driving it, per loop turn:
//   Start() once; then OnData(bytes) with whatever was read (any split works, one byte at a
//   time included); send output() and ConsumeOutput(n) what went out (replies of one turn
//   are staged together: one write per turn); stop reading while WantsPause(); when
//   PendingDelay() > 0 call OnDelayDone() after that long (error sleep, never a blocking
//   sleep); re-arm a read timer of settings.timeout and call OnTimeout() when it fires;
//   OnEof() on EOF or a read error; flush output then close when WantsClose(); keep the
//   object alive while AwaitingQueue() (the sink still holds a reference).
// Talk before the greeting: bytes that arrive before the greeting left (ConsumeOutput or
// TakeOutput after Start) are a "pregreet": logged, answered "554 5.5.1 Error: no SMTP
// service" instead of the greeting, and the connection is closed (postscreen's verdict).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "net/policy_types.h"
#include "net/smtp_command.h"
#include "net/smtp_data.h"
#include "net/smtp_message.h"
#include "net/smtp_settings.h"

namespace moat::net {

class SmtpSession {
 public:
  // REQUIRES: settings, policy and sink outlive the session.
  SmtpSession(const SessionSettings& settings, Policy& policy, MessageSink& sink,
              ConnectionInfo connection);
  ~SmtpSession();
  SmtpSession(const SmtpSession&) = delete;
  SmtpSession& operator=(const SmtpSession&) = delete;

  // Logs "connect from", stages the greeting (or the connection-limit 421, or the
  // connect-stage policy reject when smtpd_delay_reject = no).
  void Start();
  // Bytes from the client.
  void OnData(std::string_view bytes);
  // The client closed the connection or a read failed.
  void OnEof();
  // smtpd_timeout expired: "421 4.4.2 <host> Error: timeout exceeded", then close.
  void OnTimeout();
  // The server is stopping: "421 4.3.2 Service shutting down" now when the session waits
  // for a command, else at the next command (a transfer in progress may finish).
  void OnShutdown();
  // The error-sleep delay asked for by PendingDelay() is over.
  void OnDelayDone();
  // Answers from the MessageSink for the message it was given (see smtp_message.h).
  void OnQueued(std::string_view queue_id);
  void OnQueueFailed(QueueError error);
  // The TLS handshake asked for by WantsStartTls() completed; the session restarts in the
  // initial state as RFC 3207 requires.
  void OnTlsStarted(const TlsInfo& tls);
  // Implicit TLS (a TLS listener, smtpd_tls_wrappermode): the handshake completed before
  // any command; the session records the TLS facts (Received:, ESMTPS, the policy's client
  // certificate) and goes on. STARTTLS is not offered (settings.starttls_available false).
  void OnImplicitTls(const TlsInfo& tls);

  // Staged replies, oldest first.
  const std::string& output() const { return output_; }
  void ConsumeOutput(size_t bytes);
  std::string TakeOutput();

  bool WantsClose() const { return closing_; }
  bool WantsPause() const {
    return awaiting_queue_ || pending_delay_ > absl::ZeroDuration() || wants_starttls_;
  }
  absl::Duration PendingDelay() const { return pending_delay_; }
  bool AwaitingQueue() const { return awaiting_queue_; }
  // STARTTLS was accepted: after output() is flushed, the I/O layer starts TLS on the
  // stream and calls OnTlsStarted(). Plaintext already received after the command was
  // discarded (DESIGN 5).
  bool WantsStartTls() const { return wants_starttls_; }
  absl::Duration timeout() const { return settings_.timeout; }

  int error_count() const { return error_count_; }
  const std::string& queue_id() const { return queue_id_; }

 private:
  enum class State : uint8_t {
    kCommand,     // reading command lines
    kData,        // after 354, until CRLF.CRLF
    kBdatChunk,   // reading a BDAT chunk into the message
    kBdatSkip,    // reading a BDAT chunk to discard it
    kAwaitQueue,  // message handed to the sink, waiting for OnQueued/OnQueueFailed
  };
  enum class BdatState : uint8_t { kNone, kOk, kError };
  enum class Outcome : uint8_t { kOk, kFailed, kPending };

  using Handler = Outcome (SmtpSession::*)(std::string_view args);
  struct Command {
    SmtpVerb verb;
    Handler handler;
    uint8_t flags;
  };
  static const Command kCommands[];
  static const Command* FindCommand(SmtpVerb verb);

  // Input pump.
  void Resume();
  void Run(std::string_view* input);
  bool RunCommand(std::string_view* input);
  void Dispatch(std::string_view line, std::string_view* input);
  void FinishCommand(SmtpVerb verb, Outcome outcome);

  // One function per verb.
  Outcome Helo(std::string_view args);
  Outcome Ehlo(std::string_view args);
  Outcome HeloOrEhlo(std::string_view args, bool ehlo);
  Outcome StartTls(std::string_view args);
  Outcome Mail(std::string_view args);
  Outcome Rcpt(std::string_view args);
  Outcome Data(std::string_view args);
  Outcome Bdat(std::string_view args);
  Outcome Rset(std::string_view args);
  Outcome Noop(std::string_view args);
  Outcome Vrfy(std::string_view args);
  Outcome Quit(std::string_view args);
  Outcome Help(std::string_view args);
  Outcome NotImplemented(std::string_view args);

  // Message content.
  void BeginContent(ContentScanner::Mode mode);
  void EndOfData();
  void EndOfBdatChunk();
  bool RejectContent();  // true when it staged a content error reply
  void SubmitMessage();
  void SkipBdat(uint64_t bytes, bool last, std::string reply);
  void EndOfBdatSkip();

  // Policy.
  PolicyRequest MakeRequest(PolicyStage stage) const;
  // Runs Policy::Check. On reject/defer logs the NOQUEUE line and returns the reply to
  // give; "" when the transaction may go on.
  std::string CheckPolicy(PolicyStage stage, std::string_view where,
                          std::string_view recipient = {});
  std::string DecisionReply(const PolicyDecision& decision) const;
  void LogReject(std::string_view where, std::string_view reply,
                 std::string_view recipient = {}) const;

  // Replies and session end.
  void Reply(std::string_view line);
  void Close();
  void ResetTransaction();
  std::string ReceivedHeader() const;
  std::string Protocol() const;

  const SessionSettings& settings_;
  Policy& policy_;
  MessageSink& sink_;
  const ConnectionInfo connection_;
  const std::string namaddr_;  // "name[ip]"

  State state_ = State::kCommand;
  std::string output_;
  std::string input_;  // received bytes not yet consumed
  bool started_ = false;
  bool greeting_sent_ = false;
  bool closing_ = false;
  bool disconnect_logged_ = false;
  bool in_run_ = false;
  bool skipping_long_line_ = false;
  bool ill_pipelining_ = false;
  bool shutdown_requested_ = false;
  bool wants_starttls_ = false;
  bool awaiting_queue_ = false;
  bool bare_lf_noted_ = false;
  bool error_sleep_done_ = false;
  absl::Duration pending_delay_ = absl::ZeroDuration();
  std::string access_denied_;  // connect-stage reject, repeated as 503 for every command
  std::string where_ = "CONNECT";
  std::string reason_;  // "lost connection", "timeout", "too many errors" for the log

  // Session facts.
  std::string helo_name_;
  std::string protocol_ = "SMTP";
  bool tls_active_ = false;
  TlsInfo tls_;
  int error_count_ = 0;
  int junk_commands_ = 0;
  std::array<int, kSmtpVerbCount> total_count_{};
  std::array<int, kSmtpVerbCount> success_count_{};

  // The transaction (MAIL .. end of data).
  bool in_transaction_ = false;
  MailParameters mail_;
  absl::Time arrival_;
  std::string queue_id_;
  std::vector<AcceptedRecipient> recipients_;
  uint32_t recipient_overshoot_ = 0;
  BdatState bdat_state_ = BdatState::kNone;
  SmtpVerb content_verb_ = SmtpVerb::kData;  // the verb that ends with the sink's answer
  uint64_t chunk_remaining_ = 0;
  uint64_t chunk_size_ = 0;
  bool chunk_last_ = false;
  std::string skip_reply_;
  ContentScanner scanner_;
  std::string content_;
};

}  // namespace moat::net
