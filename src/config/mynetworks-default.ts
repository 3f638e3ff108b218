/**
 * @module config/mynetworks-default
 * SUMMARY: the mynetworks default computed from mynetworks_style and this machine's
 * interfaces, in Postfix's printed form ("127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128 ...").
 * host = each interface address alone; subnet = each interface's subnet; class = its class
 * A/B/C network (IPv4 only, IPv6 as subnet). Loopback always contributes 127.0.0.0/8.
 * SEE ALSO: Postfix mynetworks.c, postconf(5) mynetworks_style.
 */
import { networkInterfaces } from 'node:os';

export function defaultMynetworks(style: string): string {
  const out = new Set<string>(['127.0.0.0/8', '[::ffff:127.0.0.0]/104', '[::1]/128']);
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv4') {
        const [o1, o2, o3] = a.address.split('.').map(Number) as [number, number, number, number];
        if (style === 'host') out.add(`${a.address}/32`);
        else if (style === 'class') {
          const bits = o1 < 128 ? 8 : o1 < 192 ? 16 : 24;
          const net = bits === 8 ? `${o1}.0.0.0` : bits === 16 ? `${o1}.${o2}.0.0` : `${o1}.${o2}.${o3}.0`;
          out.add(`${net}/${bits}`);
        } else out.add(networkOf(a.cidr ?? `${a.address}/32`));
      } else {
        const addr = a.address.replace(/%.*$/, '');
        if (addr.startsWith('fe80:')) continue;
        if (style === 'host') out.add(`[${addr}]/128`);
        else {
          const cidr = a.cidr ?? `${addr}/128`;
          const [, len] = cidr.split('/');
          out.add(`[${ipv6Network(addr, Number(len))}]/${len}`);
        }
      }
    }
  }
  return [...out].join(' ');
}

function networkOf(cidr: string): string {
  const [ip, lenText] = cidr.split('/') as [string, string];
  const len = Number(lenText);
  const n = ip.split('.').reduce((acc, o) => (acc << 8) + Number(o), 0) >>> 0;
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  const net = (n & mask) >>> 0;
  return `${[net >>> 24, (net >>> 16) & 255, (net >>> 8) & 255, net & 255].join('.')}/${len}`;
}

function ipv6Network(addr: string, len: number): string {
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((g) => parseInt(g || '0', 16));
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, len - i * 16));
    groups[i] = bits === 0 ? 0 : groups[i]! & ((0xffff << (16 - bits)) & 0xffff);
  }
  return groups.map((g) => g.toString(16)).join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}
