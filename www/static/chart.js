// A small line chart on a canvas: test accuracy (solid, left axis 0–100 %)
// and training loss (dashed, right axis) per peer over the job's rounds
// (a tab that joined late starts where the job was). No library.

const COLORS = ['#2b6cb0', '#c05621', '#2f855a', '#b83280', '#6b46c1', '#c53030', '#2c7a7b', '#975a16'];

export function color(i) { return COLORS[i % COLORS.length]; }

export function draw(canvas, series, jobRound = 0) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * dpr || canvas.height !== h * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
  const c = canvas.getContext('2d');
  c.setTransform(dpr, 0, 0, dpr, 0, 0);
  c.clearRect(0, 0, w, h);
  const L = 44, R = 44, T = 10, B = 26, pw = w - L - R, ph = h - T - B;
  let maxRound = Math.max(10, jobRound), maxLoss = 0.5;
  for (const s of series) for (const p of s.points) { maxRound = Math.max(maxRound, p.round); maxLoss = Math.max(maxLoss, p.loss || 0); }
  maxLoss = Math.min(maxLoss, 5);
  const X = (r) => L + (r / maxRound) * pw, YA = (a) => T + (1 - a) * ph, YL = (l) => T + (1 - Math.min(l, maxLoss) / maxLoss) * ph;
  c.strokeStyle = '#ddd'; c.fillStyle = '#555'; c.font = '11px system-ui, sans-serif'; c.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = T + (i / 4) * ph;
    c.beginPath(); c.moveTo(L, y); c.lineTo(L + pw, y); c.stroke();
    c.textAlign = 'right'; c.fillText(`${100 - i * 25}%`, L - 4, y + 4);
    c.textAlign = 'left'; c.fillText(((1 - i / 4) * maxLoss).toFixed(2), L + pw + 4, y + 4);
  }
  c.textAlign = 'center';
  for (let i = 0; i <= 5; i++) c.fillText(String(Math.round((i / 5) * maxRound)), X((i / 5) * maxRound), h - 8);
  c.fillText('job round', L + pw / 2, h - 8 + 0); // axis name under the middle tick is fine at this size
  series.forEach((s) => {
    c.strokeStyle = s.color; c.lineWidth = 1.5;
    c.setLineDash([4, 3]); c.beginPath();
    s.points.forEach((p, i) => (i ? c.lineTo(X(p.round), YL(p.loss)) : c.moveTo(X(p.round), YL(p.loss))));
    c.stroke();
    c.setLineDash([]); c.lineWidth = 2; c.beginPath();
    let started = false;
    for (const p of s.points) {
      if (!p.test_acc) continue;
      if (started) c.lineTo(X(p.round), YA(p.test_acc)); else { c.moveTo(X(p.round), YA(p.test_acc)); started = true; }
    }
    c.stroke();
  });
}
