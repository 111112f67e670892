// core/reactor/shard.cc
//
// See shard.h. Owner: the shard thread.
#include "core/reactor/shard.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "core/log/assert.h"
#include "core/log/log.h"
#include "core/reactor/shard_group.h"

namespace moat::reactor {
namespace {

// Answers connections over connections_max with the configured reply, then closes.
class OverloadHandler final : public StreamHandler {
 public:
  explicit OverloadHandler(std::string_view reply) : reply_(reply) {}
  void OnOpen(Connection& connection) override {
    (void)connection.Send(reply_);
    connection.CloseAfterFlush(CloseReason::kRefused);
  }
  size_t OnData(Connection& /*connection*/, std::span<const char> data) override {
    return data.size();
  }
  void OnClosed(Connection& /*connection*/, CloseReason /*reason*/) override {}

 private:
  std::string_view reply_;
};

}  // namespace

// One multishot accept on one listening socket, re-armed whenever the kernel ends it
// (F_MORE missing), until the shard drains; then the socket is closed through the ring.
class Shard::Acceptor final : public Operation {
 public:
  Acceptor(Shard* shard, int fd, uint32_t index)
      : shard_(shard), fd_(fd), index_(index), retry_timer_([this] { Arm(); }) {}
  ~Acceptor() { MOAT_CHECK(!armed_); }

  void Arm() {
    if (stopping_ || armed_) {
      return;
    }
    armed_ = true;
    shard_->reactor().AcceptMultishot(this, fd_);
  }

  void Stop() {
    if (stopping_) {
      return;
    }
    stopping_ = true;
    shard_->reactor().CancelTimer(retry_timer_);
    if (armed_) {
      shard_->reactor().Cancel(this);
    } else {
      CloseSocket();
    }
  }

  void Complete(int32_t res, uint32_t flags) override {
    if (!(flags & IORING_CQE_F_MORE)) {
      armed_ = false;
    }
    if (res >= 0) {
      shard_->OnAccepted(res, index_);
    } else if (res != -ECANCELED) {
      // EMFILE/ENFILE/ENOMEM: back off briefly instead of spinning on the error.
      log::Warning("shard %d: accept: %s", shard_->index(), strerror(-res));
      if (!armed_ && !stopping_) {
        shard_->reactor().ArmTimer(retry_timer_, absl::Milliseconds(100));
        return;
      }
    }
    if (!armed_) {
      if (stopping_) {
        CloseSocket();
      } else {
        Arm();
      }
    }
  }

 private:
  void CloseSocket() {
    if (fd_ >= 0) {
      // Blocking-free: close() of a listening socket does not wait.
      close(fd_);
      fd_ = -1;
      shard_->OnAcceptorClosed();
    }
  }

  Shard* shard_;
  int fd_;
  const uint32_t index_;
  bool armed_ = false;
  bool stopping_ = false;
  Timer retry_timer_;
};

Shard::Shard(int index, ShardGroup* group, Reactor* reactor, std::unique_ptr<BufferRing> buffers,
             const ShardOptions& options, std::vector<int> listen_fds)
    : index_(index),
      group_(group),
      reactor_(reactor),
      buffers_(std::move(buffers)),
      options_(options),
      shutdown_timer_([this] { OnShutdownTimer(); }),
      barrier_timer_([this] { reactor_->RequestTurn(); }) {
  stats_.shard = index;
  for (size_t i = 0; i < listen_fds.size(); ++i) {
    acceptors_.push_back(
        std::make_unique<Acceptor>(this, listen_fds[i], static_cast<uint32_t>(i)));
  }
  acceptors_open_ = acceptors_.size();
  hook_id_ = reactor_->AddTurnHook([this] { EndOfTurn(); });
}

Shard::~Shard() {
  reactor_->RemoveTurnHook(hook_id_);
  // By now the shard is finished (no connections) or the reactor is being torn down with
  // the process; connections still present are abandoned with their ring.
  MOAT_CHECK(connection_count_ == 0);
  for (Connection* c : graveyard_) {
    delete c;
  }
}

void Shard::StartAccepting() {
  for (auto& acceptor : acceptors_) {
    acceptor->Arm();
  }
}

void Shard::OnAccepted(int fd, uint32_t listener_index) {
  ++stats_.accepted;
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  // getpeername does not block (it copies the socket's stored address).
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    ++stats_.refused;
    reactor_->Close(nullptr, fd);  // already reset by the peer
    return;
  }
  const SocketAddress peer =
      SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), length);
  // alloc: one Connection per accepted socket (bounded by connections_max plus the
  // overload answers in flight), freed at the end of the turn its fd was closed in.
  auto* connection = new Connection(this, fd, next_connection_id_++, peer, listener_index);
  connection->list_next_ = list_head_;
  if (list_head_ != nullptr) {
    list_head_->list_prev_ = connection;
  }
  list_head_ = connection;
  ++connection_count_;
  uint32_t& client_count = per_client_[peer.ip_key()];
  ++client_count;
  stats_.connections = connection_count_;

  std::unique_ptr<StreamHandler> handler;
  if (draining_) {
    handler = nullptr;
  } else if (connection_count_ > options_.connections_max) {
    if (!options_.overload_reply.empty()) {
      handler = std::make_unique<OverloadHandler>(options_.overload_reply);
    }
  } else if (factory_) {
    ClientInfo info{connection->peer(), listener_index, index_, connection_count_,
                    client_count};
    handler = factory_(*connection, info);
  }
  if (handler == nullptr) {
    ++stats_.refused;
    connection->Close(CloseReason::kRefused);
    return;
  }
  connection->Open(std::move(handler));
}

void Shard::QueueFlush(Connection* connection) {
  flush_list_.push_back(connection);
  reactor_->RequestTurn();
}

void Shard::Release(Connection* connection) {
  if (connection->handler_ != nullptr) {
    connection->handler_->OnClosed(*connection, connection->reason_);
  }
  if (connection->list_prev_ != nullptr) {
    connection->list_prev_->list_next_ = connection->list_next_;
  } else {
    list_head_ = connection->list_next_;
  }
  if (connection->list_next_ != nullptr) {
    connection->list_next_->list_prev_ = connection->list_prev_;
  }
  connection->list_prev_ = connection->list_next_ = nullptr;
  auto it = per_client_.find(connection->peer().ip_key());
  MOAT_CHECK(it != per_client_.end());
  if (--it->second == 0) {
    per_client_.erase(it);
  }
  --connection_count_;
  ++stats_.closed;
  stats_.connections = connection_count_;
  graveyard_.push_back(connection);
  reactor_->RequestTurn();
}

void Shard::EndOfTurn() {
  // Flush first: a connection on the list may also be in the graveyard (closed later in
  // the turn); Flush() ignores closed connections, so free only after.
  for (size_t round = 0; round < 4 && !flush_list_.empty(); ++round) {
    std::vector<Connection*> list;
    list.swap(flush_list_);
    for (Connection* connection : list) {
      connection->Flush();
    }
    // Flush may deliver pending input, whose handler may stage more output or
    // queue more deliveries: a few rounds, the rest next turn.
  }
  for (Connection* connection : graveyard_) {
    if (connection->flush_queued_) {
      std::erase(flush_list_, connection);
    }
    delete connection;
  }
  graveyard_.clear();
  if (draining_) {
    MaybeFinish();
  }
}

size_t Shard::ClientConnections(const IpKey& ip) const {
  auto it = per_client_.find(ip);
  return it == per_client_.end() ? 0 : it->second;
}

ShardStats Shard::stats() const {
  ShardStats stats = stats_;
  stats.connections = connection_count_;
  stats.buffers_total = buffers_->count();
  stats.buffers_available = buffers_->available();
  stats.timers = reactor_->timers().size();
  stats.reactor = reactor_->stats();
  return stats;
}

void Shard::ApplyReload(std::shared_ptr<const void> snapshot) {
  if (reload_handler_) {
    reload_handler_(std::move(snapshot));
  }
}

void Shard::BeginShutdown(absl::Duration grace) {
  if (draining_) {
    // A second request with no grace (second SIGTERM) ends the grace period now.
    if (grace <= absl::ZeroDuration() && !grace_expired_) {
      reactor_->CancelTimer(shutdown_timer_);
      OnShutdownTimer();
    }
    return;
  }
  draining_ = true;
  log::Info("shard %d: shutting down: %d connections, grace %s", index_, connection_count_,
            absl::FormatDuration(grace));
  for (auto& acceptor : acceptors_) {
    acceptor->Stop();
  }
  ForEachConnection([](Connection& c) { c.BeginShutdown(ShutdownPhase::kDraining); });
  reactor_->ArmTimer(shutdown_timer_, grace);
  reactor_->RequestTurn();
}

void Shard::OnShutdownTimer() {
  if (!grace_expired_) {
    grace_expired_ = true;
    ForEachConnection([](Connection& c) { c.BeginShutdown(ShutdownPhase::kGraceExpired); });
    // Whatever is still there after the linger time (plus a margin) is cut.
    reactor_->ArmTimer(shutdown_timer_, options_.close_linger + absl::Seconds(1));
    return;
  }
  if (connection_count_ > 0) {
    log::Warning("shard %d: closing %d connections left after the grace period", index_,
                 connection_count_);
    ForEachConnection([](Connection& c) { c.Close(CloseReason::kShutdown); });
  }
}

void Shard::OnAcceptorClosed() {
  MOAT_CHECK(acceptors_open_ > 0);
  --acceptors_open_;
  reactor_->RequestTurn();
}

void Shard::MaybeFinish() {
  if (finished_ || connection_count_ > 0 || acceptors_open_ > 0 || !graveyard_.empty()) {
    return;
  }
  if (barrier_ && !barrier_()) {
    if (barrier_deadline_ns_ == 0) {
      barrier_deadline_ns_ =
          reactor_->NowNs() + absl::ToInt64Nanoseconds(options_.barrier_wait_max);
    }
    if (reactor_->NowNs() < barrier_deadline_ns_) {
      // Usually the barrier's own completions (the spool's fdatasync) wake the loop; the
      // poll timer bounds the wait if they do not.
      reactor_->ArmTimer(barrier_timer_, absl::Milliseconds(10));
      return;
    }
    log::Error("shard %d: shutdown barrier still closed after %s; stopping anyway", index_,
               absl::FormatDuration(options_.barrier_wait_max));
  }
  reactor_->CancelTimer(shutdown_timer_);
  finished_ = true;
  reactor_->Stop();
}

}  // namespace moat::reactor
