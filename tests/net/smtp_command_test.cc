// tests/net/smtp_command_test.cc: the SMTP command-line parsers (net/smtp_command.h):
// verbs, MAIL/RCPT paths and ESMTP parameters, xtext, address syntax, UTF-8. Each error
// reply is the one Postfix's smtpd gives for the same input.
#include "net/smtp_command.h"

#include <string>

#include "gtest/gtest.h"

namespace moat::net {
namespace {

std::string Mail(std::string_view args, MailParameters* out = nullptr) {
  MailParameters local;
  return ParseMailArguments(args, ParseOptions(), out != nullptr ? out : &local);
}

std::string Rcpt(std::string_view args, RcptParameters* out = nullptr) {
  RcptParameters local;
  return ParseRcptArguments(args, ParseOptions(), out != nullptr ? out : &local);
}

TEST(SplitCommandLineTest, VerbIsCaseInsensitiveAndArgsTrimmed) {
  CommandLine c;
  ASSERT_TRUE(SplitCommandLine("  eHlO   client.example  ", &c));
  EXPECT_EQ(c.verb, SmtpVerb::kEhlo);
  EXPECT_EQ(c.name, "eHlO");
  EXPECT_EQ(c.args, "client.example");
  ASSERT_TRUE(SplitCommandLine("MAIL FROM:<a@b>", &c));
  EXPECT_EQ(c.verb, SmtpVerb::kMail);
  EXPECT_EQ(c.args, "FROM:<a@b>");
  ASSERT_TRUE(SplitCommandLine("XYZZY", &c));
  EXPECT_EQ(c.verb, SmtpVerb::kUnknown);
  ASSERT_TRUE(SplitCommandLine("MAILX", &c));
  EXPECT_EQ(c.verb, SmtpVerb::kUnknown);
  EXPECT_FALSE(SplitCommandLine("", &c));
  EXPECT_FALSE(SplitCommandLine(" \t ", &c));
}

TEST(SplitCommandLineTest, EveryVerbIsKnown) {
  for (const char* verb : {"HELO", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BDAT",
                           "RSET", "NOOP", "VRFY", "ETRN", "QUIT", "HELP"}) {
    CommandLine c;
    ASSERT_TRUE(SplitCommandLine(verb, &c));
    EXPECT_NE(c.verb, SmtpVerb::kUnknown) << verb;
    EXPECT_EQ(SmtpVerbName(c.verb), verb);
  }
  EXPECT_EQ(SmtpVerbStatName(SmtpVerb::kRcpt), "rcpt");
  EXPECT_EQ(SmtpVerbStatName(SmtpVerb::kUnknown), "unknown");
}

TEST(LooksLikeHeaderTest, HeaderWordsAreDetected) {
  EXPECT_TRUE(LooksLikeHeader("Subject:"));
  EXPECT_TRUE(LooksLikeHeader("From:"));
  EXPECT_TRUE(LooksLikeHeader("X-Spam-Flag:"));
  EXPECT_FALSE(LooksLikeHeader("MAIL"));
  EXPECT_FALSE(LooksLikeHeader(":"));
  EXPECT_FALSE(LooksLikeHeader("a:b:"));
}

TEST(MailParserTest, PlainAndNullSender) {
  MailParameters m;
  EXPECT_EQ(Mail("FROM:<user@example.org>", &m), "");
  EXPECT_EQ(m.address, "user@example.org");
  EXPECT_EQ(Mail("FROM:<>", &m), "");
  EXPECT_EQ(m.address, "");
  EXPECT_EQ(Mail("from: <user@example.org>", &m), "");
  EXPECT_EQ(m.address, "user@example.org");
  // Without brackets, as Postfix with strict_rfc821_envelopes = no.
  EXPECT_EQ(Mail("FROM:user@example.org", &m), "");
  EXPECT_EQ(m.address, "user@example.org");
}

TEST(MailParserTest, SyntaxErrors) {
  EXPECT_EQ(Mail(""), "501 5.5.4 Syntax: MAIL FROM:<address>");
  EXPECT_EQ(Mail("TO:<a@b>"), "501 5.5.4 Syntax: MAIL FROM:<address>");
  EXPECT_EQ(Mail("FROM:"), "501 5.5.4 Syntax: MAIL FROM:<address>");
  EXPECT_EQ(Mail("FROM:<a@b"), "501 5.1.7 Bad sender address syntax");
  EXPECT_EQ(Mail("FROM:<a@b>x"), "501 5.1.7 Bad sender address syntax");
  EXPECT_EQ(Mail("FROM:<a b@c>"), "501 5.1.7 Bad sender address syntax");
  EXPECT_EQ(Mail("FROM:<a@@b>"), "501 5.1.7 Bad sender address syntax");
  EXPECT_EQ(Mail("FROM:<a@b..c>"), "501 5.1.7 Bad sender address syntax");
  EXPECT_EQ(Mail("FROM:<<a@b>>"), "501 5.1.7 Bad sender address syntax");
}

TEST(MailParserTest, EsmtpParameters) {
  MailParameters m;
  EXPECT_EQ(Mail("FROM:<a@b.c> SIZE=12345 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1", &m),
            "");
  EXPECT_TRUE(m.has_size);
  EXPECT_EQ(m.size, 12345u);
  EXPECT_EQ(m.body, BodyType::k8BitMime);
  EXPECT_TRUE(m.smtputf8);
  EXPECT_EQ(m.ret, DsnRet::kHdrs);
  EXPECT_EQ(m.envid, "QQ+1");
  EXPECT_EQ(Mail("FROM:<> body=7bit ret=full", &m), "");
  EXPECT_EQ(m.body, BodyType::k7Bit);
  EXPECT_EQ(m.ret, DsnRet::kFull);
}

TEST(MailParserTest, ParameterErrors) {
  EXPECT_EQ(Mail("FROM:<a@b> SIZE=12x"), "501 5.5.4 Bad message size syntax");
  EXPECT_EQ(Mail("FROM:<a@b> SIZE="), "501 5.5.4 Bad message size syntax");
  EXPECT_EQ(Mail("FROM:<a@b> SIZE=99999999999999999999999"),
            "552 5.3.4 Message size exceeds file system imposed limit");
  EXPECT_EQ(Mail("FROM:<a@b> RET=ALL"), "501 5.5.4 Bad RET parameter syntax");
  EXPECT_EQ(Mail("FROM:<a@b> RET=FULL RET=HDRS"), "501 5.5.4 Bad RET parameter syntax");
  EXPECT_EQ(Mail("FROM:<a@b> ENVID=+ZZ"), "501 5.5.4 Bad ENVID parameter syntax");
  EXPECT_EQ(Mail("FROM:<a@b> ENVID=a ENVID=b"), "501 5.5.4 Bad ENVID parameter syntax");
  EXPECT_EQ(Mail("FROM:<a@b> ENVID=+0A"), "501 5.5.4 Bad ENVID parameter syntax");
  EXPECT_EQ(Mail("FROM:<a@b> ENVID=" + std::string(101, 'e')),
            "501 5.5.4 Bad ENVID parameter syntax");
  EXPECT_EQ(Mail("FROM:<a@b> BODY=BINARYMIME"), "555 5.5.4 Unsupported option: BODY=BINARYMIME");
  EXPECT_EQ(Mail("FROM:<a@b> XYZ=1"), "555 5.5.4 Unsupported option: XYZ=1");
  MailParameters m;
  ParseOptions no_utf8;
  no_utf8.smtputf8_enable = false;
  EXPECT_EQ(ParseMailArguments("FROM:<a@b> SMTPUTF8", no_utf8, &m),
            "555 5.5.4 Unsupported option: SMTPUTF8");
}

TEST(RcptParserTest, AddressesAndErrors) {
  RcptParameters r;
  EXPECT_EQ(Rcpt("TO:<user@example.com>", &r), "");
  EXPECT_EQ(r.address, "user@example.com");
  EXPECT_EQ(Rcpt("to:<Postmaster>", &r), "");
  EXPECT_EQ(r.address, "Postmaster");
  EXPECT_EQ(Rcpt("TO:<@relay.example,@other.example:user@example.com>", &r), "");
  EXPECT_EQ(r.address, "user@example.com");
  EXPECT_EQ(Rcpt("TO:<\"john doe\"@example.com>", &r), "");
  EXPECT_EQ(r.address, "\"john doe\"@example.com");
  EXPECT_EQ(Rcpt("TO:<user@[192.0.2.1]>", &r), "");
  EXPECT_EQ(Rcpt("TO:<user@[IPv6:2001:db8::1]>", &r), "");
  EXPECT_EQ(Rcpt("FROM:<a@b>"), "501 5.5.4 Syntax: RCPT TO:<address>");
  EXPECT_EQ(Rcpt("TO:"), "501 5.5.4 Syntax: RCPT TO:<address>");
  EXPECT_EQ(Rcpt("TO:<>"), "501 5.1.3 Bad recipient address syntax");
  EXPECT_EQ(Rcpt("TO:<a@b"), "501 5.1.3 Bad recipient address syntax");
  EXPECT_EQ(Rcpt("TO:<a@[300.1.1.1]>"), "501 5.1.3 Bad recipient address syntax");
  EXPECT_EQ(Rcpt("TO:<a@>"), "501 5.1.3 Bad recipient address syntax");
  EXPECT_EQ(Rcpt("TO:<@b>"), "501 5.1.3 Bad recipient address syntax");
  EXPECT_EQ(Rcpt("TO:<a(b)@c>"), "501 5.1.3 Bad recipient address syntax");
  EXPECT_EQ(Rcpt("TO:<\"unterminated@c>"), "501 5.1.3 Bad recipient address syntax");
  EXPECT_EQ(Rcpt("TO:<" + std::string(250, 'a') + "@example.com>"),
            "501 5.1.3 Bad recipient address syntax");
}

TEST(RcptParserTest, DsnParameters) {
  RcptParameters r;
  EXPECT_EQ(Rcpt("TO:<a@b.c> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bx@b.c", &r), "");
  EXPECT_EQ(r.notify, kDsnNotifySuccess | kDsnNotifyDelay);
  EXPECT_EQ(r.orcpt_type, "rfc822");
  EXPECT_EQ(r.orcpt, "a+x@b.c");
  EXPECT_EQ(Rcpt("TO:<a@b.c> notify=never", &r), "");
  EXPECT_EQ(r.notify, kDsnNotifyNever);
  EXPECT_EQ(Rcpt("TO:<a@b.c> ORCPT=utf-8;j\\x{F6}rg@b.c", &r), "");
  EXPECT_EQ(r.orcpt_type, "utf-8");
  EXPECT_EQ(r.orcpt, "j\xC3\xB6rg@b.c");
  EXPECT_EQ(Rcpt("TO:<a@b> NOTIFY=NEVER,SUCCESS"), "501 5.5.4 Error: Bad NOTIFY parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> NOTIFY="), "501 5.5.4 Error: Bad NOTIFY parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> NOTIFY=SOMETIMES"), "501 5.5.4 Error: Bad NOTIFY parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> NOTIFY=DELAY,DELAY"), "501 5.5.4 Error: Bad NOTIFY parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> NOTIFY=DELAY,"), "501 5.5.4 Error: Bad NOTIFY parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> NOTIFY=DELAY NOTIFY=SUCCESS"),
            "501 5.5.4 Error: Bad NOTIFY parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> ORCPT=a@b"), "501 5.5.4 Error: Bad ORCPT parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> ORCPT=;a@b"), "501 5.5.4 Error: Bad ORCPT parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> ORCPT=rfc822;"), "501 5.5.4 Error: Bad ORCPT parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> ORCPT=rfc822;a+G0"), "501 5.5.4 Error: Bad ORCPT parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> ORCPT=rfc822;a+00b"), "501 5.5.4 Error: Bad ORCPT parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> ORCPT=rfc822;a ORCPT=rfc822;b"),
            "501 5.5.4 Error: Bad ORCPT parameter syntax");
  EXPECT_EQ(Rcpt("TO:<a@b> SIZE=1"), "555 5.5.4 Unsupported option: SIZE=1");
}

TEST(AddressTest, EightBitAndUtf8Addresses) {
  std::string address;
  EXPECT_TRUE(CheckAddressSyntax("j\xC3\xB6rg@example.com", &address));
  EXPECT_TRUE(CheckAddressSyntax("\xE7\x94\xA8\xE6\x88\xB7@\xE4\xBE\x8B\xE5\xAD\x90.\xE5\xB9\xBF\xE5\x91\x8A",
                                 &address));
  EXPECT_FALSE(CheckAddressSyntax("a\r@b", &address));
  EXPECT_FALSE(CheckAddressSyntax(std::string("a\0@b", 4), &address));
}

TEST(Utf8Test, Validity) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("j\xC3\xB6rg \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));                 // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));             // overlong "/"
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));         // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));     // > U+10FFFF
  EXPECT_TRUE(IsAscii("abc"));
  EXPECT_FALSE(IsAscii("\xC3\xB6"));
}

TEST(XtextTest, DecodeAndReject) {
  std::string out;
  EXPECT_TRUE(DecodeXtext("a+2Bb+3Dc", &out));
  EXPECT_EQ(out, "a+b=c");
  EXPECT_FALSE(DecodeXtext("a+2", &out));
  EXPECT_FALSE(DecodeXtext("a=b", &out));
  EXPECT_FALSE(DecodeXtext("a b", &out));
  EXPECT_TRUE(DecodeUtf8Xtext("\\x{1F600}", &out));
  EXPECT_EQ(out, "\xF0\x9F\x98\x80");
  EXPECT_FALSE(DecodeUtf8Xtext("\\x{D800}", &out));
  EXPECT_FALSE(DecodeUtf8Xtext("\\x{}", &out));
  EXPECT_FALSE(DecodeUtf8Xtext("\\x{41", &out));
}

TEST(EscapeForLogTest, ControlsAreEscapedAndLengthBounded) {
  EXPECT_EQ(EscapeForLog(std::string("a\r\n\0\\", 5)), "a\\r\\n\\000\\\\");
  EXPECT_EQ(EscapeForLog(std::string(500, 'x')).size(), 100u);
}

}  // namespace
}  // namespace moat::net
