// Preloaded with `node --require` so that a server which calls listen(port)
// without a host (server-everything does) binds to 127.0.0.1 only, not to
// every interface. server-everything has a tool that prints its environment:
// it must not be reachable from the network.
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]))) {
    const [port, ...rest] = args;
    if (typeof rest[0] !== "string") return listen.call(this, Number(port), "127.0.0.1", ...rest);
  }
  return listen.apply(this, args);
};
