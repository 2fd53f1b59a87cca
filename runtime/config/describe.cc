// Text generated from the schema: the resolved config, --help and the configuration reference.
#include <fmt/format.h>
#include <google/protobuf/text_format.h>

#include <sstream>

#include "runtime/config/config.h"
#include "runtime/config/schema.h"
#include "runtime/proto/options.pb.h"

namespace mowe::config {
namespace {

void set_default(pb::Message* m, const pb::FieldDescriptor* f) {
  const pb::Reflection* r = m->GetReflection();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return r->SetInt32(m, f, f->default_value_int32());
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return r->SetInt64(m, f, f->default_value_int64());
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return r->SetUInt32(m, f, f->default_value_uint32());
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return r->SetUInt64(m, f, f->default_value_uint64());
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      return r->SetDouble(m, f, f->default_value_double());
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return r->SetFloat(m, f, f->default_value_float());
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return r->SetBool(m, f, f->default_value_bool());
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return r->SetEnum(m, f, f->default_value_enum());
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return r->SetString(m, f, f->default_value_string());
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return;
  }
}

void fill_defaults(pb::Message* m) {
  const pb::Reflection* r = m->GetReflection();
  const pb::Descriptor* type = m->GetDescriptor();
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* f = type->field(i);
    bool message = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    if (f->is_repeated()) {
      if (!message) continue;
      for (int k = 0; k < r->FieldSize(*m, f); ++k)
        fill_defaults(r->MutableRepeatedMessage(m, f, k));
    } else if (message) {
      fill_defaults(r->MutableMessage(m, f));
    } else if (!r->HasField(*m, f)) {
      set_default(m, f);
    }
  }
}

// Wraps text to `width` columns, every line starting with `indent` spaces.
std::string wrap(const std::string& text, size_t indent, size_t width = 100) {
  std::istringstream words(text);
  std::string out, line, word;
  while (words >> word) {
    if (!line.empty() && indent + line.size() + 1 + word.size() > width) {
      out += std::string(indent, ' ') + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) out += std::string(indent, ' ') + line + "\n";
  return out;
}

// "GELU: ...; GATED_GELU: ..." from the enum values' help.
std::string enum_value_help(const pb::EnumDescriptor* type, const std::string& quote) {
  std::vector<std::string> parts;
  for (int i = 0; i < type->value_count(); ++i) {
    const pb::EnumValueDescriptor* v = type->value(i);
    parts.push_back(quote + v->name() + quote + ": " + v->options().GetExtension(value_help));
  }
  return join(parts, " ");
}

// "(default 768; >= 1)" or "" for fields with neither.
std::string default_and_range(const pb::FieldDescriptor* f) {
  std::vector<std::string> parts;
  if (!default_text(f).empty()) parts.push_back("default " + default_text(f));
  for (const std::string& s : {range_text(f), size_text(f)})
    if (!s.empty()) parts.push_back(f->is_repeated() && s == range_text(f) ? "each " + s : s);
  return parts.empty() ? "" : "(" + join(parts, "; ") + ")";
}

std::string field_help(const pb::FieldDescriptor* f) {
  std::string text = help_of(f);
  if (f->enum_type()) text += " " + enum_value_help(f->enum_type(), "");
  return text;
}

const char* kFlagsHelp = R"(Flags:
  --config PATH        Text-format config file (the shipped ones are in configs/).
  --set FIELD=VALUE    Override one config field after the file is read; repeatable. Lists as
                       [1, 2], list elements as field[i], enums by value name, messages in text
                       format ({ num_blocks: 4 }).
  --log-level LEVEL    trace, debug, info, warn, error or off (default info).
  --log-all-ranks      Log info lines from every rank, not only from rank 0.
  -h, --help           Print this help.
)";

// Escapes what would end a table cell or start an HTML tag ("<extra_id_0>").
std::string markdown_cell(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '|' ? "\\|" : c == '<' ? "&lt;" : std::string(1, c);
  return out;
}

std::string reference_row(const std::string& path, const pb::FieldDescriptor* f) {
  std::string type = f->is_repeated() ? "repeated " + type_name(f) : type_name(f);
  std::string allowed = f->enum_type() ? enum_value_names(f->enum_type()) : range_text(f);
  if (!size_text(f).empty()) allowed += (allowed.empty() ? "" : "; ") + size_text(f);
  std::string description = help_of(f);
  if (f->enum_type()) description += " " + enum_value_help(f->enum_type(), "`");
  if (f->message_type()) description += " See `" + path + (f->is_repeated() ? "[i]`." : "`.");
  std::string def = default_text(f).empty() ? "" : "`" + default_text(f) + "`";
  return fmt::format("| `{}` | {} | {} | {} | {} |\n", path, type, def, markdown_cell(allowed),
                     markdown_cell(description));
}

// One section per message: its fields as table rows, nested messages as later sections.
void reference_section(const std::string& title, const std::string& intro,
                       const pb::Descriptor* type, std::string* out) {
  *out += fmt::format("\n## `{}`\n\n{}\n\n", title, intro);
  *out += "| Field | Type | Default | Allowed | Description |\n| --- | --- | --- | --- | --- |\n";
  std::string prefix = title == "Config" ? "" : title + ".";
  for (int i = 0; i < type->field_count(); ++i)
    *out += reference_row(prefix + type->field(i)->name(), type->field(i));
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* f = type->field(i);
    if (!f->message_type()) continue;
    std::string path = prefix + f->name() + (f->is_repeated() ? "[i]" : "");
    std::string kind = f->is_repeated() ? "Each element of" : "Fields of";
    reference_section(path,
                      fmt::format("{} `{}` ({}): {}", kind, prefix + f->name(),
                                  f->message_type()->name(), help_of(f)),
                      f->message_type(), out);
  }
}

const char* kReferencePreface = R"(# Configuration reference

<!-- Generated from runtime/proto/config.proto by `mowe_config --reference`; do not edit.
     Regenerate with: build/bin/mowe_config --reference > docs/configuration.md -->

A configuration is a text-format protobuf file (`configs/*.textproto`) of the `Config` message
below. Every field is optional and has the default shown. Any field can be overridden on the
command line of every program with `--set path.to.field=value`, applied in order after the file
is read:

    mowe_pretrain --config configs/wordnet_small.textproto \
      --set training.steps=50 --set training.optimizer=ADAFACTOR \
      --set 'model.mowe.encoder_layers=[0, 1]' --set 'model.mowe.buckets[0].num_blocks=8'

Lists are written `[1, 2]`, list elements `field[i]` (`[size]` appends), enums by value name, and
whole messages in text format (`--set 'model.mowe.buckets=[{num_routing_ids: 100}, {}]'`); quote
arguments with brackets or spaces so that the shell passes them unchanged.

The whole configuration is validated in one step after the overrides: every value against the
range given here, then the rules relating fields (MoWE layer indices below the number of blocks,
buckets fitting in the routing vocabulary, enough sentinels for the corrupted spans, ...), which
live with the module that owns the field (`model/config_rules.cc`, `data/config_rules.cc`,
`launch/train/config_rules.cc`, assembled by `launch/train/config_rules.h`). An error is one
line naming the file position or the `--set` argument, the field and what is allowed. `mowe_config --config FILE` checks a config and prints it with every default filled in;
each program's `--help` lists the same fields.
)";

}  // namespace

Config with_defaults(const Config& config) {
  Config out = config;
  fill_defaults(&out);
  return out;
}

std::string to_text(const Config& config) {
  pb::TextFormat::Printer printer;
  printer.SetUseShortRepeatedPrimitives(true);
  std::string text;
  printer.PrintToString(with_defaults(config), &text);
  return text;
}

std::string help_text(const std::string& program, const std::string& usage) {
  std::string trimmed = usage.substr(0, usage.find_last_not_of('\n') + 1);
  std::string out = fmt::format("Usage: {} {}\n\n{}", program, trimmed, kFlagsHelp);
  out +=
      "\nConfig fields, each settable with --set (defaults and allowed values in parentheses):\n";
  for_each_schema_field(
      Config::descriptor(), "", [&](const std::string& path, const pb::FieldDescriptor* f) {
        if (f->message_type() && !f->is_repeated()) {
          out += fmt::format("\n{} ({}): {}\n", path, f->message_type()->name(), help_of(f));
          return;
        }
        std::string head = fmt::format("  --set {}={}", path, value_placeholder(f));
        std::string extra = default_and_range(f);
        out += head + (extra.empty() ? "" : "  " + extra) + "\n";
        out += wrap(field_help(f), 6);
      });
  return out;
}

std::string reference_markdown() {
  std::string out = kReferencePreface;
  reference_section("Config", "The top-level message of a config file.", Config::descriptor(),
                    &out);
  return out;
}

}  // namespace mowe::config
