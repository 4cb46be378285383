// web/app.js - the playground page.  Everything numeric comes from the
// engine: adcalc (tools/adcalc.c) compiled to WebAssembly, run with the
// same arguments as on the command line (--json, --trace, --dot,
// --descend, --grid).  This file only lays out what it prints.
'use strict';

var lang = 'en';
var trace = [];     // the steps of adcalc --json --trace
var stepAt = -1;    // the step shown; -1 before the first
var nodeOf = {};    // a trace name (x, n0, ...) -> its <g> in the graph
var vizPromise = null;

function t(key) {
  return (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key;
}

function applyLanguage() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  document.querySelectorAll('[data-i18n]').forEach(function (el) {
    el.textContent = t(el.getAttribute('data-i18n'));
  });
  document.getElementById('lang').textContent = lang === 'en' ? '中文' : 'English';
  if (trace.length) showStep();
}

// ---- the engine ------------------------------------------------------------------------

// Runs adcalc with argv in a fresh instance of the WebAssembly module (its
// globals start clean, as a new process's do) and returns its exit status
// and what it printed.
async function adcalc(args) {
  var out = [], err = [];
  var m = await createAdcalc({
    print: function (s) { out.push(s); },
    printErr: function (s) { err.push(s); },
  });
  var status = 0;
  try {
    status = m.callMain(args);
  } catch (e) {
    if (e && typeof e.status === 'number') status = e.status;
    else throw e;
  }
  return { status: status, out: out.join('\n'), err: err.join('\n') };
}

// "x=2 y=3" or "x=2, y=3" -> ["x=2", "y=3"]
function bindings(text) {
  return text.split(/[\s,;]+/).filter(function (s) { return s.length > 0; });
}

function fmt(v) {
  if (v === null || v === undefined) return 'nan/inf';
  return String(+v.toPrecision(12));
}

function cell(row, text, tag) {
  var c = document.createElement(tag || 'td');
  c.textContent = text;
  row.appendChild(c);
  return c;
}

function showError(id, text) {
  var el = document.getElementById(id);
  el.textContent = text;
  el.hidden = !text;
}

// ---- panel 1: value, gradient, Hessian, graph, stepping --------------------------------

async function compute(ev) {
  if (ev) ev.preventDefault();
  var expr = document.getElementById('expr').value;
  var point = bindings(document.getElementById('point').value);
  var args = ['--json', '--trace'];
  if (document.getElementById('hessian').checked) args.push('--hessian');
  var r = await adcalc(args.concat(['--'], [expr], point));
  var result = null;
  try { result = JSON.parse(r.out); } catch (e) { result = null; }
  // Errors as the command line prints them (parse errors with the caret).
  showError('calc-error', result ? '' : (r.err || 'adcalc exited with status ' + r.status));
  document.getElementById('results').hidden = !result;
  document.getElementById('graph-area').hidden = !result;
  if (!result) return;

  var table = document.getElementById('result-table');
  table.textContent = '';
  var row = table.insertRow();
  cell(row, t('value'), 'th');
  var v = cell(row, fmt(result.value));
  v.id = 'value';
  v.dataset.value = JSON.stringify(result.value);
  result.variables.forEach(function (name, i) {
    var r2 = table.insertRow();
    cell(r2, 'df/d' + name, 'th');
    var g = cell(r2, fmt(result.grad[i]));
    g.className = 'grad';
    g.dataset.name = name;
    g.dataset.value = JSON.stringify(result.grad[i]);
  });
  if (result.hessian) {
    result.hessian.forEach(function (hrow, i) {
      var r3 = table.insertRow();
      cell(r3, t('hessian_row') + ' [' + result.variables[i] + ']', 'th');
      cell(r3, hrow.map(fmt).join('   ')).className = 'hessian';
    });
  }
  document.getElementById('warnings').textContent = (result.warnings || []).join('\n');

  trace = result.trace || [];
  stepAt = -1;
  await drawGraph(expr, point);
  showStep();
}

async function drawGraph(expr, point) {
  var r = await adcalc(['--dot', '--edge-derivatives', '--', expr].concat(point));
  var box = document.getElementById('graph');
  box.textContent = '';
  nodeOf = {};
  if (r.status !== 0 && !r.out) return;
  if (!vizPromise) vizPromise = Viz.instance();
  var viz = await vizPromise;
  var svg = viz.renderSVGElement(r.out);
  box.appendChild(svg);
  // Graphviz keeps each node's DOT id in its <title>: ops are n0, n1, ...
  // as in the trace; inputs are L0, L1, ... whose first label line is the
  // name the trace uses (x, y, or a constant's literal).
  svg.querySelectorAll('g.node').forEach(function (g) {
    var id = g.querySelector('title').textContent;
    var first = g.querySelector('text');
    var name = /^n\d+$/.test(id) ? id : (first ? first.textContent : id);
    nodeOf[name] = g;
  });
}

function showStep() {
  var count = document.getElementById('step-count');
  count.textContent = t('step_of').replace('{0}', String(stepAt + 1)).replace('{1}', String(trace.length));
  Object.keys(nodeOf).forEach(function (k) {
    nodeOf[k].classList.remove('current', 'input-of', 'visited');
  });
  var phase = document.getElementById('step-phase');
  var text = document.getElementById('step-text');
  var adj = document.getElementById('adjoints');
  adj.textContent = '';
  if (stepAt < 0) {
    phase.textContent = t('phase_start');
    text.textContent = '';
    return;
  }
  var s = trace[stepAt];
  phase.textContent = stepAt === trace.length - 1 && s.phase === 'backward'
    ? t('phase_' + s.phase) + ' ' + t('phase_done') : t('phase_' + s.phase);
  text.textContent = s.text;
  text.dataset.phase = s.phase;
  for (var i = 0; i <= stepAt; i++) {
    var done = nodeOf[trace[i].node];
    if (done) done.classList.add('visited');
  }
  if (nodeOf[s.node]) nodeOf[s.node].classList.add('current');
  (s.inputs || []).forEach(function (name) {
    if (nodeOf[name]) nodeOf[name].classList.add('input-of');
  });
  if (s.adjoints) {
    var head = adj.insertRow();
    cell(head, t('node'), 'th');
    cell(head, t('adjoint'), 'th');
    Object.keys(s.adjoints).forEach(function (name) {
      var r = adj.insertRow();
      cell(r, name);
      var c = cell(r, fmt(s.adjoints[name]));
      c.className = 'adjoint';
      c.dataset.name = name;
      c.dataset.value = JSON.stringify(s.adjoints[name]);
    });
  }
}

function step(delta) {
  if (!trace.length) return;
  stepAt = Math.max(-1, Math.min(trace.length - 1, stepAt + delta));
  showStep();
}

// ---- panel 2: gradient descent on a contour plot ---------------------------------------

var PRESETS = {
  quadratic: { f: '0.5*(x^2 + 10*y^2)', start: 'x=-1.8 y=0.9', range: 'x=-2:2 y=-1.2:1.2', lr: 0.18, steps: 40 },
  rosenbrock: { f: '(1 - x)^2 + 100*(y - x^2)^2', start: 'x=-1.2 y=1', range: 'x=-2:2 y=-1:3', lr: 0.001, steps: 2000 },
};
var COLOURS = { sgd: '#d62728', momentum: '#1f77b4', adam: '#2ca02c' };

function usePreset() {
  var p = PRESETS[document.getElementById('preset').value];
  if (!p) return;
  document.getElementById('f').value = p.f;
  document.getElementById('start').value = p.start;
  document.getElementById('range').value = p.range;
  document.getElementById('lr').value = p.lr;
  document.getElementById('steps').value = p.steps;
}

async function descend(ev) {
  if (ev) ev.preventDefault();
  var f = document.getElementById('f').value;
  var start = bindings(document.getElementById('start').value);
  var range = bindings(document.getElementById('range').value);
  var lr = document.getElementById('lr').value;
  var steps = document.getElementById('steps').value;
  var g = await adcalc(['--json', '--grid=80', '--', f].concat(range));
  var grid = null;
  try { grid = JSON.parse(g.out); } catch (e) { grid = null; }
  if (!grid || grid.variables.length !== 2) {
    showError('descent-error', g.err || 'give a range NAME=LO:HI for two variables');
    return;
  }
  var paths = [], errors = [];
  var methods = Array.prototype.filter.call(document.getElementsByName('method'),
    function (c) { return c.checked; }).map(function (c) { return c.value; });
  for (var i = 0; i < methods.length; i++) {
    var r = await adcalc(['--json', '--descend=' + methods[i], '--lr=' + lr, '--steps=' + steps, '--', f]
      .concat(start));
    try { paths.push(JSON.parse(r.out)); } catch (e) { errors.push(r.err); }
  }
  showError('descent-error', errors.join('\n'));
  drawContours(grid, paths);
  pathTable(paths);
}

function pathTable(paths) {
  var table = document.getElementById('paths');
  table.textContent = '';
  var head = table.insertRow();
  [t('method'), t('final_point'), t('final_f'), t('status')].forEach(function (h) { cell(head, h, 'th'); });
  paths.forEach(function (p) {
    var last = p.path[p.path.length - 1];
    var r = table.insertRow();
    r.className = 'path-row';
    r.dataset.method = p.method;
    r.dataset.final = JSON.stringify(last);
    var m = cell(r, p.method);
    m.style.color = COLOURS[p.method];
    cell(r, '(' + last.slice(0, -1).map(fmt).join(', ') + ')');
    cell(r, fmt(last[last.length - 1]));
    cell(r, p.diverged ? t('diverged') : t('converged'));
  });
}

// Filled contour bands on a log scale (loss surfaces span many decades),
// iso-lines by marching squares, and each path as a polyline.
function drawContours(grid, paths) {
  var canvas = document.getElementById('contour');
  var ctx = canvas.getContext('2d');
  var W = canvas.width, H = canvas.height;
  var xs = grid.axes[0], ys = grid.axes[1], F = grid.f;
  var nx = xs.length, ny = ys.length;
  var x0 = xs[0], x1 = xs[nx - 1], y0 = ys[0], y1 = ys[ny - 1];
  var px = function (x) { return (x - x0) / (x1 - x0) * W; };
  var py = function (y) { return H - (y - y0) / (y1 - y0) * H; };
  var lo = Infinity, hi = -Infinity;
  F.forEach(function (row) { row.forEach(function (v) { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }); });
  var shift = lo <= 0 ? 1e-12 - lo : 0; // log scale needs positive values
  var L = function (v) { return Math.log(v + shift + 1e-12); };
  var llo = L(lo), lhi = L(hi);
  ctx.clearRect(0, 0, W, H);
  var cw = W / (nx - 1), ch = H / (ny - 1);
  for (var j = 0; j < ny; j++) {
    for (var i = 0; i < nx; i++) {
      var v = F[j][i];
      var u = v === null ? 1 : (L(v) - llo) / (lhi - llo || 1);
      var shade = Math.round(255 - 150 * u);
      ctx.fillStyle = 'rgb(' + shade + ',' + shade + ',255)';
      ctx.fillRect(px(xs[i]) - cw / 2, py(ys[j]) - ch / 2, cw + 1, ch + 1);
    }
  }
  ctx.strokeStyle = 'rgba(40,40,80,0.55)';
  ctx.lineWidth = 1;
  for (var k = 1; k < 14; k++) {
    var level = llo + (lhi - llo) * k / 14;
    ctx.beginPath();
    for (var jj = 0; jj + 1 < ny; jj++) {
      for (var ii = 0; ii + 1 < nx; ii++) {
        var c = [[ii, jj], [ii + 1, jj], [ii + 1, jj + 1], [ii, jj + 1]];
        var pts = [];
        for (var e = 0; e < 4; e++) {
          var a = c[e], b = c[(e + 1) % 4];
          var va = F[a[1]][a[0]], vb = F[b[1]][b[0]];
          if (va === null || vb === null) continue;
          var la = L(va) - level, lb = L(vb) - level;
          if ((la < 0) !== (lb < 0)) {
            var s = la / (la - lb);
            pts.push([px(xs[a[0]] + s * (xs[b[0]] - xs[a[0]])), py(ys[a[1]] + s * (ys[b[1]] - ys[a[1]]))]);
          }
        }
        for (var q = 0; q + 1 < pts.length; q += 2) {
          ctx.moveTo(pts[q][0], pts[q][1]);
          ctx.lineTo(pts[q + 1][0], pts[q + 1][1]);
        }
      }
    }
    ctx.stroke();
  }
  paths.forEach(function (p) {
    ctx.strokeStyle = COLOURS[p.method] || '#000';
    ctx.fillStyle = ctx.strokeStyle;
    ctx.lineWidth = 2;
    ctx.beginPath();
    p.path.forEach(function (pt, n) {
      var X = px(Math.max(x0 - 1e3, Math.min(x1 + 1e3, pt[0] === null ? x1 : pt[0])));
      var Y = py(Math.max(y0 - 1e3, Math.min(y1 + 1e3, pt[1] === null ? y1 : pt[1])));
      if (n === 0) ctx.moveTo(X, Y); else ctx.lineTo(X, Y);
    });
    ctx.stroke();
    var last = p.path[p.path.length - 1];
    if (last[0] !== null && last[1] !== null) {
      ctx.beginPath();
      ctx.arc(px(last[0]), py(last[1]), 4, 0, 2 * Math.PI);
      ctx.fill();
    }
  });
}

// ---- wiring ------------------------------------------------------------------------------

function init() {
  var params = new URLSearchParams(location.search);
  lang = params.get('lang') === 'zh' ? 'zh' : 'en';
  // Links from the guide pre-fill the panels: ?expr=...&point=...&hessian=1,
  // ?f=...&start=...&range=...&lr=...&steps=...
  if (params.get('expr')) document.getElementById('expr').value = params.get('expr');
  if (params.get('point')) document.getElementById('point').value = params.get('point');
  if (params.get('hessian') === '1') document.getElementById('hessian').checked = true;
  if (params.get('f')) {
    document.getElementById('preset').value = 'custom';
    document.getElementById('f').value = params.get('f');
  }
  ['start', 'range', 'lr', 'steps'].forEach(function (k) {
    if (params.get(k)) document.getElementById(k).value = params.get(k);
  });
  document.getElementById('lang').addEventListener('click', function () {
    lang = lang === 'en' ? 'zh' : 'en';
    applyLanguage();
  });
  document.getElementById('calc-form').addEventListener('submit', compute);
  document.getElementById('descent-form').addEventListener('submit', descend);
  document.getElementById('preset').addEventListener('change', usePreset);
  document.getElementById('step').addEventListener('click', function () { step(1); });
  document.getElementById('step-back').addEventListener('click', function () { step(-1); });
  document.getElementById('step-all').addEventListener('click', function () { step(trace.length); });
  document.getElementById('step-reset').addEventListener('click', function () { stepAt = -1; showStep(); });
  applyLanguage();
  Promise.all([compute(), descend()]).then(function () {
    document.body.dataset.ready = 'true'; // for the browser test
  }, function (e) {
    showError('calc-error', String(e));
    document.body.dataset.ready = 'error';
  });
}

init();
