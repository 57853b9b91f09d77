import { useEffect, useMemo, useRef, useState } from 'react';
import { downsample, ema, formatNumber, niceTicks, type LossPoint } from './format';

const HEIGHT = 200;
const M = { top: 10, right: 14, bottom: 22, left: 52 };
/** Points drawn at most, however long the run (10k steps draw as fast as 100). */
const MAX_POINTS = 1000;

/**
 * The loss curve: x = step (0 to the run's total), y = loss, auto-scaled.
 * The per-step loss is noisy, so it is drawn faint (with its min-max band
 * where points were merged) under an exponential moving average.
 */
export function LossChart({ points, total }: { points: readonly LossPoint[]; total: number }) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(640);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver((entries) => {
      const w = Math.round(entries[0]?.contentRect.width ?? 0);
      if (w > 0) setWidth(w);
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const chart = useMemo(() => {
    const pts = downsample(points, MAX_POINTS);
    if (!pts.length) return null;
    const smooth = ema(
      pts.map((p) => p.mean),
      Math.max(5, Math.round(pts.length / 25)),
    );
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of pts) {
      lo = Math.min(lo, p.mean);
      hi = Math.max(hi, p.mean);
    }
    if (hi - lo < 1e-9) {
      const pad = Math.abs(hi) * 0.1 || 0.01;
      lo -= pad;
      hi += pad;
    } else {
      const pad = (hi - lo) * 0.06;
      lo = Math.max(lo >= 0 ? 0 : -Infinity, lo - pad);
      hi += pad;
    }
    const xMax = Math.max(total, pts[pts.length - 1].step, 1);
    return { pts, smooth, lo, hi, xMax, merged: pts.length < points.length };
  }, [points, total]);

  const w = Math.max(200, width);
  const iw = w - M.left - M.right;
  const ih = HEIGHT - M.top - M.bottom;

  if (!chart) {
    return (
      <div ref={box} className="loss-chart empty" data-testid="loss-chart">
        <span className="muted">No loss yet: the curve starts with the first training step.</span>
      </div>
    );
  }

  const { pts, smooth, lo, hi, xMax, merged } = chart;
  const x = (step: number) => M.left + (step / xMax) * iw;
  const y = (v: number) => M.top + (1 - (v - lo) / (hi - lo)) * ih;
  const f = (n: number) => n.toFixed(1);
  const line = (vals: number[]) => vals.map((v, i) => `${i ? 'L' : 'M'}${f(x(pts[i].step))},${f(y(v))}`).join('');
  const raw = line(pts.map((p) => p.mean));
  const smoothPath = line(smooth);
  const band = merged
    ? `${pts.map((p, i) => `${i ? 'L' : 'M'}${f(x(p.step))},${f(y(p.max))}`).join('')}${pts
        .slice()
        .reverse()
        .map((p) => `L${f(x(p.step))},${f(y(p.min))}`)
        .join('')}Z`
    : null;
  const yTicks = niceTicks(lo, hi, 4).filter((t) => t >= lo && t <= hi);
  const xTicks = niceTicks(0, xMax, Math.max(2, Math.floor(iw / 90))).filter((t) => t <= xMax);
  const last = points[points.length - 1];

  return (
    <div ref={box} className="loss-chart" data-testid="loss-chart">
      <svg width={w} height={HEIGHT} viewBox={`0 0 ${w} ${HEIGHT}`} role="img" aria-label={`Loss curve: ${points.length} steps, last loss ${formatNumber(last?.[1])}`}>
        <defs>
          <clipPath id="loss-clip">
            <rect x={M.left} y={M.top} width={iw} height={ih} />
          </clipPath>
        </defs>
        <g className="axis">
          {yTicks.map((t) => (
            <g key={`y${t}`}>
              <line x1={M.left} x2={M.left + iw} y1={y(t)} y2={y(t)} className="grid" />
              <text x={M.left - 6} y={y(t)} dy="0.32em" textAnchor="end">
                {formatNumber(t, 3)}
              </text>
            </g>
          ))}
          {xTicks.map((t) => (
            <text key={`x${t}`} x={x(t)} y={HEIGHT - 6} textAnchor="middle">
              {t}
            </text>
          ))}
          <line x1={M.left} x2={M.left + iw} y1={M.top + ih} y2={M.top + ih} className="base" />
        </g>
        <g clipPath="url(#loss-clip)">
          {band && <path d={band} className="loss-band" />}
          <path d={raw} className="loss-raw" data-testid="loss-line" />
          <path d={smoothPath} className="loss-smooth" />
          {last && <circle cx={x(last[0])} cy={y(pts[pts.length - 1].mean)} r={2.5} className="loss-dot" />}
        </g>
      </svg>
    </div>
  );
}
