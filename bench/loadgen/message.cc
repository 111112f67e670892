// bench/loadgen/message.cc: see message.h.
#include "bench/loadgen/message.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace moat::loadgen {

MessageFactory::MessageFactory(uint64_t size, std::string from)
    : size_(size), from_(std::move(from)) {
  const size_t lines = size / kLineBytes + 1;
  stuffed_offset_.reserve(lines + 1);
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789 ";
  uint64_t x = 0x9E3779B97F4A7C15ull;  // fixed seed: reproducible bodies
  for (size_t i = 0; i < lines; ++i) {
    stuffed_offset_.push_back(stuffed_.size());
    std::string line;
    if (i % 7 == 3) {
      line = ".";  // a line that needs stuffing
    }
    while (line.size() < kLineBytes - 2) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      line.push_back(kAlphabet[x % (sizeof(kAlphabet) - 1)]);
    }
    if (line[0] == '.') {
      stuffed_.push_back('.');
    }
    stuffed_.append(line);
    stuffed_.append("\r\n");
  }
  stuffed_offset_.push_back(stuffed_.size());
  tag_ = absl::StrCat(getpid(), ".", reinterpret_cast<uintptr_t>(this) & 0xffff);
}

void MessageFactory::Build(uint64_t seq, const std::string& to, uint64_t timestamp_ns,
                           ClientMessage* message) const {
  std::string& p = message->payload;
  p.clear();
  absl::StrAppend(&p, "From: <", from_, ">\r\nTo: <", to, ">\r\nSubject: moat-loadgen message ",
                  seq, "\r\nMessage-ID: <", seq, ".", tag_, "@moat-loadgen>\r\n");
  absl::StrAppend(&p, "X-Loadgen-Timestamp: ", timestamp_ns, "\r\n\r\n");
  const size_t header = p.size();
  const size_t want = size_ > header ? size_ - header : 0;
  const size_t full = want / kLineBytes;
  const size_t rest = want % kLineBytes;
  p.reserve(header + stuffed_offset_[full] + kLineBytes + 8);
  p.append(stuffed_, 0, stuffed_offset_[full]);
  if (rest >= 2) {
    p.append(rest - 2, 'z');
    p.append("\r\n");
  }
  message->size = header + full * kLineBytes + (rest >= 2 ? rest : 0);
  p.append(".\r\n");
}

std::string MessageFactory::StuffForTest(const std::string& text) {
  std::string out;
  bool line_start = true;
  for (size_t i = 0; i < text.size(); ++i) {
    if (line_start && text[i] == '.') {
      out.push_back('.');
    }
    out.push_back(text[i]);
    line_start = text[i] == '\n' && i > 0 && text[i - 1] == '\r';
  }
  out.append(".\r\n");
  return out;
}

}  // namespace moat::loadgen
