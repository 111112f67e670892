// Recovery (queue/segment_reader.h, Spool::Open, FORMAT.md "Recovery"): torn tails cut at every
// byte, bit flips in the middle and at the end, a bad segment header, a record smuggled inside a
// message body, and a fault-injection driver that forgets every byte no fdatasync covered.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

#include "queue/blocking_committer.h"
#include "queue/record.h"
#include "queue/spool.h"
#include "tests/queue/spool_test_util.h"
#include "tests/testing/testing.h"

namespace moat::queue {
namespace {

using testutil::FileSize;
using testutil::MakeContent;
using testutil::MakeEnvelope;
using testutil::ReadAll;
using testutil::RecordingReporter;
using testutil::WriteAll;

struct Sent {
  std::string id;
  std::string content;
  RecordLocation location;
};

class RecoveryTest : public ::testing::Test {
 protected:
  SpoolOptions Options(bool preallocate = false) {
    SpoolOptions o;
    o.directory = dir_.path() + "/spool/0";
    o.segment_bytes = 1 << 20;
    o.preallocate = preallocate;
    return o;
  }

  // Writes `n` messages, one commit each, and returns them with their locations.
  std::vector<Sent> WriteMessages(const SpoolOptions& options, int n, size_t size = 600) {
    RecordingReporter reporter;
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options, reporter);
    EXPECT_TRUE(spool.ok()) << spool.status();
    std::vector<Sent> sent;
    for (int i = 0; i < n; ++i) {
      Sent s;
      s.id = (*spool)->NewQueueId();
      s.content = MakeContent(absl::StrFormat("%d@recovery", i), size);
      (*spool)->Stage(MakeEnvelope(s.id), s.content);
      BlockingCommitter::CommitAll(**spool);
      s.location = (*spool)->index().Find(s.id)->location;
      sent.push_back(s);
    }
    return sent;
  }

  std::unique_ptr<Spool> Reopen(const SpoolOptions& options, RecordingReporter& reporter) {
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options, reporter);
    EXPECT_TRUE(spool.ok()) << spool.status();
    return spool.ok() ? *std::move(spool) : nullptr;
  }

  void ExpectIntact(const Spool& spool, const Sent& s) {
    const QueuedMessage* m = spool.index().Find(s.id);
    ASSERT_NE(m, nullptr) << s.id;
    absl::StatusOr<std::string> content = spool.ReadContent(*m);
    ASSERT_TRUE(content.ok()) << content.status();
    EXPECT_EQ(*content, s.content);
  }

  std::string SegmentPath(const SpoolOptions& options, uint64_t number) {
    return absl::StrFormat("%s/%016x.seg", options.directory, number);
  }

  testing::TempDir dir_;
};

TEST_F(RecoveryTest, TornTailAtEveryByteOfTheLastRecordIsDroppedAndEarlierRecordsStay) {
  SpoolOptions options = Options();
  std::vector<Sent> sent = WriteMessages(options, 4, 150);
  const Sent& last = sent.back();
  std::string path = SegmentPath(options, last.location.segment);
  const std::string original = ReadAll(path);
  ASSERT_EQ(original.size(), last.location.offset + last.location.record_bytes);
  RecordHeader header;
  ASSERT_EQ(DecodeHeader(original.data() + last.location.offset, 0, &header),
            HeaderStatus::kBadChecksum)
      << "records are salted: seed 0 must not validate them";
  for (uint64_t cut = last.location.offset; cut <= original.size(); ++cut) {
    for (bool zero_fill : {false, true}) {
      // zero_fill: the file was preallocated, so the missing bytes read as zeros.
      std::string bytes = original.substr(0, cut);
      if (zero_fill) {
        bytes.append(4096, '\0');
      }
      WriteAll(path, bytes);
      RecordingReporter reporter;
      std::unique_ptr<Spool> spool = Reopen(options, reporter);
      ASSERT_NE(spool, nullptr);
      for (size_t i = 0; i + 1 < sent.size(); ++i) {
        ExpectIntact(*spool, sent[i]);
      }
      const QueuedMessage* m = spool->index().Find(last.id);
      if (m != nullptr) {
        // Only a record whose every payload byte is there may be found (padding may be missing).
        ExpectIntact(*spool, last);
        EXPECT_GE(cut + kRecordAlign, original.size()) << cut;
        EXPECT_TRUE(reporter.reports.empty()) << cut;
      } else {
        // Bytes reported dropped: up to the last non-zero byte that was there.
        uint64_t nonzero_end = cut;
        while (nonzero_end > last.location.offset && original[nonzero_end - 1] == 0) {
          --nonzero_end;
        }
        if (nonzero_end == last.location.offset) {
          EXPECT_TRUE(reporter.reports.empty()) << "a clean cut is not damage";
        } else {
          ASSERT_EQ(reporter.reports.size(), 1u) << cut;
          EXPECT_EQ(reporter.reports[0].offset, last.location.offset);
          EXPECT_EQ(reporter.reports[0].bytes, nonzero_end - last.location.offset) << cut;
          EXPECT_NE(reporter.reports[0].reason.find("torn tail"), std::string::npos);
          EXPECT_EQ(FileSize(path), bytes.size()) << "recovery truncates nothing";
        }
      }
      EXPECT_EQ(spool->recovery_stats().messages, m != nullptr ? sent.size() : sent.size() - 1);
    }
  }
}

TEST_F(RecoveryTest, TornTailIsExactlyWhenThePayloadIsIncomplete) {
  SpoolOptions options = Options();
  std::vector<Sent> sent = WriteMessages(options, 2, 613);
  const Sent& last = sent.back();
  std::string envelope;
  EncodeEnvelope(MakeEnvelope(last.id), last.content.size(), &envelope);
  uint64_t payload_end =
      last.location.offset + kHeaderBytes + envelope.size() + last.content.size();
  ASSERT_EQ(last.location.record_bytes,
            RecordBytes(payload_end - last.location.offset - kHeaderBytes));
  std::string path = SegmentPath(options, last.location.segment);
  const std::string original = ReadAll(path);
  for (uint64_t cut : {payload_end - 1, payload_end}) {
    WriteAll(path, original.substr(0, cut));
    RecordingReporter reporter;
    std::unique_ptr<Spool> spool = Reopen(options, reporter);
    ASSERT_NE(spool, nullptr);
    EXPECT_EQ(spool->index().Find(last.id) != nullptr, cut == payload_end) << cut;
    EXPECT_EQ(reporter.reports.empty(), cut == payload_end) << cut;
    ExpectIntact(*spool, sent[0]);
  }
}

TEST_F(RecoveryTest, BitFlipInTheMiddleIsReportedAndLaterRecordsAreFound) {
  SpoolOptions options = Options();
  std::vector<Sent> sent = WriteMessages(options, 6);
  std::string path = SegmentPath(options, sent[0].location.segment);
  const std::string original = ReadAll(path);
  // Flip one bit in the header, then in the envelope, then in the content of message 2.
  const RecordLocation& victim = sent[2].location;
  for (uint64_t at : {victim.offset + 9, victim.offset + kHeaderBytes + 20,
                      victim.offset + victim.record_bytes - 20}) {
    std::string bytes = original;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x10);
    WriteAll(path, bytes);
    RecordingReporter reporter;
    std::unique_ptr<Spool> spool = Reopen(options, reporter);
    ASSERT_NE(spool, nullptr);
    EXPECT_EQ(spool->index().Find(sent[2].id), nullptr) << at;
    for (int i : {0, 1, 3, 4, 5}) {
      ExpectIntact(*spool, sent[i]);
    }
    ASSERT_EQ(reporter.reports.size(), 1u) << at;
    EXPECT_EQ(reporter.reports[0].offset, victim.offset);
    EXPECT_EQ(reporter.reports[0].bytes, victim.record_bytes);
    EXPECT_NE(reporter.reports[0].reason.find("middle"), std::string::npos);
    EXPECT_EQ(spool->recovery_stats().skipped_bytes, victim.record_bytes);
    EXPECT_EQ(FileSize(path), original.size()) << "damage in the middle truncates nothing";
  }
}

TEST_F(RecoveryTest, BitFlipInTheLastRecordIsATornTail) {
  SpoolOptions options = Options();
  std::vector<Sent> sent = WriteMessages(options, 3);
  std::string path = SegmentPath(options, sent[0].location.segment);
  std::string bytes = ReadAll(path);
  bytes[sent[2].location.offset + 100] ^= 1;
  WriteAll(path, bytes);
  RecordingReporter reporter;
  std::unique_ptr<Spool> spool = Reopen(options, reporter);
  ASSERT_NE(spool, nullptr);
  ExpectIntact(*spool, sent[0]);
  ExpectIntact(*spool, sent[1]);
  EXPECT_EQ(spool->index().Find(sent[2].id), nullptr);
  ASSERT_EQ(reporter.reports.size(), 1u);
  EXPECT_EQ(reporter.reports[0].bytes, sent[2].location.record_bytes);
  EXPECT_EQ(spool->recovery_stats().dropped_bytes, sent[2].location.record_bytes);
}

TEST_F(RecoveryTest, BadSegmentHeaderSkipsThatSegmentOnlyAndLeavesItInPlace) {
  SpoolOptions options = Options();
  options.segment_bytes = 2048;  // one message per segment
  std::vector<Sent> sent = WriteMessages(options, 3, 1200);
  ASSERT_NE(sent[0].location.segment, sent[1].location.segment);
  std::string path = SegmentPath(options, sent[1].location.segment);
  std::string bytes = ReadAll(path);
  bytes[40] ^= 4;  // inside the segment header payload
  WriteAll(path, bytes);
  RecordingReporter reporter;
  std::unique_ptr<Spool> spool = Reopen(options, reporter);
  ASSERT_NE(spool, nullptr);
  ExpectIntact(*spool, sent[0]);
  ExpectIntact(*spool, sent[2]);
  EXPECT_EQ(spool->index().Find(sent[1].id), nullptr);
  ASSERT_EQ(reporter.reports.size(), 1u);
  EXPECT_EQ(reporter.reports[0].path, path);
  EXPECT_EQ(spool->recovery_stats().unreadable_segments, 1u);
  EXPECT_EQ(ReadAll(path), bytes) << "left for the operator, untouched";
  // New appends never reuse its number.
  Sent more{spool->NewQueueId(), MakeContent("more@recovery", 100), {}};
  spool->Stage(MakeEnvelope(more.id), more.content);
  BlockingCommitter::CommitAll(*spool);
  EXPECT_GT(spool->current_segment(), sent[2].location.segment);
  ExpectIntact(*spool, more);
}

TEST_F(RecoveryTest, RecordSmuggledInABodyIsNeverAcceptedByResync) {
  SpoolOptions options = Options();
  // The attacker's body holds a complete record with a forged envelope, framed under every seed
  // it might guess (0 here), aligned at many offsets.
  std::string forged_payload;
  MessageEnvelope forged = MakeEnvelope("FFFFFFFFFFFFFFFF", 1);
  forged.recipients[0].resolved = "victim@elsewhere.example";
  EncodeEnvelope(forged, 4, &forged_payload);
  forged_payload += "evil";
  std::string forged_record(kHeaderBytes, '\0');
  EncodeHeader({RecordType::kMessage, static_cast<uint32_t>(forged_payload.size()), 999999,
                PayloadChecksum(forged_payload, 0)},
               0, forged_record.data());
  forged_record += forged_payload;
  forged_record.append(PaddingBytes(forged_payload.size()), '\0');
  std::string body = "Subject: hi\r\n\r\n";
  for (int i = 0; i < 8; ++i) {
    body += std::string(i, 'x') + forged_record;
  }
  RecordingReporter reporter;
  std::string id;
  RecordLocation location;
  {
    std::unique_ptr<Spool> spool = Reopen(options, reporter);
    id = spool->NewQueueId();
    spool->Stage(MakeEnvelope(id), body);
    BlockingCommitter::CommitAll(*spool);
    location = spool->index().Find(id)->location;
  }
  // Damage the carrier's header so recovery has to resync through the body.
  std::string path = SegmentPath(options, location.segment);
  std::string bytes = ReadAll(path);
  bytes[location.offset + 20] ^= 1;
  WriteAll(path, bytes);
  std::unique_ptr<Spool> spool = Reopen(options, reporter);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->index().Find("FFFFFFFFFFFFFFFF"), nullptr);
  EXPECT_EQ(spool->index().size(), 0u);
  EXPECT_FALSE(reporter.reports.empty());
}

// A commit driver that writes for real but remembers which bytes an fdatasync covered, and a
// "crash" that forgets (or keeps a random part of) everything else: LevelDB's fault-injection
// Env, at the level of the spool's CommitBatch.
class ForgetfulDisk {
 public:
  int Write(const CommitBatch& batch, uint64_t limit) {
    CommitBatch rest = batch;
    uint64_t todo = std::min(limit, rest.bytes);
    while (todo > 0) {
      std::vector<iovec> iov = rest.iov;
      uint64_t left = todo;
      size_t count = 0;
      while (count < iov.size() && left > 0) {
        iov[count].iov_len = std::min<uint64_t>(iov[count].iov_len, left);
        left -= iov[count].iov_len;
        ++count;
      }
      ssize_t n =
          pwritev(rest.fd, iov.data(), static_cast<int>(count), static_cast<off_t>(rest.offset));
      if (n <= 0) {
        return -EIO;
      }
      rest.Consume(static_cast<uint64_t>(n));
      todo -= static_cast<uint64_t>(n);
    }
    return 0;
  }
  int Sync(const CommitBatch& batch) {
    if (fdatasync(batch.fd) != 0) {
      return -errno;
    }
    std::string path = PathOf(batch.fd);
    durable_[path] = std::max(durable_[path], batch.offset + batch.bytes);
    return 0;
  }
  void NoteCreated(const CommitBatch& batch) { durable_.try_emplace(PathOf(batch.fd), 0); }

  // Every segment file is cut back to what was synced; with `keep_random`, a random part of the
  // unsynced bytes survives instead (a crash that got some pages out). Never-synced files vanish
  // (their directory entry was never made durable) unless keep_random keeps some bytes.
  void Crash(std::mt19937& rng, bool keep_random) {
    for (const auto& [path, durable] : durable_) {
      uint64_t size = FileSize(path);
      uint64_t keep = durable;
      if (keep_random && size > durable) {
        keep += std::uniform_int_distribution<uint64_t>(0, size - durable)(rng);
      }
      if (keep == 0 && !keep_random) {
        unlink(path.c_str());
      } else {
        EXPECT_EQ(truncate(path.c_str(), static_cast<off_t>(keep)), 0);
      }
    }
    durable_.clear();
  }

 private:
  static std::string PathOf(int fd) {
    char buf[4096];
    std::string link = absl::StrFormat("/proc/self/fd/%d", fd);
    ssize_t n = readlink(link.c_str(), buf, sizeof(buf));
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }
  std::map<std::string, uint64_t> durable_;
};

TEST_F(RecoveryTest, FaultInjectionFindsExactlyTheAcknowledgedMessages) {
  std::mt19937 rng(20261123);
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE(round);
    bool keep_random = round % 2 == 1;
    testing::TempDir dir;
    SpoolOptions options;
    options.directory = dir.path() + "/spool/1";
    options.shard = 1;
    options.segment_bytes = 16 * 1024;
    options.preallocate = round % 4 < 2;
    absl::flat_hash_map<std::string, std::string> contents;  // every staged message
    absl::flat_hash_set<std::string> acked;
    ForgetfulDisk disk;
    int restarts = 1 + round % 3;
    for (int run = 0; run < restarts; ++run) {
      RecordingReporter reporter;
      absl::StatusOr<std::unique_ptr<Spool>> opened = Spool::Open(options, reporter);
      ASSERT_TRUE(opened.ok()) << opened.status();
      Spool& spool = **opened;
      for (const std::string& id : acked) {
        const QueuedMessage* m = spool.index().Find(id);
        ASSERT_NE(m, nullptr) << "acknowledged message lost: " << id;
        absl::StatusOr<std::string> content = spool.ReadContent(*m);
        ASSERT_TRUE(content.ok()) << content.status();
        EXPECT_EQ(*content, contents[id]);
      }
      std::vector<std::string> recovered;
      spool.index().ForEachPending(
          [&](const QueuedMessage& m) { recovered.push_back(m.envelope.queue_id); });
      for (const std::string& id : recovered) {
        EXPECT_TRUE(contents.contains(id)) << "recovered a message never staged: " << id;
        if (!keep_random) {
          EXPECT_TRUE(acked.contains(id)) << "forgotten bytes came back: " << id;
        }
      }
      if (!keep_random) {
        EXPECT_EQ(recovered.size(), acked.size());
        EXPECT_TRUE(reporter.reports.empty()) << reporter.reports[0].reason;
      }
      std::map<uint64_t, std::string> ticket_ids;
      int turns = std::uniform_int_distribution<int>(1, 25)(rng);
      bool crashed = false;
      for (int turn = 0; turn < turns && !crashed; ++turn) {
        int n = std::uniform_int_distribution<int>(1, 6)(rng);
        for (int i = 0; i < n; ++i) {
          std::string id = spool.NewQueueId();
          size_t size = std::uniform_int_distribution<size_t>(50, 6000)(rng);
          contents[id] = MakeContent(id + "@fi", size);
          ticket_ids[spool.Stage(MakeEnvelope(id, 1 + i % 2), contents[id]).sequence] = id;
        }
        while (const CommitBatch* batch = spool.PrepareCommit()) {
          if (batch->directory_fd >= 0) {
            disk.NoteCreated(*batch);
          }
          int fate = std::uniform_int_distribution<int>(0, 99)(rng);
          uint64_t part = std::uniform_int_distribution<uint64_t>(0, batch->bytes)(rng);
          if (fate < 8) {  // the write or the sync fails (EIO): part of it may be out
            EXPECT_EQ(disk.Write(*batch, part), 0);
            spool.OnCommitDone(-EIO);
          } else if (fate < 12) {  // crash with this batch in flight
            EXPECT_EQ(disk.Write(*batch, part), 0);
            crashed = true;
            break;
          } else {
            int result = disk.Write(*batch, batch->bytes);
            if (result == 0) {
              result = disk.Sync(*batch);
            }
            spool.OnCommitDone(result);
          }
        }
        std::vector<TicketResult> results;
        spool.TakeResults(&results);
        for (const TicketResult& r : results) {
          if (r.error == 0) {
            acked.insert(ticket_ids[r.sequence]);
          }
        }
      }
      opened->reset();  // the process dies here
      disk.Crash(rng, keep_random);
    }
    RecordingReporter reporter;
    absl::StatusOr<std::unique_ptr<Spool>> opened = Spool::Open(options, reporter);
    ASSERT_TRUE(opened.ok()) << opened.status();
    for (const std::string& id : acked) {
      const QueuedMessage* m = (*opened)->index().Find(id);
      ASSERT_NE(m, nullptr) << "acknowledged message lost: " << id;
      EXPECT_EQ(*(*opened)->ReadContent(*m), contents[id]);
    }
    if (!keep_random) {
      EXPECT_EQ((*opened)->index().pending_messages(), acked.size());
    }
  }
}

}  // namespace
}  // namespace moat::queue
