// libpng / libjpeg report errors by longjmp; each decoder below keeps only POD locals between setjmp and the
// library calls so the jump skips no destructor, and turns the failure into an ImageError afterwards.
#include "edgehmr/image.h"

#include <algorithm>
#include <climits>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "edgehmr/errors.h"

namespace edgehmr {

namespace {

// Returned by a decoder for an image over kMaxImagePixels, found from its header before any pixel is allocated;
// the size is left in img.width/height.
const char* const kTooLarge = "too large";

bool too_large(uint64_t width, uint64_t height) { return width * height > kMaxImagePixels; }

struct PngReader {
  const uint8_t* data;
  size_t size, pos;
};

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (r->pos + n > r->size) png_error(png, "truncated PNG data");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

thread_local char g_png_message[256];  // per thread: decoders may run in parallel
void png_on_error(png_structp png, png_const_charp msg) {
  std::snprintf(g_png_message, sizeof g_png_message, "%s", msg);
  png_longjmp(png, 1);
}
void png_on_warning(png_structp, png_const_charp) {}  // e.g. iCCP profile warnings: cv2 ignores them too

// Returns nullptr on success, else the libpng message. `rows` must already be sized by the caller after the
// header is read, so it is passed through a callback-free two-phase API: header first, then pixels.
const char* decode_png(const std::vector<uint8_t>& bytes, Image& img) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, png_on_error, png_on_warning);
  if (!png) return "out of memory";
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return "out of memory";
  }
  PngReader reader{bytes.data(), bytes.size(), 0};
  std::vector<png_bytep>* rows = new std::vector<png_bytep>();  // heap: no destructor skipped by longjmp
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    delete rows;
    return g_png_message;
  }
  png_set_read_fn(png, &reader, png_read_mem);
  png_read_info(png, info);
  if (too_large(png_get_image_width(png, info), png_get_image_height(png, info))) {
    img.width = int(std::min<png_uint_32>(png_get_image_width(png, info), INT32_MAX));
    img.height = int(std::min<png_uint_32>(png_get_image_height(png, info), INT32_MAX));
    png_destroy_read_struct(&png, &info, nullptr);
    delete rows;
    return kTooLarge;
  }
  // The transforms cv2's PNG decoder applies for IMREAD_COLOR: 8-bit (high byte), expand palette / low-bit grey /
  // tRNS, grey -> RGB, and the alpha channel stripped rather than composited. No gamma handling.
  png_set_strip_16(png);
  png_set_expand(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (png_get_rowbytes(png, info) != size_t(w) * 3) png_error(png, "unexpected PNG row layout after transforms");
  img.width = int(w);
  img.height = int(h);
  img.rgb.assign(size_t(w) * h * 3, 0);
  rows->resize(h);
  for (png_uint_32 y = 0; y < h; ++y) (*rows)[y] = img.rgb.data() + size_t(y) * w * 3;
  png_read_image(png, rows->data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  delete rows;
  return nullptr;
}

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// cv2 refuses a truncated JPEG (libjpeg's "premature end of data" warning) but decodes other corrupt scan data
// with warnings; the same here.
void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
}

// cv2's conversion of libjpeg's CMYK output (Adobe's inverted CMYK, as Photoshop writes it) to RGB:
// each of R, G, B is k - (255 - c) * k / 256 for its ink c, in integers.
uint8_t cmyk_channel(unsigned ink, unsigned k) { return uint8_t(k - (((255 - ink) * k) >> 8)); }

const char* decode_jpeg(const std::vector<uint8_t>& bytes, Image& img, JpegError& err) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_on_error;
  err.mgr.emit_message = jpeg_on_message;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return err.message;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (too_large(cinfo.image_width, cinfo.image_height)) {
    img.width = int(cinfo.image_width);
    img.height = int(cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    return kTooLarge;
  }
  // cv2 asks libjpeg for RGB output (grey and YCbCr converted by libjpeg, default ISLOW IDCT and fancy upsampling),
  // and for CMYK output from CMYK/YCCK files, which it converts itself (cmyk_channel).
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  img.width = int(cinfo.output_width);
  img.height = int(cinfo.output_height);
  img.rgb.assign(size_t(img.width) * img.height * 3, 0);
  // A CMYK row is read into libjpeg's own pool (freed with cinfo), so no destructor is skipped by a longjmp.
  JSAMPARRAY ink = cmyk ? (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                                     cinfo.output_width * 4, 1)
                        : nullptr;
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img.rgb.data() + size_t(cinfo.output_scanline) * img.width * 3;
    if (!cmyk) {
      jpeg_read_scanlines(&cinfo, &row, 1);
      continue;
    }
    jpeg_read_scanlines(&cinfo, ink, 1);
    for (int x = 0; x < img.width; ++x) {
      const JSAMPLE* p = ink[0] + 4 * x;
      for (int c = 0; c < 3; ++c) row[3 * x + c] = cmyk_channel(p[c], p[3]);
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return nullptr;
}

}  // namespace

Image decode_image_rgb(const std::vector<uint8_t>& bytes, const std::string& what) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Image img;
  auto refuse = [&](const char* msg, const char* format) {
    if (msg == kTooLarge)  // the same line as edgehmr.inputs
      throw ImageError(what + " is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                       " pixels, more than edgehmr reads (" + std::to_string(kMaxImagePixels / 1000000) +
                       " megapixels); downscale it first.");
    throw ImageError("cannot decode " + what + " as " + format + ": " + msg + ".");
  };
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) {
    if (const char* msg = decode_png(bytes, img)) refuse(msg, "PNG");
  } else if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    JpegError err{};
    if (const char* msg = decode_jpeg(bytes, img, err)) refuse(msg, "JPEG");
  } else {
    throw ImageError("cannot decode " + what + ": not a PNG or JPEG file.");
  }
  if (img.width <= 0 || img.height <= 0) throw ImageError("cannot decode " + what + ": empty image.");
  return img;
}

Image read_image_rgb(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError("cannot read image " + path.string() + ".");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return decode_image_rgb(bytes, path.string());
}

}  // namespace edgehmr
