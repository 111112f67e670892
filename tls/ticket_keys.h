// tls/ticket_keys.h
//
// TicketKeys: the session-ticket encryption keys shared by every shard's TLS contexts, so a
// ticket issued on one shard (or by one configuration generation) resumes on any other.
// Installed on a WOLFSSL_CTX through wolfSSL_CTX_set_TicketEncCb (see Install). Tickets are
// sealed with ChaCha20-Poly1305 (no AES-NI in Debian's wolfSSL: ChaCha is the faster AEAD
// there); the additional data binds the key name, the IV and the length.
//
// Rotation: a new key every `rotate_after`; the previous key still decrypts (the client gets
// a fresh ticket under the new key: WOLFSSL_TICKET_RET_CREATE) until it is two rotations
// old. An unknown key name is rejected (full handshake), never fatal.
//
// Owner: the "tls" engineer. Thread-safe: one object is used by every shard at once (an
// absl::Mutex held for a key copy per ticket, i.e. once per handshake). Parses untrusted
// input: yes (the ticket a client presents; authenticated before anything is used).
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace moat::tls {

class TicketKeys {
 public:
  static constexpr size_t kNameBytes = 16;
  static constexpr size_t kKeyBytes = 32;
  struct Key {
    std::array<unsigned char, kNameBytes> name{};
    std::array<unsigned char, kKeyBytes> key{};
    absl::Time created;
  };

  explicit TicketKeys(absl::Duration rotate_after = absl::Hours(1));

  // The process-wide instance (one moat process = one server identity): survives
  // configuration reloads, so tickets issued before a reload still resume after it.
  static std::shared_ptr<TicketKeys> Process();

  // Installs the ticket callback on a WOLFSSL_CTX (void* to keep wolfSSL out of this
  // header). REQUIRES: this object outlives the context.
  void Install(void* wolfssl_ctx);

  // Forces a rotation now (tests; an operator command could call it).
  void Rotate();
  // Key name currently used to seal tickets.
  std::array<unsigned char, kNameBytes> CurrentNameForTest();

  // The wolfSSL callback body (public for the C trampoline).
  int Seal(unsigned char* name, unsigned char* iv, unsigned char* mac, unsigned char* ticket,
           int in_len, int* out_len);
  int Open(const unsigned char* name, const unsigned char* iv, const unsigned char* mac,
           unsigned char* ticket, int in_len, int* out_len);

 private:
  void RotateLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration rotate_after_;
  absl::Mutex mu_;
  Key current_ ABSL_GUARDED_BY(mu_);
  Key previous_ ABSL_GUARDED_BY(mu_);
  bool has_previous_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace moat::tls
