// Decoding image files into 8-bit RGB with the system's libpng / libjpeg, matching what the Python side gets from
// cv2.imdecode(IMREAD_COLOR) + BGR->RGB: alpha dropped (not composited), 16-bit channels reduced to their high
// byte, palette and grey expanded, CMYK converted as cv2 does, no gamma or colour-profile conversion.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace edgehmr {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // HWC, row-major, 3 channels
};

// The largest image read (edgehmr.inputs.MAX_IMAGE_PIXELS), checked from the file header before decoding.
constexpr uint64_t kMaxImagePixels = 100000000;

// Throws ImageError for an unreadable, unknown, corrupt, truncated or too large file. CMYK JPEGs are converted as
// cv2 converts them.
Image read_image_rgb(const std::filesystem::path& path);
Image decode_image_rgb(const std::vector<uint8_t>& bytes, const std::string& what);

}  // namespace edgehmr
