// core/server/server.cc: see server.h.
#include "core/server/server.h"

#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/config/config.h"
#include "core/log/log.h"
#include "core/reactor/shard_group.h"
#include "core/server/session_handler.h"
#include "core/server/session_settings.h"
#include "core/server/shard_spool.h"
#include "net/policy.h"
#if __has_include("net/policy_config.h")
#include "net/policy_config.h"
#define MOAT_HAVE_POLICY_CONFIG 1
#endif
#include "queue/spool.h"

namespace moat::server {
namespace {

// How long sessions may go on after SIGTERM before they are told 421 and closed.
constexpr absl::Duration kShutdownGrace = absl::Seconds(10);

int CpuCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    return CPU_COUNT(&set);
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// Everything one shard owns besides what the reactor's Shard owns.
struct ShardRuntime {
  std::unique_ptr<ShardSpool> spool;
};

void LogDiagnostics(const config::Diagnostics& diagnostics) {
  for (const config::Diagnostic& d : diagnostics.items()) {
    if (d.IsError()) {
      log::Error("%s", d.ToString());
    } else {
      log::Warning("%s", d.ToString());
    }
  }
}

net::ConnectionInfo MakeConnectionInfo(const reactor::Connection& connection,
                                       const reactor::ClientInfo& client,
                                       const config::Config& config) {
  // The local address (for postmaster@[our ip]): getsockname never blocks.
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  reactor::SocketAddress local;
  if (getsockname(connection.fd(), reinterpret_cast<sockaddr*>(&storage), &length) == 0) {
    local = reactor::SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), length);
  }
  net::ConnectionInfo info;
  info.client_ip = client.peer.HostString();
  info.client_port = client.peer.port();
  info.server_ip = local.HostString();
  info.server_port = local.port();
  info.client_connection_count = static_cast<int>(client.client_connections);
  info.exempt_from_limits = config.Addresses("mynetworks").ContainsText(info.client_ip);
  return info;
}

}  // namespace

int Serve(const ServeOptions& options) {
  // Before any thread exists, so every thread inherits the mask and only the main thread
  // takes SIGTERM/SIGINT/SIGHUP (ShardGroup::RunUntilShutdown).
  reactor::ShardGroup::BlockSignals();
  log::SetProgramName("moat");
  log::SetDebug(options.debug);

  config::MainCfLocation location = config::LocateMainCf(options.config_dir);
  if (!location.error.empty()) {
    log::Error("%s", location.error);
    return 1;
  }
  config::LoadResult loaded;
  std::string demo_spool;
  if (location.use_embedded_default) {
    char tmpl[] = "/tmp/moat-demo-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      log::Error("cannot create a temporary spool directory: %s", strerror(errno));
      return 1;
    }
    demo_spool = tmpl;
    loaded = config::Config::LoadEmbeddedDefault(demo_spool);
  } else {
    loaded = config::LoadLocated(location);
  }
  LogDiagnostics(loaded.diagnostics);
  if (loaded.config == nullptr) {
    log::Error("%s: configuration has errors; not starting",
               location.use_embedded_default ? std::string(config::kEmbeddedSourceName)
                                             : location.path);
    return 1;
  }
  std::shared_ptr<const config::Config> config = loaded.config;
  if (location.use_embedded_default) {
    log::Info("no main.cf found: running the embedded demo configuration: listening on %s, "
              "relaying %s to %s, spool in %s",
              config->String("moat_listen"), config->String("relay_domains"),
              config->String("transport_maps").empty() ? config->String("relayhost")
                                                       : config->String("transport_maps"),
              demo_spool);
  }

  // Policy and session settings: immutable, shared read-only by every shard.
#ifdef MOAT_HAVE_POLICY_CONFIG
  absl::StatusOr<net::PolicySettings> policy_settings = net::BuildPolicySettings(*config);
#else
  // Transitional: the config-to-policy adapter is being written (net/policy_config.h).
  absl::StatusOr<net::PolicySettings> policy_settings =
      absl::UnimplementedError("the policy configuration adapter is not built yet");
#endif
  if (!policy_settings.ok()) {
    log::Error("%s: %s", config->Source(), policy_settings.status().message());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<net::PolicyEngine>> policy =
      net::PolicyEngine::Create(*std::move(policy_settings));
  if (!policy.ok()) {
    log::Error("%s: %s", config->Source(), policy.status().message());
    return 1;
  }
  const net::SessionSettings session_settings = MakeSessionSettings(*config);

  // Listen addresses.
  reactor::ShardGroupOptions group_options;
  for (const std::string& text : config->List("moat_listen")) {
    absl::StatusOr<reactor::SocketAddress> address = reactor::SocketAddress::Parse(text);
    if (!address.ok()) {
      log::Error("%s: moat_listen: %s", config->Source(), address.status().message());
      return 1;
    }
    group_options.listen.push_back(*address);
  }
  int shards = static_cast<int>(config->Int("moat_shards"));
  if (shards <= 0) {
    shards = CpuCount();
  }
  group_options.shards = shards;

  // Recover every shard's spool on this (the control) thread, before any shard serves:
  // recovery reads and may truncate files, which must never run on a shard thread.
  const std::string spool_root = config->String("queue_directory") + "/spool";
  std::error_code ec;
  std::filesystem::create_directories(spool_root, ec);
  if (ec) {
    log::Error("cannot create %s: %s", spool_root, ec.message());
    return 1;
  }
  std::vector<std::unique_ptr<ShardRuntime>> runtimes;
  queue::LogReporter reporter;
  size_t recovered = 0;
  for (int i = 0; i < shards; ++i) {
    queue::SpoolOptions spool_options;
    spool_options.directory = absl::StrCat(spool_root, "/", i);
    spool_options.shard = static_cast<uint32_t>(i);
    absl::StatusOr<std::unique_ptr<queue::Spool>> spool =
        queue::Spool::Open(spool_options, reporter);
    if (!spool.ok()) {
      log::Error("spool %s: %s", spool_options.directory, spool.status().message());
      return 1;
    }
    recovered += (*spool)->index().pending_messages();
    auto runtime = std::make_unique<ShardRuntime>();
    runtime->spool = std::make_unique<ShardSpool>(*std::move(spool));
    runtimes.push_back(std::move(runtime));
  }
  if (recovered > 0) {
    log::Info("spool recovery: %d messages with undelivered recipients", recovered);
  }

  net::Policy* shared_policy = policy->get();
  const config::Config* cfg = config.get();
  group_options.on_start = [&runtimes, &session_settings, shared_policy, cfg](
                               reactor::Shard& shard) {
    ShardRuntime& rt = *runtimes[static_cast<size_t>(shard.index())];
    rt.spool->Attach(
        &shard.reactor(), [](net::SmtpSession& /*session*/) {},
        [](const queue::QueuedMessage& /*message*/) {});
    shard.SetHandlerFactory([&rt, &session_settings, shared_policy, cfg](
                                reactor::Connection& connection,
                                const reactor::ClientInfo& client)
                                -> std::unique_ptr<reactor::StreamHandler> {
      return std::make_unique<SessionHandler>(session_settings, *shared_policy, *rt.spool,
                                              MakeConnectionInfo(connection, client, *cfg));
    });
    shard.SetShutdownBarrier([&rt] { return rt.spool->Idle(); });
  };
  absl::StatusOr<std::unique_ptr<reactor::ShardGroup>> group =
      reactor::ShardGroup::Start(std::move(group_options));
  if (!group.ok()) {
    log::Error("cannot start: %s", group.status().message());
    return 1;
  }
  std::vector<std::string> listening;
  for (const reactor::SocketAddress& a : (*group)->listen_addresses()) {
    listening.push_back(a.ToString());
  }
  log::Info("daemon started: %d shards, listening on %s%s", shards,
            absl::StrJoin(listening, ", "),
            (*group)->steering() ? "" : " (no client-IP steering: kernel refused the program)");
  int status = (*group)->RunUntilShutdown(kShutdownGrace, [] {
    log::Warning("reload is not implemented yet: configuration unchanged");
  });
  log::Info("daemon stopped");
  return status;
}

}  // namespace moat::server
