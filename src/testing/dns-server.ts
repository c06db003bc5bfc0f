/**
 * A real DNS server on loopback (dns2, UDP) answering from a fixed zone, and a resolver that asks
 * it: how the SSRF tests give names private addresses without touching the machine's resolver.
 */
import { Resolver } from 'node:dns/promises';
import dns2 from 'dns2';
import type { ResolvedAddress } from '../egress/client.js';

export type Zone = Readonly<Record<string, readonly string[]>>;

export async function startDnsServer(zone: Zone): Promise<{ resolve: (hostname: string) => Promise<ResolvedAddress[]>; queries: string[]; close(): Promise<void> }> {
  const { Packet } = dns2;
  const queries: string[] = [];
  const server = dns2.createServer({
    udp: true,
    handle: (request, send) => {
      const response = Packet.createResponseFromRequest(request);
      for (const question of request.questions) {
        queries.push(question.name);
        for (const address of zone[question.name.toLowerCase()] ?? []) {
          const v6 = address.includes(':');
          if ((question.type === Packet.TYPE.AAAA) !== v6) continue;
          response.answers.push(Packet.createResourceFromQuestion(question, { type: v6 ? Packet.TYPE.AAAA : Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 1, address }));
        }
      }
      void send(response);
    },
  });
  const addresses = await server.listen({ udp: { port: 0, address: '127.0.0.1' } });
  const port = addresses.udp?.port;
  if (port === undefined) throw new Error('dns server did not listen');
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`127.0.0.1:${String(port)}`]);

  const settle = async (lookup: Promise<string[]>): Promise<string[]> => lookup.catch(() => []);
  return {
    queries,
    async resolve(hostname) {
      const [v4, v6] = await Promise.all([settle(resolver.resolve4(hostname)), settle(resolver.resolve6(hostname))]);
      const answers = [...v4.map((address) => ({ address, family: 4 as const })), ...v6.map((address) => ({ address, family: 6 as const }))];
      if (answers.length === 0) throw new Error(`${hostname}: no such name`);
      return answers;
    },
    close: () => server.close(),
  };
}
