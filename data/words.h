// The words of running text, as the routing vocabulary counts its candidates and a word list
// (word_list.h) counts its entries: lower-cased runs of ASCII letters and digits and of non-ASCII
// bytes (so UTF-8 letters stay inside words); everything else separates.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mowe::data {

// Calls emit with each word of `text`: "Alan Mathison_Turing's" -> alan, mathison, turing, s.
void for_each_word(std::string_view text, const std::function<void(std::string_view)>& emit);
std::vector<std::string> split_words(std::string_view text);

}  // namespace mowe::data
