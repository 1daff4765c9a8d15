// Typed errors: every failure an app can meet on bad input is one of these, with a one-line message that says
// what to do. Apps catch edgehmr::Error (or a subclass) and never see a crash or silent garbage.
#pragma once

#include <stdexcept>
#include <string>

namespace edgehmr {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// metadata.json missing, corrupt, or missing a field this library needs.
class MetadataError : public Error {
 public:
  using Error::Error;
};

// metadata.json written by a newer edgehmr: its meaning may have changed, so refuse rather than guess.
class MetadataVersionError : public MetadataError {
 public:
  using MetadataError::MetadataError;
};

// A model file whose sha256 differs from the one metadata.json records (a mixed-up or truncated copy).
class HashMismatchError : public Error {
 public:
  using Error::Error;
};

// A person box that is empty, not finite, or entirely outside the image.
class BoxError : public Error {
 public:
  using Error::Error;
};

// An image file that cannot be read or decoded.
class ImageError : public Error {
 public:
  using Error::Error;
};

// A backend this build does not include, or that refuses the artifact.
class BackendError : public Error {
 public:
  using Error::Error;
};

}  // namespace edgehmr
