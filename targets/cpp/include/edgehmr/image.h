// Decoding image files into 8-bit RGB with the system's libpng / libjpeg, matching what the Python side gets from
// cv2.imdecode(IMREAD_COLOR) + BGR->RGB: alpha dropped (not composited), 16-bit channels reduced to their high
// byte, palette and grey expanded, no gamma or colour-profile conversion.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace edgehmr {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // HWC, row-major, 3 channels
};

// Throws ImageError for an unreadable, unknown or corrupt file.
Image read_image_rgb(const std::filesystem::path& path);
Image decode_image_rgb(const std::vector<uint8_t>& bytes, const std::string& what);

}  // namespace edgehmr
