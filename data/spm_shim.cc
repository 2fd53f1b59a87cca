// libmowe_spm: SentencePiece behind the C interface of spm_shim.h (see there for why).
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/spm_shim.h"

struct mowe_spm {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

int fail(const std::string& message, char* error, size_t error_size) {
  if (error && error_size > 0) {
    size_t n = std::min(message.size(), error_size - 1);
    std::memcpy(error, message.data(), n);
    error[n] = '\0';
  }
  return -1;
}

class CallbackIterator : public sentencepiece::SentenceIterator {
 public:
  CallbackIterator(mowe_spm_next_fn next, void* ctx) : next_(next), ctx_(ctx) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    const char* text = nullptr;
    size_t size = 0;
    done_ = next_(ctx_, &text, &size) == 0;
    if (!done_) value_.assign(text, size);
  }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  mowe_spm_next_fn next_;
  void* ctx_;
  bool done_ = false;
  std::string value_;
};

int train(const char* const* keys, const char* const* values, int num_flags, mowe_spm_next_fn next,
          void* next_ctx, mowe_spm_bytes_fn emit, void* emit_ctx, char* error, size_t error_size) {
  std::unordered_map<std::string, std::string> flags;
  for (int i = 0; i < num_flags; ++i) flags[keys[i]] = values[i];
  // Not a trainer flag: the seed of SentencePiece's sentence sampling.
  if (auto seed = flags.find("mowe_seed"); seed != flags.end()) {
    sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned>(std::stoull(seed->second)));
    flags.erase(seed);
  }
  CallbackIterator sentences(next, next_ctx);
  std::string model;
  auto status = sentencepiece::SentencePieceTrainer::Train(flags, &sentences, &model);
  if (!status.ok()) return fail(status.ToString(), error, error_size);
  emit(emit_ctx, model.data(), model.size());
  return 0;
}

mowe_spm* load(const char* model, size_t size, char* error, size_t error_size) {
  auto* spm = new mowe_spm;
  auto status = spm->processor.LoadFromSerializedProto(std::string_view(model, size));
  if (!status.ok()) {
    delete spm;
    fail(status.ToString(), error, error_size);
    return nullptr;
  }
  return spm;
}

void free_spm(mowe_spm* spm) {
  delete spm;
}

int piece_size(const mowe_spm* spm) {
  return spm->processor.GetPieceSize();
}

const char* id_to_piece(const mowe_spm* spm, int id, size_t* size) {
  const std::string& piece = spm->processor.IdToPiece(id);
  *size = piece.size();
  return piece.data();
}

int piece_to_id(const mowe_spm* spm, const char* piece, size_t size) {
  return spm->processor.PieceToId(std::string_view(piece, size));
}

int piece_type(const mowe_spm* spm, int id) {
  const auto& p = spm->processor;
  if (p.IsUnknown(id)) return 1;
  if (p.IsControl(id)) return 2;
  if (p.IsUnused(id)) return 4;
  if (p.IsByte(id)) return 5;
  return 0;
}

int special_id(const mowe_spm* spm, int which) {
  const auto& p = spm->processor;
  switch (which) {
    case 0:
      return p.pad_id();
    case 1:
      return p.eos_id();
    case 2:
      return p.unk_id();
    default:
      return p.bos_id();
  }
}

int encode(const mowe_spm* spm, const char* text, size_t size, mowe_spm_ids_fn emit, void* ctx,
           char* error, size_t error_size) {
  std::vector<int> ids;
  auto status = spm->processor.Encode(std::string_view(text, size), &ids);
  if (!status.ok()) return fail(status.ToString(), error, error_size);
  emit(ctx, ids.data(), ids.size());
  return 0;
}

int decode(const mowe_spm* spm, const int* ids, size_t count, mowe_spm_bytes_fn emit, void* ctx,
           char* error, size_t error_size) {
  std::string text;
  auto status = spm->processor.Decode(std::vector<int>(ids, ids + count), &text);
  if (!status.ok()) return fail(status.ToString(), error, error_size);
  emit(ctx, text.data(), text.size());
  return 0;
}

// Protocol Buffers wire format, enough to write ModelProto.pieces entries: Debian ships no
// sentencepiece_model.pb.h, and a serialized message followed by more of its repeated field
// parses as the message with those entries appended (what SentencePiece's own tools and T5's
// seqio do through the generated class).
void put_varint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// ModelProto.pieces (field 1) = SentencePiece{piece (1), score (2) = 0, type (3) = USER_DEFINED}.
void put_user_defined_piece(std::string_view piece, std::string* out) {
  constexpr int kUserDefined = 4;
  std::string entry;
  entry.push_back(0x0a);  // field 1, length-delimited
  put_varint(piece.size(), &entry);
  entry.append(piece);
  entry.push_back(0x15);  // field 2, 32-bit
  entry.append(4, '\0');  // score 0.0f
  entry.push_back(0x18);  // field 3, varint
  put_varint(kUserDefined, &entry);
  out->push_back(0x0a);
  put_varint(entry.size(), out);
  out->append(entry);
}

int append_pieces(const char* model, size_t size, const char* const* pieces,
                  const size_t* piece_sizes, size_t count, mowe_spm_bytes_fn emit, void* ctx,
                  char* error, size_t error_size) {
  sentencepiece::SentencePieceProcessor original;
  auto status = original.LoadFromSerializedProto(std::string_view(model, size));
  if (!status.ok()) return fail(status.ToString(), error, error_size);
  const int first = original.GetPieceSize();
  std::string out(model, size);
  for (size_t i = 0; i < count; ++i) {
    const std::string_view piece(pieces[i], piece_sizes[i]);
    if (original.PieceToId(piece) != original.unk_id() ||
        piece == original.IdToPiece(original.unk_id()))
      return fail("the model already has the piece " + std::string(piece), error, error_size);
    put_user_defined_piece(piece, &out);
  }
  sentencepiece::SentencePieceProcessor extended;
  status = extended.LoadFromSerializedProto(out);
  if (!status.ok()) return fail(status.ToString(), error, error_size);
  for (size_t i = 0; i < count; ++i)
    if (extended.PieceToId(std::string_view(pieces[i], piece_sizes[i])) !=
        first + static_cast<int>(i))
      return fail("an appended piece did not get the next id", error, error_size);
  emit(ctx, out.data(), out.size());
  return 0;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) void mowe_spm_get_api(mowe_spm_api* api) {
  api->train = train;
  api->load = load;
  api->free = free_spm;
  api->piece_size = piece_size;
  api->id_to_piece = id_to_piece;
  api->piece_to_id = piece_to_id;
  api->piece_type = piece_type;
  api->special_id = special_id;
  api->encode = encode;
  api->decode = decode;
  api->append_pieces = append_pieces;
}
