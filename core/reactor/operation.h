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

// The usual Operation: one member of its owner per kind of work (recv, send, close...), each
// handing its completions to one member function of the owner with its kind:
//   void OnComplete(OpKind kind, int32_t res, uint32_t flags);
//   MemberOperation<Connection, OpKind, &Connection::OnComplete> recv_op_{this, OpKind::kRecv};
template <typename Owner, typename Kind, void (Owner::*Handler)(Kind, int32_t, uint32_t)>
class MemberOperation final : public Operation {
 public:
  MemberOperation(Owner* owner, Kind kind) : owner_(owner), kind_(kind) {}
  void Complete(int32_t res, uint32_t flags) override { (owner_->*Handler)(kind_, res, flags); }

 private:
  Owner* const owner_;
  const Kind kind_;
};

}  // namespace moat::reactor
