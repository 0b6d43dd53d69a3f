// Request buffers for `nbd copy`, handed out most recently used first.
//
// They come in 2 MiB-aligned slabs marked MADV_HUGEPAGE: a copy keeps
// lanes x requests buffers busy (64 MiB by default), and every byte passes
// through them twice (file read in, socket send out), so 4 KiB pages cost
// a page fault per 4 KiB the first time and TLB misses on every pass.
// Slabs are allocated as needed, so a small copy stays small.
#ifndef NBD_TOOLS_NBD_BUFFER_POOL_H_
#define NBD_TOOLS_NBD_BUFFER_POOL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace nbd::tool {

class BufferPool {
 public:
  explicit BufferPool(size_t buffer_size);
  // A buffer of buffer_size bytes (contents undefined).
  uint8_t* Get();
  void Release(uint8_t* buffer) { free_.push_back(buffer); }

 private:
  struct Unmap {
    size_t length;
    void operator()(uint8_t* p) const;
  };
  void AddSlab();

  size_t buffer_size_;
  size_t slab_size_;
  std::vector<std::unique_ptr<uint8_t, Unmap>> slabs_;
  std::vector<uint8_t*> free_;
};

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_BUFFER_POOL_H_
