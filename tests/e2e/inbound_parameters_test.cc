// End-to-end tests of the main.cf parameters that shape the inbound session and its
// restrictions (owner: "inbound-bench"). Each test starts the real `moat serve` with one
// parameter set to a value other than Postfix's default and shows, over a loopback SMTP
// session, that the reply or the connection's fate changes as Postfix's would: the junk
// command and recipient overshoot limits, smtputf8_enable, the *_reject_code family that
// moat's restrictions produce, and the virtual alias expansion limits. The defaults
// themselves are checked against `postconf -d` in tests/config/registry_test.cc.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

#include "tests/testing/smtp_client.h"
#include "tests/testing/testing.h"

namespace moat {
namespace {

using testing::ReplyCode;
using testing::SmtpClient;

class InboundParametersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = testing::FreePort();
    dir_.Write("relay_recipients",
               "alice@example.com   OK\n"
               "bob@example.com     OK\n");
    dir_.Write("transport", "example.com   smtp:[127.0.0.1]:2\n");
    dir_.Write("virtual",
               "list@example.com    alice@example.com, bob@example.com, carol@example.com\n"
               "hop1@example.com    hop2@example.com\n"
               "hop2@example.com    alice@example.com\n"
               "virt.example        virtual alias domain\n"
               "known@virt.example  alice@example.com\n");
    dir_.Write("access",
               "127.0.0.2           REJECT\n"
               "127.0.0.3           DEFER\n");
    for (const char* table : {"relay_recipients", "transport", "virtual", "access"}) {
      auto r = testing::RunMoat({"postmap", "hash:" + dir_.path() + "/" + table});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }

  // Starts `moat serve` with the gateway configuration plus `extra` main.cf lines.
  void Start(const std::string& extra) {
    dir_.Write("main.cf", absl::StrCat("myhostname = mx.example.net\n"
                                       "mydestination =\n"
                                       "local_recipient_maps =\n"
                                       "mynetworks = 127.0.0.1/32\n"
                                       "relay_domains = example.com\n"
                                       "relay_recipient_maps = hash:",
                                       dir_.path(),
                                       "/relay_recipients\n"
                                       "transport_maps = hash:",
                                       dir_.path(),
                                       "/transport\n"
                                       "virtual_alias_maps = hash:",
                                       dir_.path(),
                                       "/virtual\n"
                                       "queue_directory = ",
                                       dir_.path(),
                                       "/queue\n"
                                       "moat_listen = 127.0.0.1:",
                                       port_,
                                       "\n"
                                       "moat_shards = 1\n"
                                       "smtpd_error_sleep_time = 0\n",
                                       extra));
    server_ = std::make_unique<testing::Process>(
        std::vector<std::string>{testing::MoatBinary(), "serve", "-c", dir_.path()});
    ASSERT_TRUE(testing::WaitForPort(port_)) << server_->Stderr();
  }

  // Connects from 127.0.0.x (outside mynetworks unless .1) and says EHLO.
  std::string Connect(SmtpClient& c, const std::string& source = "127.0.0.5",
                      const std::string& helo = "client.example.org") {
    EXPECT_TRUE(c.Connect(port_, "127.0.0.1", source));
    std::string greeting = c.ReadReply();
    EXPECT_EQ(ReplyCode(greeting), 220) << greeting << server_->Stderr();
    std::string ehlo = c.Command("EHLO " + helo);
    EXPECT_EQ(ReplyCode(ehlo), 250) << ehlo;
    return ehlo;
  }

  // MAIL FROM, then RCPT TO `rcpt`; returns the RCPT reply.
  std::string Rcpt(SmtpClient& c, const std::string& rcpt) {
    std::string mail = c.Command("MAIL FROM:<sender@example.org>");
    EXPECT_EQ(ReplyCode(mail), 250) << mail;
    return c.Command("RCPT TO:<" + rcpt + ">");
  }

  testing::TempDir dir_;
  int port_ = 0;
  std::unique_ptr<testing::Process> server_;
};

// Postfix: commands flagged "limit" (NOOP, RSET, VRFY, HELO, ...) past the junk command limit
// each count as an error; at smtpd_hard_error_limit the server says 421 and hangs up.
TEST_F(InboundParametersTest, JunkCommandLimitEndsASessionOfNoops) {
  Start("smtpd_junk_command_limit = 3\nsmtpd_hard_error_limit = 2\n");
  SmtpClient c;
  Connect(c);  // EHLO is the first junk command
  // EHLO and these NOOPs are junk commands 1..6; the 5th and 6th count as errors, and at
  // the second error the server says 421 without waiting for another command.
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(ReplyCode(c.Command("NOOP")), 250) << i;
  }
  std::string reply = c.ReadReply();
  EXPECT_EQ(reply, "421 4.7.0 mx.example.net Error: too many errors\r\n");
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(InboundParametersTest, DefaultJunkCommandLimitAllowsThoseNoops) {
  Start("smtpd_hard_error_limit = 2\n");
  SmtpClient c;
  Connect(c);
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(ReplyCode(c.Command("NOOP")), 250) << i;
  }
  EXPECT_EQ(c.Command("QUIT"), "221 2.0.0 Bye\r\n");
}

// Recipients past smtpd_recipient_limit get 452; only those past the overshoot limit are
// errors, so with a hard error limit of 1 the second overshooting RCPT ends the session.
TEST_F(InboundParametersTest, RecipientOvershootLimitCountsErrors) {
  Start(
      "smtpd_recipient_limit = 1\nsmtpd_recipient_overshoot_limit = 1\n"
      "smtpd_hard_error_limit = 1\n");
  SmtpClient c;
  Connect(c);
  EXPECT_EQ(ReplyCode(Rcpt(c, "alice@example.com")), 250);
  EXPECT_EQ(c.Command("RCPT TO:<bob@example.com>"), "452 4.5.3 Error: too many recipients\r\n");
  EXPECT_EQ(c.Command("RCPT TO:<bob@example.com>"), "452 4.5.3 Error: too many recipients\r\n");
  EXPECT_EQ(c.ReadReply(), "421 4.7.0 mx.example.net Error: too many errors\r\n");
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(InboundParametersTest, DefaultRecipientOvershootLimitKeepsTheSession) {
  Start("smtpd_recipient_limit = 1\nsmtpd_hard_error_limit = 1\n");
  SmtpClient c;
  Connect(c);
  EXPECT_EQ(ReplyCode(Rcpt(c, "alice@example.com")), 250);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.Command("RCPT TO:<bob@example.com>"), "452 4.5.3 Error: too many recipients\r\n");
  }
  EXPECT_EQ(ReplyCode(c.Command("RSET")), 250);
}

TEST_F(InboundParametersTest, Smtputf8EnableNoHidesAndRefusesSmtputf8) {
  Start("smtputf8_enable = no\n");
  SmtpClient c;
  std::string ehlo = Connect(c);
  EXPECT_EQ(ehlo.find("SMTPUTF8"), std::string::npos) << ehlo;
  EXPECT_EQ(c.Command("MAIL FROM:<sender@example.org> SMTPUTF8"),
            "555 5.5.4 Unsupported option: SMTPUTF8\r\n");
}

TEST_F(InboundParametersTest, Smtputf8EnabledByDefault) {
  Start("");
  SmtpClient c;
  std::string ehlo = Connect(c);
  EXPECT_NE(ehlo.find("250-SMTPUTF8\r\n"), std::string::npos) << ehlo;
  EXPECT_EQ(ReplyCode(c.Command("MAIL FROM:<sender@example.org> SMTPUTF8")), 250);
}

// The reply codes of the restrictions. One server, every code changed; each check shows the
// configured code where Postfix's default (in the comment) would be.
TEST_F(InboundParametersTest, RejectCodesAreTheConfiguredOnes) {
  Start(
      absl::StrCat("relay_domains_reject_code = 550\n"            // default 554
                   "access_map_reject_code = 553\n"               // default 554
                   "access_map_defer_code = 451\n"                // default 450
                   "non_fqdn_reject_code = 550\n"                 // default 504
                   "invalid_hostname_reject_code = 552\n"         // default 501
                   "unknown_relay_recipient_reject_code = 551\n"  // default 550
                   "unknown_virtual_alias_reject_code = 553\n"    // default 550
                   "smtpd_relay_restrictions = reject_non_fqdn_recipient, permit_mynetworks,\n"
                   "  reject_unauth_destination\n"
                   "smtpd_client_restrictions = check_client_access hash:",
                   dir_.path(),
                   "/access\n"
                   "smtpd_helo_restrictions = reject_invalid_helo_hostname\n"
                   "smtpd_recipient_restrictions = reject_unlisted_recipient\n"));
  {
    SmtpClient c;
    Connect(c);
    EXPECT_EQ(Rcpt(c, "x@other.example"), "550 5.7.1 <x@other.example>: Relay access denied\r\n");
    EXPECT_EQ(c.Command("RCPT TO:<alice@example>"),
              "550 5.5.2 <alice@example>: Recipient address rejected: need fully-qualified "
              "address\r\n");
    EXPECT_EQ(c.Command("RCPT TO:<nobody@example.com>"),
              "551 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in relay "
              "recipient table\r\n");
    EXPECT_EQ(c.Command("RCPT TO:<nobody@virt.example>"),
              "553 5.1.1 <nobody@virt.example>: Recipient address rejected: User unknown in "
              "virtual alias table\r\n");
    EXPECT_EQ(c.Command("RCPT TO:<alice@example.com>").substr(0, 4), "250 ");
  }
  {
    SmtpClient c;
    Connect(c, "127.0.0.2");
    EXPECT_EQ(Rcpt(c, "alice@example.com"),
              "553 5.7.1 <unknown[127.0.0.2]>: Client host rejected: Access denied\r\n");
  }
  {
    SmtpClient c;
    Connect(c, "127.0.0.3");
    EXPECT_EQ(Rcpt(c, "alice@example.com"),
              "451 4.7.1 <unknown[127.0.0.3]>: Client host rejected: Access denied\r\n");
  }
  {
    SmtpClient c;
    Connect(c, "127.0.0.5", "bad..name");
    EXPECT_EQ(Rcpt(c, "alice@example.com"),
              "552 5.5.2 <bad..name>: Helo command rejected: Invalid name\r\n");
  }
}

// The bare "reject" and "defer" restrictions answer reject_code and defer_code.
TEST_F(InboundParametersTest, RejectAndDeferCodes) {
  Start(
      "reject_code = 551\n"  // default 554
      "defer_code = 452\n"   // default 450
      "smtpd_client_restrictions = permit_mynetworks, reject\n"
      "smtpd_sender_restrictions = defer\n");
  {
    SmtpClient c;
    Connect(c, "127.0.0.5");
    EXPECT_EQ(Rcpt(c, "alice@example.com"),
              "551 5.7.1 <unknown[127.0.0.5]>: Client host rejected: Access denied\r\n");
  }
  {
    SmtpClient c;
    Connect(c, "127.0.0.1");
    EXPECT_EQ(Rcpt(c, "alice@example.com"),
              "452 4.3.2 <sender@example.org>: Sender address rejected: Try again later\r\n");
  }
}

TEST_F(InboundParametersTest, VirtualAliasExpansionLimit) {
  Start("virtual_alias_expansion_limit = 2\n");
  SmtpClient c;
  Connect(c);
  EXPECT_EQ(Rcpt(c, "list@example.com"), "451 4.6.0 Alias expansion error\r\n");
  EXPECT_EQ(ReplyCode(c.Command("RCPT TO:<hop1@example.com>")), 250);
}

TEST_F(InboundParametersTest, VirtualAliasRecursionLimit) {
  // Postfix counts a level for every lookup of a rewritten address: hop1 -> hop2 -> alice
  // needs 3, list -> alice (and bob, carol, looked up at level 0) needs 2.
  Start("virtual_alias_recursion_limit = 2\n");
  SmtpClient c;
  Connect(c);
  EXPECT_EQ(Rcpt(c, "hop1@example.com"), "451 4.6.0 Alias expansion error\r\n");
  EXPECT_EQ(ReplyCode(c.Command("RCPT TO:<list@example.com>")), 250);
}

// Greetings of three simultaneous connections from `source` (all kept open until the end).
std::vector<int> ThreeGreetings(int port, const std::string& source) {
  std::vector<std::unique_ptr<SmtpClient>> clients;
  std::vector<int> codes;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<SmtpClient>());
    EXPECT_TRUE(clients.back()->Connect(port, "127.0.0.1", source));
    codes.push_back(ReplyCode(clients.back()->ReadReply()));
  }
  return codes;
}

// Postfix: smtpd_client_event_limit_exceptions (default $mynetworks) are spared the
// connection count limit; set, the list replaces mynetworks for that purpose.
TEST_F(InboundParametersTest, EventLimitExceptionsAreSparedTheConnectionCountLimit) {
  Start("smtpd_client_connection_count_limit = 2\n"
        "smtpd_client_event_limit_exceptions = 127.0.0.6\n");
  EXPECT_EQ(ThreeGreetings(port_, "127.0.0.5"), (std::vector<int>{220, 220, 421}));
  EXPECT_EQ(ThreeGreetings(port_, "127.0.0.6"), (std::vector<int>{220, 220, 220}));
  EXPECT_EQ(ThreeGreetings(port_, "127.0.0.1"), (std::vector<int>{220, 220, 421}))
      << "mynetworks alone is no exception once the list is set";
}

TEST_F(InboundParametersTest, EventLimitExceptionsDefaultToMynetworks) {
  Start("smtpd_client_connection_count_limit = 2\n");
  EXPECT_EQ(ThreeGreetings(port_, "127.0.0.1"), (std::vector<int>{220, 220, 220}));
  EXPECT_EQ(ThreeGreetings(port_, "127.0.0.5"), (std::vector<int>{220, 220, 421}));
}

TEST_F(InboundParametersTest, BadEventLimitExceptionIsAConfigErrorWithItsLine) {
  dir_.Write("main.cf", "mydestination =\nsmtpd_client_event_limit_exceptions = 10.0.0.1/8\n");
  auto r = testing::RunMoat({"check", "-c", dir_.path()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("main.cf:2"), std::string::npos) << r.out << r.err;

  // Its default, $mynetworks, does not report mynetworks' own error a second time.
  dir_.Write("main.cf", "mydestination =\nmynetworks = 10.0.0.1/8\n");
  r = testing::RunMoat({"check", "-c", dir_.path()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("1 error,"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace moat
