// Small line charts in SVG for a workspace's samples (no chart library:
// a polyline per series is all these need). Built with DOM calls only.
import { h } from "./dom";

const NS = "http://www.w3.org/2000/svg";
const W = 320;
const H = 90;

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string>): SVGElementTagNameMap[K] {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

export type Series = { name: string; points: [number, number][] };

/** A chart of one or two series over time; `format` writes a value for people. */
export function chart(id: string, title: string, series: Series[], format: (v: number) => string, top?: number): HTMLElement {
  const all = series.flatMap((s) => s.points);
  const t0 = Math.min(...all.map(([t]) => t));
  const t1 = Math.max(...all.map(([t]) => t));
  const max = Math.max(top ?? 0, ...all.map(([, v]) => v), 1e-9);
  const x = (t: number) => (t1 === t0 ? W : ((t - t0) / (t1 - t0)) * W);
  const y = (v: number) => H - (v / max) * (H - 4) - 2;
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart" });
  plot.append(svg("line", { x1: "0", y1: String(H - 1), x2: String(W), y2: String(H - 1), class: "axis" }));
  series.forEach((s, i) => {
    const line = svg("polyline", {
      points: s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
      class: `series s${i}`,
      "data-points": String(s.points.length),
    });
    plot.append(line);
  });
  const latest = series
    .map((s) => (s.points.length ? `${s.name} ${format(s.points[s.points.length - 1][1])}` : `${s.name}: no data`))
    .join(", ");
  return h(
    "figure",
    { class: "graph", id },
    h("figcaption", {}, h("strong", {}, title), " ", h("span", { class: "latest" }, latest)),
    plot,
    h("div", { class: "scale" }, h("span", {}, format(0)), h("span", {}, `max ${format(max)}`)),
  );
}

export function bytes(v: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Rates between successive samples of a counter. */
export function rates(points: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 1; i < points.length; i++) {
    const dt = points[i][0] - points[i - 1][0];
    const dv = points[i][1] - points[i - 1][1];
    if (dt > 0 && dv >= 0) out.push([points[i][0], dv / dt]);
  }
  return out;
}
