// net/smtp_command.cc: see smtp_command.h. Parses untrusted network input.
#include "net/smtp_command.h"

#include <array>
#include <cstring>

#include "absl/strings/str_format.h"

namespace moat::net {
namespace {

// Longest address we accept, without the <>: RFC 5321 4.5.3.1.3 limits a path to 256
// octets including the brackets.
constexpr size_t kAddressBytesMax = 254;
// RFC 3461 4.4: ENVID is at most 100 characters; ORCPT's address at most 500.
constexpr size_t kEnvidBytesMax = 100;
constexpr size_t kOrcptBytesMax = 500;

struct VerbName {
  std::string_view upper;
  std::string_view lower;
  SmtpVerb verb;
};

constexpr std::array<VerbName, kSmtpVerbCount> kVerbs = {{
    {"HELO", "helo", SmtpVerb::kHelo},
    {"EHLO", "ehlo", SmtpVerb::kEhlo},
    {"STARTTLS", "starttls", SmtpVerb::kStartTls},
    {"AUTH", "auth", SmtpVerb::kAuth},
    {"MAIL", "mail", SmtpVerb::kMail},
    {"RCPT", "rcpt", SmtpVerb::kRcpt},
    {"DATA", "data", SmtpVerb::kData},
    {"BDAT", "bdat", SmtpVerb::kBdat},
    {"RSET", "rset", SmtpVerb::kRset},
    {"NOOP", "noop", SmtpVerb::kNoop},
    {"VRFY", "vrfy", SmtpVerb::kVrfy},
    {"ETRN", "etrn", SmtpVerb::kEtrn},
    {"QUIT", "quit", SmtpVerb::kQuit},
    {"HELP", "help", SmtpVerb::kHelp},
    {"UNKNOWN", "unknown", SmtpVerb::kUnknown},
}};

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

char ToUpper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToUpper(a[i]) != ToUpper(b[i])) {
      return false;
    }
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && EqualsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && IsBlank(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && IsBlank(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

// Next blank-separated word of `*rest`; advances *rest past it.
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

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsHighBit(char c) { return static_cast<unsigned char>(c) >= 0x80; }

// RFC 5322 atext, plus 8-bit bytes (8BITMIME/SMTPUTF8 local parts).
bool IsAtext(char c) {
  if (IsAlpha(c) || IsDigit(c) || IsHighBit(c)) {
    return true;
  }
  return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != '\0';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool CheckDomain(std::string_view domain) {
  if (domain.empty()) {
    return false;
  }
  if (domain.front() == '[') {
    if (domain.size() < 3 || domain.back() != ']') {
      return false;
    }
    std::string_view literal = domain.substr(1, domain.size() - 2);
    if (StartsWithIgnoreCase(literal, "IPv6:")) {
      literal.remove_prefix(5);
      if (literal.empty()) {
        return false;
      }
      for (char c : literal) {
        if (HexValue(c) < 0 && c != ':' && c != '.') {
          return false;
        }
      }
      return true;
    }
    // Dotted quad.
    int parts = 0;
    int value = -1;
    for (char c : literal) {
      if (IsDigit(c)) {
        value = (value < 0 ? 0 : value * 10) + (c - '0');
        if (value > 255) {
          return false;
        }
      } else if (c == '.' && value >= 0) {
        ++parts;
        value = -1;
      } else {
        return false;
      }
    }
    return value >= 0 && parts == 3;
  }
  size_t label_bytes = 0;
  for (char c : domain) {
    if (c == '.') {
      if (label_bytes == 0) {
        return false;
      }
      label_bytes = 0;
    } else if (IsAlpha(c) || IsDigit(c) || c == '-' || c == '_' || IsHighBit(c)) {
      ++label_bytes;
    } else {
      return false;
    }
  }
  return label_bytes > 0;
}

// Extracts the path token that follows "FROM:" / "TO:". *rest is advanced past it.
// Returns false for an unterminated or malformed <...>.
bool ExtractPath(std::string_view* rest, std::string_view* path) {
  std::string_view s = *rest;
  size_t i = 0;
  while (i < s.size() && IsBlank(s[i])) {
    ++i;
  }
  if (i == s.size()) {
    *path = {};
    *rest = {};
    return true;
  }
  if (s[i] != '<') {
    size_t start = i;
    while (i < s.size() && !IsBlank(s[i])) {
      ++i;
    }
    *path = s.substr(start, i - start);
    *rest = s.substr(i);
    return true;
  }
  size_t start = i;
  bool quoted = false;
  for (++i; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\' && quoted) {
      ++i;  // the escaped byte, whatever it is
      continue;
    }
    if (c == '"') {
      quoted = !quoted;
    } else if (c == '>' && !quoted) {
      break;
    } else if (c == '<' && !quoted) {
      return false;
    }
  }
  if (i >= s.size()) {
    return false;
  }
  ++i;  // past '>'
  if (i < s.size() && !IsBlank(s[i])) {
    return false;
  }
  *path = s.substr(start, i - start);
  *rest = s.substr(i);
  return true;
}

std::string_view StripBrackets(std::string_view path) {
  if (path.size() >= 2 && path.front() == '<' && path.back() == '>') {
    return path.substr(1, path.size() - 2);
  }
  return path;
}

bool ParseDecimal(std::string_view digits, uint64_t* value) {
  if (digits.empty() || digits.size() > 19) {
    return false;
  }
  uint64_t v = 0;
  for (char c : digits) {
    if (!IsDigit(c)) {
      return false;
    }
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *value = v;
  return true;
}

bool AllDigits(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!IsDigit(c)) {
      return false;
    }
  }
  return true;
}

bool AllPrintable(std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string_view SmtpVerbStatName(SmtpVerb verb) {
  return kVerbs[static_cast<size_t>(verb)].lower;
}

std::string_view SmtpVerbName(SmtpVerb verb) { return kVerbs[static_cast<size_t>(verb)].upper; }

bool SplitCommandLine(std::string_view line, CommandLine* out) {
  std::string_view rest = line;
  std::string_view word = NextWord(&rest);
  if (word.empty()) {
    return false;
  }
  out->name = word;
  out->args = TrimBlanks(rest);
  out->verb = SmtpVerb::kUnknown;
  for (const VerbName& v : kVerbs) {
    if (v.verb != SmtpVerb::kUnknown && EqualsIgnoreCase(word, v.upper)) {
      out->verb = v.verb;
      break;
    }
  }
  return true;
}

bool LooksLikeHeader(std::string_view word) {
  if (word.size() < 2 || word.back() != ':') {
    return false;
  }
  for (size_t i = 0; i + 1 < word.size(); ++i) {
    auto u = static_cast<unsigned char>(word[i]);
    if (u <= 0x20 || u >= 0x7f || u == ':') {
      return false;
    }
  }
  return true;
}

bool IsAscii(std::string_view text) {
  for (char c : text) {
    if (IsHighBit(c)) {
      return false;
    }
  }
  return true;
}

bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char* end = p + text.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int extra;
    uint32_t cp;
    uint32_t min;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return false;
    }
    if (end - p <= extra) {
      return false;
    }
    for (int i = 1; i <= extra; ++i) {
      if ((p[i] & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    p += extra + 1;
  }
  return true;
}

bool DecodeXtext(std::string_view xtext, std::string* out) {
  out->clear();
  for (size_t i = 0; i < xtext.size(); ++i) {
    char c = xtext[i];
    if (c == '+') {
      if (i + 2 >= xtext.size()) {
        return false;
      }
      int hi = HexValue(xtext[i + 1]);
      int lo = HexValue(xtext[i + 2]);
      if (hi < 0 || lo < 0) {
        return false;
      }
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c >= '!' && c <= '~' && c != '=') {
      out->push_back(c);
    } else {
      return false;
    }
  }
  return true;
}

bool DecodeUtf8Xtext(std::string_view text, std::string* out) {
  out->clear();
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size() && text[i + 1] == 'x') {
      // \x{HEX}
      if (i + 2 >= text.size() || text[i + 2] != '{') {
        return false;
      }
      size_t j = i + 3;
      uint32_t cp = 0;
      size_t digits = 0;
      for (; j < text.size() && text[j] != '}'; ++j) {
        int v = HexValue(text[j]);
        if (v < 0 || ++digits > 6) {
          return false;
        }
        cp = cp * 16 + static_cast<uint32_t>(v);
      }
      if (j >= text.size() || digits == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return false;
      }
      AppendUtf8(cp, out);
      i = j;
    } else if (c == '+') {
      if (i + 2 >= text.size()) {
        return false;
      }
      int hi = HexValue(text[i + 1]);
      int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) {
        return false;
      }
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if ((c >= '!' && c <= '~' && c != '=') || IsHighBit(c)) {
      out->push_back(c);
    } else {
      return false;
    }
  }
  return IsValidUtf8(*out);
}

bool CheckAddressSyntax(std::string_view raw, std::string* address) {
  address->clear();
  if (raw.size() > kAddressBytesMax + 256) {
    return false;
  }
  std::string_view s = raw;
  // RFC 5321 4.1.2 source route "@one,@two:user@domain": ignored (C.2), stripped.
  if (!s.empty() && s.front() == '@') {
    size_t colon = s.find(':');
    if (colon == std::string_view::npos || colon + 1 >= s.size()) {
      return false;
    }
    std::string_view route = s.substr(0, colon);
    size_t start = 0;
    while (start < route.size()) {
      size_t comma = route.find(',', start);
      std::string_view hop = route.substr(start, comma == std::string_view::npos
                                                     ? std::string_view::npos
                                                     : comma - start);
      if (hop.size() < 2 || hop.front() != '@' || !CheckDomain(hop.substr(1))) {
        return false;
      }
      if (comma == std::string_view::npos) {
        break;
      }
      start = comma + 1;
    }
    s.remove_prefix(colon + 1);
  }
  if (s.empty() || s.size() > kAddressBytesMax) {
    return false;
  }
  size_t i = 0;
  if (s.front() == '"') {
    for (i = 1; i < s.size(); ++i) {
      char c = s[i];
      if (c == '\\') {
        ++i;
        if (i >= s.size() || s[i] == '\r' || s[i] == '\n' || s[i] == '\0') {
          return false;
        }
      } else if (c == '"') {
        break;
      } else if (c == '\r' || c == '\n' || c == '\0') {
        return false;
      }
    }
    if (i >= s.size()) {
      return false;
    }
    ++i;  // closing quote
    if (i < s.size() && s[i] != '@') {
      return false;
    }
  } else {
    for (; i < s.size() && s[i] != '@'; ++i) {
      if (!IsAtext(s[i]) && s[i] != '.') {
        return false;
      }
    }
    if (i == 0) {
      return false;
    }
  }
  if (i < s.size()) {  // s[i] == '@'
    if (!CheckDomain(s.substr(i + 1))) {
      return false;
    }
  }
  address->assign(s.data(), s.size());
  return true;
}

std::string ParseMailArguments(std::string_view args, const ParseOptions& options,
                               MailParameters* out) {
  static constexpr std::string_view kSyntax = "501 5.5.4 Syntax: MAIL FROM:<address>";
  static constexpr std::string_view kBadAddress = "501 5.1.7 Bad sender address syntax";
  *out = MailParameters();
  if (!StartsWithIgnoreCase(args, "FROM:")) {
    return std::string(kSyntax);
  }
  std::string_view rest = args.substr(5);
  std::string_view path;
  if (!ExtractPath(&rest, &path)) {
    return std::string(kBadAddress);
  }
  if (path.empty()) {
    return std::string(kSyntax);
  }
  std::string_view inner = StripBrackets(path);
  if (!inner.empty() && !CheckAddressSyntax(inner, &out->address)) {
    return std::string(kBadAddress);
  }
  bool has_ret = false;
  bool has_envid = false;
  for (std::string_view param = NextWord(&rest); !param.empty(); param = NextWord(&rest)) {
    if (EqualsIgnoreCase(param, "BODY=8BITMIME")) {
      out->body = BodyType::k8BitMime;
    } else if (EqualsIgnoreCase(param, "BODY=7BIT")) {
      out->body = BodyType::k7Bit;
    } else if (StartsWithIgnoreCase(param, "SIZE=")) {
      std::string_view digits = param.substr(5);
      if (!AllDigits(digits)) {
        return "501 5.5.4 Bad message size syntax";
      }
      if (!ParseDecimal(digits, &out->size)) {
        return "552 5.3.4 Message size exceeds file system imposed limit";
      }
      out->has_size = true;
    } else if (options.smtputf8_enable && EqualsIgnoreCase(param, "SMTPUTF8")) {
      out->smtputf8 = true;
    } else if (StartsWithIgnoreCase(param, "RET=")) {
      std::string_view value = param.substr(4);
      if (has_ret) {
        return "501 5.5.4 Bad RET parameter syntax";
      }
      if (EqualsIgnoreCase(value, "FULL")) {
        out->ret = DsnRet::kFull;
      } else if (EqualsIgnoreCase(value, "HDRS")) {
        out->ret = DsnRet::kHdrs;
      } else {
        return "501 5.5.4 Bad RET parameter syntax";
      }
      has_ret = true;
    } else if (StartsWithIgnoreCase(param, "ENVID=")) {
      if (has_envid || !DecodeXtext(param.substr(6), &out->envid) || out->envid.empty() ||
          out->envid.size() > kEnvidBytesMax || !AllPrintable(out->envid)) {
        return "501 5.5.4 Bad ENVID parameter syntax";
      }
      has_envid = true;
    } else {
      return absl::StrFormat("555 5.5.4 Unsupported option: %s", param);
    }
  }
  return "";
}

std::string ParseRcptArguments(std::string_view args, const ParseOptions& options,
                               RcptParameters* out) {
  static constexpr std::string_view kSyntax = "501 5.5.4 Syntax: RCPT TO:<address>";
  static constexpr std::string_view kBadAddress = "501 5.1.3 Bad recipient address syntax";
  (void)options;
  *out = RcptParameters();
  if (!StartsWithIgnoreCase(args, "TO:")) {
    return std::string(kSyntax);
  }
  std::string_view rest = args.substr(3);
  std::string_view path;
  if (!ExtractPath(&rest, &path)) {
    return std::string(kBadAddress);
  }
  if (path.empty()) {
    return std::string(kSyntax);
  }
  std::string_view inner = StripBrackets(path);
  if (inner.empty() || !CheckAddressSyntax(inner, &out->address)) {
    return std::string(kBadAddress);
  }
  bool has_orcpt = false;
  for (std::string_view param = NextWord(&rest); !param.empty(); param = NextWord(&rest)) {
    if (StartsWithIgnoreCase(param, "NOTIFY=")) {
      std::string_view value = param.substr(7);
      if (out->notify != 0 || value.empty()) {
        return "501 5.5.4 Error: Bad NOTIFY parameter syntax";
      }
      uint8_t mask = 0;
      while (!value.empty()) {
        size_t comma = value.find(',');
        std::string_view item = value.substr(0, comma);
        value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        uint8_t bit = 0;
        if (EqualsIgnoreCase(item, "NEVER")) {
          bit = kDsnNotifyNever;
        } else if (EqualsIgnoreCase(item, "SUCCESS")) {
          bit = kDsnNotifySuccess;
        } else if (EqualsIgnoreCase(item, "FAILURE")) {
          bit = kDsnNotifyFailure;
        } else if (EqualsIgnoreCase(item, "DELAY")) {
          bit = kDsnNotifyDelay;
        }
        if (bit == 0 || (mask & bit) != 0 || (comma != std::string_view::npos && value.empty())) {
          return "501 5.5.4 Error: Bad NOTIFY parameter syntax";
        }
        mask |= bit;
      }
      // RFC 3461 4.1: NEVER must appear alone.
      if ((mask & kDsnNotifyNever) != 0 && mask != kDsnNotifyNever) {
        return "501 5.5.4 Error: Bad NOTIFY parameter syntax";
      }
      out->notify = mask;
    } else if (StartsWithIgnoreCase(param, "ORCPT=")) {
      std::string_view value = param.substr(6);
      size_t semi = value.find(';');
      if (has_orcpt || semi == std::string_view::npos || semi == 0) {
        return "501 5.5.4 Error: Bad ORCPT parameter syntax";
      }
      std::string_view type = value.substr(0, semi);
      std::string_view coded = value.substr(semi + 1);
      bool ok = EqualsIgnoreCase(type, "utf-8") ? DecodeUtf8Xtext(coded, &out->orcpt)
                                                : DecodeXtext(coded, &out->orcpt);
      if (!ok || out->orcpt.empty() || out->orcpt.size() > kOrcptBytesMax ||
          out->orcpt.find('\0') != std::string::npos) {
        return "501 5.5.4 Error: Bad ORCPT parameter syntax";
      }
      out->orcpt_type.assign(type.data(), type.size());
      has_orcpt = true;
    } else {
      return absl::StrFormat("555 5.5.4 Unsupported option: %s", param);
    }
  }
  return "";
}

std::string EscapeForLog(std::string_view bytes, size_t max_bytes) {
  std::string out;
  size_t n = bytes.size() < max_bytes ? bytes.size() : max_bytes;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto u = static_cast<unsigned char>(bytes[i]);
    switch (bytes[i]) {
      case '\r':
        out += "\\r";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          out += absl::StrFormat("\\%03o", u);
        } else {
          out.push_back(bytes[i]);
        }
    }
  }
  return out;
}

}  // namespace moat::net
