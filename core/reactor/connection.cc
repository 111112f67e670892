// core/reactor/connection.cc
//
// See connection.h. Owner: the shard thread.
#include "core/reactor/connection.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <utility>

#include "core/log/assert.h"
#include "core/log/log.h"
#include "core/reactor/reactor.h"
#include "core/reactor/shard.h"

namespace moat::reactor {

const char* CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kLocal:
      return "local";
    case CloseReason::kPeerClosed:
      return "peer closed";
    case CloseReason::kError:
      return "error";
    case CloseReason::kTimeout:
      return "timeout";
    case CloseReason::kShutdown:
      return "shutdown";
    case CloseReason::kOverflow:
      return "input overflow";
    case CloseReason::kRefused:
      return "refused";
  }
  return "unknown";
}

void StreamHandler::OnTimeout(Connection& connection) {
  connection.CloseAfterFlush(CloseReason::kTimeout);
}

void StreamHandler::OnShutdown(Connection& connection, ShutdownPhase phase) {
  if (phase == ShutdownPhase::kGraceExpired) {
    connection.CloseAfterFlush(CloseReason::kShutdown);
  }
}

Connection::Connection(Shard* shard, int fd, uint64_t id, const SocketAddress& peer,
                       uint32_t listener_index)
    : shard_(shard),
      fd_(fd),
      id_(id),
      peer_(peer),
      listener_index_(listener_index),
      timer_([this] { OnTimer(); }) {}

Connection::~Connection() {
  // An operation still in flight would complete into freed memory.
  MOAT_CHECK(inflight_ == 0);
  MOAT_CHECK(state_ == State::kClosed);
}

Reactor& Connection::reactor() const { return shard_->reactor(); }

void Connection::Open(std::unique_ptr<StreamHandler> handler) {
  handler_ = std::move(handler);
  handler_->OnOpen(*this);
  if (ShouldRead() && !recv_armed_) {
    ArmRecv();
  }
}

// ---- Output ----

bool Connection::Send(std::string_view bytes) {
  MOAT_DCHECK(reactor().OnReactorThread());
  if (state_ != State::kOpen) {
    return false;
  }
  const size_t limit = shard_->options().output_bytes_max;
  if (transform_ == nullptr) {
    if (output_bytes() + bytes.size() > limit) {
      return false;
    }
    staged_.append(bytes.data(), bytes.size());
  } else {
    std::string encoded;  // alloc: per Send with a transform (TLS records), freed here
    if (!transform_->Encode({bytes.data(), bytes.size()}, &encoded)) {
      Close(CloseReason::kError);
      return false;
    }
    if (output_bytes() + encoded.size() > limit) {
      return false;
    }
    staged_.append(encoded);
  }
  QueueFlush();
  return true;
}

void Connection::QueueFlush() {
  if (!flush_queued_) {
    flush_queued_ = true;
    shard_->QueueFlush(this);
  }
}

void Connection::Flush() {
  flush_queued_ = false;
  if (deliver_pending_) {
    deliver_pending_ = false;
    DeliverPending();
  }
  if (state_ != State::kOpen && state_ != State::kFlushing) {
    return;
  }
  if (send_inflight_) {
    return;  // its completion queues the next flush
  }
  if (send_offset_ == sending_.size()) {
    sending_.clear();
    send_offset_ = 0;
    if (staged_.empty()) {
      if (state_ == State::kFlushing) {
        StartShutdownWrite();
      }
      return;
    }
    std::swap(sending_, staged_);
  }
  send_inflight_ = true;
  ++inflight_;
  ++sends_;
  reactor().Send(&send_op_, fd_, sending_.data() + send_offset_, sending_.size() - send_offset_);
}

void Connection::OnSend(int32_t res) {
  send_inflight_ = false;
  if (state_ != State::kOpen && state_ != State::kFlushing) {
    return;
  }
  if (res < 0) {
    if (res != -ECONNRESET && res != -EPIPE) {
      log::Debug("connection %d from %s: send: %s", id_, peer_.ToString(), strerror(-res));
    }
    Close(CloseReason::kError);
    return;
  }
  bytes_out_ += static_cast<uint64_t>(res);
  shard_->stats_.bytes_out += static_cast<uint64_t>(res);
  send_offset_ += static_cast<size_t>(res);
  if (send_offset_ < sending_.size() || !staged_.empty()) {
    QueueFlush();  // the rest goes out next turn: one send per connection per turn
    return;
  }
  sending_.clear();
  send_offset_ = 0;
  // An idle connection keeps no large output buffer.
  constexpr size_t kKeptCapacityMax = 1024;
  if (sending_.capacity() > kKeptCapacityMax) {
    std::string().swap(sending_);
  }
  if (staged_.capacity() > kKeptCapacityMax) {
    std::string().swap(staged_);
  }
  if (state_ == State::kFlushing) {
    StartShutdownWrite();
    return;
  }
  handler_->OnDrained(*this);
}

// ---- Input ----

bool Connection::ShouldRead() const {
  if (eof_seen_) {
    return false;
  }
  switch (state_) {
    case State::kOpen:
      return !paused_ || holding_;
    case State::kFlushing:
    case State::kLingering:
      return true;  // read and discard until EOF, so closing sends no reset
    default:
      return false;
  }
}

void Connection::ArmRecv() {
  MOAT_DCHECK(!recv_armed_);
  recv_armed_ = true;
  ++inflight_;
  reactor().RecvMultishot(&recv_op_, fd_, shard_->buffers().group_id());
}

void Connection::OnRecv(int32_t res, uint32_t flags) {
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more) {
    recv_armed_ = false;
  }
  if (res > 0) {
    MOAT_CHECK(flags & IORING_CQE_F_BUFFER);
    const uint16_t id = BufferRing::IdFromFlags(flags);
    std::span<const char> data = shard_->buffers().Take(id, static_cast<uint32_t>(res));
    bytes_in_ += static_cast<uint64_t>(res);
    shard_->stats_.bytes_in += static_cast<uint64_t>(res);
    if (state_ == State::kOpen) {
      HandleInput(data);
    }
    // Back to the kernel right after the handler saw it: idle connections hold nothing.
    shard_->buffers().Return(id);
  } else if (res == 0) {
    OnEndOfStream();
  } else if (res == -ENOBUFS) {
    ++shard_->stats_.recv_no_buffers;  // re-armed below once buffers are back
  } else if (res != -ECANCELED) {
    if (state_ == State::kOpen || state_ == State::kFlushing || state_ == State::kLingering) {
      Close(CloseReason::kError);
    }
  }
  if (!more) {
    --inflight_;
    if (ShouldRead()) {
      ArmRecv();
    }
    MaybeCloseFd();
  }
}

void Connection::HandleInput(std::span<const char> raw) {
  std::span<const char> plain = raw;
  std::string decoded;  // alloc: only with a transform (TLS), freed at return
  if (transform_ != nullptr) {
    std::string raw_out;
    if (!transform_->Decode(raw, &decoded, &raw_out)) {
      Close(CloseReason::kError);
      return;
    }
    if (!raw_out.empty()) {
      // Transform-generated records (handshake) bypass Encode and the output bound.
      staged_.append(raw_out);
      QueueFlush();
    }
    plain = {decoded.data(), decoded.size()};
  }
  if (plain.empty()) {
    return;
  }
  if (paused_ || !pending_in_.empty()) {
    if (AppendPending(plain) && holding_ && pending_in_.size() > kHeldInputMax) {
      PauseReading();  // the peer keeps sending: let TCP flow control hold it back
    }
    return;
  }
  Dispatch(plain);
}

void Connection::Dispatch(std::span<const char> plain) {
  discard_requested_ = false;
  size_t consumed = handler_->OnData(*this, plain);
  MOAT_CHECK(consumed <= plain.size());
  if (state_ != State::kOpen || consumed == plain.size() || discard_requested_) {
    return;
  }
  if (AppendPending(plain.subspan(consumed))) {
    PauseReading();
  }
}

bool Connection::AppendPending(std::span<const char> plain) {
  if (pending_in_.size() + plain.size() > shard_->options().pending_input_bytes_max) {
    log::Warning("connection %d from %s: more than %d bytes of unconsumed input, closing", id_,
                 peer_.ToString(), shard_->options().pending_input_bytes_max);
    Close(CloseReason::kOverflow);
    return false;
  }
  // alloc: pending input, bounded by pending_input_bytes_max, released once consumed.
  pending_in_.append(plain.data(), plain.size());
  return true;
}

void Connection::DeliverPending() {
  if (state_ != State::kOpen || paused_) {
    return;
  }
  if (!pending_in_.empty()) {
    std::string input = std::move(pending_in_);
    pending_in_.clear();
    discard_requested_ = false;
    size_t consumed = handler_->OnData(*this, {input.data(), input.size()});
    MOAT_CHECK(consumed <= input.size());
    if (state_ != State::kOpen) {
      return;
    }
    if (consumed < input.size() && !discard_requested_) {
      // Keep the rest in front of anything that arrived during the call.
      input.erase(0, consumed);
      input.append(pending_in_);
      pending_in_ = std::move(input);
      PauseReading();
      return;
    }
    if (!pending_in_.empty() && !paused_) {
      deliver_pending_ = true;  // input that arrived meanwhile: next turn
      QueueFlush();
      return;
    }
  }
  if (paused_) {
    return;
  }
  if (eof_seen_) {
    CloseAfterFlush(CloseReason::kPeerClosed);
    return;
  }
  if (!recv_armed_) {
    ArmRecv();
  }
}

void Connection::OnEndOfStream() {
  eof_seen_ = true;
  switch (state_) {
    case State::kOpen:
      // Input kept for a paused handler is still served; close once it is consumed.
      if (!paused_ && pending_in_.empty()) {
        CloseAfterFlush(CloseReason::kPeerClosed);
      }
      break;
    case State::kLingering:
      Close(reason_);
      break;
    default:
      break;
  }
}

void Connection::PauseReading() {
  MOAT_DCHECK(reactor().OnReactorThread());
  if (paused_ && !holding_) {
    return;
  }
  paused_ = true;
  holding_ = false;
  if (recv_armed_ && state_ == State::kOpen) {
    reactor().Cancel(&recv_op_);
  }
}

void Connection::HoldInput() {
  MOAT_DCHECK(reactor().OnReactorThread());
  if (paused_) {
    return;
  }
  paused_ = true;
  holding_ = true;
}

void Connection::ResumeReading() {
  MOAT_DCHECK(reactor().OnReactorThread());
  if (!paused_) {
    return;
  }
  paused_ = false;
  holding_ = false;
  if (state_ != State::kOpen) {
    return;
  }
  // Deliver at the end of the turn, not inside the caller (often the handler itself).
  deliver_pending_ = true;
  QueueFlush();
}

void Connection::DiscardBufferedInput() {
  pending_in_.clear();
  std::string().swap(pending_in_);
  discard_requested_ = true;
}

void Connection::SetTransform(std::unique_ptr<Transform> transform) {
  transform_ = std::move(transform);
}

// ---- Timer ----

void Connection::SetTimeout(absl::Duration after) {
  MOAT_DCHECK(reactor().OnReactorThread());
  if (state_ == State::kOpen) {
    reactor().ArmTimer(timer_, after);
  }
}

void Connection::CancelTimeout() {
  if (state_ == State::kOpen) {
    reactor().CancelTimer(timer_);
  }
}

void Connection::OnTimer() {
  if (state_ == State::kOpen) {
    handler_->OnTimeout(*this);
  } else if (state_ == State::kFlushing || state_ == State::kLingering) {
    Close(reason_);  // the peer did not read or did not close within the linger time
  }
}

// ---- Closing ----

void Connection::BeginShutdown(ShutdownPhase phase) {
  if (state_ == State::kOpen) {
    handler_->OnShutdown(*this, phase);
  }
}

void Connection::CloseAfterFlush(CloseReason reason) {
  MOAT_DCHECK(reactor().OnReactorThread());
  if (state_ != State::kOpen) {
    return;
  }
  reason_ = reason;
  state_ = State::kFlushing;
  std::string().swap(pending_in_);
  reactor().ArmTimer(timer_, shard_->options().close_linger);
  paused_ = false;
  holding_ = false;
  if (ShouldRead() && !recv_armed_) {
    ArmRecv();
  }
  QueueFlush();
}

void Connection::StartShutdownWrite() {
  MOAT_DCHECK(state_ == State::kFlushing);
  state_ = State::kLingering;
  // A direct call, not IORING_OP_SHUTDOWN: the kernel always hands that opcode to an io-wq
  // worker (one thread wake-up per closed connection, about 1,800 a second in W1), while
  // shutdown(SHUT_WR) on a TCP socket only queues the FIN and never blocks. An error (ENOTCONN
  // after a reset) changes nothing: we close either way.
  ::shutdown(fd_, SHUT_WR);
  if (eof_seen_) {
    Close(reason_);
  }
}

void Connection::Close(CloseReason reason) {
  MOAT_DCHECK(reactor().OnReactorThread());
  if (state_ == State::kClosing || state_ == State::kClosingFd || state_ == State::kClosed) {
    return;
  }
  if (state_ == State::kOpen) {
    reason_ = reason;
  }
  state_ = State::kClosing;
  reactor().CancelTimer(timer_);
  std::string().swap(pending_in_);
  if (recv_armed_) {
    reactor().Cancel(&recv_op_);
  }
  if (send_inflight_) {
    reactor().Cancel(&send_op_);
  }
  MaybeCloseFd();
}

void Connection::MaybeCloseFd() {
  if (state_ != State::kClosing || inflight_ != 0) {
    return;
  }
  state_ = State::kClosingFd;
  ++inflight_;
  reactor().Close(&close_op_, fd_);
}

void Connection::OnCloseDone(int32_t res) {
  if (res < 0) {
    log::Warning("connection %d: close: %s", id_, strerror(-res));
  }
  fd_ = -1;
  state_ = State::kClosed;
  shard_->Release(this);
}

void Connection::OnComplete(OpKind kind, int32_t res, uint32_t flags) {
  switch (kind) {
    case OpKind::kRecv:
      OnRecv(res, flags);  // counts itself down (multishot)
      return;
    case OpKind::kSend:
      --inflight_;
      OnSend(res);
      break;
    case OpKind::kClose:
      --inflight_;
      OnCloseDone(res);
      return;
  }
  MaybeCloseFd();
}

}  // namespace moat::reactor
