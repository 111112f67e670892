// core/reactor/connection.h
//
// One accepted TCP connection on a shard, as a byte stream between the ring and a
// StreamHandler (the SMTP session implements it), with a Transform slot in between
// (identity now; STARTTLS puts the TLS stream there).
//
// Input: a multishot recv over the shard's provided-buffer ring. Each buffer is handed to
// the handler (through the transform) and returned to the ring at once, so an idle
// connection holds no receive buffer. OnData() returns how many bytes it consumed; the
// rest is kept by the connection (pending input) and reading pauses.
// Backpressure: PauseReading() CANCELS the kernel recv; bytes the kernel had already
// delivered before the cancel took effect are kept in the pending input (bounded by
// pending_input_bytes_max; over it the connection is closed with kOverflow; at most one
// buffer ring's worth arrives after the decision, since the cancel is submitted before the
// deferred task work that fills buffers runs again), everything
// later waits in the socket's own receive queue (TCP flow control pushes back on the
// client). ResumeReading() hands the pending input over first (at the end of the turn),
// then re-arms the recv. HoldInput() is the cheap pause for a short wait in which the peer is
// not expected to send (an SMTP client waiting for the 250 after its dot): the recv stays
// armed and what arrives is kept as pending input, up to kHeldInputMax bytes; beyond that it
// turns into PauseReading(). It saves a cancel and a re-arm per message.
// Output: Send() stages bytes (bounded by output_bytes_max: Send returns false instead of
// growing further); staged output is flushed at the end of the loop turn, one send SQE
// per connection per turn; OnDrained() tells the handler when all of it left.
// Closing: Close() is abortive (cancel recv/send, wait for every in-flight operation,
// close the fd through the ring); CloseAfterFlush() is graceful (stop reading input,
// flush output, shutdown(SHUT_WR), read and discard until the peer's EOF or the linger
// time, then Close()), so a peer that sent more is not answered with a reset. OnClosed()
// is the handler's last call, after the fd is closed; then the connection and its handler
// are destroyed (at the end of that turn). In-flight operations are counted; the
// destructor checks the count is zero.
//
// STARTTLS (CVE-2011-0411): on "STARTTLS" the session returns the bytes up to the end of
// that line from OnData (reading pauses, the rest is kept), sends 220, and in OnDrained()
// calls DiscardBufferedInput(), SetTransform(tls) and ResumeReading(). The pause cancels
// the recv before the 220 is submitted, so nothing received after it can be plaintext
// that slipped in.
//
// Owner: the shard thread; not thread-safe. Carries untrusted network bytes but parses
// none of them (the handler does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "core/reactor/operation.h"
#include "core/reactor/socket_address.h"
#include "core/reactor/timer_wheel.h"

namespace moat::reactor {

class Connection;
class Reactor;
class Shard;

enum class CloseReason : uint8_t {
  kLocal,       // the handler called Close() / CloseAfterFlush()
  kPeerClosed,  // EOF from the peer
  kError,       // a recv/send error (reset, broken pipe) or a transform failure
  kTimeout,     // the connection's timer fired and the handler did not override OnTimeout
  kShutdown,    // graceful shutdown ran out of time
  kOverflow,    // pending input exceeded pending_input_bytes_max
  kRefused,     // no handler (factory said no, or the shard was shutting down)
};
const char* CloseReasonName(CloseReason reason);

enum class ShutdownPhase : uint8_t {
  kDraining,      // the shard stopped accepting; finish soon (e.g. 421 at the next command)
  kGraceExpired,  // the grace period is over: say goodbye now
};

// Implemented by the protocol layer (the SMTP session). Every call runs on the shard thread.
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  // The connection is set up; a good place to send a greeting.
  virtual void OnOpen(Connection& /*connection*/) {}
  // Plaintext from the peer. Returns how many bytes were consumed (<= data.size()); if
  // fewer, the rest is kept, reading pauses and the rest is offered again (with any later
  // input appended) after ResumeReading(). `data` is valid during the call only.
  virtual size_t OnData(Connection& connection, std::span<const char> data) = 0;
  // All staged output has been sent (handed to the kernel).
  virtual void OnDrained(Connection& /*connection*/) {}
  // The connection's timer (SetTimeout) fired. Default: CloseAfterFlush(kTimeout).
  virtual void OnTimeout(Connection& connection);
  // Graceful shutdown. Default: nothing for kDraining, CloseAfterFlush(kShutdown) for
  // kGraceExpired.
  virtual void OnShutdown(Connection& connection, ShutdownPhase phase);
  // The last call: the fd is closed. The handler is destroyed after this returns.
  virtual void OnClosed(Connection& connection, CloseReason reason) = 0;
};

// A byte transform between the wire and the handler (TLS later). Identity when unset.
class Transform {
 public:
  virtual ~Transform() = default;
  // Raw network bytes in: appends the plaintext they carry to *plain and any bytes the
  // transform itself must send (handshake records, alerts) to *raw_out. Returns false on
  // a fatal error: the connection is closed with kError.
  virtual bool Decode(std::span<const char> raw, std::string* plain, std::string* raw_out) = 0;
  // Plaintext from the handler: appends the bytes to put on the wire to *raw_out.
  virtual bool Encode(std::span<const char> plain, std::string* raw_out) = 0;
};

class Connection {
 public:
  // Made by the Shard on accept. `fd` is owned from here on.
  Connection(Shard* shard, int fd, uint64_t id, const SocketAddress& peer,
             uint32_t listener_index);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  uint64_t id() const { return id_; }
  int fd() const { return fd_; }
  const SocketAddress& peer() const { return peer_; }
  // Index of the moat_listen address it came in on.
  uint32_t listener_index() const { return listener_index_; }
  Shard& shard() const { return *shard_; }
  Reactor& reactor() const;
  StreamHandler* handler() const { return handler_.get(); }

  // ---- Output ----
  // Stages `bytes` (through the transform) for the end-of-turn flush. Returns false, and
  // stages nothing, when closing or when the output would exceed output_bytes_max.
  [[nodiscard]] bool Send(std::string_view bytes);
  // Bytes staged or in flight.
  size_t output_bytes() const { return staged_.size() + (sending_.size() - send_offset_); }

  // ---- Input ----
  void PauseReading();
  // A pause that keeps the recv armed (see the header comment). Never for STARTTLS, whose
  // recv must be gone before its 220 leaves.
  void HoldInput();
  static constexpr size_t kHeldInputMax = 16 * 1024;
  void ResumeReading();
  bool reading_paused() const { return paused_; }
  // Plaintext received but not yet consumed by the handler.
  size_t buffered_input_bytes() const { return pending_in_.size(); }
  // Drops the pending input (STARTTLS: plaintext pipelined after the command).
  void DiscardBufferedInput();
  // Switches the transform (nullptr = identity). Applies to bytes received and sent from
  // now on; staged output already encoded stays as it is.
  void SetTransform(std::unique_ptr<Transform> transform);
  Transform* transform() const { return transform_.get(); }

  // ---- Timer slot (idle / command timeouts) ----
  // (Re)arms the connection's timer; OnTimeout() runs when it fires. Ignored once closing.
  void SetTimeout(absl::Duration after);
  void CancelTimeout();

  // ---- Closing ----
  void CloseAfterFlush(CloseReason reason = CloseReason::kLocal);
  void Close(CloseReason reason = CloseReason::kLocal);
  bool closing() const { return state_ != State::kOpen; }

  uint64_t bytes_in() const { return bytes_in_; }
  uint64_t bytes_out() const { return bytes_out_; }
  // Send SQEs submitted so far (at most one per loop turn).
  uint64_t sends() const { return sends_; }
  int inflight_for_test() const { return inflight_; }

 private:
  friend class Shard;
  enum class State : uint8_t {
    kOpen,       // normal
    kFlushing,   // CloseAfterFlush: sending what is staged
    kLingering,  // shutdown(SHUT_WR) done; reading until EOF
    kClosing,    // cancelling, waiting for in-flight operations
    kClosingFd,  // close(fd) submitted
    kClosed,     // fd closed; handler told; waiting to be freed
  };
  enum class OpKind : uint8_t { kRecv, kSend, kClose };

  // Called by the Shard.
  void Open(std::unique_ptr<StreamHandler> handler);
  void Flush();           // end-of-turn: deliver pending input or submit one send
  void BeginShutdown(ShutdownPhase phase);

  void OnComplete(OpKind kind, int32_t res, uint32_t flags);
  void OnRecv(int32_t res, uint32_t flags);
  void OnSend(int32_t res);
  void OnCloseDone(int32_t res);
  void OnTimer();
  void HandleInput(std::span<const char> raw);
  void Dispatch(std::span<const char> plain);
  void DeliverPending();
  bool AppendPending(std::span<const char> plain);
  void OnEndOfStream();
  void ArmRecv();
  bool ShouldRead() const;
  void QueueFlush();
  void StartShutdownWrite();
  void MaybeCloseFd();

  Shard* const shard_;
  int fd_;
  const uint64_t id_;
  const SocketAddress peer_;
  const uint32_t listener_index_;
  State state_ = State::kOpen;
  CloseReason reason_ = CloseReason::kLocal;
  bool paused_ = false;
  bool holding_ = false;  // paused by HoldInput(): the recv stays armed
  bool recv_armed_ = false;
  bool send_inflight_ = false;
  bool flush_queued_ = false;
  bool deliver_pending_ = false;
  bool eof_seen_ = false;
  bool discard_requested_ = false;
  int inflight_ = 0;  // operations with a completion still due
  std::unique_ptr<StreamHandler> handler_;
  std::unique_ptr<Transform> transform_;
  std::string staged_;      // output waiting for the end-of-turn flush
  std::string sending_;     // output handed to the kernel (stable until its completion)
  size_t send_offset_ = 0;  // bytes of sending_ already sent
  std::string pending_in_;  // plaintext kept while paused / not consumed
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  uint64_t sends_ = 0;
  Timer timer_;
  using Op = MemberOperation<Connection, OpKind, &Connection::OnComplete>;
  Op recv_op_{this, OpKind::kRecv};
  Op send_op_{this, OpKind::kSend};
  Op close_op_{this, OpKind::kClose};
  // The shard's list of live connections.
  Connection* list_prev_ = nullptr;
  Connection* list_next_ = nullptr;
};

}  // namespace moat::reactor
