'use strict';
// Steward does not do end-to-end encryption. The bot SDK requires this module eagerly, and the
// real one downloads a native library at install time, which cannot work on air-gapped build
// machines. Loading succeeds; any use fails loudly instead of doing the wrong thing silently.
function unsupported(name) {
  return function () {
    throw new Error(`E2EE is not supported by Steward (tried to use ${String(name)}); use an unencrypted room`);
  };
}
module.exports = new Proxy({}, {
  get(_target, name) {
    if (name === '__esModule' || name === 'then' || typeof name === 'symbol') return undefined;
    return unsupported(name);
  },
});
