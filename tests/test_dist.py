#!/usr/bin/env python3
"""tests/test_dist.py DIST_TRAIN [CHARLM] - data-parallel training over MPI.

Runs tests/dist_train.c under mpirun and checks, on the states rank 0
saves (safetensors, read here without any library):

  1. 2 ranks with batch 32 each end with the parameters of 1 process with
     batch 64 after the same steps (16: two epochs of 512 samples), to
     1e-5 in float32, through MPI_Allreduce (NN_DIST_SHM=0) over shared
     memory (--mca btl self,vader) and over TCP on loopback (--mca btl
     self,tcp), and through the default reduction on one machine, the
     ranks' own pass over a window of MPI-3 shared memory (the same bits
     as MPI_Allreduce at 2 ranks, 1e-6 at 3, with MPI's wait and the
     sleeping one), and its hierarchical form (4 ranks as two nodes of 2,
     NN_DIST_SHM_NODE_RANKS=2; unequal nodes fall back to MPI_Allreduce);
  2. two runs with the same world size and transport are bit-identical,
     and so are the blocking reduction, the overlapped one (MPI_Iallreduce
     over many small buckets), the sleeping wait (NN_DIST_WAIT_US) and
     the timed one (NN_DIST_TIMING), both of which time the wait for the
     other rank (a barrier before the reduction) where the default does
     not;
  3. a rank that returns an error, or dies (SIGKILL), in epoch 2 ends
     every rank with a clear message and a non-zero status, and leaves the
     last checkpoint (epoch 1) intact;
  4. that checkpoint resumes at 1 rank with batch 64 (after the error) or
     at 2 ranks with batch 32 (after the death), and either run ends where
     the uninterrupted one does;
  5. with a BatchNorm2d first in the model, the ranks' running statistics
     are averaged every step: both ranks end with the same bits, and the
     running mean is the one-process run's at the global batch (the layer
     sees the data, so its batch means are the global batch's shards');
  6. with CHARLM (docs/examples/charlm): 2 ranks with --batch 4 train an
     LSTM on a synthetic text as 1 process with --batch 8 does (its
     streams are split between the ranks), to 1e-5, with the loss of all
     ranks in rank 0's --json, world_size 2, and only rank 0 printing;
     with NN_DIST_OVERLAP=1 and 16 KB buckets (reductions started during
     backward through an LSTM, whose weights every step reads) the bits
     are the blocking run's.

  7. the sharded update (NN_DIST_SHARD=1: reduce-scatter, each rank
     updates its part, all-gather) gives the whole update's bits at 2
     ranks (parameters, optimiser state and BatchNorm statistics, over
     both transports, with MPI's wait and with the sleeping one), agrees
     with it to 1e-6 at 3 ranks, and with Adam over 3 buckets, is
     bit-identical from run to run, and
     its checkpoints (whose optimiser state each rank kept for its own
     part) resume at 1 and 2 ranks as in 4;
  8. a parameter that only rank 0's forward uses (--idle, --idle-mid)
     reduces as zeros on rank 1, also with the reductions started during
     backward in bucket order (--idle-mid --overlap over 128-byte
     buckets); one that no rank uses (--unused) is never stepped, whole
     or sharded, even with weight decay.

With AD_DIST_QUICK=1 (scripts/check's sanitizer stage, whose point is
memory errors in our code) the runs that repeat a path of ours already
taken leave out: the second transport (TCP is Open MPI's code), the
second run of a pair compared for identical bits, and an iallreduce
algorithm given by the user; each says so.

Runs as root in containers (OMPI_ALLOW_RUN_AS_ROOT*), with
--oversubscribe, on loopback without network set-up.  Exits 77 (skip) with
a message when mpirun is missing."""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

prog = os.path.abspath(sys.argv[1])
charlm = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
samples_prog = os.path.abspath(sys.argv[3]) if len(sys.argv) > 3 else None
mpirun = shutil.which('mpirun') or shutil.which('mpiexec')
if not mpirun:
    print('skipped: no mpirun or mpiexec in PATH (apt-get install openmpi-bin)')
    sys.exit(77)
version = subprocess.run([mpirun, '--version'], capture_output=True, text=True).stdout
openmpi = 'Open MPI' in version or 'OpenRTE' in version

env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1',
           OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
           # Open MPI's own allocations (its start-up state, kept to exit)
           # are not ours: a sanitized build reports only leaks of ours.
           # The suppressions match Open MPI's libraries in the allocation's
           # stack, which takes the slow unwinder (its plug-ins have no
           # frame pointers) and plug-ins that stay loaded to the end.
           LSAN_OPTIONS='suppressions=' + os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       'lsan_mpi.supp'),
           OMPI_MCA_mca_base_component_disable_dlclose='1')
if 'ASAN_OPTIONS' in env:
    env['ASAN_OPTIONS'] += ':fast_unwind_on_malloc=0'
failures = []
quick = os.environ.get('AD_DIST_QUICK') == '1'


def skipped(what):
    print('skip ' + what + ' (AD_DIST_QUICK=1: a path already run)')


def check(cond, what):
    print(('ok   ' if cond else 'FAIL ') + what)
    if not cond:
        failures.append(what)


def run(np, args, btl='vader', expect_ok=True, timeout=120, wait_us=0, exe=None, mpi_args=(),
        shard=False, shm=None):
    """shard: the sharded update (NN_DIST_SHARD=1, in the environment, which
    the launcher passes on to ranks on this machine); shm: NN_DIST_SHM=0 or
    1 likewise (None: the default, the shared-memory reduction)."""
    cmd = [mpirun, '-np', str(np)]
    if openmpi:
        cmd += ['--oversubscribe', '--mca', 'btl', 'self,' + btl]
        if btl == 'tcp':
            # Open MPI's TCP transport leaves out 127.0.0.0/8 by default and
            # takes whatever other interface the machine has; on one without
            # (a container with no network) no rank could reach another.
            # Loopback is always there.
            cmd += ['--mca', 'btl_tcp_if_include', '127.0.0.1/8']
        if wait_us:
            cmd += ['-x', 'NN_DIST_WAIT_US=%d' % wait_us]
        cmd += list(mpi_args)
    cmd += [exe or prog] + args
    run_env = dict(env)
    if shard:
        run_env['NN_DIST_SHARD'] = '1'
    if shm is not None:
        run_env['NN_DIST_SHM'] = '1' if shm else '0'
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=run_env)
    if expect_ok and p.returncode != 0:
        print(' '.join(cmd))
        print(p.stdout)
        print(p.stderr)
        raise SystemExit(f'FAIL: {" ".join(cmd)} exited {p.returncode}')
    return p


def load(path):
    """{name: (dtype, shape, bytes)} and the metadata of a safetensors file."""
    with open(path, 'rb') as f:
        blob = f.read()
    (n,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop('__metadata__', {})
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        a, b = e['data_offsets']
        out[name] = (e['dtype'], e['shape'], data[a:b])
    return out, meta


def floats(entry):
    dtype, _, raw = entry
    return struct.unpack('<%df' % (len(raw) // 4), raw) if dtype == 'F32' else None


def params(path):
    t, _ = load(path)
    return {k: floats(v) for k, v in t.items() if not k.startswith('optim.') and v[0] == 'F32'}


def max_diff(a, b):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys() and pa, (pa.keys(), pb.keys())
    return max(abs(x - y) for k in pa for x, y in zip(pa[k], pb[k]))


def json_lines_of(p):
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith('{')]


def same_bits(a, b):
    ta, _ = load(a)
    tb, _ = load(b)
    return ta == tb


tmp = tempfile.mkdtemp(prefix='test_dist.')
try:
    f = lambda name: os.path.join(tmp, name)
    run(1, ['--batch', '64', '--out', f('ref')])
    transports = ['vader', 'tcp'] if openmpi else ['default']
    if quick and openmpi:
        transports = transports[:1]
        skipped('the TCP transport')
    # the gradients through MPI_Allreduce (NN_DIST_SHM=0), over each
    # transport
    for btl in transports:
        p = run(2, ['--batch', '32', '--out', f(btl)], btl=btl, shm=False)
        if btl == transports[0]:
            p_mpi = p  # its wait and algorithm are checked below
        d = max_diff(f('ref'), f(btl))
        check(d < 1e-5 and p.stdout.count('reduction MPI,') == 2,
              f'2 ranks x batch 32 over {btl} = 1 x batch 64 (max |diff| {d:.2e})')
        # the sharded update (reduce-scatter, each rank updates its half,
        # all-gather) against every rank updating everything after an
        # allreduce: with 2 ranks each sum is a + b either way and the
        # update is elementwise, so the parameters and the optimiser's
        # state (gathered to every rank at each epoch's end, for rank 0's
        # checkpoint) are the same bits
        p = run(2, ['--batch', '32', '--out', f(btl + '_sh')], btl=btl, shard=True)
        check(p.stdout.count('update sharded') == 2, f'NN_DIST_SHARD=1 shards the update ({btl})')
        check(same_bits(f(btl), f(btl + '_sh')),
              f'sharded update = whole update over {btl}, parameters and optimiser state, '
              f'bit for bit')
    # the default on one machine: the reduction through a window of MPI-3
    # shared memory (dist_shm.c); with 2 ranks each sum is a + b as in
    # MPI's, so the same bits
    p = run(2, ['--batch', '32', '--out', f('shm')], btl=transports[0])
    d = max_diff(f('ref'), f('shm'))
    check(p.stdout.count('reduction shared memory,') == 2 and d < 1e-5 and
          same_bits(f(transports[0]), f('shm')),
          f'shared-memory reduction: used by default on one machine, 2 ranks x batch 32 = '
          f'1 x batch 64 (max |diff| {d:.2e}), the same bits as MPI_Allreduce')
    p = run(2, ['--batch', '32', '--out', f('shm2'), '--detach'], btl=transports[0])
    check(same_bits(f('shm'), f('shm2')), 'two shared-memory runs are bit-identical')
    # the gradients lived in the window: nn_dist_detach gives them private
    # copies, which outlive nn_dist_finalize (MPI_Win_free)
    check(p.stdout.count('after detach and finalize: gradients kept') == 2 and
          p.stdout.count('zero_grad ok, sum 0') == 2,
          'after detach and finalize the gradients keep their values and can be zeroed (' +
          ' | '.join(l for l in p.stdout.splitlines() if 'after detach' in l) + ')')
    # a window that does not fit where Open MPI puts its backing file (a
    # container's /dev/shm is often 64 MB; Open MPI then hangs in the
    # allocation): checked first, and MPI_Allreduce reduces instead.  A
    # tmpfs of 8 KB for the 2 x 7 KB of gradients, where mounting one is
    # allowed (root in a container).
    tiny = f('tinyshm')
    os.makedirs(tiny)
    if openmpi and subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8k', 'tmpfs', tiny],
                                  capture_output=True).returncode == 0:
        try:
            p = run(2, ['--batch', '32', '--out', f('tiny')], btl=transports[0], timeout=60,
                    mpi_args=['--mca', 'osc_sm_backing_directory', tiny])
        finally:
            subprocess.run(['umount', tiny], capture_output=True)
        check(p.stdout.count('reduction MPI,') == 2 and same_bits(f(transports[0]), f('tiny')),
              'a shared-memory window that does not fit falls back to MPI_Allreduce')
    else:
        print('skipped: the window that does not fit (cannot mount a tmpfs here)')
    # nn_dist_backward with a rank that has no samples (seeded with 0):
    # every rank's gradient is the mean over all samples, and with no
    # samples anywhere every rank gets an error (dist_samples.c checks)
    if samples_prog:
        cases = (['3', '0'], ['0', '0']) if quick else \
            (['3', '0'], ['0', '3'], ['3', '5'], ['0', '0'], ['2', '0', '5'])
        if quick:
            skipped('nn_dist_backward with samples 0 3, 3 5 and 2 0 5')
        for counts in cases:
            p = run(len(counts), counts, btl=transports[0], exe=samples_prog, expect_ok=False)
            if p.returncode:
                print(p.stderr)
            check(p.returncode == 0, 'nn_dist_backward with samples ' + ' '.join(counts) +
                  ': every rank the mean over all samples (none anywhere: an error on every rank)')
    # a parameter that rank 1's backward never reaches (--idle): its
    # gradient must go into the reduction as zeros at every step, not as
    # what the last reduction left in its part of the bucket (which a
    # zero_grad left to backward would leave there); both ranks end with
    # the same bits
    run(1, ['--batch', '64', '--idle', '--out', f('idle_ref')])
    run(2, ['--batch', '32', '--idle', '--every-rank', '--out', f('idle')], btl=transports[0])
    d = max_diff(f('idle_ref'), f('idle.0'))
    check(d < 1e-5 and same_bits(f('idle.0'), f('idle.1')),
          f'a parameter one rank does not use reduces as zeros there: 2 ranks = 1 x batch 64 '
          f'(max |diff| {d:.2e}), both ranks the same bits')
    # the same layer between two Linear layers (--idle-mid), with the
    # reductions started during backward over 128-byte buckets: p's bucket
    # is complete on rank 1 only at the end of backward, so the reductions
    # must start in bucket order there too (a later bucket started first
    # would be summed with p's bucket of rank 0, the same size)
    run(1, ['--batch', '64', '--idle-mid', '--out', f('idlemid_ref')])
    run(2, ['--batch', '32', '--idle-mid', '--overlap', '--bucket', '128', '--every-rank',
            '--out', f('idlemid')], btl=transports[0])
    d = max_diff(f('idlemid_ref'), f('idlemid.0'))
    check(d < 1e-5 and same_bits(f('idlemid.0'), f('idlemid.1')),
          f'overlapped reductions start in bucket order when one rank does not reach a middle '
          f'parameter: 2 ranks = 1 x batch 64 (max |diff| {d:.2e}), both ranks the same bits')
    # a parameter that no rank's forward uses (--unused), with weight
    # decay: one process gives it no gradient and never steps it, and
    # neither may the ranks (its gradient, a view of the bucket, is never
    # missing, and a zero gradient with weight decay moves it), whole or
    # sharded
    run(1, ['--batch', '64', '--unused', '--wd', '0.01', '--out', f('unused_ref')])
    for shard in [False, True]:
        name = 'unused_shard' if shard else 'unused'
        run(2, ['--batch', '32', '--unused', '--wd', '0.01', '--every-rank', '--out', f(name)],
            btl=transports[0], shard=shard)
        d = max_diff(f('unused_ref'), f(name + '.0'))
        p = params(f(name + '.0'))['0.p']
        check(d < 1e-5 and same_bits(f(name + '.0'), f(name + '.1')) and set(p) == {0.25},
              f'a parameter no rank reaches is not stepped{" (sharded)" if shard else ""}: '
              f'p stays 0.25 ({min(p)} .. {max(p)}), 2 ranks = 1 x batch 64 (max |diff| '
              f'{d:.2e}), both ranks the same bits')
    # 3 ranks x batch 20: every epoch ends with 32 samples split 11, 11, 10,
    # so the average is weighted by unequal batch sizes there
    run(1, ['--batch', '60', '--out', f('ref60')])
    run(3, ['--batch', '20', '--out', f('three')], btl=transports[0])
    d = max_diff(f('ref60'), f('three'))
    check(d < 1e-5, f'3 ranks x batch 20 (last batches 11, 11, 10) = 1 x batch 60 '
                    f'(max |diff| {d:.2e})')
    # the same through MPI_Allreduce, whose order of additions may differ
    # from the shared-memory pass's (g0 + g1) + g2
    run(3, ['--batch', '20', '--out', f('three_mpi')], btl=transports[0], shm=False)
    d = max_diff(f('three'), f('three_mpi'))
    check(d < 1e-6, f'3 ranks: shared-memory reduction = MPI_Allreduce (max |diff| {d:.2e})')
    if openmpi:
        # the hierarchical form, on one machine: NN_DIST_SHM_NODE_RANKS=2
        # makes 4 ranks two "nodes" of 2, each summing in its window, the
        # two nodes' sums through MPI_Allreduce (one rank of each per part)
        node2 = ['-x', 'NN_DIST_SHM_NODE_RANKS=2']
        run(4, ['--batch', '16', '--out', f('four')], btl=transports[0])
        p = run(4, ['--batch', '16', '--out', f('four_h')], btl=transports[0], mpi_args=node2)
        d, d4 = max_diff(f('ref'), f('four_h')), max_diff(f('four'), f('four_h'))
        check(p.stdout.count('reduction shared memory,') == 4 and d < 1e-5 and d4 < 1e-6,
              f'hierarchical reduction, 4 ranks as 2 nodes of 2: = 1 x batch 64 (max |diff| '
              f'{d:.2e}), = one window of 4 ({d4:.2e})')
        if quick:
            skipped('the second hierarchical run')
        else:
            p = run(4, ['--batch', '16', '--out', f('four_h2')], btl=transports[0], mpi_args=node2)
            check(same_bits(f('four_h'), f('four_h2')), 'two hierarchical runs are bit-identical')
        # nodes of unequal size (2 and 1): MPI_Allreduce reduces everything
        p = run(3, ['--batch', '20', '--out', f('three_h')], btl=transports[0], mpi_args=node2)
        check(p.stdout.count('reduction MPI,') == 3 and same_bits(f('three_mpi'), f('three_h')),
              'nodes of unequal size fall back to MPI_Allreduce, with its bits')
    # sharded at 3 ranks: parts of 1/3, cut inside the first weight; the
    # sums' order may differ from the allreduce's
    run(3, ['--batch', '20', '--out', f('three_sh')], btl=transports[0], shard=True)
    d = max_diff(f('three'), f('three_sh'))
    check(d < 1e-6, f'3 ranks: sharded update = whole update (max |diff| {d:.2e})')
    if quick:
        skipped('the second runs of the whole and the sharded update')
    else:
        p = run(2, ['--batch', '32', '--out', f('again')], btl=transports[0])
        check(same_bits(f(transports[0]), f('again')), 'two 2-rank runs are bit-identical')
        check(p.stdout.count('update whole') == 2, 'the update is whole by default')
        run(2, ['--batch', '32', '--out', f('again_sh')], btl=transports[0], shard=True)
        check(same_bits(f(transports[0] + '_sh'), f('again_sh')),
              'two sharded 2-rank runs are bit-identical')
    # Adam (two state tensors per parameter, gathered slot by slot) over
    # 4 KB buckets (each split between the ranks on its own; the extras
    # ride apart from the last)
    args = ['--batch', '32', '--adam', '--bucket', '4096']
    run(2, args + ['--out', f('adam')], btl=transports[0])
    p = run(2, args + ['--out', f('adam_sh')], btl=transports[0], shard=True)
    check(same_bits(f('adam'), f('adam_sh')) and '(3 buckets,' in p.stdout and
          p.stdout.count('update sharded') == 2,
          'sharded = whole with Adam over 3 buckets, parameters and both moments, bit for bit')
    p = run(2, ['--batch', '32', '--bucket', '4096', '--overlap', '--out', f('overlap')],
            btl=transports[0])
    check(same_bits(f(transports[0]), f('overlap')),
          'MPI_Iallreduce over 4 KB buckets = one blocking MPI_Allreduce, bit for bit')
    # 16 steps of 2 ranks; the 4 KB buckets hold the parameters last first:
    # [4.*, 2.bias], [2.weight], [0.bias, 0.weight] and the extras, the
    # first two started while backward still computes the first layer
    early = [l for l in p.stdout.splitlines() if '(3 buckets, 32 started during backward,' in l]
    check(len(early) == 2, 'with overlap, 2 of the 3 buckets start during backward at every step '
                           '(' + ' | '.join(p.stdout.splitlines()) + ')')
    if openmpi:
        p = run(2, ['--batch', '32', '--out', f('sleepy')], btl=transports[0], wait_us=50,
                shm=False)
        check(same_bits(f(transports[0]), f('sleepy')),
              'the sleeping wait (NN_DIST_WAIT_US=50) gives the same bits')
        # the shared-memory reduction's barriers with the sleeping wait
        # (MPI_Ibarrier polled)
        p3 = run(2, ['--batch', '32', '--out', f('sleepy_shm')], btl=transports[0], wait_us=50)
        check(same_bits(f(transports[0]), f('sleepy_shm')) and
              p3.stdout.count('wait timed, update whole, reduction shared memory,') == 2,
              'the shared-memory reduction with the sleeping wait gives the same bits')
        # sharded, its reduce-scatter and the all-gather's messages polled
        # (the non-blocking forms)
        p2 = run(2, ['--batch', '32', '--out', f('sleepy_sh')], btl=transports[0], wait_us=50,
                 shard=True)
        check(same_bits(f(transports[0]), f('sleepy_sh')) and
              p2.stdout.count('wait timed, update sharded') == 2,
              'sharded with the sleeping wait (MPI_Ireduce_scatter, MPI_Isend/MPI_Irecv) gives the '
              'same bits')
        # it waits in a barrier before the blocking reduction, and times it
        check(p.stdout.count('wait timed') == 2, 'the sleeping wait times the wait on both ranks')
        # and its MPI_Iallreduce takes Rabenseifner's algorithm, unless the
        # user chose one
        check(p.stdout.count('libnbc iallreduce algorithm 3)') == 2,
              'the sleeping wait chooses libnbc\'s Rabenseifner allreduce (' +
              ' | '.join(p.stdout.splitlines()) + ')')
        if quick:
            skipped('an iallreduce algorithm given with --mca')
        else:
            p = run(2, ['--batch', '32', '--out', f('sleepy4')], btl=transports[0], wait_us=50,
                    mpi_args=['--mca', 'coll_libnbc_iallreduce_algorithm', '4'])
            check(p.stdout.count('libnbc iallreduce algorithm 4)') == 2 and
                  same_bits(f(transports[0]), f('sleepy4')),
                  'an algorithm given with --mca is kept, and gives the same bits')
        p = run(2, ['--batch', '32', '--out', f('timed')], btl=transports[0],
                mpi_args=['-x', 'NN_DIST_TIMING=1'], shm=False)
        check(same_bits(f(transports[0]), f('timed')) and p.stdout.count('wait timed') == 2,
              'NN_DIST_TIMING=1 times the wait for the other rank and gives the same bits')
        # the first run, through MPI_Allreduce with the default wait
        check(p_mpi.stdout.count('wait not timed') == 2 and
              p_mpi.stdout.count('libnbc iallreduce algorithm 0)') == 2,
              'through MPI_Allreduce the wait is not timed by default (no barrier before the '
              'reduction) and libnbc keeps its own choice')

    # ranks whose models differ: refused by every rank before any weight moves
    p = run(2, ['--mismatch'], expect_ok=False, timeout=90)
    check(p.returncode != 0 and 'nn_dist_attach: the ranks differ in their gradients\' size'
          in p.stderr and 'ending every rank' in p.stderr,
          'ranks with different models: nn_dist_attach refuses, naming the difference')

    # failures in epoch 2 (steps 9..16) of a 2-epoch run: a rank errs, a
    # rank dies; then the run resumes from the checkpoint of epoch 1, at
    # one rank with batch 64 and at two with batch 32, and ends where the
    # uninterrupted run does.
    for mode in ('error', 'die'):
        ck = f('ck_' + mode)
        # sharded: the checkpoint of epoch 1 needs the optimiser state that
        # each rank kept for its half, gathered before rank 0 saves
        p = run(2, ['--batch', '32', '--epochs', '2', '--checkpoint', ck, '--fail-rank', '1',
                    '--fail-step', '11', '--fail-mode', mode], expect_ok=False, timeout=90,
                shard=True)
        check(p.returncode != 0, f'a rank that {"errs" if mode == "error" else "dies"} ends the '
                                 f'run with status {p.returncode}')
        if mode == 'error':
            check('dist_train: rank 1 of 2: error: dist_train: failure injected at step 11; '
                  'ending every rank' in p.stderr, 'the message names the rank and the error')
        else:
            check('signal 9' in p.stderr or 'Killed' in p.stderr or not openmpi,
                  'mpirun says that a rank was killed')
        check('done' not in p.stdout, 'no rank finished')
        _, meta = load(ck)
        check(meta.get('nn_trainer_epoch') == '1', 'the last checkpoint (epoch 1) is intact')
        print('  stderr: ' + ' | '.join(l for l in p.stderr.splitlines()
                                        if l.strip() and not l.startswith('---'))[:400])
        np_, batch = (1, '64') if mode == 'error' else (2, '32')
        run(np_, ['--batch', batch, '--epochs', '2', '--resume', ck, '--out', f('resumed')],
            shard=True)
        d = max_diff(f('ref'), f('resumed'))
        check(d < 1e-5, f'resumed from epoch 1 at {np_} rank(s) x batch {batch} = the '
                        f'uninterrupted run (max |diff| {d:.2e})')

    # BatchNorm's running statistics, averaged over the ranks
    run(1, ['--bn', '--batch', '64', '--out', f('bn_ref')])
    run(2, ['--bn', '--batch', '32', '--every-rank', '--out', f('bn')], btl=transports[0])
    t0, _ = load(f('bn') + '.0')
    t1, _ = load(f('bn') + '.1')
    check(t0 == t1, 'with BatchNorm, both ranks end with the same state, running statistics '
                    'included, bit for bit')
    # sharded: each rank writes back its part of the averaged statistics,
    # the rest comes with the all-gather
    run(2, ['--bn', '--batch', '32', '--every-rank', '--out', f('bn_sh')], btl=transports[0],
        shard=True)
    s0, _ = load(f('bn_sh') + '.0')
    s1, _ = load(f('bn_sh') + '.1')
    check(s0 == s1 and s0 == t0, 'with BatchNorm and the sharded update, both ranks end with '
                                 'the whole update\'s state, bit for bit')
    ref, _ = load(f('bn_ref'))
    rm = max(abs(a - b) for a, b in zip(floats(ref['0.running_mean']), floats(t0['0.running_mean'])))
    rv = max(abs(a - b) / a for a, b in zip(floats(ref['0.running_var']), floats(t0['0.running_var'])))
    moved = max(abs(a) for a in floats(ref['0.running_mean']))
    check(rm < 1e-6 and moved > 1e-3,
          f'running_mean at 2 ranks x 32 = 1 x 64 (max |diff| {rm:.2e}, values up to {moved:.2e})')
    # the average of the shards' unbiased variances misses the spread of
    # the shard means: close, not equal
    check(rv < 1e-2, f'running_var at 2 ranks x 32 close to 1 x 64 (max relative diff {rv:.2e})')

    if charlm:
        # a synthetic text (the fortunes need not be installed)
        state, words = 12345, 'the a cat dog sat on mat and ran to see what is it who'.split()
        out = []
        for i in range(6000):
            state = (state * 1103515245 + 12345) % 2**31
            out.append(words[state % len(words)] + ('.\n' if state % 7 == 0 else ''))
        with open(f('text'), 'w') as fh:
            fh.write(' '.join(out))
        small = ['--data', f('text'), '--seq', '16', '--hidden', '32', '--embed', '16',
                 '--steps', '12', '--val-limit', '2000', '--threads', '1', '--json']
        p1 = run(1, small + ['--batch', '8', '--save', f('lm1')], exe=charlm)
        p2 = run(2, small + ['--batch', '4', '--save', f('lm2')], btl=transports[0], exe=charlm)
        # overlap: an LSTM's weights are read at every step, so a bucket
        # starts only once backward has reached the first step
        cmd_env = ['-x', 'NN_DIST_OVERLAP=1', '-x', 'NN_DIST_BUCKET_BYTES=16384']
        run(2, small + ['--batch', '4', '--save', f('lm2o')], btl=transports[0], exe=charlm,
            mpi_args=cmd_env if openmpi else [])
        check(same_bits(f('lm2'), f('lm2o')) or not openmpi,
              'charlm: reductions started during backward (16 KB buckets) give the same bits')
        a, _ = load(f('lm1'))
        b, _ = load(f('lm2'))
        d = max(abs(x - y) for k in a if k.startswith('model.')
                for x, y in zip(floats(a[k]), floats(b[k])))
        check(d < 1e-5, f'charlm: 2 ranks x batch 4 = 1 x batch 8 after 12 steps '
                        f'(max |diff| {d:.2e})')
        j1, j2 = json_lines_of(p1), json_lines_of(p2)
        check(len(j2) == 1 and j2[0]['world_size'] == 2 and j1[0]['world_size'] == 1,
              'charlm --json: one line (rank 0 alone prints), world_size 2')
        check(abs(j2[0]['last_loss'] - j1[0]['last_loss']) < 1e-4 and
              j2[0]['last_loss'] < j2[0]['first_loss'] - 0.1,
              f'charlm: the loss over both ranks is the one-process loss and falls '
              f'({j2[0]["first_loss"]:.3f} -> {j2[0]["last_loss"]:.3f})')
finally:
    shutil.rmtree(tmp, ignore_errors=True)

if failures:
    sys.exit(f'{len(failures)} check(s) failed')
print('all data-parallel checks passed')
