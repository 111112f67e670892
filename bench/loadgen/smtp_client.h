// bench/loadgen/smtp_client.h
//
// The sending side of one SMTP connection as a pure state machine (no sockets, no clock):
// bytes from the server go in through OnBytes(), bytes to send accumulate in out(), and the
// outcome of each transaction is reported to a ClientListener. The io_uring driver
// (engine.cc) moves the bytes; unit tests feed scripted replies.
//
//   kGreeting --220--> kEhlo --250--> kReady --BeginMessage--> [MAIL, RCPT.., DATA] --354-->
//   body --250/4xx/5xx--> kReady ... Quit() --> kQuit --221--> kClosed
//   Any unexpected reply outside a transaction, or a malformed reply: kFailed.
//
// With STARTTLS wanted: kEhlo --250 with STARTTLS--> STARTTLS --220--> kTlsHandshake (the
// driver runs the TLS handshake, then calls OnTlsEstablished()) --> kEhlo (EHLO again, over
// TLS) --250--> kReady. A server that does not offer STARTTLS, or refuses it, fails the session
// (starttls_not_offered() tells which). Bytes that follow the 220 in the same read are dropped:
// they arrived before TLS and must not be taken as replies (CVE-2011-0411's mirror image).
//
// Every command awaiting a reply sits in a queue, so the same code serves the lock-step
// dialogue and ESMTP PIPELINING (RFC 2920: MAIL, RCPT... and DATA sent as one group, used only
// when the server advertises it and the caller asked for it). A transaction in which no
// recipient was accepted is closed with RSET and never sends DATA's body.
//
// Parses untrusted input: server replies (line length bounded by kReplyLineMax). Owned by one
// thread; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace moat::loadgen {

// Reassembles (multi-line) replies from a byte stream.
class ReplyParser {
 public:
  static constexpr size_t kReplyLineMax = 4096;
  struct Reply {
    int code = 0;
    std::vector<std::string> lines;  // text after "NNN-" / "NNN ", one per line
  };
  enum class Result { kNeedMore, kReply, kError };
  // Consumes bytes from `data` (advancing *used) until one reply is complete.
  Result Feed(const char* data, size_t size, size_t* used, Reply* reply);

 private:
  std::string line_;
  Reply partial_;
};

struct ClientMessage {
  std::vector<std::string> rcpts;
  std::vector<bool> unknown;  // parallel to rcpts: true = must be rejected with 5xx
  std::string payload;        // DATA content, dot-stuffed, ending with ".\r\n"
  uint64_t size = 0;          // unstuffed size, for SIZE=
};

enum class Outcome { kAccepted, kRejected, kError };
enum class Stage { kMail, kRcpt, kData, kEnd };

struct TransactionResult {
  Outcome outcome = Outcome::kError;
  int final_code = 0;  // the reply that decided the outcome
  uint32_t rcpts_accepted = 0;
  uint32_t rcpts_rejected_expected = 0;  // unknown recipients rejected with 5xx
  uint32_t rcpts_unexpected = 0;         // known rejected, or unknown accepted
};

class ClientListener {
 public:
  virtual ~ClientListener() = default;
  // Every reply inside a transaction, for per-code tallies.
  virtual void OnReply(Stage stage, int code) = 0;
  // The session is greeted (first time) or finished a transaction: it may take a message.
  virtual void OnReady() = 0;
  virtual void OnTransactionDone(const TransactionResult& result) = 0;
};

class ClientSession {
 public:
  enum class State { kGreeting, kEhlo, kTlsHandshake, kReady, kBusy, kQuit, kClosed, kFailed };

  ClientSession(std::string helo, std::string from, bool want_pipelining,
                ClientListener* listener, bool want_starttls = false);

  // Bytes from the server.
  void OnBytes(const char* data, size_t size);
  // REQUIRES: state() == kReady. `message` must stay alive until OnTransactionDone.
  void BeginMessage(const ClientMessage* message);
  // The connection broke: a transaction in progress ends as an error; state() == kFailed.
  void Abort(std::string why) { Fail(std::move(why)); }
  // Sends QUIT (when ready) or gives up at once (otherwise: kClosed).
  void Quit();
  // REQUIRES: state() == kTlsHandshake. The handshake completed: EHLO again.
  void OnTlsEstablished();

  std::string& out() { return out_; }
  State state() const { return state_; }
  bool pipelining() const { return pipelining_; }
  // True while a reply is owed (the driver's timeout applies only then).
  bool awaiting_reply() const { return !pending_.empty(); }
  bool in_transaction() const { return message_ != nullptr; }
  const std::string& error() const { return error_; }
  bool tls_active() const { return tls_active_; }
  // The session failed because the server did not offer STARTTLS (or refused it).
  bool starttls_not_offered() const { return starttls_not_offered_; }

 private:
  enum class Cmd { kGreeting, kEhlo, kStartTls, kMail, kRcpt, kData, kBody, kRset, kQuit };
  void HandleReply(const ReplyParser::Reply& reply);
  void SendRcpt(size_t index);
  void SendData();
  void FinishWithoutData();
  void Finish(Outcome outcome, int code);
  void Fail(std::string why);

  std::string helo_;
  std::string from_;
  bool want_pipelining_;
  ClientListener* listener_;
  bool want_starttls_;
  bool tls_active_ = false;
  bool starttls_not_offered_ = false;
  ReplyParser parser_;
  std::string out_;
  State state_ = State::kGreeting;
  bool pipelining_ = false;
  struct Pending {
    Cmd cmd;
    size_t index;
  };
  std::deque<Pending> pending_;
  std::string error_;

  const ClientMessage* message_ = nullptr;
  bool mail_ok_ = false;
  TransactionResult result_;
  int last_failure_code_ = 0;
};

}  // namespace moat::loadgen
