/**
 * @module mail/mail-date
 * SUMMARY: the RFC 5322 date-time as Postfix's mail_date() writes it: local time, numeric
 * zone, and the zone name in a comment ("Wed, 25 Nov 2026 01:32:12 +0000 (UTC)"). Used by
 * the Received header, locally submitted mail and non-delivery notices.
 * Exports mailDate(ms).
 * SEE ALSO: RFC 5322 section 3.3, Postfix global/mail_date.c.
 */

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number): string => String(n).padStart(2, '0');

/** mailDate - RFC 5322 date-time of MS (epoch milliseconds) in local time */
export function mailDate(ms: number): string {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const zone = `${off >= 0 ? '+' : '-'}${pad(Math.floor(Math.abs(off) / 60))}${pad(Math.abs(off) % 60)}`;
  const abbr = /\(([^)]+)\)$/.exec(d.toString())?.[1];
  const short = abbr && /^[A-Z]{2,5}$/.test(abbr) ? abbr : off === 0 ? 'UTC' : undefined;
  return (
    `${DAYS[d.getDay()]}, ${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zone}` +
    (short ? ` (${short})` : '')
  );
}
