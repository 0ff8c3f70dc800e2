// The OpenVINO runtime (C++ API, CPU plugin). Its ONNX frontend reads the compiled .onnx file directly.
#include <openvino/openvino.hpp>

#include "explain.hpp"

static ov::Tensor as_tensor(const Array& array) {
    ov::element::Type type = array.dtype == "<i8" ? ov::element::i64 : ov::element::f32;
    return ov::Tensor(type, ov::Shape(array.shape.begin(), array.shape.end()),
                      const_cast<char*>(array.bytes.data()));  // wraps the bytes, no copy
}

Array explain(const std::string& model_path, const Array& input,
              const std::vector<std::pair<std::string, Array>>& others, int64_t target) {
    ov::Core core;
    std::shared_ptr<ov::Model> model = core.read_model(model_path);
    std::string input_name = model->input(0).get_any_name();
    // f32 explicitly: on CPUs with bfloat16 (AVX512-BF16, AMX) the CPU plugin otherwise computes in bf16, and
    // relevance, a ratio of small differences, is then off by percents.
    ov::CompiledModel compiled = core.compile_model(model, "CPU", ov::hint::inference_precision(ov::element::f32));
    ov::InferRequest request = compiled.create_infer_request();

    Array targets{"<i8", {input.shape[0]}, std::vector<char>(input.shape[0] * sizeof(int64_t))};
    for (int64_t i = 0; i < input.shape[0]; ++i) reinterpret_cast<int64_t*>(targets.bytes.data())[i] = target;
    request.set_tensor(input_name, as_tensor(input));
    request.set_tensor("target", as_tensor(targets));
    for (const auto& [name, array] : others) request.set_tensor(name, as_tensor(array));
    request.infer();

    ov::Tensor relevance = request.get_tensor("relevance_" + input_name);
    if (relevance.get_element_type() != ov::element::f32) throw std::runtime_error("relevance is not float32");
    Array result{"<f4", {}, {}};
    for (size_t d : relevance.get_shape()) result.shape.push_back(static_cast<int64_t>(d));
    const char* data = static_cast<const char*>(relevance.data());
    result.bytes.assign(data, data + relevance.get_byte_size());
    return result;
}
