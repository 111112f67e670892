// bench/loadgen/stats.cc: see stats.h.
#include "bench/loadgen/stats.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moat::loadgen {
namespace {

double Ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

double Rate(uint64_t n, double s) { return s > 0 ? static_cast<double>(n) / s : 0.0; }

template <typename K>
std::string JsonMap(const std::map<K, uint64_t>& m) {
  std::string out = "{";
  for (const auto& [k, v] : m) {
    absl::StrAppend(&out, out.size() > 1 ? "," : "", "\"", k, "\":", v);
  }
  return out + "}";
}

template <typename K>
std::string TextMap(const std::map<K, uint64_t>& m) {
  std::string out;
  for (const auto& [k, v] : m) {
    absl::StrAppend(&out, out.empty() ? "" : " ", k, ":", v);
  }
  return out.empty() ? "-" : out;
}

std::string JsonLatency(const Histogram& h) {
  return absl::StrFormat(
      "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f",
      Ms(h.Percentile(0.5)), Ms(h.Percentile(0.99)), Ms(h.Percentile(0.999)), Ms(h.max()),
      h.mean() / 1e6);
}

std::string TextLatency(const char* what, const Histogram& h) {
  return absl::StrFormat("%s latency ms: p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (%d samples)\n",
                         what, Ms(h.Percentile(0.5)), Ms(h.Percentile(0.99)),
                         Ms(h.Percentile(0.999)), Ms(h.max()), h.count());
}

std::string SendTlsJson(const SendStats& s) {
  const Histogram& h = s.handshake_latency;
  return absl::StrFormat(
      ",\"tls\":{\"handshakes\":%d,\"resumed\":%d,\"failures\":%d,\"not_offered\":%d,"
      "\"handshakes_per_sec\":%.1f,\"handshake_p50_ms\":%.3f,\"handshake_p99_ms\":%.3f,"
      "\"handshake_p999_ms\":%.3f,\"handshake_max_ms\":%.3f,\"handshake_mean_ms\":%.3f}",
      s.tls_handshakes, s.tls_resumed, s.tls_failures, s.starttls_not_offered,
      Rate(s.tls_handshakes, s.elapsed_s), Ms(h.Percentile(0.5)), Ms(h.Percentile(0.99)),
      Ms(h.Percentile(0.999)), Ms(h.max()), h.mean() / 1e6);
}

std::string SendJson(const Options& o, const SendStats& s) {
  return absl::StrCat(
      absl::StrFormat("\"messages\":%d,\"errors\":%d,\"elapsed_s\":%.3f,\"msgs_per_sec\":%.1f,",
                      s.accepted, s.errors, s.elapsed_s, Rate(s.accepted, s.elapsed_s)),
      JsonLatency(s.accept_latency),
      absl::StrFormat(
          ",\"attempted\":%d,\"rejected_messages\":%d,\"rcpts_accepted\":%d,"
          "\"rcpts_rejected_expected\":%d,\"rcpts_unexpected\":%d,\"connections\":%d,"
          "\"connect_errors\":%d,\"session_errors\":%d,\"timeouts\":%d,\"bytes_sent\":%d,"
          "\"sessions\":%d,\"rate\":%g,\"size\":%d,\"rcpts\":%d,\"msgs_per_conn\":%d,",
          s.attempted, s.rejected_messages, s.rcpts_accepted, s.rcpts_rejected_expected,
          s.rcpts_unexpected, s.connections, s.connect_errors, s.session_errors, s.timeouts,
          s.bytes_sent, o.sessions, o.rate, o.size, o.rcpts, o.msgs_per_conn),
      "\"replies\":{\"mail\":", JsonMap(s.mail_replies), ",\"rcpt\":", JsonMap(s.rcpt_replies),
      ",\"data\":", JsonMap(s.data_replies), ",\"end\":", JsonMap(s.end_replies), "}",
      SendTlsJson(s));
}

std::string SinkJson(const SinkStats& s) {
  return absl::StrCat(
      absl::StrFormat("\"messages\":%d,\"errors\":%d,\"elapsed_s\":%.3f,\"msgs_per_sec\":%.1f,",
                      s.messages, s.write_errors, s.elapsed_s, Rate(s.messages, s.elapsed_s)),
      JsonLatency(s.end_to_end),
      absl::StrFormat(",\"bytes\":%d,\"connections\":%d,\"rcpts\":%d,\"rejected_4xx\":%d,"
                      "\"rejected_5xx\":%d,\"write_errors\":%d,\"no_timestamp\":%d,",
                      s.bytes, s.connections, s.rcpts, s.rejected_4xx, s.rejected_5xx,
                      s.write_errors, s.no_timestamp),
      "\"rcpts_per_message\":", JsonMap(s.rcpts_per_message),
      absl::StrFormat(",\"tls\":{\"handshakes\":%d,\"resumed\":%d,\"failures\":%d}",
                      s.tls_handshakes, s.tls_resumed, s.tls_failures));
}

std::string SendText(const SendStats& s) {
  std::string out = absl::StrFormat(
      "send: %d accepted in %.3f s = %.1f msgs/s; %d rejected as expected; %d errors "
      "(%d attempted)\n",
      s.accepted, s.elapsed_s, Rate(s.accepted, s.elapsed_s), s.rejected_messages, s.errors,
      s.attempted);
  absl::StrAppend(&out,
                  absl::StrFormat("  recipients: %d accepted, %d rejected as expected, %d "
                                  "unexpected\n  connections: %d (%d connect errors, %d session "
                                  "errors, %d timeouts), %.1f MB sent\n",
                                  s.rcpts_accepted, s.rcpts_rejected_expected, s.rcpts_unexpected,
                                  s.connections, s.connect_errors, s.session_errors, s.timeouts,
                                  static_cast<double>(s.bytes_sent) / 1e6));
  absl::StrAppend(&out, "  replies: MAIL ", TextMap(s.mail_replies), "; RCPT ",
                  TextMap(s.rcpt_replies), "; DATA ", TextMap(s.data_replies), "; end ",
                  TextMap(s.end_replies), "\n  ", TextLatency("accept", s.accept_latency));
  if (s.tls_handshakes + s.tls_failures + s.starttls_not_offered > 0) {
    absl::StrAppend(&out,
                    absl::StrFormat("  TLS: %d handshakes (%d resumed), %d failures, %d servers "
                                    "without STARTTLS\n  ",
                                    s.tls_handshakes, s.tls_resumed, s.tls_failures,
                                    s.starttls_not_offered),
                    TextLatency("handshake", s.handshake_latency));
  }
  return out;
}

std::string SinkText(const SinkStats& s) {
  std::string out = absl::StrFormat(
      "sink: %d messages (%.1f MB) in %.3f s = %.1f msgs/s over %d connections; %d recipients; "
      "rejected 4xx %d, 5xx %d; %d write errors; %d without timestamp\n",
      s.messages, static_cast<double>(s.bytes) / 1e6, s.elapsed_s, Rate(s.messages, s.elapsed_s),
      s.connections, s.rcpts, s.rejected_4xx, s.rejected_5xx, s.write_errors, s.no_timestamp);
  absl::StrAppend(&out, "  recipients per message: ", TextMap(s.rcpts_per_message), "\n  ",
                  TextLatency("end-to-end", s.end_to_end));
  if (s.tls_handshakes + s.tls_failures > 0) {
    absl::StrAppend(&out, absl::StrFormat("  TLS: %d handshakes (%d resumed), %d failures\n",
                                          s.tls_handshakes, s.tls_resumed, s.tls_failures));
  }
  return out;
}

}  // namespace

std::string FormatText(const Options&, const SendStats* send, const SinkStats* sink) {
  std::string out;
  if (send != nullptr) {
    out += SendText(*send);
  }
  if (sink != nullptr) {
    out += SinkText(*sink);
  }
  return out;
}

std::string FormatJson(const Options& options, const SendStats* send, const SinkStats* sink) {
  if (send != nullptr && sink != nullptr) {
    // run: the top level is end to end (what the sink saw, timed from the sender's header).
    // errors: the sender's, the sink's, and accepted messages that never reached the sink.
    const uint64_t lost = send->accepted > sink->messages ? send->accepted - sink->messages : 0;
    return absl::StrCat(
        "{\"mode\":\"run\",",
        absl::StrFormat("\"messages\":%d,\"errors\":%d,\"lost\":%d,\"elapsed_s\":%.3f,"
                        "\"msgs_per_sec\":%.1f,",
                        sink->messages, send->errors + sink->write_errors + lost, lost,
                        sink->elapsed_s, Rate(sink->messages, sink->elapsed_s)),
        JsonLatency(sink->end_to_end), ",\"send\":{", SendJson(options, *send), "},\"sink\":{",
        SinkJson(*sink), "}}\n");
  }
  if (send != nullptr) {
    return absl::StrCat("{\"mode\":\"send\",", SendJson(options, *send), "}\n");
  }
  return absl::StrCat("{\"mode\":\"sink\",", SinkJson(*sink), "}\n");
}

}  // namespace moat::loadgen
