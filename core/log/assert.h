// core/log/assert.h
//
// Assertions for programmer errors (never for what a peer or a config file controls:
// those are values, see STYLE.md 8.3). MOAT_CHECK is always on; MOAT_DCHECK only in Debug
// and sanitizer builds (NDEBUG unset). A failure logs a "panic:" line with file:line and
// the condition, then aborts.
#pragma once

#include "core/log/log.h"

#define MOAT_CHECK(cond)                                                                   \
  do {                                                                                     \
    if (__builtin_expect(!(cond), 0)) {                                                    \
      ::moat::log::Write(::moat::log::Level::kPanic,                                       \
                         absl::StrFormat("%s:%d: check failed: %s", __FILE__, __LINE__, #cond)); \
      __builtin_trap();                                                                    \
    }                                                                                      \
  } while (0)

#ifdef NDEBUG
#define MOAT_DCHECK(cond) \
  do {                    \
  } while (0)
#else
#define MOAT_DCHECK(cond) MOAT_CHECK(cond)
#endif

#define MOAT_UNREACHABLE()                                                                 \
  do {                                                                                     \
    ::moat::log::Write(::moat::log::Level::kPanic,                                         \
                       absl::StrFormat("%s:%d: unreachable", __FILE__, __LINE__));         \
    __builtin_trap();                                                                      \
  } while (0)
