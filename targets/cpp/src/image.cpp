// libpng / libjpeg report errors by longjmp; each decoder below keeps only POD locals between setjmp and the
// library calls so the jump skips no destructor, and turns the failure into an ImageError afterwards.
#include "edgehmr/image.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include <jpeglib.h>
#include <png.h>

#include "edgehmr/errors.h"

namespace edgehmr {

namespace {

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

const char* decode_jpeg(const std::vector<uint8_t>& bytes, Image& img, JpegError& err) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_on_error;
  err.mgr.output_message = [](j_common_ptr) {};  // warnings (e.g. extraneous bytes) are not errors for cv2 either
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return err.message;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  // cv2 asks libjpeg for RGB output (grey and YCbCr converted by libjpeg, default ISLOW IDCT and fancy upsampling);
  // CMYK JPEGs are converted differently by cv2 and are refused here rather than decoded to different pixels.
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    std::snprintf(err.message, sizeof err.message, "CMYK JPEGs are not supported");
    jpeg_destroy_decompress(&cinfo);
    return err.message;
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  img.width = int(cinfo.output_width);
  img.height = int(cinfo.output_height);
  img.rgb.assign(size_t(img.width) * img.height * 3, 0);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img.rgb.data() + size_t(cinfo.output_scanline) * img.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return nullptr;
}

}  // namespace

Image decode_image_rgb(const std::vector<uint8_t>& bytes, const std::string& what) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Image img;
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) {
    if (const char* msg = decode_png(bytes, img)) throw ImageError("cannot decode " + what + " as PNG: " + msg + ".");
  } else if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    JpegError err{};
    if (const char* msg = decode_jpeg(bytes, img, err))
      throw ImageError("cannot decode " + what + " as JPEG: " + msg + ".");
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
