// core/table/map.cc: OpenMap() and the small map types (see map.h).
#include "core/table/map.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_format.h"
#include "core/log/log.h"
#include "core/table/cidr_map.h"
#include "core/table/compiled_map.h"
#include "core/table/table_builder.h"

namespace moat::table {
namespace {

// static:VALUE: every key maps to VALUE (Postfix dict_static).
class StaticMap final : public Map {
 public:
  StaticMap(std::string spec, std::string value) : Map(std::move(spec)), value_(std::move(value)) {}
  std::optional<std::string_view> Find(std::string_view /*key*/) const override { return value_; }
  uint64_t size() const override { return 1; }

 private:
  std::string value_;
};

absl::StatusOr<std::unique_ptr<Map>> OpenTextHash(const std::string& path, std::string spec) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    auto message = absl::StrFormat("open %s: %s", path, strerror(e));
    return e == ENOENT ? absl::NotFoundError(message) : absl::PermissionDeniedError(message);
  }
  CompileOptions options;
  absl::StatusOr<std::string> bytes = CompileToMemory(fd, path, options, nullptr);
  close(fd);
  if (!bytes.ok()) {
    return bytes.status();
  }
  absl::StatusOr<std::unique_ptr<CompiledMap>> map = CompiledMap::FromBytes(*bytes, spec);
  if (!map.ok()) {
    return map.status();
  }
  return std::unique_ptr<Map>(std::move(*map));
}

void WarnIfSourceNewer(const std::string& source, const std::string& compiled) {
  struct stat source_stat;
  struct stat compiled_stat;
  if (stat(source.c_str(), &source_stat) != 0 || stat(compiled.c_str(), &compiled_stat) != 0) {
    return;
  }
  auto newer = [](const struct timespec& a, const struct timespec& b) {
    return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec > b.tv_nsec;
  };
  if (newer(source_stat.st_mtim, compiled_stat.st_mtim)) {
    log::Warning("database %s is older than source file %s", compiled, source);
  }
}

}  // namespace

bool SplitSpec(std::string_view spec, std::string_view* type, std::string_view* name) {
  while (spec.substr(0, 6) == "proxy:") {
    spec.remove_prefix(6);
  }
  size_t colon = spec.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return false;
  }
  *type = spec.substr(0, colon);
  *name = spec.substr(colon + 1);
  return true;
}

bool IsCompiledType(std::string_view type) {
  return type == "hash" || type == "btree" || type == "cdb" || type == "lmdb" ||
         type == "dbm" || type == "sdbm";
}

absl::StatusOr<std::unique_ptr<Map>> OpenMap(std::string_view spec, const OpenOptions& options) {
  std::string_view type;
  std::string_view name;
  if (!SplitSpec(spec, &type, &name)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: lookup table must be written TYPE:NAME", spec));
  }
  std::string canonical = absl::StrFormat("%s:%s", type, name);
  if (type == "static") {
    return std::unique_ptr<Map>(new StaticMap(canonical, std::string(name)));
  }
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: missing file name", spec));
  }
  std::string path(name);
  if (IsCompiledType(type)) {
    std::string compiled = path + ".moat";
    absl::StatusOr<std::unique_ptr<CompiledMap>> map =
        CompiledMap::Open(compiled, canonical, options);
    if (!map.ok()) {
      return map.status();
    }
    if (options.warn_if_source_newer) {
      WarnIfSourceNewer(path, compiled);
    }
    return std::unique_ptr<Map>(std::move(*map));
  }
  if (type == "texthash") {
    return OpenTextHash(path, canonical);
  }
  if (type == "cidr") {
    absl::StatusOr<std::unique_ptr<CidrMap>> map = CidrMap::Open(path, canonical);
    if (!map.ok()) {
      return map.status();
    }
    return std::unique_ptr<Map>(std::move(*map));
  }
  return absl::UnimplementedError(
      absl::StrFormat("%s: unsupported dictionary type: %s", spec, type));
}

}  // namespace moat::table
