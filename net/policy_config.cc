// net/policy_config.cc
//
// config::Config -> PolicySettings. See policy_config.h.
#include "net/policy_config.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/config/registry.h"
#include "core/log/log.h"
#include "net/policy_lookup.h"

namespace moat::net {
namespace {

struct InterfaceAddress {
  std::string address;  // text, no brackets
  std::string network;  // "a.d.d.r/len" or "[v6::]/len" of the interface (subnet style)
  std::string classful; // the class A/B/C network of an IPv4 address (class style)
};

std::string NetworkText(bool v6, const uint8_t* bytes, int prefix_length) {
  uint8_t masked[16] = {};
  int size = v6 ? 16 : 4;
  for (int i = 0; i < size; ++i) {
    int bits = std::min(8, std::max(0, prefix_length - i * 8));
    masked[i] = static_cast<uint8_t>(bytes[i] & (bits == 0 ? 0 : 0xff << (8 - bits)));
  }
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, masked, text, sizeof(text));
  return v6 ? absl::StrFormat("[%s]/%d", text, prefix_length)
            : absl::StrFormat("%s/%d", text, prefix_length);
}

int PrefixLength(const uint8_t* mask, int size) {
  int length = 0;
  for (int i = 0; i < size; ++i) {
    for (int bit = 7; bit >= 0; --bit) {
      if ((mask[i] >> bit) & 1) {
        ++length;
      } else {
        return length;
      }
    }
  }
  return length;
}

std::vector<InterfaceAddress> Interfaces() {
  std::vector<InterfaceAddress> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    log::Warning("getifaddrs: cannot list network interfaces; address literals of this "
                 "host are not local");
    return out;
  }
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_netmask == nullptr) {
      continue;
    }
    int family = i->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) {
      continue;
    }
    bool v6 = family == AF_INET6;
    const uint8_t* bytes =
        v6 ? reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr.s6_addr
           : reinterpret_cast<const uint8_t*>(
                 &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr);
    const uint8_t* mask =
        v6 ? reinterpret_cast<const sockaddr_in6*>(i->ifa_netmask)->sin6_addr.s6_addr
           : reinterpret_cast<const uint8_t*>(
                 &reinterpret_cast<const sockaddr_in*>(i->ifa_netmask)->sin_addr);
    if (v6 && IN6_IS_ADDR_LINKLOCAL(reinterpret_cast<const in6_addr*>(bytes))) {
      continue;  // scoped addresses cannot be written as address literals
    }
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(family, bytes, text, sizeof(text));
    InterfaceAddress a;
    a.address = text;
    a.network = NetworkText(v6, bytes, PrefixLength(mask, v6 ? 16 : 4));
    if (v6) {
      a.classful = a.network;
    } else {
      int classful = bytes[0] < 128 ? 8 : bytes[0] < 192 ? 16 : 24;
      a.classful = NetworkText(false, bytes, classful);
    }
    out.push_back(std::move(a));
  }
  freeifaddrs(list);
  return out;
}

std::string JoinAddresses(const std::vector<std::string>& addresses) {
  std::string out;
  for (const std::string& a : addresses) {
    if (!out.empty()) {
      out += " ";
    }
    out += a;
  }
  return out;
}

}  // namespace

absl::StatusOr<PolicySettings> BuildPolicySettings(const config::Config& config,
                                                   TableOpener open) {
  // One opened table per spec, whichever parameters name it.
  auto cache = std::make_shared<std::map<std::string, TablePtr>>();
  TableOpener base = open ? std::move(open) : TableOpener(OpenTableWithCoreTable);
  TableOpener cached = [cache, base](std::string_view spec) -> absl::StatusOr<TablePtr> {
    auto it = cache->find(std::string(spec));
    if (it != cache->end()) {
      return it->second;
    }
    absl::StatusOr<TablePtr> table = base(spec);
    if (table.ok()) {
      cache->emplace(std::string(spec), *table);
    }
    return table;
  };

  PolicySettings settings;
  std::vector<InterfaceAddress> interfaces;
  bool interfaces_listed = false;
  auto list_interfaces = [&]() -> const std::vector<InterfaceAddress>& {
    if (!interfaces_listed) {
      interfaces = Interfaces();
      interfaces_listed = true;
    }
    return interfaces;
  };

  for (std::string_view name : PolicyParameterNames()) {
    if (config::FindParam(name) == nullptr) {
      continue;  // not in moat's registry: Postfix's default (PolicySettings) applies
    }
    if (name == "smtpd_client_event_limit_exceptions" && !config.IsSet(name)) {
      continue;  // Postfix's default, $mynetworks: the derived list (EventLimitExempt)
    }
    std::string value = config.String(name);
    if (name == "inet_interfaces") {
      std::string lowered = LowerCase(StripWhitespace(value));
      std::vector<std::string> own;
      if (lowered == "all") {
        for (const InterfaceAddress& a : list_interfaces()) {
          own.push_back(a.address);
        }
      } else if (lowered == "loopback-only") {
        own = {"127.0.0.1", "::1"};
      }
      if (!own.empty()) {
        value = JoinAddresses(own);
      }
    }
    if (name == "mynetworks" && !config.IsSet("mynetworks") && config.IsSet("mynetworks_style")) {
      std::string style = LowerCase(StripWhitespace(config.String("mynetworks_style")));
      std::vector<std::string> networks;
      for (const InterfaceAddress& a : list_interfaces()) {
        if (style == "subnet") {
          networks.push_back(a.network);
        } else if (style == "class") {
          networks.push_back(a.classful);
        } else {
          networks.push_back(a.address.find(':') != std::string::npos
                                 ? absl::StrFormat("[%s]/128", a.address)
                                 : absl::StrFormat("%s/32", a.address));
        }
      }
      if (!networks.empty()) {
        value = JoinAddresses(networks);
      }
    }
    absl::Status status = ApplyPolicyParameter(&settings, name, value, cached);
    if (!status.ok()) {
      int line = config.Line(name);
      if (line > 0) {
        return absl::Status(status.code(), absl::StrFormat("%s:%d: %s", config.Source(), line,
                                                           status.message()));
      }
      return status;
    }
  }
  return settings;
}

}  // namespace moat::net
