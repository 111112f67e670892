// core/table/cidr_map.cc: Postfix cidr_table(5) (see cidr_map.h).
#include "core/table/cidr_map.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "core/log/log.h"
#include "core/table/source_reader.h"

namespace moat::table {
namespace {

constexpr size_t kAddressTextBytesMax = 64;
constexpr size_t kNestingMax = 100;

}  // namespace

bool ParseIpAddress(std::string_view text, uint8_t out[16], bool* v6) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() >= kAddressTextBytesMax ||
      memchr(text.data(), '\0', text.size()) != nullptr) {
    return false;
  }
  char buffer[kAddressTextBytesMax];
  memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  memset(out, 0, 16);
  if (memchr(buffer, ':', text.size()) != nullptr) {
    *v6 = true;
    return inet_pton(AF_INET6, buffer, out) == 1;
  }
  *v6 = false;
  return inet_pton(AF_INET, buffer, out) == 1;
}

bool CidrMap::Matches(const Rule& rule, const uint8_t* address, bool v6) {
  if (rule.v6 != v6) {
    return false;
  }
  int full_bytes = rule.prefix_bits / 8;
  if (memcmp(rule.address, address, static_cast<size_t>(full_bytes)) != 0) {
    return false;
  }
  int rest = rule.prefix_bits % 8;
  if (rest == 0) {
    return true;
  }
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (rule.address[full_bytes] & mask) == (address[full_bytes] & mask);
}

absl::StatusOr<std::unique_ptr<CidrMap>> CidrMap::Open(const std::string& path,
                                                       std::string spec) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    auto message = absl::StrFormat("open %s: %s", path, strerror(e));
    return e == ENOENT ? absl::NotFoundError(message) : absl::PermissionDeniedError(message);
  }
  auto map = Read(fd, path, std::move(spec));
  close(fd);
  return map;
}

absl::StatusOr<std::unique_ptr<CidrMap>> CidrMap::Read(int fd, const std::string& name,
                                                       std::string spec) {
  std::unique_ptr<CidrMap> map(new CidrMap(std::move(spec)));
  SourceReader reader(fd, name, /*fold_keys=*/false, /*require_value=*/false);
  std::vector<uint32_t> open_ifs;  // indexes of the `if` rules whose endif is pending
  SourceEntry entry;
  while (reader.Next(&entry)) {
    std::string_view pattern = entry.key;
    std::string_view value = entry.value;
    bool is_if = false;
    if (pattern == "endif") {
      if (!value.empty()) {
        log::Warning("%s, line %d: garbage after \"endif\", skipping this rule", name,
                     entry.line);
        continue;
      }
      if (open_ifs.empty()) {
        log::Warning("%s, line %d: ignoring ENDIF without matching IF", name, entry.line);
        continue;
      }
      map->rules_[open_ifs.back()].skip_to = static_cast<uint32_t>(map->rules_.size());
      open_ifs.pop_back();
      continue;
    }
    if (pattern == "if") {
      is_if = true;
      size_t space = value.find_first_of(" \t");
      if (space != std::string_view::npos) {
        log::Warning("%s, line %d: garbage after \"if %s\", skipping this rule", name,
                     entry.line, value.substr(0, space));
        continue;
      }
      pattern = value;
      value = {};
    } else if (value.empty()) {
      log::Warning("%s, line %d: no lookup result, skipping this rule", name, entry.line);
      continue;
    }
    Rule rule{};
    if (!pattern.empty() && pattern.front() == '!') {
      rule.negate = true;
      pattern.remove_prefix(1);
    }
    std::string_view address_text = pattern;
    std::string_view prefix_text;
    size_t slash = pattern.find('/');
    if (slash != std::string_view::npos) {
      address_text = pattern.substr(0, slash);
      prefix_text = pattern.substr(slash + 1);
    }
    if (!ParseIpAddress(address_text, rule.address, &rule.v6)) {
      log::Warning("%s, line %d: bad net/mask pattern: \"%s\", skipping this rule", name,
                   entry.line, pattern);
      continue;
    }
    int max_bits = rule.v6 ? 128 : 32;
    int bits = max_bits;
    if (slash != std::string_view::npos &&
        (!absl::SimpleAtoi(absl::string_view(prefix_text.data(), prefix_text.size()), &bits) ||
         bits < 0 || bits > max_bits || prefix_text.empty() || prefix_text[0] == '+' ||
         prefix_text[0] == '-')) {
      log::Warning("%s, line %d: bad net/mask pattern: \"%s\", skipping this rule", name,
                   entry.line, pattern);
      continue;
    }
    rule.prefix_bits = static_cast<uint8_t>(bits);
    // Postfix refuses a network whose host bits are set (a likely typo).
    bool host_bits = false;
    for (int bit = bits; bit < max_bits; ++bit) {
      if ((rule.address[bit / 8] >> (7 - bit % 8)) & 1) {
        host_bits = true;
        break;
      }
    }
    if (host_bits) {
      log::Warning("%s, line %d: non-null host address bits in \"%s\", perhaps you should use "
                   "\"%s/%d\" instead, skipping this rule",
                   name, entry.line, pattern, address_text, bits);
      continue;
    }
    if (is_if) {
      if (open_ifs.size() >= kNestingMax) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s, line %d: if blocks nested too deep", name, entry.line));
      }
      rule.is_if = true;
      open_ifs.push_back(static_cast<uint32_t>(map->rules_.size()));
    } else {
      rule.value_offset = static_cast<uint32_t>(map->values_.size());
      rule.value_bytes = static_cast<uint32_t>(value.size());
      map->values_.append(value);
    }
    map->rules_.push_back(rule);
  }
  if (!reader.status().ok()) {
    return reader.status();
  }
  for (uint32_t index : open_ifs) {
    log::Warning("%s: IF has no matching ENDIF", name);
    map->rules_[index].skip_to = static_cast<uint32_t>(map->rules_.size());
  }
  return map;
}

std::optional<std::string_view> CidrMap::Find(std::string_view key) const {
  uint8_t address[16];
  bool v6 = false;
  if (!ParseIpAddress(key, address, &v6)) {
    return std::nullopt;
  }
  size_t i = 0;
  while (i < rules_.size()) {
    const Rule& rule = rules_[i];
    bool match = Matches(rule, address, v6) != rule.negate;
    if (rule.is_if) {
      i = match ? i + 1 : rule.skip_to;
      continue;
    }
    if (match) {
      return std::string_view(values_).substr(rule.value_offset, rule.value_bytes);
    }
    ++i;
  }
  return std::nullopt;
}

}  // namespace moat::table
