// core/server/session_handler.cc: see session_handler.h.
#include "core/server/session_handler.h"

#include <string_view>
#include <utility>

namespace moat::server {

SessionHandler::SessionHandler(const net::SessionSettings& settings, net::Policy& policy,
                               ShardSpool& spool, net::ConnectionInfo info,
                               std::shared_ptr<const void> pin)
    : pin_(std::move(pin)), spool_(spool), session_(settings, policy, spool, std::move(info)) {
  spool_.Register(&session_, this);
}

SessionHandler::~SessionHandler() { spool_.Detach(&session_); }

void SessionHandler::OnOpen(reactor::Connection& connection) {
  connection_ = &connection;
  session_.Start();
  Pump();
}

size_t SessionHandler::OnData(reactor::Connection& /*connection*/, std::span<const char> data) {
  // The session buffers what it cannot act on yet (pipelined commands behind a pending
  // answer); reading pauses below so that buffer stays bounded by one receive.
  session_.OnData(std::string_view(data.data(), data.size()));
  Pump();
  return data.size();
}

void SessionHandler::OnDrained(reactor::Connection& /*connection*/) {
  // Only now has the output left: the session learns it here, so bytes that arrived
  // before the greeting was handed to the kernel count as talking before the greeting.
  if (handed_bytes_ > 0) {
    session_.ConsumeOutput(handed_bytes_);
    handed_bytes_ = 0;
    Pump();
  }
}

void SessionHandler::OnTimeout(reactor::Connection& /*connection*/) {
  if (delaying_) {
    delaying_ = false;
    session_.OnDelayDone();
  } else {
    session_.OnTimeout();
  }
  Pump();
}

void SessionHandler::OnShutdown(reactor::Connection& connection, reactor::ShutdownPhase phase) {
  session_.OnShutdown();
  Pump();
  if (phase == reactor::ShutdownPhase::kGraceExpired && !session_.AwaitingQueue()) {
    connection.CloseAfterFlush(reactor::CloseReason::kShutdown);
  }
}

void SessionHandler::OnClosed(reactor::Connection& /*connection*/,
                              reactor::CloseReason /*reason*/) {
  if (!session_.WantsClose()) {
    session_.OnEof();
  }
  spool_.Detach(&session_);
  connection_ = nullptr;
}

void SessionHandler::Pump() {
  if (connection_ == nullptr || connection_->closing()) {
    return;
  }
  const std::string& out = session_.output();
  if (out.size() > handed_bytes_) {
    std::string_view fresh(out.data() + handed_bytes_, out.size() - handed_bytes_);
    if (!connection_->Send(fresh)) {
      // The client does not read its replies: over the per-connection output bound.
      connection_->Close(reactor::CloseReason::kOverflow);
      return;
    }
    handed_bytes_ = out.size();
  }
  if (session_.WantsClose()) {
    connection_->CloseAfterFlush(reactor::CloseReason::kLocal);
    return;
  }
  if (session_.PendingDelay() > absl::ZeroDuration()) {
    if (!delaying_) {
      delaying_ = true;
      connection_->PauseReading();
      connection_->SetTimeout(session_.PendingDelay());
    }
    return;
  }
  if (session_.WantsPause()) {
    // Waiting for the spool's fdatasync (or STARTTLS, later): no input, no idle timeout.
    connection_->PauseReading();
    connection_->CancelTimeout();
    return;
  }
  if (connection_->reading_paused()) {
    connection_->ResumeReading();
  }
  connection_->SetTimeout(session_.timeout());
}

}  // namespace moat::server
