# docs/figures/lr_paths.gp - gradient descent on E = ½ (w1² + 10 w2²) with
# five learning rates (data from lr_paths.c), over the contours of E.
#     gnuplot -e "dir='OUTDIR'" lr_paths.gp
set terminal pngcairo size 760,640 font "Sans,10"
set output dir . "/lr_paths.png"
E(x, y) = 0.5 * (x**2 + 10 * y**2)
set xrange [-0.3:1.1]
set yrange [-1.6:1.6]
set isosamples 150, 150
set contour base
set cntrparam levels discrete 0.01, 0.05, 0.2, 0.5, 1, 2, 5, 10
unset surface
set view map
set table dir . "/lr_contours.dat"
splot E(x, y)
unset table
set size ratio 0.8
set key outside below box maxrows 3
set title "E = (w1^2 + 10 w2^2)/2 from (1, 1): 30 steps of gradient descent"
set xlabel "w1 (curvature 1)"
set ylabel "w2 (curvature 10)"
plot dir . "/lr_contours.dat" with lines lc rgb "#c0c0c0" notitle, \
     dir . "/lr_paths.dat" index 0 using 1:2 with linespoints pt 7 ps 0.5 lc rgb "#7f7f7f" title "eta 0.01 (r = 0.99)", \
     dir . "/lr_paths.dat" index 1 using 1:2 with linespoints pt 7 ps 0.5 lc rgb "#2ca02c" title "eta 0.1 (r = 0.9)", \
     dir . "/lr_paths.dat" index 2 using 1:2 with linespoints pt 7 ps 0.5 lc rgb "#1f77b4" title "eta* = 2/11 (r = 0.818)", \
     dir . "/lr_paths.dat" index 3 using 1:2 with linespoints pt 7 ps 0.5 lc rgb "#ff7f0e" title "eta 0.19 (r = 0.9)", \
     dir . "/lr_paths.dat" index 4 using 1:2 with linespoints pt 7 ps 0.5 lc rgb "#d62728" title "eta 0.21 (r = 1.1, diverges)"
