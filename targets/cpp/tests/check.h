// Minimal test helpers (no test framework is needed for these few pure-function tests).
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

inline int g_failures = 0;

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                         \
    }                                                                       \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                          \
  do {                                                                                                 \
    const double _a = (a), _b = (b);                                                                   \
    if (!(std::fabs(_a - _b) <= (tol))) {                                                              \
      std::fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g (tol %g)\n", __FILE__, __LINE__, #a, _a, _b, double(tol)); \
      ++g_failures;                                                                                    \
    }                                                                                                  \
  } while (0)

// The statement must throw exactly this type (or a subclass) and the message must contain `needle`.
#define CHECK_THROWS(stmt, type, needle)                                                            \
  do {                                                                                              \
    bool _thrown = false;                                                                           \
    try {                                                                                           \
      stmt;                                                                                         \
    } catch (const type& _e) {                                                                      \
      _thrown = true;                                                                               \
      if (std::string(_e.what()).find(needle) == std::string::npos) {                               \
        std::fprintf(stderr, "%s:%d: message '%s' lacks '%s'\n", __FILE__, __LINE__, _e.what(), needle); \
        ++g_failures;                                                                               \
      }                                                                                             \
    } catch (const std::exception& _e) {                                                            \
      std::fprintf(stderr, "%s:%d: %s threw the wrong type: %s\n", __FILE__, __LINE__, #stmt, _e.what()); \
      ++g_failures;                                                                                 \
      _thrown = true;                                                                               \
    }                                                                                               \
    if (!_thrown) {                                                                                 \
      std::fprintf(stderr, "%s:%d: %s did not throw %s\n", __FILE__, __LINE__, #stmt, #type);       \
      ++g_failures;                                                                                 \
    }                                                                                               \
  } while (0)

inline int test_result(const char* name) {
  if (g_failures) std::fprintf(stderr, "%s: %d failure(s)\n", name, g_failures);
  else std::printf("%s: ok\n", name);
  return g_failures ? 1 : 0;
}
