// tests/tls/test_certs.h
//
// Test certificates made at test time with the openssl CLI in a TempDir (no private key is
// ever committed): an ECDSA P-256 CA, a server certificate for "localhost"/127.0.0.1 signed
// by it, a client certificate signed by it, and a second self-signed server certificate (for
// reload tests). Header-only: used by tests/tls/ and tests/e2e/tls_test.cc. Owner: "tls".
#pragma once

#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "tests/testing/testing.h"

namespace moat::tls_testing {

struct TestCerts {
  std::string ca;           // CA certificate (PEM)
  std::string server_cert;  // leaf then CA
  std::string server_key;
  std::string server_combined;  // key, then leaf, then CA (smtpd_tls_chain_files)
  std::string client_cert;
  std::string client_key;
  std::string client_fingerprint;  // "AA:BB:..." SHA-256, from openssl
  std::string client_pkey_fingerprint;  // SHA-256 of its DER public key, from openssl
  std::string other_cert;          // self-signed "other.test"
  std::string other_key;
};

inline bool RunOpenssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  testing::RunResult r = testing::Run(argv);
  if (r.exit_code != 0) {
    ADD_FAILURE() << "openssl " << args[0] << " failed: " << r.err;
    return false;
  }
  return true;
}

// Postfix's fingerprint of `cert` (PEM) computed by the openssl CLI: of the certificate,
// or with `public_key` of its DER SubjectPublicKeyInfo. "AA:BB:..." upper case; "" (and a
// test failure) when openssl fails.
inline std::string OpensslFingerprint(const std::string& cert, const std::string& digest,
                                      bool public_key) {
  const std::string command =
      public_key ? "/usr/bin/openssl x509 -noout -pubkey -in '" + cert +
                       "' | /usr/bin/openssl pkey -pubin -outform DER | /usr/bin/openssl dgst -" +
                       digest + " -c"
                 : "/usr/bin/openssl x509 -noout -fingerprint -" + digest + " -in '" + cert + "'";
  testing::RunResult r = testing::Run({"/bin/sh", "-c", command});
  const size_t eq = r.out.rfind('=');
  if (r.exit_code != 0 || eq == std::string::npos) {
    ADD_FAILURE() << command << " failed: " << r.err;
    return "";
  }
  std::string fingerprint;
  for (char ch : r.out.substr(eq + 1)) {
    if (ch != ' ' && ch != '\n' && ch != '\r') {
      fingerprint += static_cast<char>(ch >= 'a' && ch <= 'f' ? ch - 'a' + 'A' : ch);
    }
  }
  return fingerprint;
}

// Makes the certificates in dir. On failure the test has a failure recorded.
inline TestCerts MakeTestCerts(const testing::TempDir& dir) {
  TestCerts c;
  const std::string d = dir.path() + "/";
  c.ca = d + "ca.pem";
  const std::string ca_key = d + "ca.key";
  const std::string ext = dir.Write("server.ext",
                                    "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                    "extendedKeyUsage=serverAuth\n");
  const std::string client_ext = dir.Write("client.ext", "extendedKeyUsage=clientAuth\n");
  auto leaf = [&](const std::string& name, const std::string& cn, const std::string& extfile) {
    RunOpenssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                d + name + ".key", "-out", d + name + ".csr", "-subj", "/CN=" + cn});
    RunOpenssl({"x509", "-req", "-in", d + name + ".csr", "-CA", c.ca, "-CAkey", ca_key,
                "-CAcreateserial", "-out", d + name + ".leaf", "-days", "2", "-extfile", extfile});
  };
  RunOpenssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", ca_key, "-out", c.ca, "-days", "2", "-subj", "/CN=moat test CA"});
  leaf("server", "localhost", ext);
  leaf("client", "client.test", client_ext);
  c.server_key = d + "server.key";
  c.server_cert =
      dir.Write("server.pem", testing::ReadFile(d + "server.leaf") + testing::ReadFile(c.ca));
  c.server_combined =
      dir.Write("combined.pem", testing::ReadFile(c.server_key) + testing::ReadFile(c.server_cert));
  c.client_key = d + "client.key";
  c.client_cert = d + "client.leaf";
  c.other_key = d + "other.key";
  c.other_cert = d + "other.pem";
  RunOpenssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", c.other_key, "-out", c.other_cert, "-days", "2", "-subj",
              "/CN=other.test"});
  c.client_fingerprint = OpensslFingerprint(c.client_cert, "sha256", false);
  c.client_pkey_fingerprint = OpensslFingerprint(c.client_cert, "sha256", true);
  return c;
}

}  // namespace moat::tls_testing
