# docs/figures/fd_error.gp - error of forward and central differences
# against the step h (data from fd_error.c).  gnuplot -e "dir='OUTDIR'" fd_error.gp
set terminal pngcairo size 760,600 font "Sans,10"
set output dir . "/fd_error.png"
set logscale xy
set format x "10^{%L}"
set format y "10^{%L}"
set xrange [1e-16:1] reverse
set yrange [1e-17:10]
set grid
set key outside below box
set xlabel "step h"
set ylabel "|difference quotient - f'(1)|"
set title "f(x) = sin(x) e^x at x = 1: truncation error falls with h, round-off grows as eps/h"
eps = 2.0**-52
fpp = 2 * exp(1) * cos(1)
fppp = 2 * exp(1) * (cos(1) - sin(1))
plot dir . "/fd_error.dat" using 1:2 with linespoints pt 7 ps 0.5 lc rgb "#d62728" title "forward (f(x+h) - f(x)) / h", \
     dir . "/fd_error.dat" using 1:3 with linespoints pt 5 ps 0.5 lc rgb "#1f77b4" title "central (f(x+h) - f(x-h)) / 2h", \
     abs(fpp) / 2 * x with lines dt 2 lc rgb "#d62728" title "h |f''| / 2", \
     abs(fppp) / 6 * x**2 with lines dt 2 lc rgb "#1f77b4" title "h^2 |f'''| / 6", \
     eps * exp(1) * sin(1) / x with lines dt 3 lc rgb "black" title "eps |f| / h (round-off)"
