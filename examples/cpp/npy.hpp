// Reading and writing NumPy .npy files (format version 1-3, little-endian float32 or int64, C order): enough to pass
// arrays between Python and this example. The format: "\x93NUMPY", two version bytes, the header length (2 bytes in
// version 1, 4 in 2 and 3), then a Python dict literal such as {'descr': '<f4', 'fortran_order': False,
// 'shape': (1, 3, 32, 32), } padded with spaces to a multiple of 64 bytes, then the raw data.
#pragma once

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

struct Array {
    std::string dtype;            // "<f4" (float32) or "<i8" (int64), as .npy writes them
    std::vector<int64_t> shape;
    std::vector<char> bytes;      // the elements, C order

    int64_t size() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
};

inline Array read_npy(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    char magic[8];
    if (!file.read(magic, 8) || std::string(magic, 6) != "\x93NUMPY")
        throw std::runtime_error(path + ": not a .npy file");
    uint32_t length = 0;
    file.read(reinterpret_cast<char*>(&length), magic[6] == 1 ? 2 : 4);  // little-endian, as on x86 and ARM
    std::string header(length, ' ');
    file.read(&header[0], length);

    auto value_of = [&](const std::string& key) {
        size_t at = header.find("'" + key + "':");
        if (at == std::string::npos) throw std::runtime_error(path + ": no '" + key + "' in the header");
        return header.substr(header.find_first_not_of(' ', at + key.size() + 3));
    };
    Array array;
    std::string descr = value_of("descr");
    array.dtype = descr.substr(1, descr.find('\'', 1) - 1);
    if (array.dtype != "<f4" && array.dtype != "<i8")
        throw std::runtime_error(path + ": dtype " + array.dtype + " (only float32 <f4 and int64 <i8 are read)");
    if (value_of("fortran_order").rfind("False", 0) != 0)
        throw std::runtime_error(path + ": Fortran order (save a C-ordered array)");
    std::string shape = value_of("shape");            // "(1, 3, 32, 32), }" or "(4,), }"
    for (size_t i = 1; shape[i] != ')';) {
        size_t end;
        array.shape.push_back(std::stoll(shape.substr(i), &end));
        i += end;
        while (shape[i] == ',' || shape[i] == ' ') ++i;
    }
    array.bytes.resize(array.size() * 4 * (array.dtype == "<i8" ? 2 : 1));
    if (!file.read(array.bytes.data(), array.bytes.size()))
        throw std::runtime_error(path + ": fewer elements than the shape says");
    return array;
}

inline void write_npy(const std::string& path, const Array& array) {
    std::string header = "{'descr': '" + array.dtype + "', 'fortran_order': False, 'shape': (";
    for (size_t i = 0; i < array.shape.size(); ++i) header += (i ? ", " : "") + std::to_string(array.shape[i]);
    header += array.shape.size() == 1 ? ",), }" : "), }";          // a 1-tuple is written (4,)
    header.append(63 - (10 + header.size()) % 64, ' ');             // data starts at a multiple of 64 bytes
    header += '\n';
    std::ofstream file(path, std::ios::binary);
    uint16_t length = static_cast<uint16_t>(header.size());
    file.write("\x93NUMPY\x01\x00", 8);
    file.write(reinterpret_cast<const char*>(&length), 2);
    file << header;
    file.write(array.bytes.data(), array.bytes.size());
    if (!file) throw std::runtime_error(path + ": cannot write");
}
