// core/table/cidr_map.h
//
// A Postfix cidr_table(5): rules tried in file order, the first match wins. Used for
// `mynetworks = cidr:/etc/moat/mynetworks` style files and check_client_access.
//
//   192.168.1.1         OK        one address
//   192.168.0.0/16      REJECT    a network (host bits must be zero, as in Postfix)
//   [2001:db8::]/32     OK        IPv6, brackets optional
//   !10.0.0.0/8         DUNNO     negated (matches every address NOT in the network)
//   if 10.0.0.0/8                 a block: its rules are tried only when the address
//   10.1.0.0/16         OK        matches (`if !net` negates); blocks nest; `endif`
//   endif                         closes the block
//
// A key that is not an IPv4 or IPv6 address matches nothing. Bad rules are warned about
// with file and line and skipped, as Postfix does. Loaded on the control plane; Find() is
// const, lock-free and allocation-free. The file is untrusted text.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/table/map.h"

namespace moat::table {

class CidrMap final : public Map {
 public:
  static absl::StatusOr<std::unique_ptr<CidrMap>> Open(const std::string& path,
                                                       std::string spec);
  // Parses rules from `fd` (not closed); `name` is used in warnings.
  static absl::StatusOr<std::unique_ptr<CidrMap>> Read(int fd, const std::string& name,
                                                       std::string spec);

  std::optional<std::string_view> Find(std::string_view key) const override;
  bool IsPattern() const override { return true; }
  uint64_t size() const override { return rules_.size(); }

 private:
  struct Rule {
    uint8_t address[16];  // network, in network byte order (IPv4 uses the first 4 bytes)
    bool v6;
    bool negate;
    bool is_if;         // an `if` block header
    uint8_t prefix_bits;
    uint32_t skip_to;   // is_if: index of the first rule after the block's endif
    uint32_t value_offset;  // into values_
    uint32_t value_bytes;
  };
  explicit CidrMap(std::string spec) : Map(std::move(spec)) {}
  static bool Matches(const Rule& rule, const uint8_t* address, bool v6);

  std::vector<Rule> rules_;
  std::string values_;  // every rule's value, back to back
};

// Parses an IPv4 or IPv6 address (IPv6 optionally in brackets) into out[16]; *v6 says
// which. Returns false for anything else. No allocation.
bool ParseIpAddress(std::string_view text, uint8_t out[16], bool* v6);

}  // namespace moat::table
