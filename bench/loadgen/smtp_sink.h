// bench/loadgen/smtp_sink.h
//
// The receiving side of one SMTP connection (smtp-sink grown up) as a pure state machine: bytes
// in through OnBytes(), replies accumulate in out(). Speaks EHLO/HELO, MAIL, RCPT, DATA, BDAT,
// RSET, NOOP, QUIT and advertises PIPELINING, SIZE, 8BITMIME, CHUNKING (unless
// OfferChunking(false)) and ENHANCEDSTATUSCODES; every complete command in the input is
// answered in order, so pipelined groups get one batch of replies. DATA content is
// dot-unstuffed (RFC 5321 4.5.2) into the message byte-exact, CRLF kept, across any split of
// the input; BDAT chunks (RFC 3030) are taken as they are. At the final dot or the end of the
// LAST chunk the session hands the message to the listener and waits: the driver answers with
// FinishMessage() when it is ready (after fdatasync, say), and only then are the following
// pipelined commands processed. A chunk sent without MAIL or without an accepted recipient is
// read and refused (503, 554), as RFC 3030 requires; a malformed BDAT gets 521 and a close.
//
//   kCommand --DATA(354)--> kData --"."--> kWaitFinish --FinishMessage--> kCommand
//   kCommand --BDAT n--> kBdat --n bytes--> kCommand (250), or kWaitFinish after LAST
//   QUIT --> 221, close_after_flush()
//   kCommand --STARTTLS(220)--> kStartTls --OnTlsStarted--> kCommand (EHLO needed again)
//
// STARTTLS: the 220 is the last plaintext; whatever the client pipelined after the command is
// discarded (CVE-2011-0411), and the session ignores input until the driver has installed the
// TLS layer (TakeStartTls() says when) and called OnTlsStarted().
//
// Parses untrusted input: commands (a line over kCommandLineMax is answered 500 and the
// connection closed) and message content (unbounded length; the driver limits by time). Owned by
// one thread; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moat::loadgen {

class SinkListener {
 public:
  virtual ~SinkListener() = default;
  // The reply code for a RCPT (250, or a 4xx/5xx share).
  virtual int RcptReply() = 0;
  // A message ended. `data` may be moved from. The session waits for FinishMessage().
  virtual void OnMessage(std::string& data, uint32_t rcpts) = 0;
};

class SinkSession {
 public:
  static constexpr size_t kCommandLineMax = 4096;
  static constexpr uint64_t kSizeLimit = uint64_t{1} << 30;

  SinkSession(std::string hostname, SinkListener* listener);

  // Advertise and accept STARTTLS (the driver has a TLS server context).
  void OfferStartTls() { tls_offered_ = true; }
  // Advertise and accept CHUNKING (default: yes).
  void OfferChunking(bool on) { chunking_offered_ = on; }
  // Queues the 220 banner.
  void Greet();
  void OnBytes(const char* data, size_t size);
  // REQUIRES: waiting_for_finish(). Queues the reply for the message (`code` 250, 4xx or 5xx)
  // and resumes with any input that followed the final dot.
  void FinishMessage(int code, uint64_t queue_number);

  std::string& out() { return out_; }
  bool waiting_for_finish() const { return state_ == State::kWaitFinish; }
  bool close_after_flush() const { return close_after_flush_; }
  // True once after STARTTLS was answered 220: out() holds the last plaintext reply; the
  // driver sends it, then switches the connection to TLS and calls OnTlsStarted().
  bool TakeStartTls();
  // The TLS handshake completed: a fresh session (RFC 3207: the client must EHLO again).
  void OnTlsStarted();
  bool tls_active() const { return tls_active_; }

 private:
  enum class State { kCommand, kData, kBdat, kWaitFinish, kStartTls, kClosed };

  void Process();
  void HandleCommand(std::string_view line);
  // Scans in_ from in_pos_ in data mode; returns true when the final dot was seen.
  bool ScanData();
  void HandleBdat(std::string_view args);
  // Takes chunk bytes from in_; returns true when the chunk is complete.
  bool TakeChunk();
  void Reset();

  std::string hostname_;
  SinkListener* listener_;
  std::string out_;
  std::string in_;
  size_t in_pos_ = 0;
  State state_ = State::kCommand;
  bool at_line_start_ = true;
  bool close_after_flush_ = false;
  bool have_mail_ = false;
  bool greeted_ = false;
  bool tls_offered_ = false;
  bool chunking_offered_ = true;
  uint64_t chunk_left_ = 0;   // kBdat: bytes of the chunk still to come
  bool chunk_last_ = false;   // the chunk is the LAST one
  bool chunk_refused_ = false;  // the chunk is read and dropped; chunk_reply_ answers it
  std::string chunk_reply_;
  bool in_bdat_ = false;      // a BDAT transaction has begun (no DATA until it ends)
  bool tls_active_ = false;
  bool start_tls_ = false;  // TakeStartTls() pending
  uint32_t rcpts_ = 0;
  std::string data_;
};

// Finds "X-Loadgen-Timestamp: <ns>" in the header of `message` (before the first empty line).
bool FindTimestampHeader(std::string_view message, uint64_t* ns);

}  // namespace moat::loadgen
