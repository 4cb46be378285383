# docs/figures/optim_paths.gp - contours of Rosenbrock's function with the
# paths that optim_paths.c recorded.  gnuplot -e "dir='OUTDIR'" optim_paths.gp
set terminal pngcairo size 760,640 font "Sans,10"
set output dir . "/optim_paths.png"
f(x, y) = (1 - x)**2 + 100 * (y - x**2)**2
set xrange [-2:1.8]
set yrange [-0.6:2.6]
set isosamples 200, 200
set contour base
set cntrparam levels discrete 0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000
unset surface
set view map
set table dir . "/optim_contours.dat"
splot f(x, y)
unset table
set size ratio -1
set key bottom right box opaque
set title "Rosenbrock's f(x,y) = (1-x)^2 + 100(y-x^2)^2: 2000 steps from (-1.5, 2)"
set xlabel "x"
set ylabel "y"
plot dir . "/optim_contours.dat" with lines lc rgb "#c0c0c0" notitle, \
     dir . "/optim_paths.dat" index 0 using 1:2 with lines lw 5 lc rgb "#d62728" title "SGD, lr 1e-3", \
     dir . "/optim_paths.dat" index 1 using 1:2 with lines lw 2.5 lc rgb "#1f77b4" title "momentum 0.9, lr 1e-3", \
     dir . "/optim_paths.dat" index 2 using 1:2 with lines lw 1 lc rgb "#2ca02c" title "Adam, lr 0.05", \
     dir . "/optim_paths.dat" index 0 every ::2000::2000 using 1:2 with points pt 7 ps 1.5 lc rgb "#d62728" title "SGD after 2000 steps", \
     "-" using 1:2 with points pt 3 ps 2 lc rgb "black" title "start (-1.5, 2), minimum (1, 1)"
-1.5 2
1 1
e
