#!/usr/bin/env python3
"""Writes tests/data/rnn_reference.safetensors: PyTorch's outputs and
gradients for RNN (tanh, relu), GRU and LSTM, as 2-layer batch-first
sequence layers and as cells, and for causal multi-head self-attention and
a pre-norm transformer block (nn.TransformerEncoderLayer, norm_first, gelu,
causal mask; keys "mha" and "block": K.<parameter>, K.x, K.out, K.r_out,
K.grad.*, loss sum(out r_out)), on fixed float64 weights and inputs.

tests/test_rnn.c and test_attention.c load the weights into the library's modules by their
PyTorch names (so the file is also the check that checkpoints exchange),
runs the same computation and compares.  Run once, with PyTorch installed:

    python3 tests/data/make_rnn_reference.py tests/data/rnn_reference.safetensors

For each model K (rnn_tanh, rnn_relu, gru, lstm, and K_cell) the file holds
K.<parameter name> (PyTorch's state_dict), K.x, K.h0 (and K.c0 for the LSTM),
the outputs K.out, K.h_n (K.c_n), random weights K.r_out, K.r_h (K.r_c) of
the scalar loss  E = sum(out r_out) + sum(h_n r_h) (+ sum(c_n r_c)),  and the
gradients K.grad.<parameter>, K.grad.x, K.grad.h0 (K.grad.c0) of E.  The
file is written with the standard library only (safetensors is a JSON
header and raw little-endian data), so the safetensors package is not
needed.
"""
import json
import struct
import sys

import torch

B, T, F, H, L = 2, 5, 3, 4, 2


def save(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().double().numpy().astype("<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def case(out, key, module, lstm, cell):
    g = torch.Generator().manual_seed(len(out) + 7)
    x = torch.randn((B, F) if cell else (B, T, F), generator=g, dtype=torch.float64)
    hs = (B, H) if cell else (L, B, H)
    h0 = torch.randn(hs, generator=g, dtype=torch.float64) * 0.5
    c0 = torch.randn(hs, generator=g, dtype=torch.float64) * 0.5
    for t in (x, h0, c0):
        t.requires_grad_(True)
    if cell:
        if lstm:
            hn, cn = module(x, (h0, c0))
        else:
            hn = module(x, h0)
        y = hn
    else:
        if lstm:
            y, (hn, cn) = module(x, (h0, c0))
        else:
            y, hn = module(x, h0)
    r_out = torch.randn(y.shape, generator=g, dtype=torch.float64)
    r_h = torch.randn(hn.shape, generator=g, dtype=torch.float64)
    E = (y * r_out).sum() + (hn * r_h).sum()
    if lstm:
        r_c = torch.randn(cn.shape, generator=g, dtype=torch.float64)
        E = E + (cn * r_c).sum()
    E.backward()
    for n, p in module.named_parameters():
        out[f"{key}.{n}"] = p
        out[f"{key}.grad.{n}"] = p.grad
    out[f"{key}.x"], out[f"{key}.h0"] = x, h0
    out[f"{key}.grad.x"], out[f"{key}.grad.h0"] = x.grad, h0.grad
    out[f"{key}.out"], out[f"{key}.h_n"] = y, hn
    out[f"{key}.r_out"], out[f"{key}.r_h"] = r_out, r_h
    if lstm:
        out[f"{key}.c0"], out[f"{key}.grad.c0"] = c0, c0.grad
        out[f"{key}.c_n"], out[f"{key}.r_c"] = cn, r_c


def attention_case(out, key, module):
    """Self-attention with the causal mask, batch-first: y = module(x)."""
    g = torch.Generator().manual_seed(len(out) + 11)
    x = torch.randn((B, T, 8), generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.triu(torch.full((T, T), float("-inf"), dtype=torch.float64), 1)
    with torch.no_grad():  # nonzero biases and norms, so that they are checked too
        for n, p in module.named_parameters():
            if n.endswith("bias") or n.startswith("norm"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3
                        + (1.0 if n.startswith("norm") and n.endswith("weight") else 0.0))
    if isinstance(module, torch.nn.MultiheadAttention):
        y, _ = module(x, x, x, attn_mask=mask, need_weights=False)
    else:
        y = module(x, src_mask=mask)
    r = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (y * r).sum().backward()
    for n, p in module.named_parameters():
        out[f"{key}.{n}"] = p
        out[f"{key}.grad.{n}"] = p.grad
    out[f"{key}.x"], out[f"{key}.grad.x"] = x, x.grad
    out[f"{key}.out"], out[f"{key}.r_out"] = y, r


def main():
    torch.manual_seed(0)
    d = torch.float64
    out = {}
    kw = dict(num_layers=L, batch_first=True, dtype=d)
    case(out, "rnn_tanh", torch.nn.RNN(F, H, nonlinearity="tanh", **kw), False, False)
    case(out, "rnn_relu", torch.nn.RNN(F, H, nonlinearity="relu", **kw), False, False)
    case(out, "gru", torch.nn.GRU(F, H, **kw), False, False)
    case(out, "lstm", torch.nn.LSTM(F, H, **kw), True, False)
    case(out, "rnn_tanh_cell", torch.nn.RNNCell(F, H, nonlinearity="tanh", dtype=d), False, True)
    case(out, "rnn_relu_cell", torch.nn.RNNCell(F, H, nonlinearity="relu", dtype=d), False, True)
    case(out, "gru_cell", torch.nn.GRUCell(F, H, dtype=d), False, True)
    case(out, "lstm_cell", torch.nn.LSTMCell(F, H, dtype=d), True, True)
    attention_case(out, "mha", torch.nn.MultiheadAttention(8, 2, batch_first=True, dtype=d))
    attention_case(out, "block", torch.nn.TransformerEncoderLayer(
        8, 2, 16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True, dtype=d))
    save(sys.argv[1] if len(sys.argv) > 1 else "rnn_reference.safetensors", out)


if __name__ == "__main__":
    main()
