// The SVG chart of bench/http.ts, written by hand (no library): two panels side by side,
// throughput against connections (linear, or logarithmic when the lines are far apart) and p99 latency against connections (logarithmic), one
// line per series, connections on a log2 axis with a tick at each measured count. A white
// background, so it reads on light and dark pages alike (GitHub, a browser).

export type ChartPoint = { connections: number; requestsPerSecond: number; p99Ms: number };
export type ChartSeries = { label: string; color: string; dashed: boolean; points: ChartPoint[] };
export type ChartInput = { title: string; subtitle: string; series: ChartSeries[] };

const width = 960;
const panelWidth = 400;
const panelHeight = 280;
const panelTop = 78;
const panelLefts = [80, 560];
const legendTop = panelTop + panelHeight + 58;
const font = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

export function renderChart(input: ChartInput): string {
  const series = input.series.filter((one) => one.points.length > 0);
  const connections = [...new Set(series.flatMap((one) => one.points.map((point) => point.connections)))].sort((a, b) => a - b);
  const legendRows = Math.ceil(series.length / 3);
  const height = legendTop + legendRows * 22 + 16;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${font} font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="26" text-anchor="middle" font-size="16" font-weight="600" fill="#111">${escape(input.title)}</text>`,
    `<text x="${width / 2}" y="46" text-anchor="middle" fill="#555">${escape(input.subtitle)}</text>`,
  ];
  if (series.length === 0 || connections.length === 0) {
    parts.push(`<text x="${width / 2}" y="${panelTop + panelHeight / 2}" text-anchor="middle" fill="#555">no measurements</text>`, '</svg>');
    return `${parts.join('\n')}\n`;
  }

  const x = connectionScale(connections);
  const throughputs = series.flatMap((one) => one.points.map((point) => point.requestsPerSecond));
  const p99s = series.flatMap((one) => one.points.map((point) => point.p99Ms)).filter((ms) => ms > 0);
  // Throughput on a log axis too when the lines are an order of magnitude apart, so the lower ones
  // do not lie flat on the floor.
  const positive = throughputs.filter((rate) => rate > 0);
  const throughputLog = positive.length > 0 && Math.max(...positive) / Math.min(...positive) > 8;
  const throughput = throughputLog ? logScale(Math.min(...positive), Math.max(...positive)) : linearScale(Math.max(...throughputs, 1));
  const latency = logScale(p99s.length > 0 ? Math.min(...p99s) : 0.1, p99s.length > 0 ? Math.max(...p99s) : 1);

  const panels = [
    { title: 'Throughput (higher is better)', yLabel: `requests per second${throughputLog ? ' (log scale)' : ''}`, y: throughput, value: (point: ChartPoint) => point.requestsPerSecond, format: formatCount },
    { title: 'p99 latency (lower is better)', yLabel: 'p99 latency, ms (log scale)', y: latency, value: (point: ChartPoint) => point.p99Ms, format: formatMs },
  ];
  panels.forEach((panel, index) => {
    const left = panelLefts[index]!;
    const px = (connections: number) => left + x(connections) * panelWidth;
    const py = (value: number) => panelTop + (1 - panel.y.position(value)) * panelHeight;
    parts.push(`<g>`);
    parts.push(`<text x="${left + panelWidth / 2}" y="${panelTop - 12}" text-anchor="middle" font-size="13" font-weight="600" fill="#222">${escape(panel.title)}</text>`);
    // Horizontal grid and y ticks.
    for (const tick of panel.y.ticks) {
      const y = round(py(tick));
      parts.push(`<line x1="${left}" y1="${y}" x2="${left + panelWidth}" y2="${y}" stroke="#e5e5e5"/>`);
      parts.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end" fill="#444">${escape(panel.format(tick))}</text>`);
    }
    // Vertical grid and x ticks at the measured connection counts.
    for (const count of connections) {
      const xPos = round(px(count));
      parts.push(`<line x1="${xPos}" y1="${panelTop}" x2="${xPos}" y2="${panelTop + panelHeight}" stroke="#f0f0f0"/>`);
      parts.push(`<text x="${xPos}" y="${panelTop + panelHeight + 16}" text-anchor="middle" fill="#444">${count}</text>`);
    }
    parts.push(`<rect x="${left}" y="${panelTop}" width="${panelWidth}" height="${panelHeight}" fill="none" stroke="#999"/>`);
    parts.push(`<text x="${left + panelWidth / 2}" y="${panelTop + panelHeight + 36}" text-anchor="middle" fill="#222">connections (log scale)</text>`);
    const yMid = panelTop + panelHeight / 2;
    parts.push(`<text x="${left - 58}" y="${yMid}" text-anchor="middle" fill="#222" transform="rotate(-90 ${left - 58} ${yMid})">${escape(panel.yLabel)}</text>`);
    for (const one of series) {
      const points = [...one.points].sort((a, b) => a.connections - b.connections).filter((point) => panel.value(point) > 0 || (index === 0 && !throughputLog));
      if (points.length === 0) continue;
      const coords = points.map((point) => `${round(px(point.connections))},${round(py(panel.value(point)))}`);
      parts.push(
        `<polyline points="${coords.join(' ')}" fill="none" stroke="${one.color}" stroke-width="2"${one.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      );
      points.forEach((point, i) => {
        const [cx, cy] = coords[i]!.split(',');
        parts.push(
          `<circle cx="${cx}" cy="${cy}" r="3.5" fill="${one.dashed ? '#ffffff' : one.color}" stroke="${one.color}" stroke-width="2">` +
            `<title>${escape(`${one.label}, ${point.connections} connections: ${panel.format(panel.value(point))}${index === 0 ? ' req/s' : ' ms'}`)}</title></circle>`,
        );
      });
    }
    parts.push(`</g>`);
  });

  // Legend: three per row, centred; columns widen for long labels (about 6.8 px a character at 12 px).
  const longestLabel = Math.max(...series.map((one) => one.label.length));
  const columnWidth = Math.min(width / 3, Math.max(250, Math.ceil(70 + 6.8 * longestLabel)));
  series.forEach((one, i) => {
    const row = Math.floor(i / 3);
    const inRow = Math.min(3, series.length - row * 3);
    const left = (width - inRow * columnWidth) / 2 + (i % 3) * columnWidth + 30;
    const y = legendTop + row * 22;
    parts.push(
      `<line x1="${left}" y1="${y}" x2="${left + 32}" y2="${y}" stroke="${one.color}" stroke-width="2"${one.dashed ? ' stroke-dasharray="6 4"' : ''}/>` +
        `<circle cx="${left + 16}" cy="${y}" r="3.5" fill="${one.dashed ? '#ffffff' : one.color}" stroke="${one.color}" stroke-width="2"/>` +
        `<text x="${left + 40}" y="${y + 4}" fill="#222">${escape(one.label)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

type Scale = { position: (value: number) => number; ticks: number[] };

/** Connections to 0..1 on a log2 axis, with half a doubling of margin each side. */
function connectionScale(connections: number[]): (count: number) => number {
  const low = Math.log2(connections[0]!) - 0.5;
  const high = Math.log2(connections[connections.length - 1]!) + 0.5;
  return (count) => (Math.log2(count) - low) / (high - low);
}

/** 0 to a round maximum above `max`, ticks at a 1-2-5 step. */
function linearScale(max: number): Scale {
  const rough = max / 5;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = ([1, 2, 5, 10].find((factor) => factor * magnitude >= rough) ?? 10) * magnitude;
  const top = Math.ceil((max * 1.05) / step) * step;
  const ticks: number[] = [];
  for (let tick = 0; tick <= top + step / 2; tick += step) ticks.push(tick);
  return { position: (value) => value / top, ticks };
}

/** A log axis from the 1-2-5 tick at or below `min` to the one at or above `max` (1-10-100 ticks when
 * more than three decades apart). */
function logScale(min: number, max: number): Scale {
  const lowDecade = Math.floor(Math.log10(min));
  const highDecade = Math.max(Math.ceil(Math.log10(max)), lowDecade + 1);
  const factors = highDecade - lowDecade > 3 ? [1] : [1, 2, 5];
  const candidates: number[] = [];
  for (let decade = lowDecade; decade <= highDecade; decade += 1) {
    for (const factor of factors) candidates.push(Number((factor * 10 ** decade).toPrecision(6)));
  }
  const bottom = candidates.filter((tick) => tick <= min).at(-1) ?? candidates[0]!;
  let top = candidates.find((tick) => tick >= max) ?? candidates.at(-1)!;
  if (top <= bottom) top = candidates.find((tick) => tick > bottom) ?? bottom * 10;
  const ticks = candidates.filter((tick) => tick >= bottom && tick <= top);
  const span = Math.log10(top) - Math.log10(bottom);
  return { position: (value) => (Math.log10(value) - Math.log10(bottom)) / span, ticks };
}

function formatCount(value: number): string {
  if (value >= 1000) return `${Number((value / 1000).toPrecision(3))}k`;
  return String(Math.round(value));
}

function formatMs(value: number): string {
  return value >= 10 ? String(Math.round(value)) : String(Number(value.toPrecision(2)));
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
