// Unit tests for moat-loadgen's flag parsing: strict (unknown flags, flags of another mode,
// missing values and malformed numbers are errors naming the flag), and every value lands.
#include "bench/loadgen/options.h"

#include <netinet/in.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moat::loadgen {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<Options> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "moat-loadgen");
  return ParseArgs(args);
}

std::string Error(std::vector<std::string> args) {
  auto r = Parse(std::move(args));
  if (r.ok()) {
    return "(parsed)";
  }
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

TEST(OptionsTest, SendParsesEveryFlag) {
  auto o = Parse({"send", "--server", "127.0.0.1:2525", "--sessions", "100", "--messages", "5000",
                  "--duration=12.5", "--rate", "250.5", "--size", "5k", "--from", "a@b.example",
                  "--to", "u%d@example.com", "--to-count", "100000", "--rcpts", "3",
                  "--msgs-per-conn", "0", "--unknown-share", "0.5", "--pipelining",
                  "--source-ips", "8", "--json", "--timeout", "5", "--helo", "h.example"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->mode, Mode::kSend);
  EXPECT_EQ(o->sessions, 100u);
  EXPECT_EQ(o->messages, 5000u);
  EXPECT_DOUBLE_EQ(o->duration_s, 12.5);
  EXPECT_DOUBLE_EQ(o->rate, 250.5);
  EXPECT_EQ(o->size, 5120u);
  EXPECT_EQ(o->from, "a@b.example");
  EXPECT_EQ(o->to, "u%d@example.com");
  EXPECT_EQ(o->to_count, 100000u);
  EXPECT_EQ(o->rcpts, 3u);
  EXPECT_EQ(o->msgs_per_conn, 0u);
  EXPECT_DOUBLE_EQ(o->unknown_share, 0.5);
  EXPECT_EQ(o->unknown_pattern, "loadgen-unknown-%d@example.com");
  EXPECT_TRUE(o->pipelining);
  EXPECT_EQ(o->source_ips, 8u);
  EXPECT_TRUE(o->json);
  EXPECT_DOUBLE_EQ(o->timeout_s, 5);
  EXPECT_EQ(o->helo, "h.example");
  EXPECT_EQ(o->server.addr.ss_family, AF_INET);
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(&o->server.addr)->sin_port), 2525);
}

TEST(OptionsTest, SinkAndRunParse) {
  auto sink = Parse({"sink", "--listen", "[::1]:2526", "--messages", "10", "--fsync", "--dir",
                     "/tmp/x", "--reply-4xx-share", "0.1", "--reply-5xx-share", "0.2",
                     "--reply-on", "rcpt"});
  ASSERT_TRUE(sink.ok()) << sink.status();
  EXPECT_EQ(sink->listen.addr.ss_family, AF_INET6);
  EXPECT_TRUE(sink->fsync);
  EXPECT_EQ(sink->dir, "/tmp/x");
  EXPECT_EQ(sink->reply_on, ReplyOn::kRcpt);
  EXPECT_DOUBLE_EQ(sink->reply_5xx_share, 0.2);

  auto run = Parse({"run", "--relay", "127.0.0.1:2525", "--sink", "localhost:2526",
                    "--sessions", "4", "--messages", "100", "--to", "x@example.com",
                    "--drain-timeout", "3"});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->mode, Mode::kRun);
  EXPECT_DOUBLE_EQ(run->drain_s, 3);
  EXPECT_EQ(run->listen.text, "localhost:2526");
}

TEST(OptionsTest, UnknownFlagAndModeAreErrors) {
  EXPECT_THAT(Error({"send", "--server", "127.0.0.1:1", "--messages", "1", "--bogus"}),
              HasSubstr("unknown flag --bogus"));
  EXPECT_THAT(Error({"blast"}), HasSubstr("unknown mode"));
  EXPECT_THAT(Error({}), HasSubstr("missing mode"));
  EXPECT_THAT(Error({"send", "stray", "--server", "127.0.0.1:1"}),
              HasSubstr("unexpected argument \"stray\""));
}

TEST(OptionsTest, FlagsOfAnotherModeAreErrors) {
  EXPECT_THAT(Error({"send", "--server", "127.0.0.1:1", "--messages", "1", "--fsync"}),
              HasSubstr("--fsync does not apply to send"));
  EXPECT_THAT(Error({"sink", "--listen", "127.0.0.1:1", "--sessions", "3"}),
              HasSubstr("--sessions does not apply to sink"));
}

TEST(OptionsTest, BadNumbersAreErrors) {
  const std::vector<std::string> base = {"send", "--server", "127.0.0.1:1", "--messages", "1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return Error(a);
  };
  EXPECT_THAT(with({"--sessions", "abc"}), HasSubstr("--sessions: bad number \"abc\""));
  EXPECT_THAT(with({"--sessions", "-3"}), HasSubstr("--sessions: bad number"));
  EXPECT_THAT(with({"--sessions", "0"}), HasSubstr("out of range"));
  EXPECT_THAT(with({"--sessions", "12x"}), HasSubstr("bad number"));
  EXPECT_THAT(with({"--size", ""}), HasSubstr("bad number"));
  EXPECT_THAT(with({"--unknown-share", "1.5"}), HasSubstr("out of range"));
  EXPECT_THAT(with({"--rate", "nan"}), HasSubstr("--rate: bad number"));
  EXPECT_THAT(with({"--rate", "0"}), HasSubstr("out of range"));
  EXPECT_THAT(with({"--messages", "99999999999999999999999"}), HasSubstr("bad number"));
  EXPECT_THAT(with({"--rcpts"}), HasSubstr("--rcpts needs a value"));
  EXPECT_THAT(with({"--json=yes"}), HasSubstr("--json takes no value"));
}

TEST(OptionsTest, BadAddressesAreErrors) {
  EXPECT_THAT(Error({"send", "--server", "mail.example.com:25", "--messages", "1"}),
              HasSubstr("numeric IP"));
  EXPECT_THAT(Error({"send", "--server", "127.0.0.1", "--messages", "1"}),
              HasSubstr("want HOST:PORT"));
  EXPECT_THAT(Error({"send", "--server", "127.0.0.1:70000", "--messages", "1"}),
              HasSubstr("bad port"));
  EXPECT_THAT(Error({"send", "--server", "127.0.0.1:2k", "--messages", "1"}),
              HasSubstr("bad port"));
  EXPECT_THAT(Error({"send", "--server", "::1:25", "--messages", "1"}), HasSubstr("HOST:PORT"));
}

TEST(OptionsTest, RequiredFlagsAndBoundsAreChecked) {
  EXPECT_THAT(Error({"send", "--messages", "1"}), HasSubstr("send needs --server"));
  EXPECT_THAT(Error({"sink"}), HasSubstr("sink needs --listen"));
  EXPECT_THAT(Error({"run", "--relay", "127.0.0.1:1", "--messages", "1"}),
              HasSubstr("run needs --sink"));
  EXPECT_THAT(Error({"send", "--server", "127.0.0.1:1"}), HasSubstr("every run is bounded"));
  EXPECT_THAT(Error({"sink", "--listen", "127.0.0.1:1", "--reply-4xx-share", "0.6",
                     "--reply-5xx-share", "0.6"}),
              HasSubstr("must not exceed 1"));
  EXPECT_THAT(Error({"sink", "--listen", "127.0.0.1:1", "--reply-on", "mail"}),
              HasSubstr("must be rcpt or data"));
  EXPECT_THAT(Error({"send", "--server", "127.0.0.1:1", "--messages", "1", "--tls-resume"}),
              HasSubstr("--tls-resume needs --starttls"));
  EXPECT_THAT(Error({"sink", "--listen", "127.0.0.1:1", "--tls-key", "k.pem"}),
              HasSubstr("--tls-key needs --tls-cert"));
  EXPECT_THAT(Error({"sink", "--listen", "127.0.0.1:1", "--starttls"}),
              HasSubstr("does not apply to sink"));
  EXPECT_THAT(Error({"send", "--server", "127.0.0.1:1", "--messages", "1", "--tls-cert", "c"}),
              HasSubstr("does not apply to send"));
}

TEST(OptionsTest, TlsFlags) {
  auto o = Parse({"send", "--server", "127.0.0.1:1", "--messages", "5", "--starttls",
                  "--tls-resume", "--handshake-only", "--msgs-per-conn", "7"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->starttls);
  EXPECT_TRUE(o->tls_resume);
  EXPECT_TRUE(o->handshake_only);
  EXPECT_EQ(o->msgs_per_conn, 1u);  // one handshake per connection
  auto sink = Parse({"sink", "--listen", "127.0.0.1:0", "--tls-cert", "chain.pem"});
  ASSERT_TRUE(sink.ok()) << sink.status();
  EXPECT_EQ(sink->tls_cert, "chain.pem");
  EXPECT_EQ(sink->tls_key, "chain.pem");  // the key defaults to the certificate file
  auto run = Parse({"run", "--relay", "127.0.0.1:1", "--sink", "127.0.0.1:0", "--messages", "1",
                    "--starttls", "--tls-cert", "c.pem", "--tls-key", "k.pem"});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->starttls);
  EXPECT_EQ(run->tls_key, "k.pem");
}

TEST(OptionsTest, HelpAndDefaults) {
  auto help = Parse({"send", "--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_TRUE(help->help);
  auto o = Parse({"send", "--server", "127.0.0.1:1", "--duration", "1"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->sessions, 1u);
  EXPECT_EQ(o->messages, 0u);
  EXPECT_EQ(o->rate, 0);
  EXPECT_EQ(o->msgs_per_conn, 1u);
  EXPECT_FALSE(o->pipelining);
  EXPECT_TRUE(o->unknown_pattern.empty());  // only derived when --unknown-share is given
  EXPECT_THAT(std::string(Usage()), HasSubstr("moat-loadgen send --server HOST:PORT"));
}

TEST(OptionsTest, ExpandPattern) {
  EXPECT_EQ(ExpandPattern("user%d@example.com", 42), "user42@example.com");
  EXPECT_EQ(ExpandPattern("fixed@example.com", 42), "fixed@example.com");
}

}  // namespace
}  // namespace moat::loadgen
