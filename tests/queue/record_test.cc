// Record framing and payload codecs (queue/record.h, queue/message_record.h, FORMAT.md):
// round trips, and damaged input rejected rather than trusted.
#include "queue/record.h"

#include <string>

#include "gtest/gtest.h"

#include "queue/message_record.h"
#include "tests/queue/spool_test_util.h"

namespace moat::queue {
namespace {

TEST(RecordTest, HeaderRoundTrip) {
  RecordHeader in{RecordType::kOutcome, 12345, 987654321, 0xDEADBEEFCAFEF00Du};
  char buf[kHeaderBytes];
  EncodeHeader(in, 42, buf);
  RecordHeader out;
  ASSERT_EQ(DecodeHeader(buf, 42, &out), HeaderStatus::kOk);
  EXPECT_EQ(out.type, in.type);
  EXPECT_EQ(out.payload_bytes, in.payload_bytes);
  EXPECT_EQ(out.sequence, in.sequence);
  EXPECT_EQ(out.payload_check, in.payload_check);
  EXPECT_EQ(std::string(buf, 4), "MOAT");
}

TEST(RecordTest, HeaderUnderAnotherSeedIsRejected) {
  RecordHeader in{RecordType::kMessage, 100, 1, 7};
  char buf[kHeaderBytes];
  EncodeHeader(in, 1, buf);
  RecordHeader out;
  EXPECT_EQ(DecodeHeader(buf, 2, &out), HeaderStatus::kBadChecksum);
}

TEST(RecordTest, EveryBitFlipInAHeaderIsDetected) {
  RecordHeader in{RecordType::kMessage, 100, 5, 77};
  char good[kHeaderBytes];
  EncodeHeader(in, 9, good);
  for (size_t bit = 0; bit < kHeaderBytes * 8; ++bit) {
    char buf[kHeaderBytes];
    std::copy(good, good + kHeaderBytes, buf);
    buf[bit / 8] = static_cast<char>(buf[bit / 8] ^ (1 << (bit % 8)));
    RecordHeader out;
    EXPECT_NE(DecodeHeader(buf, 9, &out), HeaderStatus::kOk) << "bit " << bit;
  }
}

TEST(RecordTest, ZeroBytesAreTheCleanEnd) {
  char buf[kHeaderBytes] = {};
  RecordHeader out;
  EXPECT_EQ(DecodeHeader(buf, 0, &out), HeaderStatus::kZero);
  buf[20] = 1;
  EXPECT_EQ(DecodeHeader(buf, 0, &out), HeaderStatus::kBadMagic);
}

TEST(RecordTest, PaddingKeepsRecordsAligned) {
  for (uint64_t n = 0; n < 64; ++n) {
    EXPECT_EQ(RecordBytes(n) % kRecordAlign, 0u) << n;
    EXPECT_LT(PaddingBytes(n), kRecordAlign);
    EXPECT_EQ(RecordBytes(n), kHeaderBytes + n + PaddingBytes(n));
  }
}

TEST(MessageRecordTest, RoundTripKeepsEveryField) {
  MessageEnvelope in = testutil::MakeEnvelope("0123456789ABCDEF", 3);
  in.flags = kSmtpUtf8 | kRetFull;
  in.sender = "";  // the null sender
  in.recipients[1].notify = kNotifyNever;
  in.recipients[2].orcpt = "";
  std::string content = testutil::MakeContent("id@example", 5000);
  std::string payload;
  EncodeEnvelope(in, content.size(), &payload);
  payload += content;
  std::string_view got_content;
  absl::StatusOr<MessageEnvelope> out = DecodeMessage(payload, &got_content);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, in);
  EXPECT_EQ(got_content, content);
}

TEST(MessageRecordTest, EveryTruncationFailsToDecode) {
  MessageEnvelope in = testutil::MakeEnvelope("0123456789ABCDEF", 2);
  std::string payload;
  EncodeEnvelope(in, 10, &payload);
  payload += "0123456789";
  for (size_t cut = 0; cut < payload.size(); ++cut) {
    EXPECT_FALSE(DecodeMessage(std::string_view(payload).substr(0, cut), nullptr).ok()) << cut;
  }
  EXPECT_FALSE(DecodeMessage(payload + "x", nullptr).ok()) << "trailing byte";
}

TEST(MessageRecordTest, HugeRecipientCountIsRejected) {
  std::string payload;
  EncodeEnvelope(testutil::MakeEnvelope("0123456789ABCDEF", 0), 0, &payload);
  // The recipient count sits just before the u64 content length; claim 4 billion recipients.
  PutU32(payload.data() + payload.size() - 12, 0xFFFFFFFFu);
  EXPECT_FALSE(DecodeMessage(payload, nullptr).ok());
}

TEST(MessageRecordTest, OutcomeRoundTrip) {
  OutcomeRecord in{
      77, "0123456789ABCDEF", 3, Outcome::kBounced, 1700000000000001, "550 5.1.1 user unknown"};
  std::string payload;
  EncodeOutcome(in, &payload);
  absl::StatusOr<OutcomeRecord> out = DecodeOutcome(payload);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, in);
  for (size_t cut = 0; cut < payload.size(); ++cut) {
    EXPECT_FALSE(DecodeOutcome(payload.substr(0, cut)).ok()) << cut;
  }
  EXPECT_TRUE(IsFinal(Outcome::kDelivered));
  EXPECT_TRUE(IsFinal(Outcome::kExpired));
  EXPECT_FALSE(IsFinal(Outcome::kDeferred));
}

}  // namespace
}  // namespace moat::queue
