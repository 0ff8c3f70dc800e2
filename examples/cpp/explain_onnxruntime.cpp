// The ONNX Runtime (C++ API, CPU execution provider).
#include <onnxruntime_cxx_api.h>

#include <stdexcept>

#include "explain.hpp"

static Ort::Value as_value(const Array& array) {
    static Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    ONNXTensorElementDataType type = array.dtype == "<i8" ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64
                                                          : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    return Ort::Value::CreateTensor(cpu, const_cast<char*>(array.bytes.data()), array.bytes.size(),
                                    array.shape.data(), array.shape.size(), type);  // wraps the bytes, no copy
}

Array explain(const std::string& model_path, const Array& input,
              const std::vector<std::pair<std::string, Array>>& others, int64_t target) {
    if (OrtGetApiBase()->GetApi(ORT_API_VERSION) == nullptr)  // headers newer than the library
        throw std::runtime_error(std::string("libonnxruntime ") + OrtGetApiBase()->GetVersionString() +
                                 " does not serve the C API version " + std::to_string(ORT_API_VERSION) +
                                 " of these headers: use headers of its version or older");
    Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "lrp_explain");
    Ort::SessionOptions options;  // as onnx_lrp.session_options(): weights and activations held once
    options.DisableMemPattern();
    options.AddConfigEntry("session.disable_prepacking", "1");
    Ort::Session session(env, model_path.c_str(), options);
    Ort::AllocatorWithDefaultOptions allocator;
    std::string input_name = session.GetInputNameAllocated(0, allocator).get();
    std::string output_name = "relevance_" + input_name;

    Array targets{"<i8", {input.shape[0]}, std::vector<char>(input.shape[0] * sizeof(int64_t))};
    for (int64_t i = 0; i < input.shape[0]; ++i) reinterpret_cast<int64_t*>(targets.bytes.data())[i] = target;
    std::vector<const char*> names = {input_name.c_str(), "target"};
    std::vector<Ort::Value> values;
    values.push_back(as_value(input));
    values.push_back(as_value(targets));
    for (const auto& [name, array] : others) {
        names.push_back(name.c_str());
        values.push_back(as_value(array));
    }
    const char* outputs[] = {output_name.c_str()};
    std::vector<Ort::Value> result = session.Run(Ort::RunOptions{nullptr}, names.data(), values.data(),
                                                 values.size(), outputs, 1);

    Ort::TensorTypeAndShapeInfo info = result[0].GetTensorTypeAndShapeInfo();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        throw std::runtime_error("relevance is not float32");
    Array relevance{"<f4", info.GetShape(), {}};
    const char* data = reinterpret_cast<const char*>(result[0].GetTensorData<float>());
    relevance.bytes.assign(data, data + info.GetElementCount() * sizeof(float));
    return relevance;
}
