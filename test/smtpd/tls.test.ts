/**
 * @module test/smtpd/tls
 * SUMMARY: loadTlsMaterial: the self-signed pair is made once and reused, renewed when
 * expired, when myhostname changes or when corrupt; configured files (separate or combined)
 * load relative to the config directory; bad files give a one-line ConfigError naming the
 * file; and real TLS handshakes on 127.0.0.1 (createServer and a STARTTLS-style upgrade).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { configFromText, type Config } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';
import {
  buildSecureContext,
  generateSelfSigned,
  loadTlsMaterial,
  secureContextOptions,
  type TlsMaterial,
} from '../../src/smtpd/tls.js';

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gg-tls-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A config dir NAME under the temp root, with main.cf made of LINES. */
async function config(name: string, lines: string[]): Promise<Config> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const text = [`data_directory = ${join(dir, 'data')}`, ...lines].join('\n') + '\n';
  await writeFile(join(dir, 'main.cf'), text);
  return configFromText(dir, join(dir, 'main.cf'), text);
}

describe('generated self-signed certificate', () => {
  it('is made once under data_directory/tls and reused', async () => {
    const cfg = await config('gen', ['myhostname = mx.example.org']);
    const first = await loadTlsMaterial(cfg);
    assert.equal(first.generated, true);
    assert.equal(first.certFile, join(cfg.dataDir(), 'tls', 'cert.pem'));
    assert.equal(first.keyFile, join(cfg.dataDir(), 'tls', 'key.pem'));
    assert.equal((await stat(first.keyFile)).mode & 0o777, 0o600);
    assert.equal((await stat(join(cfg.dataDir(), 'tls'))).mode & 0o777, 0o700);

    const x = new X509Certificate(first.cert);
    assert.equal(x.subject, 'CN=mx.example.org');
    assert.equal(x.subjectAltName, 'DNS:mx.example.org, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    assert.ok(x.checkPrivateKey(createPrivateKey(first.key)));
    assert.ok(first.validTo.getTime() > Date.now() + 365 * 24 * 3600 * 1000);
    assert.equal(first.fingerprint256, x.fingerprint256);

    const second = await loadTlsMaterial(cfg);
    assert.equal(second.generated, true);
    assert.equal(second.fingerprint256, first.fingerprint256);
    assert.deepEqual(second.key, first.key);
  });

  const renewals: Array<{ name: string; spoil: (cfg: Config, tlsDir: string) => Promise<Config> }> = [
    {
      name: 'expired',
      spoil: async (cfg, tlsDir) => {
        const old = await generateSelfSigned('mx.example.org', {
          notBefore: new Date(Date.now() - 3 * 86400e3),
          notAfter: new Date(Date.now() - 86400e3),
        });
        await writeFile(join(tlsDir, 'key.pem'), old.key);
        await writeFile(join(tlsDir, 'cert.pem'), old.cert);
        return cfg;
      },
    },
    {
      name: 'myhostname changed',
      spoil: async () => config('renew-myhostname-changed', ['myhostname = mail.example.net']),
    },
    {
      name: 'corrupt certificate',
      spoil: async (cfg, tlsDir) => {
        await writeFile(join(tlsDir, 'cert.pem'), 'garbage\n');
        return cfg;
      },
    },
    {
      name: 'key from another pair',
      spoil: async (cfg, tlsDir) => {
        const other = await generateSelfSigned('mx.example.org');
        await writeFile(join(tlsDir, 'key.pem'), other.key);
        return cfg;
      },
    },
    {
      name: 'key missing',
      spoil: async (cfg, tlsDir) => {
        await rm(join(tlsDir, 'key.pem'));
        return cfg;
      },
    },
  ];
  for (const r of renewals) {
    it(`is renewed when ${r.name}`, async () => {
      const name = `renew-${r.name.replace(/\W+/g, '-')}`;
      const cfg = await config(name, ['myhostname = mx.example.org']);
      const first = await loadTlsMaterial(cfg);
      const cfg2 = await r.spoil(cfg, join(cfg.dataDir(), 'tls'));
      const renewed = await loadTlsMaterial(cfg2);
      assert.equal(renewed.generated, true);
      assert.notEqual(renewed.fingerprint256, first.fingerprint256);
      assert.ok(renewed.validTo.getTime() > Date.now());
      const x = new X509Certificate(await readFile(renewed.certFile));
      assert.equal(x.fingerprint256, renewed.fingerprint256);
      assert.ok(x.checkPrivateKey(createPrivateKey(await readFile(renewed.keyFile))));
      assert.equal(x.subject, `CN=${cfg2.get('myhostname')}`);
    });
  }
});

describe('configured smtpd_tls_cert_file / smtpd_tls_key_file', () => {
  let pair: { key: string; cert: string };
  let other: { key: string; cert: string };
  before(async () => {
    pair = await generateSelfSigned('smtp.example.com');
    other = await generateSelfSigned('smtp.example.com');
  });

  it('loads separate files relative to the config directory', async () => {
    const cfg = await config('conf-separate', ['smtpd_tls_cert_file = certs/server.crt', 'smtpd_tls_key_file = certs/server.key']);
    await mkdir(join(cfg.configDir, 'certs'));
    await writeFile(join(cfg.configDir, 'certs', 'server.crt'), pair.cert);
    await writeFile(join(cfg.configDir, 'certs', 'server.key'), pair.key);
    const m = await loadTlsMaterial(cfg);
    assert.equal(m.generated, false);
    assert.equal(m.certFile, join(cfg.configDir, 'certs', 'server.crt'));
    assert.equal(m.keyFile, join(cfg.configDir, 'certs', 'server.key'));
    assert.equal(m.fingerprint256, new X509Certificate(pair.cert).fingerprint256);
    assert.match(m.key.toString(), /^-----BEGIN PRIVATE KEY-----/);
    assert.equal(m.cert.toString().trim(), pair.cert.trim());
  });

  it('takes key and chain from one combined file (the key file defaults to the cert file)', async () => {
    const cfg = await config('conf-combined', ['smtpd_tls_cert_file = combined.pem']);
    // Key in the middle and a second (intermediate) certificate after it, as admins concatenate them.
    await writeFile(join(cfg.configDir, 'combined.pem'), `${pair.cert}\n${pair.key}\n${other.cert}`);
    const m = await loadTlsMaterial(cfg);
    assert.equal(m.generated, false);
    assert.equal(m.keyFile, m.certFile);
    assert.equal(m.fingerprint256, new X509Certificate(pair.cert).fingerprint256);
    assert.equal((m.cert.toString().match(/BEGIN CERTIFICATE/g) ?? []).length, 2);
    assert.doesNotMatch(m.cert.toString(), /PRIVATE KEY/);
    assert.doesNotMatch(m.key.toString(), /CERTIFICATE/);
    assert.doesNotThrow(() => buildSecureContext(m));
  });

  const failures: Array<{ name: string; files: Record<string, string>; lines: string[]; message: (dir: string) => string }> = [
    {
      name: 'missing cert file',
      files: {},
      lines: ['smtpd_tls_cert_file = nope.crt', 'smtpd_tls_key_file = nope.key'],
      message: (d) => `${d}/nope.crt: cannot read smtpd_tls_cert_file: no such file`,
    },
    {
      name: 'missing key file',
      files: { 'a.crt': 'CERT' },
      lines: ['smtpd_tls_cert_file = a.crt', 'smtpd_tls_key_file = a.key'],
      message: (d) => `${d}/a.key: cannot read smtpd_tls_key_file: no such file`,
    },
    {
      name: 'mismatched key',
      files: { 'a.crt': 'CERT', 'a.key': 'OTHERKEY' },
      lines: ['smtpd_tls_cert_file = a.crt', 'smtpd_tls_key_file = a.key'],
      message: (d) => `${d}/a.key: smtpd_tls_key_file: private key does not match the certificate`,
    },
    {
      name: 'cert file is not PEM',
      files: { 'a.crt': 'hello\n', 'a.key': 'KEY' },
      lines: ['smtpd_tls_cert_file = a.crt', 'smtpd_tls_key_file = a.key'],
      message: (d) => `${d}/a.crt: smtpd_tls_cert_file: no PEM certificate found`,
    },
    {
      name: 'key file holds only a certificate',
      files: { 'a.crt': 'CERT', 'a.key': 'CERT' },
      lines: ['smtpd_tls_cert_file = a.crt', 'smtpd_tls_key_file = a.key'],
      message: (d) => `${d}/a.key: smtpd_tls_key_file: no PEM private key found`,
    },
    {
      name: 'encrypted key',
      files: { 'a.crt': 'CERT', 'a.key': 'ENCKEY' },
      lines: ['smtpd_tls_cert_file = a.crt', 'smtpd_tls_key_file = a.key'],
      message: (d) => `${d}/a.key: smtpd_tls_key_file: encrypted private keys are not supported`,
    },
    {
      name: 'key path is a directory',
      files: { 'a.crt': 'CERT', keys: 'DIR' },
      lines: ['smtpd_tls_cert_file = a.crt', 'smtpd_tls_key_file = keys'],
      message: (d) => `${d}/keys: cannot read smtpd_tls_key_file: is a directory`,
    },
  ];
  for (const f of failures) {
    it(`refuses: ${f.name}`, async () => {
      const cfg = await config(`fail-${f.name.replace(/\W+/g, '-')}`, f.lines);
      const content: Record<string, string> = {
        CERT: pair.cert,
        KEY: pair.key,
        OTHERKEY: other.key,
        ENCKEY: createPrivateKey(pair.key).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'x' }).toString(),
      };
      for (const [file, what] of Object.entries(f.files)) {
        if (what === 'DIR') await mkdir(join(cfg.configDir, file));
        else await writeFile(join(cfg.configDir, file), content[what] ?? what);
      }
      await assert.rejects(loadTlsMaterial(cfg), (err: unknown) => {
        assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
        assert.equal(err.message, f.message(cfg.configDir));
        assert.ok(!err.message.includes('\n'), 'one line');
        return true;
      });
    });
  }
});

describe('TLS handshake on 127.0.0.1', () => {
  let m: TlsMaterial;
  before(async () => {
    m = await loadTlsMaterial(await config('handshake', ['myhostname = mx.example.org']));
  });

  function connect(port: number, options: tls.ConnectionOptions): Promise<{ protocol: string | null; authorized: boolean; line: string }> {
    return new Promise((resolve, reject) => {
      const sock = tls.connect({ host: '127.0.0.1', port, ca: m.cert, ...options }, () => {
        sock.once('data', (d: Buffer) => {
          resolve({ protocol: sock.getProtocol(), authorized: sock.authorized, line: d.toString() });
          sock.end();
        });
      });
      sock.on('error', reject);
    });
  }

  it('serves the material with tls.createServer and verifies against it by name and by IP', async () => {
    const server = tls.createServer(secureContextOptions(m), (s) => s.end('220 ready\r\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      const byName = await connect(port, { servername: 'mx.example.org' });
      assert.deepEqual(byName, { protocol: 'TLSv1.3', authorized: true, line: '220 ready\r\n' });
      const byIp = await connect(port, {});
      assert.equal(byIp.authorized, true);
      await assert.rejects(connect(port, { servername: 'wrong.example.org' }), /does not match|altnames/i);
      await assert.rejects(connect(port, { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }));
      const tls12 = await connect(port, { servername: 'localhost', maxVersion: 'TLSv1.2' });
      assert.equal(tls12.protocol, 'TLSv1.2');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('upgrades a plain socket with buildSecureContext (the STARTTLS path)', async () => {
    const secureContext = buildSecureContext(m);
    const server = createNetServer((plain) => {
      const s = new tls.TLSSocket(plain, { isServer: true, secureContext });
      s.on('secure', () => s.end('220 2.0.0 Ready to start TLS\r\n'));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      const r = await connect(port, { servername: 'mx.example.org' });
      assert.equal(r.authorized, true);
      assert.equal(r.line, '220 2.0.0 Ready to start TLS\r\n');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
