// tests/web_test.js - the playground page (web/) in headless Chromium.
//
//   node tests/web_test.js BUILD/web/index.html PATH/TO/adcalc /usr/bin/chromium [GUIDE.md ...]
//
// Opens the page from the file system (as a student would, offline) with
// playwright-core driving Debian's chromium, and checks it against the
// native adcalc: the value, gradient and Hessian of several expressions;
// stepping through the backward pass ends with the adjoints of the native
// --json --trace; an invalid expression shows the engine's message; the
// descent panel's final points match the native --descend; the Chinese
// page has every string; every link from the guides to the page opens it
// with its example and no error.  The page runs the same C code compiled by
// emscripten, whose libm (musl's) may differ from glibc's in the last
// bits of sin, exp, pow: numbers are compared to 1e-12 relative.
'use strict';

const { chromium } = require('playwright-core');
const { execFileSync } = require('child_process');
const path = require('path');
const fs = require('fs');

const [page_path, adcalc, browser_path, ...guides] = process.argv.slice(2);
let failures = 0, checks = 0;

function check(cond, what) {
  checks++;
  if (!cond) {
    failures++;
    console.log('FAIL: ' + what);
  }
}

function close(a, b, tol = 1e-12) {
  if (a === null || b === null) return a === b;
  return Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));
}

// The native adcalc's output (stdout), whatever its exit status.
function native(args) {
  try {
    return execFileSync(adcalc, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    return { stdout: e.stdout, stderr: e.stderr, status: e.status };
  }
}

async function waitReady(page) {
  await page.waitForFunction(() => document.body.dataset.ready !== undefined, null, { timeout: 60000 });
  return page.evaluate(() => document.body.dataset.ready);
}

async function computeExpr(page, expr, point, hessian) {
  await page.fill('#expr', expr);
  await page.fill('#point', point);
  await page.setChecked('#hessian', hessian);
  // Both signs of completion are reset first: an error left visible by the
  // previous expression would otherwise end the wait before this one ran.
  await page.evaluate(() => {
    document.getElementById('step-count').textContent = 'pending';
    document.getElementById('calc-error').hidden = true;
  });
  await page.click('#compute');
  await page.waitForFunction(() => document.getElementById('step-count').textContent !== 'pending' ||
                                   !document.getElementById('calc-error').hidden, null, { timeout: 30000 });
}

async function main() {
  const browser = await chromium.launch({
    executablePath: browser_path,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--allow-file-access-from-files'],
  });
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const url = 'file://' + path.resolve(page_path);
  const t0 = Date.now();
  await page.goto(url);
  const ready = await waitReady(page);
  const loadMs = Date.now() - t0;
  check(ready === 'true', `page ready: ${ready}`);
  console.log(`page ready in ${loadMs} ms (both panels computed)`);

  // ---- value, gradient, Hessian against the native adcalc ----
  const cases = [
    ['x*y + sin(x)', 'x=2 y=3', false],
    ['x^2*y + y^3', 'x=1 y=2', true],
    ['sigmoid(x)*log(1 + exp(y))', 'x=0.3 y=-1.5', true],
    ['-x^2', 'x=3', false],
  ];
  for (const [expr, point, hessian] of cases) {
    await computeExpr(page, expr, point, hessian);
    const want = JSON.parse(native(['--json', '--trace'].concat(hessian ? ['--hessian'] : [], ['--', expr],
                                                                point.split(' '))));
    const got = await page.evaluate(() => ({
      value: JSON.parse(document.getElementById('value').dataset.value),
      grad: Array.from(document.querySelectorAll('td.grad')).map((c) => JSON.parse(c.dataset.value)),
      hessian: Array.from(document.querySelectorAll('td.hessian')).map((c) => c.textContent),
    }));
    check(close(got.value, want.value), `${expr}: value ${got.value} vs native ${want.value}`);
    check(got.grad.length === want.grad.length && got.grad.every((g, i) => close(g, want.grad[i])),
          `${expr}: gradient ${got.grad} vs native ${want.grad}`);
    check(!hessian || got.hessian.length === want.hessian.length, `${expr}: Hessian rows shown`);

    // Step through the whole trace; the last step's adjoints are the native ones.
    const steps = want.trace.length;
    for (let k = 0; k < steps; k++) await page.click('#step');
    const last = await page.evaluate(() => {
      const out = {};
      document.querySelectorAll('td.adjoint').forEach((c) => { out[c.dataset.name] = JSON.parse(c.dataset.value); });
      return { adjoints: out, text: document.getElementById('step-text').textContent,
               current: document.querySelectorAll('g.node.current').length };
    });
    const wantLast = want.trace[steps - 1];
    check(last.text === wantLast.text, `${expr}: last step text '${last.text}' vs '${wantLast.text}'`);
    const names = Object.keys(wantLast.adjoints || {});
    check(names.length > 0 && names.every((n) => close(last.adjoints[n], wantLast.adjoints[n])),
          `${expr}: adjoints after stepping ${JSON.stringify(last.adjoints)} vs ${JSON.stringify(wantLast.adjoints)}`);
    check(last.current === 1, `${expr}: the current node is highlighted in the graph`);
    // Back one step and forward again
    await page.click('#step-back');
    const back = await page.textContent('#step-text');
    check(back === want.trace[steps - 2].text, `${expr}: Back shows the step before`);
  }

  // ---- the engine's error for an invalid expression ----
  await computeExpr(page, 'x*', 'x=1', false);
  const err = await page.textContent('#calc-error');
  const nerr = native(['--', 'x*', 'x=1']);
  check(nerr.stderr && err.trim() === nerr.stderr.trim(), `parse error shown: '${err}' vs '${nerr.stderr}'`);
  await computeExpr(page, 'log(x)', 'x=-1', false);
  const warn = await page.textContent('#warnings');
  check(/log produced nan/.test(warn), `domain warning shown: '${warn}'`);

  // ---- the descent panel: the final point of each method ----
  for (const [lr, steps] of [['0.18', '40'], ['0.21', '40']]) {
    await page.selectOption('#preset', 'quadratic');
    await page.fill('#lr', lr);
    await page.fill('#steps', steps);
    await page.evaluate(() => { document.getElementById('paths').textContent = ''; });
    await page.click('#descend');
    await page.waitForFunction(() => document.querySelectorAll('tr.path-row').length === 3, null, { timeout: 30000 });
    const rows = await page.evaluate(() => Array.from(document.querySelectorAll('tr.path-row')).map(
      (r) => ({ method: r.dataset.method, final: JSON.parse(r.dataset.final) })));
    for (const r of rows) {
      const out = native(['--json', '--descend=' + r.method, '--lr=' + lr, '--steps=' + steps, '--',
                          '0.5*(x^2 + 10*y^2)', 'x=-1.8', 'y=0.9']);
      const want = JSON.parse(typeof out === 'string' ? out : out.stdout).path;
      const fin = want[want.length - 1];
      check(r.final.length === fin.length && r.final.every((v, i) => close(v, fin[i], 1e-9)),
            `descent ${r.method} lr ${lr}: final ${r.final} vs native ${fin}`);
    }
    const sgd = rows.find((r) => r.method === 'sgd').final;
    // lr 0.18 < 2/lambda_max = 0.2 converges; 0.21 does not (|1 - 10 lr| > 1)
    if (lr === '0.18') check(Math.abs(sgd[1]) < 1e-3, `sgd at 0.18 converges in y: ${sgd}`);
    else check(Math.abs(sgd[1]) > 1, `sgd at 0.21 grows in y: ${sgd}`);
  }
  const pixels = await page.evaluate(() => {
    const c = document.getElementById('contour');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let coloured = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) coloured++;
    return coloured / (d.length / 4);
  });
  check(pixels > 0.9, `the contour plot is drawn (${pixels} of the canvas)`);

  // ---- Chinese ----
  await page.click('#lang');
  const zh = await page.evaluate(() => ({
    title: document.querySelector('h1').textContent,
    lang: document.documentElement.lang,
    missing: Array.from(document.querySelectorAll('[data-i18n]')).filter((e) => !e.textContent).length,
    keysEqual: JSON.stringify(Object.keys(I18N.en).sort()) === JSON.stringify(Object.keys(I18N.zh).sort()),
  }));
  check(zh.title === 'autodiff 演练场' && zh.lang === 'zh-CN' && zh.missing === 0, `Chinese page: ${JSON.stringify(zh)}`);
  check(zh.keysEqual, 'English and Chinese have the same strings');
  // A link from the guide pre-fills the expression.
  await page.goto(url + '?lang=zh&expr=' + encodeURIComponent('x^3') + '&point=x%3D2');
  await waitReady(page);
  const pre = await page.evaluate(() => ({ v: document.getElementById('value').dataset.value,
                                           h1: document.querySelector('h1').textContent }));
  check(pre.v === '8' && pre.h1 === 'autodiff 演练场', `pre-filled link: ${JSON.stringify(pre)}`);

  // ---- every link from the guides opens the page with its example ----
  for (const guide of guides) {
    const text = fs.readFileSync(guide, 'utf8');
    const links = [...text.matchAll(/\(\.\.\/build\/web\/index\.html(\?[^)]*)\)/g)].map((m) => m[1]);
    check(links.length >= 5, `${path.basename(guide)} links to the page (${links.length} links)`);
    for (const q of links) {
      await page.goto(url + q);
      const state = await waitReady(page);
      const shown = await page.evaluate(() => ({
        calcError: document.getElementById('calc-error').hidden ? '' : document.getElementById('calc-error').textContent,
        descentError: document.getElementById('descent-error').hidden ? '' : document.getElementById('descent-error').textContent,
        expr: document.getElementById('expr').value, f: document.getElementById('f').value,
        lang: document.documentElement.lang,
      }));
      const params = new URLSearchParams(q);
      check(state === 'true' && !shown.calcError && !shown.descentError &&
            (!params.get('expr') || shown.expr === params.get('expr')) &&
            (!params.get('f') || shown.f === params.get('f')) &&
            (params.get('lang') !== 'zh' || shown.lang === 'zh-CN'),
            `${path.basename(guide)} link ${q}: ${JSON.stringify(shown)}`);
    }
  }

  check(pageErrors.length === 0, `no JavaScript errors: ${pageErrors.join('; ')}`);
  await browser.close();
  const size = (f) => fs.statSync(path.join(path.dirname(page_path), f)).size;
  console.log(`sizes: adcalc.js (wasm inside) ${size('adcalc.js')} bytes, viz-global.js ${size('viz-global.js')} bytes`);
  console.log(`${checks - failures}/${checks} checks passed`);
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.log('FAIL: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
