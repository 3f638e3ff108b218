/**
 * @module util/listen
 * SUMMARY: what every listener (smtpd, policyd, pop3, imap, metrics) does to bind: listenOn()
 * resolves once SERVER listens on HOST:PORT and rejects with the bind error (EADDRINUSE ...)
 * instead of letting it reach the server's 'error' handler; boundPort() is the port actually
 * bound (port 0 in tests), or the configured one before binding.
 * DIAGNOSTICS: none; the caller reports a rejected bind (gateway.ts bind()).
 * SEE ALSO: node:net Server.listen().
 */
import type { Server } from 'node:net';

export function listenOn(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export function boundPort(server: Server, configured: number): number {
  const a = server.address();
  return typeof a === 'object' && a ? a.port : configured;
}
