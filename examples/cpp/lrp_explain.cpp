// lrp_explain MODEL.lrp.onnx INPUT.npy OUT.npy [TARGET] [NAME=FILE.npy ...]
//
// Runs a model compiled by onnx-lrp (`onnx-lrp compile MODEL.onnx -o MODEL.lrp.onnx`) on INPUT.npy (float32, or
// int64 token ids; it feeds the model's first input) and writes the relevance of that input to OUT.npy (float32,
// the input's shape). TARGET is the class to explain for every sample (default -1: each sample's top class).
// NAME=FILE.npy feeds another input of the model, e.g. attention_mask=mask.npy.
#include <cstdlib>
#include <iostream>

#include "explain.hpp"

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: " << argv[0] << " MODEL.lrp.onnx INPUT.npy OUT.npy [TARGET] [NAME=FILE.npy ...]\n";
        return 2;
    }
    try {
        Array input = read_npy(argv[2]);
        int64_t target = -1;
        std::vector<std::pair<std::string, Array>> others;
        for (int i = 4; i < argc; ++i) {
            std::string arg = argv[i];
            size_t eq = arg.find('=');
            if (eq == std::string::npos)
                target = std::stoll(arg);
            else
                others.emplace_back(arg.substr(0, eq), read_npy(arg.substr(eq + 1)));
        }
        if (input.shape.empty()) throw std::runtime_error("the input has no batch axis");
        write_npy(argv[3], explain(argv[1], input, others, target));
    } catch (const std::exception& error) {
        std::cerr << "lrp_explain: " << error.what() << "\n";
        return 1;
    }
    return 0;
}
