// core/reactor/operation.h
//
// The unit of asynchronous work on a shard's io_uring. An Operation is owned by the code
// that submits it (a connection, an acceptor, the spool writer) and lives at least until
// its last completion arrives: the SQE's user_data is the Operation*, and the reactor
// calls Complete() once per CQE (several times for a multishot operation, the last one
// without IORING_CQE_F_MORE). Submitting allocates nothing.
//
// Owner: one shard thread; not thread-safe. Parses no untrusted input.
#pragma once

#include <cstdint>

namespace moat::reactor {

class Operation {
 public:
  // One completion: `res` is the CQE's result (negative errno on failure), `flags` its
  // IORING_CQE_F_* bits (F_MORE: more completions follow; F_BUFFER: a provided buffer
  // id sits in flags >> IORING_CQE_BUFFER_SHIFT). May submit new work, including
  // re-arming this operation. REQUIRES: the Operation stays alive while a completion is
  // still due; the reactor never touches it after the last one.
  virtual void Complete(int32_t res, uint32_t flags) = 0;

 protected:
  Operation() = default;
  ~Operation() = default;
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;
};

}  // namespace moat::reactor
