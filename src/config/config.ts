/**
 * @module config/config
 * SUMMARY: a frozen snapshot of main.cf over the parameter registry, with typed accessors.
 * loadConfig(dir) reads DIR/main.cf and returns a Config whose `problems` hold every
 * FILE:LINE issue (unknown parameter = warning, bad value = error). Values are kept raw, as
 * postconf prints them, and expanded on access. Accessors throw ConfigError naming the line
 * for a value of the wrong kind, so a daemon only uses a snapshot whose problems are empty
 * of errors.
 * SEE ALSO: postconf(5), config/params.ts.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve, isAbsolute, join } from 'node:path';
import { ConfigError, type Problem } from '../errors.js';
import { parseDuration } from '../util/duration.js';
import { PARAMS, type ParamDef } from './params.js';
import { parseMainCf, type ConfigEntry } from './parse.js';
import { expand, splitList, ExpansionLoopError } from './expand.js';
import { defaultMynetworks } from './mynetworks-default.js';

export class Config {
  readonly configDir: string;
  readonly file: string;
  readonly entries: ReadonlyMap<string, ConfigEntry>;
  readonly problems: readonly Problem[];
  private readonly machineDefaults = new Map<string, string>();
  private readonly cache = new Map<string, string>();

  constructor(configDir: string, file: string, entries: ReadonlyMap<string, ConfigEntry>, problems: Problem[]) {
    this.configDir = resolve(configDir);
    this.file = file;
    this.entries = entries;
    this.computeMachineDefaults();
    problems.push(...this.validate());
    this.problems = problems;
  }

  private computeMachineDefaults(): void {
    let host = hostname() || 'localhost';
    if (!host.includes('.')) host = `${host}.localdomain`;
    this.machineDefaults.set('myhostname', host.toLowerCase());
    const myhostname = this.get('myhostname');
    const dot = myhostname.indexOf('.');
    this.machineDefaults.set('mydomain', dot > 0 && myhostname.indexOf('.', dot + 1) > 0 ? myhostname.slice(dot + 1) : 'localdomain');
    this.machineDefaults.set('mynetworks', defaultMynetworks(this.get('mynetworks_style')));
  }

  /**
   * The same configuration with some parameters replaced, as master.cf `-o name=value`
   * does for one service (e.g. submission's relay restrictions).
   */
  withOverrides(overrides: Readonly<Record<string, string>>): Config {
    const entries = new Map(this.entries);
    for (const [name, value] of Object.entries(overrides)) entries.set(name, { name, value, line: 0 });
    return new Config(this.configDir, this.file, entries, []);
  }

  /** The default text of a parameter, as `postconf -d` prints it. */
  defaultOf(name: string): string | undefined {
    const def = PARAMS.get(name);
    if (!def) return undefined;
    return def.default ?? this.machineDefaults.get(name) ?? '';
  }

  /** The unexpanded value: main.cf's, or the default. */
  raw(name: string): string | undefined {
    return this.entries.get(name)?.value ?? this.defaultOf(name);
  }

  has(name: string): boolean {
    return this.entries.has(name) || PARAMS.has(name);
  }

  /** The line in main.cf where NAME is set, 0 for a default. */
  lineOf(name: string): number {
    return this.entries.get(name)?.line ?? 0;
  }

  /** FILE:LINE (or "main.cf default") for messages about NAME. */
  whereOf(name: string): string {
    const line = this.lineOf(name);
    return line > 0 ? `${this.file}:${line}` : `${this.file}: default ${name}`;
  }

  get(name: string): string {
    const hit = this.cache.get(name);
    if (hit !== undefined) return hit;
    const raw = this.raw(name) ?? '';
    let value: string;
    try {
      value = expand(raw, (n) => this.raw(n));
    } catch (err) {
      if (err instanceof ExpansionLoopError) throw new ConfigError(this.file, this.lineOf(name), `${name}: ${err.message}`);
      throw err;
    }
    this.cache.set(name, value);
    return value;
  }

  list(name: string): string[] {
    return splitList(this.get(name));
  }

  bool(name: string): boolean {
    const v = this.get(name).toLowerCase();
    if (v === 'yes' || v === 'true' || v === '1') return true;
    if (v === 'no' || v === 'false' || v === '0') return false;
    throw this.badValue(name, 'expected yes or no');
  }

  int(name: string): number {
    const v = this.get(name);
    if (!/^-?\d+$/.test(v)) throw this.badValue(name, 'expected a whole number');
    return Number(v);
  }

  /** Milliseconds; a bare number takes the parameter's default unit. */
  time(name: string): number {
    const def = PARAMS.get(name);
    const unit = def?.kind.type === 'time' ? def.kind.unit : 's';
    const ms = parseDuration(this.get(name), unit);
    if (ms === null) throw this.badValue(name, 'expected a time value such as 300s, 5m, 2h, 35d or 1w');
    return ms;
  }

  /** An absolute path: relative paths are taken from the config directory. */
  resolvePath(path: string): string {
    return isAbsolute(path) ? path : join(this.configDir, path);
  }

  /** data_directory, relative to the working directory as design.md says. */
  dataDir(): string {
    return resolve(this.get('data_directory'));
  }

  private badValue(name: string, expected: string): ConfigError {
    return new ConfigError(this.file, this.lineOf(name), `bad value for ${name}: "${this.get(name)}": ${expected}`);
  }

  private validate(): Problem[] {
    const problems: Problem[] = [];
    for (const entry of this.entries.values()) {
      const def = PARAMS.get(entry.name);
      if (!def) {
        if (!this.isRestrictionClass(entry.name)) {
          problems.push({ file: this.file, line: entry.line, severity: 'warning', message: `unknown parameter: ${entry.name} (ignored)` });
        }
        continue;
      }
      const msg = this.checkValue(def);
      if (msg) problems.push({ file: this.file, line: entry.line, severity: 'error', message: msg });
    }
    return problems;
  }

  private isRestrictionClass(name: string): boolean {
    try {
      return this.list('smtpd_restriction_classes').includes(name);
    } catch {
      return false;
    }
  }

  private checkValue(def: ParamDef): string | null {
    try {
      switch (def.kind.type) {
        case 'bool':
          this.bool(def.name);
          break;
        case 'int':
        case 'size': {
          const n = this.int(def.name);
          if (n < 0 && (def.kind.type === 'size' || def.kind.min !== undefined)) {
            return `bad value for ${def.name}: "${this.get(def.name)}": must not be negative`;
          }
          if (def.name.endsWith('_port') && n > 65535) return `bad value for ${def.name}: "${n}": not a TCP port`;
          break;
        }
        case 'time':
          this.time(def.name);
          break;
        case 'enum': {
          const v = this.get(def.name).toLowerCase();
          if (!def.kind.values.includes(v)) return `bad value for ${def.name}: "${this.get(def.name)}": expected one of ${def.kind.values.join(', ')}`;
          break;
        }
        default:
          this.get(def.name);
      }
    } catch (err) {
      if (err instanceof ConfigError) return err.detail;
      throw err;
    }
    return null;
  }
}

export interface LoadOptions {
  /** Parameter values that override main.cf (tests, `-o name=value`). */
  readonly overrides?: Readonly<Record<string, string>>;
}

/** Read CONFIG_DIR/main.cf. A missing or unreadable main.cf is a ConfigError. */
export function loadConfig(configDir: string, options: LoadOptions = {}): Config {
  const file = join(configDir, 'main.cf');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new ConfigError(file, 0, `cannot read configuration: ${reason}`, { cause: err });
  }
  return configFromText(configDir, file, text, options);
}

export function configFromText(configDir: string, file: string, text: string, options: LoadOptions = {}): Config {
  const parsed = parseMainCf(file, text);
  const entries = new Map(parsed.entries);
  for (const [name, value] of Object.entries(options.overrides ?? {})) entries.set(name, { name, value, line: 0 });
  return new Config(configDir, file, entries, parsed.problems);
}
