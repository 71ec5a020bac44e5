"""Converts float32 values with ggml's own reference code (libggml-base.so
of node-llama-cpp's prebuilt llama.cpp), for the byte-exactness test of
zhllama's writers: argv = library, input file of little-endian float32,
output prefix. Writes PREFIX.q8_0, .q4_0, .f16, .bf16 and the dequantized
PREFIX.q8_0.f32, .q4_0.f32."""
import ctypes
import sys

lib = ctypes.CDLL(sys.argv[1])
data = open(sys.argv[2], "rb").read()
n = len(data) // 4
x = (ctypes.c_float * n).from_buffer_copy(data)
for name, fn, size, dequant in [
    ("q8_0", lib.quantize_row_q8_0_ref, n // 32 * 34, lib.dequantize_row_q8_0),
    ("q4_0", lib.quantize_row_q4_0_ref, n // 32 * 18, lib.dequantize_row_q4_0),
    ("f16", lib.ggml_fp32_to_fp16_row, n * 2, None),
    ("bf16", lib.ggml_fp32_to_bf16_row_ref, n * 2, None),
]:
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    buf = ctypes.create_string_buffer(size)
    fn(x, buf, n)
    with open(sys.argv[3] + "." + name, "wb") as f:
        f.write(buf.raw)
    if dequant is not None:
        dequant.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        y = (ctypes.c_float * n)()
        dequant(buf, y, n)
        with open(sys.argv[3] + "." + name + ".f32", "wb") as f:
            f.write(bytes(y))
