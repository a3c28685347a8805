// CRC-32C (Castagnoli), the checksum of TFRecord files (TensorBoard event files), and the
// "masked" form those files store. Table-driven, byte at a time: event files are small and
// written a few times a minute, so speed does not matter and no dependency is worth it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vdm {

// crc32c("123456789") == 0xE3069283. `crc` continues a checksum over data split in pieces.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

// TFRecord stores masked CRCs: a CRC of data that itself holds CRCs is then not degenerate.
inline uint32_t mask_crc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

}  // namespace vdm
