#include "traces/trace_reader.h"

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "testdata/trace_v2.capnp.h"
#include "trace.capnp.h"
#include "traces/trace_test_util.h"
#include "traces/trace_writer.h"

namespace trainrr::trace {
namespace {

using namespace testing_util;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("trainrr_" + std::to_string(::getpid()) + "_r_" + name)).string();
}

struct ReadAll {
  std::vector<TraceRecord> records;
  std::optional<Error> error;
  bool clean = false;
};

ReadAll read_all(TraceReader& reader, size_t max_records = 100000) {
  ReadAll out;
  for (size_t i = 0; i < max_records; ++i) {
    auto rec = reader.next();
    if (!rec) {
      out.error = rec.error();
      return out;
    }
    if (!*rec) {
      out.clean = true;
      return out;
    }
    out.records.push_back(std::move(**rec));
  }
  return out;
}

// The bytes of a header-only trace written by the real writer.
std::vector<uint8_t> written_header_bytes(const TraceHeader& h = sample_header()) {
  std::string path = temp_path("header.trr");
  { auto w = TraceWriter::create(path, h); }
  auto bytes = read_file(path);
  std::remove(path.c_str());
  return bytes;
}

std::vector<uint8_t> packed(capnp::MessageBuilder& message);

// The written header with formatVersion 2: the messages made by hand below do not chain digests
// (Message.previous), as a trace of format 2 does not.
std::vector<uint8_t> header_bytes(const TraceHeader& h = sample_header()) {
  const std::vector<uint8_t> written = written_header_bytes(h);
  kj::ArrayInputStream in(kj::arrayPtr(written.data(), written.size()));
  capnp::PackedMessageReader reader(in);
  capnp::MallocMessageBuilder message;
  message.setRoot(reader.getRoot<schema::Message>());
  message.getRoot<schema::Message>().getHeader().setFormatVersion(2);
  return packed(message);
}

// A message's words, unpacked (to patch them by hand before packing).
std::vector<uint8_t> flat(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

// Unpacked message bytes as the writer stores them: the segment table and the rest packed as two pieces.
std::vector<uint8_t> packed(const std::vector<uint8_t>& unpacked) {
  uint32_t count;
  std::memcpy(&count, unpacked.data(), 4);
  const size_t table = std::min(unpacked.size(), (size_t{std::min(count, 1024u)} + 2) / 2 * 8);
  kj::VectorOutputStream out;
  {
    capnp::_::PackedOutputStream packer(out);
    packer.write(unpacked.data(), table);
    if (unpacked.size() > table) packer.write(unpacked.data() + table, unpacked.size() - table);
  }
  auto bytes = out.getArray();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

std::vector<uint8_t> packed(capnp::MessageBuilder& message) { return packed(flat(message)); }

std::vector<uint8_t> concat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void put_u32(std::vector<uint8_t>& b, uint32_t v) {
  uint8_t raw[4];
  std::memcpy(raw, &v, 4);
  b.insert(b.end(), raw, raw + 4);
}

Result<std::optional<TraceRecord>> first_message_after_header(const std::vector<uint8_t>& bytes,
                                                             const ReaderLimits& limits = {}) {
  auto r = TraceReader::open_memory(bytes, "hand-made", limits);
  if (!r) return r.error();
  return (*r)->next();
}

TEST(TraceHostile, TruncationAtEveryByteGivesAPartialReadOrAClearError) {
  std::string path = temp_path("full.trr");
  SampleTrace sample = write_sample_trace(path, 4);
  std::vector<uint8_t> bytes = read_file(path);
  ASSERT_EQ(bytes.size(), sample.message_ends.back());
  std::string cut_path = temp_path("cut.trr");
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(len));
    // In memory for every cut; through the file reader too, every 7th cut (and around every message end).
    bool via_file = len % 7 == 0 || std::find(sample.message_ends.begin(), sample.message_ends.end(), len) !=
                                        sample.message_ends.end();
    for (int pass = 0; pass < (via_file ? 2 : 1); ++pass) {
      Result<std::unique_ptr<TraceReader>> r = Error{};
      if (pass == 0) {
        r = TraceReader::open_memory(prefix, "cut");
      } else {
        write_file(cut_path, prefix);
        r = TraceReader::open(cut_path);
      }
      if (len < sample.message_ends[0]) {
        ASSERT_FALSE(r) << "a cut header must not open, at " << len;
        EXPECT_FALSE(r.error().message.empty());
        continue;
      }
      ASSERT_TRUE(r) << len << ": " << r.error().message;
      ReadAll all = read_all(**r);
      size_t complete = 0;
      for (size_t i = 1; i < sample.message_ends.size(); ++i) complete += sample.message_ends[i] <= len;
      EXPECT_EQ(all.records.size(), complete) << "cut at " << len;
      bool at_boundary =
          std::find(sample.message_ends.begin(), sample.message_ends.end(), len) != sample.message_ends.end();
      EXPECT_FALSE((*r)->ended_cleanly());
      if (at_boundary) {
        EXPECT_TRUE(all.clean) << len << ": " << (all.error ? all.error->message : "");
        EXPECT_FALSE((*r)->stopped().has_value()) << "cut at " << len;
      } else {
        ASSERT_TRUE(all.error) << "cut at " << len;
        uint64_t last_end = *std::prev(std::upper_bound(sample.message_ends.begin(), sample.message_ends.end(), len));
        EXPECT_NE(all.error->message.find("byte " + std::to_string(last_end) + ": truncated"), std::string::npos)
            << all.error->message;
        // The same stop, in parts: a cut, where the cut message starts.
        ASSERT_TRUE((*r)->stopped().has_value());
        EXPECT_TRUE((*r)->stopped()->truncated) << "cut at " << len;
        EXPECT_EQ((*r)->stopped()->offset, last_end);
        EXPECT_EQ((*r)->stopped()->why.rfind("truncated: ", 0), 0u) << (*r)->stopped()->why;
        // The error is sticky.
        auto again = (*r)->next();
        ASSERT_FALSE(again);
        EXPECT_EQ(again.error().message, all.error->message);
      }
    }
  }
  std::remove(path.c_str());
  std::remove(cut_path.c_str());
}

// A crash or a power loss can leave a file whose size reached the disk before its last bytes did: zeros in
// their place. Such a trace, cut anywhere after its header, is read as cut, not as changed after it was
// written; a changed byte before such a tail is still damage.
TEST(TraceHostile, ACutFollowedByZeroBytesIsACutAndDamageBeforeThemIsStillDamage) {
  std::string path = temp_path("full.trr");
  SampleTrace sample = write_sample_trace(path, 4);
  const std::vector<uint8_t> bytes = read_file(path);
  for (size_t len = sample.message_ends[0] + 1; len < bytes.size(); ++len) {
    std::vector<uint8_t> file(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(len));
    file.resize(len + 4096, 0);
    auto r = TraceReader::open_memory(file, "zeros");
    ASSERT_TRUE(r) << len << ": " << r.error().message;
    ReadAll all = read_all(**r);
    // Cut inside a message, or where one ends (the zeros then begin with the next): never damage, never
    // whole.
    EXPECT_FALSE((*r)->ended_cleanly()) << "cut at " << len;
    if ((*r)->stopped())
      EXPECT_TRUE((*r)->stopped()->truncated) << "cut at " << len << ": " << (*r)->stopped()->why;
    if ((*r)->stopped())
      EXPECT_NE((*r)->stopped()->why.find(" zero bytes, from byte "), std::string::npos)
          << "cut at " << len << ": " << (*r)->stopped()->why;
    size_t complete = 0;
    for (size_t i = 1; i < sample.message_ends.size(); ++i) complete += sample.message_ends[i] <= len;
    EXPECT_GE(all.records.size() + 1, complete) << "cut at " << len;
    EXPECT_LE(all.records.size(), complete) << "cut at " << len;
  }
  std::vector<uint8_t> damaged = bytes;
  damaged[sample.message_ends[1] + 20] ^= 0x04;
  damaged.resize(damaged.size() + 4096, 0);
  auto r = TraceReader::open_memory(damaged, "damaged");
  ASSERT_TRUE(r) << r.error().message;
  read_all(**r);
  ASSERT_TRUE((*r)->stopped().has_value());
  EXPECT_FALSE((*r)->stopped()->truncated) << (*r)->stopped()->why;
  std::remove(path.c_str());
}

// A file made sparse past a cut (truncate -s): its hole reads as zeros and is found without reading it, with
// zeros written before the hole and in data after a hole counted right.
TEST(TraceHostile, ASparseTailIsReadAsZerosWhereverItsDataEnds) {
  const std::string path = temp_path("full.trr"), sparse = temp_path("sparse.trr");
  SampleTrace sample = write_sample_trace(path, 4);
  const std::vector<uint8_t> bytes = read_file(path);
  const size_t cut = sample.message_ends[1] + 7;  // inside step 1's message
  const uint64_t hole = uint64_t{1} << 30;
  for (size_t written_zeros : {size_t{0}, size_t{5000}}) {
    {
      std::ofstream out(sparse, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(cut));
      const std::vector<char> zeros(written_zeros, 0);
      out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    }
    std::filesystem::resize_file(sparse, cut + written_zeros + hole);
    auto r = TraceReader::open(sparse);
    ASSERT_TRUE(r) << r.error().message;
    read_all(**r);
    ASSERT_TRUE((*r)->stopped().has_value());
    EXPECT_TRUE((*r)->stopped()->truncated) << (*r)->stopped()->why;
    EXPECT_NE((*r)->stopped()->why.find("the file ends in " + std::to_string(written_zeros + hole) +
                                        " zero bytes, from byte " + std::to_string(cut)),
              std::string::npos)
        << (*r)->stopped()->why;
  }
  std::remove(path.c_str());
  std::remove(sparse.c_str());
}

// A trace cut before its magic is whole (a recording killed as it began, a file cut to a few bytes) is a cut
// trace, as one cut later in its header is; a short file of other bytes is no trace.
TEST(TraceHostile, AFileHoldingTheFirstBytesOfAHeaderIsATraceCutInsideItsHeader) {
  const std::string path = temp_path("full.trr"), cut_path = temp_path("cut.trr");
  write_sample_trace(path, 1);
  const std::vector<uint8_t> bytes = read_file(path);
  for (size_t len = 1; len < 64; ++len) {
    write_file(cut_path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(len)));
    auto r = TraceReader::open(cut_path);
    ASSERT_FALSE(r) << len;
    EXPECT_NE(r.error().message.find(cut_path + ": truncated inside its header: "), std::string::npos)
        << len << ": " << r.error().message;
    EXPECT_EQ(r.error().message.find("not a trainrr trace"), std::string::npos)
        << len << ": " << r.error().message;
  }
  for (const std::string other : {"a,b,label\n1,2", "hello", "0 1 2 3 4 5", "\x30\x20\x01\x50\x07\x01"}) {
    write_file(cut_path, std::vector<uint8_t>(other.begin(), other.end()));
    auto r = TraceReader::open(cut_path);
    ASSERT_FALSE(r) << other;
    EXPECT_NE(r.error().message.find("not a trainrr trace"), std::string::npos)
        << other << ": " << r.error().message;
  }
  std::remove(path.c_str());
  std::remove(cut_path.c_str());
}

TEST(TraceHostile, RandomBitFlipsNeverCrash) {
  std::string path = temp_path("flips.trr");
  write_sample_trace(path, 4);
  const std::vector<uint8_t> bytes = read_file(path);
  std::mt19937_64 rng(20261130);
  ReaderLimits limits;
  limits.max_tensor_bytes = 1 << 20;
  limits.max_checkpoint_bytes = 4 << 20;
  int opened = 0, errors = 0, clean = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> damaged = bytes;
    int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      size_t bit = rng() % (damaged.size() * 8);
      damaged[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    }
    auto r = TraceReader::open_memory(damaged, "flipped", limits);
    if (!r) {
      EXPECT_FALSE(r.error().message.empty());
      continue;
    }
    ++opened;
    ReadAll all = read_all(**r, 1000);
    if (all.error) {
      ++errors;
      EXPECT_NE(all.error->message.find("flipped: byte "), std::string::npos) << all.error->message;
      ASSERT_TRUE((*r)->stopped().has_value());
      const ReadStop& stop = *(*r)->stopped();
      EXPECT_EQ("flipped: byte " + std::to_string(stop.offset) + ": " + stop.why, all.error->message);
    } else {
      ++clean;
    }
    (void)(*r)->checkpoint_index();
  }
  std::printf("bit flips: %d opened, %d stopped with an error, %d read cleanly\n", opened, errors, clean);
  EXPECT_GT(errors, 0);
  std::remove(path.c_str());
}

// A reader decompresses checkpoint tensors in proportion to the file: a gigabyte of zeros packs into a few
// kilobytes, and a small crafted file would otherwise be decompressed gigabyte after gigabyte.
TEST(TraceHostile, CheckpointTensorsDecompressInProportionToTheFile) {
  const std::string path = temp_path("inflate.trr");
  write_sample_trace(path, 4);
  const uint64_t size = read_file(path).size();
  auto read_with = [&](uint64_t free, uint64_t per_byte) {
    ReaderLimits limits;
    limits.inflate_free = free;
    limits.inflate_per_file_byte = per_byte;
    auto r = TraceReader::open(path, limits);
    EXPECT_TRUE(r) << r.error().message;
    ReadAll all = read_all(**r, 1000);
    return all.error ? all.error->message : std::string();
  };
  EXPECT_EQ(read_with(uint64_t{1} << 30, 1024), "");
  // The checkpoint after step 2 holds 24 + 3 floats: 108 bytes past a budget of 100 is refused before they
  // are decompressed, naming the budget.
  const std::string refused = read_with(100, 0);
  EXPECT_NE(refused.find(
                "checkpoint tensor 'dense_1.bias': the checkpoints read would decompress to more than 100 "
                "bytes (0 times the file's " +
                std::to_string(size) + " bytes, past the first 100): no recording's tensors compress so far"),
            std::string::npos)
      << refused;
  std::remove(path.c_str());
}

TEST(TraceHostile, HugeSegmentCountIsRefusedBeforeAllocating) {
  std::vector<uint8_t> msg;
  put_u32(msg, 0xfffffffeu);  // 2^32 - 1 segments
  put_u32(msg, 1);
  msg.resize(64, 0);
  auto rec = first_message_after_header(concat(header_bytes(), packed(msg)));
  ASSERT_FALSE(rec);
  EXPECT_NE(rec.error().message.find("declares 4294967295 segments (limit 512)"), std::string::npos)
      << rec.error().message;
  // As the first message of a file it is simply not a trace.
  auto r = TraceReader::open_memory(packed(msg), "garbage");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a trainrr trace"), std::string::npos) << r.error().message;
}

TEST(TraceHostile, HugeSegmentSizeIsRefusedBeforeAllocating) {
  std::vector<uint8_t> msg;
  put_u32(msg, 0);            // one segment
  put_u32(msg, 0xffffffffu);  // of 2^32 - 1 words: 32 GiB
  msg.resize(64, 0);
  auto rec = first_message_after_header(concat(header_bytes(), packed(msg)));
  ASSERT_FALSE(rec);
  EXPECT_NE(rec.error().message.find("bytes (limit"), std::string::npos) << rec.error().message;
  // Under a limit that allows it, the file is too short for it: a truncation, still nothing allocated.
  ReaderLimits generous;
  generous.max_message_bytes = uint64_t{64} << 30;
  auto rec2 = first_message_after_header(concat(header_bytes(), packed(msg)), generous);
  ASSERT_FALSE(rec2);
  EXPECT_NE(rec2.error().message.find("truncated"), std::string::npos) << rec2.error().message;
}

// A step whose params list pointer claims 2^29 - 1 eight-byte elements inside a message of a few words.
TEST(TraceHostile, ListClaimingBillionsOfElementsIsAClearError) {
  capnp::MallocMessageBuilder message;
  auto step = message.initRoot<v2::Message>().initStep();
  step.setEnded(true);
  step.initParams(1).set(0, 0x5555555555555555ULL);
  std::vector<uint8_t> bytes = flat(message);
  bool patched = false;
  for (size_t at = 8; at + 8 <= bytes.size(); at += 8) {
    uint64_t w;
    std::memcpy(&w, &bytes[at], 8);
    if ((w & 3) == 1 && ((w >> 32) & 7) == 5 && (w >> 35) == 1) {  // list pointer, 8-byte elements, count 1
      w = (w & ((uint64_t{1} << 35) - 1)) | (uint64_t{(1u << 29) - 1} << 35);
      std::memcpy(&bytes[at], &w, 8);
      patched = true;
    }
  }
  ASSERT_TRUE(patched);
  auto rec = first_message_after_header(concat(header_bytes(), packed(bytes)));
  ASSERT_FALSE(rec);
  EXPECT_NE(rec.error().message.find("hand-made: byte "), std::string::npos) << rec.error().message;
  EXPECT_NE(rec.error().message.find("malformed message"), std::string::npos) << rec.error().message;
}

// Zero-sized elements take no bytes, so only the traversal limit stands between such a list and a huge loop.
TEST(TraceHostile, ZeroSizedElementsClaimingBillionsAreAClearError) {
  capnp::MallocMessageBuilder message;
  auto step = message.initRoot<v2::Message>().initStep();
  step.initEvents(1)[0].setBatchOrder(0x1234);
  std::vector<uint8_t> bytes = flat(message);
  bool patched = false;
  for (size_t at = 8; at + 16 <= bytes.size(); at += 8) {
    uint64_t w, tag;
    std::memcpy(&w, &bytes[at], 8);
    if ((w & 3) == 1 && ((w >> 32) & 7) == 7) {  // the composite list of events
      int32_t offset = static_cast<int32_t>(w & 0xffffffffu) >> 2;
      size_t tag_at = at + 8 + static_cast<size_t>(offset) * 8;
      std::memcpy(&tag, &bytes[tag_at], 8);
      tag = uint64_t{(1u << 29) - 1} << 2;  // 2^29 - 1 elements, no data, no pointers
      std::memcpy(&bytes[tag_at], &tag, 8);
      w &= 0xffffffffu | (uint64_t{7} << 32);  // zero words of content
      std::memcpy(&bytes[at], &w, 8);
      patched = true;
      break;
    }
  }
  ASSERT_TRUE(patched);
  auto rec = first_message_after_header(concat(header_bytes(), packed(bytes)));
  ASSERT_FALSE(rec);
  EXPECT_NE(rec.error().message.find("malformed message"), std::string::npos) << rec.error().message;
}

// rawBytes 4 and a shape whose product wraps around to 1 in 64 bits: the reader must not trust the wrap.
TEST(TraceHostile, ShapeWhoseProductOverflowsIsRefused) {
  capnp::MallocMessageBuilder message;
  auto c = message.initRoot<schema::Message>().initCheckpoint();
  c.initNames();
  auto t = c.initTensors(1)[0];
  t.setName("wrap");
  auto shape = t.initShape(2);
  shape.set(0, int64_t{1} << 62);
  shape.set(1, 4);  // (2^62 * 4) mod 2^64 = 0 ... and times 4 bytes: 0
  t.setRawBytes(0);
  auto bytes = concat(header_bytes(), packed(message));
  auto rec = first_message_after_header(bytes);
  ASSERT_FALSE(rec);
  EXPECT_NE(rec.error().message.find("shape product times 4 must equal rawBytes"), std::string::npos)
      << rec.error().message;

  shape.set(0, (int64_t{1} << 62) + 1);  // (2^62 + 1) * 4 bytes mod 2^64 = 4
  shape.set(1, 1);
  t.setRawBytes(4);
  float one = 1.0f;
  std::vector<uint8_t> frame(ZSTD_compressBound(4));
  frame.resize(ZSTD_compress(frame.data(), frame.size(), &one, 4, 1));
  t.initChunks(1).set(0, kj::arrayPtr(frame.data(), frame.size()));
  auto rec2 = first_message_after_header(concat(header_bytes(), packed(message)));
  ASSERT_FALSE(rec2);
  EXPECT_NE(rec2.error().message.find("shape product times 4 must equal rawBytes"), std::string::npos)
      << rec2.error().message;
}

TEST(TraceHostile, BadMagicIsNotATrace) {
  std::vector<uint8_t> bytes = header_bytes();
  uint64_t magic = kMagic;
  auto it = std::search(bytes.begin(), bytes.end(), reinterpret_cast<uint8_t*>(&magic),
                        reinterpret_cast<uint8_t*>(&magic) + 8);
  ASSERT_NE(it, bytes.end());
  *it ^= 1;
  auto r = TraceReader::open_memory(bytes, "magic");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("bad magic"), std::string::npos) << r.error().message;
}

// What record -o may replace: a file trainrr wrote as a trace, whatever became of it; never another file.
TEST(TraceStart, WholeCutDamagedAndUnpackedTracesStartLikeATraceAndOtherFilesDoNot) {
  const std::string path = temp_path("start.trr");
  auto starts = [&path](const std::vector<uint8_t>& bytes) {
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    Result<bool> r = starts_like_a_trace(path);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() && *r;
  };
  const std::vector<uint8_t> whole = written_header_bytes();
  EXPECT_TRUE(starts(whole));
  const std::vector<uint8_t> cut(whole.begin(), whole.begin() + 24);
  ASSERT_FALSE(TraceReader::open_memory(cut, "cut"));
  EXPECT_TRUE(starts(cut));
  std::vector<uint8_t> damaged = whole;
  damaged[damaged.size() - 3] ^= 0x10;
  EXPECT_TRUE(starts(damaged));
  capnp::MallocMessageBuilder message;
  auto h = message.initRoot<schema::Message>().initHeader();
  h.setMagic(kMagic);
  h.setFormatVersion(1);
  EXPECT_TRUE(starts(flat(message)));
  const std::string csv = "a,b,label\n1,2,0\n3,4,1\n";
  EXPECT_FALSE(starts(std::vector<uint8_t>(csv.begin(), csv.end())));
  EXPECT_FALSE(starts({}));
  std::remove(path.c_str());
  const Result<bool> missing = starts_like_a_trace(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find(path + ": cannot open: "), std::string::npos)
      << missing.error().message;
}

TEST(TraceHostile, BytesAfterTheFooterAreAnError) {
  std::string path = temp_path("after.trr");
  write_sample_trace(path, 2);
  std::vector<uint8_t> bytes = read_file(path);
  bytes.resize(bytes.size() + 16, 0);
  auto r = TraceReader::open_memory(bytes, "after");
  ASSERT_TRUE(r);
  ReadAll all = read_all(**r);
  ASSERT_TRUE(all.error);
  EXPECT_NE(all.error->message.find("16 bytes follow the footer"), std::string::npos) << all.error->message;
  // Damage, not a cut: the file goes on after the footer.
  ASSERT_TRUE((*r)->stopped().has_value());
  EXPECT_FALSE((*r)->stopped()->truncated);
  EXPECT_EQ((*r)->stopped()->offset, bytes.size() - 16);
  EXPECT_EQ((*r)->stopped()->why, "16 bytes follow the footer");
  std::remove(path.c_str());
}

TEST(TraceVersion, UnpackedTraceOfFormatOneIsRefusedWithItsFormat) {
  capnp::MallocMessageBuilder message;
  auto h = message.initRoot<schema::Message>().initHeader();
  h.setMagic(kMagic);
  h.setMinReaderVersion(1);
  h.setFormatVersion(1);
  auto r = TraceReader::open_memory(flat(message), "old.trr");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("old.trr: an unpacked trace of format 1"), std::string::npos)
      << r.error().message;
}

TEST(TraceVersion, TraceNeedingANewerReaderIsRefusedNamingBothVersions) {
  TraceHeader h = sample_header();
  h.min_reader_version = kReaderVersion + 1;
  auto r = TraceReader::open_memory(header_bytes(h), "future.trr");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("trace needs reader version " + std::to_string(kReaderVersion + 1) +
                                   ", this is version " + std::to_string(kReaderVersion)),
            std::string::npos)
      << r.error().message;
}

TEST(TraceEvolution, UnknownFieldsEventsAndMessagesAreSkipped) {
  TraceHeader h = sample_header();
  h.level = ProbeLevel::step;  // the steps below hold no probe
  std::vector<uint8_t> bytes = header_bytes(h);
  {
    capnp::MallocMessageBuilder message;
    auto step = message.initRoot<v2::Message>().initStep();
    step.setIndex(0);
    step.setBatch(3);
    step.setWallTimeUs(123456);
    step.setHost("gpu-node-7");
    auto events = step.initEvents(3);
    events[0].setBatchOrder(3);
    events[1].setGpuKernel("sm90_xmma_gemm");
    events[2].setBatchOrder(4);
    bytes = concat(bytes, packed(message));
  }
  {
    capnp::MallocMessageBuilder message;
    message.initRoot<v2::Message>().setAnnotation("a later kind of message");
    bytes = concat(bytes, packed(message));
  }
  {
    capnp::MallocMessageBuilder message;
    auto step = message.initRoot<v2::Message>().initStep();
    step.setIndex(1);
    step.setEnded(true);
    step.setLoss(0.5);
    bytes = concat(bytes, packed(message));
  }
  auto r = TraceReader::open_memory(bytes, "v2.trr");
  ASSERT_TRUE(r) << r.error().message;
  ReadAll all = read_all(**r);
  ASSERT_FALSE(all.error) << all.error->message;
  ASSERT_EQ(all.records.size(), 2u);
  const auto& s0 = std::get<TraceStep>(all.records[0].value);
  EXPECT_EQ(s0.batch, 3);
  ASSERT_EQ(s0.events.size(), 2u);
  EXPECT_EQ(std::get<BatchOrderEvent>(s0.events[1]).batch, 4);
  const auto& s1 = std::get<TraceStep>(all.records[1].value);
  ASSERT_TRUE(s1.end);
  EXPECT_EQ(s1.end->loss, 0.5);
  ASSERT_EQ((*r)->notes().size(), 2u);
  EXPECT_NE((*r)->notes()[0].find("unknown kind 7"), std::string::npos) << (*r)->notes()[0];
  EXPECT_NE((*r)->notes()[1].find("message of unknown kind 5"), std::string::npos) << (*r)->notes()[1];
  EXPECT_FALSE((*r)->ended_cleanly());
}

// A header whose first data set is renamed to `name` (any bytes, NUL included), written by hand: the writer
// stores a name only up to its first NUL.
std::vector<uint8_t> header_with_dataset_name(std::string_view name) {
  TraceHeader h = sample_header();
  h.datasets.resize(1);
  h.datasets[0].name = "data";
  const std::vector<uint8_t> written = header_bytes(h);
  kj::ArrayInputStream in(kj::arrayPtr(written.data(), written.size()));
  capnp::PackedMessageReader reader(in);
  capnp::MallocMessageBuilder message;
  message.setRoot(reader.getRoot<schema::Message>());
  const std::string copy(name);  // NUL-terminated, as capnp::Text::Reader requires
  message.getRoot<schema::Message>().getHeader().getDatasets()[0].setName(
      capnp::Text::Reader(copy.c_str(), copy.size()));
  return packed(message);
}

TEST(TraceUntrusted, DatasetNamesOutsideTheKnownSetAreMalformedAtTheHeader) {
  for (const std::string& name : {std::string("data\0/../../x", 14), std::string("../../../../tmp/x"),
                                  std::string("/etc/profile.d/x.sh"), std::string("train"), std::string(""),
                                  std::string(100000, 'a')}) {
    auto r = TraceReader::open_memory(header_with_dataset_name(name), "bad.trr");
    ASSERT_FALSE(r) << name.substr(0, 20);
    const std::string& m = r.error().message;
    EXPECT_EQ(m.rfind("bad.trr: byte 0: data set name '", 0), 0u) << m.substr(0, 200);
    EXPECT_NE(m.find("is not one of 'data', 'features' or 'labels'"), std::string::npos) << m.substr(0, 200);
    EXPECT_LT(m.size(), 200u);
  }
  for (const char* name : {"data", "features", "labels"})
    EXPECT_TRUE(TraceReader::open_memory(header_with_dataset_name(name), "ok.trr")) << name;
}

TEST(TraceUntrusted, ADatasetNamedTwiceIsMalformed) {
  TraceHeader h = sample_header();
  h.datasets.resize(2);
  h.datasets[0].name = h.datasets[1].name = "labels";
  auto r = TraceReader::open_memory(header_bytes(h), "twice.trr");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("data set 'labels' appears twice"), std::string::npos) << r.error().message;
}

// Two values of one environment key: show would present the first, replay compare the last.
TEST(TraceUntrusted, AnEnvironmentKeyRecordedTwiceIsMalformedNamingTheKey) {
  TraceHeader h = sample_header();
  h.environment.push_back({"threads", "2"});
  h.environment.push_back({"threads", "9"});
  auto r = TraceReader::open_memory(header_bytes(h), "twice.trr");
  ASSERT_FALSE(r);
  EXPECT_EQ(
      r.error().message,
      "twice.trr: byte 0: the header's environment holds the key 'threads' twice ('2' and '9'): a recording "
      "writes each key once, so the header was changed after it was written (the file is damaged)");
  h.environment.pop_back();
  EXPECT_TRUE(TraceReader::open_memory(header_bytes(h), "once.trr"));
}

// A hand-made step 0 after `h`'s header with one kernel launch of `gemm` at dense_1/matmul.fwd, valid as made;
// `edit` breaks it.
std::vector<uint8_t> trace_with_kernels(const TraceHeader& h,
                                        const std::function<void(schema::StepKernels::Builder)>& edit = {}) {
  capnp::MallocMessageBuilder message;
  auto s = message.initRoot<schema::Message>().initStep();
  auto names = s.initNewNames();
  auto list = names.initNames(2);
  list.set(0, "dense_1/matmul.fwd");
  list.set(1, "gemm");
  const std::vector<KernelLaunch> launches = {{"dense_1/matmul.fwd", "gemm", 4, 1, 1, 128, 1, 1, 0, 0, 10}};
  auto k = s.initKernels();
  k.setCount(1);
  k.setDigest(kernel_sequence_digest(launches));
  auto l = k.initLaunches(1)[0];
  l.setSite(0);
  l.setName(1);
  l.setGridX(4), l.setGridY(1), l.setGridZ(1), l.setBlockX(128), l.setBlockY(1), l.setBlockZ(1);
  l.setDurationNs(10);
  if (edit) edit(k);
  return concat(header_bytes(h), packed(message));
}

// A name table grows message by message, each message within its own limits: past a million names (a run
// names each parameter, metric, site and kernel once) the step that defines them is malformed, before the
// reader holds them.
TEST(TraceUntrusted, ANameTableOfMoreThanAMillionNamesIsMalformed) {
  const TraceHeader h = sample_header();
  auto step_naming = [&](uint32_t count) {
    capnp::MallocMessageBuilder message;
    auto s = message.initRoot<schema::Message>().initStep();
    s.initNewNames().initNames(count);  // null texts: a packed file of a few kilobytes
    return concat(header_bytes(h), packed(message));
  };
  auto error_of = [](const std::vector<uint8_t>& bytes) {
    auto r = TraceReader::open_memory(bytes, "n.trr");
    if (!r) return r.error().message;
    auto step = (*r)->next();
    return step ? std::string() : step.error().message;
  };
  const std::vector<uint8_t> many = step_naming((1u << 20) + 1);
  EXPECT_LT(many.size(), 200'000u);
  EXPECT_NE(error_of(many).find("the name table would hold 1048577 names, more than 1048576"),
            std::string::npos)
      << error_of(many);
  EXPECT_EQ(error_of(step_naming(1000)), "");
}

// A text of the header (a path, a version, an environment value) of more than 64 KiB is malformed: show,
// replay and diff print each, and a crafted one of megabytes would flood the terminal and the report.
TEST(TraceUntrusted, AHeaderTextLongerThanARecordingWritesIsMalformed) {
  TraceHeader h = sample_header();
  h.environment.emplace_back("long", std::string(70'000, 'x'));
  auto r = TraceReader::open_memory(header_bytes(h), "long.trr");
  ASSERT_FALSE(r);
  EXPECT_NE(
      r.error().message.find("the header's environment value of long is 70000 bytes long, more than 65536"),
      std::string::npos)
      << r.error().message;
  h = sample_header();
  h.config_path = std::string(70'000, 'p');
  r = TraceReader::open_memory(header_bytes(h), "long.trr");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("the header's configPath is 70000 bytes long"), std::string::npos)
      << r.error().message;
  h = sample_header();
  h.environment.emplace_back("long", std::string(60'000, 'x'));
  EXPECT_TRUE(TraceReader::open_memory(header_bytes(h), "long.trr"));
}

// A step whose events copy a name out of the table: each event copies its site and stream, so a long name
// named by many small events would take memory the file does not hold. A name longer than any a run writes,
// one with a control byte, a list of more events than a step holds, and names copied past the message's
// budget are each malformed at their step, before the reader holds them.
TEST(TraceUntrusted, NamesAndEventsAStepCannotHoldAreMalformedBeforeTheyAreDecoded) {
  const TraceHeader h = sample_header();
  auto step = [&](const std::string& name, uint32_t events) {
    capnp::MallocMessageBuilder message;
    auto s = message.initRoot<schema::Message>().initStep();
    s.initNewNames().initNames(1).set(0, kj::StringPtr(name.c_str(), name.size()));
    auto list = s.initEvents(events);
    for (uint32_t i = 0; i < events; ++i) {
      auto d = list[i].initRngDraw();
      d.setSite(0), d.setStream(0), d.setKey(i + 1), d.setCount(1);
    }
    return concat(header_bytes(h), packed(message));
  };
  auto error_of = [](const std::vector<uint8_t>& bytes) {
    auto r = TraceReader::open_memory(bytes, "n.trr");
    if (!r) return r.error().message;
    auto next = (*r)->next();
    return next ? std::string() : next.error().message;
  };
  EXPECT_EQ(error_of(step("dense_1/dropout", 3)), "");
  EXPECT_NE(
      error_of(step(std::string(70'000, 'a'), 1)).find("name id 0 is 70000 bytes long, more than 65536"),
      std::string::npos);
  EXPECT_NE(error_of(step(std::string("a\0b", 3), 1)).find("name id 0 holds the control byte 0"),
            std::string::npos);
  EXPECT_NE(error_of(step("a\x1b[2J", 1)).find("name id 0 holds the control byte 27"), std::string::npos);
  // 600 events naming a 60 KiB name twice each: 72 MB of copies from a file of some 75 KB.
  const std::vector<uint8_t> copies = step(std::string(60'000, 'a'), 600);
  EXPECT_LT(copies.size(), 100'000u);
  EXPECT_NE(error_of(copies).find("the names this message's entries name come to more than 64 MiB"),
            std::string::npos)
      << error_of(copies);
  EXPECT_EQ(error_of(step(std::string(60'000, 'a'), 400)), "");
  // More events than a step holds, checked before any is decoded (the events are empty: a few bytes each).
  capnp::MallocMessageBuilder message;
  message.initRoot<schema::Message>().initStep().initEvents((1u << 18) + 1);
  EXPECT_NE(error_of(concat(header_bytes(h), packed(message)))
                .find("step 0's event list has 262145 entries, more than 262144"),
            std::string::npos);
}

TEST(TraceUntrusted, KernelRecordsThatBreakAMustAreMalformedAtTheirStep) {
  const TraceHeader h = sample_header();
  auto error_of = [](const std::vector<uint8_t>& bytes) {
    auto r = TraceReader::open_memory(bytes, "k.trr");
    if (!r) return r.error().message;
    auto step = (*r)->next();
    return step ? std::string() : step.error().message;
  };
  ASSERT_EQ(error_of(trace_with_kernels(h)), "");
  const std::vector<uint8_t> bytes = trace_with_kernels(h);  // the reader reads them in place: they must outlive it
  auto read = TraceReader::open_memory(bytes, "k.trr");
  auto step = (*read)->next();
  ASSERT_TRUE(step && *step);
  const auto& kernels = std::get<TraceStep>((*step)->value).kernels;
  ASSERT_TRUE(kernels);
  EXPECT_EQ(kernels->launches, (std::vector<KernelLaunch>{{"dense_1/matmul.fwd", "gemm", 4, 1, 1, 128, 1, 1, 0, 0, 10}}));

  const std::string at = "k.trr: byte " + std::to_string(header_bytes(h).size()) + ": ";
  TraceHeader cpu = h;
  cpu.kernels_recorded = false;
  EXPECT_EQ(error_of(trace_with_kernels(cpu)),
            "k.trr: byte " + std::to_string(header_bytes(cpu).size()) + ": step 0 has kernel records, but the header says GPU kernels were not recorded");
  EXPECT_EQ(error_of(trace_with_kernels(h, [](auto k) { k.setCount(2); })),
            at + "kernel records: 1 launches listed for a count of 2");
  EXPECT_EQ(error_of(trace_with_kernels(h, [](auto k) { k.setDigest(k.getDigest() + 1); })),
            at + "kernel records: the digest is not that of the launches listed");
  EXPECT_EQ(error_of(trace_with_kernels(h, [](auto k) { k.getLaunches()[0].setBlockZ(0); })),
            at + "kernel records: launch 0 has a grid or block dimension of 0");
  EXPECT_EQ(error_of(trace_with_kernels(h, [](auto k) { k.setUnattributed(1); })),
            at + "kernel records: 0 launches at (unattributed) for an unattributed count of 1");
  EXPECT_EQ(error_of(trace_with_kernels(h, [](auto k) { k.getLaunches()[0].setName(7); })),
            at + "name id 7 is not < the name count 2");
  EXPECT_EQ(error_of(trace_with_kernels(h, [](auto k) {
              k.setCount(0);
              k.setUnattributed(3);
              k.initLaunches(0);
            })),
            at + "kernel records: 3 unattributed of 0 kernels");
  TraceHeader step_level = h;
  step_level.level = ProbeLevel::step;
  EXPECT_EQ(error_of(trace_with_kernels(step_level)), "k.trr: byte " + std::to_string(header_bytes(step_level).size()) +
                                                          ": kernel records: a step at level step lists its launches");

  // The header: a reason why kernels were not recorded, in a trace that says they were.
  capnp::MallocMessageBuilder message;
  {
    const std::vector<uint8_t> bytes = header_bytes(h);
    kj::ArrayInputStream in(kj::arrayPtr(bytes.data(), bytes.size()));
    capnp::PackedMessageReader reader(in);
    message.setRoot(reader.getRoot<schema::Message>());
  }
  message.getRoot<schema::Message>().getHeader().setKernelsNotRecorded("no driver");
  auto r = TraceReader::open_memory(packed(message), "both.trr");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "both.trr: byte 0: the header says GPU kernels were recorded and gives a reason why they were not "
            "('no driver')");
}

// A hand-made step 0 after `h`'s header with one event, the conv site choice of sample_gpu_conv_site_choice
// (cuDNN's engines, then the im2col + cuBLASLt variant with its one algorithm), valid as made; `edit` breaks it.
std::vector<uint8_t> trace_with_conv_choice(const TraceHeader& h,
                                            const std::function<void(schema::KernelChoice::Builder)>& edit = {}) {
  const KernelChoice c = sample_gpu_conv_site_choice();
  capnp::MallocMessageBuilder message;
  auto s = message.initRoot<schema::Message>().initStep();
  s.initNewNames().initNames(1).set(0, c.site);
  auto k = s.initEvents(1)[0].initKernelChoice();
  k.setSite(0);
  k.setOp(c.op);
  auto candidates = k.initCandidates(static_cast<unsigned>(c.candidates.size()));
  for (unsigned i = 0; i < c.candidates.size(); ++i) candidates.set(i, c.candidates[i]);
  k.setChosen(c.chosen);
  k.setReason(c.reason);
  auto engines = k.initCudnn(static_cast<unsigned>(c.cudnn.size()));
  for (unsigned i = 0; i < c.cudnn.size(); ++i) {
    const CudnnEngine& e = c.cudnn[i];
    engines[i].setGlobalIndex(e.global_index);
    auto types = engines[i].initKnobTypes(static_cast<unsigned>(e.knobs.size()));
    auto values = engines[i].initKnobValues(static_cast<unsigned>(e.knobs.size()));
    for (unsigned j = 0; j < e.knobs.size(); ++j) types.set(j, e.knobs[j].type), values.set(j, e.knobs[j].value);
    auto notes = engines[i].initNumericalNotes(static_cast<unsigned>(e.numerical_notes.size()));
    for (unsigned j = 0; j < e.numerical_notes.size(); ++j) notes.set(j, e.numerical_notes[j]);
    engines[i].setWorkspaceBytes(e.workspace);
  }
  k.setCudnnVersion(c.cudnn_version);
  const BlasLtAlgo& a = c.blaslt[0];
  auto algo = k.initBlasLt(1)[0];
  auto words = algo.initData(8);
  for (unsigned w = 0; w < 8; ++w) words.set(w, a.data[w]);
  algo.setAlgoId(a.id), algo.setTile(a.tile), algo.setSplitK(a.split_k), algo.setStages(a.stages);
  algo.setWaves(a.waves);
  k.setBlasLtVersion(c.blaslt_version);
  if (edit) edit(k);
  return concat(header_bytes(h), packed(message));
}

TEST(TraceUntrusted, AConvChoiceWithTheIm2colCandidateReadsBackAndItsListsAreChecked) {
  const TraceHeader h = sample_header();
  auto read = [](const std::vector<uint8_t>& bytes, KernelChoice* out) {
    auto r = TraceReader::open_memory(bytes, "conv.trr");
    if (!r) return r.error().message;
    auto step = (*r)->next();
    if (!step) return step.error().message;
    if (out && *step) *out = std::get<KernelChoice>(std::get<TraceStep>((**step).value).events.at(0));
    return std::string();
  };
  KernelChoice got;
  ASSERT_EQ(read(trace_with_conv_choice(h), &got), "");
  EXPECT_TRUE(got == sample_gpu_conv_site_choice());
  EXPECT_EQ(got.cudnn.size() + 1, got.candidates.size());  // the im2col candidate has no engine
  auto error_of = [&](const std::function<void(schema::KernelChoice::Builder)>& edit) {
    return read(trace_with_conv_choice(h, edit), nullptr);
  };
  std::string e = error_of([](auto k) {
    auto two = k.initBlasLt(2);
    for (unsigned i = 0; i < 2; ++i) two[i].initData(8), two[i].setSplitK(1);
  });
  EXPECT_NE(e.find("records 2 cuBLASLt algorithms, not the one that candidate runs"), std::string::npos) << e;
  e = error_of([](auto k) {
    auto c = k.getCandidates();
    const std::string first = c[0].cStr(), second = c[1].cStr();
    c.set(0, second);
    c.set(1, first);
  });
  EXPECT_NE(e.find("candidate 0 is not the id of its cuDNN engine"), std::string::npos) << e;
  e = error_of([](auto k) { k.setCudnnVersion(0); });
  EXPECT_NE(e.find("cuDNN engines but no version"), std::string::npos) << e;
  e = error_of([](auto k) { k.initCudnn(4); });
  EXPECT_NE(e.find("more cuDNN engines than candidates"), std::string::npos) << e;
  e = error_of([](auto k) { k.setOp("matmul"); });
  EXPECT_FALSE(e.empty());
}

}  // namespace
}  // namespace trainrr::trace

namespace trainrr::trace {
namespace {

// Step 2's loss, 0.5 / 3, is a word of eight nonzero bytes, which packing copies verbatim: changing one of
// them leaves a message that still reads, with another loss.
std::vector<uint8_t> with_step_two_loss_changed(std::vector<uint8_t> bytes, uint64_t from, uint64_t to) {
  const double loss = 0.5 / 3;
  uint8_t pattern[8];
  std::memcpy(pattern, &loss, 8);
  auto at = std::search(bytes.begin() + static_cast<int64_t>(from), bytes.begin() + static_cast<int64_t>(to),
                        pattern, pattern + 8);
  if (at == bytes.begin() + static_cast<int64_t>(to)) return {};
  at[2] ^= 0x01;  // 0x55 -> 0x54: a mantissa bit, still a nonzero byte
  return bytes;
}

TEST(TraceIntegrity, AChangedMessageIsDamageNamedAtItsOffset) {
  const std::string path = temp_path("changed.trr");
  const SampleTrace sample = write_sample_trace(path, 4);
  // Messages: header, step 0, step 1, epoch 0, step 2, checkpoint, step 3, epoch 1, footer.
  const uint64_t step2 = sample.message_ends[3], checkpoint = sample.message_ends[4];
  const std::vector<uint8_t> bytes = with_step_two_loss_changed(read_file(path), step2, checkpoint);
  ASSERT_FALSE(bytes.empty()) << "step 2's loss was not found where it was written";
  auto r = TraceReader::open_memory(bytes, "changed.trr");
  ASSERT_TRUE(r) << r.error().message;
  ReadAll all = read_all(**r);
  ASSERT_TRUE(all.error);
  EXPECT_EQ(all.error->message,
            "changed.trr: byte " + std::to_string(step2) +
                ": this message, or the digest of it that the next message (at byte " +
                std::to_string(checkpoint) +
                ") holds, was changed after it was written (the file is damaged, not cut)");
  // Every message before the changed one was returned, and the changed one was not.
  ASSERT_EQ(all.records.size(), 3u);
  EXPECT_EQ(std::get<TraceStep>(all.records[1].value).index, 1);
  EXPECT_TRUE(std::holds_alternative<TraceEpoch>(all.records[2].value));
  ASSERT_TRUE((*r)->stopped());
  EXPECT_EQ((*r)->stopped()->offset, step2);
  EXPECT_FALSE((*r)->stopped()->truncated);
  std::remove(path.c_str());
}

// The start of a message that declares one segment of 2^24 words (past the end of any small file) and a root
// struct 2^22 words into it: packed, 6 bytes that read as a message cut short whose start cannot tell the
// digest it holds, as the bytes after a changed segment size can.
const std::vector<uint8_t> kCutLookingStart = {0x80, 0x01, 0x58, 0x01, 0x01, 0x50};

// A changed step whose next message reads as cut short, in a file that ends with an intact footer: nothing
// vouches for the step, and the file is not cut, so the step is damage, never handed out.
TEST(TraceIntegrity, AChangedMessageBeforeOneThatSeemsCutIsDamageWhenAnIntactFooterEndsTheFile) {
  const std::string path = temp_path("seems_cut.trr");
  const SampleTrace sample = write_sample_trace(path, 4);
  const uint64_t step2 = sample.message_ends[3], checkpoint = sample.message_ends[4];
  std::vector<uint8_t> bytes = with_step_two_loss_changed(read_file(path), step2, checkpoint);
  ASSERT_FALSE(bytes.empty()) << "step 2's loss was not found where it was written";
  std::copy(kCutLookingStart.begin(), kCutLookingStart.end(),
            bytes.begin() + static_cast<int64_t>(checkpoint));
  auto r = TraceReader::open_memory(bytes, "seems_cut.trr");
  ASSERT_TRUE(r) << r.error().message;
  ReadAll all = read_all(**r);
  ASSERT_TRUE(all.error);
  for (const TraceRecord& rec : all.records) {
    const auto* step = std::get_if<TraceStep>(&rec.value);
    EXPECT_TRUE(!step || step->index < 2) << "the changed step was handed out";
  }
  EXPECT_EQ(all.records.size(), 3u);  // step 0, step 1, epoch 0
  ASSERT_TRUE((*r)->stopped());
  EXPECT_FALSE((*r)->stopped()->truncated) << all.error->message;
  EXPECT_EQ((*r)->stopped()->offset, step2) << all.error->message;
  EXPECT_NE(all.error->message.find("the file ends with an intact footer"), std::string::npos)
      << all.error->message;
  // Unchanged bytes cut there are a cut: step 2 was written whole.
  std::vector<uint8_t> cut_bytes = read_file(path);
  cut_bytes.resize(checkpoint);
  cut_bytes.insert(cut_bytes.end(), kCutLookingStart.begin(), kCutLookingStart.end());
  auto cut = TraceReader::open_memory(cut_bytes, "cut.trr");
  ASSERT_TRUE(cut) << cut.error().message;
  ReadAll partial = read_all(**cut);
  ASSERT_TRUE(partial.error);
  EXPECT_TRUE((*cut)->stopped()->truncated) << partial.error->message;
  EXPECT_EQ((*cut)->stopped()->offset, checkpoint);
  std::remove(path.c_str());
}

// Whatever byte of step 2 changes, and however (its values, or its framing so that the next message starts
// at the wrong byte), step 2 is never handed out with other values than written.
TEST(TraceIntegrity, NoChangedByteOfAStepReachesTheCaller) {
  const std::string path = temp_path("every_byte.trr");
  const SampleTrace sample = write_sample_trace(path, 4);
  const std::vector<uint8_t> original = read_file(path);
  const uint64_t from = sample.message_ends[3], to = sample.message_ends[4];
  int refused = 0;
  for (uint64_t at = from; at < to; ++at) {
    for (const uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      std::vector<uint8_t> bytes = original;
      bytes[at] ^= mask;
      auto r = TraceReader::open_memory(bytes, "changed.trr");
      ASSERT_TRUE(r) << r.error().message;
      ReadAll all = read_all(**r);
      for (const TraceRecord& rec : all.records) {
        const auto* step = std::get_if<TraceStep>(&rec.value);
        if (step && step->index == 2) {
          EXPECT_TRUE(*step == sample.steps[2])
              << "byte " << at << " ^ " << int{mask} << " reached the caller";
        }
      }
      refused += all.error.has_value();
    }
  }
  EXPECT_EQ(refused, static_cast<int>(2 * (to - from)));
  std::remove(path.c_str());
}

// A changed byte in a message's framing can make the next message start at a wrong byte, where what follows
// reads as a message that runs past the end of the file: a cut, were it not for the digest that the start of
// that "message" holds of the one before it. Whatever bit of whatever message before the footer changes, the
// reader stops there as damage, never as a cut.
TEST(TraceIntegrity, NoChangedBitBeforeTheFooterIsTakenForACut) {
  const std::string path = temp_path("every_bit.trr");
  const SampleTrace sample = write_sample_trace(path, 4);
  const std::vector<uint8_t> original = read_file(path);
  const uint64_t from = sample.message_ends[0], to = sample.message_ends[sample.message_ends.size() - 2];
  int damaged = 0, cut = 0;
  for (uint64_t at = from; at < to; ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> bytes = original;
      bytes[at] ^= static_cast<uint8_t>(1u << bit);
      auto r = TraceReader::open_memory(bytes, "changed.trr");
      if (!r) {  // the first message vouches for the header, which open() reads
        EXPECT_NE(r.error().message.find("damaged, not cut"), std::string::npos) << r.error().message;
        ++damaged;
        continue;
      }
      ReadAll all = read_all(**r);
      ASSERT_TRUE(all.error) << "byte " << at << " bit " << bit << " went unnoticed";
      ASSERT_TRUE((*r)->stopped());
      // What the changed message seemed to hold is no note: it was never vouched for.
      EXPECT_TRUE((*r)->notes().empty()) << "byte " << at << " bit " << bit << ": " << (*r)->notes().front();
      if ((*r)->stopped()->truncated) {
        ++cut;
        ADD_FAILURE() << "byte " << at << " bit " << bit << " taken for a cut: " << all.error->message;
      } else {
        ++damaged;
      }
    }
  }
  EXPECT_EQ(cut, 0);
  EXPECT_EQ(damaged, static_cast<int>(8 * (to - from)));
  std::remove(path.c_str());
}

// What reading `bytes` (a trace named `name`) to the end stops with, where it stops as damage; else what it
// did instead.
std::string damage_reading(const std::vector<uint8_t>& bytes, const std::string& name) {
  auto r = TraceReader::open_memory(bytes, name);
  if (!r) return "(refused at open: " + r.error().message + ")";
  ReadAll all = read_all(**r);
  if (!all.error) return "(read to the end)";
  if ((*r)->stopped() && (*r)->stopped()->truncated) return "(taken for a cut: " + all.error->message + ")";
  return all.error->message;
}

// The footer is the last message: nothing after it holds its digest, so it carries a check of its values.
TEST(TraceIntegrity, AChangedFooterIsDamage) {
  const std::string path = temp_path("footer.trr");
  const SampleTrace sample = write_sample_trace(path, 4);
  std::vector<uint8_t> bytes = read_file(path);
  const uint64_t footer = sample.message_ends[sample.message_ends.size() - 2];
  const std::string reason = "complete";  // a word of eight nonzero bytes, which packing copies verbatim
  auto at =
      std::search(bytes.begin() + static_cast<int64_t>(footer), bytes.end(), reason.begin(), reason.end());
  ASSERT_NE(at, bytes.end());
  *at = 'b';
  EXPECT_EQ(damage_reading(bytes, "footer.trr"),
            "footer.trr: byte " + std::to_string(footer) +
                ": the footer was changed after it was written: its values "
                "do not match its check (the file is damaged, not cut)");
  std::remove(path.c_str());
}

// The footer's own framing: a changed bit there can make the footer read as a message that runs past the end
// of the file. With that one bit changed back it is an intact footer that ends the file, which no cut leaves:
// whatever bit of the footer changes, the reader stops there as damage, never as a cut, or (a bit whose
// change leaves every value of the footer as it was) reads the footer as written.
TEST(TraceIntegrity, NoChangedBitOfTheFooterIsTakenForACut) {
  const std::string path = temp_path("footer_bits.trr");
  const SampleTrace sample = write_sample_trace(path, 4);
  const std::vector<uint8_t> original = read_file(path);
  const uint64_t footer = sample.message_ends[sample.message_ends.size() - 2];
  auto as_written = TraceReader::open_memory(original, "original.trr");
  ASSERT_TRUE(as_written) << as_written.error().message;
  ASSERT_FALSE(read_all(**as_written).error);
  const TraceFooter written = *(*as_written)->footer();
  int damaged = 0, same = 0;
  for (uint64_t at = footer; at < original.size(); ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> bytes = original;
      bytes[at] ^= static_cast<uint8_t>(1u << bit);
      auto r = TraceReader::open_memory(bytes, "changed.trr");
      ASSERT_TRUE(r) << r.error().message;
      ReadAll all = read_all(**r);
      if (!all.error) {
        ASSERT_TRUE((*r)->footer()) << "byte " << at - footer << " of the footer, bit " << bit
                                    << ": read to the end without the footer";
        EXPECT_TRUE((*r)->notes().empty()) << (*r)->notes().front();
        const TraceFooter& read = *(*r)->footer();
        const bool as_written =
            read.completed == written.completed && read.end_reason == written.end_reason &&
            read.step_count == written.step_count && read.event_count == written.event_count &&
            read.checkpoints == written.checkpoints;
        EXPECT_TRUE(as_written) << "byte " << at - footer << " of the footer, bit " << bit
                                << " changed a value";
        ++same;
        continue;
      }
      ASSERT_TRUE((*r)->stopped());
      if ((*r)->stopped()->truncated) {
        ADD_FAILURE() << "byte " << at - footer << " of the footer, bit " << bit
                      << " taken for a cut: " << all.error->message;
      } else {
        ++damaged;
      }
    }
  }
  EXPECT_EQ(damaged + same, static_cast<int>(8 * (original.size() - footer)));
  EXPECT_GT(damaged, same);
  std::remove(path.c_str());
}

// Every writer of format 3 writes a footer check that is not 0: a footer whose check reads as 0 (the bits
// that hold it changed, or the data section cut short so that it reads as the default) vouches for nothing.
TEST(TraceIntegrity, AFormat3FooterWithoutACheckIsDamage) {
  const std::string path = temp_path("no_check.trr");
  const SampleTrace sample = write_sample_trace(path, 4);
  const std::vector<uint8_t> original = read_file(path);
  const uint64_t footer = sample.message_ends[sample.message_ends.size() - 2];
  kj::ArrayInputStream in(kj::arrayPtr(original.data() + footer, original.size() - footer));
  capnp::MallocMessageBuilder changed;
  {
    capnp::PackedMessageReader reader(in);
    changed.setRoot(reader.getRoot<schema::Message>());
  }
  ASSERT_NE(changed.getRoot<schema::Message>().getFooter().getCheck(), 0u);
  changed.getRoot<schema::Message>().getFooter().setCheck(0);
  const std::vector<uint8_t> bytes =
      concat(std::vector<uint8_t>(original.begin(), original.begin() + static_cast<int64_t>(footer)),
             packed(changed));
  EXPECT_EQ(damage_reading(bytes, "no_check.trr"),
            "no_check.trr: byte " + std::to_string(footer) +
                ": the footer was changed after it was written: it holds no check of its "
                "values, which every footer of format 3 holds (the file is damaged, not cut)");
  std::remove(path.c_str());
}

// Listing the checkpoints of a file whose footer was changed: an error that calls the file damaged, or the
// checkpoints before the footer (a change that reads as a cut), never a bare decoding error.
TEST(TraceIntegrity, AChangedFooterLeavesTheCheckpointsBeforeItListed) {
  // Damage after the checkpoints (here in the footer) leaves them listed: whoever takes one reads the trace
  // to it, or with the message after it, and the damage is said where the steps after it are read.
  const std::string path = temp_path("footer_index.trr");
  const SampleTrace sample = write_sample_trace(path, 4);
  const std::vector<uint8_t> original = read_file(path);
  const uint64_t footer = sample.message_ends[sample.message_ends.size() - 2];
  for (uint64_t at = footer; at < original.size(); ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> bytes = original;
      bytes[at] ^= static_cast<uint8_t>(1u << bit);
      auto r = TraceReader::open_memory(bytes, "changed.trr");
      ASSERT_TRUE(r) << r.error().message;
      auto index = (*r)->checkpoint_index();
      ASSERT_TRUE(index) << "byte " << at << " bit " << bit << ": " << index.error().message;
      EXPECT_EQ(index->size(), sample.checkpoints.size()) << "byte " << at << " bit " << bit;
    }
  }
  std::remove(path.c_str());
}

// `bytes` (a written trace) with its header's formatVersion set to `version`, the rest as written.
std::vector<uint8_t> with_format_version(const std::vector<uint8_t>& bytes, uint32_t version) {
  kj::ArrayInputStream in(kj::arrayPtr(bytes.data(), bytes.size()));
  capnp::MallocMessageBuilder message;
  {
    capnp::PackedMessageReader reader(in);
    message.setRoot(reader.getRoot<schema::Message>());
  }
  const size_t header = bytes.size() - in.tryGetReadBuffer().size();
  message.getRoot<schema::Message>().getHeader().setFormatVersion(version);
  return concat(packed(message),
                std::vector<uint8_t>(bytes.begin() + static_cast<int64_t>(header), bytes.end()));
}

// A header whose minReaderVersion was changed to ask for a newer reader is damage where the message after it
// holds a digest of another header; a header the next message vouches for asks for a newer reader.
TEST(TraceIntegrity, AHeaderChangedToAskForANewerReaderIsDamage) {
  const std::string path = temp_path("newer.trr");
  write_sample_trace(path, 2);
  const std::vector<uint8_t> written = read_file(path);
  kj::ArrayInputStream in(kj::arrayPtr(written.data(), written.size()));
  capnp::MallocMessageBuilder header;
  {
    capnp::PackedMessageReader reader(in);
    header.setRoot(reader.getRoot<schema::Message>());
  }
  const size_t header_size = written.size() - in.tryGetReadBuffer().size();
  capnp::MallocMessageBuilder first;
  {
    capnp::PackedMessageReader reader(in);
    first.setRoot(reader.getRoot<schema::Message>());
  }
  const size_t first_end = written.size() - in.tryGetReadBuffer().size();
  const std::vector<uint8_t> rest(written.begin() + static_cast<int64_t>(first_end), written.end());
  header.getRoot<schema::Message>().getHeader().setMinReaderVersion(kReaderVersion + 1);
  const std::vector<uint8_t> newer_header = packed(header);
  const std::vector<uint8_t> changed =
      concat(concat(newer_header, std::vector<uint8_t>(written.begin() + static_cast<int64_t>(header_size),
                                                       written.begin() + static_cast<int64_t>(first_end))),
             rest);
  auto r = TraceReader::open_memory(changed, "newer.trr");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("the header says the trace needs reader version " +
                                   std::to_string(kReaderVersion + 1) + " (this is version " +
                                   std::to_string(kReaderVersion) + "), but the message after it"),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("the header was changed after it was written (the file is damaged)"),
            std::string::npos)
      << r.error().message;
  // The first message re-chained to the new header: a trace that needs a newer reader, said as such.
  first.getRoot<schema::Message>().setPrevious(message_digest(newer_header));
  auto newer = TraceReader::open_memory(concat(concat(newer_header, packed(first)), rest), "newer.trr");
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.error().message.find("trace needs reader version " + std::to_string(kReaderVersion + 1) +
                                       ", this is version " + std::to_string(kReaderVersion)),
            std::string::npos)
      << newer.error().message;
  EXPECT_EQ(newer.error().message.find("damaged"), std::string::npos) << newer.error().message;
  std::remove(path.c_str());
}

// A trace of format 2 chains nothing, so a header changed to say format 2 would turn every check of the chain
// off: the digests its messages hold say it was format 3, and reading refuses it as damaged.
TEST(TraceIntegrity, AHeaderChangedToAnEarlierFormatIsDamageNotAnUnchainedTrace) {
  const std::string path = temp_path("downgraded.trr");
  write_sample_trace(path, 4);
  const std::vector<uint8_t> written = read_file(path);
  for (uint32_t version : {2u, 1u}) {
    const std::vector<uint8_t> bytes = with_format_version(written, version);
    auto r = TraceReader::open_memory(bytes, "downgraded.trr");
    ASSERT_FALSE(r) << "format " << version << " read as an unchained trace";
    EXPECT_NE(r.error().message.find("the header's formatVersion was changed after it was written"),
              std::string::npos)
        << r.error().message;
  }
  // A message of a format-2 trace that holds a digest, and a footer of one that carries a check, are damage.
  {
    capnp::MallocMessageBuilder message;
    auto step = message.initRoot<schema::Message>();
    step.initStep().setIndex(0);
    step.setPrevious(12345);
    auto r = TraceReader::open_memory(concat(header_bytes(), packed(message)), "f2.trr");
    ASSERT_FALSE(r);  // the first message: the header's version is what changed
    EXPECT_NE(r.error().message.find("formatVersion was changed"), std::string::npos) << r.error().message;
    capnp::MallocMessageBuilder first;
    first.initRoot<schema::Message>().initStep().setIndex(0);
    const std::vector<uint8_t> two = concat(concat(header_bytes(), packed(first)), packed(message));
    auto later = TraceReader::open_memory(two, "f2.trr");
    ASSERT_TRUE(later) << later.error().message;
    ReadAll all = read_all(**later);
    ASSERT_TRUE(all.error);
    EXPECT_NE(
        all.error->message.find("holds a digest of the one before it (Message.previous), which only traces "
                                "of format 3 and later carry"),
        std::string::npos)
        << all.error->message;
    capnp::MallocMessageBuilder footer;
    footer.initRoot<schema::Message>().initFooter().setCheck(7);
    const std::vector<uint8_t> checked = concat(header_bytes(), packed(footer));
    auto f = TraceReader::open_memory(checked, "f2.trr");
    ASSERT_TRUE(f) << f.error().message;
    all = read_all(**f);
    ASSERT_TRUE(all.error);
    EXPECT_NE(all.error->message.find("the footer carries a check of its values"), std::string::npos)
        << all.error->message;
  }
  std::remove(path.c_str());
}

TEST(TraceIntegrity, TheUnchangedFileReadsToItsFooterAndASeekReadsOnWithoutTheEarlierMessage) {
  const std::string path = temp_path("chained.trr");
  const SampleTrace sample = write_sample_trace(path, 4);
  auto r = TraceReader::open(path);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)->header().format_version, kFormatVersion);
  ReadAll all = read_all(**r);
  ASSERT_FALSE(all.error) << all.error->message;
  EXPECT_TRUE(all.clean);
  // From the checkpoint on, the message before it is not read, so nothing checks its digest: reading on from
  // there still checks each later message against the one before it.
  auto index = (*r)->checkpoint_index();
  ASSERT_TRUE(index);
  ASSERT_EQ(index->size(), 2u);
  auto c = (*r)->read_checkpoint((*index)[0].offset);
  ASSERT_TRUE(c) << c.error().message;
  ReadAll rest = read_all(**r);
  ASSERT_FALSE(rest.error) << rest.error->message;
  EXPECT_EQ(rest.records.size(), 4u);  // step 3, epoch 1, the final state, footer
  std::remove(path.c_str());
}

// A checkpoint carries the whole name table, which a reader that read the messages before it holds already:
// one that names the parameters otherwise (their ids swapped, the digests re-chained) would put the later
// steps' digests under other names, and a replay would blame the numerics. Read on from the start, it is
// damage; sought to, the table is the checkpoint's own.
TEST(TraceIntegrity, ACheckpointWhoseNameTableIsNotTheOneBeforeItIsDamage) {
  const std::string path = temp_path("renamed.trr");
  write_sample_trace(path, 4);
  const std::vector<uint8_t> written = read_file(path);
  kj::ArrayInputStream in(kj::arrayPtr(written.data(), written.size()));
  std::vector<std::vector<uint8_t>> messages;
  std::vector<std::unique_ptr<capnp::MallocMessageBuilder>> builders;
  size_t header_end = 0, checkpoint = 0;
  for (size_t at = 0; in.tryGetReadBuffer().size() > 0;) {
    capnp::PackedMessageReader reader(in);
    auto b = std::make_unique<capnp::MallocMessageBuilder>();
    b->setRoot(reader.getRoot<schema::Message>());
    const size_t end = written.size() - in.tryGetReadBuffer().size();
    if (messages.empty()) header_end = end;
    messages.emplace_back(written.begin() + static_cast<int64_t>(at),
                          written.begin() + static_cast<int64_t>(end));
    if (!checkpoint && messages.size() > 1 &&
        b->getRoot<schema::Message>().which() == schema::Message::CHECKPOINT)
      checkpoint = messages.size() - 1;
    builders.push_back(std::move(b));
    at = end;
  }
  ASSERT_GT(checkpoint, 0u);
  auto names = builders[checkpoint]->getRoot<schema::Message>().getCheckpoint().getNames().getParamNames();
  ASSERT_EQ(names.size(), 2u);
  const uint32_t first = names[0];
  names.set(0, names[1]);
  names.set(1, first);
  // The changed checkpoint and every message after it, each holding the digest of the one before it, and the
  // footer's index of the checkpoints where they now lie, with its check.
  std::vector<uint8_t> changed(written.begin(), written.begin() + static_cast<int64_t>(header_end));
  uint64_t offset = 0;
  TraceFooter footer{true, "", 0, 0, {}};
  for (size_t i = 1; i < messages.size(); ++i) {
    schema::Message::Builder m = builders[i]->getRoot<schema::Message>();
    if (m.which() == schema::Message::CHECKPOINT)
      footer.checkpoints.push_back({m.getCheckpoint().getStep(), changed.size()});
    if (m.which() == schema::Message::FOOTER) {
      schema::Footer::Builder f = m.getFooter();
      footer.completed = f.getCompleted();
      footer.end_reason = std::string(f.getEndReason().cStr());
      footer.step_count = f.getStepCount();
      footer.event_count = f.getEventCount();
      ASSERT_EQ(f.getCheckpoints().size(), footer.checkpoints.size());
      for (size_t c = 0; c < footer.checkpoints.size(); ++c)
        f.getCheckpoints()[static_cast<unsigned>(c)].setOffset(footer.checkpoints[c].offset);
      f.setCheck(footer_digest(footer));
    }
    if (i == checkpoint) offset = changed.size();
    if (i > checkpoint) m.setPrevious(message_digest(messages[i - 1]));
    if (i >= checkpoint) messages[i] = packed(*builders[i]);
    changed = concat(changed, messages[i]);
  }
  auto r = TraceReader::open_memory(changed, "renamed.trr");
  ASSERT_TRUE(r) << r.error().message;
  ReadAll all = read_all(**r);
  ASSERT_TRUE(all.error);
  EXPECT_EQ(all.error->message,
            "renamed.trr: byte " + std::to_string(offset) +
                ": checkpoint at step 3: its name table is not the one the messages before "
                "it built: messages were moved, repeated, left out or changed after they "
                "were written (the file is damaged)");
  // Sought to, the checkpoint is read with its own table (what a resumed replay reads it from the start for).
  auto sought = TraceReader::open_memory(changed, "renamed.trr");
  ASSERT_TRUE(sought) << sought.error().message;
  EXPECT_TRUE((*sought)->read_checkpoint(offset)) << "the checkpoint alone reads";
  std::remove(path.c_str());
}

// A writer that is still writing has, as the reader sees it, a message half written at the end: that is where
// the recording has got to, not a cut and not damage. Once the writer is gone, the same bytes are a cut.
TEST(TraceReaderLive, ATraceStillBeingWrittenReadsToItsLastCompleteMessageWithANote) {
  const std::string path = temp_path("live.trr");
  auto w = TraceWriter::create(path, sample_header());
  ASSERT_TRUE(w) << w.error().message;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*w)->write_step(sample_step(i)));
    if (i == 1) {
      ASSERT_TRUE((*w)->write_epoch(TraceEpoch{0, {{"loss", 0.5}}}));
    }
  }
  // The writer in the middle of its next message (a checkpoint): half of it is in the file.
  const uint64_t from = read_file(path).size();
  ASSERT_TRUE((*w)->write_checkpoint(sample_checkpoint(3)));
  const uint64_t to = read_file(path).size();
  ASSERT_GT(to - from, 64u);
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(from + (to - from) / 2)), 0);

  auto live = TraceReader::open(path);
  ASSERT_TRUE(live) << live.error().message;
  EXPECT_EQ((*live)->still_recording(),
            std::optional<std::string>(path + ": still being recorded (process " +
                                       std::to_string(::getpid()) + "): read up to its last complete step"));
  ReadAll read = read_all(**live);
  EXPECT_FALSE(read.error) << read.error->message;
  EXPECT_TRUE(read.clean);
  EXPECT_EQ(read.records.size(), 4u);
  EXPECT_FALSE((*live)->stopped());
  EXPECT_FALSE((*live)->ended_cleanly());

  w->reset();  // the writer is gone, as a killed recording's is
  auto cut = TraceReader::open(path);
  ASSERT_TRUE(cut) << cut.error().message;
  EXPECT_FALSE((*cut)->still_recording());
  ReadAll after = read_all(**cut);
  EXPECT_EQ(after.records.size(), 4u);
  ASSERT_TRUE((*cut)->stopped());
  EXPECT_TRUE((*cut)->stopped()->truncated) << (*cut)->stopped()->why;
  std::remove(path.c_str());
}

}  // namespace
}  // namespace trainrr::trace

namespace trainrr::trace {
namespace {

using namespace testing_util;

// The sample header (its one data set embedded) as written, with `change` applied to the data set's message.
std::vector<uint8_t> header_with_embedding(const std::function<void(schema::Dataset::Builder)>& change) {
  const std::vector<uint8_t> written = header_bytes(sample_header());
  kj::ArrayInputStream in(kj::arrayPtr(written.data(), written.size()));
  capnp::PackedMessageReader reader(in);
  capnp::MallocMessageBuilder message;
  message.setRoot(reader.getRoot<schema::Message>());
  change(message.getRoot<schema::Message>().getHeader().getDatasets()[0]);
  return packed(message);
}

std::vector<uint8_t> zstd_frame(const std::vector<uint8_t>& content) {
  std::vector<uint8_t> frame(ZSTD_compressBound(content.size()));
  frame.resize(ZSTD_compress(frame.data(), frame.size(), content.data(), content.size(), 1));
  return frame;
}

TEST(TraceEmbeddedData, IsWrittenCompressedAndReadBackWhole) {
  TraceHeader h = sample_header();
  // Repetitive, as data files are: compressed, it is much smaller than it is.
  h.datasets[0].embedded.clear();
  for (int i = 0; i < 20000; ++i)
    for (char c : std::to_string(i % 97) + ",0.125,setosa\n") h.datasets[0].embedded.push_back(static_cast<uint8_t>(c));
  h.datasets[0].size_bytes = h.datasets[0].embedded.size();
  h.datasets[0].digest = digest128_bytes(h.datasets[0].embedded);
  const std::vector<uint8_t> bytes = written_header_bytes(h);
  EXPECT_LT(bytes.size() * 4, h.datasets[0].embedded.size());
  auto r = TraceReader::open_memory(bytes, "compressed.trr");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)->header().datasets, h.datasets);
  // The frames sit in embeddedZstd; the raw field of earlier writers is left empty.
  header_with_embedding([](schema::Dataset::Builder d) {
    EXPECT_EQ(d.getEmbedded().size(), 0u);
    EXPECT_GT(d.getEmbeddedZstd().size(), 0u);
  });
}

TEST(TraceEmbeddedData, TheUncompressedFormOfEarlierWritersIsStillRead) {
  const TraceHeader h = sample_header();
  auto r = TraceReader::open_memory(header_with_embedding([&](schema::Dataset::Builder d) {
    d.disownEmbeddedZstd();
    d.initEmbedded(1).set(0, kj::arrayPtr(h.datasets[0].embedded.data(), h.datasets[0].embedded.size()));
  }), "raw.trr");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)->header().datasets, h.datasets);
}

TEST(TraceEmbeddedData, HostileFramesAreMalformedNamingTheDataSet) {
  const TraceHeader h = sample_header();
  const std::vector<uint8_t>& content = h.datasets[0].embedded;
  std::vector<uint8_t> other = content;
  other[0] ^= 1;
  const std::vector<uint8_t> good = zstd_frame(content), changed = zstd_frame(other);
  const struct {
    const char* what;
    std::function<void(schema::Dataset::Builder)> change;
    const char* message;
  } cases[] = {
      {"both forms",
       [&](schema::Dataset::Builder d) {
         d.initEmbedded(1).set(0, kj::arrayPtr(content.data(), content.size()));
       },
       "both embedded and embeddedZstd are set"},
      {"other bytes",
       [&](schema::Dataset::Builder d) {
         d.initEmbeddedZstd(1).set(0, kj::arrayPtr(changed.data(), changed.size()));
       },
       "embedded bytes do not match its digest"},
      {"too many",
       [&](schema::Dataset::Builder d) {
         auto f = d.initEmbeddedZstd(2);
         f.set(0, kj::arrayPtr(good.data(), good.size()));
         f.set(1, kj::arrayPtr(good.data(), good.size()));
       },
       "chunks decompress to more than its size"},
      {"too few", [&](schema::Dataset::Builder d) { d.setSize(d.getSize() + 1); },
       "chunks decompress to less than its size"},
      {"not a frame",
       [&](schema::Dataset::Builder d) {
         d.initEmbeddedZstd(1).set(0, kj::arrayPtr(content.data(), content.size()));
       },
       "a chunk is not a sized zstd frame"},
      {"two frames in one chunk",
       [&](schema::Dataset::Builder d) {
         std::vector<uint8_t> twice = good;
         twice.insert(twice.end(), good.begin(), good.end());
         d.setSize(2 * content.size());
         d.initEmbeddedZstd(1).set(0, kj::arrayPtr(twice.data(), twice.size()));
       },
       "a chunk is not exactly one zstd frame"},
      {"a size past the limit", [&](schema::Dataset::Builder d) { d.setSize(uint64_t{1} << 40); },
       "bytes exceed the limit of 1073741824 for embedded data"},
  };
  for (const auto& c : cases) {
    auto r = TraceReader::open_memory(header_with_embedding(c.change), "hostile.trr");
    ASSERT_FALSE(r) << c.what;
    const std::string& m = r.error().message;
    EXPECT_EQ(m.rfind("hostile.trr: byte 0: data set '" + h.datasets[0].name + "': ", 0), 0u) << c.what << ": " << m;
    EXPECT_NE(m.find(c.message), std::string::npos) << c.what << ": " << m;
  }
  // A smaller limit is checked before anything is allocated.
  ReaderLimits limits;
  limits.max_embedded_bytes = content.size() - 1;
  auto r = TraceReader::open_memory(header_with_embedding([](schema::Dataset::Builder) {}), "limited.trr", limits);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("exceed the limit of " + std::to_string(content.size() - 1)), std::string::npos)
      << r.error().message;
}

}  // namespace
}  // namespace trainrr::trace

namespace trainrr::trace {
namespace {

using namespace testing_util;

// What reading a trace written by the writer, with `step` as its one step (and `checkpoint` after it, if
// given), stops with: "" when it reads to its footer.
std::string read_error_of(const TraceStep& step, const std::optional<TrainState>& checkpoint = std::nullopt) {
  const std::string path = temp_path("indices.trr");
  {
    auto w = TraceWriter::create(path, sample_header());
    if (!w) return "writer: " + w.error().message;
    if (Status s = (*w)->write_step(step); !s) return "writer: " + s.error().message;
    if (checkpoint)
      if (Status s = (*w)->write_checkpoint(*checkpoint); !s) return "writer: " + s.error().message;
    if (Status s = (*w)->finish(TraceFooter{false, "stopped", 0, 0, {}}); !s)
      return "writer: " + s.error().message;
  }
  auto r = TraceReader::open(path);
  std::remove(path.c_str());
  if (!r) return r.error().message;
  ReadAll all = read_all(**r);
  if (!all.error) return "";
  EXPECT_FALSE((*r)->stopped()->truncated) << all.error->message;
  return all.error->message;
}

TraceStep step_with(Event e) {
  TraceStep s;
  s.events.push_back(std::move(e));
  return s;
}

ShuffleEvent shuffle_of(std::vector<uint32_t> permutation) {
  ShuffleEvent sh;
  sh.site = "data/shuffle";
  sh.length = permutation.size();
  sh.digest = digest(std::span<const uint32_t>(permutation));  // recomputed, as a crafted trace would
  sh.permutation = std::move(permutation);
  return sh;
}

// Recorded row, task and batch indices are served back to the engine, which reads memory at them: each must
// be in range and none may repeat, or reading stops there, naming the step and the field.
TEST(TraceUntrusted, AShufflePermutationThatIsNoPermutationIsMalformedAtItsStep) {
  EXPECT_EQ(read_error_of(step_with(shuffle_of({2, 0, 1}))), "");
  std::string m = read_error_of(step_with(shuffle_of({4000000000u, 1, 2})));
  EXPECT_NE(m.find("step 0: shuffle permutation[0] = 4000000000 is not < 3"), std::string::npos) << m;
  m = read_error_of(step_with(shuffle_of({0, 1, 3})));
  EXPECT_NE(m.find("step 0: shuffle permutation[2] = 3 is not < 3"), std::string::npos) << m;
  m = read_error_of(step_with(shuffle_of({1, 1, 2})));
  EXPECT_NE(m.find("step 0: shuffle permutation[1] = 1 repeats an earlier entry"), std::string::npos) << m;
  // A permutation rebuilt from a draw takes one word fewer than it has rows: any other count is no draw of
  // it.
  ShuffleEvent drawn;
  drawn.site = "data/shuffle";
  drawn.length = 1437;
  drawn.draw = RngDraw{"data/shuffle", "data/shuffle", 5, 0, 1436};
  EXPECT_EQ(read_error_of(step_with(drawn)), "");
  for (uint64_t count : {uint64_t{2}, uint64_t{1} << 62}) {
    drawn.draw->count = count;
    m = read_error_of(step_with(drawn));
    EXPECT_NE(m.find("step 0: shuffle draw count " + std::to_string(count) + " must be 1436"),
              std::string::npos)
        << m;
  }
}

// Every epoch of a run shuffles its training rows: a later shuffle of another number of rows than the first
// (its draw's count made to match) is malformed at its step, before anything is made of its length.
TEST(TraceUntrusted, AShuffleOfAnotherLengthThanTheFirstEpochsIsMalformedAtItsStep) {
  const std::string path = temp_path("shuffles.trr");
  {
    auto w = TraceWriter::create(path, sample_header());
    ASSERT_TRUE(w.ok()) << w.error().message;
    for (int i = 0; i < 3; ++i) {
      TraceStep s = sample_step(i);
      for (auto& e : s.events)
        if (auto* sh = std::get_if<ShuffleEvent>(&e); sh && i == 2) {
          ASSERT_TRUE(sh->draw.has_value());
          sh->length = uint64_t{1} << 40;
          sh->draw->count = sh->length - 1;
        }
      ASSERT_TRUE((*w)->write_step(s).ok());
      if (i == 1) {
        ASSERT_TRUE((*w)->write_epoch(TraceEpoch{0, {{"loss", 0.5}}}).ok());
      }
    }
    ASSERT_TRUE((*w)->finish(TraceFooter{false, "stopped", 0, 0, {}}).ok());
  }
  auto r = TraceReader::open(path);
  std::remove(path.c_str());
  ASSERT_TRUE(r.ok()) << r.error().message;
  ReadAll all = read_all(**r);
  ASSERT_TRUE(all.error.has_value());
  EXPECT_NE(
      all.error->message.find("step 2: epoch 2's shuffle orders 1099511627776 rows, an earlier epoch's 10: "
                              "every epoch of a run shuffles the same training rows"),
      std::string::npos)
      << all.error->message;
}

TEST(TraceUntrusted, ASplitOrAnAccumulationOrderThatIsNoPermutationIsMalformedAtItsStep) {
  EXPECT_EQ(read_error_of(step_with(SplitEvent{"data/split", {0, 2, 3}, {1}})), "");
  std::string m = read_error_of(step_with(SplitEvent{"data/split", {0, 2, 4000000000u}, {1}}));
  EXPECT_NE(m.find("step 0: split rows (train, then test)[2] = 4000000000 is not < 4"), std::string::npos)
      << m;
  m = read_error_of(step_with(SplitEvent{"data/split", {0, 2, 3}, {2}}));
  EXPECT_NE(m.find("step 0: split rows (train, then test)[3] = 2 repeats an earlier entry"),
            std::string::npos)
      << m;
  EXPECT_EQ(read_error_of(step_with(AccumulationOrderEvent{"bn/sum", {1, 0}})), "");
  m = read_error_of(step_with(AccumulationOrderEvent{"bn/sum", {1, 4000000000u}}));
  EXPECT_NE(m.find("step 0: accumulation order at bn/sum[1] = 4000000000 is not < 2"), std::string::npos)
      << m;
}

TEST(TraceUntrusted, ACheckpointPermutationThatIsNoPermutationOrABatchDoneTwiceIsMalformed) {
  TraceStep step;  // events after the last step: none done, the checkpoint's step is 0
  TrainState c = sample_checkpoint(0);
  EXPECT_EQ(read_error_of(step, c), "");
  c.permutation[0] = 3000000000u;
  std::string m = read_error_of(step, c);
  EXPECT_NE(m.find("checkpoint at step 0: permutation[0] = 3000000000 is not < 10"), std::string::npos) << m;
  c = sample_checkpoint(0);
  c.permutation[1] = c.permutation[0];
  m = read_error_of(step, c);
  EXPECT_NE(m.find("checkpoint at step 0: permutation[1] = " + std::to_string(c.permutation[0]) +
                   " repeats an earlier entry"),
            std::string::npos)
      << m;
  c = sample_checkpoint(0);
  c.batches_done = {1, 0, 1};
  m = read_error_of(step, c);
  EXPECT_NE(m.find("checkpoint at step 0: batchesDone names batch 1 twice"), std::string::npos) << m;
}

}  // namespace
}  // namespace trainrr::trace

namespace trainrr::trace {
namespace {

using namespace testing_util;

// A message of `words` zero words after a table of one segment, packed as packing writes zeros: two bytes per
// run of up to 256 words. 128 MiB unpacked from about 128 KiB.
std::vector<uint8_t> zero_runs_message(uint32_t words) {
  // The table's word: a segment count of 0 + 1 (bytes 0..3, zero), the segment's size (bytes 4..7), all
  // written after a tag of 0xf0.
  std::vector<uint8_t> out = {0xf0, static_cast<uint8_t>(words), static_cast<uint8_t>(words >> 8),
                              static_cast<uint8_t>(words >> 16), static_cast<uint8_t>(words >> 24)};
  for (uint32_t left = words; left > 0;) {
    const uint32_t run = std::min<uint32_t>(left, 256);
    out.push_back(0x00);
    out.push_back(static_cast<uint8_t>(run - 1));
    left -= run;
  }
  return out;
}

// Packing turns a run of zero words into two bytes: a message of such runs unpacks to a thousand times the
// bytes it takes, which only a crafted file holds. It is refused before anything is allocated for it.
TEST(TraceHostile, AMessageThatUnpacksToFarMoreThanItTakesIsRefusedBeforeAllocating) {
  const std::vector<uint8_t> bomb = zero_runs_message(uint32_t{1} << 24);
  ASSERT_LT(bomb.size(), 200u << 10);
  auto rec = first_message_after_header(concat(header_bytes(), bomb));
  ASSERT_FALSE(rec);
  EXPECT_NE(
      rec.error().message.find("message unpacks to 134217736 bytes from " + std::to_string(bomb.size()) +
                               " in the file, more than 8 times as many (limit)"),
      std::string::npos)
      << rec.error().message;
  // Small messages may be mostly zeros (a step of zero metrics): below 64 MiB unpacked, any ratio is read.
  auto small = first_message_after_header(concat(header_bytes(), zero_runs_message(1 << 16)));
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error().message.find("unpacks to"), std::string::npos) << small.error().message;
}

// A hand-made checkpoint (format 2, unchained) with one tensor "w" of shape (4, 4) whose only frame declares
// its 64 bytes but whose content is changed: decompressing it fails its checksum.
std::vector<uint8_t> trace_with_undecompressible_checkpoint() {
  std::vector<uint8_t> content(64, 0);
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<uint8_t>(i * 37);
  std::vector<uint8_t> frame(ZSTD_compressBound(content.size()));
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  frame.resize(ZSTD_compress2(cctx, frame.data(), frame.size(), content.data(), content.size()));
  ZSTD_freeCCtx(cctx);
  frame[frame.size() - 1] ^= 0x55;  // the content checksum
  capnp::MallocMessageBuilder message;
  auto c = message.initRoot<schema::Message>().initCheckpoint();
  c.initNames().initNames(0);
  auto t = c.initTensors(1)[0];
  t.setName("w");
  auto shape = t.initShape(2);
  shape.set(0, 4), shape.set(1, 4);
  t.setRawBytes(64);
  t.initChunks(1).set(0, kj::arrayPtr(frame.data(), frame.size()));
  return concat(header_bytes(), packed(message));
}

TEST(TraceReaderPayloads, AReaderWithoutPayloadsLeavesCheckpointTensorsCompressed) {
  const std::vector<uint8_t> bytes = trace_with_undecompressible_checkpoint();
  auto decompressed = first_message_after_header(bytes);
  ASSERT_FALSE(decompressed);
  // A frame whose data fails its checksum was changed after it was written, and says so.
  EXPECT_NE(
      decompressed.error().message.find("checkpoint tensor 'w': its compressed bytes do not match their "
                                        "checksum (zstd: "),
      std::string::npos)
      << decompressed.error().message;
  EXPECT_NE(decompressed.error().message.find("the file is damaged, not cut"), std::string::npos);
  // Never decompressed, the frame is checked from its header only: the shape and size agree.
  auto summary = first_message_after_header(bytes, without_payloads());
  ASSERT_TRUE(summary) << summary.error().message;
  const auto& c = std::get<TraceCheckpoint>((*summary)->value);
  ASSERT_EQ(c.tensors.size(), 1u);
  EXPECT_EQ(c.tensors[0].value.shape, (Shape{4, 4}));
  EXPECT_TRUE(c.tensors[0].value.data.empty());
}

TEST(TraceReaderPayloads, CheckpointTensorsOutsideTheModelAreRefusedBeforeTheyAreDecompressed) {
  const std::vector<uint8_t> bytes = trace_with_undecompressible_checkpoint();
  for (const auto& [model, why] :
       {std::pair{std::map<std::string, Shape>{{"w", {2, 8}}},
                  std::string(
                      "checkpoint tensor 'w': has shape (4, 4), the model the configuration builds (2, 8)")},
        std::pair{
            std::map<std::string, Shape>{{"v", {4, 4}}},
            std::string("checkpoint tensor 'w': is no tensor of the model the configuration builds")}}) {
    auto r = TraceReader::open_memory(bytes, "model.trr");
    ASSERT_TRUE(r) << r.error().message;
    (*r)->expect_tensors(model);
    auto rec = (*r)->next();
    ASSERT_FALSE(rec);
    EXPECT_NE(rec.error().message.find(why), std::string::npos) << rec.error().message;  // not a zstd error
  }
}

TEST(TraceReaderPayloads, AReaderWithoutPayloadsLeavesEmbeddedDataCompressedAndSaysItIsEmbedded) {
  const TraceHeader h = sample_header();
  std::vector<uint8_t> other = h.datasets[0].embedded;
  other[0] ^= 1;
  const std::vector<uint8_t> changed = zstd_frame(other);
  const std::vector<uint8_t> bytes = header_with_embedding([&](schema::Dataset::Builder d) {
    d.initEmbeddedZstd(1).set(0, kj::arrayPtr(changed.data(), changed.size()));
  });
  EXPECT_FALSE(TraceReader::open_memory(bytes, "embedded.trr"));  // decompressed, it fails its digest
  auto r = TraceReader::open_memory(bytes, "embedded.trr", without_payloads());
  ASSERT_TRUE(r) << r.error().message;
  const DatasetInfo& d = (*r)->header().datasets[0];
  EXPECT_TRUE(d.embedded.empty());
  EXPECT_TRUE(d.embedded_not_read);
  EXPECT_TRUE(d.is_embedded());
  // Its size is still checked against the frames' headers and the limit, before anything else.
  ReaderLimits small = without_payloads();
  small.max_embedded_bytes = h.datasets[0].size_bytes - 1;
  EXPECT_FALSE(TraceReader::open_memory(bytes, "embedded.trr", small));
}

}  // namespace
}  // namespace trainrr::trace

// --- Each message against those before it: the order a recording writes, and what its header promises ---

namespace trainrr::trace {
namespace {

using namespace testing_util;

using Message = std::variant<TraceStep, TraceEpoch, TrainState>;

// Writes `messages` after `header` and `footer` (its counts are the writer's), then reads the file with
// `limits`: "" when it reads to its end, else the error, whose offset must be that of message `damaged_at`
// (the footer's when it is messages.size()).
std::string order_error(const std::vector<Message>& messages, size_t damaged_at,
                        const TraceHeader& header = sample_header(), const ReaderLimits& limits = {},
                        const TraceFooter& footer = TraceFooter{false, "stopped", 0, 0, {}}) {
  const std::string path = temp_path("order.trr");
  std::vector<uint64_t> offsets;
  {
    auto w = TraceWriter::create(path, header);
    if (!w) return "writer: " + w.error().message;
    for (const Message& m : messages) {
      offsets.push_back((*w)->bytes_written());
      Status s = std::visit(
          [&](const auto& v) -> Status {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, TraceStep>) return (*w)->write_step(v);
            if constexpr (std::is_same_v<T, TraceEpoch>) return (*w)->write_epoch(v);
            if constexpr (std::is_same_v<T, TrainState>) return (*w)->write_checkpoint(v);
          },
          m);
      if (!s) return "writer: " + s.error().message;
    }
    offsets.push_back((*w)->bytes_written());  // the footer's: damaged_at messages.size()
    if (Status s = (*w)->finish(footer); !s) return "writer: " + s.error().message;
  }
  auto r = TraceReader::open(path, limits);
  std::remove(path.c_str());
  if (!r) return r.error().message;
  ReadAll all = read_all(**r);
  if (!all.error) return "";
  EXPECT_FALSE((*r)->stopped()->truncated);
  EXPECT_LT(damaged_at, offsets.size()) << all.error->message;
  if (damaged_at < offsets.size()) {
    EXPECT_EQ((*r)->stopped()->offset, offsets[damaged_at]) << all.error->message;
    EXPECT_EQ(all.records.size(), damaged_at) << "every message before it is read";
  }
  return all.error->message;
}

TraceEpoch epoch_end(int epoch) { return TraceEpoch{epoch, {{"loss", 0.5}}}; }

bool says(const std::string& error, const std::string& part) {
  return error.find(part) != std::string::npos && error.find("(the file is damaged)") != std::string::npos;
}

TEST(TraceOrder, TheRecordedOrderReadsCleanAndAStepLeftOutRenumberedOrOutOfItsEpochIsDamage) {
  EXPECT_EQ(order_error({sample_checkpoint(0), sample_step(0), sample_step(1), epoch_end(0), sample_step(2),
                         sample_checkpoint(3), sample_step(3), epoch_end(1), sample_checkpoint(4)},
                        0),
            "");
  std::string e = order_error({sample_step(0), sample_step(1), epoch_end(0), sample_step(3)}, 3);
  EXPECT_TRUE(says(e, "step 3 follows step 1, where step 2 was due")) << e;
  TraceStep renumbered = sample_step(2);
  renumbered.index = 600;
  e = order_error({sample_step(0), sample_step(1), epoch_end(0), renumbered}, 3);
  EXPECT_TRUE(says(e, "step 600 follows step 1, where step 2 was due")) << e;
  e = order_error({sample_step(1)}, 0);
  EXPECT_TRUE(says(e, "step 1 is the first step, where step 0 was due")) << e;
  e = order_error({sample_step(0), sample_step(1), sample_step(2)}, 2);
  EXPECT_TRUE(says(e, "step 2 says it is in epoch 2, but after 0 ended epochs the steps are in epoch 1"))
      << e;
  e = order_error({sample_step(0), sample_step(1), epoch_end(0), epoch_end(0)}, 3);
  EXPECT_TRUE(says(e, "the end of epoch 1 follows the end of epoch 1, where the end of epoch 2 was due"))
      << e;
  e = order_error({sample_step(0), sample_step(1), epoch_end(0), epoch_end(1)}, 3);
  EXPECT_TRUE(says(e, "the end of epoch 2 follows no step of that epoch")) << e;
}

TEST(TraceOrder, ACheckpointAtAnotherStepOrNotHoldingTheParametersOfTheStepBeforeItIsDamage) {
  const std::vector<Message> start = {sample_step(0), sample_step(1), epoch_end(0), sample_step(2)};
  auto with = [&](TrainState c) {
    std::vector<Message> m = start;
    m.push_back(std::move(c));
    return m;
  };
  for (const ReaderLimits& limits : {ReaderLimits{}, without_payloads()}) {
    EXPECT_EQ(order_error(with(sample_checkpoint(3)), 0, sample_header(), limits), "");
    std::string e = order_error(with(sample_checkpoint(2)), 4, sample_header(), limits);
    EXPECT_TRUE(
        says(e, "checkpoint at step 2 (taken after 2 steps) follows step 2: a checkpoint there is at step 3"))
        << e;
    TrainState other_epoch = sample_checkpoint(3);
    other_epoch.batch_in_epoch = 0;
    e = order_error(with(other_epoch), 4, sample_header(), limits);
    EXPECT_TRUE(
        says(e,
             "checkpoint at step 3 (taken after 3 steps) says 1 epochs ended and 0 batches of the next "
             "done, where the messages before it say 1 and 1"))
        << e;
    TrainState other_bias = sample_checkpoint(3);
    other_bias.tensors[1].value.data[0] += 1;
    e = order_error(with(other_bias), 4, sample_header(), limits);
    EXPECT_TRUE(
        says(e,
             "checkpoint at step 3: its parameters are not those step 2 recorded after its update (the "
             "digest of 'dense_1.bias' differs)"))
        << e;
    TrainState no_bias = sample_checkpoint(3);
    no_bias.tensors[1].name = "dense_9.bias";
    e = order_error(with(no_bias), 4, sample_header(), limits);
    EXPECT_TRUE(says(e, "it holds no parameter 'dense_1.bias'")) << e;
  }
}

TEST(TraceOrder, AtLevelStepTheCheckpointsParametersAreCheckedAgainstTheOneDigestOverAll) {
  TraceHeader h = sample_header();
  h.level = ProbeLevel::step;
  auto at_level_step = [](TraceStep s) {
    std::erase_if(s.events, [](const Event& e) { return std::holds_alternative<ProbeEvent>(e); });
    s.end->params = parameter_digests(s.end->params, ProbeLevel::step);
    s.kernels = step_kernels(s.kernels->launches, s.kernels->dropped, ProbeLevel::step);
    return s;
  };
  const std::vector<Message> start = {at_level_step(sample_step(0)), at_level_step(sample_step(1)),
                                      epoch_end(0), at_level_step(sample_step(2))};
  auto with = [&](TrainState c) {
    std::vector<Message> m = start;
    m.push_back(std::move(c));
    return m;
  };
  // The parameters lead the model's tensors, which a layer's own state follows (the checkpoint does not say
  // where the parameters end).
  TrainState c = sample_checkpoint(3);
  c.tensors.insert(c.tensors.begin() + 2, {"batch_normalization_1.moving_mean", Tensor({3}, 0.25f)});
  EXPECT_EQ(order_error(with(c), 0, h), "");
  EXPECT_EQ(order_error(with(c), 0, h, without_payloads()), "");
  c.tensors[0].value.data[5] = 7;
  std::string e = order_error(with(c), 4, h);
  EXPECT_TRUE(says(e,
                   "checkpoint at step 3: its parameters are not those step 2 recorded after its update (the "
                   "digest over all of them differs)"))
      << e;
}

TEST(TraceOrder, AStepThatDoesNotRecordWhatItsHeadersLevelRecordsIsDamage) {
  TraceHeader layer = sample_header();
  layer.level = ProbeLevel::layer;
  std::string e = order_error({sample_step(0)}, 0, layer);
  EXPECT_TRUE(
      says(e,
           "step 0 holds a probe of dense_1/matmul.fwd:out, which a trace recorded at level layer (as "
           "its header says) does not hold"))
      << e;
  TraceStep no_probes = sample_step(0);
  std::erase_if(no_probes.events, [](const Event& ev) { return std::holds_alternative<ProbeEvent>(ev); });
  e = order_error({no_probes}, 0);
  EXPECT_TRUE(
      says(e, "step 0 holds none of the probes a trace recorded at level op (as its header says) holds"))
      << e;
  TraceHeader step = sample_header();
  step.level = ProbeLevel::step;
  no_probes.kernels.reset();
  e = order_error({no_probes}, 0, step);
  EXPECT_TRUE(says(e,
                   "step 0 holds a digest per parameter, which a trace recorded at level step (as its header "
                   "says) does not"))
      << e;
}

// A recording writes the initial state, a checkpoint every checkpointEvery steps and the final state before
// the footer: a checkpoint off that schedule that a message other than the footer follows is damage there.
TEST(TraceOrder, ACheckpointTheHeaderDoesNotScheduleIsDamageUnlessTheFooterFollowsIt) {
  TraceHeader none = sample_header();
  none.checkpoint_every = 0;
  const std::vector<Message> start = {sample_checkpoint(0), sample_step(0), sample_step(1),
                                      epoch_end(0),         sample_step(2), sample_checkpoint(3)};
  EXPECT_EQ(order_error(start, 0, none), "") << "the final state";
  std::vector<Message> more = start;
  more.push_back(sample_step(3));
  EXPECT_EQ(order_error(more, 0), "") << "checkpointEvery 3 schedules it";
  std::string e = order_error(more, 6, none);
  EXPECT_TRUE(
      says(e,
           "step 3 follows the checkpoint at step 3, which the header's checkpointEvery (0: no periodic "
           "checkpoints) does not schedule: a checkpoint off that schedule is the final state, which "
           "only the footer follows"))
      << e;
  TraceHeader two = sample_header();
  two.checkpoint_every = 2;
  e = order_error(more, 6, two);
  EXPECT_TRUE(
      says(e,
           "step 3 follows the checkpoint at step 3, which the header's checkpointEvery (2: one every 2 "
           "steps) does not schedule"))
      << e;
  more = start;
  more.push_back(sample_checkpoint(3));
  e = order_error(more, 6, none);
  EXPECT_TRUE(says(e, "the checkpoint at step 3 follows the checkpoint at step 3, which the header's")) << e;
}

// The footer against itself and the messages: "completed" goes with the end reason a completed run writes,
// and with the state after the last step, which every recording that completes writes before its footer.
TEST(TraceFooterClaims, ACompletedFlagTheEndReasonContradictsIsDamageAtTheFooter) {
  const std::vector<Message> steps = {sample_step(0), sample_step(1), epoch_end(0), sample_step(2),
                                      sample_checkpoint(3)};
  EXPECT_EQ(order_error(steps, 0, sample_header(), {}, TraceFooter{false, "interrupted at step 3", 0, 0, {}}),
            "");
  std::string e = order_error(steps, 5, sample_header(), {}, TraceFooter{false, "completed", 0, 0, {}});
  EXPECT_TRUE(
      says(e,
           "footer.completed is false but its endReason is completed: a recording writes endReason "
           "completed exactly when the run completed, so the footer was changed after it was written"))
      << e;
  e = order_error(steps, 5, sample_header(), {}, TraceFooter{true, "interrupted at step 3", 0, 0, {}});
  EXPECT_TRUE(says(e, "footer.completed is true but its endReason is 'interrupted at step 3'")) << e;
}

TEST(TraceFooterClaims, ACompletedTraceWithoutItsFinalStateIsDamageAtTheFooter) {
  TraceHeader h = sample_header();
  h.config_overrides.push_back(
      "train.batch_size=5");  // the 10 rows each epoch shuffles: 2 epochs of 2 batches
  const std::vector<Message> run = {sample_checkpoint(0), sample_step(0),       sample_step(1), epoch_end(0),
                                    sample_step(2),       sample_checkpoint(3), sample_step(3), epoch_end(1)};
  const TraceFooter completed{true, "completed", 0, 0, {}};
  std::vector<Message> whole = run;
  whole.push_back(sample_checkpoint(4));
  EXPECT_EQ(order_error(whole, 0, h, {}, completed), "");
  std::string e = order_error(run, run.size(), h, {}, completed);
  EXPECT_TRUE(
      says(e,
           "footer.completed is true, but the file holds no final state (a checkpoint at step 4, after "
           "its 4 complete steps): its last checkpoint is at step 3"))
      << e;
  // A run stopped early need not hold it (a recording killed, or one that failed, writes none).
  EXPECT_EQ(order_error(run, 0, h, {}, TraceFooter{false, "error: out of memory", 0, 0, {}}), "");
}

// A footer that says the run completed is checked against epochs times batches: a product past int64_t's
// range is no count of steps (it once wrapped, to as few as a file may hold).
TEST(TraceSchedule, StepsAreEpochsTimesBatchesOrNoneWhereTheProductOverflows) {
  EXPECT_EQ((Schedule{2, 15}.steps()), std::optional<int64_t>(30));
  EXPECT_EQ((Schedule{0, 15}.steps()), std::optional<int64_t>(0));
  EXPECT_EQ((Schedule{1, INT64_MAX}.steps()), std::optional<int64_t>(INT64_MAX));
  EXPECT_EQ((Schedule{4, (int64_t{1} << 62) + 15}.steps()), std::nullopt);  // wraps to 60
  EXPECT_EQ((Schedule{2, int64_t{1} << 62}.steps()), std::nullopt);         // wraps to INT64_MIN
  EXPECT_EQ((Schedule{INT32_MAX, INT64_MAX / 2}.steps()), std::nullopt);
}

}  // namespace
}  // namespace trainrr::trace
