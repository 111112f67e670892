// core/config/values.cc: see values.h.
#include "core/config/values.h"

#include <arpa/inet.h>

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace moat::config {
namespace {

absl::string_view AV(std::string_view s) { return {s.data(), s.size()}; }

bool AllDigits(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return true;
}

bool IsListSeparator(char c) {
  return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

bool IsWhiteSpace(char c) { return c != ',' && IsListSeparator(c); }

std::vector<std::string> SplitOn(std::string_view text, bool (*separator)(char)) {
  std::vector<std::string> items;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && separator(text[i])) {
      ++i;
    }
    size_t start = i;
    while (i < text.size() && !separator(text[i])) {
      ++i;
    }
    if (i > start) {
      items.emplace_back(text.substr(start, i - start));
    }
  }
  return items;
}

std::vector<std::string> SplitWords(std::string_view text) { return SplitOn(text, IsWhiteSpace); }

constexpr std::string_view kCompiledTypes[] = {"hash", "btree", "cdb", "lmdb"};
constexpr std::string_view kSourceTypes[] = {"texthash", "cidr"};

}  // namespace

absl::StatusOr<bool> ParseBool(std::string_view text) {
  if (absl::EqualsIgnoreCase(AV(text), "yes")) {
    return true;
  }
  if (absl::EqualsIgnoreCase(AV(text), "no")) {
    return false;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("bad boolean value \"%s\" (expected yes or no)", std::string(text)));
}

absl::StatusOr<int64_t> ParseInteger(std::string_view text) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '-') {
    digits.remove_prefix(1);
  }
  int64_t value = 0;
  if (!AllDigits(digits) || !absl::SimpleAtoi(AV(text), &value)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad integer value \"%s\"", std::string(text)));
  }
  return value;
}

absl::StatusOr<absl::Duration> ParseTime(std::string_view text, char default_unit) {
  auto bad = [text] {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bad time value \"%s\" (expected a number with an optional unit s, m, h, d or w)",
        std::string(text)));
  };
  std::string_view digits = text;
  char unit = default_unit;
  if (!digits.empty() && !(digits.back() >= '0' && digits.back() <= '9')) {
    unit = digits.back();
    digits.remove_suffix(1);
  }
  int64_t count = 0;
  if (!AllDigits(digits) || !absl::SimpleAtoi(AV(digits), &count)) {
    return bad();
  }
  int64_t unit_seconds = 0;
  switch (unit) {
    case 's':
      unit_seconds = 1;
      break;
    case 'm':
      unit_seconds = 60;
      break;
    case 'h':
      unit_seconds = 3600;
      break;
    case 'd':
      unit_seconds = 86400;
      break;
    case 'w':
      unit_seconds = 7 * 86400;
      break;
    default:
      return bad();
  }
  // Postfix keeps times in an int of seconds; so do we, to reject what Postfix rejects.
  constexpr int64_t kSecondsMax = std::numeric_limits<int32_t>::max();
  if (count > kSecondsMax / unit_seconds) {
    return absl::InvalidArgumentError(
        absl::StrFormat("time value \"%s\" is too large", std::string(text)));
  }
  return absl::Seconds(count * unit_seconds);
}

absl::StatusOr<int64_t> ParseSize(std::string_view text) {
  int64_t value = 0;
  if (!AllDigits(text) || !absl::SimpleAtoi(AV(text), &value)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bad size value \"%s\" (expected a number of bytes)", std::string(text)));
  }
  return value;
}

std::vector<std::string> SplitList(std::string_view text) {
  return SplitOn(text, IsListSeparator);
}

std::string NormalizeWhiteSpace(std::string_view text) {
  std::string out;
  for (const std::string& word : SplitWords(text)) {
    if (!out.empty()) {
      out.push_back(' ');
    }
    out.append(word);
  }
  return out;
}

absl::Status ValidateHostPort(std::string_view text) {
  auto bad = [text](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrFormat("bad address:port \"%s\": %s",
                                                      std::string(text), std::string(why)));
  };
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return bad("expected ADDRESS:PORT, [IPV6]:PORT or *:PORT");
  }
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  int port_number = 0;
  if (!AllDigits(port) || !absl::SimpleAtoi(AV(port), &port_number) || port_number > 65535) {
    return bad("the port must be a number 0..65535");
  }
  if (host == "*") {
    return absl::OkStatus();
  }
  unsigned char buffer[16];
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    std::string inner(host.substr(1, host.size() - 2));
    if (inet_pton(AF_INET6, inner.c_str(), buffer) == 1) {
      return absl::OkStatus();
    }
    return bad("not an IPv6 address inside []");
  }
  std::string v4(host);
  if (inet_pton(AF_INET, v4.c_str(), buffer) == 1) {
    return absl::OkStatus();
  }
  return bad("the address must be an IPv4 address, [IPv6] or *");
}

absl::StatusOr<ListenEntry> ParseListenEntry(std::string_view text) {
  ListenEntry entry;
  std::string_view address = text;
  if (address.ends_with(kImplicitTlsSuffix)) {
    address.remove_suffix(kImplicitTlsSuffix.size());
    entry.implicit_tls = true;
  } else if (size_t slash = address.find('/'); slash != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bad moat_listen entry \"%s\": the only option is \"%s\" (implicit TLS)",
        std::string(text), std::string(kImplicitTlsSuffix)));
  }
  absl::Status valid = ValidateHostPort(address);
  if (!valid.ok()) {
    return valid;
  }
  entry.address = std::string(address);
  return entry;
}

bool TableRef::IsCompiled() const {
  for (std::string_view t : kCompiledTypes) {
    if (type == t) {
      return true;
    }
  }
  return false;
}

bool LooksLikeTableRef(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return false;
  }
  for (char c : text.substr(0, colon)) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<TableRef> ParseTableRef(std::string_view text) {
  TableRef ref;
  std::string_view rest = text;
  if (rest.substr(0, 6) == "proxy:") {
    ref.proxied = true;
    rest.remove_prefix(6);
  }
  size_t colon = rest.find(':');
  if (!LooksLikeTableRef(rest)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad table \"%s\" (expected type:/path)", std::string(text)));
  }
  ref.type = std::string(rest.substr(0, colon));
  ref.name = std::string(rest.substr(colon + 1));
  bool known = ref.IsCompiled();
  for (std::string_view t : kSourceTypes) {
    known = known || ref.type == t;
  }
  if (!known) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "table type \"%s\" in \"%s\" is not supported by moat (supported: hash, btree, cdb, "
        "lmdb, texthash, cidr)",
        ref.type, std::string(text)));
  }
  if (ref.name.empty() || ref.name.front() != '/') {
    return absl::InvalidArgumentError(absl::StrFormat(
        "table \"%s\": the file name must be an absolute path", std::string(text)));
  }
  return ref;
}

}  // namespace moat::config
