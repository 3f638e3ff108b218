/**
 * @module smtpd/tls
 * SUMMARY: the server key and certificate for STARTTLS and implicit TLS on every listener.
 * loadTlsMaterial(config) reads smtpd_tls_cert_file/smtpd_tls_key_file, or, when no cert
 * file is set, creates a self-signed RSA certificate for $myhostname once under
 * DATA_DIRECTORY/tls/ and reuses it until it expires or stops naming $myhostname.
 * secureContextOptions()/buildSecureContext() turn the material into node:tls options.
 * DIAGNOSTICS: ConfigError (one line, naming the file and parameter) for a configured file
 * that is missing, unreadable, not PEM, encrypted, or whose key does not match the cert;
 * ConfigError naming DATA_DIRECTORY/tls when the generated pair cannot be written.
 * SEE ALSO: postconf(5) smtpd_tls_cert_file, smtpd_tls_key_file; RFC 3207; RFC 8314.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { ConfigError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import type { Config } from '../config/config.js';

export interface TlsMaterial {
  /** PEM private key (only the key block, even when it came from a combined file). */
  readonly key: Buffer;
  /** PEM certificate chain, leaf first. */
  readonly cert: Buffer;
  /** True when the pair is greygate's own self-signed one under DATA_DIRECTORY/tls/. */
  readonly generated: boolean;
  readonly certFile: string;
  readonly keyFile: string;
  /** SHA-256 fingerprint of the leaf, as `openssl x509 -fingerprint -sha256` prints it. */
  readonly fingerprint256: string;
  readonly validTo: Date;
}

/** Names of the generated pair under DATA_DIRECTORY. */
export const GENERATED_TLS_DIR = 'tls';
const GENERATED_KEY = 'key.pem';
const GENERATED_CERT = 'cert.pem';

/** Ten years: a self-signed certificate is trusted by pinning, and every renewal breaks pins. */
const GENERATED_VALIDITY_MS = 3650 * 24 * 3600 * 1000;
/** Renew a little before expiry so a long-running gateway does not start serving an expired cert. */
const RENEW_BEFORE_MS = 7 * 24 * 3600 * 1000;

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const KEY_BLOCK = /-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[\s\S]+?-----END \1-----/;

interface ParsedPair {
  readonly key: Buffer;
  readonly cert: Buffer;
  readonly leaf: X509Certificate;
}

/** Why a pair is unusable, as the tail of a one-line message about FILE. */
type PairProblem = { readonly file: 'cert' | 'key'; readonly message: string };

function parsePair(certText: string, keyText: string): ParsedPair | PairProblem {
  const certs = certText.match(CERT_BLOCK);
  if (!certs || certs.length === 0) return { file: 'cert', message: 'no PEM certificate found' };
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certs[0] ?? '');
  } catch (err) {
    return { file: 'cert', message: `bad certificate: ${(err as Error).message}` };
  }
  const keyMatch = KEY_BLOCK.exec(keyText);
  if (!keyMatch) return { file: 'key', message: 'no PEM private key found' };
  // greygate has no way to ask for a passphrase at startup, as Postfix has none either.
  if (keyMatch[1] === 'ENCRYPTED PRIVATE KEY') return { file: 'key', message: 'encrypted private keys are not supported' };
  let key: KeyObject;
  try {
    key = createPrivateKey(keyMatch[0]);
  } catch (err) {
    return { file: 'key', message: `bad private key: ${(err as Error).message}` };
  }
  if (!leaf.checkPrivateKey(key)) return { file: 'key', message: 'private key does not match the certificate' };
  return { key: Buffer.from(`${keyMatch[0]}\n`), cert: Buffer.from(`${certs.join('\n')}\n`), leaf };
}

function isProblem(p: ParsedPair | PairProblem): p is PairProblem {
  return 'message' in p;
}

function material(pair: ParsedPair, generated: boolean, certFile: string, keyFile: string): TlsMaterial {
  return {
    key: pair.key,
    cert: pair.cert,
    generated,
    certFile,
    keyFile,
    fingerprint256: pair.leaf.fingerprint256,
    validTo: new Date(pair.leaf.validTo),
  };
}

function readError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return (err as Error).message;
}

async function readConfigured(path: string, param: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, 0, `cannot read ${param}: ${readError(err)}`, { cause: err });
  }
}

async function loadConfigured(config: Config): Promise<TlsMaterial> {
  const certFile = config.resolvePath(config.get('smtpd_tls_cert_file'));
  // Postfix's default for the key file is $smtpd_tls_cert_file: one PEM holding both.
  const keyParam = config.get('smtpd_tls_key_file');
  const keyFile = keyParam === '' ? certFile : config.resolvePath(keyParam);
  const certText = await readConfigured(certFile, 'smtpd_tls_cert_file');
  const keyText = keyFile === certFile ? certText : await readConfigured(keyFile, 'smtpd_tls_key_file');
  const pair = parsePair(certText, keyText);
  if (isProblem(pair)) {
    const [file, param] = pair.file === 'cert' ? [certFile, 'smtpd_tls_cert_file'] : [keyFile, 'smtpd_tls_key_file'];
    throw new ConfigError(file, 0, `${param}: ${pair.message}`);
  }
  return material(pair, false, certFile, keyFile);
}

export interface SelfSignedOptions {
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/**
 * A new self-signed RSA-2048 pair for HOSTNAME (CN and SAN) plus localhost, 127.0.0.1 and ::1.
 * RSA rather than ECDSA because some old SMTP clients still offer only RSA suites.
 * Built with the `selfsigned` package (pure JS over WebCrypto; loaded only when needed)
 * rather than by spawning openssl(1): no dependency on a binary in PATH or on its version.
 */
export async function generateSelfSigned(hostname: string, options: SelfSignedOptions = {}): Promise<{ key: string; cert: string }> {
  const { generate } = await import('selfsigned');
  const notBefore = options.notBefore ?? new Date(Date.now() - 60 * 1000);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + GENERATED_VALIDITY_MS);
  const altNames: Array<{ type: 2; value: string } | { type: 7; ip: string }> = [];
  for (const name of [hostname, 'localhost', '127.0.0.1', '::1']) {
    const entry = isIP(name) ? { type: 7 as const, ip: name } : { type: 2 as const, value: name };
    if (!altNames.some((a) => JSON.stringify(a) === JSON.stringify(entry))) altNames.push(entry);
  }
  const pems = await generate([{ name: 'commonName', value: hostname }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: notBefore,
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}

/** The generated pair if it is still good for HOSTNAME; null to make a new one. */
async function reuseGenerated(certFile: string, keyFile: string, hostname: string): Promise<TlsMaterial | null> {
  let certText: string;
  let keyText: string;
  try {
    [certText, keyText] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
  } catch {
    return null;
  }
  const pair = parsePair(certText, keyText);
  if (isProblem(pair)) return null;
  if (Date.parse(pair.leaf.validTo) - RENEW_BEFORE_MS <= Date.now()) return null;
  // myhostname changed since the pair was made: clients checking the name would fail.
  const names = isIP(hostname) ? pair.leaf.checkIP(hostname) : pair.leaf.checkHost(hostname, { wildcards: false });
  if (names === undefined) return null;
  return material(pair, true, certFile, keyFile);
}

async function loadGenerated(config: Config): Promise<TlsMaterial> {
  const dir = join(config.dataDir(), GENERATED_TLS_DIR);
  const certFile = join(dir, GENERATED_CERT);
  const keyFile = join(dir, GENERATED_KEY);
  const hostname = config.get('myhostname');
  const reused = await reuseGenerated(certFile, keyFile, hostname);
  if (reused) return reused;
  const { key, cert } = await generateSelfSigned(hostname);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Key first: a crash between the two writes leaves a mismatched pair, which the next
    // start detects and replaces, never a certificate without its key.
    await writeFileAtomic(keyFile, key, 0o600);
    await writeFileAtomic(certFile, cert, 0o644);
  } catch (err) {
    throw new ConfigError(dir, 0, `cannot write the self-signed TLS certificate: ${readError(err)}`, { cause: err });
  }
  const pair = parsePair(cert, key);
  if (isProblem(pair)) throw new Error(`generated TLS pair unusable: ${pair.message}`);
  return material(pair, true, certFile, keyFile);
}

/**
 * The key and certificate every TLS listener uses: smtpd_tls_cert_file/smtpd_tls_key_file
 * (relative to the config directory) when set, else the generated self-signed pair.
 */
export async function loadTlsMaterial(config: Config): Promise<TlsMaterial> {
  return config.get('smtpd_tls_cert_file') === '' ? loadGenerated(config) : loadConfigured(config);
}

/**
 * Options for tls.createServer, tls.TLSSocket or smtp-server. TLS 1.0/1.1 are refused
 * (RFC 8996); the cipher list is Node's default, which already excludes the weak suites.
 */
export function secureContextOptions(m: Pick<TlsMaterial, 'key' | 'cert'>): SecureContextOptions {
  return { key: m.key, cert: m.cert, minVersion: 'TLSv1.2' };
}

/** A SecureContext to hand to STARTTLS upgrades; rebuilt and swapped whole on reload. */
export function buildSecureContext(m: Pick<TlsMaterial, 'key' | 'cert'>): SecureContext {
  return createSecureContext(secureContextOptions(m));
}
