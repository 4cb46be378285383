# docs/figures/landscape.gp - contours of f(x, y) = tanh((x^2 - 1)^2 + y^2)
# with the gradient-descent paths of landscape.c.
#     gnuplot -e "dir='OUTDIR'" landscape.gp
set terminal pngcairo size 760,560 font "Sans,10"
set output dir . "/landscape.png"
f(x, y) = tanh((x**2 - 1)**2 + y**2)
set xrange [-2.4:2.4]
set yrange [-1.8:1.8]
set isosamples 200, 200
set contour base
set cntrparam levels discrete 0.02, 0.1, 0.3, 0.5, 0.7, 0.76, 0.9, 0.99, 0.9999
unset surface
set view map
set table dir . "/landscape_contours.dat"
splot f(x, y)
unset table
set size ratio -1
set key outside below box
set title "f(x,y) = tanh((x^2-1)^2 + y^2): gradient descent, eta = 0.1, 300 steps"
set xlabel "x"
set ylabel "y"
plot dir . "/landscape_contours.dat" with lines lc rgb "#c0c0c0" notitle, \
     dir . "/landscape.dat" index 0 using 1:2 with linespoints pt 7 ps 0.4 pi 5 lw 2 lc rgb "#2ca02c" title "from (0.3, 1.5): to the minimum (1, 0)", \
     dir . "/landscape.dat" index 1 using 1:2 with linespoints pt 7 ps 0.4 pi 5 lw 2 lc rgb "#d62728" title "from (0, 1.5): stops at the saddle (0, 0)", \
     dir . "/landscape.dat" index 2 using 1:2 with linespoints pt 7 ps 0.4 pi 5 lw 1 lc rgb "#1f77b4" title "from (0.001, 1.5): lingers at the saddle, then leaves", \
     dir . "/landscape.dat" index 3 using 1:2 with points pt 7 ps 1 lc rgb "#9467bd" title "from (2.2, 1.6): on the plateau, does not move", \
     "-" using 1:2 with points pt 3 ps 2 lc rgb "black" title "minima (-1, 0), (1, 0); saddle (0, 0)"
-1 0
1 0
0 0
e
