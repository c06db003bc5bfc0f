/**
 * The hostile targets both SSRF tests use (the egress client directly, and the relay through a
 * custom provider's base URLs). `P` is replaced by the port of a recording listener on
 * 127.0.0.1, so every loopback form would land there if it were not refused. Names are answered
 * by a real DNS server on loopback (`ssrfZone`).
 */
export const ssrfZone = {
  'rebind.test': ['127.0.0.1'],
  'internal.test': ['10.0.0.5'],
  'metadata.test': ['169.254.169.254'],
  'mixed.test': ['93.184.216.34', '127.0.0.1'],
  'v6loop.test': ['::1'],
  // Written in hex: dns2 mis-encodes the dotted form of an IPv4-mapped AAAA answer.
  'mapped.test': ['::ffff:7f00:1'],
  'ula.test': ['fd00::1'],
  'nat64.test': ['64:ff9b::7f00:1'],
  'cgnat.test': ['100.100.100.100'],
  'zero.test': ['0.0.0.0'],
  localhost: ['127.0.0.1', '::1'],
} as const;

/** [url template, expected refusal reason] */
export const ssrfTargets: readonly (readonly [string, 'address' | 'scheme' | 'resolution_failed'])[] = [
  // IP literals in every notation the WHATWG parser accepts
  ['http://127.0.0.1:P/', 'address'], ['http://127.1:P/', 'address'], ['http://2130706433:P/', 'address'], ['http://0x7f000001:P/', 'address'],
  ['http://0x7f.1:P/', 'address'], ['http://0177.0.0.1:P/', 'address'], ['http://0177.1:P/', 'address'], ['http://017700000001:P/', 'address'],
  ['http://127.000.000.001:P/', 'address'], ['http://0:P/', 'address'], ['http://0.0.0.0:P/', 'address'], ['http://[::1]:P/', 'address'],
  ['http://[::]:P/', 'address'], ['http://[::ffff:127.0.0.1]:P/', 'address'], ['http://[::ffff:7f00:1]:P/', 'address'], ['http://[0:0:0:0:0:ffff:127.0.0.1]:P/', 'address'],
  ['http://[::127.0.0.1]:P/', 'address'], ['http://[64:ff9b::127.0.0.1]:P/', 'address'], ['http://[2002:7f00:1::]:P/', 'address'], ['http://[2001::1]:P/', 'address'],
  ['http://169.254.169.254/latest/meta-data/', 'address'], ['http://[fd00:ec2::254]/', 'address'], ['http://10.0.0.1/', 'address'], ['http://172.16.0.1/', 'address'],
  ['http://192.168.0.1/', 'address'], ['http://100.64.0.1/', 'address'], ['http://198.18.0.1/', 'address'], ['http://192.0.2.1/', 'address'],
  ['http://224.0.0.1/', 'address'], ['http://255.255.255.255/', 'address'], ['http://240.0.0.1/', 'address'], ['http://[fe80::1]/', 'address'],
  ['http://[fc00::1]/', 'address'], ['http://[ff02::1]/', 'address'], ['http://[fec0::1]/', 'address'], ['https://127.0.0.1:P/', 'address'],
  // names whose answers are private, and a name that does not resolve
  ['http://rebind.test:P/', 'address'], ['http://internal.test/', 'address'], ['http://metadata.test/', 'address'], ['http://mixed.test:P/', 'address'],
  ['http://v6loop.test:P/', 'address'], ['http://mapped.test:P/', 'address'], ['http://ula.test/', 'address'], ['http://nat64.test/', 'address'],
  ['http://cgnat.test/', 'address'], ['http://zero.test:P/', 'address'], ['http://localhost:P/', 'address'], ['http://nowhere.test/', 'resolution_failed'],
  // schemes and user info
  ['file:///etc/passwd', 'scheme'], ['gopher://127.0.0.1:P/_x', 'scheme'], ['ftp://127.0.0.1:P/', 'scheme'], ['data:text/plain,hi', 'scheme'],
  ['ws://127.0.0.1:P/', 'scheme'], ['http://user:pass@127.0.0.1:P/', 'scheme'], ['not a url', 'scheme'],
];
