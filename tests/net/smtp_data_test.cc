// tests/net/smtp_data_test.cc: the DATA/BDAT content scanner (net/smtp_data.h) without a
// session or sockets: end-of-data detection for every smuggling variant, dot-unstuffing,
// bare LF normalization, size and line limits, and every split of the input.
#include "net/smtp_data.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace moat::net {
namespace {

struct ScanResult {
  std::string content;
  size_t consumed = 0;
  bool done = false;
  bool bare_lf = false;
  bool size_exceeded = false;
  bool line_too_long = false;
};

ContentScanner::Options DataOptions(uint64_t size_limit = 0, size_t line_max = 0) {
  ContentScanner::Options options;
  options.mode = ContentScanner::Mode::kData;
  options.size_limit = size_limit;
  options.line_bytes_max = line_max;
  return options;
}

// Feeds `input` in pieces of at most `piece` bytes (0 = all at once), as the session does:
// stops at the end of data.
ScanResult Scan(std::string_view input, size_t piece = 0,
                ContentScanner::Options options = DataOptions()) {
  ContentScanner scanner;
  scanner.Reset(options);
  ScanResult result;
  size_t pos = 0;
  while (pos < input.size() && !scanner.done()) {
    size_t n = piece == 0 ? input.size() - pos : std::min(piece, input.size() - pos);
    size_t used = scanner.Consume(input.substr(pos, n), &result.content);
    EXPECT_LE(used, n);
    pos += used;
    if (used < n) {
      EXPECT_TRUE(scanner.done());
    }
  }
  result.consumed = pos;
  result.done = scanner.done();
  result.bare_lf = scanner.bare_lf_seen();
  result.size_exceeded = scanner.size_exceeded();
  result.line_too_long = scanner.line_too_long();
  return result;
}

TEST(ContentScannerTest, CrLfDotCrLfEndsDataAndLeavesTheRest) {
  std::string input = "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
  ScanResult r = Scan(input);
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.content, "Subject: x\r\n\r\nbody\r\n");
  EXPECT_EQ(input.substr(r.consumed), "QUIT\r\n");
}

TEST(ContentScannerTest, DotAtVeryStartEndsEmptyMessage) {
  ScanResult r = Scan(".\r\nNOOP\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.content, "");
  EXPECT_EQ(r.consumed, 3u);
}

TEST(ContentScannerTest, DotUnstuffing) {
  ScanResult r = Scan("..\r\n...x\r\n.y\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.content, ".\r\n..x\r\ny\r\n");
}

TEST(ContentScannerTest, DotNotAtLineStartIsContent) {
  ScanResult r = Scan("a.\r\n a\r\n.\r\n");
  EXPECT_EQ(r.content, "a.\r\n a\r\n");
}

// Every SMTP smuggling variant: none of them ends DATA. What follows stays content, and
// only the real CRLF.CRLF ends the message.
struct SmugglingCase {
  const char* name;
  std::string terminator;
  std::string expected_content;  // content for "a" + terminator + "MAIL\r\n.\r\n"
};

const std::string kNul(1, '\0');

class SmugglingTest : public ::testing::TestWithParam<SmugglingCase> {};

TEST_P(SmugglingTest, FakeTerminatorDoesNotEndData) {
  const SmugglingCase& c = GetParam();
  std::string input = "a" + c.terminator + "MAIL FROM:<evil@x>\r\n.\r\nNEXT";
  for (size_t piece : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{7}}) {
    ScanResult r = Scan(input, piece);
    EXPECT_TRUE(r.done) << c.name << " piece " << piece;
    EXPECT_EQ(r.content, c.expected_content) << c.name << " piece " << piece;
    EXPECT_EQ(input.substr(r.consumed), "NEXT") << c.name << " piece " << piece;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllVariants, SmugglingTest,
    ::testing::Values(
        // <LF>.<LF>: the "." line sits next to bare LFs: dropped, not an end.
        SmugglingCase{"LF.LF", "\n.\n", "a\r\nMAIL FROM:<evil@x>\r\n"},
        SmugglingCase{"CRLF.LF", "\r\n.\n", "a\r\nMAIL FROM:<evil@x>\r\n"},
        SmugglingCase{"LF.CRLF", "\n.\r\n", "a\r\nMAIL FROM:<evil@x>\r\n"},
        // <CR>.<CR>: bare CRs are content.
        SmugglingCase{"CR.CR", "\r.\r", "a\r.\rMAIL FROM:<evil@x>\r\n"},
        // <CR><LF>.<CR>: a line ".\rMAIL..." -> unstuffed "\rMAIL...".
        SmugglingCase{"CRLF.CR", "\r\n.\r", "a\r\n\rMAIL FROM:<evil@x>\r\n"},
        SmugglingCase{"CRLF.CRCR", "\r\n.\r\r", "a\r\n\r\rMAIL FROM:<evil@x>\r\n"},
        SmugglingCase{"CRLF.NULCRLF", "\r\n." + kNul + "\r\n",
                      "a\r\n" + kNul + "\r\nMAIL FROM:<evil@x>\r\n"},
        SmugglingCase{"CRLFNUL.CRLF", "\r\n" + kNul + ".\r\n",
                      "a\r\n" + kNul + ".\r\nMAIL FROM:<evil@x>\r\n"},
        SmugglingCase{"CRNULLF.CRLF", "\r" + kNul + "\n.\r\n",
                      "a\r" + kNul + "\r\nMAIL FROM:<evil@x>\r\n"},
        SmugglingCase{"LF.NULLF", "\n." + kNul + "\n",
                      "a\r\n" + kNul + "\r\nMAIL FROM:<evil@x>\r\n"}),
    [](const ::testing::TestParamInfo<SmugglingCase>& info) {
      std::string name;
      for (const char* p = info.param.name; *p != '\0'; ++p) {
        name.push_back(*p == '.' ? 'D' : *p);
      }
      return name;
    });

TEST(ContentScannerTest, BareLfIsNormalizedAndReported) {
  ScanResult r = Scan("a\nb\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_TRUE(r.bare_lf);
  EXPECT_EQ(r.content, "a\r\nb\r\n");
  EXPECT_FALSE(Scan("a\r\nb\r\n.\r\n").bare_lf);
}

TEST(ContentScannerTest, DotLineAfterBareLfLineIsDroppedNotEnd) {
  // "b\n" then ".\r\n": the previous line ended in bare LF, so this is no end of data.
  ScanResult r = Scan("b\n.\r\nc\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.content, "b\r\nc\r\n");
}

TEST(ContentScannerTest, NoEndWithoutTerminator) {
  ScanResult r = Scan("a\r\n.\r");
  EXPECT_FALSE(r.done);
  EXPECT_EQ(r.consumed, 5u);
  EXPECT_EQ(r.content, "a\r\n");
}

TEST(ContentScannerTest, SizeLimitStopsStoringButFindsTheEnd) {
  ContentScanner::Options options = DataOptions(/*size_limit=*/10);
  ScanResult r = Scan("0123456789\r\nmore\r\n.\r\nQUIT\r\n", 0, options);
  EXPECT_TRUE(r.done);
  EXPECT_TRUE(r.size_exceeded);
  EXPECT_LE(r.content.size(), 10u);
  ScanResult fits = Scan("01234567\r\n.\r\n", 0, options);
  EXPECT_FALSE(fits.size_exceeded);
  EXPECT_EQ(fits.content, "01234567\r\n");
}

// RFC 5321 4.5.3.1.6: 1000 octets including CRLF.
TEST(ContentScannerTest, LineLengthLimit999And1000And1001) {
  ContentScanner::Options options = DataOptions(0, 1000);
  for (size_t octets : {size_t{999}, size_t{1000}, size_t{1001}}) {
    std::string line(octets - 2, 'x');
    for (size_t piece : {size_t{0}, size_t{1}, size_t{100}}) {
      ScanResult r = Scan(line + "\r\n.\r\n", piece, options);
      EXPECT_TRUE(r.done);
      EXPECT_EQ(r.line_too_long, octets > 1000) << octets << " piece " << piece;
      EXPECT_EQ(r.content, line + "\r\n");
    }
  }
  // A stuffed dot counts: "." + 998 x + CRLF is 1001 octets on the wire.
  ScanResult stuffed = Scan("." + std::string(998, 'x') + "\r\n.\r\n", 0, options);
  EXPECT_TRUE(stuffed.line_too_long);
}

TEST(ContentScannerTest, EverySplitGivesTheSameResult) {
  const std::string input =
      "From: a@b\r\n\r\n..stuffed\r\nbare\nlf\r\n\r.\r\n.x\r\n\r\n.\r\nNEXT\r\n";
  ScanResult whole = Scan(input);
  ASSERT_TRUE(whole.done);
  for (size_t split = 0; split <= input.size(); ++split) {
    ContentScanner scanner;
    scanner.Reset(DataOptions());
    std::string content;
    size_t used = scanner.Consume(std::string_view(input).substr(0, split), &content);
    if (!scanner.done()) {
      EXPECT_EQ(used, split);
      used += scanner.Consume(std::string_view(input).substr(split), &content);
    }
    EXPECT_TRUE(scanner.done()) << split;
    EXPECT_EQ(content, whole.content) << split;
    EXPECT_EQ(used, whole.consumed) << split;
  }
  EXPECT_EQ(Scan(input, 1).content, whole.content);
}

// Runs of ordinary lines take a fast path (one append per run); every other line goes line by
// line. Fed one byte at a time the scanner never sees a whole line, so it never takes the fast
// path: random mixes of every kind of line must come out the same both ways, with and without
// the size and line limits, in DATA and BDAT mode.
TEST(ContentScannerTest, FastPathAgreesWithLineByLineOnRandomInput) {
  const std::vector<std::string> pieces = {
      "plain text line\r\n", "\r\n", "..stuffed\r\n", ".x\r\n", "bare lf\n", "\n",
      "cr\ralone\r\n", "trailing cr\r", ".\n", std::string(990, 'y') + "\r\n",
      std::string(1200, 'z') + "\r\n", "." + std::string(998, 'w') + "\r\n", "\r\n.\r\n"};
  uint64_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<size_t>(seed >> 33);
  };
  for (int round = 0; round < 400; ++round) {
    std::string input;
    const size_t lines = 1 + next() % 40;
    for (size_t i = 0; i < lines; ++i) {
      input += pieces[next() % pieces.size()];
    }
    input += "\r\n.\r\nNEXT\r\n";
    for (const ContentScanner::Mode mode : {ContentScanner::Mode::kData, ContentScanner::Mode::kBdat}) {
      ContentScanner::Options options = DataOptions(round % 3 == 0 ? 3000 : 0,
                                                    round % 2 == 0 ? 1000 : 0);
      options.mode = mode;
      ScanResult whole = Scan(input, 0, options);
      ScanResult bytewise = Scan(input, 1, options);
      ScanResult chunks = Scan(input, 1 + next() % 700, options);
      for (const ScanResult* r : {&bytewise, &chunks}) {
        EXPECT_EQ(r->consumed, whole.consumed) << round;
        EXPECT_EQ(r->done, whole.done) << round;
        EXPECT_EQ(r->bare_lf, whole.bare_lf) << round;
        EXPECT_EQ(r->size_exceeded, whole.size_exceeded) << round;
        EXPECT_EQ(r->line_too_long, whole.line_too_long) << round;
        if (!whole.size_exceeded) {
          EXPECT_EQ(r->content, whole.content) << round;
        }
      }
    }
  }
}

TEST(ContentScannerTest, BdatModeHasNoTerminatorAndNoUnstuffing) {
  ContentScanner scanner;
  ContentScanner::Options options;
  options.mode = ContentScanner::Mode::kBdat;
  scanner.Reset(options);
  std::string content;
  std::string chunk1 = ".\r\n..x\r\nbare\nend";
  std::string chunk2 = "less\r";
  EXPECT_EQ(scanner.Consume(chunk1, &content), chunk1.size());
  EXPECT_EQ(scanner.Consume(chunk2, &content), chunk2.size());
  scanner.Finish(&content);
  EXPECT_FALSE(scanner.done());
  EXPECT_TRUE(scanner.bare_lf_seen());
  EXPECT_EQ(content, ".\r\n..x\r\nbare\r\nendless\r\n");
  EXPECT_EQ(scanner.content_bytes(), content.size());
}

TEST(ContentScannerTest, ResetStartsOver) {
  ContentScanner scanner;
  scanner.Reset(DataOptions());
  std::string content;
  scanner.Consume("x\n.\r\n", &content);
  scanner.Reset(DataOptions());
  content.clear();
  EXPECT_EQ(scanner.Consume(".\r\n", &content), 3u);
  EXPECT_TRUE(scanner.done());
  EXPECT_FALSE(scanner.bare_lf_seen());
}

}  // namespace
}  // namespace moat::net
