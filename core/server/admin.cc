// core/server/admin.cc: see admin.h.
#include "core/server/admin.h"

#include <algorithm>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moat::server {
namespace {

// ctime-style "Mon Nov 23 18:00:00" (20 columns, like postqueue), in local time.
std::string ArrivalText(int64_t unix_us) {
  time_t t = static_cast<time_t>(unix_us / 1000000);
  tm parts{};
  localtime_r(&t, &parts);
  char buf[64];
  strftime(buf, sizeof buf, "%a %b %e %H:%M:%S", &parts);
  return buf;
}

bool ValidQueueId(const std::string& id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
  });
}

}  // namespace

std::string FormatQueueList(std::vector<QueueListEntry> entries) {
  if (entries.empty()) {
    return "Mail queue is empty\n";
  }
  std::sort(entries.begin(), entries.end(), [](const QueueListEntry& a, const QueueListEntry& b) {
    return a.arrival_unix_us != b.arrival_unix_us ? a.arrival_unix_us < b.arrival_unix_us
                                                  : a.queue_id < b.queue_id;
  });
  // The ID column is as wide as the longest ID plus its mark (postqueue's with long IDs).
  size_t id_width = 11;
  for (const QueueListEntry& e : entries) {
    id_width = std::max(id_width, e.queue_id.size() + 1);
  }
  std::string out = absl::StrFormat("%-*s --Size-- ----Arrival Time---- -Sender/Recipient-------\n",
                                    static_cast<int>(id_width), "-Queue ID-");
  uint64_t bytes = 0;
  for (const QueueListEntry& e : entries) {
    bytes += e.size;
    std::string id = absl::StrCat(e.queue_id, std::string(1, e.status));
    absl::StrAppendFormat(&out, "%-*s %8d %-20s %s\n", static_cast<int>(id_width), id, e.size,
                          ArrivalText(e.arrival_unix_us),
                          e.sender.empty() ? "MAILER-DAEMON" : e.sender);
    std::string last_reason;
    for (const QueueListRecipient& r : e.recipients) {
      if (!r.reason.empty() && r.reason != last_reason) {
        absl::StrAppendFormat(&out, "%*s(%s)\n", static_cast<int>(id_width + 38), "", r.reason);
        last_reason = r.reason;
      }
      absl::StrAppendFormat(&out, "%*s%s\n", static_cast<int>(id_width + 30), "", r.address);
    }
    out += "\n";
  }
  absl::StrAppendFormat(&out, "-- %d Kbytes in %d Request%s.\n", (bytes + 1023) / 1024,
                        entries.size(), entries.size() == 1 ? "" : "s");
  return out;
}

absl::StatusOr<AdminRequest> ParseAdminRequest(const std::string& line) {
  std::string verb = line;
  std::string arg;
  size_t space = line.find(' ');
  if (space != std::string::npos) {
    verb = line.substr(0, space);
    arg = line.substr(space + 1);
  }
  AdminRequest r;
  r.argument = arg;
  auto needs_id = [&](AdminRequest::Verb v, bool all_ok) -> absl::StatusOr<AdminRequest> {
    r.verb = v;
    if (arg.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(verb, ": a queue ID is required"));
    }
    if (!(all_ok && arg == "ALL") && !ValidQueueId(arg)) {
      return absl::InvalidArgumentError(absl::StrCat(verb, ": bad queue ID \"", arg, "\""));
    }
    return r;
  };
  auto no_arg = [&](AdminRequest::Verb v) -> absl::StatusOr<AdminRequest> {
    r.verb = v;
    if (!arg.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(verb, ": takes no argument"));
    }
    return r;
  };
  if (verb == "list") {
    return no_arg(AdminRequest::Verb::kList);
  }
  if (verb == "flush") {
    return no_arg(AdminRequest::Verb::kFlush);
  }
  if (verb == "stats") {
    return no_arg(AdminRequest::Verb::kStats);
  }
  if (verb == "reload") {
    return no_arg(AdminRequest::Verb::kReload);
  }
  if (verb == "show") {
    return needs_id(AdminRequest::Verb::kShow, false);
  }
  if (verb == "delete") {
    return needs_id(AdminRequest::Verb::kDelete, true);
  }
  if (verb == "hold") {
    return needs_id(AdminRequest::Verb::kHold, false);
  }
  if (verb == "release") {
    return needs_id(AdminRequest::Verb::kRelease, false);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown request \"", verb, "\""));
}

std::string FormatStats(const DaemonStats& s) {
  std::string out;
  auto line = [&](const char* name, uint64_t v) { absl::StrAppendFormat(&out, "%s: %d\n", name, v); };
  line("shards", s.shards);
  line("connections_open", s.connections_open);
  line("connections_total", s.connections_total);
  line("connections_refused", s.connections_refused);
  line("messages_accepted", s.messages_accepted);
  line("spool_commits", s.spool_commits);
  line("spool_journal_commits", s.spool_journal_commits);
  line("spool_delayed_commits", s.spool_delayed_commits);
  line("spool_segments_created", s.spool_segments_created);
  line("spool_segments_recycled", s.spool_segments_recycled);
  line("spool_segments_reclaimed", s.spool_segments_reclaimed);
  line("queue_messages", s.queue_messages);
  line("recipients_delivered", s.delivered);
  line("recipients_deferred", s.deferred);
  line("recipients_bounced", s.bounced);
  line("bytes_in", s.bytes_in);
  line("bytes_out", s.bytes_out);
  line("queue_content_reads", s.content_reads);
  return out;
}

}  // namespace moat::server
