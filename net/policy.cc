// net/policy.cc
//
// The restriction engine and resolver. See policy.h. The structure follows Postfix's
// smtpd_check.c so that behaviour can be compared function by function: RunList() is
// generic_checks(), TableResult() is check_table_result(), CheckRecipientMaps() is
// check_rcpt_maps(), Reject() is smtpd_check_reject().
#include "net/policy.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "core/log/log.h"
#include "net/policy_lookup.h"

namespace moat::net {
namespace {

// Reply classes: what is being rejected ("<x>: Recipient address rejected: ...").
enum ReplyClass : int {
  kClientClass,
  kHeloClass,
  kSenderClass,
  kRecipientClass,
  kDataClass,
  kEndOfDataClass,
};

constexpr std::string_view kReplyClassNames[] = {
    "Client host", "Helo command", "Sender address", "Recipient address", "Data command",
    "End-of-data",
};

constexpr int kRecursionMax = 100;  // Postfix: access table RHS nesting
constexpr size_t kReplyBytesMax = 510;

enum class Kind {
  kPermit,
  kReject,
  kDefer,
  kPermitMynetworks,
  kPermitInetInterfaces,
  kRejectUnauthDestination,
  kDeferUnauthDestination,
  kPermitAuthDestination,
  kRejectUnlistedRecipient,
  kRejectUnlistedSender,
  kRejectNonFqdnSender,
  kRejectNonFqdnRecipient,
  kRejectNonFqdnHelo,
  kRejectInvalidHelo,
  kRejectUnauthPipelining,
  kPermitSaslAuthenticated,
  kPermitTlsClientcerts,
  kPermitTlsAllClientcerts,
  kCheckClientAccess,
  kCheckHeloAccess,
  kCheckSenderAccess,
  kCheckRecipientAccess,
};

struct KindName {
  std::string_view name;
  Kind kind;
};

// Every restriction name moat implements (aliases included, as Postfix accepts them).
constexpr KindName kKinds[] = {
    {"permit", Kind::kPermit},
    {"reject", Kind::kReject},
    {"defer", Kind::kDefer},
    {"permit_mynetworks", Kind::kPermitMynetworks},
    {"permit_inet_interfaces", Kind::kPermitInetInterfaces},
    {"reject_unauth_destination", Kind::kRejectUnauthDestination},
    {"defer_unauth_destination", Kind::kDeferUnauthDestination},
    {"permit_auth_destination", Kind::kPermitAuthDestination},
    {"reject_unlisted_recipient", Kind::kRejectUnlistedRecipient},
    {"check_recipient_maps", Kind::kRejectUnlistedRecipient},
    {"reject_unlisted_sender", Kind::kRejectUnlistedSender},
    {"reject_non_fqdn_sender", Kind::kRejectNonFqdnSender},
    {"reject_non_fqdn_recipient", Kind::kRejectNonFqdnRecipient},
    {"reject_non_fqdn_helo_hostname", Kind::kRejectNonFqdnHelo},
    {"reject_non_fqdn_hostname", Kind::kRejectNonFqdnHelo},
    {"reject_invalid_helo_hostname", Kind::kRejectInvalidHelo},
    {"reject_invalid_hostname", Kind::kRejectInvalidHelo},
    {"reject_unauth_pipelining", Kind::kRejectUnauthPipelining},
    {"permit_sasl_authenticated", Kind::kPermitSaslAuthenticated},
    {"permit_tls_clientcerts", Kind::kPermitTlsClientcerts},
    {"permit_tls_all_clientcerts", Kind::kPermitTlsAllClientcerts},
    {"check_client_access", Kind::kCheckClientAccess},
    {"check_helo_access", Kind::kCheckHeloAccess},
    {"check_sender_access", Kind::kCheckSenderAccess},
    {"check_recipient_access", Kind::kCheckRecipientAccess},
};

// Postfix restrictions moat does not implement (yet): named as such in the error.
constexpr std::string_view kNotImplemented[] = {
    "reject_unknown_client_hostname", "reject_unknown_client", "reject_unknown_reverse_client_hostname",
    "reject_unknown_helo_hostname", "reject_unknown_hostname", "reject_unknown_sender_domain",
    "reject_unknown_recipient_domain", "reject_unknown_address", "reject_unverified_sender",
    "reject_unverified_recipient", "reject_rbl_client", "reject_rbl", "reject_rhsbl_client",
    "reject_rhsbl_reverse_client", "reject_rhsbl_helo", "reject_rhsbl_sender",
    "reject_rhsbl_recipient", "permit_dnswl_client", "permit_rhswl_client", "reject_maps_rbl",
    "check_policy_service", "check_reverse_client_access", "check_ccert_access",
    "check_sasl_access", "check_etrn_access", "check_client_ns_access", "check_client_mx_access",
    "check_client_a_access", "check_reverse_client_ns_access", "check_reverse_client_mx_access",
    "check_reverse_client_a_access", "check_helo_ns_access", "check_helo_mx_access",
    "check_helo_a_access", "check_sender_ns_access", "check_sender_mx_access",
    "check_sender_a_access", "check_recipient_ns_access", "check_recipient_mx_access",
    "check_recipient_a_access", "permit_mx_backup", "reject_multi_recipient_bounce",
    "reject_plaintext_session", "reject_sender_login_mismatch",
    "reject_authenticated_sender_login_mismatch", "reject_known_sender_login_mismatch",
    "reject_unauthenticated_sender_login_mismatch", "reject_unknown_forward_client_hostname",
    "defer_if_permit", "defer_if_reject", "warn_if_reject", "sleep", "check_relay_domains",
    "permit_naked_ip_address",
};

std::optional<Kind> FindKind(std::string_view name) {
  for (const KindName& k : kKinds) {
    if (EqualsIgnoreCase(k.name, name)) {
      return k.kind;
    }
  }
  return std::nullopt;
}

bool IsAccessKind(Kind kind) {
  return kind == Kind::kCheckClientAccess || kind == Kind::kCheckHeloAccess ||
         kind == Kind::kCheckSenderAccess || kind == Kind::kCheckRecipientAccess;
}

// Postfix's dsn_valid(): "d.ddd.ddd" with the first digit 2, 4 or 5, followed by the end
// or white space. Returns its length, 0 when absent.
size_t DsnLength(std::string_view text) {
  if (text.size() < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') ||
      text[1] != '.') {
    return 0;
  }
  size_t i = 2;
  size_t digits = 0;
  while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
    ++i;
    ++digits;
  }
  if (digits < 1 || digits > 3 || i >= text.size() || text[i] != '.') {
    return 0;
  }
  ++i;
  digits = 0;
  while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
    ++i;
    ++digits;
  }
  if (digits < 1 || digits > 3 ||
      (i < text.size() && !absl::ascii_isspace(static_cast<unsigned char>(text[i])))) {
    return 0;
  }
  return i;
}

// Postfix's dsn_split(): an optional leading enhanced status code, then free text.
struct DsnText {
  std::string dsn;
  std::string_view text;
};

DsnText SplitDsn(std::string_view default_dsn, std::string_view text) {
  text = StripWhitespace(text);
  DsnText out;
  size_t length = DsnLength(text);
  if (length > 0) {
    out.dsn = std::string(text.substr(0, length));
    text.remove_prefix(length);
  } else {
    out.dsn = std::string(default_dsn);
  }
  out.text = StripWhitespace(text);
  return out;
}

// Postfix's smtpd_dsn_fix(): an address-specific status (X.1.Y) is made to fit what is
// being rejected (sender, recipient, or neither).
std::string FixDsn(std::string_view status, int reply_class) {
  if (status.size() < 5 || !absl::ascii_isdigit(static_cast<unsigned char>(status[0])) ||
      status.substr(1, 3) != ".1.") {
    return std::string(status);
  }
  struct Map {
    std::string_view micro;
    std::string_view sender;
    std::string_view recipient;
  };
  static constexpr Map kMap[] = {
      {"1", "4.1.7", "4.1.1"}, {"2", "4.1.8", "4.1.2"}, {"3", "4.1.7", "4.1.3"},
      {"4", "4.1.7", "4.1.4"}, {"5", "4.1.0", "4.1.5"}, {"6", "4.1.7", "4.1.6"},
      {"7", "4.1.7", "4.1.3"}, {"8", "4.1.8", "4.1.2"},
  };
  std::string_view micro = status.substr(4);
  std::string_view sender = "4.1.0";
  std::string_view recipient = "4.1.0";
  for (const Map& m : kMap) {
    if (m.micro == micro) {
      sender = m.sender;
      recipient = m.recipient;
      break;
    }
  }
  std::string result;
  if (reply_class == kSenderClass) {
    result = std::string(sender);
  } else if (reply_class == kRecipientClass) {
    result = std::string(recipient);
  } else {
    result = "4.0.0";
  }
  result[0] = status[0];
  return result;
}

// Postfix's dup_if_truncate(): one trailing dot removed, but not from "..".
std::string_view TruncateDot(std::string_view name) {
  if (name.size() > 1 && name.back() == '.' && name[name.size() - 2] != '.') {
    name.remove_suffix(1);
  }
  return name;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

std::vector<std::string> SplitAddresses(std::string_view value) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < value.size()) {
    while (i < value.size() && (value[i] == ',' || absl::ascii_isspace(
                                                       static_cast<unsigned char>(value[i])))) {
      ++i;
    }
    size_t start = i;
    while (i < value.size() && value[i] != ',' &&
           !absl::ascii_isspace(static_cast<unsigned char>(value[i]))) {
      ++i;
    }
    std::string_view word = value.substr(start, i - start);
    if (word.size() >= 2 && word.front() == '<' && word.back() == '>') {
      word = word.substr(1, word.size() - 2);
    }
    if (!word.empty()) {
      out.emplace_back(word);
    }
  }
  return out;
}

}  // namespace

struct PolicyEngine::CompiledRestriction {
  Kind kind;
  std::string name;
  TableList table;  // check_*_access: the one table it names
};

// The state of one Check() call (Postfix's SMTPD_STATE, the parts restrictions use).
struct PolicyEngine::Evaluation {
  const PolicyRequest& request;
  bool has_helo = false;
  bool has_sender = false;
  bool has_recipient = false;
  std::string client_namaddr;  // "name[ip]", filled on first use (ClientNamaddr)
  // The recipient's resolution, computed once per Check (several restrictions need it).
  std::optional<AddressResolution> recipient_resolution;
  AddressResolution scratch_resolution;
  int recursion = 0;
  bool recipient_maps_checked = false;
  bool sender_maps_checked = false;
  PolicyDecision reply;  // set with Status::kReject

  explicit Evaluation(const PolicyRequest& r) : request(r) {}
};

namespace {

const std::string& ClientNamaddr(PolicyEngine::Evaluation& eval);

// smtpd_check_reject(): validates and normalizes the reply, then stores it.
void SetReject(PolicyDecision* out, int code, std::string_view dsn, std::string text) {
  if (code < 400 || code > 599 || DsnLength(dsn) != dsn.size()) {
    log::Warning("SMTP reply code or DSN configuration error: %d %s %s", code, dsn, text);
    code = 450;
    dsn = "4.7.1";
    text = "Service unavailable";
  }
  std::string enhanced(dsn);
  enhanced[0] = static_cast<char>('0' + code / 100);  // the SMTP code's class wins
  size_t room = kReplyBytesMax - 4 - enhanced.size() - 1;
  if (text.size() > room) {
    text.resize(room);
  }
  for (char& c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      c = ' ';
    }
  }
  out->action = code >= 500 ? PolicyAction::kReject : PolicyAction::kDefer;
  out->code = code;
  out->enhanced = std::move(enhanced);
  out->text = std::move(text);
}

}  // namespace

namespace {

const std::string& ClientNamaddr(PolicyEngine::Evaluation& eval) {
  if (eval.client_namaddr.empty()) {
    std::string_view name = eval.request.client_name;
    eval.client_namaddr = absl::StrFormat(
        "%s[%s]", name.empty() ? std::string_view("unknown") : name, eval.request.client_ip);
  }
  return eval.client_namaddr;
}

}  // namespace

const AddressResolution& PolicyEngine::ResolveForCheck(Evaluation& eval,
                                                       std::string_view address) const {
  const PolicyRequest& q = eval.request;
  if (address.data() == q.recipient.data() && address.size() == q.recipient.size()) {
    if (!eval.recipient_resolution.has_value()) {
      eval.recipient_resolution = ResolveAddress(address, q.server_ip);
    }
    return *eval.recipient_resolution;
  }
  eval.scratch_resolution = ResolveAddress(address, q.server_ip);
  return eval.scratch_resolution;
}

PolicyEngine::PolicyEngine(PolicySettings settings) : settings_(std::move(settings)) {}
bool PolicyEngine::EventLimitExempt(std::string_view client_ip) const {
  if (settings_.event_limit_exceptions_set) {
    return MatchNetworkList(settings_.event_limit_exceptions, "", client_ip, false);
  }
  return MatchNetworkList(settings_.mynetworks, "", client_ip, settings_.mynetworks_parent_match);
}

PolicyEngine::~PolicyEngine() = default;

absl::StatusOr<std::unique_ptr<PolicyEngine>> PolicyEngine::Create(PolicySettings settings) {
  std::unique_ptr<PolicyEngine> engine(new PolicyEngine(std::move(settings)));
  const PolicySettings& s = engine->settings_;
  struct ListSpec {
    std::string_view parameter;
    const PolicyRestrictionList* source;
    std::vector<CompiledRestriction>* target;
    std::optional<Kind> default_access;  // what a bare type:table entry means here
  };
  const ListSpec lists[] = {
      {"smtpd_client_restrictions", &s.client_restrictions, &engine->client_,
       Kind::kCheckClientAccess},
      {"smtpd_helo_restrictions", &s.helo_restrictions, &engine->helo_, Kind::kCheckHeloAccess},
      {"smtpd_sender_restrictions", &s.sender_restrictions, &engine->sender_,
       Kind::kCheckSenderAccess},
      {"smtpd_relay_restrictions", &s.relay_restrictions, &engine->relay_,
       Kind::kCheckRecipientAccess},
      {"smtpd_recipient_restrictions", &s.recipient_restrictions, &engine->recipient_,
       Kind::kCheckRecipientAccess},
      {"smtpd_data_restrictions", &s.data_restrictions, &engine->data_, std::nullopt},
      {"smtpd_end_of_data_restrictions", &s.end_of_data_restrictions, &engine->end_of_data_,
       std::nullopt},
  };
  for (const ListSpec& spec : lists) {
    for (const PolicyRestriction& r : *spec.source) {
      CompiledRestriction c;
      c.name = r.name;
      std::string_view table_spec;
      if (std::optional<Kind> kind = FindKind(r.name)) {
        c.kind = *kind;
        if (IsAccessKind(*kind)) {
          table_spec = r.arg;
        }
      } else if (r.name.find(':') != std::string::npos) {
        if (!spec.default_access.has_value()) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "%s: specify one of (check_client_access, check_helo_access, "
              "check_sender_access, check_recipient_access) before restriction \"%s\"",
              spec.parameter, r.name));
        }
        c.kind = *spec.default_access;
        table_spec = r.name;
      } else if (std::find(std::begin(kNotImplemented), std::end(kNotImplemented),
                           LowerCase(r.name)) != std::end(kNotImplemented)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: restriction \"%s\" is not implemented by moat", spec.parameter, r.name));
      } else {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: unknown restriction \"%s\"", spec.parameter, r.name));
      }
      if (IsAccessKind(c.kind)) {
        auto it = s.access_tables.find(std::string(table_spec));
        if (table_spec.empty() || it == s.access_tables.end() || it->second == nullptr) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "%s: restriction %s: table \"%s\" is not open", spec.parameter, r.name,
              table_spec));
        }
        c.table = TableList({it->second});
      }
      spec.target->push_back(std::move(c));
    }
  }
  // Postfix refuses to run as an open relay by accident: one of the two RCPT lists must
  // have a working reject_unauth_destination (or defer_unauth_destination, reject,
  // defer) before any unconditional permit.
  auto has_required = [](const std::vector<CompiledRestriction>& list) {
    for (const CompiledRestriction& r : list) {
      if (r.kind == Kind::kPermit) {
        return false;
      }
      if (r.kind == Kind::kRejectUnauthDestination ||
          r.kind == Kind::kDeferUnauthDestination || r.kind == Kind::kReject ||
          r.kind == Kind::kDefer) {
        return true;
      }
    }
    return false;
  };
  if (!has_required(engine->relay_) && !has_required(engine->recipient_)) {
    return absl::InvalidArgumentError(
        "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at "
        "least one working instance of: reject_unauth_destination, "
        "defer_unauth_destination, reject or defer");
  }
  if (s.virtual_alias_recursion_limit < 1 || s.virtual_alias_expansion_limit < 1) {
    return absl::InvalidArgumentError("virtual_alias_*_limit must be at least 1");
  }
  return engine;
}

// ----------------------------------------------------------------------------------------
// Address resolution (trivial-rewrite).

std::string PolicyEngine::Canonicalize(std::string_view address) const {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos || at + 1 == address.size()) {
    std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
    return absl::StrFormat("%s@%s", local, settings_.myorigin);
  }
  std::string_view domain = address.substr(at + 1);
  if (domain.size() > 1 && domain.back() == '.' && domain[domain.size() - 2] != '.') {
    domain.remove_suffix(1);
  }
  return absl::StrFormat("%s@%s", address.substr(0, at), LowerCase(domain));
}

bool PolicyEngine::IsOwnAddressLiteral(std::string_view domain,
                                       std::string_view server_ip) const {
  if (domain.size() < 3 || domain.front() != '[' || domain.back() != ']') {
    return false;
  }
  std::optional<std::string_view> bare = ValidMailhostAddress(domain.substr(1, domain.size() - 2));
  if (!bare.has_value()) {
    return false;
  }
  bool v6 = false;
  uint8_t bytes[16];
  if (!ParseIpAddress(*bare, &v6, bytes)) {
    return false;
  }
  auto same = [&](std::string_view other) {
    bool other_v6 = false;
    uint8_t other_bytes[16];
    return ParseIpAddress(other, &other_v6, other_bytes) && other_v6 == v6 &&
           memcmp(bytes, other_bytes, v6 ? 16 : 4) == 0;
  };
  if (!server_ip.empty() && same(server_ip)) {
    return true;
  }
  return std::any_of(settings_.inet_addresses.begin(), settings_.inet_addresses.end(), same) ||
         std::any_of(settings_.proxy_addresses.begin(), settings_.proxy_addresses.end(), same);
}

namespace {

// string_list_match(): exact names (no parent magic) and exact table keys.
bool MatchStringList(const DomainList& list, std::string_view name) {
  for (const DomainList::Entry& e : list.entries) {
    bool match = e.table != nullptr ? table::FindKey(e.tables, name).has_value()
                                    : e.pattern == name;
    if (match) {
      return !e.negate;
    }
  }
  return false;
}

}  // namespace

bool PolicyEngine::IsLocalDomain(std::string_view domain, std::string_view server_ip) const {
  std::string name = LowerCase(TruncateDot(domain));
  return MatchStringList(settings_.mydestination, name) ||
         IsOwnAddressLiteral(name, server_ip);
}

bool PolicyEngine::IsVirtualAliasDomain(std::string_view domain) const {
  if (settings_.virtual_alias_domains_set) {
    return MatchStringList(settings_.virtual_alias_domains, domain);
  }
  // virtual_alias_domains = $virtual_alias_maps: domains that are keys of those tables.
  return table::FindKey(settings_.virtual_alias_maps, domain).has_value();
}

bool PolicyEngine::IsLocalForLookup(std::string_view address,
                                    std::string_view server_ip) const {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) {
    return true;
  }
  std::string_view domain = address.substr(at + 1);
  return EqualsIgnoreCase(domain, settings_.myorigin) || IsLocalDomain(domain, server_ip);
}

AddressResolution PolicyEngine::ResolveAddress(std::string_view address,
                                               std::string_view server_ip) const {
  AddressResolution r;
  r.address = Canonicalize(address);
  size_t at = r.address.rfind('@');
  std::string_view domain = std::string_view(r.address).substr(at + 1);
  // Routing operators in the local part: the first of @ ! % is not the domain's '@'.
  r.routed = r.address.find_first_of("@!%") != at;
  bool literal = domain.size() >= 2 && domain.front() == '[' && domain.back() == ']';
  if (literal ? !ValidMailhostAddress(domain.substr(1, domain.size() - 2)).has_value()
              : !ValidHostname(domain)) {
    r.bad_syntax = true;
    r.address_class = AddressClass::kDefault;
    r.transport = "error";
    r.nexthop = "5.1.3 Bad address syntax";
    return r;
  }
  std::string channel;
  if (IsLocalDomain(domain, server_ip)) {
    r.address_class = AddressClass::kLocal;
    channel = settings_.local_transport.empty() ? "local:" + settings_.myhostname
                                                : settings_.local_transport;
    r.nexthop = std::string(domain);
  } else if (IsVirtualAliasDomain(domain)) {
    r.address_class = AddressClass::kVirtualAlias;
    r.transport = "error";
    r.nexthop = settings_.show_user_unknown_table_name
                    ? "5.1.1 User unknown in virtual alias table"
                    : "5.1.1 User unknown";
    return r;  // transport_maps do not override this class
  } else {
    bool relay = MatchDomainList(settings_.relay_domains, domain,
                                 settings_.relay_domains_parent_match);
    r.address_class = relay ? AddressClass::kRelay : AddressClass::kDefault;
    channel = relay ? settings_.relay_transport : settings_.default_transport;
    r.nexthop = settings_.relayhost.empty() ? std::string(domain) : settings_.relayhost;
  }
  // "transport:nexthop" in main.cf overrides the nexthop.
  size_t colon = channel.find(':');
  if (colon != std::string::npos) {
    if (colon + 1 < channel.size()) {
      r.nexthop = channel.substr(colon + 1);
    }
    channel.resize(colon);
  }
  r.transport = channel;
  // transport_maps: the address, the domain and its parents, then "*".
  auto update = [&](std::string_view value) {
    size_t c = value.find(':');
    std::string_view new_channel = value.substr(0, c);
    std::string_view new_nexthop = c == std::string_view::npos ? "" : value.substr(c + 1);
    if (new_channel.empty()) {
      if (!new_nexthop.empty()) {
        r.nexthop = std::string(new_nexthop);
      }
      return;
    }
    r.transport = std::string(new_channel);
    if (!new_nexthop.empty()) {
      r.nexthop = std::string(new_nexthop);
    } else if (r.transport != "error" && r.transport != "retry") {
      r.nexthop = std::string(domain);
    } else {
      r.nexthop = "Address is undeliverable";
    }
  };
  if (!settings_.transport_maps.empty()) {
    if (std::optional<table::Match> m =
            table::FindTransport(settings_.transport_maps, r.address,
                                 settings_.recipient_delimiter,
                                 settings_.transport_maps_parent_match)) {
      update(m->value);
    }
  }
  if (r.transport.empty()) {
    // Postfix: "null transport is not allowed"; deliver nowhere rather than guess.
    r.transport = "retry";
    r.nexthop = "4.3.5 null transport is not allowed";
  }
  return r;
}

// ----------------------------------------------------------------------------------------
// Restrictions.

PolicyEngine::Status PolicyEngine::RunList(Evaluation& eval,
                                           const std::vector<CompiledRestriction>& list,
                                           std::string_view reply_name,
                                           int reply_class) const {
  ++eval.recursion;
  Status status = Status::kDunno;
  for (const CompiledRestriction& r : list) {
    status = RunOne(eval, r, reply_name, reply_class);
    if (status != Status::kDunno) {
      break;
    }
  }
  --eval.recursion;
  return status;
}

PolicyEngine::Status PolicyEngine::RunOne(Evaluation& eval, const CompiledRestriction& r,
                                          std::string_view reply_name,
                                          int reply_class) const {
  const PolicyRequest& q = eval.request;
  std::string_view class_name = kReplyClassNames[reply_class];
  auto reject = [&](int code, std::string_view dsn, std::string text) {
    SetReject(&eval.reply, code, dsn, std::move(text));
    return Status::kReject;
  };
  switch (r.kind) {
    case Kind::kPermit:
      return Status::kOk;
    case Kind::kReject:
      return reject(settings_.reject_code, "5.7.1",
                    absl::StrFormat("<%s>: %s rejected: Access denied", reply_name,
                                    class_name));
    case Kind::kDefer:
      return reject(settings_.defer_code, "4.3.2",
                    absl::StrFormat("<%s>: %s rejected: Try again later", reply_name,
                                    class_name));
    case Kind::kPermitMynetworks:
      return MatchNetworkList(settings_.mynetworks, q.client_name, q.client_ip,
                              settings_.mynetworks_parent_match)
                 ? Status::kOk
                 : Status::kDunno;
    case Kind::kPermitInetInterfaces:
      return IsOwnAddressLiteral(absl::StrFormat("[%s%s]",
                                                 q.client_ip.find(':') != std::string_view::npos
                                                     ? "IPv6:"
                                                     : "",
                                                 q.client_ip),
                                 "")
                 ? Status::kOk
                 : Status::kDunno;
    case Kind::kRejectUnauthDestination:
      if (!eval.has_recipient) {
        return Status::kDunno;
      }
      return RejectUnauthDestination(eval, settings_.relay_domains_reject_code, "5.7.1");
    case Kind::kDeferUnauthDestination:
      if (!eval.has_recipient) {
        return Status::kDunno;
      }
      return RejectUnauthDestination(eval, settings_.relay_domains_reject_code - 100,
                                     "4.7.1");
    case Kind::kPermitAuthDestination:
      return eval.has_recipient && PermitAuthDestination(eval) ? Status::kOk
                                                               : Status::kDunno;
    case Kind::kRejectUnlistedRecipient:
      if (!eval.has_recipient || q.recipient.empty() || eval.recipient_maps_checked) {
        return Status::kDunno;
      }
      eval.recipient_maps_checked = true;
      return CheckRecipientMaps(eval, q.recipient, kRecipientClass);
    case Kind::kRejectUnlistedSender:
      if (!eval.has_sender || q.sender.empty() || eval.sender_maps_checked) {
        return Status::kDunno;
      }
      eval.sender_maps_checked = true;
      return CheckRecipientMaps(eval, q.sender, kSenderClass);
    case Kind::kRejectNonFqdnSender:
    case Kind::kRejectNonFqdnRecipient: {
      bool sender = r.kind == Kind::kRejectNonFqdnSender;
      if (sender ? (!eval.has_sender || q.sender.empty()) : !eval.has_recipient) {
        return Status::kDunno;
      }
      std::string_view address = sender ? q.sender : q.recipient;
      size_t at = address.rfind('@');
      std::string_view domain = at == std::string_view::npos ? "" : address.substr(at + 1);
      if (!domain.empty() && domain.front() == '[' && domain.back() == ']') {
        return Status::kDunno;
      }
      std::string_view test = TruncateDot(domain);
      if (test.empty() || !ValidHostname(test) || test.find('.') == std::string_view::npos) {
        return reject(settings_.non_fqdn_reject_code, "4.5.2",
                      absl::StrFormat("<%s>: %s rejected: need fully-qualified address",
                                      address, kReplyClassNames[sender ? kSenderClass
                                                                       : kRecipientClass]));
      }
      return Status::kDunno;
    }
    case Kind::kRejectNonFqdnHelo:
    case Kind::kRejectInvalidHelo: {
      if (!eval.has_helo) {
        return Status::kDunno;
      }
      std::string_view helo = q.helo_name;
      std::string_view helo_class = kReplyClassNames[kHeloClass];
      if (helo.front() == '[') {
        bool ok = helo.size() > 2 && helo.back() == ']' &&
                  ValidMailhostAddress(helo.substr(1, helo.size() - 2)).has_value();
        if (!ok) {
          return reject(settings_.invalid_hostname_reject_code, "5.5.2",
                        absl::StrFormat("<%s>: %s rejected: invalid ip address", helo,
                                        helo_class));
        }
        return Status::kDunno;
      }
      std::string_view test = TruncateDot(helo);
      if (r.kind == Kind::kRejectInvalidHelo) {
        if (!ValidHostname(test) && !ValidHostAddress(test)) {
          return reject(settings_.invalid_hostname_reject_code, "5.5.2",
                        absl::StrFormat("<%s>: %s rejected: Invalid name", helo, helo_class));
        }
        return Status::kDunno;
      }
      if (!ValidHostname(test) || test.find('.') == std::string_view::npos) {
        return reject(settings_.non_fqdn_reject_code, "5.5.2",
                      absl::StrFormat("<%s>: %s rejected: need fully-qualified hostname", helo,
                                      helo_class));
      }
      return Status::kDunno;
    }
    case Kind::kRejectUnauthPipelining:
      if (q.unauth_pipelining) {
        return reject(503, "5.5.0",
                      absl::StrFormat("<%s>: %s rejected: Improper use of SMTP command "
                                      "pipelining",
                                      reply_name, class_name));
      }
      return Status::kDunno;
    case Kind::kPermitSaslAuthenticated:
      return Status::kDunno;  // moat has no SASL: never matches
    // Postfix's permit_tls_clientcerts (smtpd_check.c): "all" needs a trusted certificate;
    // a listed fingerprint (certificate, then public key) permits even when the issuer is
    // not trusted.
    case Kind::kPermitTlsAllClientcerts:
      return q.tls && q.client_cert_verified && !q.client_cert_fingerprint.empty()
                 ? Status::kOk
                 : Status::kDunno;
    case Kind::kPermitTlsClientcerts:
      if (!q.tls) {
        return Status::kDunno;
      }
      // Fingerprints are stored as "AA:BB:..."; tables fold keys to lower case.
      for (std::string_view print : {q.client_cert_fingerprint, q.client_pkey_fingerprint}) {
        if (!print.empty() && table::FindKey(settings_.relay_clientcerts, print).has_value()) {
          return Status::kOk;
        }
      }
      return Status::kDunno;
    case Kind::kCheckClientAccess:
    case Kind::kCheckHeloAccess:
    case Kind::kCheckSenderAccess:
    case Kind::kCheckRecipientAccess: {
      int access_class = r.kind == Kind::kCheckClientAccess   ? kClientClass
                         : r.kind == Kind::kCheckHeloAccess   ? kHeloClass
                         : r.kind == Kind::kCheckSenderAccess ? kSenderClass
                                                              : kRecipientClass;
      return CheckAccess(eval, r, access_class);
    }
  }
  return Status::kDunno;
}

PolicyEngine::Status PolicyEngine::CheckAccess(Evaluation& eval, const CompiledRestriction& r,
                                               int access_class) const {
  const PolicyRequest& q = eval.request;
  const TableList& tables = r.table;
  const table::Map& table = *tables.maps().front();
  switch (access_class) {
    case kClientClass:
      // Host name and its parent domains, then the address and its parent networks. A hit
      // (even DUNNO) ends the search (Postfix's check_namadr_access).
      if (auto m = table::FindClient(tables, q.client_ip, q.client_name,
                                     settings_.access_maps_parent_match)) {
        return TableResult(eval, table, m->value, ClientNamaddr(eval), kClientClass);
      }
      return Status::kDunno;
    case kHeloClass:
      if (!eval.has_helo) {
        return Status::kDunno;
      }
      if (auto m = table::FindDomain(tables, q.helo_name, settings_.access_maps_parent_match)) {
        return TableResult(eval, table, m->value, q.helo_name, kHeloClass);
      }
      return Status::kDunno;
    case kSenderClass:
    case kRecipientClass: {
      bool sender = access_class == kSenderClass;
      if (sender ? !eval.has_sender : !eval.has_recipient) {
        return Status::kDunno;
      }
      std::string_view address = sender ? q.sender : q.recipient;
      if (address.empty()) {
        if (sender) {
          if (auto m = table::FindKey(tables, settings_.null_access_lookup_key)) {
            return TableResult(eval, table, m->value, address, kSenderClass);
          }
        }
        return Status::kDunno;
      }
      const AddressResolution& resolved = ResolveForCheck(eval, address);
      std::optional<table::Match> m =
          table::FindAccessAddress(tables, resolved.address, settings_.recipient_delimiter,
                                   settings_.access_maps_parent_match);
      if (!m.has_value()) {
        return Status::kDunno;
      }
      bool routed = resolved.routed;
      Status status = TableResult(eval, table, m->value, address, access_class);
      // A source-routed recipient is too suspicious for an OK.
      if (status == Status::kOk && !sender && routed) {
        return Status::kDunno;
      }
      return status;
    }
    default:
      return Status::kDunno;
  }
}

PolicyEngine::Status PolicyEngine::TableResult(Evaluation& eval, const table::Map& table,
                                               std::string_view value,
                                               std::string_view reply_name,
                                               int reply_class) const {
  std::string_view class_name = kReplyClassNames[reply_class];
  size_t command_end = value.find_first_of(" \t");
  std::string_view command = value.substr(0, command_end);
  std::string_view text =
      command_end == std::string_view::npos ? "" : StripWhitespace(value.substr(command_end));
  auto server_error = [&]() {
    SetReject(&eval.reply, 451, "4.3.5", "Server configuration error");
    return Status::kReject;
  };
  auto reject_with = [&](int code, std::string_view default_dsn,
                         std::string_view default_text) {
    DsnText dt = SplitDsn(default_dsn, text);
    SetReject(&eval.reply, code, FixDsn(dt.dsn, reply_class),
              absl::StrFormat("<%s>: %s rejected: %s", reply_name, class_name,
                              dt.text.empty() ? default_text : dt.text));
    return Status::kReject;
  };
  if (EqualsIgnoreCase(command, "DUNNO")) {
    return Status::kDunno;
  }
  if (EqualsIgnoreCase(command, "REJECT")) {
    return reject_with(settings_.access_map_reject_code, "5.7.1", "Access denied");
  }
  if (EqualsIgnoreCase(command, "DEFER")) {
    return reject_with(settings_.access_map_defer_code, "4.7.1", "Access denied");
  }
  if (EqualsIgnoreCase(command, "INFO") || EqualsIgnoreCase(command, "WARN")) {
    log::Info("%s: %s <%s>: %s %s", LowerCase(command), class_name, reply_name, table.spec(),
              text);
    return Status::kDunno;
  }
  if (AllDigits(value)) {
    return Status::kOk;  // all-numeric: OK (a time stamp from some out-of-band scheme)
  }
  if (command.size() == 3 && !text.empty() && (command[0] == '4' || command[0] == '5') &&
      AllDigits(command)) {
    int code = (command[0] - '0') * 100 + (command[1] - '0') * 10 + (command[2] - '0');
    std::string default_dsn = absl::StrFormat("%c.7.1", command[0]);
    return reject_with(code, default_dsn, "Access denied");
  }
  if (EqualsIgnoreCase(command, "OK") || EqualsIgnoreCase(command, "RELAY")) {
    return Status::kOk;
  }
  static constexpr std::string_view kUnsupported[] = {
      "HOLD", "DISCARD", "FILTER", "REDIRECT", "BCC", "PREPEND", "HANGUP",
      "DEFER_IF_PERMIT", "DEFER_IF_REJECT", "DELAY"};
  for (std::string_view action : kUnsupported) {
    if (EqualsIgnoreCase(command, action)) {
      log::Warning("access table %s: action %s is not supported by moat", table.spec(),
                   action);
      return server_error();
    }
  }
  if (value.find(':') != std::string_view::npos) {
    log::Warning("access table %s has entry with lookup table: %s", table.spec(), value);
    log::Warning("do not specify lookup tables inside SMTPD access maps");
    return server_error();
  }
  if (eval.recursion > kRecursionMax) {
    log::Warning("access table %s entry %s causes unreasonable recursion", table.spec(),
                 value);
    return server_error();
  }
  // Anything else is a restriction list evaluated in place ("permit_mynetworks, reject").
  absl::StatusOr<PolicyRestrictionList> parsed = ParseRestrictionList(value);
  if (!parsed.ok()) {
    log::Warning("access table %s: %s", table.spec(), parsed.status().message());
    return server_error();
  }
  if (parsed->empty()) {
    log::Warning("access table %s entry %s has empty value", table.spec(), value);
    return Status::kOk;
  }
  std::vector<CompiledRestriction> list;
  for (const PolicyRestriction& r : *parsed) {
    std::optional<Kind> kind = FindKind(r.name);
    if (!kind.has_value() || IsAccessKind(*kind)) {
      log::Warning("unknown smtpd restriction: \"%s\"", r.name);
      return server_error();
    }
    list.push_back(CompiledRestriction{*kind, r.name, TableList()});
  }
  return RunList(eval, list, reply_name, reply_class);
}

bool PolicyEngine::PermitAuthDestination(Evaluation& eval) const {
  const AddressResolution& r = ResolveForCheck(eval, eval.request.recipient);
  if (r.routed) {
    return false;
  }
  // Final delivery (local, virtual alias) and relay_domains are authorized destinations.
  return r.address_class != AddressClass::kDefault;
}

PolicyEngine::Status PolicyEngine::RejectUnauthDestination(Evaluation& eval, int code,
                                                           std::string_view dsn) const {
  if (PermitAuthDestination(eval)) {
    return Status::kDunno;
  }
  SetReject(&eval.reply, code, dsn,
            absl::StrFormat("<%s>: Relay access denied", eval.request.recipient));
  return Status::kReject;
}

PolicyEngine::Status PolicyEngine::CheckRecipientMaps(Evaluation& eval,
                                                      std::string_view address,
                                                      int reply_class) const {
  const PolicyRequest& q = eval.request;
  bool sender = reply_class == kSenderClass;
  std::string_view class_name = kReplyClassNames[reply_class];
  const AddressResolution& r = ResolveForCheck(eval, address);
  // Postfix's mail_addr_find() default order for every recipient table: user+ext@domain,
  // user@domain, user+ext and user (local domains only), @domain. core/table's
  // FindVirtualAlias() is exactly that order.
  bool local = IsLocalForLookup(r.address, q.server_ip);
  auto matches = [&](const TableList& tables) {
    return table::FindVirtualAlias(tables, r.address, settings_.recipient_delimiter, local)
        .has_value();
  };
  // An address that a virtual alias rewrites is taken as valid.
  if (matches(settings_.virtual_alias_maps)) {
    return Status::kDunno;
  }
  if (r.transport == "error" || r.transport == "retry") {
    bool error = r.transport == "error";
    DsnText dt = SplitDsn(error ? (sender ? "5.1.0" : "5.1.1") : (sender ? "4.1.0" : "4.1.1"),
                          r.nexthop);
    int code = !error ? 450
               : r.address_class == AddressClass::kVirtualAlias
                   ? settings_.unknown_virtual_alias_reject_code
                   : 550;
    SetReject(&eval.reply, code, FixDsn(dt.dsn, reply_class),
              absl::StrFormat("<%s>: %s rejected: %s", address, class_name, dt.text));
    return Status::kReject;
  }
  auto unknown = [&](int code, std::string_view table_name) {
    SetReject(&eval.reply, code, sender ? "5.1.0" : "5.1.1",
              absl::StrFormat("<%s>: %s rejected: User unknown%s", address, class_name,
                              settings_.show_user_unknown_table_name
                                  ? absl::StrFormat(" in %s table", table_name)
                                  : ""));
    return Status::kReject;
  };
  if (r.address_class == AddressClass::kLocal && !settings_.local_recipient_maps.empty()) {
    std::string_view local = std::string_view(r.address).substr(0, r.address.rfind('@'));
    bool exempt = EqualsIgnoreCase(local, settings_.double_bounce_sender) ||
                  EqualsIgnoreCase(local, "postmaster") ||
                  EqualsIgnoreCase(local, "mailer-daemon");
    if (!exempt && !matches(settings_.local_recipient_maps)) {
      return unknown(settings_.unknown_local_recipient_reject_code, "local recipient");
    }
  }
  if (r.address_class == AddressClass::kRelay && !settings_.relay_recipient_maps.empty() &&
      !matches(settings_.relay_recipient_maps)) {
    return unknown(settings_.unknown_relay_recipient_reject_code, "relay recipient");
  }
  return Status::kDunno;
}

PolicyEngine::Status PolicyEngine::RunClient(Evaluation& eval) const {
  if (client_.empty()) {
    return Status::kDunno;
  }
  return RunList(eval, client_, ClientNamaddr(eval), kClientClass);
}

PolicyEngine::Status PolicyEngine::RunHelo(Evaluation& eval) const {
  if (!eval.has_helo) {
    return Status::kDunno;
  }
  return RunList(eval, helo_, eval.request.helo_name, kHeloClass);
}

PolicyEngine::Status PolicyEngine::RunSender(Evaluation& eval) const {
  if (!eval.has_sender) {
    return Status::kDunno;
  }
  eval.sender_maps_checked = false;
  Status status = RunList(eval, sender_, eval.request.sender, kSenderClass);
  if (settings_.reject_unlisted_sender && status != Status::kReject &&
      !eval.sender_maps_checked && !eval.request.sender.empty()) {
    eval.sender_maps_checked = true;
    Status unlisted = CheckRecipientMaps(eval, eval.request.sender, kSenderClass);
    if (unlisted == Status::kReject) {
      return unlisted;
    }
  }
  return status;
}

PolicyEngine::Status PolicyEngine::RunRecipient(Evaluation& eval) const {
  const PolicyRequest& q = eval.request;
  // RFC 5321 section 4.5.1: "postmaster" without a domain is always accepted.
  if (EqualsIgnoreCase(q.recipient, "postmaster")) {
    return Status::kOk;
  }
  eval.recipient_maps_checked = false;
  if (settings_.delay_reject) {
    if (RunClient(eval) == Status::kReject || RunHelo(eval) == Status::kReject ||
        RunSender(eval) == Status::kReject) {
      return Status::kReject;
    }
  }
  const std::vector<CompiledRestriction>* lists[2] = {&relay_, &recipient_};
  if (!settings_.relay_before_recipient_restrictions) {
    std::swap(lists[0], lists[1]);
  }
  Status status = Status::kDunno;
  for (const std::vector<CompiledRestriction>* list : lists) {
    status = RunList(eval, *list, q.recipient, kRecipientClass);
    if (status == Status::kReject) {
      return status;
    }
  }
  if (settings_.reject_unlisted_recipient && !eval.recipient_maps_checked &&
      !q.recipient.empty()) {
    eval.recipient_maps_checked = true;
    if (CheckRecipientMaps(eval, q.recipient, kRecipientClass) == Status::kReject) {
      return Status::kReject;
    }
  }
  return status;
}

PolicyDecision PolicyEngine::Check(const PolicyRequest& request) {
  Evaluation eval(request);
  eval.has_helo = !request.helo_name.empty();
  eval.has_sender = request.stage >= PolicyStage::kMail;
  eval.has_recipient = request.stage == PolicyStage::kRcpt;
  Status status = Status::kDunno;
  switch (request.stage) {
    case PolicyStage::kConnect:
      if (!settings_.delay_reject) {
        status = RunClient(eval);
      }
      break;
    case PolicyStage::kHelo:
      if (!settings_.delay_reject) {
        status = RunHelo(eval);
      }
      break;
    case PolicyStage::kMail:
      if (!settings_.delay_reject) {
        status = RunSender(eval);
      }
      break;
    case PolicyStage::kRcpt:
      status = RunRecipient(eval);
      break;
    case PolicyStage::kData:
      status = RunList(eval, data_, "DATA", kDataClass);
      break;
    case PolicyStage::kEndOfData:
      status = RunList(eval, end_of_data_, "END-OF-MESSAGE", kEndOfDataClass);
      break;
  }
  if (status == Status::kReject) {
    return std::move(eval.reply);
  }
  PolicyDecision pass;
  pass.action = status == Status::kOk ? PolicyAction::kPermit : PolicyAction::kDunno;
  return pass;
}

// ----------------------------------------------------------------------------------------
// Virtual alias expansion (cleanup_map1n) and next hops.

std::vector<ResolvedRecipient> PolicyEngine::Resolve(std::string_view recipient,
                                                     PolicyDecision* failure) {
  auto fail = [&](std::string_view why) {
    log::Warning("%s virtual_alias_maps for %s -- message not accepted, try again later",
                 why, recipient);
    if (failure != nullptr) {
      SetReject(failure, 451, "4.6.0", "Alias expansion error");
    }
    return std::vector<ResolvedRecipient>();
  };
  std::vector<std::string> addresses{Canonicalize(recipient)};
  absl::flat_hash_set<std::string> been_here;  // addresses that expanded into themselves
  const size_t expansion_max = static_cast<size_t>(settings_.virtual_alias_expansion_limit);
  const size_t length_max = static_cast<size_t>(settings_.virtual_alias_address_length_limit);
  for (size_t i = 0; i < addresses.size() && !settings_.virtual_alias_maps.empty(); ++i) {
    if (addresses.size() > expansion_max) {
      return fail("unreasonable expansion size of");
    }
    for (int count = 0;; ++count) {
      std::string current = addresses[i];
      if (been_here.contains(LowerCase(current))) {
        break;
      }
      if (count >= settings_.virtual_alias_recursion_limit) {
        return fail("unreasonable nesting of");
      }
      std::optional<table::Match> m = table::FindVirtualAlias(
          settings_.virtual_alias_maps, current, settings_.recipient_delimiter,
          IsLocalForLookup(current, ""));
      if (!m.has_value()) {
        break;
      }
      // "@otherdomain" keeps the user part; the unmatched extension goes to every result
      // (propagate_unmatched_extensions = canonical, virtual).
      std::string extension = MatchedWithoutExtension(m->form)
                                  ? AddressExtension(current, settings_.recipient_delimiter)
                                  : "";
      size_t at = current.rfind('@');
      std::string local = current.substr(0, at);
      if (!extension.empty() && local.size() >= extension.size()) {
        local.resize(local.size() - extension.size());
      }
      std::vector<std::string> results;
      for (std::string& a : SplitAddresses(m->value)) {
        if (a[0] == '@') {
          a = local + a;
        }
        std::string canonical = Canonicalize(a);
        if (!extension.empty()) {
          canonical.insert(canonical.rfind('@'), extension);
        }
        if (canonical.size() > length_max) {
          return fail("unreasonable result length from");
        }
        results.push_back(std::move(canonical));
      }
      if (results.empty()) {
        return fail("non-address result from");
      }
      for (size_t j = 0; j < results.size(); ++j) {
        if (EqualsIgnoreCase(results[j], current)) {
          been_here.insert(LowerCase(current));
        }
        if (j == 0) {
          addresses[i] = results[j];
        } else {
          addresses.push_back(results[j]);
        }
      }
    }
  }
  if (addresses.size() > expansion_max) {
    return fail("unreasonable expansion size of");
  }
  std::vector<ResolvedRecipient> out;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& address : addresses) {
    if (!seen.insert(LowerCase(address)).second) {
      continue;  // duplicate recipients are delivered once
    }
    AddressResolution r = ResolveAddress(address, "");
    out.push_back(ResolvedRecipient{r.address, absl::StrFormat("%s:%s", r.transport, r.nexthop)});
  }
  return out;
}

}  // namespace moat::net
