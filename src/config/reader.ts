/**
 * A small typed reader over parsed YAML that collects every problem with the path of the key
 * that caused it, so one start-up attempt tells the admin everything that is wrong.
 */
export class ConfigReader {
  readonly problems: string[] = [];

  /** The object at `path`, or undefined (with a problem recorded) when it is not a mapping. */
  section(raw: unknown, path: string, knownKeys: readonly string[], required = false): Record<string, unknown> | undefined {
    if (raw === undefined || raw === null) {
      if (required) this.problems.push(`${path}: required section is missing`);
      return undefined;
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      this.problems.push(`${path || '(top level)'}: expected a mapping of keys, got ${describe(raw)}`);
      return undefined;
    }
    const obj = raw as Record<string, unknown>;
    for (const key of Object.keys(obj)) {
      if (!knownKeys.includes(key)) {
        const near = nearest(key, knownKeys);
        this.problems.push(`${join(path, key)}: unknown key${near ? ` (did you mean '${near}'?)` : ''}`);
      }
    }
    return obj;
  }

  string(obj: Record<string, unknown> | undefined, path: string, key: string, opts: { default?: string; pattern?: RegExp; expect?: string } = {}): string {
    const value = obj?.[key];
    const where = join(path, key);
    if (value === undefined || value === null) {
      if (opts.default !== undefined) return opts.default;
      this.problems.push(`${where}: required, expected ${opts.expect ?? 'a string'}`);
      return '';
    }
    if (typeof value !== 'string' || value.length === 0) {
      this.problems.push(`${where}: expected ${opts.expect ?? 'a non-empty string'}, got ${describe(value)}`);
      return opts.default ?? '';
    }
    if (opts.pattern && !opts.pattern.test(value)) {
      this.problems.push(`${where}: expected ${opts.expect ?? `a value matching ${opts.pattern}`}, got ${JSON.stringify(value)}`);
    }
    return value;
  }

  optionalString(obj: Record<string, unknown> | undefined, path: string, key: string, opts: { pattern?: RegExp; expect?: string } = {}): string | undefined {
    const value = obj?.[key];
    if (value === undefined || value === null) return undefined;
    return this.string(obj, path, key, opts);
  }

  integer(obj: Record<string, unknown> | undefined, path: string, key: string, opts: { default: number; min: number; max: number }): number {
    const value = obj?.[key];
    const where = join(path, key);
    if (value === undefined || value === null) return opts.default;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < opts.min || value > opts.max) {
      this.problems.push(`${where}: expected a whole number from ${opts.min} to ${opts.max}, got ${describe(value)}`);
      return opts.default;
    }
    return value;
  }

  boolean(obj: Record<string, unknown> | undefined, path: string, key: string, fallback: boolean): boolean {
    const value = obj?.[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') {
      this.problems.push(`${join(path, key)}: expected true or false, got ${describe(value)}`);
      return fallback;
    }
    return value;
  }

  stringList(obj: Record<string, unknown> | undefined, path: string, key: string, opts: { pattern?: RegExp; expect?: string; required?: boolean } = {}): string[] {
    const value = obj?.[key];
    const where = join(path, key);
    if (value === undefined || value === null) {
      if (opts.required) this.problems.push(`${where}: required, expected a list of ${opts.expect ?? 'strings'}`);
      return [];
    }
    if (!Array.isArray(value)) {
      this.problems.push(`${where}: expected a list of ${opts.expect ?? 'strings'}, got ${describe(value)}`);
      return [];
    }
    if (opts.required && value.length === 0) this.problems.push(`${where}: must list at least one entry`);
    const out: string[] = [];
    value.forEach((item, i) => {
      if (typeof item !== 'string' || (opts.pattern && !opts.pattern.test(item))) {
        this.problems.push(`${where}[${i}]: expected ${opts.expect ?? 'a string'}, got ${describe(item)}`);
      } else {
        out.push(item);
      }
    });
    return out;
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return `${typeof value} ${String(value)}`;
}

export function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The closest candidate within a small edit distance, for "did you mean" hints. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = levenshtein(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}
