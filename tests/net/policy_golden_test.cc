// tests/net/policy_golden_test.cc
//
// Golden scripts for the restriction engine, after Postfix's smtpd_check test driver: each
// tests/net/testdata/policy/NAME.in is run line by line and its transcript must equal
// NAME.ref. Script lines:
//
//   # comment                   (copied to the transcript)
//   name = value                a policy parameter (main.cf syntax, one line)
//   table TYPE:NAME             an in-memory table: "key value" lines up to "end"
//                               (cidr: tables are asked full keys only)
//   server ADDR                 the address the client connected to
//   client NAME ADDR            a new connection; runs the connect stage
//   helo NAME | mail ADDR | rcpt ADDR   the stages ("mail <>" is the null sender)
//   data | eod                  the DATA and end-of-data stages
//   pipelining yes|no           PolicyRequest::unauth_pipelining
//   tls FINGERPRINT | tls off   a verified client certificate
//   resolve ADDR                Policy::Resolve(): "addr -> transport:nexthop" lines
//
// Each command prints its decision: "OK" or the reply line "554 5.7.1 <x@y>: ...". A
// configuration the engine refuses prints "error: ...". Set MOAT_UPDATE_GOLDEN=1 to rewrite
// the .ref files (then review the diff: the .ref files are the specification).
#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "net/policy.h"
#include "net/policy_settings.h"

namespace moat::net {
namespace {

std::string TestDataDir() { return std::string(MOAT_SOURCE_DIR) + "/tests/net/testdata/policy"; }

std::vector<std::string> ScriptNames() {
  std::vector<std::string> names;
  DIR* dir = opendir(TestDataDir().c_str());
  if (dir == nullptr) {
    return names;
  }
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name.size() > 3 && name.ends_with(".in")) {
      names.push_back(name.substr(0, name.size() - 3));
    }
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) {
    return "";
  }
  size_t e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

std::string FormatDecision(const PolicyDecision& d) {
  if (d.action == PolicyAction::kReject || d.action == PolicyAction::kDefer) {
    return absl::StrFormat("%d %s %s", d.code, d.enhanced, d.text);
  }
  return "OK";
}

// A cidr: table for the scripts (Postfix cidr_table(5): "network/len value", first match
// wins; asked full keys only).
class CidrTable final : public table::Map {
 public:
  explicit CidrTable(std::string spec) : table::Map(std::move(spec)) {}
  bool Add(std::string_view key, std::string_view value) {
    absl::StatusOr<IpNetwork> network = ParseIpNetwork(key);
    if (!network.ok()) {
      return false;
    }
    rows_.emplace_back(*network, std::string(value));
    return true;
  }
  std::optional<std::string_view> Find(std::string_view key) const override {
    bool v6 = false;
    uint8_t bytes[16];
    if (!ParseIpAddress(key, &v6, bytes)) {
      return std::nullopt;
    }
    for (const auto& [network, value] : rows_) {
      if (NetworkContains(network, v6, bytes)) {
        return std::string_view(value);
      }
    }
    return std::nullopt;
  }
  bool IsPattern() const override { return true; }
  uint64_t size() const override { return rows_.size(); }

 private:
  std::vector<std::pair<IpNetwork, std::string>> rows_;
};

// Runs one script and returns its transcript.
class ScriptRunner {
 public:
  std::string Run(const std::string& script) {
    std::istringstream in(script);
    std::string line;
    while (std::getline(in, line)) {
      std::string trimmed = Trim(line);
      if (trimmed.empty()) {
        out_ << "\n";
        continue;
      }
      if (trimmed[0] == '#') {
        out_ << trimmed << "\n";
        continue;
      }
      out_ << ">>> " << trimmed << "\n";
      Execute(trimmed, in);
    }
    return out_.str();
  }

 private:
  void Execute(const std::string& line, std::istringstream& in) {
    size_t equals = line.find('=');
    size_t space = line.find(' ');
    if (equals != std::string::npos && (space == std::string::npos || equals <= space + 1)) {
      std::string name = Trim(line.substr(0, equals));
      std::string value = Trim(line.substr(equals + 1));
      absl::Status status = ApplyPolicyParameter(&settings_, name, value, Opener());
      out_ << (status.ok() ? "OK" : "error: " + std::string(status.message())) << "\n";
      engine_.reset();
      return;
    }
    std::string verb = line.substr(0, space);
    std::string arg = space == std::string::npos ? "" : Trim(line.substr(space + 1));
    if (verb == "table") {
      bool cidr = arg.rfind("cidr:", 0) == 0;
      auto memory = std::make_shared<MemoryMap>(arg);
      auto networks = std::make_shared<CidrTable>(arg);
      std::string row;
      int rows = 0;
      while (std::getline(in, row)) {
        std::string r = Trim(row);
        if (r == "end") {
          break;
        }
        if (r.empty() || r[0] == '#') {
          continue;
        }
        size_t sep = r.find_first_of(" \t");
        std::string key = r.substr(0, sep);
        std::string value = sep == std::string::npos ? "" : Trim(r.substr(sep));
        bool added = cidr ? networks->Add(key, value) : memory->Add(key, value);
        if (!added) {
          out_ << "bad table row: " << r << "\n";
        }
        ++rows;
      }
      tables_[arg] = cidr ? TablePtr(networks) : TablePtr(memory);
      out_ << absl::StrFormat("OK (%d rows)\n", rows);
      return;
    }
    if (verb == "server") {
      server_ip_ = arg;
      out_ << "OK\n";
      return;
    }
    if (verb == "pipelining") {
      unauth_pipelining_ = arg == "yes";
      out_ << "OK\n";
      return;
    }
    if (verb == "tls") {
      tls_fingerprint_ = arg == "off" ? "" : arg;
      out_ << "OK\n";
      return;
    }
    if (!EnsureEngine()) {
      return;
    }
    PolicyRequest request;
    if (verb == "client") {
      size_t sep = arg.find(' ');
      client_name_ = arg.substr(0, sep);
      client_ip_ = sep == std::string::npos ? "" : Trim(arg.substr(sep + 1));
      helo_.clear();
      sender_.clear();
      has_sender_ = false;
      request.stage = PolicyStage::kConnect;
    } else if (verb == "helo") {
      helo_ = arg;
      request.stage = PolicyStage::kHelo;
    } else if (verb == "mail") {
      sender_ = arg == "<>" ? "" : arg;
      has_sender_ = true;
      request.stage = PolicyStage::kMail;
    } else if (verb == "rcpt") {
      recipient_ = arg;
      request.stage = PolicyStage::kRcpt;
    } else if (verb == "data") {
      request.stage = PolicyStage::kData;
    } else if (verb == "eod") {
      request.stage = PolicyStage::kEndOfData;
    } else if (verb == "resolve") {
      PolicyDecision failure;
      std::vector<ResolvedRecipient> result = engine_->Resolve(arg, &failure);
      if (result.empty()) {
        out_ << FormatDecision(failure) << "\n";
      }
      for (const ResolvedRecipient& r : result) {
        out_ << r.address << " -> " << r.next_hop << "\n";
      }
      return;
    } else {
      out_ << "bad script line\n";
      ADD_FAILURE() << "bad script line: " << line;
      return;
    }
    request.client_ip = client_ip_;
    request.client_name = client_name_;
    request.server_ip = server_ip_;
    request.helo_name = helo_;
    request.sender = sender_;
    if (request.stage == PolicyStage::kRcpt) {
      request.recipient = recipient_;
    }
    request.protocol = "ESMTP";
    request.tls = !tls_fingerprint_.empty();
    request.client_cert_fingerprint = tls_fingerprint_;
    // "tls FP" scripts a certificate that chained to smtpd_tls_CAfile (inbound-tls:
    // untrusted ones are covered by policy_clientcerts_test.cc).
    request.client_cert_verified = !tls_fingerprint_.empty();
    request.unauth_pipelining = unauth_pipelining_;
    if (request.stage >= PolicyStage::kMail && !has_sender_) {
      out_ << "script error: no mail command yet\n";
      return;
    }
    out_ << FormatDecision(engine_->Check(request)) << "\n";
  }

  bool EnsureEngine() {
    if (engine_ != nullptr) {
      return true;
    }
    absl::StatusOr<std::unique_ptr<PolicyEngine>> engine = PolicyEngine::Create(settings_);
    if (!engine.ok()) {
      out_ << "error: " << engine.status().message() << "\n";
      return false;
    }
    engine_ = *std::move(engine);
    return true;
  }

  TableOpener Opener() {
    return [this](std::string_view spec) -> absl::StatusOr<TablePtr> {
      auto it = tables_.find(std::string(spec));
      if (it == tables_.end()) {
        return absl::NotFoundError(absl::StrFormat("table %s does not exist", spec));
      }
      return it->second;
    };
  }

  std::ostringstream out_;
  PolicySettings settings_;
  std::unique_ptr<PolicyEngine> engine_;
  std::map<std::string, TablePtr> tables_;
  std::string server_ip_ = "192.0.2.25";
  std::string client_name_ = "unknown";
  std::string client_ip_ = "203.0.113.7";
  std::string helo_;
  std::string sender_;
  bool has_sender_ = false;
  std::string recipient_;
  std::string tls_fingerprint_;
  bool unauth_pipelining_ = false;
};

class PolicyGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PolicyGoldenTest, TranscriptMatchesReference) {
  const std::string base = TestDataDir() + "/" + GetParam();
  const std::string script = ReadFile(base + ".in");
  ASSERT_FALSE(script.empty()) << base << ".in is empty or missing";
  const std::string transcript = ScriptRunner().Run(script);
  const char* update = getenv("MOAT_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(base + ".ref") << transcript;
  }
  const std::string reference = ReadFile(base + ".ref");
  ASSERT_FALSE(reference.empty()) << base << ".ref is missing";
  EXPECT_EQ(transcript, reference) << "transcript of " << base << ".in differs from .ref";
}

INSTANTIATE_TEST_SUITE_P(Scripts, PolicyGoldenTest, ::testing::ValuesIn(ScriptNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) {
                               c = '_';
                             }
                           }
                           return name;
                         });

// The suite must not pass by finding nothing.
TEST(PolicyGoldenScripts, AreFound) { EXPECT_GE(ScriptNames().size(), 5u); }

}  // namespace
}  // namespace moat::net
