// The C interface of libmowe_spm, a small module that wraps SentencePiece.
//
// Why a module: Debian's libsentencepiece.so bundles its own protobuf-lite 3.14 and exports its
// google::protobuf symbols, so a process that also links the system libprotobuf (every program
// here: configs are protobuf) aborts at start-up ("compiled against version 3.14.0 ...", see
// google/sentencepiece#383 and #1158). data/tokenizer.cc loads this module with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND), so SentencePiece binds to its bundled protobuf and the rest
// of the process never sees it. Only plain C types cross the boundary.
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mowe_spm mowe_spm;

// Callbacks: the next training sentence (returns 0 at the end); bytes or ids handed back.
typedef int (*mowe_spm_next_fn)(void* ctx, const char** text, size_t* size);
typedef void (*mowe_spm_bytes_fn)(void* ctx, const char* bytes, size_t size);
typedef void (*mowe_spm_ids_fn)(void* ctx, const int* ids, size_t count);

// Every function that can fail returns 0 on success, or -1 with a message written to error.
struct mowe_spm_api {
  int (*train)(const char* const* keys, const char* const* values, int num_flags,
               mowe_spm_next_fn next, void* next_ctx, mowe_spm_bytes_fn emit, void* emit_ctx,
               char* error, size_t error_size);
  mowe_spm* (*load)(const char* model, size_t size, char* error, size_t error_size);
  void (*free)(mowe_spm* spm);
  int (*piece_size)(const mowe_spm* spm);
  const char* (*id_to_piece)(const mowe_spm* spm, int id, size_t* size);
  int (*piece_to_id)(const mowe_spm* spm, const char* piece, size_t size);
  // 0 normal or user defined, 1 unknown, 2 control, 4 unused, 5 byte.
  int (*piece_type)(const mowe_spm* spm, int id);
  int (*special_id)(const mowe_spm* spm, int which);  // 0 pad, 1 eos, 2 unk, 3 bos
  int (*encode)(const mowe_spm* spm, const char* text, size_t size, mowe_spm_ids_fn emit, void* ctx,
                char* error, size_t error_size);
  int (*decode)(const mowe_spm* spm, const int* ids, size_t count, mowe_spm_bytes_fn emit,
                void* ctx, char* error, size_t error_size);
  // Emits the serialized `model` with `count` user-defined pieces appended at the top of its
  // vocabulary, in order (ids piece_size, piece_size + 1, ...), after checking that the result
  // loads and gives them those ids. Fails when a piece is already in the model.
  int (*append_pieces)(const char* model, size_t size, const char* const* pieces,
                       const size_t* piece_sizes, size_t count, mowe_spm_bytes_fn emit, void* ctx,
                       char* error, size_t error_size);
};

// The one exported symbol: fills the table of functions above.
void mowe_spm_get_api(struct mowe_spm_api* api);

#ifdef __cplusplus
}
#endif
