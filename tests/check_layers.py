#!/usr/bin/env python3
"""tests/check_layers.py SOURCE_ROOT - includes go one way, down the layers.

The layers (docs/design.md, "Layers"), lowest first:

    0 tensor      storage, tensors, iteration, errors, the allocator
    1 tape        the tape, recording, the backward pass, replay, scalars
    2 ops         ops_*.c, the op table, gemm
    3 transforms  grad/jacobian/..., gradcheck, graph, ffi; autodiff.h
    4 nn          nn/, on the public API of the core only
    5 programs    tools/ and docs/examples/, on the public API only

Every #include "..." and #include <autodiff/...>/<nn/...> of autodiff/*.[ch]
(and the kernel files autodiff/*.inc, included once per dtype),
nn/*.[ch], tools/*.[ch] and docs/examples/*.[ch] is checked:
  - a file includes nothing of a higher layer than its own;
  - an installed header includes only installed headers;
  - nn/ includes of autodiff only installed headers, as <autodiff/x.h>;
  - tools/ and docs/examples/ include only installed headers and their own
    directory's headers.
Known violations are listed in EXCEPTIONS with the reason; one that no
longer occurs fails too, so the list only shrinks.  Prints each violation
and exits 1, or prints a summary and exits 0."""

import os
import re
import sys

# file (relative to the source root) -> layer; directories by default.
LAYERS = {
    'autodiff/export.h': 0, 'autodiff/alloc.h': 0, 'autodiff/alloc.c': 0,
    'autodiff/tensor.h': 0, 'autodiff/tensor.c': 0, 'autodiff/iter.c': 0,
    'autodiff/rng.c': 0, 'autodiff/print.c': 0, 'autodiff/error.c': 0,
    'autodiff/formulas.h': 0, 'autodiff/strbuf.h': 0, 'autodiff/strbuf.c': 0,
    'autodiff/vmath.h': 0, 'autodiff/vmath.c': 0, 'autodiff/vmath_kernels.inc': 0,
    'autodiff/vmath_float.inc': 0, 'autodiff/vmath_simd.inc': 0,
    'autodiff/transpose_avx2.h': 0,
    'autodiff/transpose_avx512.h': 0, 'autodiff/isa.h': 0, 'autodiff/isa.c': 0,
    'autodiff/stream.h': 0, 'autodiff/stream.c': 0,

    'autodiff/tape.h': 1, 'autodiff/tape.c': 1, 'autodiff/tape_impl.h': 1,
    'autodiff/internal.h': 1, 'autodiff/backward.c': 1, 'autodiff/replay.c': 1,
    'autodiff/replay_guard.c': 1,
    'autodiff/backward_impl.h': 1, 'autodiff/backward_reclaim.c': 1,
    'autodiff/leaf_grad.c': 1, 'autodiff/threads.c': 1,  # thread-local like the grad mode
    'autodiff/scalar.h': 1, 'autodiff/scalar.c': 1, 'autodiff/scalar_impl.h': 1,
    'autodiff/scalar_replay.c': 1,
    'autodiff/arena.h': 1, 'autodiff/arena.c': 1,  # the tape's, and gemm's scratch

    'autodiff/ops.h': 2, 'autodiff/op_table.c': 2, 'autodiff/gemm.h': 2,
    'autodiff/gemm.c': 2, 'autodiff/gemm_choice.c': 2,  # and autodiff/ops_*.[ch], below
    'autodiff/gemm_driver.inc': 2, 'autodiff/pointwise_kernels.inc': 2,  # once per dtype
    'autodiff/pointwise_impl.h': 2, 'autodiff/pointwise_loops.inc': 2,  # the two pointwise files'
    'autodiff/gemm_kernels.inc': 2,
    'autodiff/gemm_thin.inc': 2,
    'autodiff/fold_kernels.inc': 2, 'autodiff/per_dtype.inc': 2,
    'autodiff/pool_kernels.inc': 2, 'autodiff/conv_driver.inc': 2,
    'autodiff/conv_kernels.inc': 2,  # the direct convolution's tiles, once per variant
    'autodiff/conv_dwt.inc': 2,  # the weight gradient's tile, per variant and shape
    'autodiff/fused_kernels.inc': 2, 'autodiff/recurrence_kernels.inc': 2,
    'autodiff/softmax_lines.inc': 2,  # ops_loss.c's line kernels
    'autodiff/linalg_kernels.h': 2, 'autodiff/linalg_kernels.c': 2,

    'autodiff/transforms.h': 3, 'autodiff/transforms.c': 3,
    'autodiff/gradcheck.h': 3, 'autodiff/gradcheck.c': 3,
    'autodiff/graph.h': 3, 'autodiff/graph.c': 3,
    'autodiff/ffi.h': 3, 'autodiff/ffi.c': 3, 'autodiff/ffi_callback.c': 3,
    'autodiff/ffi_sig.c': 3,
    'autodiff/custom.h': 3, 'autodiff/custom.c': 3, 'autodiff/autodiff.h': 3,
    'autodiff/grad_checkpoint.c': 3,
}
NAMES = ['tensor', 'tape', 'ops', 'transforms', 'nn', 'programs']

# (includer, included): why it is allowed for now.
EXCEPTIONS = {
    # The tensor and tape layers include each other: tensors are allocated
    # in the tape's arena and headers come from the tape's slabs, and the
    # private structures of both are in internal.h, which includes the
    # whole public API.  Splitting the allocator and the arena out of tape.c
    # (alloc.c, arena.c) and internal.h by layer removes these.
    ('autodiff/internal.h', 'autodiff/autodiff.h'): 'internal.h includes the whole API',
    ('autodiff/alloc.c', 'autodiff/internal.h'): 'tensor/tape cycle',
    ('autodiff/error.c', 'autodiff/tape_impl.h'): 'tensor/tape cycle',
    ('autodiff/iter.c', 'autodiff/internal.h'): 'tensor/tape cycle',
    ('autodiff/print.c', 'autodiff/internal.h'): 'tensor/tape cycle',
    ('autodiff/rng.c', 'autodiff/internal.h'): 'tensor/tape cycle',
    ('autodiff/tensor.c', 'autodiff/internal.h'): 'tensor/tape cycle',
}


def layer(path):
    if path in LAYERS:
        return LAYERS[path]
    if re.match(r'autodiff/ops_\w+\.[ch]$', path):
        return 2
    top = path.split('/')[0]
    if top == 'nn':
        return 4
    if top == 'tools' or path.startswith('docs/examples/'):
        return 5
    return None


def installed(root, sub):
    """The headers autodiff/meson.build or nn/meson.build installs."""
    with open(os.path.join(root, sub, 'meson.build'), encoding='utf-8') as f:
        text = f.read()
    # every list: nn/ has a second one, nn_dist_headers (built with MPI)
    lists = re.findall(r'\w+_headers\s*=\s*files\((.*?)\)', text, re.S)
    return {sub + '/' + h for body in lists for h in re.findall(r"'([^']+\.h)'", body)}


def main(root):
    root = os.path.abspath(root)
    public = installed(root, 'autodiff') | installed(root, 'nn')
    files = []
    for d in ('autodiff', 'nn', 'tools', 'docs/examples'):
        for name in sorted(os.listdir(os.path.join(root, d))):
            if name.endswith(('.c', '.h', '.inc')):
                files.append(d + '/' + name)
    problems, seen, count = [], set(), 0
    for path in files:
        mine = layer(path)
        if mine is None:
            problems.append(f'{path}: no layer (add it to LAYERS in tests/check_layers.py)')
            continue
        with open(os.path.join(root, path), encoding='utf-8') as f:
            lines = f.read().splitlines()
        for no, line in enumerate(lines, 1):
            m = re.match(r'\s*#\s*include\s*([<"])([^>"]+)[>"]', line)
            if not m:
                continue
            quoted, inc = m.group(1) == '"', m.group(2)
            if quoted:
                target = os.path.normpath(os.path.join(os.path.dirname(path), inc))
            elif inc.startswith(('autodiff/', 'nn/')):
                target = inc
            else:
                continue  # a system or third-party header
            count += 1
            where = f'{path}:{no}: #include {m.group(1)}{inc}{">" if not quoted else chr(34)}'
            theirs = layer(target)
            if theirs is None or not os.path.exists(os.path.join(root, target)):
                problems.append(f'{where}: not a header of the project')
                continue
            bad = []
            if theirs > mine:
                bad.append(f'{target} is of a higher layer ({NAMES[theirs]}) than '
                           f'{path} ({NAMES[mine]})')
            if path in public and target not in public:
                bad.append(f'an installed header includes the private {target}')
            if mine == 4 and target.startswith('autodiff/'):
                if target not in public:
                    bad.append(f'nn/ includes the private {target}')
                elif quoted:
                    bad.append(f'nn/ includes autodiff as <{target}>, as its users do')
            if mine == 5:
                same_dir = os.path.dirname(target) == os.path.dirname(path)
                if not same_dir and target not in public:
                    bad.append(f'{path} is a program on the public API; '
                               f'{target} is private')
                if not same_dir and quoted:
                    bad.append(f'a program includes the library as <{target}>')
            if not bad:
                continue
            key = (path, target)
            if key in EXCEPTIONS:
                seen.add(key)
                continue
            problems.extend(f'{where}: {b}' for b in bad)
    for key in sorted(set(EXCEPTIONS) - seen):
        problems.append(f'{key[0]} no longer includes {key[1]} against the layers: '
                        f'remove it from EXCEPTIONS')
    for p in problems:
        print('FAIL:', p)
    print(f'{len(files)} files, {count} project includes, {len(seen)} known exceptions, '
          f'{len(problems)} problems')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else '.'))
