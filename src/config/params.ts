/**
 * @module config/params
 * SUMMARY: the registry of every main.cf parameter greygate knows: name, default, kind and a
 * one-line doc, side by side as in Postfix's mail_params.h. Postfix parameters keep their
 * Postfix names and defaults; greygate's own are listed in design.md.
 * Defaults are raw text, expanded ($name) at use time like any configured value; a default
 * of `null` is computed from the machine (see config/config.ts).
 * SEE ALSO: postconf(5), mail_params.h.
 */
import type { TimeUnit } from '../util/duration.js';

export type ParamKind =
  | { type: 'string' }
  | { type: 'list' }
  | { type: 'maps' }
  | { type: 'restrictions' }
  | { type: 'bool' }
  | { type: 'int'; min?: number }
  | { type: 'size' }
  | { type: 'time'; unit: TimeUnit }
  | { type: 'enum'; values: readonly string[] };

export interface ParamDef {
  readonly name: string;
  /** Raw default text; null when the default depends on the machine. */
  readonly default: string | null;
  readonly kind: ParamKind;
  readonly doc: string;
}

const S = { type: 'string' } as const;
const L = { type: 'list' } as const;
const M = { type: 'maps' } as const;
const R = { type: 'restrictions' } as const;
const B = { type: 'bool' } as const;
const I = { type: 'int', min: 0 } as const;
const Z = { type: 'size' } as const;
const T = (unit: TimeUnit) => ({ type: 'time', unit }) as const;
const E = (...values: string[]) => ({ type: 'enum', values }) as const;

const DEFS: ParamDef[] = [
  // Identity and addresses (postconf(5) defaults).
  { name: 'mail_name', default: 'greygate', kind: S, doc: 'the mail system name in the banner and Received headers' },
  { name: 'myhostname', default: null, kind: S, doc: 'the fully-qualified domain name of this machine' },
  { name: 'mydomain', default: null, kind: S, doc: 'the internet domain of this machine ($myhostname minus its first label)' },
  { name: 'myorigin', default: '$myhostname', kind: S, doc: 'the domain appended to locally-posted mail without a domain' },
  { name: 'mydestination', default: '$myhostname, localhost.$mydomain, localhost', kind: L, doc: 'domains delivered locally (final destination)' },
  { name: 'inet_interfaces', default: 'all', kind: L, doc: 'addresses the listeners bind to: all, loopback-only, or a list' },
  { name: 'proxy_interfaces', default: '', kind: L, doc: 'addresses of a proxy or NAT in front of this machine, also final destinations' },
  { name: 'mynetworks', default: null, kind: L, doc: 'trusted client networks (overrides mynetworks_style)' },
  { name: 'mynetworks_style', default: 'host', kind: E('host', 'subnet', 'class'), doc: 'how to compute mynetworks when it is not set' },
  { name: 'relay_domains', default: '', kind: L, doc: 'domains this gateway relays mail to, from any client' },
  { name: 'relayhost', default: '', kind: S, doc: 'next-hop for mail that is not local: [host]:port (no MX lookup) or host' },
  { name: 'transport_maps', default: '', kind: M, doc: 'per-domain delivery transport overrides' },
  { name: 'alias_maps', default: '', kind: M, doc: 'aliases(5) tables for local delivery' },
  { name: 'local_recipient_maps', default: '$alias_maps', kind: M, doc: 'tables of valid local recipients besides the mailbox users (greygate users are always valid)' },
  { name: 'recipient_delimiter', default: '', kind: S, doc: 'separators between user name and address extension (user+ext)' },
  { name: 'allow_untrusted_routing', default: 'no', kind: B, doc: 'allow sender-specified routing (user%host@dom, host!user) from untrusted clients' },
  { name: 'parent_domain_matches_subdomains', default: 'debug_peer_list, fast_flush_domains, mynetworks, permit_mx_backup_networks, qmqpd_authorized_clients, relay_domains, smtpd_access_maps', kind: L, doc: 'features where "example.com" also matches its subdomains' },
  { name: 'compatibility_level', default: '3.6', kind: S, doc: 'Postfix compatibility level whose defaults are used' },

  // Content inspection.
  { name: 'header_checks', default: '', kind: M, doc: 'regexp tables applied to primary message headers' },
  { name: 'mime_header_checks', default: '$header_checks', kind: M, doc: 'tables applied to MIME headers' },
  { name: 'nested_header_checks', default: '$header_checks', kind: M, doc: 'tables applied to headers of attached messages' },
  { name: 'body_checks', default: '', kind: M, doc: 'regexp tables applied to body lines' },
  { name: 'body_checks_size_limit', default: '51200', kind: Z, doc: 'bytes of each MIME part inspected by body_checks' },
  { name: 'header_size_limit', default: '102400', kind: Z, doc: 'longest logical header kept' },
  { name: 'mime_nesting_limit', default: '100', kind: I, doc: 'deepest MIME nesting inspected; deeper mail is rejected when header checks are on' },
  { name: 'mime_boundary_length_limit', default: '2048', kind: I, doc: 'longest MIME boundary recognised' },
  { name: 'disable_mime_input_processing', default: 'no', kind: B, doc: 'treat the message as one header block and one body, as Postfix does with this set' },
  { name: 'line_length_limit', default: '2048', kind: I, doc: 'longer lines are processed in chunks of this size' },

  // smtpd restrictions.
  { name: 'smtpd_client_restrictions', default: '', kind: R, doc: 'restrictions at connect (or RCPT with smtpd_delay_reject)' },
  { name: 'smtpd_helo_restrictions', default: '', kind: R, doc: 'restrictions on HELO/EHLO' },
  { name: 'smtpd_sender_restrictions', default: '', kind: R, doc: 'restrictions on MAIL FROM' },
  { name: 'smtpd_relay_restrictions', default: 'permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination', kind: R, doc: 'relay control on RCPT TO, before smtpd_recipient_restrictions' },
  { name: 'smtpd_recipient_restrictions', default: '', kind: R, doc: 'restrictions on RCPT TO' },
  { name: 'smtpd_data_restrictions', default: '', kind: R, doc: 'restrictions on DATA' },
  { name: 'smtpd_end_of_data_restrictions', default: '', kind: R, doc: 'restrictions after the message content' },
  { name: 'smtpd_restriction_classes', default: '', kind: L, doc: 'names of restriction classes defined as parameters' },
  { name: 'smtpd_delay_reject', default: 'yes', kind: B, doc: 'evaluate client/helo/sender restrictions at RCPT TO' },
  { name: 'smtpd_helo_required', default: 'no', kind: B, doc: 'require HELO/EHLO before MAIL FROM' },
  { name: 'smtpd_null_access_lookup_key', default: '<>', kind: S, doc: 'access table key for the null sender' },
  { name: 'smtpd_reject_unlisted_recipient', default: 'yes', kind: B, doc: 'reject unknown recipients in local domains at RCPT' },
  { name: 'smtpd_reject_unlisted_sender', default: 'no', kind: B, doc: 'reject unknown senders in local domains' },
  { name: 'smtpd_relay_before_recipient_restrictions', default: 'yes', kind: B, doc: 'evaluate smtpd_relay_restrictions before smtpd_recipient_restrictions' },
  { name: 'reject_tempfail_action', default: 'defer_if_permit', kind: E('defer', 'defer_if_permit'), doc: 'what a reject-type restriction does when a lookup fails temporarily' },
  { name: 'unknown_helo_hostname_tempfail_action', default: '$reject_tempfail_action', kind: E('defer', 'defer_if_permit'), doc: 'reject_unknown_helo_hostname after a temporary DNS failure' },
  { name: 'unknown_address_tempfail_action', default: '$reject_tempfail_action', kind: E('defer', 'defer_if_permit'), doc: 'reject_unknown_sender/recipient_domain after a temporary DNS failure' },
  { name: 'multi_recipient_bounce_reject_code', default: '550', kind: I, doc: 'reply code for reject_multi_recipient_bounce' },
  { name: 'show_user_unknown_table_name', default: 'yes', kind: B, doc: 'name the table in "User unknown in ... table" replies' },
  { name: 'smtpd_policy_service_policy_context', default: '', kind: S, doc: 'policy_context attribute sent to policy servers' },
  { name: 'allow_percent_hack', default: 'yes', kind: B, doc: 'rewrite user%domain to user@domain' },
  { name: 'swap_bangpath', default: 'yes', kind: B, doc: 'rewrite site!user to user@site' },
  { name: 'resolve_dequoted_address', default: 'yes', kind: B, doc: 'look for routing operators inside a quoted local-part' },
  { name: 'smtpd_policy_service_default_action', default: '451 4.3.5 Server configuration problem', kind: S, doc: 'reply when a policy server cannot be reached' },
  { name: 'smtpd_policy_service_timeout', default: '100s', kind: T('s'), doc: 'time limit for a policy server request' },
  { name: 'access_map_reject_code', default: '554', kind: I, doc: 'reply code for REJECT in an access table' },
  { name: 'access_map_defer_code', default: '450', kind: I, doc: 'reply code for DEFER in an access table' },
  { name: 'reject_code', default: '554', kind: I, doc: 'reply code for the reject restriction' },
  { name: 'defer_code', default: '450', kind: I, doc: 'reply code for the defer restriction and defer_if_*' },
  { name: 'relay_domains_reject_code', default: '554', kind: I, doc: 'reply code for reject_unauth_destination' },
  { name: 'unknown_local_recipient_reject_code', default: '550', kind: I, doc: 'reply code for an unknown local recipient' },
  { name: 'unverified_recipient_reject_code', default: '450', kind: I, doc: 'reply code when a recipient cannot be verified' },
  { name: 'invalid_hostname_reject_code', default: '501', kind: I, doc: 'reply code for reject_invalid_helo_hostname' },
  { name: 'non_fqdn_reject_code', default: '504', kind: I, doc: 'reply code for reject_non_fqdn_*' },
  { name: 'unknown_client_reject_code', default: '450', kind: I, doc: 'reply code for reject_unknown_client_hostname' },
  { name: 'unknown_hostname_reject_code', default: '450', kind: I, doc: 'reply code for reject_unknown_helo_hostname' },
  { name: 'unknown_address_reject_code', default: '450', kind: I, doc: 'reply code for reject_unknown_sender/recipient_domain' },
  { name: 'maps_rbl_reject_code', default: '554', kind: I, doc: 'reply code for a DNSBL listing' },
  { name: 'default_rbl_reply', default: '$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}', kind: S, doc: 'reply template for DNSBL rejects' },
  { name: 'rbl_reply_maps', default: '', kind: M, doc: 'per-DNSBL reply templates' },
  { name: 'plaintext_reject_code', default: '450', kind: I, doc: 'reply code when a restriction needs TLS' },

  // smtpd protocol.
  { name: 'smtpd_banner', default: '$myhostname ESMTP $mail_name', kind: S, doc: 'text after 220 in the greeting' },
  { name: 'message_size_limit', default: '10240000', kind: Z, doc: 'largest message accepted, in bytes (0 = no limit)' },
  { name: 'smtpd_recipient_limit', default: '1000', kind: I, doc: 'most recipients accepted per message' },
  { name: 'smtpd_timeout', default: '300s', kind: T('s'), doc: 'idle time before the server drops a client' },
  { name: 'smtpd_hard_error_limit', default: '20', kind: I, doc: 'errors in a session (without a delivered message) before the server replies 421 and disconnects' },
  { name: 'smtpd_soft_error_limit', default: '10', kind: I, doc: 'errors in a session after which every reply is delayed by smtpd_error_sleep_time' },
  { name: 'smtpd_error_sleep_time', default: '1s', kind: T('s'), doc: 'delay of each reply once smtpd_soft_error_limit is reached' },
  { name: 'smtpd_junk_command_limit', default: '100', kind: I, doc: 'NOOP/VRFY/ETRN/RSET commands before each further one counts as an error' },
  { name: 'smtpd_recipient_overshoot_limit', default: '1000', kind: I, doc: 'recipients over smtpd_recipient_limit before each further one counts as an error' },
  { name: 'smtpd_tls_cert_file', default: '', kind: S, doc: 'PEM certificate (chain); empty = generate a self-signed one under data_directory' },
  { name: 'smtpd_tls_key_file', default: '$smtpd_tls_cert_file', kind: S, doc: 'PEM private key' },
  { name: 'smtpd_tls_security_level', default: 'may', kind: E('none', 'may', 'encrypt'), doc: 'STARTTLS on the smtpd port: none, may (offered) or encrypt (required)' },
  { name: 'smtpd_sasl_auth_enable', default: 'no', kind: B, doc: 'offer AUTH on the smtpd port (submission always offers it)' },
  { name: 'smtpd_forbid_bare_newline', default: 'normalize', kind: E('normalize', 'yes', 'reject', 'no'), doc: 'bare LF/CR in DATA: normalize (yes), reject (550 and disconnect) or no' },
  { name: 'smtpd_forbid_bare_newline_exclusions', default: '$mynetworks', kind: L, doc: 'clients exempt from smtpd_forbid_bare_newline' },
  { name: 'smtpd_forbid_bare_newline_reject_code', default: '550', kind: I, doc: 'reply code for a rejected bare newline' },
  { name: 'smtpd_authorized_xclient_hosts', default: '', kind: L, doc: 'clients allowed to use XCLIENT' },
  { name: 'smtpd_client_connection_count_limit', default: '50', kind: I, doc: 'simultaneous connections per client IP (0 = no limit)' },
  { name: 'smtpd_client_connection_rate_limit', default: '0', kind: I, doc: 'connections per client per anvil_rate_time_unit (0 = no limit)' },
  { name: 'smtpd_client_message_rate_limit', default: '0', kind: I, doc: 'messages per client per anvil_rate_time_unit (0 = no limit)' },
  { name: 'smtpd_client_recipient_rate_limit', default: '0', kind: I, doc: 'recipients per client per anvil_rate_time_unit (0 = no limit)' },
  { name: 'smtpd_client_ipv4_prefix_length', default: '32', kind: I, doc: 'IPv4 clients are counted by networks of this prefix length (32 = per address)' },
  { name: 'smtpd_client_ipv6_prefix_length', default: '84', kind: I, doc: 'IPv6 clients are counted by networks of this prefix length' },
  { name: 'smtpd_client_event_limit_exceptions', default: '$mynetworks', kind: L, doc: 'clients exempt from the connection and rate limits' },
  { name: 'anvil_rate_time_unit', default: '60s', kind: T('s'), doc: 'time unit of the rate limits' },
  { name: 'postscreen_greet_wait', default: '0s', kind: T('s'), doc: 'time a client must wait for the banner (the pregreet test; 0 = no pregreet test)' },
  { name: 'postscreen_dnsbl_sites', default: '', kind: L, doc: 'weighted DNSBLs checked at connect' },
  { name: 'postscreen_dnsbl_threshold', default: '1', kind: { type: 'int' }, doc: 'DNSBL score that blocks a client' },
  { name: 'postscreen_dnsbl_action', default: 'ignore', kind: E('ignore', 'enforce', 'drop'), doc: 'what to do with a client over the DNSBL threshold' },
  { name: 'postscreen_dnsbl_allowlist_threshold', default: '$postscreen_dnsbl_whitelist_threshold', kind: { type: 'int' }, doc: 'a DNSBL score at or below this (negative) value allowlists the client: it skips the pregreet test (0 = off)' },
  { name: 'postscreen_dnsbl_whitelist_threshold', default: '0', kind: { type: 'int' }, doc: 'name of postscreen_dnsbl_allowlist_threshold before Postfix 3.6' },
  { name: 'postscreen_dnsbl_timeout', default: '10s', kind: T('s'), doc: 'time limit of the connect-time DNSBL lookups; later answers count as not listed' },
  { name: 'postscreen_dnsbl_reply_map', default: '', kind: M, doc: 'DNSBL domain -> the name shown in the reject reply (hides a key-bearing zone)' },
  { name: 'postscreen_greet_action', default: 'ignore', kind: E('ignore', 'enforce', 'drop'), doc: 'what to do with a client that talks before its turn: ignore (log), enforce (550 to every RCPT) or drop (521)' },
  { name: 'postscreen_greet_banner', default: '$smtpd_banner', kind: S, doc: 'text of the "220-" teaser line sent before the greet wait (empty = none)' },

  // Queue and delivery.
  { name: 'maximal_queue_lifetime', default: '5d', kind: T('d'), doc: 'time a message stays in the queue before it bounces' },
  { name: 'bounce_queue_lifetime', default: '5d', kind: T('d'), doc: 'queue lifetime of bounce (null-sender) messages' },
  { name: 'minimal_backoff_time', default: '300s', kind: T('s'), doc: 'shortest time between delivery attempts' },
  { name: 'maximal_backoff_time', default: '4000s', kind: T('s'), doc: 'longest time between delivery attempts' },
  { name: 'queue_run_delay', default: '300s', kind: T('s'), doc: 'time between deferred-queue scans' },
  { name: 'default_transport', default: 'smtp', kind: S, doc: 'transport for domains that are neither local nor relay_domains' },
  { name: 'relay_transport', default: 'relay', kind: S, doc: 'transport for relay_domains' },
  { name: 'local_transport', default: 'local:$myhostname', kind: S, doc: 'transport for mydestination domains' },
  { name: 'default_destination_concurrency_limit', default: '20', kind: I, doc: 'parallel deliveries to one destination' },
  { name: 'default_destination_recipient_limit', default: '50', kind: I, doc: 'recipients per delivery transaction' },
  { name: 'qmgr_message_active_limit', default: '20000', kind: I, doc: 'messages in the active queue at once' },
  { name: 'smtp_helo_name', default: '$myhostname', kind: S, doc: 'hostname sent in EHLO/HELO by the SMTP client' },
  { name: 'smtp_connect_timeout', default: '30s', kind: T('s'), doc: 'time limit to open a TCP connection to a remote server' },
  { name: 'smtp_helo_timeout', default: '300s', kind: T('s'), doc: 'time limit for the greeting and the EHLO reply' },
  { name: 'smtp_data_done_timeout', default: '600s', kind: T('s'), doc: 'time limit for the reply to the end of data' },
  { name: 'smtp_tls_security_level', default: 'may', kind: E('none', 'may', 'encrypt'), doc: 'none, may (opportunistic STARTTLS) or encrypt (STARTTLS required)' },
  { name: 'smtp_mx_address_limit', default: '5', kind: I, doc: 'most MX host addresses tried per delivery (0 = no limit)' },
  { name: 'smtp_mx_session_limit', default: '2', kind: I, doc: 'most SMTP sessions per delivery (0 = no limit)' },
  { name: 'smtp_connection_cache_time_limit', default: '2s', kind: T('s'), doc: 'time an idle SMTP connection is kept for reuse' },
  { name: 'smtp_connection_reuse_count_limit', default: '0', kind: I, doc: 'messages per cached connection (0 = no limit)' },
  { name: 'double_bounce_sender', default: 'double-bounce', kind: S, doc: 'sender of double-bounce notices; mail to it is discarded' },
  { name: '2bounce_notice_recipient', default: 'postmaster', kind: S, doc: 'recipient of undeliverable bounce notices' },
  { name: 'bounce_size_limit', default: '50000', kind: I, doc: 'largest original message text returned in a non-delivery notice' },
  { name: 'delay_warning_time', default: '0h', kind: T('h'), doc: 'send a delay warning after this time in the queue (0 = never)' },
  { name: 'master_service_disable', default: '', kind: L, doc: 'services not to run; greygate knows qmgr (or qmgr/unix): accept and queue mail, deliver nothing (read at start)' },
  { name: 'enable_long_queue_ids', default: 'no', kind: B, doc: 'long, time-sortable queue IDs (4VgG2x0GQqz9rxK) instead of short hex ones' },
  { name: 'maillog_file', default: '$data_directory/log/mail.log', kind: S, doc: 'decision log file (JSON lines)' },

  // greygate's own.
  { name: 'data_directory', default: 'data', kind: S, doc: 'runtime state: queue, greylist db, mailboxes, logs, TLS key' },
  { name: 'smtpd_port', default: '2525', kind: I, doc: 'SMTP with STARTTLS; 0 disables' },
  { name: 'submission_port', default: '2587', kind: I, doc: 'submission: AUTH required to relay; 0 disables' },
  { name: 'smtps_port', default: '2465', kind: I, doc: 'SMTP over implicit TLS; 0 disables' },
  { name: 'pop3_port', default: '2110', kind: I, doc: 'POP3 with STLS; 0 disables' },
  { name: 'pop3s_port', default: '2995', kind: I, doc: 'POP3 over TLS; 0 disables' },
  { name: 'imap_port', default: '2143', kind: I, doc: 'IMAP with STARTTLS; 0 disables' },
  { name: 'imaps_port', default: '2993', kind: I, doc: 'IMAP over TLS; 0 disables' },
  { name: 'policy_service_port', default: '0', kind: I, doc: 'Postfix policy delegation server (postgrey-compatible); 0 disables' },
  { name: 'policy_service_restrictions', default: 'check_greylist', kind: R, doc: 'restrictions the policy service evaluates at the RCPT stage for each policy request' },
  { name: 'metrics_port', default: '0', kind: I, doc: 'Prometheus metrics endpoint; 0 disables' },
  { name: 'disable_plaintext_auth', default: 'yes', kind: B, doc: 'no plaintext authentication outside TLS, except from loopback' },
  { name: 'greylist_delay', default: '300s', kind: T('s'), doc: 'postgrey --delay' },
  { name: 'greylist_max_age', default: '35d', kind: T('d'), doc: 'postgrey --max-age' },
  { name: 'greylist_retry_window', default: '2d', kind: T('d'), doc: 'postgrey --retry-window' },
  { name: 'greylist_auto_whitelist_clients', default: '5', kind: I, doc: 'postgrey --auto-whitelist-clients; 0 disables' },
  { name: 'greylist_ipv4_prefix', default: '24', kind: I, doc: 'postgrey --ipv4cidr' },
  { name: 'greylist_ipv6_prefix', default: '64', kind: I, doc: 'postgrey --ipv6cidr' },
  { name: 'greylist_whitelist_clients', default: '', kind: L, doc: 'postgrey whitelist_clients files' },
  { name: 'greylist_whitelist_recipients', default: '', kind: L, doc: 'postgrey whitelist_recipients files' },
  { name: 'greylist_text', default: 'Greylisted, see RFC 6647', kind: S, doc: 'text of the greylisting 450 reply' },
  { name: 'greylist_database', default: 'sqlite:', kind: S, doc: 'sqlite:[PATH] or redis://HOST:PORT/DB' },
  { name: 'greylist_organization_grouping', default: 'yes', kind: B, doc: 'pass a retry of the same sender and recipient from another network of the same verified rDNS organisation (greygate)' },
  { name: 'dns_resolvers', default: '', kind: L, doc: 'IP[:PORT] resolvers for DNSBL, MX and rDNS lookups (empty = system)' },
  { name: 'dns_timeout', default: '5s', kind: T('s'), doc: 'time limit of one DNS lookup' },
  { name: 'queue_fsync', default: 'yes', kind: B, doc: 'fsync queue files before the 250 reply (never turn off in production)' },
];

export const PARAMS: ReadonlyMap<string, ParamDef> = new Map(DEFS.map((d) => [d.name, d]));

export function isKnownParam(name: string): boolean {
  return PARAMS.has(name);
}
