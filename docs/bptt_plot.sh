#!/bin/sh
# docs/bptt_plot.sh - makes docs/bptt.png, the figure of the guide's section
# on backpropagation through time, from real training runs of
# docs/examples/charlm on the fortunes text.
#
#     docs/bptt_plot.sh build/docs/examples/charlm [OUT.png]
#
# Four runs of 300 steps (batch 16, chunks of 100 bytes, one thread): a
# plain tanh RNN and an LSTM, each with the gradient clipped to a global
# norm of 1 and without clipping.  charlm --norms writes, per run, the
# loss and the gradient's global norm (before clipping) of every step, and
# for the loss of a chunk's last byte the size of its gradient with
# respect to the input d steps earlier, before and after training.  Needs
# gnuplot (gnuplot-nox).
set -eu
charlm=$1
out=${2:-$(dirname "$0")/bptt.png}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for model in rnn lstm; do
    for clip in 1 0; do
        OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$charlm" --model "$model" --clip "$clip" \
            --steps 300 --batch 16 --seq 100 --val-limit 20000 --threads 1 --quiet \
            --norms "$tmp/$model-$clip"
    done
done
gnuplot <<GP
set terminal pngcairo size 1200,420 font 'sans,10' noenhanced
set output '$out'
set datafile separator ','
set key autotitle columnhead
set grid
set multiplot layout 1,3
set title 'gradient of the last byte loss at d steps back'
set xlabel 'd (steps back in time)'
set ylabel '|dE/dx_(T-d)| (mean over the batch)'
set logscale y
set format y '1e%T'
plot '$tmp/rnn-1.distance.csv' using 1:2 with lines lw 2 dt 2 lc rgb '#d62728' title 'RNN, initial', \
     '' using 1:3 with lines lw 2 lc rgb '#d62728' title 'RNN, trained', \
     '$tmp/lstm-1.distance.csv' using 1:2 with lines lw 2 dt 2 lc rgb '#1f77b4' title 'LSTM, initial', \
     '' using 1:3 with lines lw 2 lc rgb '#1f77b4' title 'LSTM, trained'
set title 'global gradient norm per step (before clipping)'
set xlabel 'training step'
set ylabel '|g|'
plot '$tmp/rnn-0.steps.csv' using 1:3 with lines lc rgb '#ff9896' title 'RNN, no clipping', \
     '$tmp/rnn-1.steps.csv' using 1:3 with lines lc rgb '#d62728' title 'RNN, clip 1', \
     '$tmp/lstm-0.steps.csv' using 1:3 with lines lc rgb '#aec7e8' title 'LSTM, no clipping', \
     '$tmp/lstm-1.steps.csv' using 1:3 with lines lc rgb '#1f77b4' title 'LSTM, clip 1'
unset logscale y
set format y '%g'
set title 'training loss'
set ylabel 'cross-entropy (nats)'
plot '$tmp/rnn-0.steps.csv' using 1:2 with lines lc rgb '#ff9896' title 'RNN, no clipping', \
     '$tmp/rnn-1.steps.csv' using 1:2 with lines lc rgb '#d62728' title 'RNN, clip 1', \
     '$tmp/lstm-0.steps.csv' using 1:2 with lines lc rgb '#aec7e8' title 'LSTM, no clipping', \
     '$tmp/lstm-1.steps.csv' using 1:2 with lines lc rgb '#1f77b4' title 'LSTM, clip 1'
unset multiplot
GP
# the numbers behind the figure, for the text
for f in "$tmp"/*.distance.csv; do
    printf '%s: ' "$(basename "$f" .distance.csv)"
    awk -F, 'NR == 2 || NR == 12 || NR == 51 || NR == 101 { printf "d=%s %s/%s  ", $1, $2, $3 } END { print "" }' "$f"
done
for f in "$tmp"/*.steps.csv; do
    printf '%s: ' "$(basename "$f" .steps.csv)"
    awk -F, 'NR > 1 { if ($3 > m) m = $3; s += $3; n++; if (NR > 271) l += $2 } END { printf "max |g| %g, mean |g| %g, loss of the last 30 steps %g\n", m, s / n, l / 30 }' "$f"
done
echo "wrote $out"
