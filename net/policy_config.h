// net/policy_config.h
//
// Builds the policy engine's PolicySettings from a config::Config snapshot, opening the
// lookup tables it names. Owned by the "policy" area. Control plane only (opens files,
// enumerates network interfaces); the result is immutable and may be shared by every shard.
//
//   absl::StatusOr<PolicySettings> s = net::BuildPolicySettings(config);
//   absl::StatusOr<std::unique_ptr<net::PolicyEngine>> engine =
//       net::PolicyEngine::Create(*std::move(s));
//
// Every parameter of PolicyParameterNames() that the config registry knows is taken from
// the snapshot (expanded values); the others keep Postfix's defaults. Two values are
// resolved here as Postfix resolves them:
//   - our own addresses (address literals user@[a.d.d.r] that are local): inet_interfaces
//     ("all": every interface address from getifaddrs(); "loopback-only": 127.0.0.1, ::1;
//     else the listed addresses) plus proxy_interfaces;
//   - mynetworks, when main.cf does not set it but sets mynetworks_style: "host" = our
//     addresses, "subnet" = the networks of our interfaces, "class" = their class A/B/C
//     networks. Otherwise the registry's mynetworks value applies.
#pragma once

#include "absl/status/statusor.h"
#include "core/config/config.h"
#include "net/policy_settings.h"

namespace moat::net {

// `open` defaults to OpenTableWithCoreTable; a table named twice is opened once.
absl::StatusOr<PolicySettings> BuildPolicySettings(const config::Config& config,
                                                   TableOpener open = nullptr);

}  // namespace moat::net
