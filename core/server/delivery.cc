// core/server/delivery.cc: see delivery.h.
#include "core/server/delivery.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/log/assert.h"
#include "core/log/log.h"
#include "core/reactor/operation.h"
#include "queue/sched/delivery_log.h"
#include "queue/sched/dsn.h"
#include "tls/tls_transform.h"

namespace moat::server {
namespace {

constexpr size_t kRecvBytes = 16384;

uint8_t ToSchedNotify(uint8_t spool_notify) {
  uint8_t n = 0;
  if ((spool_notify & queue::kNotifyNever) != 0) {
    n |= sched::kNotifyNever;
  }
  if ((spool_notify & queue::kNotifySuccess) != 0) {
    n |= sched::kNotifySuccess;
  }
  if ((spool_notify & queue::kNotifyFailure) != 0) {
    n |= sched::kNotifyFailure;
  }
  if ((spool_notify & queue::kNotifyDelay) != 0) {
    n |= sched::kNotifyDelay;
  }
  return n;
}

std::string NotifyText(uint8_t sched_notify) {
  if ((sched_notify & sched::kNotifyNever) != 0) {
    return "NEVER";
  }
  std::string out;
  auto add = [&out](const char* word) {
    if (!out.empty()) {
      out += ",";
    }
    out += word;
  };
  if ((sched_notify & sched::kNotifySuccess) != 0) {
    add("SUCCESS");
  }
  if ((sched_notify & sched::kNotifyFailure) != 0) {
    add("FAILURE");
  }
  if ((sched_notify & sched::kNotifyDelay) != 0) {
    add("DELAY");
  }
  return out;
}

// Outbound STARTTLS (outbound-tls): the protocol machine's view of the context's level.
client::TlsLevel TlsLevelOf(const tls::ClientContext* context) {
  if (context == nullptr) {
    return client::TlsLevel::kNone;
  }
  switch (context->level()) {
    case tls::ClientLevel::kNone:
      return client::TlsLevel::kNone;
    case tls::ClientLevel::kMay:
      return client::TlsLevel::kMay;
    case tls::ClientLevel::kEncrypt:
      return client::TlsLevel::kEncrypt;
    case tls::ClientLevel::kVerify:
      return client::TlsLevel::kVerify;
  }
  return client::TlsLevel::kNone;
}

std::string_view DomainOf(std::string_view address) {
  size_t at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

}  // namespace

DeliverySettings MakeDeliverySettings(const config::Config& c, int shard_count) {
  DeliverySettings s;
  sched::SchedulerConfig& q = s.scheduler;
  q.shard_count = shard_count;
  q.default_destination_concurrency_limit =
      static_cast<int>(c.Int("default_destination_concurrency_limit"));
  q.destination_concurrency_limit["relay"] =
      static_cast<int>(c.Int("relay_destination_concurrency_limit"));
  q.default_destination_recipient_limit =
      static_cast<int>(c.Int("default_destination_recipient_limit"));
  q.destination_recipient_limit["relay"] =
      static_cast<int>(c.Int("relay_destination_recipient_limit"));
  // A destination is dead after this many connection or handshake failures in a row on a
  // shard: Postfix's failed pseudo-cohorts, a pseudo-cohort being as many deliveries as the
  // destination's concurrency (man 5 postconf), here its initial concurrency. 0: never.
  const int cohort = static_cast<int>(c.Int("default_destination_concurrency_failed_cohort_limit"));
  const int window = std::min(static_cast<int>(c.Int("initial_destination_concurrency")),
                              sched::PerShardLimit(q.default_destination_concurrency_limit,
                                                   shard_count));
  q.destination_failure_limit = cohort * window;  // both at least 1 (registry minimums)
  q.minimal_backoff_time = c.Time("minimal_backoff_time");
  q.maximal_backoff_time = c.Time("maximal_backoff_time");
  q.maximal_queue_lifetime = c.Time("maximal_queue_lifetime");
  q.bounce_queue_lifetime = c.Time("bounce_queue_lifetime");
  q.queue_run_delay = c.Time("queue_run_delay");
  q.delay_warning_time = c.Time("delay_warning_time");
  s.content_memory = static_cast<uint64_t>(c.Int("moat_queue_content_memory")) /
                     static_cast<uint64_t>(shard_count > 0 ? shard_count : 1);
  client::ClientTimeouts& t = s.timeouts;
  t.connect = c.Time("smtp_connect_timeout");
  t.helo = c.Time("smtp_helo_timeout");
  t.mail = c.Time("smtp_mail_timeout");
  t.rcpt = c.Time("smtp_rcpt_timeout");
  t.data_init = c.Time("smtp_data_init_timeout");
  t.data_xfer = c.Time("smtp_data_xfer_timeout");
  t.data_done = c.Time("smtp_data_done_timeout");
  t.quit = c.Time("smtp_quit_timeout");
  t.starttls = c.Time("smtp_starttls_timeout");
  t.idle = c.Time("smtp_connection_cache_time_limit");
  s.client.discard_ehlo_keywords = c.List("smtp_discard_ehlo_keywords");
  s.cache.idle = t.idle;
  s.cache.per_destination_max = static_cast<size_t>(
      sched::PerShardLimit(q.default_destination_concurrency_limit, shard_count));
  s.helo_name = c.String("myhostname");
  s.myhostname = c.String("myhostname");
  return s;
}

// ---------------------------------------------------------------------------------------
// One outbound SMTP connection on the shard's ring. Carries one job at a time; between
// jobs it waits in the pipeline's connection cache (phase kIdle).
class OutboundConnection {
 public:
  // `destination`: the connection-cache key (next hop and TLS level). `tls`: the client TLS
  // context (null: no STARTTLS).
  OutboundConnection(DeliveryPipeline* pipeline, uint64_t id, std::string destination,
                     const client::NextHop& hop, const DeliverySettings& settings,
                     std::shared_ptr<const tls::ClientContext> tls)
      : pipeline_(pipeline),
        id_(id),
        destination_(std::move(destination)),
        hop_(hop),
        tls_context_(std::move(tls)),
        session_(client::ServerIdentity{settings.helo_name, hop.host, hop.host, hop.port,
                                        TlsLevelOf(tls_context_.get())},
                 settings.timeouts, settings.client),
        timeouts_(settings.timeouts),
        timer_([this] { OnTimer(); }) {}

  // At process exit the pipeline abandons connections with operations still in flight (the
  // ring is already gone then); otherwise none may be left.
  ~OutboundConnection() { MOAT_CHECK(inflight_ == 0 || pipeline_->abandoning_); }

  uint64_t id() const { return id_; }
  const std::string& destination() const { return destination_; }
  const client::SmtpClientSession& session() const { return session_; }
  bool closing() const { return closing_; }
  absl::Time opened() const { return opened_; }
  absl::Time conn_setup_done() const { return setup_done_; }

  // The TLS handshake failed at smtp_tls_security_level = may: as Postfix, the job is tried
  // again at once in plaintext on a new connection (outbound-tls).
  bool RetryInPlaintext() const {
    return tls_failed_ && tls_context_ != nullptr &&
           tls_context_->level() == tls::ClientLevel::kMay;
  }

  // Starts the first job on a new connection: socket, then connect through the ring.
  void Open(sched::Job job, client::ClientTransaction transaction,
            std::shared_ptr<const std::string> content) {
    job_ = std::move(job);
    content_ = std::move(content);
    body_sent_ = false;
    opened_ = absl::Now();
    session_.Start(std::move(transaction));
    const int family = hop_.is_ipv6 ? AF_INET6 : AF_INET;
    fd_ = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      session_.OnConnectFailed(strerror(errno));
      Pump();
      return;
    }
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&address_);
      a->sin_family = AF_INET;
      a->sin_port = htons(hop_.port);
      inet_pton(AF_INET, hop_.host.c_str(), &a->sin_addr);
      address_length_ = sizeof(sockaddr_in);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&address_);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(hop_.port);
      inet_pton(AF_INET6, hop_.host.c_str(), &a->sin6_addr);
      address_length_ = sizeof(sockaddr_in6);
    }
    connect_timeout_.tv_sec = absl::ToInt64Seconds(timeouts_.connect);
    connect_timeout_.tv_nsec = 0;
    ++inflight_;
    pipeline_->reactor_->ConnectWithTimeout(&connect_op_, fd_,
                                            reinterpret_cast<sockaddr*>(&address_),
                                            address_length_, &connect_timeout_);
  }

  // Carries the next job over this (idle, cached) connection: RSET, then MAIL...
  void Reuse(sched::Job job, client::ClientTransaction transaction,
             std::shared_ptr<const std::string> content) {
    job_ = std::move(job);
    content_ = std::move(content);
    body_sent_ = false;
    session_.NextTransaction(std::move(transaction));
    Pump();
  }

  // The cache's idle time ran out, or the pipeline stops: QUIT and close.
  void Quit() {
    if (closing_) {
      return;
    }
    session_.Quit();
    Pump();
  }

 private:
  enum class OpKind : uint8_t { kConnect, kRecv, kSend, kClose };
  void OnComplete(OpKind kind, int32_t res, uint32_t /*flags*/) {
    --inflight_;
    switch (kind) {
      case OpKind::kConnect:
        if (res < 0) {
          session_.OnConnectFailed(res == -ECANCELED ? "Connection timed out" : strerror(-res));
        } else {
          session_.OnConnected();
          ArmRecv();
        }
        break;
      case OpKind::kRecv:
        recv_armed_ = false;
        if (res > 0) {
          if (tls_ != nullptr) {
            OnTlsBytes(std::span<const char>(recv_buffer_.data(), static_cast<size_t>(res)));
          } else {
            session_.OnData(std::string_view(recv_buffer_.data(), static_cast<size_t>(res)));
          }
          if (!closing_) {
            ArmRecv();
          }
        } else if (!closing_ && session_.WantsTlsHandshake()) {
          // outbound-tls: the server hung up in the middle of the handshake (OpenSSL does
          // after its alert): a TLS failure, as Postfix counts it.
          log::Warning("SSL_connect error to %s: lost connection", session_.NameAddrPort());
          tls_failed_ = true;
          session_.OnTlsFailed("lost connection");
        } else if (!closing_) {
          session_.OnEof();
        }
        break;
      case OpKind::kSend:
        send_inflight_ = false;
        if (res < 0) {
          if (!closing_) {
            session_.OnEof();
          }
        } else {
          send_offset_ += static_cast<size_t>(res);
          if (send_offset_ < sending_.size() && !closing_) {
            SubmitSend();
          } else {
            sending_.clear();
            send_offset_ = 0;
          }
        }
        break;
      case OpKind::kClose:
        fd_ = -1;
        break;
    }
    Pump();
  }

  void ArmRecv() {
    if (recv_armed_ || closing_) {
      return;
    }
    recv_armed_ = true;
    ++inflight_;
    pipeline_->reactor_->Recv(&recv_op_, fd_, recv_buffer_.data(), recv_buffer_.size());
  }

  void SubmitSend() {
    send_inflight_ = true;
    ++inflight_;
    pipeline_->reactor_->Send(&send_op_, fd_, sending_.data() + send_offset_,
                              sending_.size() - send_offset_);
  }

  void OnTimer() {
    if (session_.phase() == client::Phase::kIdle) {
      pipeline_->cache_.Remove(id_);
      session_.Quit();
    } else {
      session_.OnTimeout(timer_phase_);
    }
    Pump();
  }

  // Moves the conversation on: content, output, results, timers, closing.
  void Pump() {
    if (closing_) {
      MaybeRetire();
      return;
    }
    if (session_.WantsBody() && !body_sent_) {
      body_sent_ = true;
      if (content_ != nullptr) {
        session_.AddBody(*content_);
      }
      session_.EndBody();
    }
    if (session_.WantsTlsHandshake() && tls_ == nullptr) {
      StartTls();
    }
    if (session_.HasOutput()) {
      std::string plain = session_.TakeOutput();
      if (tls_ == nullptr) {
        if (outbox_.empty()) {
          outbox_ = std::move(plain);  // a 100 KB body is not copied a second time
        } else {
          outbox_ += plain;
        }
      } else if (!tls_->Encode({plain.data(), plain.size()}, &outbox_)) {
        log::Warning("TLS write error to %s: %s", session_.NameAddrPort(), tls_->error());
        session_.OnEof();
      }
    }
    if (!send_inflight_ && !outbox_.empty() && fd_ >= 0) {
      sending_ = std::move(outbox_);
      outbox_.clear();
      send_offset_ = 0;
      SubmitSend();
    }
    // Connection set-up includes STARTTLS and the TLS handshake (Postfix's delays "c").
    const client::Phase phase = session_.phase();
    if (setup_done_ == absl::InfinitePast() && phase != client::Phase::kConnecting &&
        phase != client::Phase::kGreeting && phase != client::Phase::kHelo &&
        phase != client::Phase::kStartTls && phase != client::Phase::kTlsHandshake) {
      setup_done_ = absl::Now();
    }
    if (job_active() && session_.TransactionDone()) {
      sched::Job job = std::move(*job_);
      job_.reset();
      content_.reset();
      pipeline_->OnJobDone(job, session_.results(), this);
      if (session_.CanReuse()) {
        pipeline_->OfferIdle(this);  // may call Quit()
        if (closing_) {
          return;
        }
      }
    }
    if (session_.phase() == client::Phase::kClosed) {
      BeginClose();
      return;
    }
    // Re-armed only when the phase changes (or the connection went idle): the timeout
    // bounds each phase, not each byte.
    if (!timer_.armed() || timer_phase_ != session_.phase()) {
      timer_phase_ = session_.phase();
      absl::Duration timeout = client::TimeoutFor(timer_phase_, timeouts_);
      if (timeout > absl::ZeroDuration()) {
        pipeline_->reactor_->ArmTimer(timer_, timeout);
      }
    }
  }

  bool job_active() const { return job_.has_value(); }

  // --- Outbound STARTTLS (outbound-tls) ---

  // The server said 220 to STARTTLS: the client side of the TLS layer takes over the bytes
  // and the ClientHello goes out. Never blocks: wolfSSL runs over memory buffers.
  void StartTls() {
    // Resumption from the shard's session cache (may and encrypt only: at verify the
    // certificate must be checked on every connection, and a resumed one brings none).
    tls::ClientSessionCache* sessions = tls_context_->level() < tls::ClientLevel::kVerify
                                            ? &pipeline_->tls_sessions_
                                            : nullptr;
    tls_ = std::make_unique<tls::TlsTransform>(tls_context_, hop_.host, nullptr, sessions,
                                               destination_);
    std::string plain;
    if (!tls_->Decode({}, &plain, &outbox_)) {
      log::Warning("SSL_connect error to %s: %s", session_.NameAddrPort(), tls_->error());
      tls_failed_ = true;
      session_.OnTlsFailed(tls_->error());
    }
  }

  // Raw bytes from the server while TLS is on.
  void OnTlsBytes(std::span<const char> raw) {
    const bool was_done = tls_->handshake_done();
    std::string plain;
    if (!tls_->Decode(raw, &plain, &outbox_)) {
      if (!was_done) {
        log::Warning("SSL_connect error to %s: %s", session_.NameAddrPort(), tls_->error());
        tls_failed_ = true;
        session_.OnTlsFailed(tls_->error());
      } else {
        log::Warning("TLS read error from %s: %s", session_.NameAddrPort(), tls_->error());
        session_.OnEof();
      }
      return;
    }
    if (!was_done && tls_->handshake_done()) {
      OnTlsHandshakeDone();
    }
    if (!plain.empty()) {
      session_.OnData(plain);
    }
  }

  // Postfix's lines: "Verified" (chain and name, at verify), "Trusted" (chain), else
  // "Untrusted"; at verify an unverified certificate defers the transaction.
  void OnTlsHandshakeDone() {
    const tls::HandshakeInfo& info = tls_->info();
    const bool verify = tls_context_->level() == tls::ClientLevel::kVerify;
    const bool verified = info.peer_verified && info.peer_name_matched;
    const char* trust = verify && verified ? "Verified" : info.peer_verified ? "Trusted" : "Untrusted";
    log::Info("%s TLS connection established to %s: %s with cipher %s (%d/%d bits)", trust,
              session_.NameAddrPort(), info.protocol, info.cipher, info.cipher_bits,
              info.algorithm_bits);
    if (verify && !verified) {
      log::Info("server certificate verification failed for %s: %s", session_.NameAddrPort(),
                !info.peer_verified ? std::string("untrusted issuer /CN=") + info.issuer_cn
                                    : "subject name does not match " + hop_.host);
    }
    session_.OnTlsEstablished(verified);
  }

  void BeginClose() {
    if (closing_) {
      return;
    }
    closing_ = true;
    pipeline_->reactor_->CancelTimer(timer_);
    pipeline_->cache_.Remove(id_);
    if (recv_armed_) {
      pipeline_->reactor_->Cancel(&recv_op_);
    }
    if (fd_ >= 0 && !close_submitted_) {
      close_submitted_ = true;
      ++inflight_;
      pipeline_->reactor_->Close(&close_op_, fd_);
    }
    MaybeRetire();
  }

  void MaybeRetire() {
    if (inflight_ == 0 && !retired_) {
      retired_ = true;
      pipeline_->Retire(this);
    }
  }

  DeliveryPipeline* const pipeline_;
  const uint64_t id_;
  const std::string destination_;
  const client::NextHop hop_;
  const std::shared_ptr<const tls::ClientContext> tls_context_;  // outbound-tls
  std::unique_ptr<tls::TlsTransform> tls_;  // outbound-tls: after the 220 to STARTTLS
  std::string outbox_;  // bytes to send (records once TLS is on) not yet handed to the ring
  bool tls_failed_ = false;  // the TLS handshake failed (outbound-tls)
  client::SmtpClientSession session_;
  const client::ClientTimeouts timeouts_;
  reactor::Timer timer_;
  client::Phase timer_phase_ = client::Phase::kConnecting;
  int fd_ = -1;
  sockaddr_storage address_{};
  socklen_t address_length_ = 0;
  __kernel_timespec connect_timeout_{};
  std::optional<sched::Job> job_;
  std::shared_ptr<const std::string> content_;
  bool body_sent_ = false;
  std::array<char, kRecvBytes> recv_buffer_{};
  std::string sending_;
  size_t send_offset_ = 0;
  bool recv_armed_ = false;
  bool send_inflight_ = false;
  bool closing_ = false;
  bool close_submitted_ = false;
  bool retired_ = false;
  int inflight_ = 0;
  absl::Time opened_ = absl::InfinitePast();
  absl::Time setup_done_ = absl::InfinitePast();
  using Op = reactor::MemberOperation<OutboundConnection, OpKind, &OutboundConnection::OnComplete>;
  Op connect_op_{this, OpKind::kConnect};
  Op recv_op_{this, OpKind::kRecv};
  Op send_op_{this, OpKind::kSend};
  Op close_op_{this, OpKind::kClose};
};

// ---------------------------------------------------------------------------------------

// Reads one queued message's spool record back on the shard's ring: openat, then reads until
// the record is complete or the file ends (a recovered last record may lack its padding), then
// a close nobody waits for. The pipeline verifies the record (Spool::DecodeContent).
class ContentLoad {
 public:
  ContentLoad(DeliveryPipeline* pipeline, std::string id, std::string path, uint64_t offset,
              uint64_t bytes)
      : pipeline_(pipeline),
        id_(std::move(id)),
        path_(std::move(path)),
        offset_(offset),
        bytes_(bytes) {}
  ContentLoad(const ContentLoad&) = delete;
  ContentLoad& operator=(const ContentLoad&) = delete;

  void Start() {
    pipeline_->reactor_->Openat(&open_op_, AT_FDCWD, path_.c_str(), O_RDONLY | O_CLOEXEC, 0);
  }

 private:
  enum class Step : uint8_t { kOpen, kRead };
  void OnStep(Step step, int32_t res, uint32_t /*flags*/) {
    if (res < 0) {
      Done(absl::Status(absl::ErrnoToStatusCode(-res),
                        absl::StrCat(step == Step::kOpen ? "open " : "read ", path_, ": ",
                                     strerror(-res))));
      return;
    }
    if (step == Step::kOpen) {
      fd_ = res;
      record_.resize(bytes_);
      ReadMore();
      return;
    }
    if (res == 0) {  // end of file
      record_.resize(done_);
      Done(absl::OkStatus());
      return;
    }
    done_ += static_cast<uint64_t>(res);
    if (done_ < bytes_) {
      ReadMore();
    } else {
      Done(absl::OkStatus());
    }
  }

  void ReadMore() {
    pipeline_->reactor_->Read(&read_op_, fd_, record_.data() + done_,
                              static_cast<uint32_t>(bytes_ - done_), offset_ + done_);
  }

  void Done(absl::Status status) {
    if (fd_ >= 0) {
      pipeline_->reactor_->Close(nullptr, fd_);
      fd_ = -1;
    }
    if (status.ok()) {
      pipeline_->OnContentLoaded(id_, std::move(record_));
    } else {
      pipeline_->OnContentLoaded(id_, std::move(status));
    }
  }

  DeliveryPipeline* pipeline_;
  const std::string id_;
  const std::string path_;  // openat copies it at submission; kept for messages
  const uint64_t offset_;
  const uint64_t bytes_;
  int fd_ = -1;
  std::string record_;
  uint64_t done_ = 0;
  using Op = reactor::MemberOperation<ContentLoad, Step, &ContentLoad::OnStep>;
  Op open_op_{this, Step::kOpen};
  Op read_op_{this, Step::kRead};
};

// ---------------------------------------------------------------------------------------

DeliveryPipeline::DeliveryPipeline(DeliverySettings settings, ShardSpool& spool,
                                   Resolver resolver)
    : settings_(std::move(settings)),
      spool_(spool),
      resolver_(std::move(resolver)),
      scheduler_(settings_.scheduler),
      cache_(settings_.cache),
      wakeup_([this] {
        dirty_ = true;
        OnTurn();
      }) {}

DeliveryPipeline::~DeliveryPipeline() {
  // Runs after the shard's ring is gone: connections still open are abandoned (a message
  // whose delivery was cut off stays queued: at-least-once).
  abandoning_ = true;
  connections_.clear();
  retired_.clear();
}

void DeliveryPipeline::AddRecovered(const queue::QueuedMessage& message) {
  Enqueue(message, nullptr);
}

void DeliveryPipeline::KeepContent(Message& message, std::shared_ptr<const std::string> content) {
  DropContent(message);
  if (content == nullptr) {
    return;
  }
  content_bytes_ += content->size();
  message.content = std::move(content);
}

void DeliveryPipeline::DropContent(Message& message) {
  if (message.content != nullptr) {
    content_bytes_ -= message.content->size();
    message.content.reset();  // a delivery in flight keeps its own reference
  }
}

void DeliveryPipeline::LoadContent(const std::string& id) {
  if (loads_.contains(id)) {
    return;
  }
  const queue::QueuedMessage* m = spool_.spool().index().Find(id);
  if (m == nullptr) {
    OnContentLoaded(id, absl::NotFoundError("not in the spool index"));
    return;
  }
  auto load = std::make_unique<ContentLoad>(this, id, spool_.spool().SegmentPath(m->location.segment),
                                            m->location.offset, m->location.record_bytes);
  ContentLoad* raw = load.get();
  loads_[id] = std::move(load);
  raw->Start();
}

void DeliveryPipeline::OnContentLoaded(const std::string& id, absl::StatusOr<std::string> record) {
  if (auto load = loads_.find(id); load != loads_.end()) {
    finished_loads_.push_back(std::move(load->second));  // freed next turn: it is calling us
    loads_.erase(load);
  }
  ++content_reads_;
  // Verified once, then shared by the waiting jobs and notifications (no further copy).
  absl::StatusOr<std::string> content = absl::NotFoundError("not in the spool index");
  if (!record.ok()) {
    content = record.status();
  } else if (const queue::QueuedMessage* m = spool_.spool().index().Find(id); m != nullptr) {
    content = spool_.spool().DecodeContent(*m, *record);
  }
  std::shared_ptr<const std::string> shared;
  if (content.ok()) {
    shared = std::make_shared<const std::string>(*std::move(content));
  } else {
    log::Warning("%s: cannot read the queued message back from the spool: %s", id,
                 content.status().message());
  }
  if (auto it = messages_.find(id); it != messages_.end()) {
    std::vector<WaitingJob> waiting;
    waiting.swap(it->second.waiting);
    if (shared != nullptr) {
      KeepContent(it->second, shared);
      for (WaitingJob& w : waiting) {
        StartJob(std::move(w.job), w.plaintext);
      }
    } else {
      for (WaitingJob& w : waiting) {
        FinishLocally(w.job, client::Outcome::kDeferred, "4.3.0",
                      absl::StrCat("cannot read the queued message: ", content.status().message()));
      }
    }
  }
  if (auto n = pending_notices_.find(id); n != pending_notices_.end()) {
    std::vector<sched::DsnRequest> notices = std::move(n->second);
    pending_notices_.erase(n);
    for (sched::DsnRequest& request : notices) {
      if (shared != nullptr) {
        request.original_message = *shared;
      }  // else without the original: the notification itself still goes
      SendNotification(request);
    }
  }
  dirty_ = true;
  if (reactor_ != nullptr) {
    reactor_->RequestTurn();
  }
}

void DeliveryPipeline::Attach(reactor::Reactor* reactor) {
  reactor_ = reactor;
  reactor_->AddTurnHook([this] { OnTurn(); });
  dirty_ = true;
  reactor_->RequestTurn();
}

void DeliveryPipeline::OnDurable(const queue::QueuedMessage& message,
                                 std::shared_ptr<const std::string> content) {
  Enqueue(message, std::move(content));
  dirty_ = true;
  if (reactor_ != nullptr) {
    reactor_->RequestTurn();
  }
}

void DeliveryPipeline::Enqueue(const queue::QueuedMessage& m,
                               std::shared_ptr<const std::string> content) {
  const queue::MessageEnvelope& e = m.envelope;
  Message msg;
  msg.sequence = m.sequence;
  msg.sender = e.sender;
  msg.envid = e.envid;
  msg.ret_full = (e.flags & queue::kRetFull) != 0;
  msg.eight_bit = (e.flags & queue::kBody8BitMime) != 0;
  msg.smtputf8 = (e.flags & queue::kSmtpUtf8) != 0;
  msg.arrival = absl::FromUnixMicros(e.arrival_unix_us);
  msg.content_size = m.content_bytes;
  msg.last_reason.resize(e.recipients.size());
  sched::QueuedMessage q;
  q.id = e.queue_id;
  q.sender = e.sender;
  q.arrival = msg.arrival;
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    if (i < m.recipients.size() && queue::IsFinal(m.recipients[i])) {
      continue;  // journaled as final before a restart: never again
    }
    const queue::Recipient& r = e.recipients[i];
    const std::string& address = r.resolved.empty() ? r.address : r.resolved;
    std::string spec = r.next_hop.empty() ? resolver_(address) : r.next_hop;
    absl::StatusOr<client::NextHop> hop = client::ParseNextHop(spec, "smtp", DomainOf(address));
    sched::QueuedRecipient qr;
    qr.address = address;
    qr.notify = ToSchedNotify(r.notify);
    qr.orcpt = r.orcpt;
    if (hop.ok()) {
      qr.transport = hop->transport;
      std::string key = hop->Key();
      qr.nexthop = key.substr(key.find(':') + 1);
    } else {
      qr.transport = "error";
      qr.nexthop = absl::StrCat("4.3.5 bad next hop \"", spec, "\": ", hop.status().message());
    }
    q.recipients.push_back(std::move(qr));
    msg.spool_index.push_back(static_cast<int>(i));
  }
  if (q.recipients.empty()) {
    return;
  }
  const std::string id = q.id;
  if (content != nullptr && content_bytes_ + content->size() <= settings_.content_memory) {
    KeepContent(msg, std::move(content));
  }  // else on disk only: read back when its delivery starts
  messages_[id] = std::move(msg);
  absl::Status s = scheduler_.Enqueue(std::move(q), absl::Now());
  if (!s.ok()) {
    log::Warning("%s: not scheduled: %s", id, s.message());
  }
}

void DeliveryPipeline::OnTurn() {
  if (reactor_ == nullptr) {
    return;
  }
  while (!retired_.empty()) {
    retired_.pop_back();
  }
  finished_loads_.clear();
  if (!dirty_ || stopping_) {
    return;
  }
  dirty_ = false;
  const absl::Time now = absl::Now();
  for (;;) {
    std::optional<sched::Job> job = scheduler_.NextWork(now);
    if (!job) {
      break;
    }
    StartJob(*std::move(job));
  }
  ProcessSchedulerOutput();
  MaybeReclaim();
  ArmWakeup();
}

void DeliveryPipeline::ArmWakeup() {
  absl::Time next = scheduler_.NextWakeup();
  if (next == absl::InfiniteFuture()) {
    if (reclaim_due_) {
      reactor_->ArmTimer(wakeup_, absl::Seconds(5));
    }
    return;
  }
  absl::Duration after = next - absl::Now();
  if (after < absl::Milliseconds(1)) {
    after = absl::Milliseconds(1);
  }
  reactor_->ArmTimer(wakeup_, after);
}

void DeliveryPipeline::StartJob(sched::Job job, bool plaintext) {
  auto it = messages_.find(job.message_id);
  MOAT_CHECK(it != messages_.end());
  if (it->second.content == nullptr) {
    // On disk only: the job waits for the content to be read back on the ring.
    it->second.waiting.push_back({std::move(job), plaintext});
    LoadContent(it->first);
    return;
  }
  const Message& message = it->second;
  absl::StatusOr<client::NextHop> hop =
      client::ParseNextHop(absl::StrCat(job.transport, ":", job.nexthop), "smtp");
  if (!hop.ok()) {
    FinishLocally(job, client::Outcome::kDeferred, "4.3.5",
                  absl::StrCat("bad next hop: ", hop.status().message()));
    return;
  }
  if (hop->kind == client::TransportKind::kError) {
    std::string dsn = client::ErrorTransportDsn(*hop);
    FinishLocally(job, dsn.starts_with("4") ? client::Outcome::kDeferred : client::Outcome::kBounced,
                  dsn, hop->text.empty() ? std::string("delivery refused") : hop->text);
    return;
  }
  if (hop->kind == client::TransportKind::kDiscard) {
    FinishLocally(job, client::Outcome::kSent, "2.0.0",
                  hop->text.empty() ? std::string("discarded") : hop->text);
    return;
  }
  if (absl::Status ok = client::ResolveForDelivery(*hop); !ok.ok() || !hop->is_literal) {
    // No DNS yet (the DNS issue): only address literals can be reached. Say so clearly.
    std::string why = ok.ok() ? absl::StrCat("Host or domain name lookup for ", hop->host,
                                             " is not available yet (no DNS): use an address "
                                             "literal such as smtp:[10.0.0.5]:25")
                              : std::string(ok.message());
    log::Warning("%s: cannot deliver to %s: %s", job.message_id, job.destination, why);
    FinishLocally(job, client::Outcome::kDeferred, "4.4.3", why);
    return;
  }
  client::ClientTransaction tx;
  tx.sender = job.sender;
  tx.size_bytes = message.content->size();
  tx.ends_in_newline = message.content->empty() || message.content->back() == '\n';
  tx.eight_bit = message.eight_bit;
  tx.smtputf8 = message.smtputf8;
  tx.dsn_ret = message.ret_full ? "FULL" : "";
  tx.dsn_envid = message.envid;
  for (const sched::JobRecipient& r : job.recipients) {
    tx.recipients.push_back({r.address, r.notify != 0 ? NotifyText(r.notify) : "", r.orcpt});
  }
  std::shared_ptr<const std::string> content = message.content;
  // outbound-tls: a cached connection serves only jobs with the same TLS requirement.
  std::shared_ptr<const tls::ClientContext> client_tls = plaintext ? nullptr : client_tls_;
  std::string cache_key = absl::StrCat(
      job.destination, " tls=",
      client_tls == nullptr ? std::string("none")
                            : std::string(tls::ClientLevelName(client_tls->level())));
  if (std::optional<uint64_t> idle = cache_.Take(cache_key, absl::Now())) {
    auto c = connections_.find(*idle);
    if (c != connections_.end() && !c->second->closing()) {
      c->second->Reuse(std::move(job), std::move(tx), std::move(content));
      return;
    }
  }
  const uint64_t id = next_connection_id_++;
  auto connection = std::make_unique<OutboundConnection>(this, id, std::move(cache_key), *hop,
                                                         settings_, std::move(client_tls));
  OutboundConnection* raw = connection.get();
  connections_[id] = std::move(connection);
  raw->Open(std::move(job), std::move(tx), std::move(content));
}

void DeliveryPipeline::FinishLocally(const sched::Job& job, client::Outcome outcome,
                                     std::string dsn, std::string reason) {
  std::vector<client::RecipientResult> results(job.recipients.size());
  for (client::RecipientResult& r : results) {
    r.outcome = outcome;
    r.dsn = dsn;
    r.reason = reason;
  }
  OnJobDone(job, results, nullptr);
}

void DeliveryPipeline::OnJobDone(const sched::Job& job,
                                 const std::vector<client::RecipientResult>& results,
                                 const OutboundConnection* connection) {
  if (connection != nullptr && connection->RetryInPlaintext()) {
    // outbound-tls: Postfix's opportunistic TLS retries in plaintext on a new connection.
    log::Info("%s: TLS handshake with %s failed; trying again without TLS", job.message_id,
              connection->session().NameAddrPort());
    StartJob(job, /*plaintext=*/true);
    return;
  }
  const absl::Time now = absl::Now();
  auto it = messages_.find(job.message_id);
  std::vector<sched::RecipientResult> out;
  out.reserve(job.recipients.size());
  for (size_t i = 0; i < job.recipients.size(); ++i) {
    const client::RecipientResult& r =
        i < results.size() ? results[i] : client::RecipientResult{};
    sched::RecipientResult s;
    s.status = r.outcome == client::Outcome::kSent      ? sched::DeliveryStatus::kSent
               : r.outcome == client::Outcome::kBounced ? sched::DeliveryStatus::kBounced
                                                        : sched::DeliveryStatus::kDeferred;
    s.dsn = r.dsn.empty() ? (s.status == sched::DeliveryStatus::kSent ? "2.0.0" : "4.0.0") : r.dsn;
    s.reason = r.reason;
    s.reply = r.reply;
    s.site_failure = r.site_failure;
    if (connection != nullptr && !r.reply.empty()) {
      s.remote_mta = connection->session().NameAddr();
    }
    s.remote_dsn = connection != nullptr && connection->session().features().dsn &&
                   job.recipients[i].notify != 0;
    sched::DeliveryLogEntry entry;
    entry.queue_id = job.message_id;
    entry.recipient = job.recipients[i].address;
    entry.relay = connection != nullptr ? connection->session().NameAddrPort() : "none";
    entry.conn_use = connection != nullptr ? connection->session().transactions() : 1;
    entry.times.arrival = job.arrival;
    entry.times.active = job.active;
    entry.times.handoff = job.handoff;
    entry.times.conn_setup_done =
        connection != nullptr ? connection->conn_setup_done() : absl::InfinitePast();
    entry.times.done = now;
    entry.dsn = s.dsn;
    entry.status = std::string(sched::DeliveryStatusName(s.status));
    entry.reason = s.reason;
    log::Info("%s", sched::FormatDeliveryLine(entry));
    switch (s.status) {
      case sched::DeliveryStatus::kSent:
        ++delivered_;
        break;
      case sched::DeliveryStatus::kDeferred:
        ++deferred_;
        break;
      case sched::DeliveryStatus::kBounced:
        ++bounced_;
        break;
    }
    if (it != messages_.end()) {
      const int index = job.recipients[i].index;
      if (index >= 0 && static_cast<size_t>(index) < it->second.spool_index.size()) {
        it->second.last_reason[static_cast<size_t>(it->second.spool_index[index])] = s.reason;
      }
    }
    out.push_back(std::move(s));
  }
  scheduler_.OnResult(job.id, out, now);
  ProcessSchedulerOutput();
  if (content_bytes_ > settings_.content_memory) {
    // Still queued (it may have become final above), over the budget: read back at its next
    // attempt.
    if (auto m = messages_.find(job.message_id); m != messages_.end()) {
      DropContent(m->second);
    }
  }
  dirty_ = true;
  if (reactor_ != nullptr) {
    reactor_->RequestTurn();
  }
}

void DeliveryPipeline::ProcessSchedulerOutput() {
  for (const sched::SchedulerEvent& e : scheduler_.TakeEvents()) {
    sched::DeliveryLogEntry entry;
    entry.queue_id = e.message_id;
    entry.recipient = e.address;
    entry.relay = "none";
    entry.times.arrival = e.arrival;
    entry.times.active = e.active;
    entry.times.done = e.time;
    entry.dsn = e.result.dsn;
    entry.status = std::string(sched::DeliveryStatusName(e.result.status));
    entry.reason = e.result.reason;
    log::Info("%s", sched::FormatDeliveryLine(entry));
    ++deferred_;
  }
  for (const sched::FinishedMessage& f : scheduler_.TakeFinished()) {
    Finish(f);
  }
  for (const sched::DelayWarning& w : scheduler_.TakeDelayWarnings()) {
    auto it = messages_.find(w.id);
    if (it != messages_.end()) {
      Notify(NotificationFor(w.id, it->second, sched::DsnKind::kDelay, w.recipients),
             it->second.content);
    }
  }
}

void DeliveryPipeline::Finish(const sched::FinishedMessage& finished) {
  auto it = messages_.find(finished.id);
  if (it == messages_.end()) {
    return;
  }
  const Message& message = it->second;
  if (finished.expired) {
    log::Info("%s", sched::FormatExpiredLine(finished.id, finished.sender));
  }
  bool any_bounced = false;
  for (const sched::FinalRecipient& r : finished.recipients) {
    if (r.index < 0 || static_cast<size_t>(r.index) >= message.spool_index.size()) {
      continue;
    }
    const int spool_recipient = message.spool_index[static_cast<size_t>(r.index)];
    const bool sent = r.result.status == sched::DeliveryStatus::kSent;
    any_bounced = any_bounced || !sent;
    Journal(message, finished.id, spool_recipient,
            sent ? queue::Outcome::kDelivered
                 : (finished.expired ? queue::Outcome::kExpired : queue::Outcome::kBounced),
            r.result.reason);
  }
  if (any_bounced) {
    Notify(NotificationFor(finished.id, message, sched::DsnKind::kFailure, finished.recipients),
           message.content);
  }
  // NOTIFY=SUCCESS to a next hop that did not take the DSN request: "relayed". Checked first:
  // this runs for every delivered message, and almost none asks.
  if (std::any_of(finished.recipients.begin(), finished.recipients.end(),
                  [](const sched::FinalRecipient& r) {
                    return r.result.status == sched::DeliveryStatus::kSent &&
                           sched::NotifyAllowsSuccess(r.notify);
                  })) {
    Notify(NotificationFor(finished.id, message, sched::DsnKind::kSuccess, finished.recipients),
           message.content);
  }
  log::Info("%s: removed", finished.id);
  DropContent(it->second);
  messages_.erase(it);
  reclaim_due_ = true;
}

sched::DsnRequest DeliveryPipeline::NotificationFor(
    std::string_view queue_id, const Message& message, sched::DsnKind kind,
    const std::vector<sched::FinalRecipient>& recipients) const {
  sched::DsnRequest request;
  request.kind = kind;
  request.queue_id = std::string(queue_id);
  request.myhostname = settings_.myhostname;
  request.sender = message.sender;
  request.envid = message.envid;
  request.ret_full = message.ret_full;
  request.arrival = message.arrival;
  request.now = absl::Now();
  request.maximal_queue_lifetime = settings_.scheduler.maximal_queue_lifetime;
  request.delay_warning_time = settings_.scheduler.delay_warning_time;
  request.recipients = sched::DsnRecipientsFor(recipients, kind);
  return request;
}

void DeliveryPipeline::Notify(sched::DsnRequest request,
                              const std::shared_ptr<const std::string>& content) {
  // Never to the null sender, and only for recipients whose NOTIFY asks for this kind.
  const auto asks = [kind = request.kind](const sched::DsnRecipient& r) {
    switch (kind) {
      case sched::DsnKind::kFailure:
        return sched::NotifyAllowsFailure(r.notify);
      case sched::DsnKind::kDelay:
        return sched::NotifyAllowsDelay(r.notify);
      case sched::DsnKind::kSuccess:
        return sched::NotifyAllowsSuccess(r.notify);
    }
    return false;
  };
  if (request.sender.empty() ||
      std::none_of(request.recipients.begin(), request.recipients.end(), asks)) {
    return;
  }
  if (content != nullptr) {
    request.original_message = *content;
    SendNotification(request);
    return;
  }
  // On disk only: read the original back first (its segment stays while a read is pending).
  const std::string id = request.queue_id;
  pending_notices_[id].push_back(std::move(request));
  LoadContent(id);
}

void DeliveryPipeline::SendNotification(sched::DsnRequest& request) {
  const std::string notification_id = spool_.NewQueueId();
  request.notification_id = notification_id;
  std::optional<sched::DsnMessage> dsn = sched::ComposeDsn(request);
  if (!dsn) {
    return;
  }
  queue::MessageEnvelope envelope;
  envelope.queue_id = notification_id;
  envelope.arrival_unix_us = absl::ToUnixMicros(absl::Now());
  envelope.client_ip = "127.0.0.1";
  envelope.client_name = "localhost";
  envelope.protocol = "local";
  envelope.sender = "";
  envelope.recipients.push_back(
      {dsn->envelope_recipient, "", 0, dsn->envelope_recipient, resolver_(dsn->envelope_recipient)});
  const char* what = request.kind == sched::DsnKind::kFailure ? "non-delivery"
                     : request.kind == sched::DsnKind::kDelay ? "delay"
                                                              : "delivery status";
  log::Info("%s", sched::FormatNotificationLine(request.queue_id, what, notification_id));
  spool_.SubmitInternal(std::move(envelope), std::move(dsn->content));
}

void DeliveryPipeline::Journal(const Message& message, std::string_view queue_id,
                               int spool_recipient, queue::Outcome outcome,
                               std::string_view detail) {
  queue::OutcomeRecord record;
  record.message_sequence = message.sequence;
  record.queue_id = std::string(queue_id);
  record.recipient_index = static_cast<uint32_t>(spool_recipient);
  record.outcome = outcome;
  record.unix_us = absl::ToUnixMicros(absl::Now());
  record.detail = std::string(detail.substr(0, 512));
  spool_.StageOutcome(record);
}

void DeliveryPipeline::OfferIdle(OutboundConnection* connection) {
  if (stopping_ || !cache_.Put(connection->destination(), connection->id(),
                               connection->opened(), connection->session().transactions(),
                               absl::Now())) {
    connection->Quit();
  }
  dirty_ = true;  // a free connection may take queued work now
}

void DeliveryPipeline::Retire(OutboundConnection* connection) {
  auto it = connections_.find(connection->id());
  if (it == connections_.end()) {
    return;
  }
  // Freed at the start of the next turn: this call comes from inside the connection.
  retired_.push_back(std::move(it->second));
  connections_.erase(it);
  dirty_ = true;
  if (reactor_ != nullptr) {
    reactor_->RequestTurn();
  }
}

void DeliveryPipeline::MaybeReclaim() {
  // Segments whose every message is final go on the ring (never blocks): recycled, up to
  // ShardSpool::kFreeSegmentsMax, else unlinked.
  // - Under load, the segments behind the current one go as soon as they are final, at most
  //   every kBusyReclaimInterval, so the next spare is a recycled file (an overwrite) rather
  //   than a new one whose every sync converts extents. Before, reclaim waited for an idle
  //   spool: a busy shard wrote every segment of a burst as a new file.
  // - The current segment goes too once the spool is idle, at most every 5 s: an idle relay
  //   with an empty queue holds no segment.
  // Not while content is read back: its segment must stay until the read has it open.
  if (!reclaim_due_ || !loads_.empty() || spool_.reclaim_in_flight()) {
    return;
  }
  const absl::Time now = absl::Now();
  if (spool_.Idle() && now - last_reclaim_ >= absl::Seconds(5)) {
    reclaim_due_ = false;
    last_reclaim_ = now;
    spool_.Reclaim(/*include_current=*/true);  // logs what it removed
    return;
  }
  if (now - last_busy_reclaim_ >= kBusyReclaimInterval) {
    // reclaim_due_ stays: the current segment's turn comes when the spool is idle.
    last_busy_reclaim_ = now;
    spool_.Reclaim(/*include_current=*/false);
  }
}

void DeliveryPipeline::Stop() {
  stopping_ = true;
  std::vector<OutboundConnection*> all;
  for (auto& [id, c] : connections_) {
    (void)id;
    all.push_back(c.get());
  }
  for (OutboundConnection* c : all) {
    c->Quit();
  }
}

bool DeliveryPipeline::Idle() const { return connections_.empty() && loads_.empty(); }

void DeliveryPipeline::Flush() {
  scheduler_.Flush(absl::Now());
  dirty_ = true;
  reactor_->RequestTurn();
}

bool DeliveryPipeline::Delete(std::string_view queue_id) {
  std::string id(queue_id);
  auto it = messages_.find(id);
  if (it == messages_.end() || !scheduler_.Delete(id, absl::Now()).ok()) {
    return false;
  }
  for (int spool_recipient : it->second.spool_index) {
    Journal(it->second, id, spool_recipient, queue::Outcome::kExpired, "deleted by the operator");
  }
  log::Info("%s: removed (deleted by the operator)", id);
  DropContent(it->second);
  messages_.erase(it);
  reclaim_due_ = true;
  dirty_ = true;
  reactor_->RequestTurn();
  return true;
}

size_t DeliveryPipeline::DeleteAll() {
  std::vector<std::string> ids;
  for (const auto& [id, m] : messages_) {
    (void)m;
    ids.push_back(id);
  }
  size_t n = 0;
  for (const std::string& id : ids) {
    n += Delete(id) ? 1 : 0;
  }
  return n;
}

bool DeliveryPipeline::Hold(std::string_view queue_id) {
  return scheduler_.Hold(std::string(queue_id), absl::Now()).ok();
}

bool DeliveryPipeline::Release(std::string_view queue_id) {
  bool ok = scheduler_.Release(std::string(queue_id), absl::Now()).ok();
  dirty_ = true;
  reactor_->RequestTurn();
  return ok;
}

char DeliveryPipeline::StatusMark(std::string_view queue_id) const {
  std::optional<sched::Scheduler::MessageView> view = scheduler_.Find(std::string(queue_id));
  if (!view) {
    return ' ';
  }
  switch (view->where) {
    case sched::Scheduler::Where::kActive:
      return '*';
    case sched::Scheduler::Where::kHeld:
      return '!';
    default:
      return ' ';
  }
}

std::string DeliveryPipeline::LastReason(std::string_view queue_id, size_t recipient) const {
  auto it = messages_.find(std::string(queue_id));
  if (it == messages_.end() || recipient >= it->second.last_reason.size()) {
    return "";
  }
  return it->second.last_reason[recipient];
}

void DeliveryPipeline::AddCounters(DaemonStats* stats) const {
  stats->delivered += delivered_;
  stats->deferred += deferred_;
  stats->bounced += bounced_;
  stats->content_reads += content_reads_;
}

}  // namespace moat::server
