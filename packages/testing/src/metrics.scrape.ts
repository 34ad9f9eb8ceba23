// Reading a Prometheus text exposition in tests.

// The values of the series of `name` whose labels include `labels`.
function matching(text: string, name: string, labels: Record<string, string>): number[] {
  const values: number[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) values.push(Number(m[3]));
  }
  return values;
}

// The value of `name` whose labels include `labels`, summed over the other labels; 0 when there
// is none.
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  return matching(text, name, labels).reduce((a, b) => a + b, 0);
}

// How many series of `name` match `labels` (a gauge per partition, say).
export function seriesCount(text: string, name: string, labels: Record<string, string> = {}): number {
  return matching(text, name, labels).length;
}

// GET <base>/metrics; throws unless it is a 200 in the text format.
export async function scrape(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`);
  if (res.status !== 200) throw new Error(`GET ${base}/metrics: ${res.status}`);
  if (!/^text\/plain/.test(res.headers.get("content-type") ?? "")) throw new Error(`GET ${base}/metrics: content-type ${res.headers.get("content-type")}`);
  return res.text();
}
