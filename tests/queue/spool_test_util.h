// tests/queue/spool_test_util.h
//
// Helpers shared by the spool tests: envelopes and contents with a Message-ID, a Reporter that
// records what recovery reported, and small file utilities. Test-only; single-threaded.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

#include "queue/message_record.h"
#include "queue/segment_reader.h"

namespace moat::queue::testutil {

struct Report {
  std::string path;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  std::string reason;
};

class RecordingReporter : public Reporter {
 public:
  void Corruption(std::string_view path, uint64_t offset, uint64_t bytes,
                  const absl::Status& reason) override {
    reports.push_back({std::string(path), offset, bytes, std::string(reason.message())});
  }
  std::vector<Report> reports;
};

inline MessageEnvelope MakeEnvelope(const std::string& queue_id, int recipients = 2) {
  MessageEnvelope e;
  e.queue_id = queue_id;
  e.arrival_unix_us = 1700000000123456;
  e.client_ip = "192.0.2.7";
  e.client_name = "mail.example.net";
  e.helo = "mail.example.net";
  e.protocol = "ESMTPS";
  e.sender = "alice@example.net";
  e.flags = kBody8BitMime | kRetHdrs;
  e.envid = "env-" + queue_id;
  for (int i = 0; i < recipients; ++i) {
    Recipient r;
    r.address = absl::StrFormat("user%d@example.com", i);
    r.orcpt = absl::StrFormat("rfc822;user%d@example.com", i);
    r.notify = kNotifyFailure | kNotifyDelay;
    r.resolved = absl::StrFormat("user%d@inside.example.com", i);
    r.next_hop = "smtp:[127.0.0.1]:2526";
    e.recipients.push_back(r);
  }
  return e;
}

// A content with a Received: header, a Message-ID and `body_bytes` of body lines.
inline std::string MakeContent(const std::string& message_id, size_t body_bytes) {
  std::string s =
      "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
      "\tby mx.example.com (moat) with ESMTPS id X\r\n"
      "Message-ID: <" +
      message_id + ">\r\nSubject: test\r\n\r\n";
  size_t line = 0;
  while (s.size() < body_bytes) {
    s += absl::StrFormat("line %d of %s: the quick brown fox\r\n", line++, message_id);
  }
  return s;
}

inline uint64_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

inline std::string ReadAll(const std::string& path) {
  std::string out(FileSize(path), '\0');
  int fd = open(path.c_str(), O_RDONLY);
  size_t done = 0;
  while (fd >= 0 && done < out.size()) {
    ssize_t n = pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n <= 0) {
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (fd >= 0) {
    close(fd);
  }
  out.resize(done);
  return out;
}

inline void WriteAll(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  size_t done = 0;
  while (fd >= 0 && done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n <= 0) {
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (fd >= 0) {
    close(fd);
  }
}

}  // namespace moat::queue::testutil
