// bench/micro/smtp_benchmark.cc: the SMTP server session's CPU cost (net/smtp_*).
// Owner: the "session" engineer.
//
// Estimate (DESIGN 8: at most 0.1 ms of relay CPU per 5 KB message, all layers together):
// a transaction is ~6 command lines (~40 ns each to split and parse: a few hundred bytes of
// byte compares) plus ~5 KB of content. Scanning content is one memchr per line plus one
// append per line (~70-byte lines: ~20 ns a line, ~1.5-3 GB/s), so ~2-4 us for 5 KB, and a
// whole session transaction (replies, log lines, the Received: header, the sink hand-off)
// should stay near 10 us: a tenth of the budget. Baseline in the same binary: memchr over
// the same bytes (the floor for any line scanner) and memcpy (the floor for any copy).
//
// Run: build-*/bench/micro/smtp_benchmark --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/log/log.h"
#include "net/smtp_command.h"
#include "net/smtp_data.h"
#include "net/smtp_session.h"

namespace moat::net {
namespace {

constexpr char kRcptLine[] =
    "RCPT TO:<someone.long.name@customer-domain.example.com> NOTIFY=SUCCESS,FAILURE "
    "ORCPT=rfc822;someone.long.name@customer-domain.example.com";
constexpr char kMailLine[] = "MAIL FROM:<sender+tag@bulk-sender.example.org> SIZE=5120 BODY=8BITMIME";

void BM_SmtpCommand_ParseRcpt(benchmark::State& state) {
  ParseOptions options;
  RcptParameters rcpt;
  for (auto _ : state) {
    CommandLine command;
    SplitCommandLine(kRcptLine, &command);
    std::string error = ParseRcptArguments(command.args, options, &rcpt);
    benchmark::DoNotOptimize(error);
    benchmark::DoNotOptimize(rcpt);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SmtpCommand_ParseRcpt);

void BM_SmtpCommand_ParseMail(benchmark::State& state) {
  ParseOptions options;
  MailParameters mail;
  for (auto _ : state) {
    CommandLine command;
    SplitCommandLine(kMailLine, &command);
    std::string error = ParseMailArguments(command.args, options, &mail);
    benchmark::DoNotOptimize(error);
    benchmark::DoNotOptimize(mail);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SmtpCommand_ParseMail);

// 1 MiB of 76-character lines, every 20th dot-stuffed, ending in CRLF.CRLF.
std::string MakeBody(size_t bytes) {
  std::string body;
  body.reserve(bytes + 100);
  for (int line = 0; body.size() < bytes; ++line) {
    if (line % 20 == 0) {
      body += "..";
    }
    body.append(74, static_cast<char>('a' + line % 26));
    body += "\r\n";
  }
  body += ".\r\n";
  return body;
}

void BM_SmtpData_ScanAndUnstuff(benchmark::State& state) {
  const std::string body = MakeBody(static_cast<size_t>(state.range(0)));
  ContentScanner scanner;
  std::string content;
  content.reserve(body.size());
  for (auto _ : state) {
    ContentScanner::Options options;
    options.size_limit = 10240000;
    options.line_bytes_max = 1000;
    scanner.Reset(options);
    content.clear();
    size_t used = scanner.Consume(body, &content);
    benchmark::DoNotOptimize(used);
    benchmark::DoNotOptimize(content.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}
BENCHMARK(BM_SmtpData_ScanAndUnstuff)->Arg(5 * 1024)->Arg(1 << 20);

// Baseline: find every LF with memchr and copy the bytes, nothing else.
void BM_SmtpData_BaselineMemchrMemcpy(benchmark::State& state) {
  const std::string body = MakeBody(static_cast<size_t>(state.range(0)));
  std::string copy(body.size(), '\0');
  for (auto _ : state) {
    const char* p = body.data();
    const char* end = p + body.size();
    size_t lines = 0;
    while (p < end) {
      const auto* lf = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      if (lf == nullptr) {
        break;
      }
      ++lines;
      p = lf + 1;
    }
    std::memcpy(copy.data(), body.data(), body.size());
    benchmark::DoNotOptimize(lines);
    benchmark::DoNotOptimize(copy.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}
BENCHMARK(BM_SmtpData_BaselineMemchrMemcpy)->Arg(5 * 1024)->Arg(1 << 20);

class AcceptAll : public Policy {
 public:
  PolicyDecision Check(const PolicyRequest& request) override {
    (void)request;
    return {};
  }
  std::vector<ResolvedRecipient> Resolve(std::string_view recipient,
                                         PolicyDecision* failure) override {
    (void)failure;
    return {{std::string(recipient), "smtp:[10.0.0.5]:25"}};
  }
};

class CountingSink : public MessageSink {
 public:
  std::string NewQueueId() override { return "4F3A2B1C0D"; }
  void Submit(AcceptedMessage message, SmtpSession& session) override {
    bytes += message.content.size();
    session.OnQueued(message.queue_id);
  }
  absl::Time Now() override { return absl::UnixEpoch(); }
  size_t bytes = 0;
};

// One pipelined transaction with a 5 KB message through a live session, the way the
// reactor feeds it (commands in one read, content in 4 KB reads), log lines included
// (captured in memory, as the shard's log writer costs the same either way).
void BM_SmtpSession_Transaction5K(benchmark::State& state) {
  SessionSettings settings;
  settings.myhostname = "mx.example";
  AcceptAll policy;
  CountingSink sink;
  std::string log;
  log::CaptureForTest(&log);
  ConnectionInfo client;
  client.client_ip = "192.0.2.1";
  auto session_owner = std::make_unique<SmtpSession>(settings, policy, sink, client);
  SmtpSession& session = *session_owner;
  session.Start();
  session.TakeOutput();
  session.OnData("EHLO client.example\r\n");
  session.TakeOutput();
  const std::string commands =
      "MAIL FROM:<sender@example.org> SIZE=5120\r\nRCPT TO:<user@example.com>\r\nDATA\r\n";
  std::string body = MakeBody(5 * 1024);
  for (auto _ : state) {
    session.OnData(commands);
    for (size_t pos = 0; pos < body.size(); pos += 4096) {
      session.OnData(std::string_view(body).substr(pos, 4096));
    }
    std::string out = session.TakeOutput();
    benchmark::DoNotOptimize(out.data());
    log.clear();
  }
  session_owner.reset();  // its disconnect line goes to the capture too
  log::CaptureForTest(nullptr);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}
BENCHMARK(BM_SmtpSession_Transaction5K);

}  // namespace
}  // namespace moat::net
