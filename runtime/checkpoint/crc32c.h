// CRC-32C (Castagnoli), the checksum of checkpoint chunks and framed files, and the masked form
// TFRecord files (TensorBoard event logs) store. Uses the SSE4.2 crc32 instruction when the CPU
// has it, a slicing-by-8 table otherwise; both give the same values.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mowe::checkpoint {

// CRC-32C as iSCSI and ext4 compute it (reflected polynomial 0x82F63B78, initial value and final
// xor 0xFFFFFFFF). Extendable: crc32c(b, nb, crc32c(a, na)) == crc32c of a followed by b.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

// The table-driven implementation, whatever the CPU; exposed so tests compare it with crc32c.
uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc = 0);

// TFRecord's masking, so that a CRC of data which itself holds CRCs stays well distributed.
inline uint32_t crc32c_mask(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}
inline uint32_t crc32c_unmask(uint32_t masked) {
  uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace mowe::checkpoint
