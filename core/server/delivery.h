// core/server/delivery.h
//
// One shard's outbound side: the scheduler (queue/sched) fed by the shard's spool, driving
// SMTP client conversations (net/client) over the shard's io_uring, with a connection cache,
// and writing every final outcome to the spool's journal (group-committed with the spool's
// other records) so a restart never delivers a recipient twice that was journaled as done.
//
//   spool (durable message) --OnDurable--> Scheduler --NextWork--> Job
//   Job --(smtp/relay)--> OutboundConnection: connect, EHLO, PIPELINING, DATA ... results
//   Job --(error:/discard:)--> results at once
//   results --> Scheduler::OnResult --> log lines, journal outcomes, bounces (RFC 3464, as
//   new messages through the spool, from the null sender), "removed"
//
// Message content stays in memory from acceptance until the message is final (the session
// handed it over; no re-read) as long as the shard's queued content fits its share of
// moat_queue_content_memory. Beyond that (a downstream outage piling mail up, a restart with a
// large queue), content is dropped from memory (new messages at once, others when deferred) and
// read back from the spool on the ring (openat, read, close; checksum verified) when a delivery
// or a bounce needs it. Recovered messages start without content. Memory for queued mail is so
// bounded by the budget plus the messages in delivery.
//
// Owner: its shard thread; not thread-safe (the control thread reaches it only through the
// shard's inbox). Parses untrusted input only inside SmtpClientSession (server replies).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "core/config/config.h"
#include "core/reactor/reactor.h"
#include "core/reactor/timer_wheel.h"
#include "core/server/queue_ops.h"
#include "core/server/shard_spool.h"
#include "net/client/connection_cache.h"
#include "net/client/next_hop.h"
#include "net/client/smtp_client_session.h"
#include "queue/sched/dsn.h"
#include "queue/sched/scheduler.h"
#include "tls/client_context.h"
#include "tls/session_cache.h"

namespace moat::server {

class OutboundConnection;
class ContentLoad;

struct DeliverySettings {
  sched::SchedulerConfig scheduler;
  client::ClientTimeouts timeouts;
  client::ClientOptions client;  // smtp_discard_ehlo_keywords
  client::ConnectionCacheLimits cache;
  std::string helo_name;   // smtp_helo_name ($myhostname)
  std::string myhostname;  // for bounces
  uint64_t content_memory = uint64_t{256} << 20;  // this shard's share of the content budget
};
DeliverySettings MakeDeliverySettings(const config::Config& config, int shard_count);

class DeliveryPipeline final : public ShardQueueOps {
 public:
  // Resolves an address to its next hop ("smtp:[10.0.0.5]:25"), for bounces.
  using Resolver = std::function<std::string(std::string_view address)>;

  DeliveryPipeline(DeliverySettings settings, ShardSpool& spool, Resolver resolver);
  ~DeliveryPipeline() override;
  DeliveryPipeline(const DeliveryPipeline&) = delete;
  DeliveryPipeline& operator=(const DeliveryPipeline&) = delete;

  // A message found by recovery; its content is read back when a delivery needs it. Call
  // before Attach.
  void AddRecovered(const queue::QueuedMessage& message);
  // Binds to the shard's reactor (turn hook, timer). Shard thread.
  void Attach(reactor::Reactor* reactor);
  // A message the spool made durable, with its content. Shard thread.
  void OnDurable(const queue::QueuedMessage& message, std::shared_ptr<const std::string> content);
  // Outbound STARTTLS (outbound-tls): the client TLS context of the configuration
  // generation in use (null: smtp_tls_security_level = none). New connections take the
  // context current when they open; a cached connection is reused only by jobs with the
  // same TLS level. Shard thread (start-up and every reload).
  void SetClientTls(std::shared_ptr<const tls::ClientContext> context) {
    client_tls_ = std::move(context);
  }
  // Closes cached connections (shutdown). Shard thread.
  void Stop();
  bool Idle() const;

  // ShardQueueOps
  void Flush() override;
  bool Delete(std::string_view queue_id) override;
  size_t DeleteAll() override;
  bool Hold(std::string_view queue_id) override;
  bool Release(std::string_view queue_id) override;
  char StatusMark(std::string_view queue_id) const override;
  std::string LastReason(std::string_view queue_id, size_t recipient) const override;
  void AddCounters(DaemonStats* stats) const override;

 private:
  friend class OutboundConnection;
  friend class ContentLoad;
  struct WaitingJob {
    sched::Job job;
    bool plaintext = false;
  };
  struct Message {
    uint64_t sequence = 0;  // the spool record's sequence (journal key)
    std::string sender;
    std::string envid;
    bool ret_full = false;
    bool eight_bit = false;
    bool smtputf8 = false;
    absl::Time arrival;
    std::vector<int> spool_index;          // scheduler recipient -> spool recipient
    std::vector<std::string> last_reason;  // per spool recipient
    uint64_t content_size = 0;
    std::shared_ptr<const std::string> content;  // null: on disk only (read back when needed)
    std::vector<WaitingJob> waiting;  // jobs that wait for the content to be read back
  };

  void Enqueue(const queue::QueuedMessage& message, std::shared_ptr<const std::string> content);
  void OnTurn();
  void ArmWakeup();
  // `plaintext`: no STARTTLS whatever the level (outbound-tls: the retry after a failed
  // handshake at smtp_tls_security_level = may).
  void StartJob(sched::Job job, bool plaintext = false);
  void FinishLocally(const sched::Job& job, client::Outcome outcome, std::string dsn,
                     std::string reason);
  // The results of one job: log, tell the scheduler, journal and notify what became final.
  void OnJobDone(const sched::Job& job, const std::vector<client::RecipientResult>& results,
                 const OutboundConnection* connection);
  void ProcessSchedulerOutput();
  void Finish(const sched::FinishedMessage& finished);
  // RFC 3464 notifications to the sender (failure: a bounce; delay: delay_warning_time;
  // success: NOTIFY=SUCCESS relayed to a next hop without DSN). Notify() checks that one is
  // due (NOTIFY, null sender), then sends it with the original from `content`, or reads the
  // original back from the spool first when the message is on disk only.
  sched::DsnRequest NotificationFor(std::string_view queue_id, const Message& message,
                                    sched::DsnKind kind,
                                    const std::vector<sched::FinalRecipient>& recipients) const;
  void Notify(sched::DsnRequest request, const std::shared_ptr<const std::string>& content);
  void SendNotification(sched::DsnRequest& request);
  void Journal(const Message& message, std::string_view queue_id, int spool_recipient,
               queue::Outcome outcome, std::string_view detail);
  void OfferIdle(OutboundConnection* connection);
  void Retire(OutboundConnection* connection);
  void MaybeReclaim();
  // Content kept in memory, within the budget. Keep/Drop adjust content_bytes_.
  void KeepContent(Message& message, std::shared_ptr<const std::string> content);
  void DropContent(Message& message);
  // Starts reading the message's content back from its spool record, unless that runs already.
  void LoadContent(const std::string& id);
  void OnContentLoaded(const std::string& id, absl::StatusOr<std::string> content);

  DeliverySettings settings_;
  ShardSpool& spool_;
  Resolver resolver_;
  reactor::Reactor* reactor_ = nullptr;
  sched::Scheduler scheduler_;
  client::ConnectionCache cache_;
  // outbound-tls: sessions to resume, by destination and TLS level (not at verify: a resumed
  // session brings no certificate to verify again). Before connections_: their TLS layers
  // hand their sessions here when they go away.
  tls::ClientSessionCache tls_sessions_;
  std::shared_ptr<const tls::ClientContext> client_tls_;  // outbound-tls
  reactor::Timer wakeup_;
  bool dirty_ = true;
  bool stopping_ = false;
  bool abandoning_ = false;
  uint64_t next_connection_id_ = 1;
  // alloc: one entry per queued message of this shard (bounded by the spool).
  absl::flat_hash_map<std::string, Message> messages_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<OutboundConnection>> connections_;
  std::vector<std::unique_ptr<OutboundConnection>> retired_;
  // Content read back from the spool: one load per message at a time.
  absl::flat_hash_map<std::string, std::unique_ptr<ContentLoad>> loads_;
  std::vector<std::unique_ptr<ContentLoad>> finished_loads_;
  // Notifications waiting for their original to be read back, by queue id.
  absl::flat_hash_map<std::string, std::vector<sched::DsnRequest>> pending_notices_;
  uint64_t content_bytes_ = 0;
  uint64_t content_reads_ = 0;
  absl::Time last_reclaim_ = absl::InfinitePast();       // of the idle reclaim (current too)
  absl::Time last_busy_reclaim_ = absl::InfinitePast();  // of segments behind the current one
  static constexpr absl::Duration kBusyReclaimInterval = absl::Milliseconds(100);
  bool reclaim_due_ = false;
  uint64_t delivered_ = 0;
  uint64_t deferred_ = 0;
  uint64_t bounced_ = 0;
};

}  // namespace moat::server
