// bench/loadgen/stats.h
//
// What a moat-loadgen run counts, and its two renderings: a text report for people and one
// JSON object for machines (DESIGN.md section 7: at least messages, errors, elapsed_s,
// msgs_per_sec, p50_ms, p99_ms, p999_ms, max_ms). Plain data; not thread-safe; parses no
// untrusted input.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "bench/loadgen/histogram.h"
#include "bench/loadgen/options.h"

namespace moat::loadgen {

struct SendStats {
  uint64_t attempted = 0;          // transactions begun (or consumed by a failed connection)
  uint64_t accepted = 0;           // 250 after the final dot
  uint64_t rejected_messages = 0;  // every recipient unknown and rejected, as expected
  uint64_t errors = 0;             // everything else
  uint64_t rcpts_accepted = 0;
  uint64_t rcpts_rejected_expected = 0;
  uint64_t rcpts_unexpected = 0;
  uint64_t connections = 0;
  uint64_t connect_errors = 0;
  uint64_t session_errors = 0;  // greeting/EHLO failures, broken connections, bad replies
  uint64_t timeouts = 0;
  uint64_t bytes_sent = 0;
  std::map<int, uint64_t> mail_replies;
  std::map<int, uint64_t> rcpt_replies;
  std::map<int, uint64_t> data_replies;
  std::map<int, uint64_t> end_replies;  // the reply to the final dot
  Histogram accept_latency;             // ns, from the (intended) start of the transaction
  double elapsed_s = 0;
  // --starttls.
  uint64_t tls_handshakes = 0;        // completed
  uint64_t tls_resumed = 0;           // of which abbreviated (session ticket)
  uint64_t tls_failures = 0;          // handshake or record errors
  uint64_t starttls_not_offered = 0;  // sessions failed: no STARTTLS in EHLO, or refused
  Histogram handshake_latency;        // ns, 220 to STARTTLS -> handshake done
};

struct SinkStats {
  uint64_t messages = 0;  // accepted (250) and, with --fsync/--dir, written
  uint64_t bytes = 0;     // unstuffed message bytes
  uint64_t connections = 0;
  uint64_t rcpts = 0;
  uint64_t rejected_4xx = 0;
  uint64_t rejected_5xx = 0;
  uint64_t write_errors = 0;
  uint64_t no_timestamp = 0;
  std::map<uint32_t, uint64_t> rcpts_per_message;
  Histogram end_to_end;  // ns, receive time minus X-Loadgen-Timestamp
  double elapsed_s = 0;  // first connection to last message
  // --tls-cert.
  uint64_t tls_handshakes = 0;
  uint64_t tls_resumed = 0;
  uint64_t tls_failures = 0;
};

std::string FormatText(const Options& options, const SendStats* send, const SinkStats* sink);
std::string FormatJson(const Options& options, const SendStats* send, const SinkStats* sink);

}  // namespace moat::loadgen
