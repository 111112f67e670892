// bench/loadgen/engine.cc: see engine.h.
#include "bench/loadgen/engine.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/loadgen/smtp_client.h"
#include "bench/loadgen/smtp_sink.h"
#include "core/log/assert.h"
#include "core/log/log.h"
#include "tls/tls_transform.h"

namespace moat::loadgen {

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t RealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

volatile sig_atomic_t g_stop_requested = 0;

void OnStopSignal(int) { g_stop_requested = 1; }

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kCqEntries = 65536;
constexpr size_t kClientRecvBytes = 4096;
constexpr size_t kServerRecvBytes = 65536;
constexpr int kFileSlots = 256;
constexpr uint64_t kTickNs = 100'000'000;      // 100 ms
constexpr uint64_t kScheduleMinNs = 50'000;    // open-loop timer granularity floor
constexpr uint64_t kSinkGraceNs = 5'000'000'000;  // after --messages: let clients QUIT
constexpr uint64_t kRunGraceNs = 3'000'000'000;   // run: let the relay's cached connections QUIT
constexpr uint64_t kScratchWrapBytes = uint64_t{256} << 20;

__kernel_timespec ToTimespec(uint64_t ns) {
  __kernel_timespec ts{};
  ts.tv_sec = static_cast<int64_t>(ns / 1000000000ull);
  ts.tv_nsec = static_cast<long long>(ns % 1000000000ull);
  return ts;
}

uint64_t SecondsToNs(double s) { return static_cast<uint64_t>(s * 1e9); }

}  // namespace

// One TCP connection, either side. Freed when closing and no operation is in flight.
struct Conn {
  enum class Role { kClient, kServer };
  explicit Conn(Role r, size_t recv_bytes) : role(r), rbuf(recv_bytes) {}
  virtual ~Conn() = default;
  virtual std::string& Out() = 0;

  Role role;
  int fd = -1;
  int in_flight = 0;
  bool closing = false;
  bool sending = false;
  bool recv_armed = false;
  std::string sending_buf;
  size_t send_off = 0;
  // TLS: installed after STARTTLS's 220; wire_out = bytes for the socket not yet sending.
  std::unique_ptr<reactor::Transform> transform;
  std::string wire_out;
  std::string plain_in;  // decoded input of the current recv
  uint64_t deadline_ns = 0;
  size_t list_index = 0;
  std::vector<char> rbuf;
  Op recv_op{OpKind::kRecv, this};
  Op send_op{OpKind::kSend, this};
};

struct ClientConn final : Conn, ClientListener {
  ClientConn(Engine* e, const Options& o)
      : Conn(Role::kClient, kClientRecvBytes),
        engine(e),
        session(o.helo, o.from, o.pipelining, this, o.starttls) {}
  std::string& Out() override { return session.out(); }
  void OnReply(Stage stage, int code) override { engine->OnClientReply(static_cast<int>(stage), code); }
  void OnReady() override { engine->OnClientReady(this); }
  void OnTransactionDone(const TransactionResult& r) override {
    engine->OnClientTransactionDone(this, r);
  }

  Engine* engine;
  ClientSession session;
  ClientMessage message;
  uint64_t intended_ns = 0;
  uint32_t transactions = 0;  // finished
  uint32_t begun = 0;         // started (counts against --msgs-per-conn)
  bool connected = false;
  bool idle = false;  // in the engine's idle_ list
  uint64_t started_ns = 0;     // connect submitted
  tls::TlsTransform* tls = nullptr;  // == transform, once STARTTLS was answered
  bool tls_completed = false;        // the handshake completed since the last look
  uint64_t tls_start_ns = 0;   // ClientHello produced
  Op connect_op{OpKind::kConnect, this};
  sockaddr_in source{};
};

struct ServerConn final : Conn, SinkListener {
  ServerConn(Engine* e, const Options& o, bool offer_tls)
      : Conn(Role::kServer, kServerRecvBytes), engine(e), session(o.hostname, this) {
    if (offer_tls) {
      session.OfferStartTls();
    }
    session.OfferChunking(o.chunking);
  }
  std::string& Out() override { return session.out(); }
  int RcptReply() override { return engine->SinkRcptReply(); }
  void OnMessage(std::string& data, uint32_t rcpts) override {
    engine->OnSinkMessage(this, data, rcpts);
  }

  Engine* engine;
  SinkSession session;
  tls::TlsTransform* tls = nullptr;  // == transform, after STARTTLS
};

// A received message on its way to disk: openat_direct -> write -> [fdatasync] -> close_direct
// (--dir) or write -> fdatasync on the scratch file (--fsync), linked. The connection counts it
// as an operation in flight, so it outlives the job.
struct WriteJob {
  ServerConn* conn = nullptr;
  std::string data;
  uint32_t rcpts = 0;
  uint64_t number = 0;
  int slot = -1;
  int ops_left = 0;
  bool failed = false;
  std::string path;
  // One Op per step, so a completion says which step it was.
  Op ops[4] = {{OpKind::kFile, this}, {OpKind::kFile, this}, {OpKind::kFile, this},
               {OpKind::kFile, this}};
  bool write_step[4] = {false, false, false, false};
};

Engine::Engine(const Options& options) : options_(options) {
  sending_ = options_.mode != Mode::kSink;
  sinking_ = options_.mode != Mode::kSend;
}

Engine::~Engine() {
  if (ring_ready_) {
    io_uring_queue_exit(&ring_);
  }
  for (Conn* c : conns_) {
    if (c->fd >= 0) {
      close(c->fd);
    }
    delete c;
  }
  for (WriteJob* j : waiting_jobs_) {
    delete j;
  }
  if (listen_fd_ >= 0) {
    close(listen_fd_);
  }
  if (scratch_fd_ >= 0) {
    close(scratch_fd_);
  }
}

absl::Status Engine::Init() {
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                 IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
  params.cq_entries = kCqEntries;
  int r = io_uring_queue_init_params(kRingEntries, &ring_, &params);
  if (r == -EINVAL) {  // an older kernel: plain ring
    params = io_uring_params{};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = kCqEntries;
    r = io_uring_queue_init_params(kRingEntries, &ring_, &params);
  }
  if (r < 0) {
    return absl::InternalError(absl::StrCat("io_uring_queue_init: ", strerror(-r)));
  }
  ring_ready_ = true;

  if (sinking_) {
    const Endpoint& ep = options_.listen;
    listen_fd_ = socket(ep.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) {
      return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
    }
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // A sink that just exited on the same port may still hold its listener for a moment: its
    // io_uring (and the multishot accept on it) is torn down by a kernel worker after the
    // process is gone. Seen in bench/compare, which starts one sink per open-loop run on the
    // relay's next-hop port: the new sink failed with EADDRINUSE while the old listener still
    // answered, so the port looked open and then refused every delivery. Bounded: 5 s.
    for (int attempt = 0;; ++attempt) {
      if (bind(listen_fd_, reinterpret_cast<const sockaddr*>(&ep.addr), ep.addr_len) == 0) {
        break;
      }
      if (errno != EADDRINUSE || attempt >= 100) {
        return absl::InternalError(absl::StrCat("bind ", ep.text, ": ", strerror(errno)));
      }
      usleep(50'000);
    }
    if (listen(listen_fd_, 4096) != 0) {
      return absl::InternalError(absl::StrCat("listen ", ep.text, ": ", strerror(errno)));
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
    listen_port_ = ntohs(bound.ss_family == AF_INET
                             ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                             : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    if (!options_.dir.empty()) {
      r = io_uring_register_files_sparse(&ring_, kFileSlots);
      if (r < 0) {
        return absl::InternalError(absl::StrCat("io_uring_register_files_sparse: ", strerror(-r)));
      }
      for (int i = kFileSlots - 1; i >= 0; --i) {
        free_slots_.push_back(i);
      }
      struct stat st{};
      if (stat(options_.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--dir ", options_.dir, ": not a directory"));
      }
    } else if (options_.fsync) {
      const char* tmp = getenv("TMPDIR");
      std::string dir = tmp != nullptr ? tmp : "/tmp";
      scratch_fd_ = open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
      if (scratch_fd_ < 0) {
        std::string path = dir + "/moat-loadgen-sink-XXXXXX";
        scratch_fd_ = mkostemp(path.data(), O_CLOEXEC);
        if (scratch_fd_ >= 0) {
          unlink(path.c_str());
        }
      }
      if (scratch_fd_ < 0) {
        return absl::InternalError(absl::StrCat("scratch file in ", dir, ": ", strerror(errno)));
      }
    }
  }
  if (sinking_ && !options_.tls_cert.empty()) {
    tls::ServerOptions server;
    server.level = tls::SecurityLevel::kMay;
    server.cert_file = options_.tls_cert;
    server.key_file = options_.tls_key;
    auto context = tls::ServerContext::Create(std::move(server));
    if (!context.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-cert/--tls-key: ", context.status().message()));
    }
    tls_server_ = *std::move(context);
  }
  if (sending_ && options_.starttls) {
    // Opportunistic, as Postfix's smtp_tls_security_level = may: a load generator measures,
    // it does not authenticate (an untrusted certificate is fine).
    tls::ClientOptions client;
    client.level = tls::ClientLevel::kMay;
    auto context = tls::ClientContext::Create(std::move(client));
    if (!context.ok()) {
      return context.status();
    }
    tls_client_ = *std::move(context);
  }
  if (sending_) {
    factory_owner_ = std::make_unique<MessageFactory>(options_.size, options_.from);
    factory_ = factory_owner_.get();
  }
  show_progress_ = options_.progress && isatty(STDERR_FILENO) == 1;
  return absl::OkStatus();
}

io_uring_sqe* Engine::Sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void Engine::Submit(io_uring_sqe* sqe, Op* op, Conn* owner_conn) {
  io_uring_sqe_set_data(sqe, op);
  if (owner_conn != nullptr) {
    ++owner_conn->in_flight;
  }
}

void Engine::Run() {
  start_ns_ = MonotonicNs();
  last_progress_ns_ = start_ns_;
  if (options_.duration_s > 0) {
    deadline_ns_ = start_ns_ + SecondsToNs(options_.duration_s);
  }
  ArmTick();
  if (sinking_) {
    accepting_ = true;
    ArmAccept();
  }
  if (sending_) {
    uint64_t n = options_.sessions;
    if (options_.rate == 0 && options_.messages > 0) {
      n = std::min<uint64_t>(n, options_.messages);
    }
    for (uint64_t i = 0; i < n; ++i) {
      StartClient();
    }
    if (options_.rate > 0) {
      OnSchedule();
    }
  }
  while (!Finished()) {
    int r = io_uring_submit_and_wait(&ring_, 1);
    if (r < 0 && r != -EINTR && r != -ETIME && r != -EAGAIN && r != -EBUSY) {
      log::Error("io_uring_submit_and_wait: %s", strerror(-r));
      break;
    }
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      Dispatch(cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
  }
  UpdateElapsed();
  Progress(true);
}

void Engine::UpdateElapsed() {
  if (sending_) {
    uint64_t end = last_done_ns_ > start_ns_ ? last_done_ns_ : MonotonicNs();
    send_.elapsed_s = static_cast<double>(end - start_ns_) / 1e9;
  }
  if (sinking_) {
    uint64_t begin = options_.mode == Mode::kRun ? start_ns_ : first_conn_ns_;
    if (begin != 0 && last_message_ns_ > begin) {
      sink_.elapsed_s = static_cast<double>(last_message_ns_ - begin) / 1e9;
    }
  }
}

void Engine::Dispatch(io_uring_cqe* cqe) {
  auto* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
  if (op == nullptr) {
    return;
  }
  const int res = cqe->res;
  switch (op->kind) {
    case OpKind::kConnect:
      OnConnect(static_cast<ClientConn*>(static_cast<Conn*>(op->owner)), res);
      break;
    case OpKind::kRecv:
      OnRecv(static_cast<Conn*>(op->owner), res);
      break;
    case OpKind::kSend:
      OnSend(static_cast<Conn*>(op->owner), res);
      break;
    case OpKind::kAccept:
      OnAccept(res, cqe->flags);
      break;
    case OpKind::kTick:
      OnTick();
      break;
    case OpKind::kSchedule:
      schedule_armed_ = false;
      OnSchedule();
      break;
    case OpKind::kFile:
      OnFileOp(op, res);
      break;
    case OpKind::kIgnore:
      break;
  }
}

// ---- connections ----

void Engine::StartClient() {
  auto* c = new ClientConn(this, options_);
  c->list_index = conns_.size();
  conns_.push_back(c);
  ++clients_;
  ++send_.connections;
  capacity_ += options_.msgs_per_conn;
  const Endpoint& ep = options_.server;
  c->fd = socket(ep.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  c->started_ns = MonotonicNs();
  c->deadline_ns = c->started_ns + SecondsToNs(options_.timeout_s);
  if (c->fd < 0) {
    log::Warning("socket: %s", strerror(errno));
    ++send_.connect_errors;
    Close(c);
    MaybeFree(c);
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (options_.source_ips > 0 && ep.addr.ss_family == AF_INET) {
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    c->source.sin_family = AF_INET;
    c->source.sin_addr.s_addr =
        htonl(0x7f000001u + static_cast<uint32_t>(connections_started_ % options_.source_ips));
    if (bind(c->fd, reinterpret_cast<sockaddr*>(&c->source), sizeof c->source) != 0) {
      log::Warning("bind source address: %s", strerror(errno));
    }
  }
  ++connections_started_;
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_connect(sqe, c->fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.addr_len);
  Submit(sqe, &c->connect_op, c);
}

void Engine::OnConnect(ClientConn* c, int res) {
  --c->in_flight;
  if (c->closing) {
    MaybeFree(c);
    return;
  }
  if (res < 0) {
    ++send_.connect_errors;
    if (send_.connect_errors <= 3) {
      log::Warning("connect %s: %s", options_.server.text, strerror(-res));
    }
    Close(c);
    MaybeFree(c);
    return;
  }
  c->connected = true;
  c->deadline_ns = MonotonicNs() + SecondsToNs(options_.timeout_s);
  ArmRecv(c);
}

void Engine::ArmRecv(Conn* c) {
  if (c->closing || c->recv_armed) {
    return;
  }
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_recv(sqe, c->fd, c->rbuf.data(), c->rbuf.size(), 0);
  c->recv_armed = true;
  Submit(sqe, &c->recv_op, c);
}

void Engine::OnRecv(Conn* c, int res) {
  --c->in_flight;
  c->recv_armed = false;
  if (c->closing) {
    MaybeFree(c);
    return;
  }
  c->deadline_ns = MonotonicNs() + SecondsToNs(options_.timeout_s);
  if (c->role == Conn::Role::kClient) {
    OnClientRecv(static_cast<ClientConn*>(c), res);
  } else {
    OnServerRecv(static_cast<ServerConn*>(c), res);
  }
  MaybeFree(c);
}

bool Engine::DecodeInput(Conn* c, int res, const char** data, size_t* size) {
  *data = c->rbuf.data();
  *size = static_cast<size_t>(res);
  if (c->transform == nullptr) {
    return true;
  }
  c->plain_in.clear();
  if (!c->transform->Decode({c->rbuf.data(), static_cast<size_t>(res)}, &c->plain_in,
                            &c->wire_out)) {
    return false;
  }
  *data = c->plain_in.data();
  *size = c->plain_in.size();
  return true;
}

void Engine::OnClientRecv(ClientConn* c, int res) {
  if (res <= 0) {
    if (c->session.state() != ClientSession::State::kQuit &&
        c->session.state() != ClientSession::State::kClosed) {
      ++send_.session_errors;
      if (send_.session_errors <= 3) {
        log::Warning("connection to %s: %s", options_.server.text,
                     res == 0 ? "closed by the server" : strerror(-res));
      }
      c->session.Abort(res == 0 ? "closed by the server" : strerror(-res));
    }
    Close(c);
    return;
  }
  const char* data = nullptr;
  size_t size = 0;
  if (!DecodeInput(c, res, &data, &size)) {
    FailClientTls(c);
    return;
  }
  if (c->tls != nullptr && c->tls_completed) {
    c->tls_completed = false;
    const uint64_t now = MonotonicNs();
    ++send_.tls_handshakes;
    send_.tls_resumed += c->tls->info().resumed ? 1 : 0;
    send_.handshake_latency.Record(now > c->tls_start_ns ? now - c->tls_start_ns : 0);
    c->session.OnTlsEstablished();
  }
  if (size > 0) {
    c->session.OnBytes(data, size);
  }
  const auto state = c->session.state();
  if (state == ClientSession::State::kFailed) {
    ++send_.session_errors;
    if (c->session.starttls_not_offered()) {
      ++send_.starttls_not_offered;
    }
    if (send_.session_errors <= 3) {
      log::Warning("session with %s: %s", options_.server.text, c->session.error());
    }
    Close(c);
    return;
  }
  if (state == ClientSession::State::kClosed) {
    Close(c);
    return;
  }
  if (state == ClientSession::State::kTlsHandshake && c->tls == nullptr) {
    StartClientTls(c);
    if (c->closing) {
      return;
    }
  }
  Flush(c);
  ArmRecv(c);
}

void Engine::StartClientTls(ClientConn* c) {
  // --tls-resume: one session for the one server, offered to every new connection.
  auto client = std::make_unique<tls::TlsTransform>(
      tls_client_, /*server_name=*/"",  // numeric addresses only: no SNI, no name check
      [c](const tls::HandshakeInfo&) { c->tls_completed = true; },
      options_.tls_resume ? &tls_sessions_ : nullptr, options_.server.text);
  c->tls = client.get();
  c->transform = std::move(client);
  c->tls_start_ns = MonotonicNs();
  std::string plain;
  if (!c->tls->Decode({}, &plain, &c->wire_out)) {  // the ClientHello
    FailClientTls(c);
  }
}

void Engine::FailClientTls(ClientConn* c) {
  ++send_.tls_failures;
  ++send_.session_errors;
  if (send_.tls_failures <= 3) {
    log::Warning("TLS with %s: %s", options_.server.text, c->tls->error());
  }
  c->session.Abort("TLS error");
  Close(c);
}

void Engine::OnServerRecv(ServerConn* c, int res) {
  if (res <= 0) {
    Close(c);
    return;
  }
  const char* data = nullptr;
  size_t size = 0;
  if (!DecodeInput(c, res, &data, &size)) {
    ++sink_.tls_failures;
    if (sink_.tls_failures <= 3) {
      log::Warning("sink: TLS: %s", c->tls->error());
    }
    Close(c);
    return;
  }
  if (size > 0) {
    c->session.OnBytes(data, size);
  }
  if (c->session.TakeStartTls()) {
    StartServerTls(c);
  }
  Flush(c);
  if (!c->closing && !c->session.close_after_flush()) {
    ArmRecv(c);
  }
}

void Engine::StartServerTls(ServerConn* c) {
  // The 220 leaves in plaintext, ahead of every TLS record.
  std::string& out = c->session.out();
  c->wire_out.append(out);
  out.clear();
  auto transform = std::make_unique<tls::TlsTransform>(
      tls_server_, [this, c](const tls::HandshakeInfo& info) { OnSinkHandshake(c, info.resumed); });
  c->tls = transform.get();
  c->transform = std::move(transform);
}

void Engine::OnSinkHandshake(ServerConn* c, bool resumed) {
  ++sink_.tls_handshakes;
  sink_.tls_resumed += resumed ? 1 : 0;
  c->session.OnTlsStarted();
}

void Engine::Flush(Conn* c) {
  if (c->closing || c->sending) {
    return;
  }
  std::string& out = c->Out();
  if (c->role == Conn::Role::kServer) {
    auto* sc = static_cast<ServerConn*>(c);
    if (sc->tls != nullptr && sc->session.close_after_flush()) {
      sc->tls->RequestCloseNotify();  // takes effect at the next Encode
    }
  }
  if (c->transform != nullptr) {
    // An empty Encode still emits a requested close_notify.
    if (!c->transform->Encode({out.data(), out.size()}, &c->wire_out)) {
      log::Warning("TLS: cannot seal a record");
      Close(c);
      return;
    }
    out.clear();
  } else if (c->wire_out.empty()) {
    c->wire_out.swap(out);
  } else {
    c->wire_out.append(out);
    out.clear();
  }
  if (c->wire_out.empty()) {
    if (c->role == Conn::Role::kServer &&
        static_cast<ServerConn*>(c)->session.close_after_flush()) {
      Close(c);
    }
    return;
  }
  c->sending_buf.swap(c->wire_out);
  c->wire_out.clear();
  c->send_off = 0;
  c->sending = true;
  c->deadline_ns = MonotonicNs() + SecondsToNs(options_.timeout_s);
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_send(sqe, c->fd, c->sending_buf.data(), c->sending_buf.size(), MSG_NOSIGNAL);
  Submit(sqe, &c->send_op, c);
}

void Engine::OnSend(Conn* c, int res) {
  --c->in_flight;
  if (c->closing) {
    MaybeFree(c);
    return;
  }
  if (res < 0) {
    if (c->role == Conn::Role::kClient) {
      auto* cc = static_cast<ClientConn*>(c);
      ++send_.session_errors;
      cc->session.Abort(strerror(-res));
    }
    Close(c);
    MaybeFree(c);
    return;
  }
  if (c->role == Conn::Role::kClient) {
    send_.bytes_sent += static_cast<uint64_t>(res);
  }
  c->send_off += static_cast<size_t>(res);
  if (c->send_off < c->sending_buf.size()) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_send(sqe, c->fd, c->sending_buf.data() + c->send_off,
                       c->sending_buf.size() - c->send_off, MSG_NOSIGNAL);
    Submit(sqe, &c->send_op, c);
    return;
  }
  c->sending = false;
  c->sending_buf.clear();
  Flush(c);
  MaybeFree(c);
}

void Engine::Close(Conn* c) {
  if (c->closing) {
    return;
  }
  c->closing = true;
  if (c->role == Conn::Role::kClient) {
    auto* cc = static_cast<ClientConn*>(c);
    if (cc->session.in_transaction()) {
      cc->session.Abort("connection closed");
    }
  }
  if (c->fd >= 0 && c->in_flight > 0) {
    shutdown(c->fd, SHUT_RDWR);
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(sqe, nullptr);
  }
}

void Engine::MaybeFree(Conn* c) {
  if (!c->closing || c->in_flight > 0) {
    return;
  }
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  Conn* last = conns_.back();
  conns_[c->list_index] = last;
  last->list_index = c->list_index;
  conns_.pop_back();
  if (c->role == Conn::Role::kClient) {
    OnClientClosed(static_cast<ClientConn*>(c));
  } else {
    --servers_;
  }
  delete c;
}

bool Engine::NeedNewClient() const {
  if (!WorkRemaining()) {
    return false;
  }
  if (options_.rate > 0 || options_.messages == 0 || options_.msgs_per_conn == 0) {
    return true;
  }
  // Closed loop with a budget: only when the live sessions cannot carry the rest, so a run
  // uses exactly ceil(messages / msgs-per-conn) connections when nothing fails.
  return options_.messages - send_.attempted > capacity_;
}

void Engine::OnClientClosed(ClientConn* c) {
  --clients_;
  if (options_.msgs_per_conn != 0) {
    capacity_ -= options_.msgs_per_conn - std::min(c->begun, options_.msgs_per_conn);
  }
  if (c->idle) {
    idle_.erase(std::find(idle_.begin(), idle_.end(), c));
  }
  const bool failed = c->session.state() == ClientSession::State::kFailed || !c->connected;
  if (failed && c->transactions == 0) {
    FailAttempt();  // bound the run even when the server never answers
  }
  if (stopping_ || !NeedNewClient()) {
    return;
  }
  if (failed) {
    ++reconnects_due_;  // back off until the next tick
  } else {
    StartClient();
  }
}

void Engine::OnAccept(int res, uint32_t flags) {
  if ((flags & IORING_CQE_F_MORE) == 0) {
    accept_armed_ = false;
  }
  if (res < 0) {
    if (res != -ECANCELED) {
      log::Warning("accept: %s", strerror(-res));
    }
  } else if (!accepting_) {
    close(res);
  } else {
    auto* c = new ServerConn(this, options_, tls_server_ != nullptr);
    c->fd = res;
    c->list_index = conns_.size();
    conns_.push_back(c);
    ++servers_;
    ++sink_.connections;
    if (first_conn_ns_ == 0) {
      first_conn_ns_ = MonotonicNs();
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->deadline_ns = MonotonicNs() + SecondsToNs(options_.timeout_s);
    c->session.Greet();
    Flush(c);
    ArmRecv(c);
  }
  if (!accept_armed_ && accepting_) {
    ArmAccept();
  }
}

void Engine::ArmAccept() {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_multishot_accept(sqe, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  Submit(sqe, &accept_op_, nullptr);
  accept_armed_ = true;
}

void Engine::StopAccepting() {
  if (!accepting_) {
    return;
  }
  accepting_ = false;
  if (accept_armed_) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_cancel(sqe, &accept_op_, 0);
    io_uring_sqe_set_data(sqe, nullptr);
  }
}

// ---- sender ----

bool Engine::WorkRemaining() const {
  if (stopping_) {
    return false;
  }
  if (options_.rate > 0) {
    return !due_.empty() || options_.messages == 0 || released_ < options_.messages;
  }
  return options_.messages == 0 || send_.attempted < options_.messages;
}

bool Engine::TakeWork(uint64_t* intended_ns) {
  if (stopping_) {
    return false;
  }
  if (options_.rate > 0) {
    if (due_.empty()) {
      return false;
    }
    *intended_ns = due_.front();
    due_.pop_front();
    return true;
  }
  if (options_.messages != 0 && send_.attempted >= options_.messages) {
    return false;
  }
  *intended_ns = MonotonicNs();
  return true;
}

void Engine::FailAttempt() {
  uint64_t intended = 0;
  if (TakeWork(&intended)) {
    ++send_.attempted;
    ++send_.errors;
    ++finished_;
    last_done_ns_ = MonotonicNs();
  }
}

void Engine::OnClientReady(ClientConn* c) {
  if (c->closing) {
    return;
  }
  const bool conn_full =
      options_.msgs_per_conn != 0 && c->begun >= options_.msgs_per_conn;
  uint64_t intended = 0;
  if (!conn_full && TakeWork(&intended)) {
    BeginTransaction(c, intended);
    if (!options_.handshake_only) {
      Flush(c);
      return;
    }
    // --handshake-only: the greeting, EHLO (and TLS) were the transaction; QUIT below.
  } else if (!conn_full && options_.rate > 0 && WorkRemaining()) {
    c->idle = true;  // open loop: wait for the schedule
    idle_.push_back(c);
    return;
  }
  c->session.Quit();
  if (c->session.state() == ClientSession::State::kClosed) {
    Close(c);
  } else {
    Flush(c);
  }
}

void Engine::BeginTransaction(ClientConn* c, uint64_t intended_ns) {
  ++send_.attempted;
  ++c->begun;
  if (options_.msgs_per_conn != 0) {
    --capacity_;
  }
  c->intended_ns = intended_ns;
  if (options_.handshake_only) {
    // Latency from the connect (closed loop) or the due time (open loop) to the last EHLO reply.
    if (options_.rate == 0) {
      c->intended_ns = c->started_ns;
    }
    TransactionResult handshake;
    handshake.outcome = Outcome::kAccepted;
    handshake.final_code = 250;
    OnClientTransactionDone(c, handshake);
    return;
  }
  ClientMessage& m = c->message;
  m.rcpts.clear();
  m.unknown.clear();
  for (uint32_t i = 0; i < options_.rcpts; ++i) {
    unknown_acc_ += options_.unknown_share;
    if (unknown_acc_ >= 1.0 - 1e-9) {
      unknown_acc_ -= 1.0;
      m.rcpts.push_back(ExpandPattern(options_.unknown_pattern, unknown_seq_++));
      m.unknown.push_back(true);
    } else {
      m.rcpts.push_back(ExpandPattern(options_.to, rcpt_seq_++ % options_.to_count));
      m.unknown.push_back(false);
    }
  }
  factory_->Build(message_seq_++, m.rcpts[0], RealtimeNs(), &m);
  c->session.BeginMessage(&m);
}

void Engine::OnClientReply(int stage, int code) {
  switch (static_cast<Stage>(stage)) {
    case Stage::kMail:
      ++send_.mail_replies[code];
      break;
    case Stage::kRcpt:
      ++send_.rcpt_replies[code];
      break;
    case Stage::kData:
      ++send_.data_replies[code];
      break;
    case Stage::kEnd:
      ++send_.end_replies[code];
      break;
  }
}

void Engine::OnClientTransactionDone(ClientConn* c, const TransactionResult& r) {
  const uint64_t now = MonotonicNs();
  ++c->transactions;
  ++finished_;
  last_done_ns_ = now;
  send_.rcpts_accepted += r.rcpts_accepted;
  send_.rcpts_rejected_expected += r.rcpts_rejected_expected;
  send_.rcpts_unexpected += r.rcpts_unexpected;
  switch (r.outcome) {
    case Outcome::kAccepted:
      ++send_.accepted;
      send_.accept_latency.Record(now > c->intended_ns ? now - c->intended_ns : 0);
      break;
    case Outcome::kRejected:
      ++send_.rejected_messages;
      break;
    case Outcome::kError:
      ++send_.errors;
      break;
  }
}

void Engine::ArmSchedule() {
  if (schedule_armed_ || stopping_ ||
      (options_.messages != 0 && released_ >= options_.messages)) {
    return;
  }
  const uint64_t next =
      start_ns_ + static_cast<uint64_t>(static_cast<double>(released_) * 1e9 / options_.rate);
  const uint64_t now = MonotonicNs();
  schedule_ts_ = ToTimespec(std::max(next > now ? next - now : 0, kScheduleMinNs));
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_timeout(sqe, &schedule_ts_, 0, 0);
  Submit(sqe, &schedule_op_, nullptr);
  schedule_armed_ = true;
}

void Engine::OnSchedule() {
  if (stopping_) {
    return;
  }
  const uint64_t now = MonotonicNs();
  const double elapsed = static_cast<double>(now - start_ns_) / 1e9;
  uint64_t due = static_cast<uint64_t>(std::floor(elapsed * options_.rate)) + 1;
  if (options_.messages != 0) {
    due = std::min(due, options_.messages);
  }
  while (released_ < due) {
    due_.push_back(start_ns_ +
                   static_cast<uint64_t>(static_cast<double>(released_) * 1e9 / options_.rate));
    ++released_;
  }
  AssignIdle();
  ArmSchedule();
}

void Engine::AssignIdle() {
  while (!due_.empty() && !idle_.empty()) {
    ClientConn* c = idle_.back();
    idle_.pop_back();
    c->idle = false;
    OnClientReady(c);
  }
  // No more work will come: idle sessions may leave.
  if (!WorkRemaining()) {
    std::vector<ClientConn*> idle;
    idle.swap(idle_);
    for (ClientConn* c : idle) {
      c->idle = false;
      OnClientReady(c);
    }
  }
}

// ---- sink ----

int Engine::SinkRcptReply() {
  if (options_.reply_on != ReplyOn::kRcpt) {
    return 250;
  }
  acc_4xx_ += options_.reply_4xx_share;
  acc_5xx_ += options_.reply_5xx_share;
  if (acc_4xx_ >= 1.0 - 1e-9) {
    acc_4xx_ -= 1.0;
    ++sink_.rejected_4xx;
    return 451;
  }
  if (acc_5xx_ >= 1.0 - 1e-9) {
    acc_5xx_ -= 1.0;
    ++sink_.rejected_5xx;
    return 554;
  }
  return 250;
}

void Engine::OnSinkMessage(ServerConn* c, std::string& data, uint32_t rcpts) {
  if (options_.reply_on == ReplyOn::kData) {
    acc_4xx_ += options_.reply_4xx_share;
    acc_5xx_ += options_.reply_5xx_share;
    int code = 0;
    if (acc_4xx_ >= 1.0 - 1e-9) {
      acc_4xx_ -= 1.0;
      ++sink_.rejected_4xx;
      code = 451;
    } else if (acc_5xx_ >= 1.0 - 1e-9) {
      acc_5xx_ -= 1.0;
      ++sink_.rejected_5xx;
      code = 554;
    }
    if (code != 0) {
      c->session.FinishMessage(code, 0);
      return;
    }
  }
  if (options_.dir.empty() && !options_.fsync) {
    FinishSinkMessage(c, data, rcpts, ++queue_number_);
    c->session.FinishMessage(250, queue_number_);
    return;
  }
  auto* job = new WriteJob;
  job->conn = c;
  job->data.swap(data);
  job->rcpts = rcpts;
  job->number = next_file_number_++;
  ++c->in_flight;  // the job keeps the connection alive
  ++jobs_in_flight_;
  StartWrite(job);
}

void Engine::StartWrite(WriteJob* job) {
  const uint32_t size = static_cast<uint32_t>(job->data.size());
  auto add = [&](io_uring_sqe* sqe, bool is_write) {
    job->write_step[job->ops_left] = is_write;
    Submit(sqe, &job->ops[job->ops_left], nullptr);
    ++job->ops_left;
  };
  if (!options_.dir.empty()) {
    if (free_slots_.empty()) {
      waiting_jobs_.push_back(job);
      return;
    }
    job->slot = free_slots_.back();
    free_slots_.pop_back();
    job->path = absl::StrCat(options_.dir, "/", job->number, ".eml");
    const unsigned slot = static_cast<unsigned>(job->slot);
    // Hard links: the close runs even when an earlier step failed, so the slot is freed.
    // (A direct open rejects O_CLOEXEC: a direct descriptor is never inherited anyway.)
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_openat_direct(sqe, AT_FDCWD, job->path.c_str(),
                                O_WRONLY | O_CREAT | O_TRUNC, 0644, slot);
    sqe->flags |= IOSQE_IO_HARDLINK;
    add(sqe, false);
    sqe = Sqe();
    io_uring_prep_write(sqe, job->slot, job->data.data(), size, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
    add(sqe, true);
    if (options_.fsync) {
      sqe = Sqe();
      io_uring_prep_fsync(sqe, job->slot, IORING_FSYNC_DATASYNC);
      sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
      add(sqe, false);
    }
    sqe = Sqe();
    io_uring_prep_close_direct(sqe, slot);
    add(sqe, false);
    return;
  }
  if (scratch_offset_ + size > kScratchWrapBytes) {
    scratch_offset_ = 0;
  }
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_write(sqe, scratch_fd_, job->data.data(), size, scratch_offset_);
  sqe->flags |= IOSQE_IO_LINK;
  add(sqe, true);
  sqe = Sqe();
  io_uring_prep_fsync(sqe, scratch_fd_, IORING_FSYNC_DATASYNC);
  add(sqe, false);
  scratch_offset_ += size;
}

void Engine::OnFileOp(Op* op, int res) {
  auto* job = static_cast<WriteJob*>(op->owner);
  const bool is_write = job->write_step[op - job->ops];
  if (res < 0 || (is_write && static_cast<size_t>(res) != job->data.size())) {
    if (!job->failed && sink_.write_errors < 3) {
      log::Warning("sink write %s: %s", job->path.empty() ? "scratch file" : job->path,
                   res < 0 ? strerror(-res) : "short write");
    }
    job->failed = true;
  }
  if (--job->ops_left > 0) {
    return;
  }
  if (job->slot >= 0) {
    free_slots_.push_back(job->slot);
  }
  ServerConn* c = job->conn;
  --c->in_flight;
  --jobs_in_flight_;
  if (job->failed) {
    ++sink_.write_errors;
    if (!c->closing) {
      c->session.FinishMessage(451, 0);
    }
  } else {
    FinishSinkMessage(c, job->data, job->rcpts, job->number);
    if (!c->closing) {
      c->session.FinishMessage(250, job->number);
    }
  }
  delete job;
  if (!c->closing) {
    Flush(c);
    if (!c->session.close_after_flush()) {
      ArmRecv(c);
    }
  }
  MaybeFree(c);
  if (!waiting_jobs_.empty() && !free_slots_.empty()) {
    WriteJob* next = waiting_jobs_.front();
    waiting_jobs_.pop_front();
    StartWrite(next);
  }
}

void Engine::FinishSinkMessage(ServerConn*, const std::string& data, uint32_t rcpts,
                               uint64_t) {
  ++sink_.messages;
  sink_.bytes += data.size();
  sink_.rcpts += rcpts;
  ++sink_.rcpts_per_message[rcpts];
  last_message_ns_ = MonotonicNs();
  uint64_t sent_ns = 0;
  if (FindTimestampHeader(data, &sent_ns)) {
    const uint64_t now = RealtimeNs();
    sink_.end_to_end.Record(now > sent_ns ? now - sent_ns : 0);
  } else {
    ++sink_.no_timestamp;
  }
  if (options_.mode == Mode::kSink && options_.messages != 0 &&
      sink_.messages >= options_.messages && sink_limit_reached_ns_ == 0) {
    sink_limit_reached_ns_ = last_message_ns_;
    StopAccepting();
  }
}

// ---- ticks, progress, the end ----

void Engine::ArmTick() {
  tick_ts_ = ToTimespec(kTickNs);
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_timeout(sqe, &tick_ts_, 0, 0);
  Submit(sqe, &tick_op_, nullptr);
}

void Engine::OnTick() {
  const uint64_t now = MonotonicNs();
  if (deadline_ns_ != 0 && now >= deadline_ns_ && !stopping_) {
    stopping_ = true;
    due_.clear();
    AssignIdle();
    if (options_.mode == Mode::kSink) {
      StopAccepting();
    }
  }
  // Timeouts: a client owed a reply, a server connection idle (not waiting on its disk write).
  std::vector<Conn*> expired;
  for (Conn* c : conns_) {
    if (c->closing || now < c->deadline_ns) {
      continue;
    }
    if (c->role == Conn::Role::kClient) {
      auto* cc = static_cast<ClientConn*>(c);
      if (!cc->connected || cc->session.awaiting_reply() ||
          cc->session.state() == ClientSession::State::kTlsHandshake) {
        expired.push_back(c);
      }
    } else if (!static_cast<ServerConn*>(c)->session.waiting_for_finish()) {
      expired.push_back(c);
    }
  }
  for (Conn* c : expired) {
    if (c->role == Conn::Role::kClient) {
      ++send_.timeouts;
      static_cast<ClientConn*>(c)->session.Abort("timeout");
    }
    Close(c);
    MaybeFree(c);
  }
  while (reconnects_due_ > 0) {
    --reconnects_due_;
    if (!stopping_ && NeedNewClient()) {
      StartClient();
    }
  }
  if (show_progress_ && now - last_progress_ns_ >= 1'000'000'000) {
    last_progress_ns_ = now;
    Progress(false);
  }
  ArmTick();
}

void Engine::Progress(bool final_line) {
  if (!show_progress_) {
    return;
  }
  const double t = static_cast<double>(MonotonicNs() - start_ns_) / 1e9;
  std::string line = absl::StrFormat("\r[%6.1fs]", t);
  if (sending_) {
    absl::StrAppend(&line, absl::StrFormat(
                               " sent %d ok %d (%.0f/s) rej %d err %d p99 %.2fms conns %d",
                               send_.attempted, send_.accepted,
                               t > 0 ? static_cast<double>(send_.accepted) / t : 0.0,
                               send_.rejected_messages, send_.errors,
                               static_cast<double>(send_.accept_latency.Percentile(0.99)) / 1e6,
                               clients_));
  }
  if (sinking_) {
    absl::StrAppend(&line, absl::StrFormat(" | sink %d msgs conns %d", sink_.messages, servers_));
  }
  line += final_line ? "\n" : "  ";
  fputs(line.c_str(), stderr);
}

void Engine::InstallSignalHandlers() {
  struct sigaction sa{};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: the ring wait returns -EINTR
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

bool Engine::Finished() {
  const uint64_t now = MonotonicNs();
  if (g_stop_requested != 0) {
    return true;
  }
  bool send_done = true;
  if (sending_) {
    send_done = clients_ == 0 && reconnects_due_ == 0 && !WorkRemaining();
    if (send_done && send_done_ns_ == 0) {
      send_done_ns_ = now;
    }
  }
  if (!sinking_) {
    return send_done;
  }
  if (options_.mode == Mode::kRun) {
    if (!send_done) {
      return false;
    }
    // Wait for the relay to deliver what it accepted, at most --drain-timeout; then let the
    // relay read its last 250 and close (it would defer, and later duplicate, a message whose
    // reply it never saw), within a grace period.
    if (sink_limit_reached_ns_ == 0) {
      if ((sink_.messages >= send_.accepted && jobs_in_flight_ == 0) ||
          now - send_done_ns_ >= SecondsToNs(options_.drain_s)) {
        sink_limit_reached_ns_ = now;
        StopAccepting();
      }
      return false;
    }
    return servers_ == 0 || now - sink_limit_reached_ns_ >= kRunGraceNs;
  }
  if (stopping_) {
    return jobs_in_flight_ == 0 || now >= deadline_ns_ + kSinkGraceNs;
  }
  if (sink_limit_reached_ns_ != 0) {
    // Let the clients read their last reply and QUIT, within a grace period.
    return (servers_ == 0 && jobs_in_flight_ == 0) || now - sink_limit_reached_ns_ >= kSinkGraceNs;
  }
  return false;
}

}  // namespace moat::loadgen
