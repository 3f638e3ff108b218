/**
 * @module cli/postmap
 * SUMMARY: `greygate postmap`, postmap(1)'s query side: `-q KEY TYPE:NAME...` prints the first
 * table's value (exit 0) or exits 1; `-q -` reads keys from stdin and prints `key<TAB>value`;
 * `-h`/`-b` take a message's logical header lines / body lines as keys; `-j` prints JSON.
 * Without -q it reports each table's problems (there is no .db to build). Exports run().
 * DIAGNOSTICS: load problems go to stderr as `FILE:LINE: [warning: ]message` and the query
 * goes on; an unopenable table or a failed lookup throws TableError (exit 1, as Postfix's
 * fatal error); bad arguments throw UsageError. SEE ALSO: postmap(1), postmap.c, mime_state.c.
 */
import { formatProblem, UsageError } from '../errors.js';
import type { Readable } from 'node:stream';
import type { CliIO } from './io.js';
import type { Table } from '../tables/table.js';
import { openTable, hasErrors, parseTableSpec } from '../tables/open.js';
import { isSurrogate } from '../tables/surrogate.js';

interface Options {
  query: string | null;
  headers: boolean;
  body: boolean;
  json: boolean;
  maps: string[];
}

const UNSUPPORTED: Readonly<Record<string, string>> = {
  d: 'deleting entries (-d)',
  i: 'incremental updates (-i)',
  s: 'dumping a table (-s)',
  f: 'disabling key case folding (-f)',
  F: 'file-valued results (-F)',
  m: 'MIME-aware header/body keys (-m)',
  n: 'null-terminated keys (-n)',
  N: 'null-terminated keys (-N)',
  r: 'replacing duplicates (-r)',
  w: 'ignoring duplicates (-w)',
  u: 'disabling UTF-8 checks (-u)',
  U: 'forcing UTF-8 (-U)',
};

/** getopt("bhjq:" plus Postfix's others), accepting options before or after the table names. */
function parseArgs(args: readonly string[]): Options {
  const o: Options = { query: null, headers: false, body: false, json: false, maps: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      o.maps.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      o.maps.push(a);
      continue;
    }
    for (let k = 1; k < a.length; k++) {
      const f = a[k]!;
      if (f === 'q') {
        if (o.query !== null) throw new UsageError('postmap: specify only one of -d -i -q or -s');
        const rest = a.slice(k + 1);
        const v = rest !== '' ? rest : args[++i];
        if (v === undefined) throw new UsageError('postmap: option -q requires a KEY argument (or "-" for stdin)');
        o.query = v;
        break;
      }
      if (f === 'h') o.headers = true;
      else if (f === 'b') o.body = true;
      else if (f === 'j') o.json = true;
      else if (f === 'o' || f === 'p' || f === 'v') continue; // ownership, permissions, verbosity: nothing to do
      else if (UNSUPPORTED[f]) throw new UsageError(`postmap: ${UNSUPPORTED[f]} is not supported by greygate`);
      else throw new UsageError(`postmap: unknown option -${f}; usage: postmap [-bhj] [-q KEY|-] TYPE:NAME...`);
    }
  }
  if ((o.headers || o.body) && o.query !== '-') throw new UsageError('postmap: specify -b or -h only with "-q -"');
  if (o.json && o.query === null) throw new UsageError('postmap: option -j requires -q');
  if (o.maps.length === 0) throw new UsageError('postmap: usage: postmap [-bhj] [-q KEY|-] TYPE:NAME...');
  return o;
}

/** Postfix's default_database_type applies to a name given without TYPE:. */
function specOf(arg: string): string {
  return parseTableSpec(arg) ? arg : `hash:${arg}`;
}

class Session {
  private readonly tables: Array<Table | undefined>;

  constructor(
    private readonly specs: readonly string[],
    private readonly io: CliIO,
    private readonly json: boolean,
  ) {
    this.tables = specs.map(() => undefined);
  }

  /** Tables open lazily, in order, like postmap: a later broken table is never touched. */
  private table(n: number): Table {
    const cached = this.tables[n];
    if (cached) return cached;
    const t = openTable(this.specs[n]!, this.io.configDir);
    if (isSurrogate(t)) {
      const r = t.lookup('');
      if (r.kind === 'error') throw r.error;
    }
    for (const p of t.problems) this.io.err(`${formatProblem(p)}\n`);
    this.tables[n] = t;
    return t;
  }

  /** Look KEY up in each table in turn; the value of the first hit, or null. */
  find(key: string): string | null {
    for (let n = 0; n < this.specs.length; n++) {
      const t = this.table(n);
      const r = t.lookup(key);
      if (r.kind === 'error') throw r.error;
      if (r.kind === 'miss') continue;
      if (r.value === '') {
        this.io.err(`${r.source}: warning: table ${t.spec}: key ${key}: empty string result is not allowed\n`);
        this.io.err(`${r.source}: warning: table ${t.spec} should return NO RESULT in case of NOT FOUND\n`);
      }
      return r.value;
    }
    return null;
  }

  print(key: string, value: string, withKey: boolean): void {
    if (this.json) this.io.out(`{${JSON.stringify(key)}: ${JSON.stringify(value)}}\n`);
    else this.io.out(withKey ? `${key}\t${value}\n` : `${value}\n`);
  }
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** Lines as vstring_get_nonl() reads them: split on LF only, a CR stays in the line. */
function inputLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** is_header_buf(): length of the header name when LINE starts a header, else 0. */
export function headerNameLength(line: string): number {
  let len = 0;
  let state: 'init' | 'name' | 'space' = 'init';
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x3a /* : */) return state === 'init' ? 0 : len;
    if (c === 0x20 || c === 0x09) {
      if (state === 'init') return 0;
      state = 'space';
      continue;
    }
    if (c <= 0x20 || c >= 0x7f || state === 'space') return 0;
    state = 'name';
    len++;
  }
  return 0;
}

/** Postfix's header_size_limit: a longer header loses its further continuation lines. */
const HEADER_SIZE_LIMIT = 102400;

export interface MessageKey {
  readonly kind: 'header' | 'body';
  readonly text: string;
}

/**
 * The keys `postmap -h/-b` feeds to tables (mime_state with MIME processing off): each
 * primary header as one string with its continuation lines joined by "\n", then — only when
 * BODY — every body line; the blank line that ends the headers is the empty body line "",
 * and a non-header line that ends them is preceded by an inserted "" as Postfix does.
 */
export function* messageKeys(lines: readonly string[], opts: { headers: boolean; body: boolean }): Generator<MessageKey> {
  let inHeaders = true;
  let header: string | null = null;
  for (const line of lines) {
    if (!inHeaders) {
      yield { kind: 'body', text: line };
      continue;
    }
    if (header !== null && (line[0] === ' ' || line[0] === '\t')) {
      if (header.length < HEADER_SIZE_LIMIT) header += `\n${line}`;
      continue;
    }
    if (header !== null) {
      if (opts.headers) yield { kind: 'header', text: header };
      header = null;
    }
    const nameLen = headerNameLength(line);
    if (nameLen > 0) {
      // The obsolete "Name : value" form is normalised to "Name: value".
      header = line.slice(0, nameLen) + line.slice(nameLen).replace(/^[ \t]*/, '');
      continue;
    }
    inHeaders = false;
    if (!opts.body) return;
    yield { kind: 'body', text: '' };
    if (line.length > 0) yield { kind: 'body', text: line };
  }
  if (header !== null && opts.headers) yield { kind: 'header', text: header };
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const o = parseArgs(args);
  const specs = o.maps.map(specOf);
  if (o.query === null) {
    // Nothing to build: report what loading each table finds, like `greygate check` does.
    let failed = false;
    for (const spec of specs) {
      const t = openTable(spec, io.configDir);
      for (const p of t.problems) io.err(`${formatProblem(p)}\n`);
      failed ||= hasErrors(t);
    }
    return failed ? 1 : 0;
  }
  const session = new Session(specs, io, o.json);
  if (o.query !== '-') {
    const value = session.find(o.query);
    if (value === null) return 1;
    session.print(o.query, value, false);
    return 0;
  }
  const lines = inputLines(await readAll(io.stdin));
  let found = false;
  const keys: Iterable<string> =
    o.headers || o.body ? mapKeys(messageKeys(lines, { headers: o.headers, body: o.body })) : lines;
  for (const key of keys) {
    const value = session.find(key);
    if (value === null) continue;
    session.print(key, value, true);
    found = true;
  }
  return found ? 0 : 1;
}

function* mapKeys(keys: Iterable<MessageKey>): Generator<string> {
  for (const k of keys) yield k.text;
}
