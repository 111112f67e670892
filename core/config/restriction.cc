// core/config/restriction.cc: see restriction.h.
#include "core/config/restriction.h"

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace moat::config {
namespace {

absl::string_view AV(std::string_view s) { return {s.data(), s.size()}; }

enum class Support { kSupported, kNeverMatches };

struct Spec {
  std::string_view name;
  bool takes_table;
  Support support;
};

constexpr Spec kSupported[] = {
    {"permit", false, Support::kSupported},
    {"reject", false, Support::kSupported},
    {"defer", false, Support::kSupported},
    {"permit_mynetworks", false, Support::kSupported},
    {"permit_auth_destination", false, Support::kSupported},
    {"reject_unauth_destination", false, Support::kSupported},
    {"defer_unauth_destination", false, Support::kSupported},
    {"reject_unlisted_recipient", false, Support::kSupported},
    {"reject_unlisted_sender", false, Support::kSupported},
    {"reject_non_fqdn_sender", false, Support::kSupported},
    {"reject_non_fqdn_recipient", false, Support::kSupported},
    {"reject_non_fqdn_helo_hostname", false, Support::kSupported},
    {"reject_invalid_helo_hostname", false, Support::kSupported},
    {"reject_unauth_pipelining", false, Support::kSupported},
    {"permit_tls_clientcerts", false, Support::kSupported},
    {"permit_tls_all_clientcerts", false, Support::kSupported},
    {"check_client_access", true, Support::kSupported},
    {"check_helo_access", true, Support::kSupported},
    {"check_sender_access", true, Support::kSupported},
    {"check_recipient_access", true, Support::kSupported},
    {"permit_sasl_authenticated", false, Support::kNeverMatches},
};

struct Alias {
  std::string_view old_name;
  std::string_view name;
};
constexpr Alias kAliases[] = {
    {"reject_non_fqdn_hostname", "reject_non_fqdn_helo_hostname"},
    {"reject_invalid_hostname", "reject_invalid_helo_hostname"},
};

// Postfix restrictions that take one argument: skipped together with it when rejected, so one
// bad restriction gives one error.
constexpr std::string_view kTakesArgument[] = {
    "check_policy_service", "reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_sender",
    "reject_rhsbl_helo", "reject_rhsbl_recipient", "reject_rhsbl_reverse_client",
    "permit_dnswl_client", "permit_rhswl_client", "check_reverse_client_hostname_access",
    "check_client_a_access", "check_client_mx_access", "check_client_ns_access",
    "check_helo_a_access", "check_helo_mx_access", "check_helo_ns_access",
    "check_sender_a_access", "check_sender_mx_access", "check_sender_ns_access",
    "check_recipient_a_access", "check_recipient_mx_access", "check_recipient_ns_access",
    "check_reverse_client_hostname_a_access", "check_reverse_client_hostname_mx_access",
    "check_reverse_client_hostname_ns_access", "check_ccert_access", "check_sasl_access",
    "check_etrn_access", "reject_rbl", "check_address_map"};

const Spec* FindSpec(std::string_view name) {
  for (const Spec& spec : kSupported) {
    if (spec.name == name) {
      return &spec;
    }
  }
  return nullptr;
}

std::string_view Canonical(std::string_view name) {
  for (const Alias& alias : kAliases) {
    if (alias.old_name == name) {
      return alias.name;
    }
  }
  return name;
}

bool TakesArgument(std::string_view name) {
  for (std::string_view n : kTakesArgument) {
    if (n == name) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool IsSupportedRestriction(std::string_view name) { return FindSpec(Canonical(name)) != nullptr; }

std::vector<Restriction> ParseRestrictions(const std::vector<std::string>& items,
                                           std::string_view param, const std::string& file,
                                           int line, bool from_main_cf,
                                           Diagnostics& diagnostics) {
  std::string p(param);
  std::vector<Restriction> out;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string& item = items[i];
    std::string_view name = Canonical(item);
    const Spec* spec = FindSpec(name);
    if (spec == nullptr) {
      bool skip_argument = TakesArgument(item) && i + 1 < items.size();
      std::string why;
      if (absl::StartsWith(AV(item), "reject_unknown_") || absl::StartsWith(AV(item), "reject_rbl") ||
          absl::StartsWith(AV(item), "reject_rhsbl_")) {
        why = "is not implemented yet (it needs DNS lookups)";
      } else if (item == "check_policy_service") {
        why = "is not supported: moat has no policy service client; removing it would skip "
              "that policy";
      } else if (LooksLikeTableRef(item)) {
        why = "is not supported: name the lookup with check_*_access";
      } else {
        why = "is not a restriction moat implements";
      }
      diagnostics.Error(file, line, absl::StrFormat("%s: restriction \"%s\" %s", p, item, why));
      if (skip_argument) {
        ++i;
      }
      continue;
    }
    Restriction r;
    r.name = std::string(name);
    if (spec->takes_table) {
      if (i + 1 >= items.size()) {
        diagnostics.Error(file, line,
                          absl::StrFormat("%s: %s needs a table argument (type:/path)", p, item));
        continue;
      }
      r.arg = items[++i];
      absl::StatusOr<TableRef> table = ParseTableRef(r.arg);
      if (!table.ok()) {
        diagnostics.Error(file, line,
                          absl::StrFormat("%s: %s: %s", p, item, table.status().message()));
        continue;
      }
      r.table = *std::move(table);
    }
    if (spec->support == Support::kNeverMatches && from_main_cf) {
      diagnostics.Warning(file, line,
                          absl::StrFormat("%s: %s never matches: moat does not implement SASL "
                                          "AUTH",
                                          p, item));
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace moat::config
