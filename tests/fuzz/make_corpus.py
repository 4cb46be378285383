#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py OUTDIR - writes the seed corpora and
dictionaries of the fuzz harnesses.

OUTDIR/<harness>/ gets a few small, valid (and some nearly valid) inputs
for each harness, and OUTDIR/<harness>.dict a libFuzzer dictionary of the
format's tokens.  Seeds are generated here rather than kept as binary
files in the repository; the same script always writes the same bytes.
"""
import gzip
import io
import json
import os
import struct
import sys


def write(outdir, harness, name, data):
    d = os.path.join(outdir, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def write_dict(outdir, harness, tokens):
    with open(os.path.join(outdir, harness + ".dict"), "w") as f:
        for t in tokens:
            esc = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "\\x%02x" % ord(c)
                          for c in t)
            f.write('"%s"\n' % esc)


# ---- safetensors -------------------------------------------------------------------
def safetensors(entries, metadata=None, pad=True):
    """entries: list of (name, dtype, shape, raw bytes)."""
    header, offset, blob = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blob += raw
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def seeds_safetensors(out):
    w = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    b = struct.pack("<3d", 0.5, -1, 2)
    i = struct.pack("<2q", 7, -8)
    full = [("w", "F32", [2, 3], w), ("b", "F64", [3], b), ("i", "I64", [2], i)]
    files = {
        "model": safetensors(full, {"epoch": "3", "arch": "mlp"}),
        "model_unpadded": safetensors(full, pad=False),
        "one": safetensors([("w", "F32", [2, 3], w)]),
        "scalar": safetensors([("s", "F64", [], struct.pack("<d", 1.5))]),
        "empty_tensor": safetensors([("e", "F32", [0, 4], b"")]),
        "bf16": safetensors([("h", "BF16", [2], b"\x80\x3f\x00\x40")]),
        "escapes": safetensors([("w\\u00e9\\n", "F32", [1], struct.pack("<f", 1))]),
        "empty": safetensors([]),
        "truncated": safetensors(full)[:-5],
        "bad_len": struct.pack("<Q", 1 << 40) + b"{}",
    }
    for name, data in files.items():
        write(out, "fuzz_safetensors", name, data)
        # The JSON harness: first byte even -> header parser.
        h = data[8:8 + struct.unpack("<Q", data[:8])[0]] if len(data) >= 8 else b""
        write(out, "fuzz_safetensors_json", "header_" + name, b"\x00" + h[:4096])
    for name, meta in {"meta": '{"epoch": "3", "arch": "mlp"}', "meta_empty": "{}",
                       "meta_esc": '{"k\\"": "\\ud83d\\ude00"}'}.items():
        write(out, "fuzz_safetensors_json", name, b"\x01" + meta.encode())
    tokens = ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"F32"', '"F64"',
              '"I64"', '"BF16"', '"U8"', "{", "}", "[", "]", ":", ",", "\\u", "\\\\", "\\\"",
              "0", "-1", "18446744073709551615", "9223372036854775808", "1e3", "null",
              "true"]
    write_dict(out, "fuzz_safetensors", tokens)
    write_dict(out, "fuzz_safetensors_json", tokens)


# ---- IDX --------------------------------------------------------------------------------
def idx(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def seeds_idx(out):
    images = idx(0x08, [4, 3, 3], bytes(range(36)))
    labels = idx(0x08, [4], bytes([0, 1, 2, 9]))
    files = {
        "images": images,
        "labels": labels,
        "int16": idx(0x0B, [3], struct.pack(">3h", -1, 2, 300)),
        "int32": idx(0x0C, [2, 2], struct.pack(">4i", 1, -2, 3, -4)),
        "float32": idx(0x0D, [2], struct.pack(">2f", 1.5, -2)),
        "float64": idx(0x0E, [1, 1, 1], struct.pack(">d", 3.25)),
        "int8": idx(0x09, [2], b"\xff\x01"),
        "empty": idx(0x08, [0, 5], b""),
        "trailing": images + b"xx",
        "truncated": images[:-3],
        "images_gz": gzip.compress(images, mtime=0),
        "labels_gz": gzip.compress(labels, mtime=0),
        "gz_truncated": gzip.compress(images, mtime=0)[:-6],
        # Extents near 2^32 next to a zero one: no elements, no overflow
        # (found by fuzz_idx: the harness itself multiplied them).
        "huge_but_empty": idx(0x08, [0xFFFFFF12, 0xFFFFFF02, 0xFF00FF08, 0], b""),
        "huge_overflow": idx(0x08, [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], b"\0" * 16),
    }
    for name, data in files.items():
        write(out, "fuzz_idx", name, data)
    write_dict(out, "fuzz_idx", ["\x00\x00\x08\x03", "\x00\x00\x08\x01", "\x00\x00\x0d\x01",
                                 "\x1f\x8b\x08\x00", "\xff\xff\xff\xff", "\x00\x00\x00\x00"])


# ---- CSV --------------------------------------------------------------------------------
def seeds_csv(out):
    # First byte: bits 0-1 delimiter (, ; tab space), bit 2 header, bit 3 float64.
    files = {
        "plain": b"\x00" + b"1,2,3\n4,5,6\n",
        "header": b"\x04" + b"a,b\n1.5,-2\n3e2,0x1p-3\n",
        "crlf_f64": b"\x08" + b"1,2\r\n3,4\r\n",
        "quoted": b"\x00" + b'"1.5", " 2 "\n"3",4\n',
        "semicolon": b"\x01" + b"1;2\n\n3;4",
        "tab": b"\x06" + b"x\ty\n1\tnan\n-inf\t2\n",
        "space": b"\x03" + b"1 2\n3 4\n",
        "ragged": b"\x00" + b"1,2\n3\n",
        "bad": b"\x00" + b"1,abc\n",
        "unterminated": b"\x00" + b'"1,2\n',
    }
    for name, data in files.items():
        write(out, "fuzz_csv", name, data)
    write_dict(out, "fuzz_csv", [",", ";", "\t", '"', '""', "\r\n", "\n", "nan", "inf",
                                 "-inf", "0x1p-3", "1e308", "1e-320", "-0"])


# ---- expressions (tools/expr.h) ------------------------------------------------------------
def seeds_expr(out):
    exprs = ["x*sin(x) + 2^-y", "-x^2", "2^3^2", "pow(x, 2) + max(a, b) - min(1, c)",
             "sigmoid(relu(x)) / (1 + exp(-x))", ".5 + 2. + 1e-3 + 2.5E+10",
             "sqrt(abs(tanh(x_1)))", "log(cos(tan(y)))", "((((x))))", "sin", "x +", "1e",
             "sine(x)", "f(x,)", "(" * 50 + "x" + ")" * 50]
    for k, e in enumerate(exprs):
        write(out, "fuzz_expr", "e%02d" % k, e)
    write_dict(out, "fuzz_expr", ["sin(", "cos(", "tan(", "exp(", "log(", "sqrt(", "tanh(",
                                  "sigmoid(", "relu(", "abs(", "pow(", "max(", "min(", "^",
                                  "e+", "E-", ".", ",", "(", ")"])


# ---- foreign signatures (autodiff/ffi_sig.c) -----------------------------------------------
def seeds_ffi(out):
    sigs = ["d(ddd)", "f(ff)", "d(Di)", "F(Fl)", "d(Dz)", "i(dl)", "d(d, d)",
            "double (double, double, double)", "double f(const double *x, int n);",
            "float g(float x, int k);", "long h(long)", "double norm(const double * x, size_t n)",
            "void (double)", "double (double double)", "d()", "double (void)",
            "d(dddddddddddddddd)", "const float *(float)"]
    for k, s in enumerate(sigs):
        write(out, "fuzz_ffi_sig", "s%02d" % k, s)
    write_dict(out, "fuzz_ffi_sig", ["double", "float", "int", "long", "size_t", "const",
                                     "void", "*", "(", ")", ",", ";", "unsigned", "char"])


# ---- adcheck's command line (tools/adcheck_opts.h) -------------------------------------------
def seeds_adcheck(out):
    # One argument per line, as the harness splits them.
    lines = [
        ["--grad", "g", "./lib.so", "f", "double (double, double)"],
        ["--partials", "a,b,c", "--at", "0.5,-0.25,0.75", "--random", "3", "lib.so", "sd",
         "d(ddd)"],
        ["--json", "--grad", "g", "--n", "5", "--range", "-2,2", "--seed", "9", "l", "v",
         "double (const double *x, int n)"],
        ["--grad", "g", "--at", "1,2,3,4", "l", "v", "float (const float *, size_t)"],
        ["--grad", "g", "--eps", "1e-3", "--atol", "0", "--rtol", "1e-2", "l", "f", "f(ff)"],
        ["--grad", "g", "--at", "1e300,1", "l", "f", "f(ff)"],
        ["--grad", "g", "--at", "1,,2", "l", "f", "d(dd)"],
        ["--partials", "a,,b", "l", "f", "d(dd)"],
        ["--grad", "g", "--n", "3", "l", "f", "d(dd)"],
        ["--grad", "g", "l", "f", "d(" + "d" * 17 + ")"],
        ["--grad", "g", "l", "f", "double ("],
        ["--grad", "g", "l", "f", "int (double)"],
        ["--grad", "g", "l", "f"],
        ["--range", "-1e308,1e308", "--grad", "g", "l", "f", "d(d)"],
        ["--random", "0", "--grad", "g", "l", "f", "d(d)"],
        ["--at", "nan", "--grad", "g", "l", "f", "d(d)"],
        ["--help"],
    ]
    for k, args in enumerate(lines):
        write(out, "fuzz_adcheck_opts", "a%02d" % k, "\n".join(args))
    write_dict(out, "fuzz_adcheck_opts", [
        "--grad", "--partials", "--n", "--at", "--random", "--range", "--seed", "--eps",
        "--atol", "--rtol", "--json", "--help", "-h", "\n", ",", "1e308", "-1e308", "nan",
        "inf", "0x1p-1074", "1000000", "1000001", "d(dd)", "d(Di)", "f(Fz)",
        "double (double, double)", "float (const float *, size_t)"])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds_safetensors(out)
    seeds_idx(out)
    seeds_csv(out)
    seeds_expr(out)
    seeds_ffi(out)
    seeds_adcheck(out)


if __name__ == "__main__":
    main()
