// libFuzzer target for the data readers, whose files come from users: the first byte picks the reader
// (0 CSV, 1 NPY, 2 IDX, taken modulo 3), the rest is the file. A crash, a sanitizer report or an allocation
// beyond libFuzzer's -rss_limit_mb is a bug; an error message is the right answer to bad bytes.
// Seeds: engine/data/fuzz_corpus/.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/data/csv.h"
#include "engine/data/idx.h"
#include "engine/data/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {
      (void)trainrr::parse_csv(bytes, "fuzz.csv", "y");
      // Also with the header's first name as the label, so that files without a "y" column parse through.
      const std::string first(bytes.substr(0, bytes.find_first_of(",\r\n")));
      (void)trainrr::parse_csv(bytes, "fuzz.csv", first);
      break;
    }
    case 1:
      (void)trainrr::parse_npy(bytes, "fuzz.npy");
      break;
    case 2:
      (void)trainrr::parse_idx(bytes, "fuzz.idx");
      break;
  }
  return 0;
}
