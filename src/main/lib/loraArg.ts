/** `PATH[:WEIGHT]`; the weight is split off only when what follows the last colon is a number (Windows paths have colons). */
export function parseLoraArg(arg: string): { path: string; weight: number } {
  const m = /^(.*):(-?\d+(?:\.\d+)?)$/.exec(arg);
  if (m && m[1]) return { path: m[1], weight: Number(m[2]) };
  return { path: arg, weight: 1 };
}
