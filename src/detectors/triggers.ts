/** Trigger lists of findings. */

/** The three event refs in order, each once (an episode's start, its peak, the trigger). */
export function distinctRefs(a: string, b: string, c: string): string[] {
  const out = [a];
  if (b !== a) out.push(b);
  if (c !== a && c !== b) out.push(c);
  return out;
}
