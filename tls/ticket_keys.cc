// tls/ticket_keys.cc: see ticket_keys.h.
#include "tls/ticket_keys.h"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
// clang-format on

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "core/log/assert.h"

namespace moat::tls {
namespace {

static_assert(TicketKeys::kNameBytes == WOLFSSL_TICKET_NAME_SZ);
static_assert(TicketKeys::kKeyBytes == CHACHA20_POLY1305_AEAD_KEYSIZE);
static_assert(CHACHA20_POLY1305_AEAD_IV_SIZE <= WOLFSSL_TICKET_IV_SZ);
static_assert(CHACHA20_POLY1305_AEAD_AUTHTAG_SIZE <= WOLFSSL_TICKET_MAC_SZ);

// Fills `bytes` from the kernel's CSPRNG. getrandom() on a few dozen bytes does not block
// once the pool is initialised (it is, long before moat starts).
void FillRandom(unsigned char* bytes, size_t size) {
  size_t done = 0;
  for (int attempt = 0; done < size && attempt < 100; ++attempt) {
    ssize_t n = getrandom(bytes + done, size - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else {
      MOAT_CHECK(n < 0 && errno == EINTR);
    }
  }
  MOAT_CHECK(done == size);
}

// Additional data: name || iv || length (4 bytes, big-endian).
constexpr size_t kAadBytes = WOLFSSL_TICKET_NAME_SZ + CHACHA20_POLY1305_AEAD_IV_SIZE + 4;
void MakeAad(const unsigned char* name, const unsigned char* iv, int length, unsigned char* aad) {
  std::memcpy(aad, name, WOLFSSL_TICKET_NAME_SZ);
  std::memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, CHACHA20_POLY1305_AEAD_IV_SIZE);
  const auto n = static_cast<uint32_t>(length);
  unsigned char* p = aad + WOLFSSL_TICKET_NAME_SZ + CHACHA20_POLY1305_AEAD_IV_SIZE;
  p[0] = static_cast<unsigned char>(n >> 24);
  p[1] = static_cast<unsigned char>(n >> 16);
  p[2] = static_cast<unsigned char>(n >> 8);
  p[3] = static_cast<unsigned char>(n);
}

int TicketCallback(WOLFSSL* ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
                   unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
                   int enc, unsigned char* ticket, int in_len, int* out_len, void* user) {
  (void)ssl;
  auto* keys = static_cast<TicketKeys*>(user);
  if (keys == nullptr || in_len < 0) {
    return WOLFSSL_TICKET_RET_REJECT;
  }
  return enc != 0 ? keys->Seal(key_name, iv, mac, ticket, in_len, out_len)
                  : keys->Open(key_name, iv, mac, ticket, in_len, out_len);
}

}  // namespace

TicketKeys::TicketKeys(absl::Duration rotate_after) : rotate_after_(rotate_after) {
  absl::MutexLock lock(&mu_);
  RotateLocked(absl::Now());
  has_previous_ = false;
}

std::shared_ptr<TicketKeys> TicketKeys::Process() {
  // Leaked on purpose: shards may still resume sessions while static destructors run.
  static auto* keys = new std::shared_ptr<TicketKeys>(std::make_shared<TicketKeys>());
  return *keys;
}

void TicketKeys::Install(void* wolfssl_ctx) {
  auto* ctx = static_cast<WOLFSSL_CTX*>(wolfssl_ctx);
  wolfSSL_CTX_set_TicketEncCb(ctx, TicketCallback);
  wolfSSL_CTX_set_TicketEncCtx(ctx, this);
}

void TicketKeys::Rotate() {
  absl::MutexLock lock(&mu_);
  RotateLocked(absl::Now());
}

std::array<unsigned char, TicketKeys::kNameBytes> TicketKeys::CurrentNameForTest() {
  absl::MutexLock lock(&mu_);
  return current_.name;
}

void TicketKeys::RotateLocked(absl::Time now) {
  previous_ = current_;
  has_previous_ = true;
  FillRandom(current_.name.data(), current_.name.size());
  FillRandom(current_.key.data(), current_.key.size());
  current_.created = now;
}

int TicketKeys::Seal(unsigned char* name, unsigned char* iv, unsigned char* mac,
                     unsigned char* ticket, int in_len, int* out_len) {
  Key key;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (now - current_.created >= rotate_after_) {
      RotateLocked(now);
    }
    key = current_;
  }
  std::memcpy(name, key.name.data(), key.name.size());
  std::memset(iv, 0, WOLFSSL_TICKET_IV_SZ);
  FillRandom(iv, CHACHA20_POLY1305_AEAD_IV_SIZE);
  std::memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
  unsigned char aad[kAadBytes];
  MakeAad(name, iv, in_len, aad);
  if (wc_ChaCha20Poly1305_Encrypt(key.key.data(), iv, aad, sizeof(aad), ticket,
                                  static_cast<word32>(in_len), ticket, mac) != 0) {
    return WOLFSSL_TICKET_RET_FATAL;
  }
  *out_len = in_len;
  return WOLFSSL_TICKET_RET_OK;
}

int TicketKeys::Open(const unsigned char* name, const unsigned char* iv, const unsigned char* mac,
                     unsigned char* ticket, int in_len, int* out_len) {
  Key key;
  bool old = false;
  {
    absl::MutexLock lock(&mu_);
    if (std::memcmp(name, current_.name.data(), kNameBytes) == 0) {
      key = current_;
    } else if (has_previous_ && std::memcmp(name, previous_.name.data(), kNameBytes) == 0) {
      key = previous_;
      old = true;
    } else {
      return WOLFSSL_TICKET_RET_REJECT;  // unknown or expired key: full handshake
    }
  }
  unsigned char aad[kAadBytes];
  MakeAad(name, iv, in_len, aad);
  if (wc_ChaCha20Poly1305_Decrypt(key.key.data(), iv, aad, sizeof(aad), ticket,
                                  static_cast<word32>(in_len), mac, ticket) != 0) {
    return WOLFSSL_TICKET_RET_REJECT;  // forged or corrupted: full handshake
  }
  *out_len = in_len;
  return old ? WOLFSSL_TICKET_RET_CREATE : WOLFSSL_TICKET_RET_OK;
}

}  // namespace moat::tls
