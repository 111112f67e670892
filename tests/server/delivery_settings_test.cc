// main.cf -> the delivery side's settings (core/server/delivery.h): when a destination counts as
// dead, as Postfix's default_destination_concurrency_failed_cohort_limit does it.
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "core/config/config.h"
#include "core/server/delivery.h"

namespace moat::server {
namespace {

int FailureLimit(const std::string& main_cf, int shards) {
  config::LoadResult loaded = config::Config::LoadText(main_cf, "/etc/moat/main.cf");
  for (const auto& d : loaded.diagnostics.items()) {
    ADD_FAILURE() << "unexpected diagnostic: " << d.ToString();
  }
  EXPECT_NE(loaded.config, nullptr);
  if (loaded.config == nullptr) {
    return -1;
  }
  return MakeDeliverySettings(*loaded.config, shards).scheduler.destination_failure_limit;
}

// A pseudo-cohort is as many deliveries as the destination's concurrency (man 5 postconf):
// with Postfix's defaults a destination is dead after five connection failures in a row, not
// after one (one refused connect during a downstream restart deferred everything for 5 min).
TEST(DeliverySettingsTest, DeadAfterAFailedPseudoCohortNotAfterOneFailure) {
  EXPECT_EQ(FailureLimit("", 2), 5);
  // The initial concurrency, at most the shard's share of the concurrency limit.
  EXPECT_EQ(FailureLimit("default_destination_concurrency_limit = 4\n", 2), 2);
  EXPECT_EQ(FailureLimit("initial_destination_concurrency = 2\n", 1), 2);
  EXPECT_EQ(FailureLimit("default_destination_concurrency_failed_cohort_limit = 3\n", 2), 15);
  // Zero disables it, as in Postfix.
  EXPECT_EQ(FailureLimit("default_destination_concurrency_failed_cohort_limit = 0\n", 2), 0);
}

// smtp_discard_ehlo_keywords reaches the client as written (the client compares without
// case); "chunking" there is how an operator gets Postfix's DATA-only client back.
TEST(DeliverySettingsTest, DiscardedEhloKeywordsReachTheClient) {
  config::LoadResult loaded = config::Config::LoadText(
      "smtp_discard_ehlo_keywords = silent-discard, CHUNKING dsn\n", "/etc/moat/main.cf");
  ASSERT_NE(loaded.config, nullptr);
  EXPECT_TRUE(loaded.diagnostics.items().empty());
  EXPECT_EQ(MakeDeliverySettings(*loaded.config, 2).client.discard_ehlo_keywords,
            (std::vector<std::string>{"silent-discard", "CHUNKING", "dsn"}));
  loaded = config::Config::LoadText("", "/etc/moat/main.cf");
  ASSERT_NE(loaded.config, nullptr);
  EXPECT_TRUE(MakeDeliverySettings(*loaded.config, 2).client.discard_ehlo_keywords.empty());
}

}  // namespace
}  // namespace moat::server
