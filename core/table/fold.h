// core/table/fold.h
//
// Case folding of table keys, shared by the compiler (keys are folded once, when compiled)
// and the lookups (each query is folded into a stack buffer). Pure functions, any thread;
// the input may be untrusted bytes of any value.
//
// Postfix folds keys of fixed-string tables to lower case. moat folds ASCII A-Z and the
// two-byte UTF-8 capitals of Latin-1 (U+00C0..U+00DE except U+00D7, e.g. "É" -> "é");
// every other byte is kept as it is, so 8-bit keys that are not UTF-8 still round-trip.
// Folding never changes the length of a string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace moat::table {

inline void FoldCase(char* s, size_t n) {
  // Pass 1, ASCII, branch-free (vectorizes). Pass 2, the rare UTF-8 Latin-1 capitals:
  // 0xC3 is only ever a lead byte, so scanning for it cannot misread a continuation byte.
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<uint8_t>(s[i]);
    s[i] = static_cast<char>(c + (static_cast<uint8_t>(c - 'A') < 26 ? 'a' - 'A' : 0));
  }
  for (char* p = static_cast<char*>(memchr(s, 0xc3, n)); p != nullptr && p + 1 < s + n;
       p = static_cast<char*>(memchr(p + 1, 0xc3, static_cast<size_t>(s + n - p - 1)))) {
    auto d = static_cast<uint8_t>(p[1]);
    if (d >= 0x80 && d <= 0x9e && d != 0x97) {
      p[1] = static_cast<char>(d + 0x20);
    }
  }
}

// Copies `n` bytes of `in` to `out` folded. REQUIRES: out has room for n bytes.
inline void FoldCaseCopy(const char* in, size_t n, char* out) {
  memcpy(out, in, n);
  FoldCase(out, n);
}

}  // namespace moat::table
