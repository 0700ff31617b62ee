// resolve-localhost.mjs pins every *.localhost name (and localhost itself) to loopback inside a
// Node process, so Node MCP clients reach a toolgate under test at https://NAME.toolgate.localhost
// without touching /etc/hosts. glibc's resolver (behind dns.lookup) does not resolve names under
// .localhost; Chromium does, and is pointed at the server with --host-resolver-rules instead.
//
// Load it before anything connects:
//   node --import ./resolve-localhost.mjs client.mjs
//   NODE_OPTIONS=--import=/abs/path/resolve-localhost.mjs some-node-cli …
// or import it for its side effect. Loading it twice is harmless.
//
// It replaces dns.lookup and dns.promises.lookup, which net.connect (so http, https, tls and the
// fetch built into Node, undici) calls at connection time. A .localhost name answers 127.0.0.1
// (::1 when the caller asks for IPv6 only), honouring the {all: true} and family options; every
// other name goes to the original resolver unchanged.

import dns from 'node:dns';
import { syncBuiltinESMExports } from 'node:module';
import { promisify } from 'node:util';

const PATCHED = Symbol.for('toolgate.e2e.resolve-localhost');

function isLocalhost(hostname) {
  if (typeof hostname !== 'string') return false;
  const h = hostname.toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost');
}

// family reads the requested address family from lookup's options (a number or an object).
function family(options) {
  const f = typeof options === 'number' ? options : options?.family;
  if (f === 6 || f === 'IPv6') return 6;
  if (f === 4 || f === 'IPv4') return 4;
  return 0;
}

function answer(options) {
  const fam = family(options);
  const address = fam === 6 ? { address: '::1', family: 6 } : { address: '127.0.0.1', family: 4 };
  const all = typeof options === 'object' && options !== null && options.all === true;
  return { address, all };
}

if (!dns.lookup[PATCHED]) {
  const originalLookup = dns.lookup;
  const originalPromisesLookup = dns.promises.lookup;

  const lookup = function lookup(hostname, options, callback) {
    if (typeof options === 'function') {
      callback = options;
      options = undefined;
    }
    if (!isLocalhost(hostname)) {
      return options === undefined
        ? originalLookup.call(this, hostname, callback)
        : originalLookup.call(this, hostname, options, callback);
    }
    const { address, all } = answer(options);
    process.nextTick(() => {
      if (all) callback(null, [address]);
      else callback(null, address.address, address.family);
    });
    return {};
  };
  lookup[PATCHED] = true;
  // util.promisify(dns.lookup) resolves to {address, family} (or the array), as for the original.
  lookup[promisify.custom] = (hostname, options) => dns.promises.lookup(hostname, options);

  const promisesLookup = function lookup(hostname, options) {
    if (!isLocalhost(hostname)) return originalPromisesLookup.call(this, hostname, options);
    const { address, all } = answer(options);
    return Promise.resolve(all ? [address] : address);
  };

  dns.lookup = lookup;
  dns.promises.lookup = promisesLookup;
  // Named ESM imports (import { lookup } from 'node:dns') see the replacement too.
  syncBuiltinESMExports();
}
