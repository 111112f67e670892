// core/config/registry.cc: see registry.h. Defaults checked against `postconf -d` of Postfix
// 3.7.11 (tests/config/registry_test.cc compares them, listing the deliberate differences).
#include "core/config/registry.h"

#include <unistd.h>

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace moat::config {
namespace {

using T = ParamType;

// Sorted by name (registry_test checks it). Columns: name, type, default, time unit, min,
// allowed words, note.
constexpr ParamSpec kParams[] = {
    {"access_map_defer_code", T::kInteger, "450", 's', 400},
    {"access_map_reject_code", T::kInteger, "554", 's', 400},
    {"alias_maps", T::kTableList, "", 's', 0, "",
     "Postfix: hash:/etc/aliases, nis:mail.aliases; moat does no local delivery"},
    {"anvil_rate_time_unit", T::kTime, "60s"},
    {"bounce_queue_lifetime", T::kTime, "5d", 'd'},
    {"bounce_size_limit", T::kInteger, "50000"},
    {"compatibility_level", T::kString, "3.6", 's', 0, "",
     "Postfix: 0; moat always behaves as Postfix at level 3.6"},
    {"default_destination_concurrency_failed_cohort_limit", T::kInteger, "1", 's', 0, "",
     "moat counts a pseudo-cohort as initial_destination_concurrency deliveries (at most the "
     "per-shard concurrency limit) per shard; Postfix uses its feedback window"},
    {"default_destination_concurrency_limit", T::kInteger, "20", 's', 1},
    {"default_destination_recipient_limit", T::kInteger, "50", 's', 1},
    {"default_transport", T::kString, "smtp"},
    {"defer_code", T::kInteger, "450", 's', 400},
    {"delay_warning_time", T::kTime, "0h", 'h'},
    {"disable_vrfy_command", T::kBool, "no"},
    {"header_size_limit", T::kInteger, "102400", 's', 1},
    {"inet_interfaces", T::kList, "all"},
    {"inet_protocols", T::kList, "all", 's', 0, "all|ipv4|ipv6"},
    {"initial_destination_concurrency", T::kInteger, "5", 's', 1},
    {"invalid_hostname_reject_code", T::kInteger, "501", 's', 400},
    {"line_length_limit", T::kInteger, "2048", 's', 1},
    {"local_recipient_maps", T::kTableList, "", 's', 0, "",
     "Postfix: proxy:unix:passwd.byname $alias_maps; moat does no local delivery"},
    {"local_transport", T::kString, "local:$myhostname"},
    {"mail_name", T::kString, "moat", 's', 0, "", "Postfix: Postfix"},
    {"maximal_backoff_time", T::kTime, "4000s"},
    {"maximal_queue_lifetime", T::kTime, "5d", 'd'},
    {"message_size_limit", T::kSize, "10240000"},
    {"minimal_backoff_time", T::kTime, "300s"},
    {"moat_control_socket", T::kString, "$queue_directory/control", 's', 0, "",
     "moat only: the daemon's control socket (moat reload, queue, stats)"},
    {"moat_dns_servers", T::kHostPortList, "", 's', 0, "",
     "moat only: resolvers as ip:port; empty = /etc/resolv.conf"},
    {"moat_listen", T::kHostPortList, "0.0.0.0:25 [::]:25", 's', 0, "",
     "moat only: the SMTP listening addresses"},
    {"moat_metrics_listen", T::kHostPortList, "", 's', 0, "",
     "moat only: Prometheus /metrics over HTTP; empty = off"},
    {"moat_proxy_protocol_networks", T::kAddressList, "", 's', 0, "",
     "moat only: clients that must start with a PROXY v1/v2 header"},
    {"moat_queue_content_memory", T::kInteger, "268435456", 's', 0, "",
     "moat only: bytes of queued message content kept in memory (shared out among the shards); "
     "beyond it, content is read back from the spool when a delivery needs it"},
    {"moat_shards", T::kInteger, "0", 's', 0, "", "moat only: shard threads; 0 = one per CPU"},
    {"moat_spool_direct_io", T::kBool, "yes", 's', 0, "",
     "moat only: write spool segments with O_DIRECT where the file system allows it (no page "
     "cache copy and writeback per batch); no = through the page cache"},
    {"moat_table_check_interval", T::kTime, "5s", 's', 0, "",
     "moat only: how often the daemon checks its table files and reloads changed ones; "
     "0 = only on moat reload"},
    {"mydestination", T::kDomainList, "$myhostname, localhost.$mydomain, localhost"},
    {"mydomain", T::kString, "", 's', 0, "", "computed at load: $myhostname minus its first label"},
    {"myhostname", T::kString, "", 's', 0, "", "computed at load: the FQDN from gethostname()"},
    {"mynetworks", T::kAddressList, "127.0.0.0/8 [::1]/128", 's', 0, "",
     "Postfix derives it from mynetworks_style and the interfaces; moat's default trusts the "
     "local host only (with mynetworks_style set, net/policy_config.cc derives it as Postfix)"},
    {"mynetworks_style", T::kString, "host", 's', 0, "host|subnet|class",
     "Postfix 3.7 at compatibility_level >= 2"},
    {"myorigin", T::kString, "$myhostname"},
    {"non_fqdn_reject_code", T::kInteger, "504", 's', 400},
    {"parent_domain_matches_subdomains", T::kList,
     "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
     "qmqpd_authorized_clients,relay_domains,smtpd_access_maps"},
    {"proxy_interfaces", T::kList, ""},
    {"queue_directory", T::kString, "/var/spool/moat", 's', 0, "", "Postfix: /var/spool/postfix"},
    {"queue_run_delay", T::kTime, "300s"},
    {"recipient_delimiter", T::kString, ""},
    {"reject_code", T::kInteger, "554", 's', 400},
    {"relay_clientcerts", T::kTableList, ""},
    {"relay_destination_concurrency_limit", T::kInteger, "$default_destination_concurrency_limit",
     's', 1},
    {"relay_destination_recipient_limit", T::kInteger, "$default_destination_recipient_limit",
     's', 1},
    {"relay_domains", T::kDomainList, "", 's', 0, "",
     "Postfix 3.7 at compatibility_level >= 2 ($mydestination below)"},
    {"relay_domains_reject_code", T::kInteger, "554", 's', 400},
    {"relay_recipient_maps", T::kTableList, ""},
    {"relay_transport", T::kString, "relay"},
    {"relayhost", T::kString, ""},
    {"show_user_unknown_table_name", T::kBool, "yes"},
    {"smtp_connect_timeout", T::kTime, "30s"},
    {"smtp_connection_cache_on_demand", T::kBool, "yes"},
    {"smtp_connection_cache_time_limit", T::kTime, "2s"},
    {"smtp_connection_reuse_time_limit", T::kTime, "300s"},
    {"smtp_data_done_timeout", T::kTime, "600s"},
    {"smtp_data_init_timeout", T::kTime, "120s"},
    {"smtp_data_xfer_timeout", T::kTime, "180s"},
    {"smtp_discard_ehlo_keywords", T::kList, ""},
    {"smtp_enforce_tls", T::kBool, "no"},
    {"smtp_helo_timeout", T::kTime, "300s"},
    {"smtp_mail_timeout", T::kTime, "300s"},
    {"smtp_quit_timeout", T::kTime, "300s"},
    {"smtp_rcpt_timeout", T::kTime, "300s"},
    {"smtp_starttls_timeout", T::kTime, "300s"},
    {"smtp_tls_CAfile", T::kString, ""},
    {"smtp_tls_CApath", T::kString, ""},
    {"smtp_tls_cert_file", T::kString, ""},
    {"smtp_tls_ciphers", T::kString, "medium", 's', 0, "export|low|medium|high|null"},
    {"smtp_tls_fingerprint_digest", T::kString, "sha256", 's', 0, "md5|sha1|sha256|sha512",
     "Postfix 3.7: md5 below compatibility_level 3.6"},
    {"smtp_tls_key_file", T::kString, "$smtp_tls_cert_file"},
    {"smtp_tls_loglevel", T::kInteger, "0"},
    {"smtp_tls_mandatory_ciphers", T::kString, "medium", 's', 0, "export|low|medium|high|null"},
    {"smtp_tls_mandatory_protocols", T::kList, ">=TLSv1"},
    {"smtp_tls_protocols", T::kList, ">=TLSv1"},
    {"smtp_tls_secure_cert_match", T::kList, "nexthop, dot-nexthop"},
    {"smtp_tls_security_level", T::kString, "", 's', 0,
     "|none|may|encrypt|dane|dane-only|fingerprint|verify|secure"},
    {"smtp_tls_session_cache_timeout", T::kTime, "3600s"},
    {"smtp_tls_verify_cert_match", T::kList, "hostname"},
    {"smtp_tls_wrappermode", T::kBool, "no"},
    {"smtp_use_tls", T::kBool, "no"},
    {"smtpd_banner", T::kString, "$myhostname ESMTP $mail_name"},
    {"smtpd_client_connection_count_limit", T::kInteger, "50"},
    {"smtpd_client_connection_rate_limit", T::kInteger, "0"},
    {"smtpd_client_event_limit_exceptions", T::kAddressList, "$mynetworks", 's', 0, "",
     "Postfix: ${smtpd_client_connection_limit_exceptions:$mynetworks}; unset, the clients of "
     "mynetworks as derived (mynetworks_style included) are exempt"},
    {"smtpd_client_message_rate_limit", T::kInteger, "0"},
    {"smtpd_client_recipient_rate_limit", T::kInteger, "0"},
    {"smtpd_client_restrictions", T::kRestrictionList, ""},
    {"smtpd_data_restrictions", T::kRestrictionList, ""},
    {"smtpd_delay_reject", T::kBool, "yes"},
    {"smtpd_enforce_tls", T::kBool, "no"},
    {"smtpd_error_sleep_time", T::kTime, "1s"},
    {"smtpd_forbid_bare_newline", T::kString, "no", 's', 0, "yes|no|normalize|reject"},
    {"smtpd_forbid_unauth_pipelining", T::kBool, "no"},
    {"smtpd_hard_error_limit", T::kInteger, "20", 's', 0, "",
     "Postfix: ${stress?{1}:{20}}; moat has no stress mode"},
    {"smtpd_helo_required", T::kBool, "no"},
    {"smtpd_helo_restrictions", T::kRestrictionList, ""},
    {"smtpd_junk_command_limit", T::kInteger, "100", 's', 1, "",
     "Postfix: ${stress?{1}:{100}}; moat has no stress mode"},
    {"smtpd_recipient_limit", T::kInteger, "1000", 's', 1},
    {"smtpd_recipient_overshoot_limit", T::kInteger, "1000", 's', 1},
    {"smtpd_recipient_restrictions", T::kRestrictionList, ""},
    {"smtpd_reject_unlisted_recipient", T::kBool, "yes"},
    {"smtpd_reject_unlisted_sender", T::kBool, "no"},
    {"smtpd_relay_restrictions", T::kRestrictionList,
     "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination", 's', 0, "",
     "Postfix 3.7 at compatibility_level >= 1"},
    {"smtpd_sender_restrictions", T::kRestrictionList, ""},
    {"smtpd_soft_error_limit", T::kInteger, "10"},
    {"smtpd_starttls_timeout", T::kTime, "300s", 's', 0, "",
     "Postfix: ${stress?{10}:{300}}s; moat has no stress mode"},
    {"smtpd_timeout", T::kTime, "300s", 's', 0, "",
     "Postfix: ${stress?{10}:{300}}s; moat has no stress mode"},
    {"smtpd_tls_CAfile", T::kString, ""},
    {"smtpd_tls_ask_ccert", T::kBool, "no"},
    {"smtpd_tls_cert_file", T::kString, ""},
    {"smtpd_tls_chain_files", T::kList, ""},
    {"smtpd_tls_ciphers", T::kString, "medium", 's', 0, "export|low|medium|high|null"},
    {"smtpd_tls_exclude_ciphers", T::kList, ""},
    {"smtpd_tls_fingerprint_digest", T::kString, "sha256", 's', 0, "md5|sha1|sha256|sha512",
     "Postfix 3.7: md5 below compatibility_level 3.6"},
    {"smtpd_tls_key_file", T::kString, "$smtpd_tls_cert_file"},
    {"smtpd_tls_loglevel", T::kInteger, "0"},
    {"smtpd_tls_mandatory_ciphers", T::kString, "medium", 's', 0, "export|low|medium|high|null"},
    {"smtpd_tls_mandatory_protocols", T::kList, ">=TLSv1"},
    {"smtpd_tls_protocols", T::kList, ">=TLSv1"},
    {"smtpd_tls_received_header", T::kBool, "no"},
    {"smtpd_tls_security_level", T::kString, "", 's', 0, "|none|may|encrypt"},
    {"smtpd_tls_session_cache_timeout", T::kTime, "3600s"},
    {"smtpd_tls_wrappermode", T::kBool, "no"},
    {"smtpd_use_tls", T::kBool, "no"},
    {"smtputf8_enable", T::kBool, "yes", 's', 0, "",
     "Postfix: ${{$compatibility_level} <level {1} ? {no} : {yes}}, yes at level >= 1"},
    {"transport_maps", T::kTableList, ""},
    {"unknown_local_recipient_reject_code", T::kInteger, "550", 's', 400},
    {"unknown_relay_recipient_reject_code", T::kInteger, "550", 's', 400},
    {"unknown_virtual_alias_reject_code", T::kInteger, "550", 's', 400},
    {"virtual_alias_expansion_limit", T::kInteger, "1000", 's', 1},
    {"virtual_alias_maps", T::kTableList, "", 's', 0, "",
     "Postfix: $virtual_maps (an obsolete parameter, empty by default)"},
    {"virtual_alias_recursion_limit", T::kInteger, "1000", 's', 1},
};

constexpr std::string_view kPostfixParameters[] = {
#include "core/config/postfix_parameters.inc"
};

using W = SecurityRule::When;
constexpr SecurityRule kSecurityRules[] = {
    {"body_checks", W::kIfNonEmpty, "moat does not apply body checks; mail would pass unchecked"},
    {"content_filter", W::kIfNonEmpty,
     "moat has no content filter; mail would be relayed unfiltered"},
    {"header_checks", W::kIfNonEmpty,
     "moat does not apply header checks; mail would pass unchecked"},
    {"message_reject_characters", W::kIfNonEmpty,
     "moat does not reject messages by character; they would be accepted"},
    {"mime_header_checks", W::kIfNonEmpty,
     "moat does not apply header checks; mail would pass unchecked"},
    {"nested_header_checks", W::kIfNonEmpty,
     "moat does not apply header checks; mail would pass unchecked"},
    {"non_smtpd_milters", W::kIfNonEmpty, "moat has no milter support; mail would pass unfiltered"},
    {"smtp_sasl_auth_enable", W::kIfYes,
     "moat's SMTP client does not authenticate (SASL) to the next hop"},
    {"smtp_tls_policy_maps", W::kIfNonEmpty,
     "moat has no per-destination TLS policy; mail could go out with weaker TLS than required"},
    {"smtpd_end_of_data_restrictions", W::kIfNonEmpty,
     "moat does not evaluate end-of-data restrictions; they would be skipped"},
    {"smtpd_milters", W::kIfNonEmpty, "moat has no milter support; mail would pass unfiltered"},
    {"smtpd_proxy_filter", W::kIfNonEmpty,
     "moat has no before-queue proxy filter; mail would pass unfiltered"},
    {"smtpd_sasl_auth_enable", W::kIfYes, "moat does not implement SMTP AUTH (SASL)"},
    {"smtpd_tls_auth_only", W::kIfYes,
     "moat does not implement SMTP AUTH, so this setting cannot be honoured"},
    {"smtpd_tls_req_ccert", W::kIfYes,
     "moat does not require client certificates; clients without one would be let in"},
};

}  // namespace

std::span<const ParamSpec> Registry() { return kParams; }

const ParamSpec* FindParam(std::string_view name) {
  static const auto* index = [] {
    auto* map = new absl::flat_hash_map<std::string_view, const ParamSpec*>();
    for (const ParamSpec& spec : kParams) {
      (*map)[spec.name] = &spec;
    }
    return map;
  }();
  auto it = index->find(name);
  return it == index->end() ? nullptr : it->second;
}

bool IsPostfixParameter(std::string_view name) {
  static const auto* names = [] {
    auto* set = new absl::flat_hash_set<std::string_view>();
    for (std::string_view n : kPostfixParameters) {
      set->insert(n);
    }
    return set;
  }();
  return names->contains(name);
}

std::string_view TypeName(ParamType type) {
  switch (type) {
    case T::kString:
      return "string";
    case T::kBool:
      return "boolean";
    case T::kInteger:
      return "integer";
    case T::kTime:
      return "time";
    case T::kSize:
      return "size";
    case T::kList:
      return "list";
    case T::kDomainList:
      return "domain list";
    case T::kTableList:
      return "table list";
    case T::kRestrictionList:
      return "restriction list";
    case T::kAddressList:
      return "address list";
    case T::kHostPortList:
      return "address:port list";
  }
  return "?";
}

std::span<const SecurityRule> SecurityRules() { return kSecurityRules; }

const SecurityRule* FindSecurityRule(std::string_view name) {
  for (const SecurityRule& rule : kSecurityRules) {
    if (rule.name == name) {
      return &rule;
    }
  }
  return nullptr;
}

std::string ComputedDefault(std::string_view name) {
  char buffer[256] = {};
  std::string host = "localhost";
  if (gethostname(buffer, sizeof(buffer) - 1) == 0 && buffer[0] != '\0') {
    host = buffer;
  }
  if (host.find('.') == std::string::npos) {
    host += ".localdomain";  // as Postfix does for a bare host name
  }
  if (name == "myhostname") {
    return host;
  }
  if (name == "mydomain") {
    return host.substr(host.find('.') + 1);
  }
  return "";
}

}  // namespace moat::config
