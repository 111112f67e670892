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
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/config/config.h"
#include "core/log/log.h"
#include "core/reactor/shard_group.h"
#include "absl/synchronization/mutex.h"
#include "core/server/admin.h"
#include "core/server/control.h"
#include "core/server/delivery.h"
#include "core/server/queue_ops.h"
#include "core/server/session_handler.h"
#include "core/server/session_settings.h"
#include "core/server/shard_spool.h"
#include "core/table/live_tables.h"  // tables: lock-free table reload
#include "net/policy.h"
#include "net/policy_config.h"
#include "queue/queue_lock.h"
#include "queue/segment_reader.h"
#include "queue/spool.h"
#include "tls/client_context.h"
#include "tls/server_context.h"

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

// One configuration generation: the snapshot and what is built from it (session settings,
// the policy engine with its tables). Immutable and shared by the shards; a session pins the
// generation it started with (one refcount per connection), so a reload never changes the
// rules under a transaction. Tables (tables engineer): the policy's maps are live maps of
// table::LiveTables, so a changed table file applies to every session at its next lookup,
// and an old mapping is unmapped once every shard has passed a quiescent point.
struct Generation {
  uint64_t number = 0;
  std::shared_ptr<const config::Config> config;
  net::SessionSettings session_settings;
  std::unique_ptr<net::PolicyEngine> policy;
  // STARTTLS (tls engineer): the server TLS context, rebuilt per generation so new
  // certificates apply to new connections; null when smtpd_tls_security_level is none.
  std::shared_ptr<const tls::ServerContext> tls;
  // Outbound STARTTLS (outbound-tls): the client TLS context, rebuilt per generation so a
  // new smtp_tls_CAfile applies to new connections; null at smtp_tls_security_level none.
  std::shared_ptr<const tls::ClientContext> client_tls;
  // Implicit TLS (inbound-tls engineer): sessions on a "/tls" listener (no STARTTLS).
  net::SessionSettings implicit_tls_session_settings;
};

absl::StatusOr<std::shared_ptr<const Generation>> BuildGeneration(
    std::shared_ptr<const config::Config> config, uint64_t number, table::LiveTables& tables) {
  // Tables (tables engineer): every table is opened as a live map (see live_tables.h).
  absl::StatusOr<net::PolicySettings> policy_settings = net::BuildPolicySettings(
      *config, [&tables](std::string_view spec) -> absl::StatusOr<net::TablePtr> {
        return tables.Open(spec);
      });
  if (!policy_settings.ok()) {
    return policy_settings.status();
  }
  absl::StatusOr<std::unique_ptr<net::PolicyEngine>> policy =
      net::PolicyEngine::Create(*std::move(policy_settings));
  if (!policy.ok()) {
    return policy.status();
  }
  // STARTTLS (tls engineer): a TLS level without a usable certificate is a configuration
  // error (start-up fails; a reload keeps the previous generation).
  std::shared_ptr<const tls::ServerContext> tls_context;
  if (tls::SecurityLevelFromConfig(*config) != tls::SecurityLevel::kNone) {
    absl::StatusOr<tls::ServerOptions> tls_options = tls::ServerOptionsFromConfig(*config);
    if (!tls_options.ok()) {
      return tls_options.status();
    }
    absl::StatusOr<std::shared_ptr<const tls::ServerContext>> created =
        tls::ServerContext::Create(*std::move(tls_options));
    if (!created.ok()) {
      return created.status();
    }
    tls_context = *std::move(created);
  }
  // Implicit TLS (inbound-tls engineer): a "/tls" listener without TLS would serve
  // plaintext on a TLS port: a configuration error (a reload to it keeps the old one).
  for (const std::string& text : config->List("moat_listen")) {
    absl::StatusOr<config::ListenEntry> entry = config::ParseListenEntry(text);
    if (entry.ok() && entry->implicit_tls && tls_context == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "moat_listen: %s needs TLS: set smtpd_tls_security_level = may or encrypt and "
          "a certificate",
          text));
    }
  }
  auto generation = std::make_shared<Generation>();
  generation->tls = std::move(tls_context);
  // Outbound STARTTLS (outbound-tls): a bad level or unreadable CA file fails start-up or
  // the reload.
  absl::StatusOr<tls::ClientOptions> client_options = tls::ClientOptionsFromConfig(*config);
  if (!client_options.ok()) {
    return client_options.status();
  }
  if (client_options->level != tls::ClientLevel::kNone) {
    absl::StatusOr<std::shared_ptr<const tls::ClientContext>> client_tls =
        tls::ClientContext::Create(*std::move(client_options));
    if (!client_tls.ok()) {
      return client_tls.status();
    }
    generation->client_tls = *std::move(client_tls);
  }
  generation->number = number;
  generation->session_settings = MakeSessionSettings(*config);
  generation->implicit_tls_session_settings =
      ImplicitTlsSessionSettings(generation->session_settings);  // inbound-tls engineer
  generation->policy = *std::move(policy);
  generation->config = std::move(config);
  return std::shared_ptr<const Generation>(std::move(generation));
}

// Everything one shard owns besides what the reactor's Shard owns.
struct ShardRuntime {
  int index = 0;
  // Implicit TLS (inbound-tls engineer): per moat_listen entry (listener index), as
  // started; moat_listen changes need a restart.
  std::vector<bool> implicit_tls_listeners;
  // The generation new connections get. Shard thread only (set at start and by reloads).
  std::shared_ptr<const Generation> generation;
  std::unique_ptr<ShardSpool> spool;
  // The delivery side (scheduler, SMTP client connections) and its admin operations.
  std::unique_ptr<DeliveryPipeline> delivery;
  ShardQueueOps* queue_ops = nullptr;
  // Tables (tables engineer): quiesced at the end of every loop turn.
  table::TableSetReader* tables_reader = nullptr;
};

// Runs fn(runtime) on every shard's thread and collects the results (control thread; bounded
// wait: a shard that does not answer within `timeout` is missing from the result). The state
// is shared with the closures, so a late answer writes into memory that still exists.
template <typename T>
std::vector<T> AskShards(reactor::ShardGroup& group,
                         std::vector<std::unique_ptr<ShardRuntime>>& runtimes,
                         std::function<T(ShardRuntime&)> fn,
                         absl::Duration timeout = absl::Seconds(10)) {
  struct State {
    absl::Mutex mutex;
    std::vector<T> results ABSL_GUARDED_BY(mutex);
    int pending ABSL_GUARDED_BY(mutex) = 0;
  };
  auto state = std::make_shared<State>();
  int posted = 0;
  for (int i = 0; i < group.shards(); ++i) {
    ShardRuntime* rt = runtimes[static_cast<size_t>(i)].get();
    {
      absl::MutexLock lock(&state->mutex);
      ++state->pending;
    }
    bool ok = group.Post(i, [state, rt, fn](reactor::Shard& /*shard*/) {
      T result = fn(*rt);
      absl::MutexLock lock(&state->mutex);
      state->results.push_back(std::move(result));
      --state->pending;
    });
    if (!ok) {
      absl::MutexLock lock(&state->mutex);
      --state->pending;
    } else {
      ++posted;
    }
  }
  absl::MutexLock lock(&state->mutex);
  auto done = [&state]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mutex) {
    return state->pending == 0;
  };
  state->mutex.AwaitWithTimeout(absl::Condition(&done), timeout);
  return state->results;
}

QueueListEntry ListEntry(const ShardRuntime& rt, const queue::QueuedMessage& m) {
  QueueListEntry e;
  e.queue_id = m.envelope.queue_id;
  e.size = m.content_bytes;
  e.arrival_unix_us = m.envelope.arrival_unix_us;
  e.sender = m.envelope.sender;
  if (m.state == queue::MessageState::kHold) {
    e.status = '!';
  } else if (rt.queue_ops != nullptr) {
    e.status = rt.queue_ops->StatusMark(e.queue_id);
  }
  for (size_t i = 0; i < m.recipients.size() && i < m.envelope.recipients.size(); ++i) {
    if (queue::IsFinal(m.recipients[i])) {
      continue;
    }
    QueueListRecipient r;
    r.address = m.envelope.recipients[i].address;
    if (rt.queue_ops != nullptr) {
      r.reason = rt.queue_ops->LastReason(e.queue_id, i);
    }
    e.recipients.push_back(std::move(r));
  }
  return e;
}

// `moat queue show ID`: the envelope from the shard, the content read here on the control
// thread by scanning the segment read-only (never on a shard thread).
ControlReply ShowMessage(const queue::QueuedMessage& m, const std::string& segment_path) {
  std::string out = absl::StrCat("queue_id: ", m.envelope.queue_id, "\n",
                                 "arrival_unix_us: ", m.envelope.arrival_unix_us, "\n",
                                 "client: ", m.envelope.client_name, "[", m.envelope.client_ip,
                                 "]\n", "helo: ", m.envelope.helo, "\n",
                                 "protocol: ", m.envelope.protocol, "\n",
                                 "sender: <", m.envelope.sender, ">\n");
  for (size_t i = 0; i < m.envelope.recipients.size(); ++i) {
    const queue::Recipient& r = m.envelope.recipients[i];
    const char* state = "pending";
    if (i < m.recipients.size()) {
      switch (m.recipients[i]) {
        case queue::RecipientStatus::kPending:
          break;
        case queue::RecipientStatus::kDelivered:
          state = "delivered";
          break;
        case queue::RecipientStatus::kBounced:
          state = "bounced";
          break;
        case queue::RecipientStatus::kExpired:
          state = "expired";
          break;
      }
    }
    absl::StrAppend(&out, "recipient: <", r.address, "> resolved=<", r.resolved,
                    "> next_hop=", r.next_hop, " ", state, "\n");
  }
  std::string content;
  bool found = false;
  queue::ScanOptions scan;
  scan.truncate_torn_tail = false;
  queue::LogReporter reporter;
  auto scanned = queue::ScanSegment(
      segment_path, scan, reporter,
      [&](const queue::RecordHeader& /*header*/, uint64_t offset, std::string_view payload) {
        if (offset != m.location.offset) {
          return;
        }
        std::string_view body;
        if (queue::DecodeMessage(payload, &body).ok()) {
          content.assign(body);
          found = true;
        }
      });
  if (!scanned.ok() || !found) {
    return {false, absl::StrCat(m.envelope.queue_id, ": cannot read its content from ",
                                segment_path)};
  }
  absl::StrAppend(&out, "\n", content);
  return {true, out};
}

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
                                       const net::PolicyEngine& policy) {
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
  info.exempt_from_limits = policy.EventLimitExempt(info.client_ip);
  return info;
}

// Reloads main.cf and the tables (SIGHUP or `moat reload`): builds a new generation on the
// calling control-plane thread (table files are mapped and checked here), then publishes it
// to every shard through its inbox. On any error the running generation stays.
class Reloader {
 public:
  Reloader(config::MainCfLocation location, std::shared_ptr<const config::Config> running,
           table::LiveTables& tables)
      : location_(std::move(location)), running_(std::move(running)), tables_(tables) {}

  void SetGroup(reactor::ShardGroup* group) { group_ = group; }

  absl::Status Reload() {
    absl::MutexLock lock(&mutex_);
    config::LoadResult loaded = location_.use_embedded_default
                                    ? config::Config::LoadEmbeddedDefault(
                                          running_->String("queue_directory"))
                                    : config::LoadLocated(location_);
    LogDiagnostics(loaded.diagnostics);
    if (loaded.config == nullptr) {
      return absl::InvalidArgumentError(
          "the configuration has errors; the running configuration stays");
    }
    tables_.CheckForChanges();  // tables engineer: changed table files, before the build
    absl::StatusOr<std::shared_ptr<const Generation>> next =
        BuildGeneration(loaded.config, ++number_, tables_);
    if (!next.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          next.status().message(), "; the running configuration stays"));
    }
    for (const char* name : {"moat_listen", "moat_shards", "queue_directory",
                             "moat_control_socket"}) {
      if (loaded.config->String(name) != running_->String(name)) {
        log::Warning("reload: %s changed; it takes effect when moat restarts", name);
      }
    }
    if (group_ == nullptr || !group_->Reload(*next, absl::Seconds(10))) {
      return absl::UnavailableError("not every shard took the new configuration in time");
    }
    running_ = loaded.config;
    log::Info("reload: configuration generation %d in use (%s)", number_, running_->Source());
    return absl::OkStatus();
  }

 private:
  absl::Mutex mutex_;
  const config::MainCfLocation location_;
  std::shared_ptr<const config::Config> running_ ABSL_GUARDED_BY(mutex_);
  uint64_t number_ ABSL_GUARDED_BY(mutex_) = 1;
  reactor::ShardGroup* group_ = nullptr;
  table::LiveTables& tables_;
};

ControlReply HandleAdmin(reactor::ShardGroup& group,
                         std::vector<std::unique_ptr<ShardRuntime>>& runtimes,
                         Reloader& reloader, std::string_view line) {
  absl::StatusOr<AdminRequest> request = ParseAdminRequest(std::string(line));
  if (!request.ok()) {
    return {false, std::string(request.status().message())};
  }
  const std::string id = request->argument;
  switch (request->verb) {
    case AdminRequest::Verb::kList: {
      auto lists = AskShards<std::vector<QueueListEntry>>(group, runtimes, [](ShardRuntime& rt) {
        std::vector<QueueListEntry> entries;
        rt.spool->spool().index().ForEachPending(
            [&](const queue::QueuedMessage& m) { entries.push_back(ListEntry(rt, m)); });
        return entries;
      });
      std::vector<QueueListEntry> all;
      for (auto& list : lists) {
        for (auto& e : list) {
          all.push_back(std::move(e));
        }
      }
      return {true, FormatQueueList(std::move(all))};
    }
    case AdminRequest::Verb::kShow: {
      struct Found {
        bool found = false;
        queue::QueuedMessage message;
        std::string path;
      };
      auto found = AskShards<Found>(group, runtimes, [id](ShardRuntime& rt) {
        Found f;
        if (const queue::QueuedMessage* m = rt.spool->spool().index().Find(id)) {
          f.found = true;
          f.message = *m;
          f.path = rt.spool->spool().SegmentPath(m->location.segment);
        }
        return f;
      });
      for (const Found& f : found) {
        if (f.found) {
          return ShowMessage(f.message, f.path);
        }
      }
      return {false, absl::StrCat(id, ": no such message in the queue")};
    }
    case AdminRequest::Verb::kFlush:
    case AdminRequest::Verb::kDelete:
    case AdminRequest::Verb::kHold:
    case AdminRequest::Verb::kRelease: {
      const AdminRequest::Verb verb = request->verb;
      auto counts = AskShards<long>(group, runtimes, [verb, id](ShardRuntime& rt) -> long {
        if (rt.queue_ops == nullptr) {
          return -1;
        }
        switch (verb) {
          case AdminRequest::Verb::kFlush:
            rt.queue_ops->Flush();
            return 1;
          case AdminRequest::Verb::kDelete:
            return id == "ALL" ? static_cast<long>(rt.queue_ops->DeleteAll())
                               : (rt.queue_ops->Delete(id) ? 1 : 0);
          case AdminRequest::Verb::kHold:
            return rt.queue_ops->Hold(id) ? 1 : 0;
          case AdminRequest::Verb::kRelease:
            return rt.queue_ops->Release(id) ? 1 : 0;
          default:
            return 0;
        }
      });
      long total = 0;
      for (long c : counts) {
        if (c < 0) {
          return {false, "the delivery side is not running: queue operations are unavailable"};
        }
        total += c;
      }
      if (verb == AdminRequest::Verb::kFlush) {
        return {true, ""};
      }
      if (verb == AdminRequest::Verb::kDelete && id == "ALL") {
        return {true, absl::StrCat("Deleted: ", total, " message", total == 1 ? "" : "s", "\n")};
      }
      if (total == 0) {
        return {false, absl::StrCat(id, ": no such message in the queue")};
      }
      const char* done = verb == AdminRequest::Verb::kDelete ? "Deleted"
                         : verb == AdminRequest::Verb::kHold ? "Placed on hold"
                                                             : "Released from hold";
      return {true, absl::StrCat(done, ": 1 message\n")};
    }
    case AdminRequest::Verb::kStats: {
      DaemonStats stats;
      for (const reactor::ShardStats& s : group.CollectStats(absl::Seconds(10))) {
        ++stats.shards;
        stats.connections_open += s.connections;
        stats.connections_total += s.accepted;
        stats.connections_refused += s.refused;
        stats.bytes_in += s.bytes_in;
        stats.bytes_out += s.bytes_out;
      }
      auto parts = AskShards<DaemonStats>(group, runtimes, [](ShardRuntime& rt) {
        DaemonStats d;
        d.messages_accepted = rt.spool->committed_messages();
        d.spool_commits = rt.spool->commits();
        d.spool_journal_commits = rt.spool->journal_only_commits();
        d.spool_delayed_commits = rt.spool->delayed_batches();
        d.spool_segments_created = rt.spool->segments_created();
        d.spool_segments_recycled = rt.spool->segments_recycled();
        d.spool_segments_reclaimed = rt.spool->segments_reclaimed();
        d.queue_messages = rt.spool->spool().index().pending_messages();
        if (rt.queue_ops != nullptr) {
          rt.queue_ops->AddCounters(&d);
        }
        return d;
      });
      for (const DaemonStats& d : parts) {
        stats.messages_accepted += d.messages_accepted;
        stats.spool_commits += d.spool_commits;
        stats.spool_journal_commits += d.spool_journal_commits;
        stats.spool_delayed_commits += d.spool_delayed_commits;
        stats.spool_segments_created += d.spool_segments_created;
        stats.spool_segments_recycled += d.spool_segments_recycled;
        stats.spool_segments_reclaimed += d.spool_segments_reclaimed;
        stats.queue_messages += d.queue_messages;
        stats.delivered += d.delivered;
        stats.deferred += d.deferred;
        stats.bounced += d.bounced;
        stats.content_reads += d.content_reads;
      }
      return {true, FormatStats(stats)};
    }
    case AdminRequest::Verb::kReload: {
      absl::Status status = reloader.Reload();
      if (!status.ok()) {
        return {false, std::string(status.message())};
      }
      return {true, ""};
    }
  }
  return {false, "unhandled request"};
}

}  // namespace

int Serve(const ServeOptions& options) {
  // Before any thread exists, so every thread inherits the mask and only the main thread
  // takes SIGTERM/SIGINT/SIGHUP (ShardGroup::RunUntilShutdown).
  reactor::ShardGroup::BlockSignals();
  log::SetProgramName("moat");
  log::SetDebug(options.debug);
  // Shard threads hand their log lines to a writer thread: a slow stderr never blocks them.
  struct LogWriter {
    LogWriter() { log::StartWriter(); }
    ~LogWriter() { log::StopWriter(); }
  } log_writer;

  config::MainCfLocation location = config::LocateMainCf(options.config_dir);
  if (!location.error.empty()) {
    log::Error("%s", location.error);
    return 1;
  }
  config::LoadResult loaded;
  std::string demo_spool;
  if (location.use_embedded_default) {
    // A fixed temporary directory, so that `moat queue` and `moat stats` (which read the
    // same embedded default) find the demo daemon's control socket.
    demo_spool = std::string(config::kDemoQueueDirectory);
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

  // Tables (tables engineer): outlives every generation and the shards. Compiled files are
  // read on this control thread into huge-page memory (no disk waits and fewer TLB misses
  // on shard lookups; see core/table/README.md).
  table::OpenOptions table_options;
  table_options.huge_pages = true;
  table::LiveTables tables(table_options);
  // Policy and session settings: immutable, shared read-only by every shard.
  absl::StatusOr<std::shared_ptr<const Generation>> first = BuildGeneration(config, 1, tables);
  if (!first.ok()) {
    log::Error("%s: %s", config->Source(), first.status().message());
    return 1;
  }

  // Listen addresses.
  reactor::ShardGroupOptions group_options;
  std::vector<bool> implicit_tls_listeners;  // inbound-tls engineer: "ADDRESS:PORT/tls"
  for (const std::string& text : config->List("moat_listen")) {
    absl::StatusOr<config::ListenEntry> entry = config::ParseListenEntry(text);
    absl::StatusOr<reactor::SocketAddress> address =
        entry.ok() ? reactor::SocketAddress::Parse(entry->address)
                   : absl::StatusOr<reactor::SocketAddress>(entry.status());
    if (!address.ok()) {
      log::Error("%s: moat_listen: %s", config->Source(), address.status().message());
      return 1;
    }
    group_options.listen.push_back(*address);
    implicit_tls_listeners.push_back(entry->implicit_tls);
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
  // One daemon per queue directory, taken before anything is recovered; held until Serve()
  // returns (the kernel drops it if the process dies).
  absl::StatusOr<queue::QueueLock> queue_lock =
      queue::QueueLock::Acquire(config->String("queue_directory"));
  if (!queue_lock.ok()) {
    log::Error("%s", queue_lock.status().message());
    return 1;
  }
  std::vector<std::unique_ptr<ShardRuntime>> runtimes;
  queue::LogReporter reporter;
  size_t recovered = 0;
  for (int i = 0; i < shards; ++i) {
    queue::SpoolOptions spool_options;
    spool_options.directory = absl::StrCat(spool_root, "/", i);
    spool_options.shard = static_cast<uint32_t>(i);
    spool_options.direct_io = config->Bool("moat_spool_direct_io");
    absl::StatusOr<std::unique_ptr<queue::Spool>> spool =
        queue::Spool::Open(spool_options, reporter);
    if (!spool.ok()) {
      log::Error("spool %s: %s", spool_options.directory, spool.status().message());
      return 1;
    }
    recovered += (*spool)->index().pending_messages();
    auto runtime = std::make_unique<ShardRuntime>();
    runtime->index = i;
    runtime->implicit_tls_listeners = implicit_tls_listeners;  // inbound-tls engineer
    runtime->spool = std::make_unique<ShardSpool>(*std::move(spool));
    runtimes.push_back(std::move(runtime));
  }
  if (recovered > 0) {
    log::Info("spool recovery: %d messages with undelivered recipients", recovered);
  }

  for (auto& rt : runtimes) {
    rt->generation = *first;
    ShardRuntime* r = rt.get();
    // Next hops for the daemon's own messages (bounces): the generation's resolver.
    auto resolver = [r](std::string_view address) -> std::string {
      net::PolicyDecision failure;
      std::vector<net::ResolvedRecipient> resolved =
          r->generation->policy->Resolve(address, &failure);
      return resolved.empty() ? std::string() : resolved.front().next_hop;
    };
    rt->delivery = std::make_unique<DeliveryPipeline>(MakeDeliverySettings(*config, shards),
                                                      *rt->spool, resolver);
    rt->queue_ops = rt->delivery.get();
    rt->delivery->SetClientTls(rt->generation->client_tls);  // outbound-tls
    // Recovered messages go to the scheduler without their content: a delivery reads it back
    // from the spool on the shard's ring, so a large queue neither fills memory nor slows the
    // start.
    queue::Spool& spool = rt->spool->spool();
    std::vector<const queue::QueuedMessage*> pending;
    spool.index().ForEachPending([&](const queue::QueuedMessage& m) { pending.push_back(&m); });
    for (const queue::QueuedMessage* m : pending) {
      rt->delivery->AddRecovered(*m);
    }
  }
  group_options.on_start = [&runtimes, &tables](reactor::Shard& shard) {
    ShardRuntime& rt = *runtimes[static_cast<size_t>(shard.index())];
    // Tables (tables engineer): a quiescent point per loop turn. No view into a table
    // outlives a turn: the policy copies what it keeps into its decisions.
    rt.tables_reader = tables.RegisterReader();
    shard.reactor().AddTurnHook([reader = rt.tables_reader] { reader->Quiesce(); });
    rt.spool->Attach(&shard.reactor(), [&rt](const queue::QueuedMessage& message,
                                             std::shared_ptr<const std::string> content) {
      rt.delivery->OnDurable(message, std::move(content));
    });
    rt.delivery->Attach(&shard.reactor());
    shard.SetHandlerFactory([&rt](reactor::Connection& connection,
                                  const reactor::ClientInfo& client)
                                -> std::unique_ptr<reactor::StreamHandler> {
      std::shared_ptr<const Generation> g = rt.generation;
      net::ConnectionInfo info = MakeConnectionInfo(connection, client, *g->policy);
      // Implicit TLS (inbound-tls engineer): a "/tls" listener, or every listener with
      // smtpd_tls_wrappermode.
      const uint32_t listener = connection.listener_index();
      const bool implicit_tls =
          (listener < rt.implicit_tls_listeners.size() && rt.implicit_tls_listeners[listener]) ||
          (g->tls != nullptr && g->tls->options().wrapper_mode);
      const net::SessionSettings& settings =
          implicit_tls ? g->implicit_tls_session_settings : g->session_settings;
      net::Policy& policy = *g->policy;
      std::shared_ptr<const tls::ServerContext> tls = g->tls;  // tls engineer
      return std::make_unique<SessionHandler>(settings, policy, *rt.spool, std::move(info),
                                              std::move(g), std::move(tls), implicit_tls);
    });
    shard.SetReloadHandler([&rt](std::shared_ptr<const void> snapshot) {
      rt.generation = std::static_pointer_cast<const Generation>(std::move(snapshot));
      rt.delivery->SetClientTls(rt.generation->client_tls);  // outbound-tls
    });
    // At shutdown: every staged record (messages, journal) on disk, and the outbound
    // connections told QUIT (bounded by the shard's barrier_wait_max).
    shard.SetShutdownBarrier([&rt] {
      rt.delivery->Stop();
      rt.spool->Flush();  // nothing staged waits any more (ShardSpool: journal, commit delay)
      return rt.spool->Idle() && rt.delivery->Idle();
    });
  };
  group_options.on_stop = [&runtimes, &tables](reactor::Shard& shard) {  // tables engineer
    ShardRuntime& rt = *runtimes[static_cast<size_t>(shard.index())];
    if (rt.tables_reader != nullptr) {
      tables.UnregisterReader(rt.tables_reader);
    }
  };
  absl::StatusOr<std::unique_ptr<reactor::ShardGroup>> group =
      reactor::ShardGroup::Start(std::move(group_options));
  if (!group.ok()) {
    log::Error("cannot start: %s", group.status().message());
    return 1;
  }
  reactor::ShardGroup* running = group->get();
  Reloader reloader(location, config, tables);
  reloader.SetGroup(running);
  // Tables (tables engineer): stat the table files every moat_table_check_interval; after a
  // publish, wake every shard (an empty task) so that each passes a quiescent point soon.
  tables.StartWatching(config->Time("moat_table_check_interval"), [running, shards] {
    for (int i = 0; i < shards; ++i) {
      running->Post(i, [](reactor::Shard& /*shard*/) {});
    }
  });
  const std::string control_path = config->String("moat_control_socket");
  absl::StatusOr<std::unique_ptr<ControlServer>> control = ControlServer::Start(
      control_path, [running, &runtimes, &reloader](std::string_view line) {
        return HandleAdmin(*running, runtimes, reloader, line);
      });
  if (!control.ok()) {
    log::Error("control socket: %s", control.status().message());
    tables.StopWatching();  // tables engineer: it posts to the shards
    running->BeginShutdown(absl::ZeroDuration());
    running->Join(absl::Seconds(30));
    return 1;
  }
  std::vector<std::string> listening;
  for (const reactor::SocketAddress& a : (*group)->listen_addresses()) {
    listening.push_back(a.ToString());
  }
  log::Info("daemon started: %d shards, listening on %s%s", shards,
            absl::StrJoin(listening, ", "),
            (*group)->steering() ? "" : " (no client-IP steering: kernel refused the program)");
  int status = (*group)->RunUntilShutdown(kShutdownGrace, [&reloader] {
    absl::Status reloaded = reloader.Reload();
    if (!reloaded.ok()) {
      log::Error("reload: %s", reloaded.message());
    }
  });
  control->reset();  // no admin request may reach the shards once they are gone
  tables.StopWatching();  // tables engineer: it posts to the shards
  log::StopWriter();  // the shards' last lines go out before this one
  log::Info("daemon stopped");
  return status;
}

}  // namespace moat::server
