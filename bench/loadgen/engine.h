// bench/loadgen/engine.h
//
// The io_uring event loop of moat-loadgen: one ring (SINGLE_ISSUER | DEFER_TASKRUN when the
// kernel has them) that drives the sender's client connections, the sink's accepted connections,
// or both at once (`run`). Every socket operation is an SQE whose user_data is an Op owned by a
// connection (or by the engine); no call in the loop blocks: connect, recv, send, accept (multishot)
// and the sink's file writes and fdatasync go through the ring; timers are ring timeouts (a
// 100 ms tick for timeouts, progress and deadlines; one for the open-loop schedule). socket(),
// setsockopt(), shutdown() and close() of a socket are the only direct system calls.
//
// Sender: closed loop (each of --sessions sessions starts its next transaction as soon as the
// last one ends; latency from that start) or open loop (--rate: transaction k is due at
// start + k/rate; a due transaction waits for a free session and its latency counts from the
// due time, so a stalled server shows up in the percentiles instead of slowing the schedule:
// no coordinated omission). Every attempted transaction ends as exactly one of accepted,
// rejected (all recipients unknown and rejected, as expected) or error; a connection that fails
// before any transaction consumes one attempt as an error, so a dead server cannot stall a run
// bounded by --messages.
//
// Sink: see smtp_sink.h; with --fsync or --dir the 250 follows the completion of the linked
// write (+ fdatasync) chain.
//
// TLS (--starttls, --tls-cert): a connection's bytes pass through its Transform
// (tls::TlsTransform: the client role for the sender, the server role for the sink) once STARTTLS was answered 220; the handshake is
// driven by the same recv/send completions as the SMTP dialogue, so it never blocks the loop.
// wire_out holds bytes ready for the socket (the plaintext 220, then TLS records) in order.
//
// Untrusted input: the bytes peers send go straight to ClientSession / SinkSession (see their
// headers); the engine itself interprets only CQE results.
//
// Thread-safety: one thread; the Engine must be created, run and destroyed on it.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/loadgen/message.h"
#include "bench/loadgen/options.h"
#include "bench/loadgen/stats.h"
#include "tls/client_context.h"
#include "tls/session_cache.h"
#include "tls/tls_transform.h"
#include "tls/server_context.h"

namespace moat::loadgen {

struct Conn;
struct ClientConn;
struct ServerConn;
struct WriteJob;

enum class OpKind : uint8_t {
  kConnect, kRecv, kSend, kAccept, kTick, kSchedule, kFile, kIgnore
};

struct Op {
  OpKind kind;
  void* owner;
};

class Engine {
 public:
  explicit Engine(const Options& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Sets up the ring, the listener (sink/run) and the scratch file (--fsync).
  absl::Status Init();
  // SIGINT/SIGTERM end Run() early (the report is still printed); SIGPIPE is ignored.
  static void InstallSignalHandlers();
  // Runs until the work is done, the deadline passes or a stop signal arrives.
  void Run();

  const SendStats& send_stats() const { return send_; }
  const SinkStats& sink_stats() const { return sink_; }
  // The sink's bound port (useful with --listen HOST:0).
  int listen_port() const { return listen_port_; }

  // Called by the connections (public for them; not an API).
  void OnClientReady(ClientConn* c);
  void OnClientTransactionDone(ClientConn* c, const TransactionResult& r);
  void OnClientReply(int stage, int code);
  int SinkRcptReply();
  void OnSinkMessage(ServerConn* c, std::string& data, uint32_t rcpts);
  void OnSinkHandshake(ServerConn* c, bool resumed);

 private:
  io_uring_sqe* Sqe();
  void Submit(io_uring_sqe* sqe, Op* op, Conn* owner_conn);
  void Dispatch(io_uring_cqe* cqe);

  // Connections.
  void StartClient();
  void OnConnect(ClientConn* c, int res);
  void OnRecv(Conn* c, int res);
  void OnSend(Conn* c, int res);
  void Flush(Conn* c);
  void ArmRecv(Conn* c);
  void Close(Conn* c);
  void MaybeFree(Conn* c);
  void OnClientClosed(ClientConn* c);
  void OnClientRecv(ClientConn* c, int res);
  void OnServerRecv(ServerConn* c, int res);
  // Runs raw bytes through the connection's Transform (if any); *data/*size then point at the
  // plaintext. False on a TLS error.
  bool DecodeInput(Conn* c, int res, const char** data, size_t* size);
  void StartClientTls(ClientConn* c);
  void FailClientTls(ClientConn* c);  // counts, logs, aborts the session, closes
  void StartServerTls(ServerConn* c);
  void OnAccept(int res, uint32_t flags);
  void ArmAccept();
  void StopAccepting();

  // Sender work.
  bool WorkRemaining() const;
  bool NeedNewClient() const;
  bool TakeWork(uint64_t* intended_ns);
  void BeginTransaction(ClientConn* c, uint64_t intended_ns);
  void FailAttempt();
  void ArmSchedule();
  void OnSchedule();
  void AssignIdle();

  // Sink writes.
  void StartWrite(WriteJob* job);
  void OnFileOp(Op* op, int res);
  void FinishSinkMessage(ServerConn* c, const std::string& data, uint32_t rcpts, uint64_t number);

  void ArmTick();
  void OnTick();
  void Progress(bool final_line);
  bool Finished();
  void UpdateElapsed();

  Options options_;
  io_uring ring_{};
  bool ring_ready_ = false;
  uint64_t start_ns_ = 0;
  uint64_t deadline_ns_ = 0;  // --duration
  bool stopping_ = false;     // no new work: the deadline passed
  uint64_t last_progress_ns_ = 0;
  bool show_progress_ = false;
  std::vector<Conn*> conns_;

  // Sender.
  bool sending_ = false;
  MessageFactory* factory_ = nullptr;
  std::unique_ptr<MessageFactory> factory_owner_;
  uint32_t clients_ = 0;           // live client connections
  uint32_t reconnects_due_ = 0;    // sessions to restart at the next tick (after a failure)
  uint64_t connections_started_ = 0;
  uint64_t capacity_ = 0;          // transactions the live sessions may still begin
  uint64_t released_ = 0;          // open loop: transactions made due so far
  std::deque<uint64_t> due_;       // open loop: intended start times waiting for a session
  std::vector<ClientConn*> idle_;  // open loop: greeted sessions without work
  uint64_t message_seq_ = 0;
  uint64_t rcpt_seq_ = 0;
  uint64_t unknown_seq_ = 0;
  double unknown_acc_ = 0;
  uint64_t finished_ = 0;          // attempts that reached an outcome
  uint64_t last_done_ns_ = 0;
  uint64_t send_done_ns_ = 0;      // run: when the sender finished
  Op tick_op_{OpKind::kTick, nullptr};
  __kernel_timespec tick_ts_{};
  Op schedule_op_{OpKind::kSchedule, nullptr};
  __kernel_timespec schedule_ts_{};
  bool schedule_armed_ = false;

  // Sink.
  bool sinking_ = false;
  int listen_fd_ = -1;
  int listen_port_ = 0;
  Op accept_op_{OpKind::kAccept, nullptr};
  bool accept_armed_ = false;
  bool accepting_ = false;
  double acc_4xx_ = 0;
  double acc_5xx_ = 0;
  uint64_t next_file_number_ = 1;
  uint64_t queue_number_ = 0;
  int scratch_fd_ = -1;
  uint64_t scratch_offset_ = 0;
  std::vector<int> free_slots_;
  std::deque<WriteJob*> waiting_jobs_;
  uint64_t jobs_in_flight_ = 0;
  uint64_t first_conn_ns_ = 0;
  uint64_t last_message_ns_ = 0;
  uint64_t sink_limit_reached_ns_ = 0;
  uint32_t servers_ = 0;

  // TLS.
  std::shared_ptr<const tls::ClientContext> tls_client_;     // --starttls
  tls::ClientSessionCache tls_sessions_;                     // --tls-resume
  std::shared_ptr<const tls::ServerContext> tls_server_;     // --tls-cert

  SendStats send_;
  SinkStats sink_;
};

uint64_t MonotonicNs();
uint64_t RealtimeNs();

}  // namespace moat::loadgen
