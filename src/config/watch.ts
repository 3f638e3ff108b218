/**
 * @module config/watch
 * SUMMARY: notice changes to main.cf and the table files it names, and ask for a reload.
 * Directories are watched, not files, because editors and `mv`-based deploys replace a
 * file with a new inode that a per-file watch would miss. Events are debounced (a save is
 * often several events) and the watchers never keep the process alive (Haraka's watch.js).
 * DIAGNOSTICS: a directory that cannot be watched is skipped; SIGHUP still reloads.
 * SEE ALSO: haraka-config lib/watch.js.
 */
import { watch, type FSWatcher } from 'node:fs';
import { dirname, basename, resolve } from 'node:path';

export class FileWatcher {
  private watchers = new Map<string, FSWatcher>();
  private files = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private readonly onChange: () => void;
  private readonly debounceMs: number;

  constructor(onChange: () => void, debounceMs = 300) {
    this.onChange = onChange;
    this.debounceMs = debounceMs;
  }

  /** Replace the set of watched files. */
  setFiles(paths: Iterable<string>): void {
    this.files = new Set([...paths].map((p) => resolve(p)));
    const dirs = new Set([...this.files].map((f) => dirname(f)));
    for (const [dir, w] of this.watchers) {
      if (!dirs.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || this.files.has(resolve(dir, name.toString())) || this.files.has(resolve(dir, basename(name.toString())))) this.kick();
        });
        w.on('error', () => undefined);
        this.watchers.set(dir, w);
      } catch {
        // Not watchable (missing directory, inotify limits): SIGHUP still works.
      }
    }
  }

  private kick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.onChange();
    }, this.debounceMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}
