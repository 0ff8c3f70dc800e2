// One function per runtime (explain_openvino.cpp, explain_onnxruntime.cpp; CMake builds one of them).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "npy.hpp"

// Runs a compiled model (onnx-lrp's output) on the CPU: `input` feeds the model's first input, `others` its other
// inputs by name (an attention mask), `target` fills the int64 [N] input "target" (-1: the top class). Returns the
// output "relevance_<first input's name>" (float32, the input's shape).
Array explain(const std::string& model_path, const Array& input,
              const std::vector<std::pair<std::string, Array>>& others, int64_t target);
