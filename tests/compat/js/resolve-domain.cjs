// Preloaded with `node --require` by tests/compat/test_domain.py: resolves
// every name under $SANDPIT_TEST_DOMAIN to $SANDPIT_TEST_ADDR (a loopback
// address), for this node process only, so the SDK's E2B_DOMAIN mode
// (https://api.<domain>, https://<port>-<id>.<domain>) reaches the gateway
// without touching /etc/hosts. Other names resolve as usual.
'use strict'
const dns = require('node:dns')

const domain = (process.env.SANDPIT_TEST_DOMAIN || '').toLowerCase()
const addr = process.env.SANDPIT_TEST_ADDR
const lookup = dns.lookup

dns.lookup = function (host, opts, cb) {
  if (typeof opts === 'function') {
    cb = opts
    opts = {}
  }
  const h = typeof host === 'string' ? host.toLowerCase().replace(/\.$/, '') : ''
  if (domain && addr && (h === domain || h.endsWith('.' + domain))) {
    if (opts && opts.all)
      return process.nextTick(cb, null, [{ address: addr, family: 4 }])
    return process.nextTick(cb, null, addr, 4)
  }
  return lookup.call(this, host, opts, cb)
}
