// tests/sched/dsn_test.cc: RFC 3464 DSN composition, parsed back (queue/sched/dsn.h).
// Owned by: outbound.
#include "queue/sched/dsn.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace moat::sched {
namespace {

constexpr char kOriginal[] =
    "Received: from client.example (client.example [192.0.2.7])\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: bob@d.example\r\n"
    "Subject: hello\r\n"
    "Message-Id: <1@example.org>\r\n"
    "\r\n"
    "Body line 1\r\n"
    ".dotted line\r\n";

// A parsed MIME entity: headers (names lower-cased, unfolded) and body.
struct Entity {
  std::map<std::string, std::string> headers;
  std::string body;
};

Entity ParseEntity(const std::string& text) {
  Entity e;
  size_t end = text.find("\r\n\r\n");
  EXPECT_NE(end, std::string::npos) << text;
  std::string head = text.substr(0, end + 2);
  e.body = text.substr(end + 4);
  std::string name;
  size_t pos = 0;
  while (pos < head.size()) {
    size_t nl = head.find("\r\n", pos);
    std::string line = head.substr(pos, nl - pos);
    pos = nl + 2;
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      e.headers[name] += " " + line.substr(line.find_first_not_of(" \t"));
      continue;
    }
    size_t colon = line.find(':');
    EXPECT_NE(colon, std::string::npos) << line;
    name = line.substr(0, colon);
    for (char& c : name)
      c = static_cast<char>(tolower(c));
    e.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  return e;
}

std::string Boundary(const std::string& content_type) {
  size_t b = content_type.find("boundary=\"");
  EXPECT_NE(b, std::string::npos) << content_type;
  b += 10;
  return content_type.substr(b, content_type.find('"', b) - b);
}

std::vector<Entity> Parts(const Entity& top) {
  const std::string boundary = Boundary(top.headers.at("content-type"));
  const std::string delim = "--" + boundary;
  std::vector<Entity> parts;
  size_t pos = top.body.find(delim + "\r\n");
  EXPECT_NE(pos, std::string::npos);
  while (pos != std::string::npos) {
    size_t start = pos + delim.size() + 2;
    size_t next = top.body.find("\r\n" + delim, start);
    EXPECT_NE(next, std::string::npos);
    // The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
    parts.push_back(ParseEntity(top.body.substr(start, next - start)));
    if (top.body.compare(next + 2 + delim.size(), 2, "--") == 0) {
      EXPECT_EQ(top.body.substr(next + 2 + delim.size()), "--\r\n");
      break;
    }
    pos = next + 2;
  }
  return parts;
}

// The groups of "Name: value" fields of a message/delivery-status body.
std::vector<std::map<std::string, std::string>> StatusGroups(const std::string& body) {
  std::vector<std::map<std::string, std::string>> groups(1);
  std::string last;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t nl = body.find("\r\n", pos);
    std::string line = body.substr(pos, nl - pos);
    pos = nl + 2;
    if (line.empty()) {
      if (!groups.back().empty())
        groups.emplace_back();
      continue;
    }
    if (line[0] == ' ') {
      groups.back()[last] += " " + line.substr(line.find_first_not_of(' '));
      continue;
    }
    size_t colon = line.find(':');
    last = line.substr(0, colon);
    groups.back()[last] = line.substr(colon + 2);
  }
  if (groups.back().empty())
    groups.pop_back();
  return groups;
}

DsnRequest Request() {
  DsnRequest r;
  r.kind = DsnKind::kFailure;
  r.queue_id = "3F2A1C";
  r.myhostname = "mx1.example.net";
  r.sender = "alice@example.org";
  r.arrival = absl::FromUnixSeconds(1700000000);
  r.now = absl::FromUnixSeconds(1700000100);
  r.original_message = kOriginal;
  DsnRecipient a;
  a.address = "bob@d.example";
  a.original = "rfc822;bob@d.example";
  a.action = DsnAction::kFailed;
  a.status = "5.1.1";
  a.remote_mta = "mx.internal";
  a.reply = "550 5.1.1 <bob@d.example>: Recipient address rejected: User unknown";
  a.reason = "host mx.internal[10.0.0.5] said: " + a.reply + " (in reply to RCPT TO command)";
  DsnRecipient b;
  b.address = "carol@d.example";
  b.action = DsnAction::kFailed;
  b.status = "4.4.1";
  b.reason = "connect to mx.internal[10.0.0.5]:25: Connection refused";
  r.recipients = {a, b};
  return r;
}

TEST(DsnTest, FailureReportRoundTrip) {
  auto dsn = ComposeDsn(Request());
  ASSERT_TRUE(dsn.has_value());
  EXPECT_EQ(dsn->envelope_sender, "");
  EXPECT_EQ(dsn->envelope_recipient, "alice@example.org");
  EXPECT_EQ(dsn->recipients, 2);
  Entity top = ParseEntity(dsn->content);
  EXPECT_EQ(top.headers["from"], "MAILER-DAEMON@mx1.example.net (Mail Delivery System)");
  EXPECT_EQ(top.headers["to"], "alice@example.org");
  EXPECT_EQ(top.headers["subject"], "Undelivered Mail Returned to Sender");
  EXPECT_EQ(top.headers["auto-submitted"], "auto-replied");
  EXPECT_EQ(top.headers["mime-version"], "1.0");
  EXPECT_EQ(top.headers["date"], "Tue, 14 Nov 2023 22:15:00 +0000 (UTC)");
  EXPECT_EQ(top.headers["message-id"], "<20231114221500.3F2A1C@mx1.example.net>");
  EXPECT_EQ(top.headers["content-type"].rfind(
                "multipart/report; report-type=delivery-status; boundary=", 0),
            0u)
      << top.headers["content-type"];
  EXPECT_EQ(Boundary(top.headers["content-type"]), "3F2A1C.1700000100/mx1.example.net");

  std::vector<Entity> parts = Parts(top);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].headers["content-type"], "text/plain; charset=us-ascii");
  EXPECT_EQ(parts[0].headers["content-description"], "Notification");
  EXPECT_NE(parts[0].body.find("This is the mail system at host mx1.example.net."),
            std::string::npos);
  EXPECT_NE(parts[0].body.find("I'm sorry to have to inform you that your message could not\r\n"
                               "be delivered to one or more recipients. It's attached below."),
            std::string::npos);
  EXPECT_NE(parts[0].body.find("<carol@d.example>: connect to mx.internal[10.0.0.5]:25: "
                               "Connection refused"),
            std::string::npos);
  // Long reasons are folded with four spaces, as Postfix does.
  EXPECT_NE(parts[0].body.find("<bob@d.example>: host mx.internal[10.0.0.5] said: 550 5.1.1 "
                               "<bob@d.example>:\r\n    Recipient address rejected: User "
                               "unknown (in reply to RCPT TO command)\r\n"),
            std::string::npos)
      << parts[0].body;

  EXPECT_EQ(parts[1].headers["content-type"], "message/delivery-status");
  auto groups = StatusGroups(parts[1].body);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0]["Reporting-MTA"], "dns; mx1.example.net");
  EXPECT_EQ(groups[0]["Arrival-Date"], "Tue, 14 Nov 2023 22:13:20 +0000 (UTC)");
  EXPECT_EQ(groups[0]["X-Moat-Queue-ID"], "3F2A1C");
  EXPECT_EQ(groups[1]["Final-Recipient"], "rfc822; bob@d.example");
  EXPECT_EQ(groups[1]["Original-Recipient"], "rfc822; bob@d.example");
  EXPECT_EQ(groups[1]["Action"], "failed");
  EXPECT_EQ(groups[1]["Status"], "5.1.1");
  EXPECT_EQ(groups[1]["Remote-MTA"], "dns; mx.internal");
  EXPECT_EQ(groups[1]["Diagnostic-Code"],
            "smtp; 550 5.1.1 <bob@d.example>: Recipient address rejected: User unknown");
  EXPECT_EQ(groups[2]["Final-Recipient"], "rfc822; carol@d.example");
  EXPECT_EQ(groups[2].count("Original-Recipient"), 0u);
  EXPECT_EQ(groups[2].count("Remote-MTA"), 0u);
  EXPECT_EQ(groups[2]["Status"], "4.4.1");
  EXPECT_EQ(groups[2]["Diagnostic-Code"],
            "X-Moat; connect to mx.internal[10.0.0.5]:25: Connection refused");

  EXPECT_EQ(parts[2].headers["content-type"], "text/rfc822-headers");
  EXPECT_EQ(parts[2].headers["content-description"], "Undelivered Message Headers");
  // The original header section, and nothing of the body.
  const std::string original = kOriginal;
  EXPECT_EQ(parts[2].body, original.substr(0, original.find("\r\n\r\n") + 2));
}

TEST(DsnTest, RetFullReturnsTheWholeMessageWhenItFits) {
  DsnRequest r = Request();
  r.ret_full = true;
  auto dsn = ComposeDsn(r);
  ASSERT_TRUE(dsn.has_value());
  auto parts = Parts(ParseEntity(dsn->content));
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].headers["content-type"], "message/rfc822");
  EXPECT_EQ(parts[2].body, kOriginal);

  r.bounce_size_limit = 20;  // too big: headers only
  dsn = ComposeDsn(r);
  parts = Parts(ParseEntity(dsn->content));
  EXPECT_EQ(parts[2].headers["content-type"], "text/rfc822-headers");
}

TEST(DsnTest, NeverToTheNullSender) {
  DsnRequest r = Request();
  r.sender = "";
  EXPECT_FALSE(ComposeDsn(r).has_value());
}

TEST(DsnTest, NotifyParametersAreHonoured) {
  DsnRequest r = Request();
  r.recipients[0].notify = kNotifyNever;
  r.recipients[1].notify = kNotifySuccess;  // success only: no failure report
  EXPECT_FALSE(ComposeDsn(r).has_value());
  r.recipients[1].notify = kNotifyFailure | kNotifyDelay;
  auto dsn = ComposeDsn(r);
  ASSERT_TRUE(dsn.has_value());
  EXPECT_EQ(dsn->recipients, 1);
  auto groups = StatusGroups(Parts(ParseEntity(dsn->content))[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[1]["Final-Recipient"], "rfc822; carol@d.example");
}

TEST(DsnTest, SuccessReportOnlyWhenAsked) {
  DsnRequest r = Request();
  r.kind = DsnKind::kSuccess;
  r.recipients[0].action = DsnAction::kRelayed;
  r.recipients[0].status = "2.0.0";
  r.recipients[0].reply = "250 2.0.0 Ok: queued as X";
  r.recipients[1].action = DsnAction::kRelayed;
  r.recipients[1].status = "2.0.0";
  EXPECT_FALSE(ComposeDsn(r).has_value());  // nobody said NOTIFY=SUCCESS
  r.recipients[0].notify = kNotifySuccess | kNotifyFailure;
  auto dsn = ComposeDsn(r);
  ASSERT_TRUE(dsn.has_value());
  Entity top = ParseEntity(dsn->content);
  EXPECT_EQ(top.headers["subject"], "Successful Mail Delivery Report");
  auto parts = Parts(top);
  EXPECT_NE(parts[0].body.find("Your message was successfully delivered"), std::string::npos);
  auto groups = StatusGroups(parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[1]["Action"], "relayed");
  EXPECT_EQ(groups[1]["Status"], "2.0.0");
}

TEST(DsnTest, DelayWarning) {
  DsnRequest r = Request();
  r.kind = DsnKind::kDelay;
  r.delay_warning_time = absl::Hours(4);
  r.maximal_queue_lifetime = absl::Hours(24 * 5);
  for (auto& rc : r.recipients) {
    rc.action = DsnAction::kDelayed;
    rc.status = "4.4.1";
  }
  auto dsn = ComposeDsn(r);
  ASSERT_TRUE(dsn.has_value());
  Entity top = ParseEntity(dsn->content);
  EXPECT_EQ(top.headers["subject"], "Delayed Mail (still being retried)");
  auto parts = Parts(top);
  EXPECT_NE(parts[0].body.find("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR "
                               "MESSAGE. #"),
            std::string::npos);
  EXPECT_NE(parts[0].body.find("for more than 4 hour(s)"), std::string::npos);
  EXPECT_NE(parts[0].body.find("until it is 5 day(s) old"), std::string::npos);
  auto groups = StatusGroups(parts[1].body);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[1]["Action"], "delayed");
  EXPECT_EQ(groups[1]["Will-Retry-Until"], "Sun, 19 Nov 2023 22:13:20 +0000 (UTC)");
}

TEST(DsnTest, BoundaryNeverOccursInTheReturnedContent) {
  std::string original = std::string(
      "Subject: trap\r\nX-Trap: --3F2A1C.1700000100/mx1.example.net\r\n"
      "\r\nbody\r\n");
  DsnRequest r = Request();
  r.original_message = original;
  auto dsn = ComposeDsn(r);
  ASSERT_TRUE(dsn.has_value());
  Entity top = ParseEntity(dsn->content);
  const std::string boundary = Boundary(top.headers["content-type"]);
  EXPECT_NE(boundary, "3F2A1C.1700000100/mx1.example.net");
  EXPECT_EQ(original.find("--" + boundary), std::string::npos);
  auto parts = Parts(top);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_NE(parts[2].body.find("X-Trap:"), std::string::npos);
}

TEST(DsnTest, HostileReasonsCannotInjectLinesAndLinesStayShort) {
  DsnRequest r = Request();
  r.recipients[0].reply = "550 bad\r\nX-Injected: yes " + std::string(3000, 'a') + " tail";
  r.recipients[0].reason = r.recipients[0].reply;
  std::string original = "Subject: caf\xc3\xa9\r\n\r\nbody\r\n";
  r.original_message = original;
  auto dsn = ComposeDsn(r);
  ASSERT_TRUE(dsn.has_value());
  EXPECT_EQ(dsn->content.find("\r\nX-Injected"), std::string::npos);
  size_t pos = 0;
  while (pos < dsn->content.size()) {
    size_t nl = dsn->content.find("\r\n", pos);
    ASSERT_NE(nl, std::string::npos);
    // Only the one unbreakable 3000-byte word may exceed the fold column.
    if (nl - pos > 998) {
      EXPECT_NE(dsn->content.substr(pos, nl - pos).find(std::string(3000, 'a')), std::string::npos);
    }
    pos = nl + 2;
  }
  Entity top = ParseEntity(dsn->content);
  EXPECT_EQ(top.headers["content-transfer-encoding"], "8bit");
  EXPECT_EQ(Parts(top)[2].headers["content-transfer-encoding"], "8bit");
}

TEST(DsnTest, ParseNotify) {
  EXPECT_EQ(ParseNotify("NEVER"), std::optional<uint8_t>(kNotifyNever));
  EXPECT_EQ(ParseNotify("success,Failure"),
            std::optional<uint8_t>(kNotifySuccess | kNotifyFailure));
  EXPECT_EQ(ParseNotify("DELAY"), std::optional<uint8_t>(kNotifyDelay));
  EXPECT_FALSE(ParseNotify("").has_value());
  EXPECT_FALSE(ParseNotify("NEVER,SUCCESS").has_value());
  EXPECT_FALSE(ParseNotify("SOMETIMES").has_value());
  EXPECT_TRUE(NotifyAllowsFailure(0));
  EXPECT_TRUE(NotifyAllowsDelay(0));
  EXPECT_FALSE(NotifyAllowsSuccess(0));
  EXPECT_FALSE(NotifyAllowsFailure(kNotifyNever));
}

}  // namespace
}  // namespace moat::sched
