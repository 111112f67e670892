// core/config/registry.h
//
// The parameter registry: every main.cf parameter moat implements, with its Postfix name, its
// type and its default (Postfix 3.7's, as printed by `postconf -d`, evaluated at
// compatibility_level 3.6; where moat must differ the entry's `note` says why), plus the names
// of all Postfix 3.7 parameters (postfix_parameters.inc) and the rules for Postfix features
// whose silent omission would weaken security (errors rather than warnings). Static data;
// thread-safe. See README.md for the full table.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace moat::config {

enum class ParamType {
  kString,           // free text, expanded (`allowed` may restrict it to a set of words)
  kBool,             // yes | no
  kInteger,          // decimal, >= min
  kTime,             // number + optional unit s|m|h|d|w (bare number: `time_unit`)
  kSize,             // bytes
  kList,             // words separated by commas and/or white space
  kDomainList,       // a Postfix match list: words, /file/name (read in place), type:table
  kTableList,        // type:table references only
  kRestrictionList,  // smtpd_*_restrictions, parsed into Restriction values
  kAddressList,      // networks: CIDR, [ipv6]/len, /file/name, type:table (AddressList)
  kHostPortList,     // address:port list (moat_listen)
};

struct ParamSpec {
  std::string_view name;
  ParamType type;
  std::string_view default_value;
  char time_unit = 's';             // kTime: unit of a bare number
  int64_t min = 0;                  // kInteger, kSize: smallest allowed value
  std::string_view allowed = "";    // kString/kList: the allowed words, '|'-separated ("" = any)
  std::string_view note = "";       // why the default differs from Postfix's, if it does
};

// Every parameter moat implements, sorted by name.
std::span<const ParamSpec> Registry();
// nullptr when `name` is not a moat parameter.
const ParamSpec* FindParam(std::string_view name);
// True when Postfix 3.7 knows `name` (whether or not moat implements it).
bool IsPostfixParameter(std::string_view name);
std::string_view TypeName(ParamType type);

// A Postfix parameter that moat does not implement and whose value, if ignored, would weaken
// security: setting it (to yes, or to any non-empty value) is an error.
struct SecurityRule {
  enum class When { kIfYes, kIfNonEmpty };
  std::string_view name;
  When when;
  std::string_view reason;
};
std::span<const SecurityRule> SecurityRules();
const SecurityRule* FindSecurityRule(std::string_view name);

// Parameters whose default is computed at load time (like Postfix): myhostname (the FQDN from
// gethostname(); ".localdomain" appended to a bare name) and mydomain ($myhostname minus its
// first label).
std::string ComputedDefault(std::string_view name);

}  // namespace moat::config
