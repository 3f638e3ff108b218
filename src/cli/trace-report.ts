/**
 * @module cli/trace-report
 * SUMMARY: the records `greygate trace` prints and the TraceReport that collects them. A
 * record has the decision log's field names (event, stage, rule, reply, code, status,
 * client_ip, client_name, helo, from, to, size, ...) plus the explanation fields (list,
 * restriction, depth, table, keys, key, value, query, answer, header, line) and `msg`, the
 * text line. Records the daemon itself would log for the session (connect, reject, defer,
 * warn, info, reject_warning, hold, discard, accept, auth) keep its event names; the others
 * explain: command, permit, list, restriction, lookup, dns, policy, note, result.
 * The restriction engine's steps (SessionState.onStep) arrive after each restriction has
 * run; they are regrouped so that each restriction's line comes before the table lookups,
 * DNS queries and nested lists it made. Text output is `msg` indented by nesting.
 * SEE ALSO: log/events.ts, restrictions/state.ts RestrictionStep, cli/trace.ts.
 */
import type { EventRecord, LogEvent } from '../log/events.js';
import { formatReply } from '../mail/reply.js';
import type { RestrictionStep, SessionState, Stage } from '../restrictions/state.js';
import type { CheckEvent } from '../checks/actions.js';

export type TraceEvent = LogEvent | CheckEvent | 'command' | 'permit' | 'list' | 'restriction' | 'lookup' | 'dns' | 'policy' | 'note' | 'result';

export interface TraceRecord extends Omit<EventRecord, 'event'> {
  event: TraceEvent;
  stage: Stage;
  msg: string;
}

interface Line {
  readonly rec: TraceRecord;
  readonly indent: number;
}

/** An aggregated search of one table: the keys that missed, then the one that answered. */
interface LookupLine extends Line {
  readonly rec: TraceRecord & { keys: string[] };
  open: boolean;
}

/** How lists are named: the replyClass of a top-level list gives its parameter. */
const LIST_BY_CLASS: Readonly<Record<string, string>> = {
  'Client host': 'smtpd_client_restrictions',
  'Helo command': 'smtpd_helo_restrictions',
  'Sender address': 'smtpd_sender_restrictions',
  'Data command': 'smtpd_data_restrictions',
  'End-of-data': 'smtpd_end_of_data_restrictions',
};

export interface RecipientLists {
  /** The relay and recipient lists in the order the engine walks them, with their compiled names. */
  readonly order: ReadonlyArray<{ readonly param: string; readonly names: readonly string[] }>;
}

const listIndent = (depth: number): number => 2 + 4 * (depth - 1);

export class TraceReport {
  private readonly lines: Line[] = [];
  /** Lines waiting for the restriction (at that depth) whose evaluation produced them. */
  private pending: Line[][] = [];
  private depth = 0;
  private recipientListsSeen = 0;
  private topList = '';
  /** The top-level lists walked for the current command. */
  readonly walked = new Set<string>();
  stage: Stage = 'connect';
  /** The recipient being checked (RCPT), for the `to` field. */
  to: string | undefined;

  constructor(
    private readonly state: () => SessionState,
    private readonly rcptLists: RecipientLists,
  ) {}

  /** The decision log's session fields, as SessionContext.base() fills them. */
  base(event: TraceEvent, msg: string): TraceRecord {
    const s = this.state();
    const r: TraceRecord = { event, stage: this.stage, msg, client_ip: s.client.address, client_name: s.client.name };
    if (s.helo !== undefined) r.helo = s.helo;
    if (s.sender !== undefined) r.from = s.sender;
    if (this.to !== undefined) r.to = this.to;
    return r;
  }

  /** A record at the level of an SMTP command (indent 0) or of its result (indent 2). */
  add(rec: TraceRecord, indent = 2): void {
    this.flushPending();
    this.lines.push({ rec, indent });
  }

  /** A new SMTP command starts: nesting is reset. */
  command(stage: Stage, msg: string, extra: Partial<TraceRecord> = {}, event: TraceEvent = 'command'): void {
    this.flushPending();
    this.stage = stage;
    this.depth = 0;
    this.recipientListsSeen = 0;
    this.topList = '';
    this.walked.clear();
    this.lines.push({ rec: { ...this.base(event, msg), ...extra }, indent: 0 });
  }

  /** A detail found while a restriction runs (a DNS query, a policy request). */
  detail(rec: TraceRecord): void {
    if (this.depth === 0) {
      this.lines.push({ rec, indent: 2 });
      return;
    }
    this.closeLookups(this.depth);
    this.at(this.depth).push({ rec, indent: listIndent(this.depth) + 4 });
  }

  readonly onStep = (step: RestrictionStep): void => {
    switch (step.type) {
      case 'list':
        this.list(step);
        break;
      case 'lookup':
        this.lookup(step);
        break;
      case 'restriction':
        this.restriction(step);
        break;
    }
  };

  private at(depth: number): Line[] {
    let p = this.pending[depth];
    if (!p) {
      p = [];
      this.pending[depth] = p;
    }
    return p;
  }

  private list(step: Extract<RestrictionStep, { type: 'list' }>): void {
    const names = step.names.join(', ');
    if (step.depth === 1) this.flushPending();
    this.depth = step.depth;
    if (step.depth === 1) {
      this.topList = this.listName(step.replyClass, step.names);
      this.walked.add(this.topList);
      const rec = this.base('list', `${this.topList}: ${names || '(empty)'}`);
      rec.list = this.topList;
      rec.depth = 1;
      rec.restrictions = [...step.names];
      this.lines.push({ rec, indent: listIndent(1) });
      return;
    }
    this.closeLookups(step.depth - 1);
    const rec = this.base('list', `list: ${names || '(empty)'}`);
    rec.list = this.topList;
    rec.depth = step.depth;
    rec.restrictions = [...step.names];
    this.at(step.depth - 1).push({ rec, indent: listIndent(step.depth) });
    this.pending[step.depth] = [];
  }

  private listName(replyClass: string, names: readonly string[]): string {
    const byClass = LIST_BY_CLASS[replyClass];
    if (byClass) return byClass;
    // Recipient address: the relay and recipient lists; an empty list is not walked.
    const order = this.rcptLists.order;
    const n = this.recipientListsSeen++;
    if (n > 0) return order[1]?.param ?? 'smtpd_recipient_restrictions';
    const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
    if (order[0] && same(order[0].names, names)) return order[0].param;
    if (order[1] && same(order[1].names, names)) {
      this.recipientListsSeen++;
      return order[1].param;
    }
    return order[0]?.param ?? 'smtpd_relay_restrictions';
  }

  private lookup(step: Extract<RestrictionStep, { type: 'lookup' }>): void {
    this.depth = step.depth;
    const here = this.at(step.depth);
    const last = here[here.length - 1] as LookupLine | undefined;
    let line: LookupLine;
    if (last && (last as LookupLine).open && last.rec.table === step.table) line = last;
    else {
      this.closeLookups(step.depth);
      const rec = { ...this.base('lookup', ''), table: step.table, keys: [] as string[], depth: step.depth };
      line = { rec, indent: listIndent(step.depth) + 4, open: true };
      here.push(line);
    }
    const rec = line.rec;
    rec.keys.push(step.key);
    const keys = rec.keys as string[];
    if (step.result === 'miss') {
      rec.result = 'miss';
      rec.msg = `${step.table}: ${keys.join(', ')}: not found`;
      return;
    }
    line.open = false;
    rec.key = step.key;
    rec.result = step.result;
    const tried = keys.length > 1 ? ` (after ${keys.slice(0, -1).join(', ')}: not found)` : '';
    if (step.result === 'hit') {
      rec.value = step.value;
      if (step.source) rec.rule = step.source;
      rec.msg = `${step.table}: ${step.key} = ${step.value}${tried}${step.source ? ` [${step.source}]` : ''}`;
    } else {
      rec.error = step.error;
      rec.msg = `${step.table}: ${step.key}: lookup error: ${step.error}${tried}`;
    }
  }

  private closeLookups(depth: number): void {
    const here = this.pending[depth];
    const last = here?.[here.length - 1] as LookupLine | undefined;
    if (last && last.open) last.open = false;
  }

  private restriction(step: Extract<RestrictionStep, { type: 'restriction' }>): void {
    this.depth = step.depth;
    const rec = this.base('restriction', '');
    rec.list = this.topList;
    rec.restriction = step.name;
    rec.depth = step.depth;
    let verdict: string;
    if (step.result === 'reject' && step.reply) {
      rec.result = step.reply.code >= 500 ? 'reject' : 'defer';
      rec.code = step.reply.code;
      rec.status = step.reply.status;
      rec.reply = formatReply(step.reply);
      verdict = `${rec.result}: ${rec.reply}`;
    } else {
      verdict = step.result === 'ok' ? 'permit' : 'dunno';
      rec.result = verdict;
    }
    // Provenance only when it says more than the restriction's own name.
    if (step.rule && step.rule !== step.name) {
      rec.rule = step.rule;
      verdict += ` [${step.rule}]`;
    } else if (step.result !== 'dunno') rec.rule = step.name;
    rec.msg = `${step.name}: ${verdict}`;
    this.closeLookups(step.depth);
    const group: Line[] = [{ rec, indent: listIndent(step.depth) + 2 }, ...(this.pending[step.depth] ?? [])];
    this.pending[step.depth] = [];
    if (step.depth <= 1) this.lines.push(...group);
    else this.at(step.depth - 1).push(...group);
  }

  /** Whatever a check left unclaimed (lookups outside any list) goes out in order. */
  private flushPending(): void {
    for (let d = this.pending.length - 1; d >= 1; d--) {
      const p = this.pending[d];
      if (p && p.length) {
        if (d === 1) this.lines.push(...p);
        else this.at(d - 1).push(...p);
      }
      this.pending[d] = [];
    }
    this.depth = 0;
  }

  records(): TraceRecord[] {
    this.flushPending();
    return this.lines.map((l) => l.rec);
  }

  /** One line per record: `msg`, indented by nesting. */
  text(): string {
    this.flushPending();
    return this.lines.map((l) => ' '.repeat(l.indent) + l.rec.msg + '\n').join('');
  }

  /** One JSON object per line, with the same records. */
  json(): string {
    this.flushPending();
    return this.lines.map((l) => JSON.stringify(l.rec) + '\n').join('');
  }
}
