/**
 * @module restrictions/policy-service
 * SUMMARY: check_policy_service SERVER: send the Postfix policy delegation request (the
 * attributes of SMTPD_POLICY_README, in Postfix's order) and treat the "action=" answer as
 * an access(5) right-hand side. SERVER is "inet:host:port", "unix:/path" or
 * "{ inet:host:port, timeout=10s, default_action=DUNNO, policy_context=... }".
 * DIAGNOSTICS: when the server cannot be reached, times out or answers without an action,
 * smtpd_policy_service_default_action is used (default "451 4.3.5 Server configuration
 * problem"), with a warning note; a bad SERVER is a configuration Problem.
 * SEE ALSO: SMTPD_POLICY_README; postconf(5) smtpd_policy_service_*; Postfix smtpd_check.c
 * check_policy_service().
 */
import { parseDuration } from '../util/duration.js';
import { checkTableResult } from './access.js';
import type { Eval, Frame, RunFn, Status } from './evaluate.js';
import { failing, type CompileCtx, type Env, type RestrictionDef } from './registry.js';
import { parseEndpoint } from './policy-client.js';

interface ServiceSpec {
  readonly endpoint: string;
  readonly timeoutMs: number;
  readonly defaultAction: string;
  readonly context: string;
}

const FALLBACK_ACTION = '451 4.3.5 Server configuration problem';

function parseService(arg: string, cx: CompileCtx): ServiceSpec | null {
  const env = cx.env;
  let endpoint = arg;
  let timeoutMs = env.policyTimeoutMs;
  let defaultAction = env.policyDefaultAction;
  let context = env.config.get('smtpd_policy_service_policy_context');
  if (arg.startsWith('{')) {
    if (!arg.endsWith('}')) {
      cx.problem(`policy service syntax error: ${arg}`);
      return null;
    }
    // Attribute values may contain spaces (default_action=451 4.3.5 text): split at commas.
    const inner = arg.slice(1, -1).trim();
    const first = /^(\S+?)(?:[\s,]+|$)/.exec(inner);
    if (!first) {
      cx.problem(`empty policy service: "${arg}"`);
      return null;
    }
    endpoint = first[1]!.replace(/,$/, '');
    for (const part of inner.slice(first[0].length).split(',')) {
      const item = part.trim();
      if (item === '') continue;
      const eq = item.indexOf('=');
      const name = (eq < 0 ? item : item.slice(0, eq)).trim().toLowerCase();
      const value = eq < 0 ? '' : item.slice(eq + 1).trim();
      if (name === 'timeout') {
        const ms = parseDuration(value, 's');
        if (ms === null || ms <= 0) cx.problem(`check_policy_service ${endpoint}: bad timeout "${value}"`);
        else timeoutMs = ms;
      } else if (name === 'default_action') defaultAction = value;
      else if (name === 'policy_context') context = value;
      else if (['max_idle', 'max_ttl', 'request_limit', 'try_limit', 'retry_delay'].includes(name)) continue;
      else cx.problem(`check_policy_service ${endpoint}: unknown attribute "${name}"`, 'warning');
    }
  }
  if (parseEndpoint(endpoint) === null) {
    cx.problem(`check_policy_service: bad server "${endpoint}": need inet:host:port or unix:/path`);
    return null;
  }
  return { endpoint, timeoutMs, defaultAction, context };
}

function attributes(ev: Eval, spec: ServiceSpec, env: Env): Array<readonly [string, string]> {
  const s = ev.s;
  const countable = ev.where === 'DATA' || ev.where === 'END-OF-MESSAGE';
  return [
    ['request', 'smtpd_access_policy'],
    ['protocol_state', ev.where],
    ['protocol_name', s.protocol],
    ['client_address', ev.client.addr],
    ['client_name', ev.client.name],
    ['client_port', String(s.client.port)],
    ['reverse_client_name', ev.client.reverseName],
    ['server_address', s.localAddress ?? ''],
    ['server_port', String(s.localPort)],
    ['helo_name', ev.helo ?? ''],
    ['sender', ev.sender ?? ''],
    ['recipient', ev.recipient ?? ''],
    ['recipient_count', String(countable ? s.recipients.length : 0)],
    ['queue_id', s.queueId ?? ''],
    ['instance', s.instance],
    ['size', String(s.size ?? 0)],
    ['etrn_domain', ''],
    ['stress', ''],
    ['sasl_method', s.saslMethod ?? ''],
    ['sasl_username', s.saslUsername ?? ''],
    ['sasl_sender', ''],
    ['ccert_subject', ''],
    ['ccert_issuer', ''],
    ['ccert_fingerprint', ''],
    ['ccert_pubkey_fingerprint', ''],
    ['encryption_protocol', s.tls ? 'TLS' : ''],
    ['encryption_cipher', ''],
    ['encryption_keysize', '0'],
    ['policy_context', spec.context],
    ['compatibility_level', env.config.get('compatibility_level')],
    ['mail_version', '3.9.0'],
  ];
}

/** Evals currently running a default action: a default action that calls a policy service again gets the built-in one. */
const inDefault = new WeakSet<Eval>();

function service(spec: ServiceSpec, env: Env): RunFn {
  const client = env.policyClient(spec.endpoint);
  const source = `check_policy_service ${spec.endpoint}`;
  return async (ev: Eval, fr: Frame): Promise<Status> => {
    const answer = await client.request(attributes(ev, spec, env), spec.timeoutMs);
    if (answer.ok) return checkTableResult(ev, env, spec.endpoint, answer.action, 'policy query', source, fr);
    ev.note('warning', `problem talking to server ${spec.endpoint}: ${answer.reason}`, source);
    const nested = inDefault.has(ev);
    inDefault.add(ev);
    try {
      return await checkTableResult(ev, env, spec.endpoint, nested ? FALLBACK_ACTION : spec.defaultAction, 'policy query', source, fr);
    } finally {
      if (!nested) inDefault.delete(ev);
    }
  };
}

export const POLICY_RESTRICTIONS: readonly RestrictionDef[] = [
  {
    name: 'check_policy_service',
    args: 1,
    argKind: 'endpoint',
    compile: (arg, cx) => {
      const spec = parseService(arg!, cx);
      return spec ? service(spec, cx.env) : failing(`check_policy_service: bad server "${arg}"`);
    },
  },
];
