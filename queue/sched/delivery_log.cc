// queue/sched/delivery_log.cc: see delivery_log.h. Owned by: outbound.
#include "queue/sched/delivery_log.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

#include "core/log/assert.h"

namespace moat::sched {
namespace {

constexpr int64_t kMicrosPerSecond = 1000000;
constexpr int64_t kPow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000};

// Time between two stamps, 0 when either is missing or the clock went backwards.
absl::Duration Between(absl::Time later, absl::Time earlier) {
  if (later == absl::InfinitePast() || earlier == absl::InfinitePast() || later < earlier) {
    return absl::ZeroDuration();
  }
  return later - earlier;
}

}  // namespace

void AppendDelay(std::string* out, absl::Duration d, int sig_digits, int max_decimals) {
  MOAT_CHECK(sig_digits >= 1 && sig_digits <= 6);
  MOAT_CHECK(max_decimals >= 0 && max_decimals <= 6);
  if (d < absl::ZeroDuration()) {
    d = absl::ZeroDuration();
  }
  const int64_t total_us = absl::ToInt64Microseconds(d);
  int64_t sec = total_us / kMicrosPerSecond;
  int64_t usec = total_us % kMicrosPerSecond;
  // The resolution (in microseconds) below which digits are dropped: at most
  // max_decimals decimals, and only as many as keep sig_digits significant digits.
  int64_t resolution = kMicrosPerSecond / kPow10[max_decimals];
  const int64_t width = kPow10[sig_digits];
  if (resolution < kMicrosPerSecond) {
    if (sec > 0) {
      int64_t magnitude = 1;  // 10^(digits of sec), capped at width
      while (sec >= magnitude && magnitude <= width / 10) {
        magnitude *= 10;
      }
      resolution = (kMicrosPerSecond / width) * magnitude;
    } else {
      while (usec >= width * resolution) {
        resolution *= 10;
      }
    }
  }
  // Round half up at the resolution.
  if (resolution > 1) {
    usec += resolution / 2;
    if (usec >= kMicrosPerSecond) {
      sec += 1;
      usec -= kMicrosPerSecond;
    }
  }
  absl::StrAppendFormat(out, "%d", sec);
  if (usec >= resolution) {
    *out += '.';
    int64_t rest = usec;
    for (int64_t unit = kMicrosPerSecond / 10; rest >= resolution && unit > 0; unit /= 10) {
      *out += static_cast<char>('0' + rest / unit);
      rest %= unit;
    }
  }
}

std::string FormatDelay(absl::Duration d, int sig_digits, int max_decimals) {
  std::string out;
  AppendDelay(&out, d, sig_digits, max_decimals);
  return out;
}

std::string FormatDeliveryLine(const DeliveryLogEntry& e) {
  std::string out = absl::StrFormat("%s: to=<%s>", e.queue_id, e.recipient);
  if (!e.orig_recipient.empty() &&
      !absl::EqualsIgnoreCase(absl::string_view(e.orig_recipient.data(), e.orig_recipient.size()),
                              absl::string_view(e.recipient.data(), e.recipient.size()))) {
    absl::StrAppendFormat(&out, ", orig_to=<%s>", e.orig_recipient);
  }
  absl::StrAppendFormat(&out, ", relay=%s", e.relay);
  if (e.conn_use > 1) {
    absl::StrAppendFormat(&out, ", conn_use=%d", e.conn_use);
  }
  // Postfix's log_adhoc split of the end-to-end delay.
  const DeliveryTimes& t = e.times;
  const absl::Time now = t.done;
  absl::Duration pdelay = absl::ZeroDuration();
  absl::Duration adelay = absl::ZeroDuration();
  absl::Duration sdelay = absl::ZeroDuration();
  absl::Duration xdelay = absl::ZeroDuration();
  if (t.active != absl::InfinitePast()) {
    pdelay = Between(t.active, t.arrival);
    if (t.handoff != absl::InfinitePast()) {
      adelay = Between(t.handoff, t.active);
      if (t.conn_setup_done != absl::InfinitePast()) {
        sdelay = Between(t.conn_setup_done, t.handoff);
        xdelay = Between(now, t.conn_setup_done);
      } else {
        xdelay = Between(now, t.handoff);
      }
    } else {
      adelay = Between(now, t.active);
    }
  } else {
    pdelay = Between(now, t.arrival);
  }
  out += ", delay=";
  AppendDelay(&out, Between(now, t.arrival));
  out += ", delays=";
  AppendDelay(&out, pdelay);
  out += '/';
  AppendDelay(&out, adelay);
  out += '/';
  AppendDelay(&out, sdelay);
  out += '/';
  AppendDelay(&out, xdelay);
  absl::StrAppendFormat(&out, ", dsn=%s, status=%s (%s)", e.dsn, e.status, e.reason);
  return out;
}

std::string FormatRelay(std::string_view host, std::string_view address, uint16_t port) {
  return absl::StrFormat("%s[%s]:%d", host, address, port);
}

std::string FormatExpiredLine(std::string_view queue_id, std::string_view sender) {
  return absl::StrFormat("%s: from=<%s>, status=expired, returned to sender", queue_id, sender);
}

std::string FormatNotificationLine(std::string_view queue_id, std::string_view kind,
                                   std::string_view notification_id) {
  return absl::StrFormat("%s: sender %s notification: %s", queue_id, kind, notification_id);
}

}  // namespace moat::sched
