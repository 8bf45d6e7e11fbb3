// Preloaded into the local Kinesis and DynamoDB (`node --require ./loopback.cjs ...`, see services.py):
// every server they open listens on 127.0.0.1 only. kinesis-local binds 0.0.0.0 and has no option to
// change it (its plain and its TLS port alike), and dynalite binds every interface unless given --host;
// the local stand-ins must never be reachable from another machine on the network.
"use strict";

const net = require("net");

const LOOPBACK = "127.0.0.1";
const WILDCARDS = new Set([undefined, null, "", "0.0.0.0", "::", "[::]"]);
const listen = net.Server.prototype.listen;

function isPort(value) {
  return typeof value === "number" || (typeof value === "string" && /^\d+$/.test(value));
}

// Every form of server.listen() that opens a TCP port: (), (port[, host][, backlog][, cb]) and
// ({port, host, ...}). A path (Unix socket), handle or file descriptor is left as it is.
net.Server.prototype.listen = function (...args) {
  if (args.length === 0 || typeof args[0] === "function") {
    args.unshift(0, LOOPBACK);
  } else if (isPort(args[0])) {
    if (typeof args[1] === "string" || args[1] == null) {
      if (WILDCARDS.has(args[1])) args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK);
    }
  } else if (typeof args[0] === "object" && args[0] !== null && !("path" in args[0]) && !("fd" in args[0])
             && !("handle" in args[0]) && !("_handle" in args[0])) {
    if (WILDCARDS.has(args[0].host)) args[0] = { ...args[0], host: LOOPBACK };
  }
  return listen.apply(this, args);
};
