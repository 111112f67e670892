// net/client/smtp_client_session.h
//
// SmtpClientSession: the outbound SMTP client protocol machine, one per connection.
// PURE: no sockets, no clock. The driver (the shard's delivery pipeline on its io_uring
// loop) connects, feeds server bytes with OnData() (any split), sends what TakeOutput()
// returns, arms a timer of TimeoutFor(phase()) and calls OnTimeout(phase) when it fires.
// Owned by one shard; not thread-safe. PARSES UNTRUSTED INPUT (the remote server's
// replies): nonsense from the server defers the transaction and closes the connection;
// it never crashes.
//
//   kConnecting --OnConnected--> kGreeting --220--> kHelo (EHLO; 5xx -> HELO)
//   kHelo --250 STARTTLS offered, tls level != none--> kStartTls --220--> kTlsHandshake
//     (the driver runs the handshake, then OnTlsEstablished/OnTlsFailed) --> kHelo (EHLO again)
//        |                          | 4xx/5xx: all recipients deferred/bounced, QUIT
//   OnConnectFailed -> kClosed      v
//   kMail -> kRcpt... -> kData --354--> kDataXfer (AddBody..., EndBody) -> kDataDone
//     (PIPELINING: MAIL, every RCPT and DATA in one write; replies matched in order)
//   PIPELINING and CHUNKING: kDataXfer at once (AddBody..., EndBody), then MAIL, every
//     RCPT, "BDAT <size> LAST" and the content go in one write (RFC 3030): one round trip
//     per message instead of two. The BDAT reply is the end-of-data reply; a server that
//     refused MAIL or every RCPT still reads the chunk (RFC 3030 section 2) and refuses it.
//   kDataDone --reply--> kIdle --NextTransaction--> kRset -> kMail ...  (connection cache)
//   kIdle --Quit--> kQuit --reply/EOF--> kClosed
//   any lost connection / timeout / malformed reply -> pending recipients deferred, kClosed
//
// Results use Postfix's texts, so log lines and DSNs read like Postfix's:
//   "host mx[10.0.0.5] said: 550 5.1.1 <u@d>: ... (in reply to RCPT TO command)",
//   "lost connection with mx[10.0.0.5] while receiving the initial server greeting",
//   "conversation with mx[10.0.0.5] timed out while sending end of data -- message may be
//    sent more than once", "connect to mx[10.0.0.5]:25: Connection refused".
//
// smtp_discard_ehlo_keywords (ClientOptions): EHLO keywords the client ignores, as in
// Postfix; "chunking" there turns BDAT off, "pipelining" lock-step.
//
// 8BITMIME: BODY=8BITMIME is sent when the message is 8-bit and the server announces
// 8BITMIME. When it does not, the 8-bit body is sent as it is: Postfix's behaviour with
// disable_mime_output_conversion = yes (moat never rewrites content, so DKIM signatures
// stay intact). SMTPUTF8 messages to a server without SMTPUTF8 bounce with 5.6.7 as in
// Postfix. SIZE: SIZE=n on MAIL when announced; a message over the server's limit is
// bounced locally without MAIL ("message size N exceeds size limit L of server H[A]",
// 5.3.4, Postfix's wording). DSN: NOTIFY/ORCPT/RET/ENVID are forwarded only when the
// server announces DSN (then the remote MTA owns the success notification).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

#include "net/client/smtp_reply.h"

namespace moat::client {

enum class Phase {
  kConnecting,  // waiting for the TCP connect (smtp_connect_timeout)
  kGreeting,    // waiting for the 220 greeting (smtp_helo_timeout)
  kHelo,        // EHLO/HELO sent (smtp_helo_timeout)
  kStartTls,    // STARTTLS sent (smtp_starttls_timeout)
  kTlsHandshake,  // 220 to STARTTLS received: the driver runs the TLS handshake (same timeout)
  kRset,        // RSET sent before a reused connection's next transaction (smtp_rset_timeout)
  kMail,        // MAIL FROM sent (smtp_mail_timeout)
  kRcpt,        // RCPT TO sent (smtp_rcpt_timeout)
  kData,        // DATA sent (smtp_data_init_timeout)
  kDataXfer,    // sending the content: the driver calls AddBody/EndBody (smtp_data_xfer_timeout)
  kDataDone,    // "." or the last BDAT chunk sent (smtp_data_done_timeout)
  kIdle,        // transaction finished, connection reusable (smtp_connection_cache_time_limit)
  kQuit,        // QUIT sent (smtp_quit_timeout)
  kClosed,      // the driver closes the socket
};
std::string_view PhaseName(Phase phase);

// Postfix's defaults.
struct ClientTimeouts {
  absl::Duration connect = absl::Seconds(30);     // smtp_connect_timeout
  absl::Duration helo = absl::Seconds(300);       // smtp_helo_timeout (greeting too)
  absl::Duration mail = absl::Seconds(300);       // smtp_mail_timeout
  absl::Duration rcpt = absl::Seconds(300);       // smtp_rcpt_timeout
  absl::Duration data_init = absl::Seconds(120);  // smtp_data_init_timeout
  absl::Duration data_xfer = absl::Seconds(180);  // smtp_data_xfer_timeout
  absl::Duration data_done = absl::Seconds(600);  // smtp_data_done_timeout
  absl::Duration rset = absl::Seconds(20);        // smtp_rset_timeout
  absl::Duration quit = absl::Seconds(300);       // smtp_quit_timeout
  absl::Duration starttls = absl::Seconds(300);   // smtp_starttls_timeout (and the handshake)
  absl::Duration idle = absl::Seconds(2);         // smtp_connection_cache_time_limit
};
// The timeout the driver arms while the machine is in `phase` (ZeroDuration for kClosed).
absl::Duration TimeoutFor(Phase phase, const ClientTimeouts& timeouts);

struct ServerFeatures {
  bool esmtp = false;  // EHLO accepted
  bool pipelining = false;
  bool size = false;
  uint64_t size_limit = 0;  // 0: no limit announced
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  bool dsn = false;
  bool starttls = false;  // STARTTLS announced
  bool chunking = false;  // CHUNKING announced (BDAT; used together with PIPELINING)
};

struct ClientOptions {
  // smtp_discard_ehlo_keywords, lower or upper case ("silent-discard" is accepted and
  // changes nothing: the client logs no discards).
  std::vector<std::string> discard_ehlo_keywords;
};

// smtp_tls_security_level, as the protocol machine applies it (see tls/client_context.h
// for the certificate side). none: never STARTTLS. may: STARTTLS when offered; a refused
// STARTTLS goes on in plaintext. encrypt: STARTTLS mandatory (not offered or refused:
// deferred 4.7.4, "TLS is required, but ..."). verify: as encrypt, and the driver reports
// whether the certificate verified; an unverified one defers 4.7.5 "Server certificate
// not verified" (QUIT over TLS, nothing of the transaction sent).
enum class TlsLevel : uint8_t { kNone, kMay, kEncrypt, kVerify };

struct ClientRecipient {
  std::string address;  // without <>
  std::string notify;   // DSN NOTIFY value ("SUCCESS,FAILURE", "NEVER") or ""
  std::string orcpt;    // DSN ORCPT value ("rfc822;u@d") or ""
};

struct ClientTransaction {
  std::string sender;  // "" for the null sender
  std::vector<ClientRecipient> recipients;
  uint64_t size_bytes = 0;  // content size, for SIZE= and the server's limit
  // The content is empty or its last byte is '\n'. When it is not, a CRLF is added at
  // the end (DATA and BDAT alike), and BDAT announces size_bytes + 2. The chunks the
  // driver passes to AddBody must add up to size_bytes exactly.
  bool ends_in_newline = true;
  bool eight_bit = false;   // the content is 8-bit (BODY=8BITMIME when offered)
  bool smtputf8 = false;    // the envelope or headers need SMTPUTF8
  std::string dsn_ret;      // "FULL", "HDRS" or ""
  std::string dsn_envid;    // xtext or ""
};

enum class Outcome { kPending, kSent, kDeferred, kBounced };
std::string_view OutcomeName(Outcome outcome);  // "sent", "deferred", "bounced"

struct RecipientResult {
  Outcome outcome = Outcome::kPending;
  std::string dsn;     // "2.0.0", "5.1.1", ...
  std::string reason;  // Postfix's text: for sent, the server's reply ("250 2.0.0 Ok: ...")
  std::string reply;   // the remote reply ("550 5.1.1 ...") or "" when the failure is local
  // The failure concerns the destination as a whole (connect, greeting, HELO, lost
  // connection, timeout, malformed reply): the scheduler's dead-destination input.
  bool site_failure = false;
};

struct ServerIdentity {
  std::string helo_name;  // our EHLO name (smtp_helo_name = $myhostname)
  std::string host;       // the server's name ("mx.internal" or the literal)
  std::string address;    // its IP address text
  uint16_t port = 25;
  TlsLevel tls = TlsLevel::kNone;
};

class SmtpClientSession {
 public:
  SmtpClientSession(ServerIdentity server, ClientTimeouts timeouts = {},
                    ClientOptions options = {});

  // --- driving (REQUIREs are programmer errors, checked with MOAT_CHECK) ---

  // REQUIRES: phase() == kConnecting, first call. The transaction the connection carries.
  void Start(ClientTransaction transaction);
  // The TCP connection is up: wait for the greeting.
  void OnConnected();
  // The connect failed; `why` is strerror-like ("Connection refused"). Every recipient is
  // deferred with "connect to host[addr]:port: why" (4.4.1, site failure).
  void OnConnectFailed(std::string_view why);
  // Server bytes, any split.
  void OnData(std::string_view bytes);
  // The server closed the connection (or a read failed).
  void OnEof();
  // The timer armed for `armed_for` (TimeoutFor(phase()) when the machine was in that
  // phase) fired. A timer from a phase the machine has left is stale and ignored (returns
  // false); the driver re-arms whenever phase() changes.
  bool OnTimeout(Phase armed_for);

  // True in kDataXfer until EndBody(): the driver supplies the content.
  bool WantsBody() const { return phase_ == Phase::kDataXfer; }
  // Appends one content chunk (lines end in CRLF; a chunk may end mid-line). After DATA,
  // lines that start with '.' are dot-stuffed on the way out; in a BDAT chunk the content
  // goes as it is. Only the chunk is copied.
  void AddBody(std::string_view chunk);
  // Ends the content: CRLF if the last line was unterminated, then "." (after DATA).
  void EndBody();

  // --- STARTTLS (phase kTlsHandshake): the driver installs its TLS layer; bytes sent and
  // received from now on go through it. Plaintext the server sent after its 220 to
  // STARTTLS is discarded (never read as a reply after the handshake: CVE-2011-0411).
  bool WantsTlsHandshake() const { return phase_ == Phase::kTlsHandshake; }
  // The handshake completed. `verified`: the certificate chain verified and matched the
  // server's name (only required at TlsLevel::kVerify). EHLO is sent again, over TLS.
  void OnTlsEstablished(bool verified);
  // The handshake failed (`why` for the log and the deferral reason): pending recipients
  // deferred 4.7.5 "Cannot start TLS: handshake failure", kClosed (no QUIT: no channel).
  void OnTlsFailed(std::string_view why);
  // TLS is on for this connection.
  bool tls_active() const { return tls_active_; }

  // Bytes to send now (moves them out). Empty when there is nothing to send.
  std::string TakeOutput();
  bool HasOutput() const { return !output_.empty(); }

  // --- results ---
  Phase phase() const { return phase_; }
  // The current transaction has a final result for every recipient.
  bool TransactionDone() const { return transaction_done_; }
  // One result per recipient of the current transaction, in order.
  const std::vector<RecipientResult>& results() const { return results_; }
  // The connection can carry another transaction (connection cache).
  bool CanReuse() const { return phase_ == Phase::kIdle; }
  // REQUIRES: CanReuse(). RSET, then MAIL... for the next message to the same destination.
  void NextTransaction(ClientTransaction transaction);
  // Sends QUIT (from kIdle, e.g. the cache idle timer) and closes after the reply.
  // From any other phase it just closes (kClosed). Pending recipients are deferred.
  void Quit();

  const ServerFeatures& features() const { return features_; }
  // Transactions started on this connection (1 for a fresh one): Postfix's conn_use.
  int transactions() const { return transactions_; }
  // "host[addr]" and "host[addr]:port" as Postfix logs them.
  std::string NameAddr() const;
  std::string NameAddrPort() const;

 private:
  enum class Command {
    kGreeting, kEhlo, kHelo, kStartTls, kRset, kMail, kRcpt, kData, kDot, kBdat, kQuit
  };
  struct Expect {
    Command command;
    int recipient = -1;  // for kRcpt
  };

  void HandleReply(const Reply& reply);
  void HandleGreeting(const Reply& reply);
  void HandleEhlo(const Reply& reply);
  void HandleHelo(const Reply& reply);
  void HandleStartTls(const Reply& reply);
  // No TLS on this connection although the level requires it: defer 4.7.4 and QUIT.
  void RequireTls(std::string_view why);
  void HandleRset(const Reply& reply);
  void HandleMail(const Reply& reply);
  void HandleRcpt(const Reply& reply, int recipient);
  void HandleData(const Reply& reply);
  // The end-of-data reply: to "." (command "end of DATA") or to the last BDAT ("BDAT").
  void HandleDot(const Reply& reply, std::string_view command);

  void ParseEhlo(const Reply& reply);
  bool Discarded(std::string_view keyword) const;  // in smtp_discard_ehlo_keywords
  // Checks SIZE/SMTPUTF8, then queues MAIL, RCPTs and DATA (all at once with PIPELINING).
  void BeginTransaction(bool with_rset);
  void Send(Command command, std::string line, int recipient = -1);
  void SendNextLockStep();
  void FinishTransactionIfSettled();
  void UpdatePhase();

  // Fails every pending recipient.
  void FailPending(Outcome outcome, std::string_view dsn, std::string_view reason,
                   std::string_view reply, bool site_failure);
  // Fails the recipients RCPT accepted (MAIL/DATA/end-of-data failures apply to all).
  void FailAccepted(const Reply& reply, std::string_view command);
  // Connection-level trouble: defer pending recipients, close.
  void LoseConnection(std::string_view reason, std::string_view dsn = "4.4.2");
  std::string Where() const;  // "sending RCPT TO", ... for lost-connection texts
  std::string SaidText(const Reply& reply, std::string_view command) const;

  ServerIdentity server_;
  ClientTimeouts timeouts_;
  ClientOptions options_;
  ServerFeatures features_;
  ReplyReader reader_;
  Phase phase_ = Phase::kConnecting;
  std::string output_;
  std::deque<Expect> expect_;  // replies awaited, in order
  // Lock-step (no PIPELINING): commands not sent yet.
  std::deque<std::pair<Expect, std::string>> unsent_;
  bool started_ = false;
  bool transaction_done_ = false;
  bool in_transaction_ = false;  // MAIL..end of data for the current transaction
  bool mail_ok_ = false;
  bool data_sent_ = false;  // DATA queued (it may still be unsent in lock-step)
  bool at_line_start_ = true;  // dot-stuffing state across AddBody chunks
  bool bdat_ = false;          // this transaction sends its content with BDAT
  uint64_t bdat_size_ = 0;     // the size "BDAT n LAST" announced
  uint64_t body_bytes_ = 0;    // content bytes queued for this transaction so far
  bool quit_requested_ = false;
  bool reusable_ = true;  // false after a 421 or other connection-ending reply
  bool tls_active_ = false;
  int transactions_ = 0;
  int accepted_ = 0;  // recipients with a 2xx RCPT reply
  ClientTransaction transaction_;
  std::vector<RecipientResult> results_;
  std::vector<bool> rcpt_accepted_;
};

}  // namespace moat::client
