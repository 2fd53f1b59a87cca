// Base64 (RFC 4648, standard alphabet, '=' padding): how an export carries the binary training
// state in its text __metadata__ (launch/convert/safetensors_io.h).
#pragma once

#include <string>

namespace mowe::convert {

std::string base64_encode(const std::string& in);

// False when `in` is not padded base64: a length not a multiple of 4, a character outside the
// alphabet, or '=' anywhere but in the last two places.
bool base64_decode(const std::string& in, std::string* out);

}  // namespace mowe::convert
