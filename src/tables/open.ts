/**
 * @module tables/open
 * SUMMARY: "TYPE:NAME" -> Table through one opener registry (dict_open_info[]). openTable()
 * never throws for a user mistake: an unknown type, a malformed spec or an unreadable file
 * gives a surrogate. Names resolve against the config directory, messages keep them as
 * written. TableCache shares one Table per spec and reloads files whose fingerprint changed.
 * DIAGNOSTICS: Postfix's texts (`unsupported dictionary type: foo`, `open FILE: No such file
 * or directory`); a fresh load with an error Problem is for the caller to refuse (hasErrors()).
 * SEE ALSO: Postfix dict_open.c, dict_surrogate.c, DATABASE_README.
 */
import { statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { Problem } from '../errors.js';
import type { Table } from './table.js';
import { openHashTable } from './hash.js';
import { openTexthashTable } from './texthash.js';
import { openCidrTable } from './cidr.js';
import { openRegexpTable } from './regexp.js';
import { openPcreTable } from './pcre.js';
import { openInlineTable } from './inline.js';
import { openStaticTable } from './static.js';
import { openSurrogateTable, isSurrogate } from './surrogate.js';

/** How the caller will use the table, where that changes how its source is read. */
export interface OpenOptions {
  /**
   * The table is named by alias_maps: a hash:/texthash: source is in aliases(5) format
   * ("name: value, ..."), as postalias(1) reads it. Other types ignore this.
   */
  readonly aliases?: boolean;
}

/** One table type: file-backed types get the resolved path; others only the name. */
export type TableType =
  | { readonly file: true; open(spec: string, name: string, path: string, options: OpenOptions): Table }
  | { readonly file: false; open(spec: string, name: string): Table };

/** Every table type greygate knows, by its Postfix name. Filled at startup only. */
export const TABLE_TYPES: Map<string, TableType> = new Map<string, TableType>([
  ['hash', { file: true, open: openHashTable }],
  ['texthash', { file: true, open: openTexthashTable }],
  ['cidr', { file: true, open: openCidrTable }],
  ['regexp', { file: true, open: openRegexpTable }],
  ['pcre', { file: true, open: openPcreTable }],
  ['inline', { file: false, open: openInlineTable }],
  ['static', { file: false, open: openStaticTable }],
]);

/** Add a table type (e.g. a test double); an existing name is refused. */
export function registerTableType(type: string, opener: TableType): void {
  if (TABLE_TYPES.has(type)) throw new Error(`table type ${type} is already registered`);
  TABLE_TYPES.set(type, opener);
}

export interface ParsedSpec {
  readonly type: string;
  readonly name: string;
}

/** "TYPE:NAME" split at the first colon, or null when either part is empty. */
export function parseTableSpec(spec: string): ParsedSpec | null {
  const colon = spec.indexOf(':');
  if (colon <= 0 || colon === spec.length - 1) return null;
  return { type: spec.slice(0, colon), name: spec.slice(colon + 1) };
}

/** Absolute path of a file NAME: as is when absolute, else under the config directory. */
export function resolveTablePath(name: string, configDir: string): string {
  return isAbsolute(name) ? name : resolve(join(configDir, name));
}

const STRERROR: Readonly<Record<string, string>> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  EMFILE: 'Too many open files',
  ENAMETOOLONG: 'File name too long',
};

function fsReason(err: unknown): string | null {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) return null;
  return STRERROR[code] ?? (err as Error).message;
}

export function openTable(spec: string, configDir: string, options: OpenOptions = {}): Table {
  const parsed = parseTableSpec(spec);
  if (!parsed) return openSurrogateTable('', spec, spec, `open dictionary: expecting "type:name" form instead of "${spec}"`);
  const kind = TABLE_TYPES.get(parsed.type);
  if (!kind) return openSurrogateTable(parsed.type, spec, spec, `unsupported dictionary type: ${parsed.type}`);
  if (!kind.file) return kind.open(spec, parsed.name);
  const path = resolveTablePath(parsed.name, configDir);
  try {
    return kind.open(spec, parsed.name, path, options);
  } catch (err) {
    const reason = fsReason(err);
    if (reason === null) throw err;
    return openSurrogateTable(parsed.type, spec, parsed.name, `open ${parsed.name}: ${reason}`, path);
  }
}

/** True when loading the table reported an error (a skipped rule, a surrogate). */
export function hasErrors(table: Table): boolean {
  return table.problems.some((p) => p.severity === 'error');
}

/** What identifies one version of a file: a rewrite or a replace-by-rename changes it. */
export interface Fingerprint {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
}

/** The file's fingerprint, or null when it cannot be stat()ed. */
export function fingerprintOf(path: string): Fingerprint | null {
  try {
    const st = statSync(path);
    return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
  } catch {
    return null;
  }
}

export function sameFingerprint(a: Fingerprint | null, b: Fingerprint | null): boolean {
  if (a === null || b === null) return a === b;
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

interface CacheEntry {
  readonly spec: string;
  readonly table: Table;
  /** Absolute path for file-backed tables. */
  readonly path: string | null;
  /** Fingerprint taken before the file was read, so a write during the read shows later. */
  readonly fingerprint: Fingerprint | null;
  readonly options: OpenOptions;
}

export interface TableReload {
  readonly spec: string;
  /** The freshly loaded table. */
  readonly fresh: Table;
  /** The table in force before, if any. */
  readonly previous: Table | undefined;
  /** Whether the cache now serves `fresh` (false: `previous` was kept). */
  readonly installed: boolean;
}

/**
 * One Table per spec for the life of the process, reloaded when its file changes.
 * Builders of a runtime snapshot call beginGeneration(), open() every table they need, then
 * endGeneration() for the problems of exactly those tables; tables no longer used are dropped.
 */
export class TableCache {
  readonly configDir: string;
  private entries = new Map<string, CacheEntry>();
  private generation: Set<string> | null = null;

  constructor(configDir: string) {
    this.configDir = resolve(configDir);
  }

  /** The cache key: file tables by type and absolute path (and format), others by spec. */
  private keyOf(spec: string, options: OpenOptions): { key: string; path: string | null } {
    const parsed = parseTableSpec(spec);
    const kind = parsed ? TABLE_TYPES.get(parsed.type) : undefined;
    if (!parsed || !kind || !kind.file) return { key: spec, path: null };
    const path = resolveTablePath(parsed.name, this.configDir);
    return { key: `${options.aliases ? 'aliases ' : ''}${parsed.type}:${path}`, path };
  }

  private load(spec: string, path: string | null, options: OpenOptions): CacheEntry {
    const fingerprint = path === null ? null : fingerprintOf(path);
    return { spec, table: openTable(spec, this.configDir, options), path, fingerprint, options };
  }

  private isStale(e: CacheEntry): boolean {
    return e.path !== null && !sameFingerprint(e.fingerprint, fingerprintOf(e.path));
  }

  /** The table for SPEC: cached while its file is unchanged, else loaded afresh. */
  open(spec: string, options: OpenOptions = {}): Table {
    const { key, path } = this.keyOf(spec, options);
    this.generation?.add(key);
    const cached = this.entries.get(key);
    if (cached && !this.isStale(cached)) return cached.table;
    const entry = this.load(spec, path, options);
    this.entries.set(key, entry);
    return entry.table;
  }

  /** The cached table for SPEC without loading or checking it. */
  get(spec: string, options: OpenOptions = {}): Table | undefined {
    return this.entries.get(this.keyOf(spec, options).key)?.table;
  }

  /** Specs whose file changed (or appeared, or vanished) since it was loaded. */
  changed(): string[] {
    return [...this.entries.values()].filter((e) => this.isStale(e)).map((e) => e.spec);
  }

  /**
   * Reload every changed table. ACCEPT decides whether the fresh table replaces the previous
   * one; by default only a load without errors does (a broken edit keeps the old rules).
   */
  refresh(accept: (fresh: Table, previous: Table) => boolean = (fresh) => !hasErrors(fresh)): TableReload[] {
    const out: TableReload[] = [];
    for (const [key, e] of this.entries) {
      if (!this.isStale(e)) continue;
      const fresh = this.load(e.spec, e.path, e.options);
      const installed = isSurrogate(e.table) || accept(fresh.table, e.table);
      // A refused version keeps its fingerprint, so the same broken file is not re-read.
      this.entries.set(key, installed ? fresh : { ...e, fingerprint: fresh.fingerprint });
      out.push({ spec: e.spec, fresh: fresh.table, previous: e.table, installed });
    }
    return out;
  }

  beginGeneration(): void {
    this.generation = new Set();
  }

  /** Problems of every table opened since beginGeneration(); unused tables are dropped. */
  endGeneration(): Problem[] {
    const used = this.generation ?? new Set(this.entries.keys());
    this.generation = null;
    const problems: Problem[] = [];
    for (const [key, e] of this.entries) {
      if (used.has(key)) problems.push(...e.table.problems);
      else this.entries.delete(key);
    }
    return problems;
  }

  /** Absolute paths of every file-backed table in the cache (to watch for changes). */
  files(): string[] {
    const out = new Set<string>();
    for (const e of this.entries.values()) if (e.path !== null) out.add(e.path);
    return [...out];
  }
}
