// Test-only stand-in for wildcard DNS: resolve *.localhost to 127.0.0.1, as
// systemd-resolved and browsers do (RFC 6761) but this machine's resolver does not.
// Loaded with `node --require ./resolve-localhost.cjs`.
const dns = require("node:dns");
const original = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (typeof hostname === "string" && hostname.endsWith(".localhost")) {
    if (typeof options === "function") {
      callback = options;
      options = {};
    }
    if (typeof options === "number") options = { family: options };
    if (options && options.all) return process.nextTick(callback, null, [{ address: "127.0.0.1", family: 4 }]);
    return process.nextTick(callback, null, "127.0.0.1", 4);
  }
  return original.call(this, hostname, options, callback);
};
