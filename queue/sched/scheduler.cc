// queue/sched/scheduler.cc: see scheduler.h. Owned by: outbound.
#include "queue/sched/scheduler.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"

#include "core/log/assert.h"
#include "core/log/log.h"

namespace moat::sched {

struct Scheduler::Message {
  QueuedMessage spec;
  std::vector<RecipientState> state;
  std::vector<RecipientResult> last;  // the latest result per recipient
  Where where = Where::kIncoming;
  absl::Time next_attempt = absl::InfinitePast();
  absl::Time active_since = absl::InfinitePast();
  int in_flight_jobs = 0;
  int queued_entries = 0;
  bool hold_requested = false;
  bool delete_requested = false;
  bool warned = false;
};

struct Scheduler::Destination {
  std::string key;
  std::string transport;
  std::string nexthop;
  int limit = 1;
  int recipient_limit = 1;
  int in_flight = 0;
  std::deque<Entry> queue;
  int consecutive_failures = 0;
  absl::Time dead_until = absl::InfinitePast();
  RecipientResult dead_result;  // what suspended recipients are deferred with
};

int PerShardLimit(int limit, int shards) {
  if (shards < 1) {
    shards = 1;
  }
  return std::max(1, (limit + shards - 1) / shards);
}

std::string_view DeliveryStatusName(DeliveryStatus status) {
  switch (status) {
    case DeliveryStatus::kSent:
      return "sent";
    case DeliveryStatus::kDeferred:
      return "deferred";
    case DeliveryStatus::kBounced:
      return "bounced";
  }
  return "deferred";
}

std::vector<DsnRecipient> DsnRecipientsFor(const std::vector<FinalRecipient>& recipients,
                                           DsnKind kind) {
  std::vector<DsnRecipient> out;
  for (const FinalRecipient& r : recipients) {
    DsnRecipient d;
    d.address = r.address;
    d.original = r.orcpt;
    d.notify = r.notify;
    d.status = r.result.dsn;
    d.remote_mta = r.result.remote_mta;
    d.reply = r.result.reply;
    d.reason = r.result.reason;
    switch (kind) {
      case DsnKind::kFailure:
        if (r.result.status != DeliveryStatus::kBounced) {
          continue;
        }
        d.action = DsnAction::kFailed;
        break;
      case DsnKind::kDelay:
        if (r.result.status != DeliveryStatus::kDeferred) {
          continue;
        }
        d.action = DsnAction::kDelayed;
        break;
      case DsnKind::kSuccess:
        // When the next hop took NOTIFY it reports success itself (Postfix).
        if (r.result.status != DeliveryStatus::kSent || r.result.remote_dsn) {
          continue;
        }
        d.action = DsnAction::kRelayed;
        break;
    }
    out.push_back(std::move(d));
  }
  return out;
}

Scheduler::Scheduler(SchedulerConfig config) : config_(std::move(config)) {
  if (config_.maximal_backoff_time < config_.minimal_backoff_time) {
    log::Warning("maximal_backoff_time %s is less than minimal_backoff_time %s; using %s",
                 absl::FormatDuration(config_.maximal_backoff_time),
                 absl::FormatDuration(config_.minimal_backoff_time),
                 absl::FormatDuration(config_.minimal_backoff_time));
    config_.maximal_backoff_time = config_.minimal_backoff_time;
  }
  config_.active_message_limit = std::max<size_t>(1, config_.active_message_limit);
  config_.destination_failure_limit = std::max(0, config_.destination_failure_limit);
}
Scheduler::~Scheduler() = default;

int Scheduler::ConcurrencyLimit(const std::string& transport) const {
  auto it = config_.destination_concurrency_limit.find(transport);
  const int limit = it != config_.destination_concurrency_limit.end()
                        ? it->second
                        : config_.default_destination_concurrency_limit;
  return PerShardLimit(limit, config_.shard_count);
}

int Scheduler::RecipientLimit(const std::string& transport) const {
  auto it = config_.destination_recipient_limit.find(transport);
  const int limit = it != config_.destination_recipient_limit.end()
                        ? it->second
                        : config_.default_destination_recipient_limit;
  return std::max(1, limit);
}

absl::Status Scheduler::Enqueue(QueuedMessage message, absl::Time now) {
  if (message.recipients.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: message without recipients", message.id));
  }
  if (messages_.contains(message.id)) {
    return absl::AlreadyExistsError(absl::StrFormat("%s: already queued", message.id));
  }
  auto m = std::make_unique<Message>();
  const size_t n = message.recipients.size();
  m->spec = std::move(message);
  m->state.assign(n, RecipientState::kWaiting);
  m->last.assign(n, RecipientResult{});
  m->where = Where::kIncoming;
  const std::string id = m->spec.id;
  messages_.emplace(id, std::move(m));
  incoming_.push_back(id);
  Admit(now);
  return absl::OkStatus();
}

void Scheduler::Admit(absl::Time now) {
  while (active_count_ < config_.active_message_limit && !incoming_.empty()) {
    const std::string id = std::move(incoming_.front());
    incoming_.pop_front();
    auto it = messages_.find(id);
    if (it == messages_.end() || it->second->where != Where::kIncoming) {
      continue;
    }
    Activate(*it->second, now);
  }
  if (now < next_scan_) {
    return;
  }
  // The deferred-queue scan: every message whose next attempt has come, while the
  // active queue has room. A scan that ran out of room continues on the next call.
  while (active_count_ < config_.active_message_limit && !deferred_.empty() &&
         deferred_.begin()->first <= now) {
    const std::string id = deferred_.begin()->second;
    deferred_.erase(deferred_.begin());
    auto it = messages_.find(id);
    MOAT_CHECK(it != messages_.end());
    Activate(*it->second, now);
  }
  const bool scan_complete = deferred_.empty() || deferred_.begin()->first > now;
  if (scan_complete) {
    next_scan_ = now + config_.queue_run_delay;
    // Forget destinations with nothing queued, nothing in flight and no bad record.
    std::vector<Destination*> keep;
    for (Destination* d : rotation_) {
      if (d->queue.empty() && d->in_flight == 0 && d->consecutive_failures == 0 &&
          d->dead_until <= now) {
        destinations_.erase(d->key);
      } else {
        keep.push_back(d);
      }
    }
    rotation_ = std::move(keep);
    cursor_ = 0;
  }
}

Scheduler::Destination& Scheduler::GetDestination(const std::string& transport,
                                                  const std::string& nexthop) {
  const std::string key = absl::StrFormat("%s:%s", transport, nexthop);
  auto it = destinations_.find(key);
  if (it != destinations_.end()) {
    return *it->second;
  }
  auto d = std::make_unique<Destination>();
  d->key = key;
  d->transport = transport;
  d->nexthop = nexthop;
  d->limit = ConcurrencyLimit(transport);
  d->recipient_limit = RecipientLimit(transport);
  Destination* raw = d.get();
  destinations_.emplace(key, std::move(d));
  rotation_.push_back(raw);
  return *raw;
}

void Scheduler::Activate(Message& m, absl::Time now) {
  m.where = Where::kActive;
  m.active_since = now;
  ++active_count_;
  // Group the pending recipients by destination, keeping their order, then cut each
  // group into transactions of at most the destination's recipient limit.
  std::vector<std::pair<Destination*, std::vector<int>>> groups;
  for (size_t i = 0; i < m.state.size(); ++i) {
    if (m.state[i] != RecipientState::kWaiting) {
      continue;
    }
    const QueuedRecipient& r = m.spec.recipients[i];
    Destination* d = &GetDestination(r.transport, r.nexthop);
    auto g = std::find_if(groups.begin(), groups.end(),
                          [d](const auto& group) { return group.first == d; });
    if (g == groups.end()) {
      groups.emplace_back(d, std::vector<int>{});
      g = groups.end() - 1;
    }
    g->second.push_back(static_cast<int>(i));
    m.state[i] = RecipientState::kQueued;
  }
  for (auto& [d, indices] : groups) {
    const size_t limit = static_cast<size_t>(d->recipient_limit);
    for (size_t start = 0; start < indices.size(); start += limit) {
      Entry e;
      e.message_id = m.spec.id;
      e.recipients.assign(
          indices.begin() + static_cast<std::ptrdiff_t>(start),
          indices.begin() + static_cast<std::ptrdiff_t>(std::min(indices.size(), start + limit)));
      d->queue.push_back(std::move(e));
      ++m.queued_entries;
    }
  }
  if (m.queued_entries == 0) {
    MaybeFinishRound(m.spec.id, now);
  }
}

std::optional<Job> Scheduler::NextWork(absl::Time now) {
  Admit(now);
  const size_t n = rotation_.size();
  for (size_t step = 0; step < n; ++step) {
    if (rotation_.empty()) {
      break;
    }
    Destination& d = *rotation_[(cursor_ + step) % rotation_.size()];
    if (d.queue.empty()) {
      continue;
    }
    if (d.dead_until > now) {
      Suspend(d, now);
      continue;
    }
    if (d.in_flight >= d.limit) {
      continue;
    }
    Entry e = std::move(d.queue.front());
    d.queue.pop_front();
    auto it = messages_.find(e.message_id);
    MOAT_CHECK(it != messages_.end());
    Message& m = *it->second;
    --m.queued_entries;
    ++m.in_flight_jobs;
    ++d.in_flight;
    Job job;
    job.id = next_job_id_++;
    job.message_id = m.spec.id;
    job.sender = m.spec.sender;
    job.transport = d.transport;
    job.nexthop = d.nexthop;
    job.destination = d.key;
    job.arrival = m.spec.arrival;
    job.active = m.active_since;
    job.handoff = now;
    for (int i : e.recipients) {
      m.state[i] = RecipientState::kInFlight;
      const QueuedRecipient& r = m.spec.recipients[i];
      job.recipients.push_back(JobRecipient{i, r.address, r.notify, r.orcpt});
    }
    jobs_.emplace(job.id, JobRecord{m.spec.id, d.key, std::move(e.recipients)});
    cursor_ = (cursor_ + step + 1) % rotation_.size();
    return job;
  }
  return std::nullopt;
}

void Scheduler::Suspend(Destination& d, absl::Time now) {
  std::vector<std::string> touched;
  RecipientResult r = d.dead_result;
  r.reason = "delivery temporarily suspended: " + d.dead_result.reason;
  r.status = DeliveryStatus::kDeferred;
  while (!d.queue.empty()) {
    Entry e = std::move(d.queue.front());
    d.queue.pop_front();
    auto it = messages_.find(e.message_id);
    MOAT_CHECK(it != messages_.end());
    Message& m = *it->second;
    --m.queued_entries;
    for (int i : e.recipients) {
      m.state[i] = RecipientState::kWaiting;
      m.last[i] = r;
      events_.push_back(SchedulerEvent{m.spec.id, i, m.spec.recipients[i].address, r,
                                       m.spec.arrival, m.active_since, now});
    }
    touched.push_back(e.message_id);
  }
  for (const std::string& id : touched) {
    MaybeFinishRound(id, now);
  }
}

void Scheduler::OnResult(uint64_t job_id, const std::vector<RecipientResult>& results,
                         absl::Time now) {
  auto job_it = jobs_.find(job_id);
  if (job_it == jobs_.end()) {
    log::Warning("scheduler: result for unknown job %d ignored", job_id);
    return;
  }
  JobRecord job = std::move(job_it->second);
  jobs_.erase(job_it);

  auto d_it = destinations_.find(job.destination);
  MOAT_CHECK(d_it != destinations_.end());
  Destination& d = *d_it->second;
  --d.in_flight;

  // Destination health: only a job that failed entirely at the connection level counts
  // against it; anything the server answered per recipient proves it alive.
  const bool all_site_failures =
      !results.empty() && std::all_of(results.begin(), results.end(), [](const auto& r) {
        return r.status == DeliveryStatus::kDeferred && r.site_failure;
      });
  if (all_site_failures) {
    ++d.consecutive_failures;
    if (config_.destination_failure_limit > 0 &&
        d.consecutive_failures >= config_.destination_failure_limit && d.dead_until <= now) {
      d.dead_until = now + config_.minimal_backoff_time;
      d.dead_result = results.front();
      log::Info("destination %s is dead for %s: %s", d.key,
                absl::FormatDuration(config_.minimal_backoff_time), results.front().reason);
      Suspend(d, now);
    }
  } else if (!results.empty()) {
    d.consecutive_failures = 0;
    d.dead_until = absl::InfinitePast();
  }

  auto m_it = messages_.find(job.message_id);
  if (m_it == messages_.end()) {
    return;  // deleted meanwhile
  }
  Message& m = *m_it->second;
  --m.in_flight_jobs;
  for (size_t k = 0; k < job.recipients.size(); ++k) {
    const int i = job.recipients[k];
    RecipientResult r;
    if (k < results.size()) {
      r = results[k];
    } else {
      // A driver bug must not lose the recipient: try again later.
      MOAT_DCHECK(false);
      r = RecipientResult{DeliveryStatus::kDeferred,
                          "4.3.0",
                          "no result from delivery agent",
                          "",
                          "",
                          false,
                          false};
    }
    m.last[i] = r;
    m.state[i] =
        r.status == DeliveryStatus::kDeferred ? RecipientState::kWaiting : RecipientState::kDone;
  }
  MaybeFinishRound(job.message_id, now);
}

void Scheduler::MaybeFinishRound(const std::string& id, absl::Time now) {
  auto it = messages_.find(id);
  if (it == messages_.end()) {
    return;
  }
  Message& m = *it->second;
  if (m.where != Where::kActive || m.in_flight_jobs > 0 || m.queued_entries > 0) {
    return;
  }
  --active_count_;
  if (m.delete_requested) {
    Erase(id);
    return;
  }
  const bool pending = std::any_of(m.state.begin(), m.state.end(),
                                   [](RecipientState s) { return s == RecipientState::kWaiting; });
  if (!pending) {
    Finish(m, false);
    return;
  }
  const absl::Duration age = now - m.spec.arrival;
  const absl::Duration lifetime =
      m.spec.sender.empty() ? config_.bounce_queue_lifetime : config_.maximal_queue_lifetime;
  if (age >= lifetime) {
    // Return the deferred recipients to the sender with their last reason (Postfix keeps
    // the 4.x.x status in the bounce: the failure was never permanent).
    for (size_t i = 0; i < m.state.size(); ++i) {
      if (m.state[i] == RecipientState::kWaiting) {
        m.state[i] = RecipientState::kDone;
        m.last[i].status = DeliveryStatus::kBounced;
      }
    }
    Finish(m, true);
    return;
  }
  if (config_.delay_warning_time > absl::ZeroDuration() && !m.warned &&
      age >= config_.delay_warning_time) {
    m.warned = true;
    DelayWarning w{m.spec.id, m.spec.sender, m.spec.arrival, {}};
    for (size_t i = 0; i < m.state.size(); ++i) {
      if (m.state[i] == RecipientState::kWaiting) {
        const QueuedRecipient& r = m.spec.recipients[i];
        w.recipients.push_back(
            FinalRecipient{static_cast<int>(i), r.address, r.notify, r.orcpt, m.last[i]});
      }
    }
    warnings_.push_back(std::move(w));
  }
  if (m.hold_requested) {
    m.where = Where::kHeld;
    return;
  }
  const absl::Duration backoff =
      std::clamp(age, config_.minimal_backoff_time, config_.maximal_backoff_time);
  m.where = Where::kDeferred;
  m.next_attempt = now + backoff;
  deferred_.emplace(m.next_attempt, m.spec.id);
}

void Scheduler::Finish(Message& m, bool expired) {
  FinishedMessage f{m.spec.id, m.spec.sender, m.spec.arrival, expired, {}};
  for (size_t i = 0; i < m.state.size(); ++i) {
    const QueuedRecipient& r = m.spec.recipients[i];
    f.recipients.push_back(
        FinalRecipient{static_cast<int>(i), r.address, r.notify, r.orcpt, m.last[i]});
  }
  finished_.push_back(std::move(f));
  Erase(m.spec.id);
}

void Scheduler::Erase(const std::string& id) {
  messages_.erase(id);
}

void Scheduler::Unqueue(Message& m) {
  for (Destination* d : rotation_) {
    for (auto e = d->queue.begin(); e != d->queue.end();) {
      if (e->message_id != m.spec.id) {
        ++e;
        continue;
      }
      for (int i : e->recipients) {
        m.state[i] = RecipientState::kWaiting;
      }
      --m.queued_entries;
      e = d->queue.erase(e);
    }
  }
}

absl::Time Scheduler::NextWakeup() const {
  absl::Time t = absl::InfiniteFuture();
  if (!deferred_.empty()) {
    t = std::max(next_scan_, deferred_.begin()->first);
  }
  for (const Destination* d : rotation_) {
    if (!d->queue.empty() && d->dead_until != absl::InfinitePast()) {
      t = std::min(t, d->dead_until);
    }
  }
  return t;
}

void Scheduler::Flush(absl::Time now) {
  std::set<std::pair<absl::Time, std::string>> due;
  for (const auto& [when, id] : deferred_) {
    due.emplace(now, id);
    messages_.at(id)->next_attempt = now;
  }
  deferred_ = std::move(due);
  for (Destination* d : rotation_) {
    d->dead_until = absl::InfinitePast();
    d->consecutive_failures = 0;
  }
  next_scan_ = absl::InfinitePast();
}

absl::Status Scheduler::Hold(const std::string& id, absl::Time now) {
  auto it = messages_.find(id);
  if (it == messages_.end()) {
    return absl::NotFoundError(absl::StrFormat("%s: no such message", id));
  }
  Message& m = *it->second;
  switch (m.where) {
    case Where::kHeld:
      return absl::OkStatus();
    case Where::kIncoming:
      incoming_.erase(std::find(incoming_.begin(), incoming_.end(), id));
      m.where = Where::kHeld;
      return absl::OkStatus();
    case Where::kDeferred:
      deferred_.erase({m.next_attempt, id});
      m.where = Where::kHeld;
      return absl::OkStatus();
    case Where::kActive:
      m.hold_requested = true;
      Unqueue(m);
      if (m.in_flight_jobs == 0) {
        --active_count_;
        m.where = Where::kHeld;
      }
      (void)now;
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status Scheduler::Release(const std::string& id, absl::Time now) {
  auto it = messages_.find(id);
  if (it == messages_.end()) {
    return absl::NotFoundError(absl::StrFormat("%s: no such message", id));
  }
  Message& m = *it->second;
  if (m.where == Where::kActive && m.hold_requested) {
    m.hold_requested = false;  // still finishing its round: it will be deferred normally
    return absl::OkStatus();
  }
  if (m.where != Where::kHeld) {
    return absl::FailedPreconditionError(absl::StrFormat("%s: not on hold", id));
  }
  m.hold_requested = false;
  m.where = Where::kDeferred;
  m.next_attempt = now;
  deferred_.emplace(now, id);
  next_scan_ = absl::InfinitePast();
  return absl::OkStatus();
}

absl::Status Scheduler::Delete(const std::string& id, absl::Time now) {
  auto it = messages_.find(id);
  if (it == messages_.end()) {
    return absl::NotFoundError(absl::StrFormat("%s: no such message", id));
  }
  Message& m = *it->second;
  switch (m.where) {
    case Where::kIncoming:
      incoming_.erase(std::find(incoming_.begin(), incoming_.end(), id));
      break;
    case Where::kDeferred:
      deferred_.erase({m.next_attempt, id});
      break;
    case Where::kHeld:
      break;
    case Where::kActive:
      Unqueue(m);
      if (m.in_flight_jobs > 0) {
        m.delete_requested = true;  // erased when its jobs report back
        return absl::OkStatus();
      }
      --active_count_;
      break;
  }
  (void)now;
  Erase(id);
  return absl::OkStatus();
}

std::vector<SchedulerEvent> Scheduler::TakeEvents() {
  return std::exchange(events_, {});
}
std::vector<FinishedMessage> Scheduler::TakeFinished() {
  return std::exchange(finished_, {});
}
std::vector<DelayWarning> Scheduler::TakeDelayWarnings() {
  return std::exchange(warnings_, {});
}

std::optional<Scheduler::MessageView> Scheduler::Find(const std::string& id) const {
  auto it = messages_.find(id);
  if (it == messages_.end() || it->second->delete_requested) {
    return std::nullopt;
  }
  const Message& m = *it->second;
  const int pending = static_cast<int>(std::count_if(
      m.state.begin(), m.state.end(), [](RecipientState s) { return s != RecipientState::kDone; }));
  return MessageView{m.where, m.where == Where::kDeferred ? m.next_attempt : absl::InfinitePast(),
                     pending};
}

std::vector<Scheduler::ListedMessage> Scheduler::List() const {
  std::vector<ListedMessage> out;
  out.reserve(messages_.size());
  for (const auto& [id, m] : messages_) {
    if (m->delete_requested) {
      continue;
    }
    ListedMessage l{id,
                    m->spec.sender,
                    m->spec.arrival,
                    m->where,
                    m->where == Where::kDeferred ? m->next_attempt : absl::InfinitePast(),
                    {}};
    for (size_t i = 0; i < m->state.size(); ++i) {
      if (m->state[i] != RecipientState::kDone) {
        const QueuedRecipient& r = m->spec.recipients[i];
        l.pending.push_back(
            FinalRecipient{static_cast<int>(i), r.address, r.notify, r.orcpt, m->last[i]});
      }
    }
    out.push_back(std::move(l));
  }
  std::sort(out.begin(), out.end(), [](const ListedMessage& a, const ListedMessage& b) {
    return a.arrival != b.arrival ? a.arrival < b.arrival : a.id < b.id;
  });
  return out;
}

size_t Scheduler::held_count() const {
  return static_cast<size_t>(std::count_if(messages_.begin(), messages_.end(), [](const auto& kv) {
    return kv.second->where == Where::kHeld;
  }));
}

int Scheduler::InFlight(const std::string& destination) const {
  auto it = destinations_.find(destination);
  return it == destinations_.end() ? 0 : it->second->in_flight;
}

bool Scheduler::IsDead(const std::string& destination, absl::Time now) const {
  auto it = destinations_.find(destination);
  return it != destinations_.end() && it->second->dead_until > now;
}

}  // namespace moat::sched
