// A small SVG line-chart writer for the demo's training curves: panels of named series (x, y points),
// with axes, "nice" ticks, a legend and escaped text. No dependencies; output is a standalone SVG 1.1
// document. Bounded: at most MAX_SERIES series per panel and MAX_POINTS points per series (evenly thinned).

export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface Panel {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  /** Fixed y range (e.g. [0, 1] for accuracies); default: from the data. */
  readonly yRange?: readonly [number, number];
  /** Only whole-number x ticks (steps). */
  readonly integerX?: boolean;
}

export const MAX_SERIES = 12;
export const MAX_POINTS = 2000;

const PALETTE = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
  '#393b79',
  '#637939',
];

/** Escapes text for XML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c,
  );
}

/** About `count` round tick values covering [lo, hi] (1, 2, 5 × 10^k steps). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9 && ticks.length < 50; v += step)
    ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function fmtTick(v: number): string {
  return Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0)
    ? v.toExponential(1)
    : String(Number(v.toPrecision(4)));
}

function thin<T>(points: readonly T[], max: number): readonly T[] {
  if (points.length <= max) return points;
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(points[Math.round((i * (points.length - 1)) / (max - 1))] as T);
  return out;
}

/** Maps data coordinates to pixel coordinates of a plot area. */
export function scale(v: number, lo: number, hi: number, pxLo: number, pxHi: number): number {
  if (hi === lo) return (pxLo + pxHi) / 2;
  return pxLo + ((v - lo) / (hi - lo)) * (pxHi - pxLo);
}

function panelSvg(panel: Panel, x0: number, y0: number, w: number, h: number): string {
  const series = panel.series.slice(0, MAX_SERIES).map((s) => ({
    name: s.name,
    points: thin(
      s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)),
      MAX_POINTS,
    ),
  }));
  const all = series.flatMap((s) => s.points);
  const left = x0 + 56;
  const right = x0 + w - 170;
  const top = y0 + 30;
  const bottom = y0 + h - 40;
  const parts: string[] = [];
  parts.push(
    `<text x="${x0 + w / 2}" y="${y0 + 18}" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(panel.title)}</text>`,
  );
  parts.push(
    `<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#333"/>`,
  );
  parts.push(
    `<text x="${(left + right) / 2}" y="${bottom + 32}" text-anchor="middle" font-size="12">${escapeXml(panel.xLabel)}</text>`,
  );
  parts.push(
    `<text x="${x0 + 14}" y="${(top + bottom) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 + 14} ${(top + bottom) / 2})">${escapeXml(panel.yLabel)}</text>`,
  );
  if (all.length === 0) {
    parts.push(
      `<text x="${(left + right) / 2}" y="${(top + bottom) / 2}" text-anchor="middle" font-size="12" fill="#888">no data</text>`,
    );
    return parts.join('\n');
  }
  let xLo = Math.min(...all.map((p) => p[0]));
  let xHi = Math.max(...all.map((p) => p[0]));
  if (xLo === xHi) [xLo, xHi] = [xLo - 1, xHi + 1];
  let [yLo, yHi] = panel.yRange ?? [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (yLo === yHi) [yLo, yHi] = [yLo - 0.5, yHi + 0.5];
  for (const t of niceTicks(xLo, xHi, 6).filter((v) => !panel.integerX || Number.isInteger(v))) {
    const px = scale(t, xLo, xHi, left, right).toFixed(1);
    parts.push(`<line x1="${px}" y1="${bottom}" x2="${px}" y2="${bottom + 4}" stroke="#333"/>`);
    parts.push(`<text x="${px}" y="${bottom + 16}" text-anchor="middle" font-size="10">${fmtTick(t)}</text>`);
  }
  for (const t of niceTicks(yLo, yHi, 5)) {
    const py = scale(t, yLo, yHi, bottom, top).toFixed(1);
    parts.push(`<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#ddd"/>`);
    parts.push(
      `<text x="${left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle" font-size="10">${fmtTick(t)}</text>`,
    );
  }
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length] ?? '#000';
    const pts = s.points
      .map(
        ([x, y]) =>
          `${scale(x, xLo, xHi, left, right).toFixed(1)},${scale(y, yLo, yHi, bottom, top).toFixed(1)}`,
      )
      .join(' ');
    parts.push(
      `<polyline data-series="${escapeXml(s.name)}" fill="none" stroke="${color}" stroke-width="2" points="${pts}"/>`,
    );
    for (const [x, y] of s.points.length <= 60 ? s.points : [])
      parts.push(
        `<circle cx="${scale(x, xLo, xHi, left, right).toFixed(1)}" cy="${scale(y, yLo, yHi, bottom, top).toFixed(1)}" r="2.5" fill="${color}"/>`,
      );
    const ly = top + 8 + i * 16;
    parts.push(
      `<line x1="${right + 10}" y1="${ly}" x2="${right + 28}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
    );
    parts.push(
      `<text x="${right + 32}" y="${ly}" dominant-baseline="middle" font-size="11">${escapeXml(s.name.slice(0, 24))}</text>`,
    );
  });
  return parts.join('\n');
}

/** A standalone SVG document with the panels stacked vertically. */
export function renderSvg(
  panels: readonly Panel[],
  options: { width?: number; panelHeight?: number; title?: string } = {},
): string {
  const width = options.width ?? 820;
  const ph = options.panelHeight ?? 300;
  const head = options.title ? 30 : 0;
  const height = head + ph * panels.length;
  const body = panels.map((p, i) => panelSvg(p, 0, head + i * ph, width, ph)).join('\n');
  const title = options.title
    ? `<text x="${width / 2}" y="20" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(options.title)}</text>\n`
    : '';
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${title}${body}\n</svg>\n`
  );
}
