// core/config/address_list.h
//
// A Postfix network address list (mynetworks, moat_proxy_protocol_networks): entries
// separated by commas and/or white space, each one of
//   1.2.3.4   1.2.3.0/24   [::1]   [2001:db8::]/32   2001:db8::/32
//   !pattern                a negated entry: a match on it means "not in the list"
//   /file/name              a file holding more entries (same syntax, '#' comments)
//   type:table              e.g. cidr:/etc/moat/networks, kept as a table reference
// Like Postfix, the first matching entry decides. A CIDR whose host bits are not zero
// (10.0.0.1/8) and a prefix length out of range (10.0.0.0/33) are errors, as are hostname
// patterns (moat does no DNS here). Contains() looks at the address entries only; the
// type:table entries are returned by tables() for the table area to consult. An IPv4-mapped
// IPv6 client (::ffff:1.2.3.4) matches both the IPv4 and the IPv6 entries that cover it.
// Parses untrusted input (operator files). Immutable after Parse(); safe to read from any
// thread.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/diagnostic.h"
#include "core/config/values.h"

namespace moat::config {

inline constexpr int kIncludeDepthMax = 8;

class AddressList {
 public:
  AddressList() = default;

  // Parses the (already expanded) list `entries` of the parameter `name`, written at
  // file:line. Problems, including those inside /file/name includes (with that file's name
  // and line), go to `diagnostics`; bad entries are left out.
  static AddressList Parse(const std::vector<std::string>& entries, std::string_view name,
                           const std::string& file, int line, Diagnostics& diagnostics);

  bool Contains(const sockaddr_storage& address) const;
  // `address` is IPv4 or IPv6 text (no brackets); false when it is not an address.
  bool ContainsText(std::string_view address) const;
  // 4 bytes (IPv4) or 16 bytes (IPv6), network order.
  bool ContainsBytes(const uint8_t* bytes, size_t size) const;

  const std::vector<TableRef>& tables() const { return tables_; }
  // The files read through /file/name entries (for `moat check` and reload watching).
  const std::vector<std::string>& files() const { return files_; }
  size_t rule_count() const { return rules_.size(); }

 private:
  struct Rule {
    bool negate = false;
    bool v6 = false;
    std::array<uint8_t, 16> bytes{};  // IPv4 in the first 4
    int prefix_len = 0;
  };

  // Matches bytes of one family; returns 1 (in), 0 (negated match), -1 (no rule matched).
  int Match(const uint8_t* bytes, bool v6) const;

  std::vector<Rule> rules_;
  std::vector<TableRef> tables_;
  std::vector<std::string> files_;
};

}  // namespace moat::config
