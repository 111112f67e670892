// queue/queue_listing.cc: see queue_listing.h. Blocking, read-only; tools and control thread.
#include "queue/queue_listing.h"

#include <algorithm>
#include <filesystem>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

#include "queue/spool.h"

namespace moat::queue {

absl::StatusOr<std::vector<ListedMessage>> ListQueue(const std::string& queue_directory,
                                                     Reporter& reporter) {
  std::vector<ListedMessage> out;
  std::string spool_dir = queue_directory + "/spool";
  std::error_code ec;
  if (!std::filesystem::is_directory(spool_dir, ec)) {
    return out;
  }
  std::vector<uint32_t> shards;
  for (std::filesystem::directory_iterator it(spool_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    uint32_t shard = 0;
    std::string name = it->path().filename().string();
    if (it->is_directory() && absl::SimpleAtoi(absl::string_view(name), &shard) &&
        shard < kShardsMax) {
      shards.push_back(shard);
    }
  }
  if (ec) {
    return absl::InternalError(absl::StrFormat("queue list: read %s: %s", spool_dir, ec.message()));
  }
  std::sort(shards.begin(), shards.end());
  for (uint32_t shard : shards) {
    SpoolOptions options;
    options.directory = absl::StrFormat("%s/%d", spool_dir, shard);
    options.shard = shard;
    options.read_only = true;
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options, reporter);
    if (!spool.ok()) {
      return spool.status();
    }
    (*spool)->index().ForEachPending([&](const QueuedMessage& m) { out.push_back({shard, m}); });
  }
  std::sort(out.begin(), out.end(), [](const ListedMessage& a, const ListedMessage& b) {
    if (a.message.envelope.arrival_unix_us != b.message.envelope.arrival_unix_us) {
      return a.message.envelope.arrival_unix_us < b.message.envelope.arrival_unix_us;
    }
    return a.message.envelope.queue_id < b.message.envelope.queue_id;
  });
  return out;
}

std::string FormatQueueListing(const std::vector<ListedMessage>& messages, absl::TimeZone zone) {
  if (messages.empty()) {
    return "Mail queue is empty\n";
  }
  size_t id_width = 10;
  for (const ListedMessage& l : messages) {
    id_width = std::max(id_width, l.message.envelope.queue_id.size());
  }
  // Postfix's showq: header "%-10s %8s %-20s %s", sender "%-11s %7ld %20.20s %s" (the ID and
  // its status character, size, asctime() cut to 20 characters), recipients "%41s%s". moat's
  // IDs are longer, so every column moves right by the extra ID width.
  const size_t indent = id_width + 31;
  std::string out = absl::StrFormat("%-*s %8s %-20s %s\n", static_cast<int>(id_width), "-Queue ID-",
                                    "--Size--", "----Arrival Time----", "-Sender/Recipient-------");
  uint64_t total_bytes = 0;
  for (const ListedMessage& l : messages) {
    const QueuedMessage& m = l.message;
    char status = m.state == MessageState::kHold     ? '!'
                  : m.state == MessageState::kActive ? '*'
                                                     : ' ';
    absl::Time arrival = absl::FromUnixMicros(m.envelope.arrival_unix_us);
    std::string when = absl::FormatTime("%a %b %e %H:%M:%S", arrival, zone);
    std::string sender = m.envelope.sender.empty() ? "MAILER-DAEMON" : m.envelope.sender;
    out += absl::StrFormat("%-*s %7d %-20s %s\n", static_cast<int>(id_width + 1),
                           m.envelope.queue_id + std::string(1, status), m.content_bytes, when,
                           sender);
    for (size_t i = 0; i < m.envelope.recipients.size(); ++i) {
      if (!IsFinal(m.recipients[i])) {
        out += absl::StrFormat("%*s%s\n", static_cast<int>(indent), "",
                               m.envelope.recipients[i].address);
      }
    }
    out += "\n";
    total_bytes += m.content_bytes;
  }
  out += absl::StrFormat("-- %d Kbytes in %d Request%s.\n", (total_bytes + 1023) / 1024,
                         messages.size(), messages.size() == 1 ? "" : "s");
  return out;
}

}  // namespace moat::queue
