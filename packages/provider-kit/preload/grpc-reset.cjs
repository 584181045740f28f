// Loaded into every service process nitric-like starts (node --require).
//
// grpc-js before 1.11, which @nitric/sdk 1.2.2 pins, closes every finished call with an
// RST_STREAM. Node's HTTP/2 server counts those as the "rapid reset" attack (CVE-2023-44487) and
// ends the session after about a thousand, so a Nitric service would crash after ~1000
// socket.send() calls. A call that the server already ended with status OK needs no reset: half-closing our
// side finishes the stream, which is what grpc-js 1.11 and later do. Nothing else is changed.
"use strict";
const http2 = require("node:http2");

const { NGHTTP2_NO_ERROR } = http2.constants;
const connect = http2.connect;

http2.connect = function nitricLikeConnect(...args) {
  const session = connect.apply(this, args);
  const request = session.request;
  session.request = function nitricLikeRequest(...requestArgs) {
    const stream = request.apply(this, requestArgs);
    const close = stream.close;
    stream.close = function nitricLikeClose(code, callback) {
      if (code === NGHTTP2_NO_ERROR && !this.destroyed) {
        if (!this.writableEnded) this.end();
        if (typeof callback === "function") this.once("close", callback);
        return;
      }
      return close.call(this, code, callback);
    };
    return stream;
  };
  return session;
};
