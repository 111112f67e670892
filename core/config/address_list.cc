// core/config/address_list.cc: see address_list.h.
#include "core/config/address_list.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace moat::config {
namespace {

struct Pending {
  std::string text;
  std::string file;
  int line = 0;
  int depth = 0;
};

bool PrefixMatches(const uint8_t* a, const uint8_t* b, int prefix_len) {
  int full = prefix_len / 8;
  if (std::memcmp(a, b, static_cast<size_t>(full)) != 0) {
    return false;
  }
  int rest = prefix_len % 8;
  if (rest == 0) {
    return true;
  }
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

bool HostBitsZero(const uint8_t* bytes, int size, int prefix_len) {
  for (int bit = prefix_len; bit < size * 8; ++bit) {
    if ((bytes[bit / 8] >> (7 - bit % 8)) & 1) {
      return false;
    }
  }
  return true;
}

// Reads a /file/name include: entries with the line each is on.
bool ReadInclude(const Pending& include, std::vector<Pending>& out, Diagnostics& diagnostics) {
  std::ifstream in(include.text);
  if (!in) {
    diagnostics.Error(include.file, include.line,
                      absl::StrFormat("cannot open \"%s\": %s", include.text, std::strerror(errno)));
    return false;
  }
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    size_t hash = line.find('#');
    if (hash != std::string::npos) {
      line.resize(hash);
    }
    for (std::string& item : SplitList(line)) {
      out.push_back({std::move(item), include.text, number, include.depth + 1});
    }
  }
  return true;
}

}  // namespace

AddressList AddressList::Parse(const std::vector<std::string>& entries, std::string_view name,
                               const std::string& file, int line, Diagnostics& diagnostics) {
  AddressList list;
  std::string param(name);
  // Work stack in reverse order so entries are handled in list order; includes are expanded
  // in place. Bounded: every include adds one level and the depth is capped.
  std::vector<Pending> work;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    work.push_back({*it, file, line, 0});
  }
  while (!work.empty()) {
    Pending item = std::move(work.back());
    work.pop_back();
    auto error = [&](const std::string& message) {
      diagnostics.Error(item.file, item.line, absl::StrFormat("%s: %s", param, message));
    };
    std::string_view text = item.text;
    bool negate = false;
    if (!text.empty() && text.front() == '!') {
      negate = true;
      text.remove_prefix(1);
    }
    if (text.empty()) {
      error(absl::StrFormat("bad address pattern \"%s\"", item.text));
      continue;
    }
    if (text.front() == '/') {
      if (negate) {
        error(absl::StrFormat("\"!\" cannot negate a file: \"%s\"", item.text));
        continue;
      }
      if (item.depth >= kIncludeDepthMax) {
        error(absl::StrFormat("\"%s\": files nested deeper than %d levels", item.text,
                              kIncludeDepthMax));
        continue;
      }
      list.files_.push_back(item.text);
      std::vector<Pending> included;
      if (ReadInclude(item, included, diagnostics)) {
        for (auto it = included.rbegin(); it != included.rend(); ++it) {
          work.push_back(std::move(*it));
        }
      }
      continue;
    }
    std::string before_slash(text.substr(0, text.find('/')));
    uint8_t probe[16];
    bool bare_ipv6 = inet_pton(AF_INET6, before_slash.c_str(), probe) == 1;
    if (!bare_ipv6 && LooksLikeTableRef(text)) {
      absl::StatusOr<TableRef> ref = ParseTableRef(text);
      if (!ref.ok()) {
        error(std::string(ref.status().message()));
      } else if (negate) {
        error(absl::StrFormat("\"!\" before a table is not supported: \"%s\"", item.text));
      } else {
        list.tables_.push_back(*std::move(ref));
      }
      continue;
    }
    // An address with an optional /len; IPv6 inside [] (Postfix's form) or bare.
    std::string_view address = text;
    std::string_view length;
    size_t slash = text.find('/');
    if (slash != std::string_view::npos) {
      address = text.substr(0, slash);
      length = text.substr(slash + 1);
    }
    bool bracketed = address.size() >= 2 && address.front() == '[' && address.back() == ']';
    if (bracketed) {
      address = address.substr(1, address.size() - 2);
    }
    Rule rule;
    rule.negate = negate;
    std::string address_text(address);
    if (!bracketed && inet_pton(AF_INET, address_text.c_str(), rule.bytes.data()) == 1) {
      rule.v6 = false;
    } else if (inet_pton(AF_INET6, address_text.c_str(), rule.bytes.data()) == 1) {
      rule.v6 = true;
    } else if (bracketed && inet_pton(AF_INET, address_text.c_str(), rule.bytes.data()) == 1) {
      rule.v6 = false;
    } else {
      error(absl::StrFormat(
          "bad address pattern \"%s\" (expected an IPv4 or [IPv6] address or network, "
          "/file/name or type:table; moat does not match hostnames here)",
          item.text));
      continue;
    }
    int max_len = rule.v6 ? 128 : 32;
    rule.prefix_len = max_len;
    if (slash != std::string_view::npos) {
      int len = -1;
      bool digits = !length.empty() && length.size() <= 3 &&
                    length.find_first_not_of("0123456789") == std::string_view::npos;
      if (!digits || !absl::SimpleAtoi(absl::string_view(length.data(), length.size()), &len) ||
          len > max_len) {
        error(absl::StrFormat("bad CIDR \"%s\": the prefix length must be 0..%d", item.text,
                              max_len));
        continue;
      }
      rule.prefix_len = len;
    }
    if (!HostBitsZero(rule.bytes.data(), rule.v6 ? 16 : 4, rule.prefix_len)) {
      error(absl::StrFormat("bad CIDR \"%s\": non-zero host bits after the /%d prefix",
                            item.text, rule.prefix_len));
      continue;
    }
    list.rules_.push_back(rule);
  }
  return list;
}

int AddressList::Match(const uint8_t* bytes, bool v6) const {
  for (const Rule& rule : rules_) {
    if (rule.v6 == v6 && PrefixMatches(rule.bytes.data(), bytes, rule.prefix_len)) {
      return rule.negate ? 0 : 1;
    }
  }
  return -1;
}

bool AddressList::ContainsBytes(const uint8_t* bytes, size_t size) const {
  if (size == 4) {
    return Match(bytes, false) == 1;
  }
  if (size != 16) {
    return false;
  }
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, kMappedPrefix, sizeof(kMappedPrefix)) == 0) {
    // ::ffff:a.b.c.d: the IPv4 rules decide first (Postfix logs such clients as IPv4); a
    // [::ffff:0:0]/96-style IPv6 rule still applies when no IPv4 rule matched.
    int v4 = Match(bytes + 12, false);
    if (v4 != -1) {
      return v4 == 1;
    }
  }
  return Match(bytes, true) == 1;
}

bool AddressList::Contains(const sockaddr_storage& address) const {
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    return ContainsBytes(reinterpret_cast<const uint8_t*>(&in->sin_addr), 4);
  }
  if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    return ContainsBytes(reinterpret_cast<const uint8_t*>(&in6->sin6_addr), 16);
  }
  return false;
}

bool AddressList::ContainsText(std::string_view address) const {
  std::string text(address);
  uint8_t bytes[16];
  if (inet_pton(AF_INET, text.c_str(), bytes) == 1) {
    return ContainsBytes(bytes, 4);
  }
  if (inet_pton(AF_INET6, text.c_str(), bytes) == 1) {
    return ContainsBytes(bytes, 16);
  }
  return false;
}

}  // namespace moat::config
