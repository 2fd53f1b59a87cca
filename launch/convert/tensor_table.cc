#include "launch/convert/tensor_table.h"

#include "launch/convert/safetensors_io.h"
#include "launch/convert/tensor_bytes.h"
#include "runtime/check.h"
#include "runtime/checkpoint/layout.h"

namespace mowe::convert {

namespace ckpt = mowe::checkpoint;

std::vector<std::string> split_text(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t begin = 0;
  while (true) {
    const size_t end = s.find(sep, begin);
    parts.push_back(s.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) return parts;
    begin = end + 1;
  }
}

std::vector<std::string> nonempty_lines(const std::string& s) {
  std::vector<std::string> out;
  for (std::string& l : split_text(s, '\n'))
    if (!l.empty()) out.push_back(std::move(l));
  return out;
}

std::string table_line(const TableRow& r) {
  return fmt::format("{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", r.name, r.export_name,
                     dtype_name(r.dtype), fmt::join(dims(r.shape), ","), r.file, r.offset,
                     r.chunk_rows, r.chunk_stride, r.transpose ? 1 : 0);
}

std::vector<TableRow> parse_table(const std::string& text, const std::string& file) {
  std::vector<TableRow> rows;
  int line_no = 0;
  for (const std::string& line : nonempty_lines(text)) {
    ++line_no;
    auto bad = [&](const std::string& what) {
      return Error(
          fmt::format("{}: __metadata__ {} line {}: {}", file, kMetaTensors, line_no, what));
    };
    const std::vector<std::string> f = split_text(line, '\t');
    if (f.size() != 9) throw bad(fmt::format("{} fields, 9 expected", f.size()));
    TableRow r;
    r.name = f[0];
    r.export_name = f[1];
    if (r.name.empty() || r.export_name.empty()) throw bad("an empty tensor name");
    if (!ckpt::parse_dtype(f[2], &r.dtype)) throw bad(fmt::format("unknown dtype '{}'", f[2]));
    std::vector<int64_t> d;
    if (!f[3].empty()) {
      for (const std::string& x : split_text(f[3], ',')) {
        int64_t v;
        if (!parse_number(x, &v) || v < 0)
          throw bad(fmt::format("shape '{}' is not a list of dimensions", f[3]));
        d.push_back(v);
      }
    }
    if (d.size() > static_cast<size_t>(Shape::kMaxDims))
      throw bad(fmt::format("{} dimensions, at most {}", d.size(), Shape::kMaxDims));
    r.shape = ckpt::make_shape(d);
    r.file = f[4];
    if (!parse_number(f[5], &r.offset) || !parse_number(f[6], &r.chunk_rows) ||
        !parse_number(f[7], &r.chunk_stride))
      throw bad("offset, chunk_rows or chunk_stride is not an integer");
    if (f[8] != "0" && f[8] != "1") throw bad("the transpose flag is neither 0 nor 1");
    r.transpose = f[8] == "1";
    if (r.transpose && d.size() != 2) throw bad("only a matrix can be stored transposed");
    rows.push_back(std::move(r));
  }
  if (rows.empty())
    throw Error(fmt::format("{}: __metadata__ {} lists no tensor", file, kMetaTensors));
  return rows;
}

}  // namespace mowe::convert
