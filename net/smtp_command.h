// net/smtp_command.h
//
// Parsing of SMTP command lines for the server session: the verb, the MAIL FROM / RCPT TO
// path with its ESMTP parameters (SIZE BODY SMTPUTF8 RET ENVID NOTIFY ORCPT), RFC 3461
// xtext and RFC 6533 utf-8 xtext decoding, address syntax checks and UTF-8 validation.
// Owner: the "session" engineer. Pure functions, no state, no I/O: thread-safe.
//
// Trust boundary: every function here parses bytes straight from the network. Nothing
// asserts on input; errors come back as the complete SMTP reply line Postfix's smtpd
// gives for the same input (e.g. "501 5.1.3 Bad recipient address syntax").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace moat::net {

enum class SmtpVerb : uint8_t {
  kHelo,
  kEhlo,
  kStartTls,
  kAuth,
  kMail,
  kRcpt,
  kData,
  kBdat,
  kRset,
  kNoop,
  kVrfy,
  kEtrn,
  kQuit,
  kHelp,
  kUnknown,  // also the slot that counts malformed lines, as in Postfix
};
inline constexpr int kSmtpVerbCount = static_cast<int>(SmtpVerb::kUnknown) + 1;

// Lower-case name as used in the "disconnect from ... ehlo=1 mail=1" statistics, and the
// upper-case name used in "lost connection after RCPT" and NOQUEUE lines.
std::string_view SmtpVerbStatName(SmtpVerb verb);
std::string_view SmtpVerbName(SmtpVerb verb);

// One command line, split. Views point into the caller's line.
struct CommandLine {
  SmtpVerb verb = SmtpVerb::kUnknown;
  std::string_view name;  // the first word as sent
  std::string_view args;  // the rest, leading and trailing blanks removed
};

// Splits a command line (without its line terminator). Returns false for a line with no
// word at all (empty or blanks only): Postfix answers "500 5.5.2 Error: bad syntax".
bool SplitCommandLine(std::string_view line, CommandLine* out);

// True for a first word that looks like a message header ("Subject:", "From:"): a client
// that sends one as a command is sending content out of sync (SMTP smuggling, or an
// HTTP/mail client talking to the wrong port). Postfix answers 221 and hangs up.
bool LooksLikeHeader(std::string_view word);

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view text);
bool IsAscii(std::string_view text);

// RFC 3461 xtext ("+2B" escapes) -> bytes. Returns false on a malformed escape or a
// character outside the xtext range.
bool DecodeXtext(std::string_view xtext, std::string* out);
// RFC 6533 utf-8-addr-xtext / utf-8-addr-unitext: "\x{HEX}" escapes, raw UTF-8, and (as
// Postfix's uxtext_unquote) "+HH" escapes. Returns false when malformed.
bool DecodeUtf8Xtext(std::string_view text, std::string* out);

// Checks an address as smtpd does for MAIL FROM / RCPT TO / VRFY, after the <> are
// removed: dot-atom or quoted local part, optional @domain (a host name or an address
// literal). Source routes ("@a,@b:user@dom") are stripped into *address. Non-ASCII is
// allowed (8-bit and SMTPUTF8 addresses; UTF-8 validity is checked per line).
bool CheckAddressSyntax(std::string_view raw, std::string* address);

enum class BodyType : uint8_t { kNone, k7Bit, k8BitMime };
enum class DsnRet : uint8_t { kNone, kFull, kHdrs };
// NOTIFY= bits (RFC 3461); 0 = not given.
enum DsnNotify : uint8_t {
  kDsnNotifyNever = 1,
  kDsnNotifySuccess = 2,
  kDsnNotifyFailure = 4,
  kDsnNotifyDelay = 8,
};

struct MailParameters {
  std::string address;  // without <>, "" for the null sender
  bool has_size = false;
  uint64_t size = 0;
  BodyType body = BodyType::kNone;
  bool smtputf8 = false;
  DsnRet ret = DsnRet::kNone;
  std::string envid;  // decoded
};

struct RcptParameters {
  std::string address;
  uint8_t notify = 0;       // DsnNotify bits
  std::string orcpt_type;   // "rfc822", "utf-8", ... ("" when ORCPT was not given)
  std::string orcpt;        // decoded address
};

struct ParseOptions {
  bool smtputf8_enable = true;
};

// Parse the arguments of MAIL ("FROM:<a> SIZE=10") or RCPT ("TO:<b> NOTIFY=NEVER").
// Return "" on success, else the reply line (without CRLF).
std::string ParseMailArguments(std::string_view args, const ParseOptions& options,
                               MailParameters* out);
std::string ParseRcptArguments(std::string_view args, const ParseOptions& options,
                               RcptParameters* out);

// Printable form of untrusted bytes for a log line: control bytes, DEL and backslash
// become C-style escapes ("\r\n" -> "\\r\\n"), at most `max_bytes` input bytes.
std::string EscapeForLog(std::string_view bytes, size_t max_bytes = 100);

}  // namespace moat::net
